//! Geo commands (Redis's `geo.c`): points stored as sorted-set members scored by their 52-bit
//! geohash (see [`crate::types::geo`]), added with GEOADD (which runs as the ZADD Redis turns
//! it into), read back with GEOPOS, GEOHASH and GEODIST, and searched by radius or box with
//! GEOSEARCH, GEOSEARCHSTORE and the older GEORADIUS family, with Redis 7.0's replies (RESP2
//! and RESP3 shapes), option rules, error texts and statistics.
//!
//! Reads count a keyspace hit or miss for the searched key as Redis's `lookupKeyRead` does
//! (GEOSEARCHSTORE's source included). Writes count in `dirty` as Redis counts them: GEOADD as
//! its ZADD; a stored search one per stored member, or one for a destination it deletes.
//! Searches that store may write a key on another shard, so they run gathered
//! (`Split::Gather`) and everything here is local.
//!
//! Results come in Redis's exact order, ties included: without ASC/DESC in the order Redis
//! finds them (the centre's cell then its neighbours, each in score order); sorted by distance
//! stably (as glibc's `qsort`, a merge sort, sorts for Redis), or, with COUNT below the number
//! of matches, by Redis's own partial quicksort ([`crate::pqsort`]), which is not stable.

use super::spec::{
    acl, flag, kflag, Arg, ArgType, BeginSearch, CommandSpec, FindKeys, Group, KeySpec, Route,
    Split,
};
use super::zset::{limits, read_zset, zadd};
use super::Call;
use crate::keyspace::Entry;
use crate::notify::class;
use crate::pqsort::partial_sort_by;
use crate::resp::Reply;
use crate::types::geo::{
    self, c_double_to_i64, distance, geohash_text, position_of, valid_lon_lat, Extent, Found, Shape,
};
use crate::types::zset::Limits;
use crate::types::{SmallBytes, Value, ZSet};
use crate::util::{eq_ic, fmt_fixed, fmt_fixed_point, parse_f64, parse_i64, LongDouble};
use crate::{Error, Result, Shard};
use std::cmp::Ordering;

const GEO: CommandSpec = CommandSpec {
    group: Group::Geo,
    acl: acl::GEO,
    since: "3.2.0",
    ..CommandSpec::DEFAULT
};

const KEY: Arg = Arg::key("key", 0);
const MEMBER: Arg = Arg::new("member", ArgType::String);
const UNIT: Arg = Arg::oneof(
    "unit",
    &[
        Arg::token("m", "M"),
        Arg::token("km", "KM"),
        Arg::token("ft", "FT"),
        Arg::token("mi", "MI"),
    ],
);
const WITHCOORD: Arg = Arg::token("withcoord", "WITHCOORD").optional();
const WITHDIST: Arg = Arg::token("withdist", "WITHDIST").optional();
const WITHHASH: Arg = Arg::token("withhash", "WITHHASH").optional();
const ORDER: Arg = Arg::oneof(
    "order",
    &[Arg::token("asc", "ASC"), Arg::token("desc", "DESC")],
)
.optional();
const COUNT_ANY: Arg = Arg::block(
    "count",
    &[
        Arg::new("count", ArgType::Integer).with_token("COUNT"),
        Arg::token("any", "ANY").optional(),
    ],
)
.optional();
/// The same, where the docs date ANY (GEORADIUS and GEORADIUS_RO).
const COUNT_ANY_SINCE: Arg = Arg::block(
    "count",
    &[
        Arg::new("count", ArgType::Integer).with_token("COUNT"),
        Arg::token("any", "ANY").since("6.2.0").optional(),
    ],
)
.optional();
const LONGITUDE: Arg = Arg::new("longitude", ArgType::Double);
const LATITUDE: Arg = Arg::new("latitude", ArgType::Double);
const RADIUS: Arg = Arg::new("radius", ArgType::Double);
const STORE: Arg = Arg::key("key", 1).with_token("STORE").optional();
const STOREDIST: Arg = Arg::key("key", 2).with_token("STOREDIST").optional();
const FROM: Arg = Arg::oneof(
    "from",
    &[
        Arg::new("member", ArgType::String).with_token("FROMMEMBER"),
        Arg::block("longitude_latitude", &[LONGITUDE, LATITUDE]).with_token("FROMLONLAT"),
    ],
);
const BY: Arg = Arg::oneof(
    "by",
    &[
        Arg::block(
            "circle",
            &[
                Arg::new("radius", ArgType::Double).with_token("BYRADIUS"),
                UNIT,
            ],
        ),
        Arg::block(
            "box",
            &[
                Arg::new("width", ArgType::Double).with_token("BYBOX"),
                Arg::new("height", ArgType::Double),
                UNIT,
            ],
        ),
    ],
);

const READ: u32 = kflag::RO | kflag::ACCESS;
const READ_KEY: &[KeySpec] = &[KeySpec::one(1, READ)];

/// A destination named after `keyword`, searched for from argument `startfrom` on.
const fn store_key(keyword: &'static str, startfrom: i32) -> KeySpec {
    KeySpec {
        notes: None,
        flags: kflag::OW | kflag::UPDATE,
        begin: BeginSearch::Keyword { keyword, startfrom },
        find: FindKeys::Range {
            lastkey: 0,
            step: 1,
            limit: 0,
        },
    }
}

const RADIUS_COMPLEXITY: &str = "O(N+log(M)) where N is the number of elements inside the bounding box of the circular area delimited by center and radius and M is the number of items inside the index.";
const SEARCH_COMPLEXITY: &str = "O(N+log(M)) where N is the number of elements in the grid-aligned bounding box area around the shape provided as the filter and M is the number of items inside the shape";
const UPPERCASE_UNITS: (&str, &str) = ("7.0.0", "Added support for uppercase unit names.");
const ANY_ADDED: (&str, &str) = ("6.2.0", "Added the `ANY` option for `COUNT`.");

const GEORADIUS_ARGS: &[Arg] = &[
    KEY,
    LONGITUDE,
    LATITUDE,
    RADIUS,
    UNIT,
    WITHCOORD,
    WITHDIST,
    WITHHASH,
    COUNT_ANY_SINCE,
    ORDER,
    STORE,
    STOREDIST,
];
const BYMEMBER_ARGS: &[Arg] = &[
    KEY, MEMBER, RADIUS, UNIT, WITHCOORD, WITHDIST, WITHHASH, COUNT_ANY, ORDER, STORE, STOREDIST,
];

/// A search command that only reads.
const fn search_ro(name: &'static str, arity: i32, summary: &'static str) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags: flag::READONLY,
        keys: READ_KEY,
        summary,
        ..GEO
    }
}

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "geoadd",
        arity: -5,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, kflag::RW | kflag::UPDATE)],
        run: Some(geoadd),
        summary: "Adds points (longitude, latitude, name) to a geospatial index kept in a sorted set, or moves points already there.",
        complexity: "O(log(N)) for each item added, where N is the number of elements in the sorted set.",
        history: &[("6.2.0", "Added the `CH`, `NX` and `XX` options.")],
        args: &[
            KEY,
            Arg::oneof("condition", &[Arg::token("nx", "NX"), Arg::token("xx", "XX")])
                .since("6.2.0")
                .optional(),
            Arg::token("change", "CH").since("6.2.0").optional(),
            Arg::block("longitude_latitude_member", &[LONGITUDE, LATITUDE, MEMBER]).multiple(),
        ],
        ..GEO
    },
    CommandSpec {
        run: Some(geodist),
        complexity: "O(log(N))",
        args: &[
            KEY,
            Arg::new("member1", ArgType::String),
            Arg::new("member2", ArgType::String),
            UNIT.optional(),
        ],
        ..search_ro("geodist", -4, "Answers with the distance between two points of a geospatial index, in meters or another unit.")
    },
    CommandSpec {
        run: Some(geohash),
        complexity: "O(log(N)) for each member requested, where N is the number of elements in the sorted set.",
        args: &[KEY, MEMBER.multiple()],
        ..search_ro("geohash", -2, "Answers with the standard 11-letter geohash text of points of a geospatial index.")
    },
    CommandSpec {
        run: Some(geopos),
        complexity: "O(N) where N is the number of members requested.",
        args: &[KEY, MEMBER.multiple()],
        ..search_ro("geopos", -2, "Answers with the longitude and latitude of points of a geospatial index.")
    },
    CommandSpec {
        name: "georadius",
        arity: -6,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, READ), store_key("STORE", 6), store_key("STOREDIST", 6)],
        route: Route::Keys(Split::Gather),
        run: Some(georadius),
        summary: "Answers with (or stores) the points of a geospatial index within a distance of a longitude and latitude.",
        complexity: RADIUS_COMPLEXITY,
        deprecated: Some(("6.2.0", "`GEOSEARCH` and `GEOSEARCHSTORE` with the `BYRADIUS` argument")),
        history: &[ANY_ADDED, UPPERCASE_UNITS],
        args: GEORADIUS_ARGS,
        ..GEO
    },
    CommandSpec {
        name: "georadiusbymember",
        arity: -5,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, READ), store_key("STORE", 5), store_key("STOREDIST", 5)],
        route: Route::Keys(Split::Gather),
        run: Some(georadiusbymember),
        summary: "Answers with (or stores) the points of a geospatial index within a distance of one of its points.",
        complexity: RADIUS_COMPLEXITY,
        deprecated: Some(("6.2.0", "`GEOSEARCH` and `GEOSEARCHSTORE` with the `BYRADIUS` and `FROMMEMBER` arguments")),
        history: &[UPPERCASE_UNITS],
        args: BYMEMBER_ARGS,
        ..GEO
    },
    CommandSpec {
        run: Some(georadius_ro),
        since: "3.2.10",
        complexity: RADIUS_COMPLEXITY,
        deprecated: Some(("6.2.0", "`GEOSEARCH` with the `BYRADIUS` argument")),
        history: &[ANY_ADDED],
        args: GEORADIUS_ARGS.split_at(GEORADIUS_ARGS.len() - 2).0,
        ..search_ro("georadius_ro", -6, "Read-only GEORADIUS: answers with the points of a geospatial index within a distance of a longitude and latitude.")
    },
    CommandSpec {
        run: Some(georadiusbymember_ro),
        since: "3.2.10",
        complexity: RADIUS_COMPLEXITY,
        deprecated: Some(("6.2.0", "`GEOSEARCH` with the `BYRADIUS` and `FROMMEMBER` arguments")),
        args: BYMEMBER_ARGS.split_at(BYMEMBER_ARGS.len() - 2).0,
        ..search_ro("georadiusbymember_ro", -5, "Read-only GEORADIUSBYMEMBER: answers with the points of a geospatial index within a distance of one of its points.")
    },
    CommandSpec {
        run: Some(geosearch),
        since: "6.2.0",
        complexity: SEARCH_COMPLEXITY,
        history: &[UPPERCASE_UNITS],
        args: &[KEY, FROM, BY, ORDER, COUNT_ANY, WITHCOORD, WITHDIST, WITHHASH],
        ..search_ro("geosearch", -7, "Answers with the points of a geospatial index inside a circle or a box around a member or a longitude and latitude.")
    },
    CommandSpec {
        name: "geosearchstore",
        arity: -8,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, kflag::OW | kflag::UPDATE), KeySpec::one(2, READ)],
        route: Route::Keys(Split::Gather),
        run: Some(geosearchstore),
        summary: "Stores the points of a geospatial index inside a circle or a box as another sorted set, scored by geohash or by distance.",
        since: "6.2.0",
        complexity: SEARCH_COMPLEXITY,
        history: &[UPPERCASE_UNITS],
        args: &[
            Arg::key("destination", 0),
            Arg::key("source", 1),
            FROM,
            BY,
            ORDER,
            COUNT_ANY,
            Arg::token("storedist", "STOREDIST").optional(),
        ],
        ..GEO
    },
];

// ---------------------------------------------------------------------------------------------
// Argument parsing.

/// Whether `arg` is the keyword `word`, ignoring case, compared up to a NUL byte as Redis's
/// `strcasecmp` compares its arguments.
fn is(arg: &[u8], word: &str) -> bool {
    eq_ic(arg.split(|&b| b == 0).next().unwrap_or(arg), word)
}

/// A longitude and latitude that can be stored.
fn parse_lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64)> {
    let lon = parse_f64(lon).ok_or(Error::NotFloat)?;
    let lat = parse_f64(lat).ok_or(Error::NotFloat)?;
    if !valid_lon_lat(lon, lat) {
        return Err(Error::err(format!(
            "invalid longitude,latitude pair {},{}",
            fmt_fixed(lon, 6),
            fmt_fixed(lat, 6)
        )));
    }
    Ok((lon, lat))
}

/// A unit's size in meters.
fn parse_unit(arg: &[u8]) -> Result<f64> {
    match arg {
        u if is(u, "m") => Ok(1.0),
        u if is(u, "km") => Ok(1000.0),
        u if is(u, "ft") => Ok(0.3048),
        u if is(u, "mi") => Ok(1609.34),
        _ => Err(Error::err(
            "unsupported unit provided. please use M, KM, FT, MI",
        )),
    }
}

/// A number, or the error that names `what`.
fn parse_length(arg: &[u8], what: &str) -> Result<f64> {
    parse_f64(arg).ok_or_else(|| Error::err(format!("need numeric {what}")))
}

/// A radius and its unit: the extent and the unit's size in meters.
fn parse_radius(radius: &[u8], unit: &[u8]) -> Result<(Extent, f64)> {
    let r = parse_length(radius, "radius")?;
    if r < 0.0 {
        return Err(Error::err("radius cannot be negative"));
    }
    Ok((Extent::Radius(r), parse_unit(unit)?))
}

/// A box's width, height and unit.
fn parse_box(width: &[u8], height: &[u8], unit: &[u8]) -> Result<(Extent, f64)> {
    let width = parse_length(width, "width")?;
    let height = parse_length(height, "height")?;
    if height < 0.0 || width < 0.0 {
        return Err(Error::err("height or width cannot be negative"));
    }
    Ok((Extent::Box { width, height }, parse_unit(unit)?))
}

/// The position of a member, the centre of a search around it.
fn member_position(z: &ZSet, member: &[u8]) -> Result<(f64, f64)> {
    z.score(member)
        .map(position_of)
        .ok_or_else(|| Error::err("could not decode requested zset member"))
}

/// Which command of the search family runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// GEORADIUS (`store` true) and GEORADIUS_RO: the centre is a longitude and latitude.
    Radius {
        store: bool,
    },
    /// GEORADIUSBYMEMBER and GEORADIUSBYMEMBER_RO: the centre is a member.
    ByMember {
        store: bool,
    },
    Search,
    SearchStore,
}

impl Variant {
    fn is_search(self) -> bool {
        matches!(self, Variant::Search | Variant::SearchStore)
    }

    /// Whether STORE and STOREDIST (with a key) are options.
    fn stores_by_option(self) -> bool {
        matches!(
            self,
            Variant::Radius { store: true } | Variant::ByMember { store: true }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Asc,
    Desc,
}

/// A parsed search.
struct Query<'a> {
    shape: Shape,
    withdist: bool,
    withhash: bool,
    withcoord: bool,
    order: Option<Order>,
    /// COUNT (0: none).
    count: usize,
    any: bool,
    store: Option<&'a [u8]>,
    storedist: bool,
}

impl Default for Query<'_> {
    /// No options yet; the shape is filled in by the arguments that give it.
    fn default() -> Self {
        Query {
            shape: Shape {
                lon: 0.0,
                lat: 0.0,
                extent: Extent::Radius(0.0),
                unit_m: 1.0,
            },
            withdist: false,
            withhash: false,
            withcoord: false,
            order: None,
            count: 0,
            any: false,
            store: None,
            storedist: false,
        }
    }
}

/// Which of GEOSEARCH's required choices the options made.
#[derive(Default)]
struct Chosen {
    from_member: bool,
    from_lon_lat: bool,
    by_radius: bool,
    by_box: bool,
}

/// Parses a search as Redis's `georadiusGeneric` does, in its order (so the first error is
/// Redis's): the fixed arguments, the options, then the rules between options. `z` is the
/// searched set, already looked up; without it a member is not looked for.
fn parse_query<'a>(argv: &'a [&'a [u8]], v: Variant, z: Option<&ZSet>) -> Result<Query<'a>> {
    let mut q = Query::default();
    let arg = |i: usize| argv.get(i).copied().unwrap_or_default();
    let base = match v {
        Variant::Radius { .. } => {
            (q.shape.lon, q.shape.lat) = parse_lon_lat(arg(2), arg(3))?;
            (q.shape.extent, q.shape.unit_m) = parse_radius(arg(4), arg(5))?;
            6
        }
        Variant::ByMember { .. } => {
            if let Some(z) = z {
                (q.shape.lon, q.shape.lat) = member_position(z, arg(2))?;
                (q.shape.extent, q.shape.unit_m) = parse_radius(arg(3), arg(4))?;
            }
            5
        }
        Variant::Search => 2,
        Variant::SearchStore => {
            q.store = Some(arg(1));
            3
        }
    };
    let chosen = parse_options(argv.get(base..).unwrap_or_default(), v, z, &mut q)?;
    if q.store.is_some() && (q.withdist || q.withhash || q.withcoord) {
        let what = match v {
            Variant::SearchStore => "GEOSEARCHSTORE",
            _ => "STORE option in GEORADIUS",
        };
        return Err(Error::err(format!(
            "{what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        )));
    }
    // The command's name as the client wrote it.
    let name = String::from_utf8_lossy(arg(0));
    if v.is_search() && !(chosen.from_member || chosen.from_lon_lat) {
        return Err(Error::err(format!(
            "exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        )));
    }
    if v.is_search() && !(chosen.by_radius || chosen.by_box) {
        return Err(Error::err(format!(
            "exactly one of BYRADIUS and BYBOX can be specified for {name}"
        )));
    }
    if q.any && q.count == 0 {
        return Err(Error::err("the ANY argument requires COUNT argument"));
    }
    Ok(q)
}

/// Parses the options after the fixed arguments. An option is recognised only where the
/// command takes it and with the arguments it needs; anything else is a syntax error.
fn parse_options<'a>(
    opts: &'a [&'a [u8]],
    v: Variant,
    z: Option<&ZSet>,
    q: &mut Query<'a>,
) -> Result<Chosen> {
    let mut c = Chosen::default();
    let search = v.is_search();
    let mut i = 0;
    while let Some(&a) = opts.get(i) {
        let after = |k: usize| opts.get(i + k).copied().unwrap_or_default();
        let left = opts.len() - i - 1;
        if is(a, "withdist") {
            q.withdist = true;
        } else if is(a, "withhash") {
            q.withhash = true;
        } else if is(a, "withcoord") {
            q.withcoord = true;
        } else if is(a, "any") {
            q.any = true;
        } else if is(a, "asc") {
            q.order = Some(Order::Asc);
        } else if is(a, "desc") {
            q.order = Some(Order::Desc);
        } else if is(a, "count") && left >= 1 {
            let n = parse_i64(after(1)).ok_or(Error::NotInteger)?;
            if n <= 0 {
                return Err(Error::err("COUNT must be > 0"));
            }
            q.count = usize::try_from(n).unwrap_or(usize::MAX);
            i += 1;
        } else if (is(a, "store") || is(a, "storedist")) && left >= 1 && v.stores_by_option() {
            q.store = Some(after(1));
            q.storedist = is(a, "storedist");
            i += 1;
        } else if is(a, "storedist") && v == Variant::SearchStore {
            q.storedist = true;
        } else if is(a, "frommember") && left >= 1 && search && !c.from_lon_lat {
            if let Some(z) = z {
                (q.shape.lon, q.shape.lat) = member_position(z, after(1))?;
            }
            c.from_member = true;
            i += 1;
        } else if is(a, "fromlonlat") && left >= 2 && search && !c.from_member {
            (q.shape.lon, q.shape.lat) = parse_lon_lat(after(1), after(2))?;
            c.from_lon_lat = true;
            i += 2;
        } else if is(a, "byradius") && left >= 2 && search && !c.by_box {
            (q.shape.extent, q.shape.unit_m) = parse_radius(after(1), after(2))?;
            c.by_radius = true;
            i += 2;
        } else if is(a, "bybox") && left >= 3 && search && !c.by_radius {
            (q.shape.extent, q.shape.unit_m) = parse_box(after(1), after(2), after(3))?;
            c.by_box = true;
            i += 3;
        } else {
            return Err(Error::Syntax);
        }
        i += 1;
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// GEOADD, GEODIST, GEOHASH, GEOPOS.

/// GEOADD key [NX|XX] [CH] longitude latitude member [longitude latitude member ...] — the
/// options and every point are checked, then it runs as `ZADD key [NX|XX] [CH] score member
/// …` with each point's geohash as its score, as Redis runs it.
fn geoadd(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    let (mut nx, mut xx) = (false, false);
    let mut zadd_args: Vec<&[u8]> = vec![b"zadd", argv[1]];
    let mut at = 2;
    while let Some(&a) = argv.get(at) {
        let word: &'static [u8] = match a {
            a if is(a, "nx") => {
                nx = true;
                b"nx"
            }
            a if is(a, "xx") => {
                xx = true;
                b"xx"
            }
            a if is(a, "ch") => b"ch",
            _ => break,
        };
        zadd_args.push(word);
        at += 1;
    }
    let points = argv.get(at..).unwrap_or_default();
    if !points.len().is_multiple_of(3) || (nx && xx) {
        return Err(Error::Syntax);
    }
    let mut scores = Vec::with_capacity(points.len() / 3);
    for p in points.chunks_exact(3) {
        let (lon, lat) = parse_lon_lat(p[0], p[1])?;
        let score = geo::score_of(lon, lat).ok_or(Error::NotFloat)?;
        scores.push(itoa::Buffer::new().format(score as u64).to_owned());
    }
    for (p, score) in points.chunks_exact(3).zip(&scores) {
        zadd_args.push(score.as_bytes());
        zadd_args.push(p[2]);
    }
    let mut as_zadd = Call {
        argv: &zadd_args,
        db: c.db,
        now_ms: c.now_ms,
        now_us: c.now_us,
        out: Reply::new(c.out.buf, c.out.proto),
    };
    zadd(sh, &mut as_zadd)
}

/// GEODIST key member1 member2 [M|KM|FT|MI] — the unit is checked before the key.
fn geodist(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let unit_m = match c.argv {
        [_, _, _, _] => 1.0,
        [_, _, _, _, unit] => parse_unit(unit)?,
        _ => return Err(Error::Syntax),
    };
    let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    let scores = z.and_then(|z| Some((z.score(c.argv[2])?, z.score(c.argv[3])?)));
    match scores {
        Some((a, b)) => {
            let ((lon1, lat1), (lon2, lat2)) = (position_of(a), position_of(b));
            let d = distance(lon1, lat1, lon2, lat2) / unit_m;
            c.out.bulk(fmt_fixed_point(d, 4).as_bytes());
        }
        None => c.out.null(),
    }
    Ok(())
}

/// GEOHASH key [member ...]
fn geohash(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    let members = c.argv.get(2..).unwrap_or_default();
    c.out.array(members.len());
    for m in members {
        match z.and_then(|z| z.score(m)) {
            Some(s) => c.out.bulk(&geohash_text(s)),
            None => c.out.null(),
        }
    }
    Ok(())
}

/// A coordinate as Redis prints it: the double widened to `long double`, `%.17Lf`, trailing
/// zeros removed (a double in RESP3).
fn reply_coordinate(out: &mut Reply, d: f64) {
    out.double_text(&LongDouble::from_f64(d).to_human());
}

/// GEOPOS key [member ...] — a missing member is a null array.
fn geopos(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    let members = c.argv.get(2..).unwrap_or_default();
    c.out.array(members.len());
    for m in members {
        match z.and_then(|z| z.score(m)) {
            Some(s) => {
                let (lon, lat) = position_of(s);
                c.out.array(2);
                reply_coordinate(&mut c.out, lon);
                reply_coordinate(&mut c.out, lat);
            }
            None => c.out.null_array(),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Searches.

/// GEORADIUS key longitude latitude radius M|KM|FT|MI [WITHCOORD] [WITHDIST] [WITHHASH]
/// [COUNT count [ANY]] [ASC|DESC] [STORE key] [STOREDIST key]
fn georadius(sh: &mut Shard, c: &mut Call) -> Result<()> {
    search_generic(sh, c, Variant::Radius { store: true })
}

/// GEORADIUS_RO key longitude latitude radius M|KM|FT|MI [WITHCOORD] [WITHDIST] [WITHHASH]
/// [COUNT count [ANY]] [ASC|DESC]
fn georadius_ro(sh: &mut Shard, c: &mut Call) -> Result<()> {
    search_generic(sh, c, Variant::Radius { store: false })
}

/// GEORADIUSBYMEMBER key member radius M|KM|FT|MI [WITHCOORD] [WITHDIST] [WITHHASH]
/// [COUNT count [ANY]] [ASC|DESC] [STORE key] [STOREDIST key]
fn georadiusbymember(sh: &mut Shard, c: &mut Call) -> Result<()> {
    search_generic(sh, c, Variant::ByMember { store: true })
}

/// GEORADIUSBYMEMBER_RO key member radius M|KM|FT|MI [WITHCOORD] [WITHDIST] [WITHHASH]
/// [COUNT count [ANY]] [ASC|DESC]
fn georadiusbymember_ro(sh: &mut Shard, c: &mut Call) -> Result<()> {
    search_generic(sh, c, Variant::ByMember { store: false })
}

/// GEOSEARCH key FROMMEMBER member | FROMLONLAT longitude latitude
/// BYRADIUS radius unit | BYBOX width height unit [ASC|DESC] [COUNT count [ANY]]
/// [WITHCOORD] [WITHDIST] [WITHHASH]
fn geosearch(sh: &mut Shard, c: &mut Call) -> Result<()> {
    search_generic(sh, c, Variant::Search)
}

/// GEOSEARCHSTORE destination source FROMMEMBER member | FROMLONLAT longitude latitude
/// BYRADIUS radius unit | BYBOX width height unit [ASC|DESC] [COUNT count [ANY]] [STOREDIST]
fn geosearchstore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    search_generic(sh, c, Variant::SearchStore)
}

/// The shared body of the searches: look the source up (a missing one still has its
/// arguments checked), parse, search, then answer or store.
fn search_generic(sh: &mut Shard, c: &mut Call, v: Variant) -> Result<()> {
    let argv = c.argv;
    let source = argv[if v == Variant::SearchStore { 2 } else { 1 }];
    let lim = limits(sh);
    let (q, found) = {
        let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, source, c.now_ms)?;
        let q = parse_query(argv, v, z)?;
        let found = z.map(|z| run_query(z, &q));
        (q, found)
    };
    match (q.store, found) {
        (None, None) => c.out.array(0),
        (None, Some(found)) => reply_found(&mut c.out, &q, &found),
        (Some(dst), found) => {
            let n = found.as_ref().map_or(0, Vec::len);
            let by_dist = q.storedist.then_some(q.shape.unit_m);
            let event = if v == Variant::SearchStore {
                "geosearchstore"
            } else {
                "georadiusstore"
            };
            store_found(sh, c.db, dst, by_dist, found.unwrap_or_default(), lim);
            if n > 0 {
                sh.notify(class::ZSET, event, c.db, dst);
            }
            c.out.int(n as i64);
        }
    }
    Ok(())
}

/// Searches `z`, orders by distance if asked (COUNT without ANY implies ascending) and keeps
/// COUNT. Distances stay in meters: Redis orders by those, and converts only what it shows or
/// stores.
fn run_query(z: &ZSet, q: &Query) -> Vec<Found> {
    let limit = if q.any { q.count } else { 0 };
    let mut found = geo::search(z, &q.shape, limit);
    let order = q.order.or((q.count > 0 && !q.any).then_some(Order::Asc));
    let wanted = if q.count == 0 {
        found.len()
    } else {
        q.count.min(found.len())
    };
    if let Some(order) = order {
        let by_dist = move |a: &Found, b: &Found| {
            let o = a.dist_m.partial_cmp(&b.dist_m).unwrap_or(Ordering::Equal);
            if order == Order::Desc {
                o.reverse()
            } else {
                o
            }
        };
        // As Redis: a full sort is glibc's qsort, a stable merge sort; a partial one is its
        // own pqsort, whose order among equal distances this reproduces.
        if wanted == found.len() {
            found.sort_by(by_dist);
        } else if wanted > 0 {
            partial_sort_by(&mut found, wanted - 1, by_dist);
        }
    }
    found.truncate(wanted);
    found
}

/// The search reply: members alone, or each with its distance (4 decimals, a string even in
/// RESP3), hash (the score as an integer) and coordinates, in that order.
fn reply_found(out: &mut Reply, q: &Query, found: &[Found]) {
    let unit_m = q.shape.unit_m;
    let extras = usize::from(q.withdist) + usize::from(q.withhash) + usize::from(q.withcoord);
    out.array(found.len());
    for f in found {
        if extras > 0 {
            out.array(extras + 1);
        }
        out.bulk(&f.member);
        if q.withdist {
            out.bulk(fmt_fixed_point(f.dist_m / unit_m, 4).as_bytes());
        }
        if q.withhash {
            out.int(c_double_to_i64(f.score));
        }
        if q.withcoord {
            out.array(2);
            reply_coordinate(out, f.lon);
            reply_coordinate(out, f.lat);
        }
    }
}

/// Stores found points under `dst` (replacing any value and deadline), scored by geohash or,
/// with `by_dist` (the unit's size in meters), by distance in that unit, in the encoding their
/// number and sizes call for; with none, deletes `dst`.
fn store_found(
    sh: &mut Shard,
    db: usize,
    dst: &[u8],
    by_dist: Option<f64>,
    found: Vec<Found>,
    lim: Limits,
) {
    let db_index = db;
    let db = &mut sh.dbs[db];
    if found.is_empty() {
        if db.remove(dst).is_some() {
            sh.stats.dirty += 1;
            sh.notify(class::GENERIC, "del", db_index, dst);
        }
        return;
    }
    let n = found.len() as u64;
    let mut pairs: Vec<(SmallBytes, f64)> = found
        .into_iter()
        .map(|f| {
            let score = by_dist.map_or(f.score, |unit_m| f.dist_m / unit_m);
            (f.member, score)
        })
        .collect();
    pairs.sort_by(|(am, a), (bm, b)| {
        a.partial_cmp(b)
            .unwrap_or(Ordering::Equal)
            .then_with(|| am.as_slice().cmp(bm.as_slice()))
    });
    db.insert(dst, Entry::new(Value::ZSet(ZSet::from_sorted(&pairs, lim))));
    sh.stats.dirty += n;
}

#[cfg(test)]
mod tests {
    use crate::resp::Proto;
    use crate::shard::testing::TestShard;

    const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    fn sicily(t: &mut TestShard) {
        t.run("GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania");
    }

    #[test]
    fn replies_match_redis() {
        // Replies of Redis 7.0.15 to the same commands.
        let mut t = TestShard::new();
        sicily(&mut t);
        assert_eq!(
            t.run("GEODIST Sicily Palermo Catania km"),
            "$8\r\n166.2742\r\n"
        );
        assert_eq!(
            t.run("GEOPOS Sicily Palermo nosuch"),
            "*2\r\n*2\r\n$20\r\n13.36138933897018433\r\n$20\r\n38.11555639549629859\r\n*-1\r\n"
        );
        assert_eq!(
            t.run("GEOHASH Sicily Palermo nosuch"),
            "*2\r\n$11\r\nsqc8b49rny0\r\n$-1\r\n"
        );
        assert_eq!(
            t.run("GEORADIUS Sicily 15 37 200 km WITHDIST WITHHASH ASC"),
            "*2\r\n*3\r\n$7\r\nCatania\r\n$7\r\n56.4413\r\n:3479447370796909\r\n\
             *3\r\n$7\r\nPalermo\r\n$8\r\n190.4424\r\n:3479099956230698\r\n"
        );
        assert_eq!(
            t.run("GEOSEARCH Sicily FROMLONLAT 15 37 BYRADIUS 200 km COUNT 1"),
            "*1\r\n$7\r\nCatania\r\n"
        );
    }

    #[test]
    fn resp3_coordinates_are_doubles_and_distances_strings() {
        let mut t = TestShard::new();
        t.proto = Proto::Resp3;
        sicily(&mut t);
        assert_eq!(
            t.run("GEOPOS Sicily Palermo nosuch"),
            "*2\r\n*2\r\n,13.36138933897018433\r\n,38.11555639549629859\r\n_\r\n"
        );
        assert_eq!(
            t.run("GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 1 m WITHDIST WITHCOORD"),
            "*1\r\n*3\r\n$7\r\nPalermo\r\n$6\r\n0.0000\r\n*2\r\n,13.36138933897018433\r\n,38.11555639549629859\r\n"
        );
        assert_eq!(t.run("GEODIST Sicily Palermo nosuch"), "_\r\n");
    }

    #[test]
    fn dirty_counts_follow_redis() {
        let mut t = TestShard::new();
        for (cmd, dirty) in [
            (
                "GEOADD g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
                2,
            ),
            ("GEOADD g 13.361389 38.115556 Palermo", 0),
            ("GEOADD g CH 13 38 Palermo", 1),
            ("GEOADD g XX 1 1 nosuch", 0),
            ("GEORADIUS g 15 37 200 km STORE d", 1),
            ("GEOSEARCHSTORE d g FROMMEMBER Palermo BYRADIUS 1 km", 1),
            ("GEOSEARCHSTORE d g FROMLONLAT 0 0 BYRADIUS 1 km", 1),
            ("GEOSEARCHSTORE d g FROMLONLAT 0 0 BYRADIUS 1 km", 0),
            ("GEOSEARCHSTORE d nosuch FROMLONLAT 0 0 BYRADIUS 1 km", 0),
            ("GEORADIUS g 0 0 1 km", 0),
        ] {
            let before = t.shard.stats.dirty;
            t.run(cmd);
            assert_eq!(t.shard.stats.dirty - before, dirty, "{cmd}");
        }
    }

    #[test]
    fn reads_count_hits_and_misses() {
        let mut t = TestShard::new();
        sicily(&mut t);
        for cmd in [
            "GEOPOS Sicily Palermo",
            "GEOHASH Sicily Palermo",
            "GEODIST Sicily Palermo Catania",
            "GEOSEARCH Sicily FROMMEMBER Palermo BYRADIUS 1 km",
            "GEORADIUS_RO Sicily 15 37 1 km",
            "GEOSEARCHSTORE d Sicily FROMMEMBER Palermo BYRADIUS 1 km",
        ] {
            t.run(cmd);
        }
        assert_eq!(t.shard.stats.keyspace_hits, 6);
        t.run("GEOPOS nosuch a");
        t.run("GEORADIUSBYMEMBER nosuch a 1 km STORE d2");
        assert_eq!(t.shard.stats.keyspace_misses, 2);
        // GEOADD looks its key up to write it: no statistics.
        t.run("GEOADD Sicily 1 1 x");
        assert_eq!(t.shard.stats.keyspace_hits, 6);
        // GEODIST checks its unit first.
        t.run("GEODIST nosuch a b parsec");
        assert_eq!(t.shard.stats.keyspace_misses, 2);
    }

    #[test]
    fn wrong_type_comes_before_argument_errors() {
        let mut t = TestShard::new();
        t.run("SET s v");
        for cmd in [
            "GEOADD s 1 1 a",
            "GEOPOS s a",
            "GEOHASH s a",
            "GEODIST s a b",
            "GEORADIUS s 500 0 1 km",
            "GEORADIUSBYMEMBER s a -1 km",
            "GEOSEARCH s FROMLONLAT 500 0 BYRADIUS 1 km",
            "GEOSEARCHSTORE d s BYRADIUS 1 km BYRADIUS 1 km",
        ] {
            assert_eq!(t.run(cmd), WRONGTYPE, "{cmd}");
        }
    }

    #[test]
    fn a_missing_source_checks_arguments_then_answers_empty() {
        let mut t = TestShard::new();
        assert_eq!(t.run("GEORADIUSBYMEMBER nosuch m abc km"), "*0\r\n");
        assert_eq!(
            t.run("GEOSEARCH nosuch FROMMEMBER m BYRADIUS abc km"),
            "-ERR need numeric radius\r\n"
        );
        assert_eq!(
            t.run("geosearch nosuch FROMMEMBER m WITHDIST WITHHASH ASC"),
            "-ERR exactly one of BYRADIUS and BYBOX can be specified for geosearch\r\n"
        );
        t.run("SET d v");
        assert_eq!(
            t.run("GEORADIUSBYMEMBER nosuch m 1 km STOREDIST d"),
            ":0\r\n"
        );
        assert_eq!(t.run("EXISTS d"), ":0\r\n");
    }

    #[test]
    fn stored_results_pick_their_encoding() {
        let mut t = TestShard::new();
        t.shard.config.zset_max_listpack_entries = 2;
        t.run("GEOADD g 0 0 a 0 0.001 b 0 0.002 c");
        assert_eq!(
            t.run("GEOSEARCHSTORE d g FROMLONLAT 0 0 BYRADIUS 1 km"),
            ":3\r\n"
        );
        assert_eq!(t.run("OBJECT ENCODING d"), "$8\r\nskiplist\r\n");
        assert_eq!(
            t.run("GEOSEARCHSTORE d g FROMLONLAT 0 0 BYRADIUS 1 km COUNT 2 STOREDIST"),
            ":2\r\n"
        );
        assert_eq!(t.run("OBJECT ENCODING d"), "$8\r\nlistpack\r\n");
        assert_eq!(
            t.run("ZRANGE d 0 -1 WITHSCORES"),
            "*4\r\n$1\r\na\r\n$21\r\n0.0003299589265287915\r\n$1\r\nb\r\n$19\r\n0.11122086044003059\r\n"
        );
    }
}
