//! String commands (Redis's `t_string.c`): reads, writes, counters and ranges over string
//! values, with Redis 7.0's replies, errors, encodings and keyspace statistics.
//!
//! Every type check goes through [`as_str`]/[`as_str_mut`], so a value of another type gets
//! `WRONGTYPE` (MGET, which answers nil for those, and LCS, which has its own error, aside).
//! Reads that Redis does with `lookupKeyRead` count a keyspace hit or miss; every change counts
//! in `dirty`.

use super::spec::{
    acl, flag, kflag, Arg, ArgType, CommandSpec, Group, KeySpec, Merge, Route, Split,
};
use super::Call;
use crate::keyspace::Entry;
use crate::limits::STRING_LEN_MAX;
use crate::notify::class;
use crate::resp::Reply;
use crate::types::{Str, Value};
use crate::util::{eq_ic, parse_i64, LongDouble};
use crate::{Error, Result, Shard};

const STRING: CommandSpec = CommandSpec {
    group: Group::String,
    acl: acl::STRING,
    ..CommandSpec::DEFAULT
};

const KEY: Arg = Arg::key("key", 0);
const VALUE: Arg = Arg::new("value", ArgType::String);
/// The common key spec of commands that read and change one key's value.
const RW_ACCESS_UPDATE: KeySpec = KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::UPDATE);
const RANGE_COMPLEXITY: &str = "O(N) where N is the length of the returned string. The complexity is ultimately determined by the returned length, but because creating a substring from an existing string is very cheap, it can be considered O(1) for small strings.";
const RANGE_ARGS: &[Arg] = &[
    KEY,
    Arg::new("start", ArgType::Integer),
    Arg::new("end", ArgType::Integer),
];
const KEY_VALUE_PAIRS: &[Arg] = &[Arg::block("key_value", &[KEY, VALUE]).multiple()];
const GET_EXPIRATION: &[Arg] = &[
    Arg::new("seconds", ArgType::Integer).with_token("EX"),
    Arg::new("milliseconds", ArgType::Integer).with_token("PX"),
    Arg::new("unix-time-seconds", ArgType::UnixTime).with_token("EXAT"),
    Arg::new("unix-time-milliseconds", ArgType::UnixTime).with_token("PXAT"),
    Arg::token("persist", "PERSIST"),
];

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "get",
        arity: 2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(get),
        summary: "Returns the string value of a key.",
        args: &[KEY],
        ..STRING
    },
    CommandSpec {
        name: "set",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec {
            notes: Some("RW and ACCESS due to the optional `GET` argument"),
            flags: kflag::RW | kflag::ACCESS | kflag::UPDATE | kflag::VARIABLE_FLAGS,
            ..KeySpec::one(1, 0)
        }],
        key_flags: Some(set_key_flags),
        run: Some(set),
        summary: "Sets the string value of a key, optionally only if it exists or not, with an expiry, returning the old value.",
        history: &[
            ("2.6.12", "Added the `EX`, `PX`, `NX` and `XX` options."),
            ("6.0.0", "Added the `KEEPTTL` option."),
            ("6.2.0", "Added the `GET`, `EXAT` and `PXAT` option."),
            ("7.0.0", "Allowed the `NX` and `GET` options to be used together."),
        ],
        args: &[
            KEY,
            VALUE,
            Arg::oneof("condition", &[Arg::token("nx", "NX"), Arg::token("xx", "XX")]).since("2.6.12").optional(),
            Arg::token("get", "GET").since("6.2.0").optional(),
            Arg::oneof(
                "expiration",
                &[
                    Arg::new("seconds", ArgType::Integer).with_token("EX").since("2.6.12"),
                    Arg::new("milliseconds", ArgType::Integer).with_token("PX").since("2.6.12"),
                    Arg::new("unix-time-seconds", ArgType::UnixTime).with_token("EXAT").since("6.2.0"),
                    Arg::new("unix-time-milliseconds", ArgType::UnixTime).with_token("PXAT").since("6.2.0"),
                    Arg::token("keepttl", "KEEPTTL").since("6.0.0"),
                ],
            )
            .optional(),
        ],
        ..STRING
    },
    CommandSpec {
        name: "setnx",
        arity: 3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::OW | kflag::INSERT)],
        run: Some(setnx),
        summary: "Stores a string under a key only when the key is absent.",
        args: &[KEY, VALUE],
        ..STRING
    },
    CommandSpec {
        name: "setex",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, kflag::OW | kflag::UPDATE)],
        run: Some(setex),
        summary: "Stores a string under a key with a time to live in seconds.",
        since: "2.0.0",
        args: &[KEY, Arg::new("seconds", ArgType::Integer), VALUE],
        ..STRING
    },
    CommandSpec {
        name: "psetex",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, kflag::OW | kflag::UPDATE)],
        run: Some(psetex),
        summary: "Stores a string under a key with a time to live in milliseconds.",
        since: "2.6.0",
        args: &[KEY, Arg::new("milliseconds", ArgType::Integer), VALUE],
        ..STRING
    },
    CommandSpec {
        name: "getset",
        arity: 3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[RW_ACCESS_UPDATE],
        run: Some(getset),
        summary: "Replaces a key's string and answers with the string it held before.",
        deprecated: Some(("6.2.0", "`SET` with the `!GET` argument")),
        args: &[KEY, VALUE],
        ..STRING
    },
    CommandSpec {
        name: "getdel",
        arity: 2,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::DELETE)],
        run: Some(getdel),
        summary: "Answers with a key's string and removes the key.",
        since: "6.2.0",
        args: &[KEY],
        ..STRING
    },
    CommandSpec {
        name: "getex",
        arity: -2,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec { notes: Some("RW and UPDATE because it changes the TTL"), ..RW_ACCESS_UPDATE }],
        run: Some(getex),
        summary: "Answers with a key's string and optionally changes or removes its time to live.",
        since: "6.2.0",
        args: &[KEY, Arg::oneof("expiration", GET_EXPIRATION).optional()],
        ..STRING
    },
    CommandSpec {
        name: "mget",
        arity: -2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::range(1, -1, 1, kflag::RO | kflag::ACCESS)],
        route: Route::Keys(Split::PerKey(Merge::KeyOrder)),
        run: Some(mget),
        summary: "Answers with the strings of several keys, nil where a key has none.",
        complexity: "O(N) where N is the number of keys to retrieve.",
        tips: &["request_policy:multi_shard"],
        args: &[KEY.multiple()],
        ..STRING
    },
    CommandSpec {
        name: "mset",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::range(1, -1, 2, kflag::OW | kflag::UPDATE)],
        route: Route::Keys(Split::PerKey(Merge::First)),
        run: Some(mset),
        summary: "Stores strings under several keys at once.",
        since: "1.0.1",
        complexity: "O(N) where N is the number of keys to set.",
        tips: &["request_policy:multi_shard", "response_policy:all_succeeded"],
        args: KEY_VALUE_PAIRS,
        ..STRING
    },
    CommandSpec {
        name: "msetnx",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::range(1, -1, 2, kflag::OW | kflag::INSERT)],
        route: Route::Keys(Split::Gather),
        run: Some(msetnx),
        summary: "Stores strings under several keys at once, only when none of the keys exists.",
        since: "1.0.1",
        complexity: "O(N) where N is the number of keys to set.",
        tips: &["request_policy:multi_shard", "response_policy:agg_min"],
        args: KEY_VALUE_PAIRS,
        ..STRING
    },
    CommandSpec {
        name: "append",
        arity: 3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::INSERT)],
        run: Some(append),
        summary: "Adds bytes to the end of a key's string, creating the key if needed.",
        since: "2.0.0",
        complexity: "O(1). The amortized time complexity is O(1) assuming the appended value is small and the already present value is of any size, since the dynamic string library used by Redis will double the free space available on every reallocation.",
        args: &[KEY, VALUE],
        ..STRING
    },
    CommandSpec {
        name: "strlen",
        arity: 2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO)],
        run: Some(strlen),
        summary: "Answers with the length in bytes of a key's string.",
        since: "2.2.0",
        args: &[KEY],
        ..STRING
    },
    CommandSpec {
        name: "incr",
        arity: 2,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[RW_ACCESS_UPDATE],
        run: Some(incr),
        summary: "Adds one to the integer held in a key, starting from zero.",
        args: &[KEY],
        ..STRING
    },
    CommandSpec {
        name: "decr",
        arity: 2,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[RW_ACCESS_UPDATE],
        run: Some(decr),
        summary: "Subtracts one from the integer held in a key, starting from zero.",
        args: &[KEY],
        ..STRING
    },
    CommandSpec {
        name: "incrby",
        arity: 3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[RW_ACCESS_UPDATE],
        run: Some(incrby),
        summary: "Adds a whole number to the integer held in a key, starting from zero.",
        args: &[KEY, Arg::new("increment", ArgType::Integer)],
        ..STRING
    },
    CommandSpec {
        name: "decrby",
        arity: 3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[RW_ACCESS_UPDATE],
        run: Some(decrby),
        summary: "Subtracts a whole number from the integer held in a key, starting from zero.",
        args: &[KEY, Arg::new("decrement", ArgType::Integer)],
        ..STRING
    },
    CommandSpec {
        name: "incrbyfloat",
        arity: 3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[RW_ACCESS_UPDATE],
        run: Some(incrbyfloat),
        summary: "Adds a floating point number to the number held in a key, starting from zero.",
        since: "2.6.0",
        args: &[KEY, Arg::new("increment", ArgType::Double)],
        ..STRING
    },
    CommandSpec {
        name: "getrange",
        arity: 4,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(getrange),
        summary: "Answers with the bytes of a key's string between two offsets, both included.",
        since: "2.4.0",
        complexity: RANGE_COMPLEXITY,
        args: RANGE_ARGS,
        ..STRING
    },
    CommandSpec {
        name: "setrange",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, kflag::RW | kflag::UPDATE)],
        run: Some(setrange),
        summary: "Writes bytes into a key's string at an offset, padding with zero bytes as needed.",
        since: "2.2.0",
        complexity: "O(1), not counting the time taken to copy the new string in place. Usually, this string is very small so the amortized complexity is O(1). Otherwise, complexity is O(M) with M being the length of the value argument.",
        args: &[KEY, Arg::new("offset", ArgType::Integer), VALUE],
        ..STRING
    },
    CommandSpec {
        name: "substr",
        arity: 4,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(getrange),
        summary: "Answers with the bytes of a key's string between two offsets (the old name of GETRANGE).",
        complexity: RANGE_COMPLEXITY,
        deprecated: Some(("2.0.0", "`GETRANGE`")),
        args: RANGE_ARGS,
        ..STRING
    },
    CommandSpec {
        name: "lcs",
        arity: -3,
        flags: flag::READONLY,
        keys: &[KeySpec::range(1, 1, 1, kflag::RO | kflag::ACCESS)],
        route: Route::Keys(Split::Gather),
        run: Some(lcs),
        summary: "Finds the longest common subsequence of the strings of two keys.",
        since: "7.0.0",
        complexity: "O(N*M) where N and M are the lengths of s1 and s2, respectively",
        args: &[
            Arg::key("key1", 0),
            Arg::key("key2", 0),
            Arg::token("len", "LEN").optional(),
            Arg::token("idx", "IDX").optional(),
            Arg::new("len", ArgType::Integer).with_token("MINMATCHLEN").optional(),
            Arg::token("withmatchlen", "WITHMATCHLEN").optional(),
        ],
        ..STRING
    },
];

// ---------------------------------------------------------------------------------------------
// Lookups and type checks.

/// The value under `key` for reading, counting a keyspace hit or miss as Redis's
/// `lookupKeyRead` does (a key of another type is a hit).
pub(crate) fn lookup_read<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Option<&'s Value> {
    let Shard { dbs, stats, .. } = sh;
    let found = stats.count_lookup(dbs[db].get_read(key, now_ms));
    found.map(|e| &e.value)
}

/// Like [`lookup_read`], for a read that may update the value in place (PFCOUNT refreshing
/// its cached cardinality).
pub(crate) fn lookup_read_mut<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Option<&'s mut Value> {
    let Shard { dbs, stats, .. } = sh;
    let found = stats.count_lookup(dbs[db].get_read_mut(key, now_ms));
    found.map(|e| &mut e.value)
}

/// SET's key is only read when GET is given: without it the old value is overwritten.
fn set_key_flags(argv: &[&[u8]]) -> u32 {
    if argv.iter().skip(3).any(|a| eq_ic(a, "get")) {
        kflag::RW | kflag::ACCESS | kflag::UPDATE
    } else {
        kflag::OW | kflag::UPDATE
    }
}

/// The string under `key` for reading (counting a hit or miss), or `WRONGTYPE`.
fn read_str<'s>(sh: &'s mut Shard, db: usize, key: &[u8], now_ms: u64) -> Result<Option<&'s Str>> {
    lookup_read(sh, db, key, now_ms)
        .map(Value::as_str)
        .transpose()
}

/// The string under `key`, or `WRONGTYPE` if the key holds another type. Counts no statistics
/// (for other families that need a string's bytes).
pub fn get_str<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s Str>> {
    sh.dbs[db]
        .get(key, now_ms)
        .map(|e| e.value.as_str())
        .transpose()
}

/// Replies with a string's bytes.
fn reply_str(out: &mut Reply, s: &Str) {
    match s {
        Str::Int(n) => out.bulk_int(*n),
        Str::Bytes { data, .. } => out.bulk(data),
    }
}

/// Stores `data` under `key` with the encoding SET picks, dropping any old value and TTL.
fn store(sh: &mut Shard, db: usize, key: &[u8], data: &[u8], expire_at_ms: Option<u64>) {
    sh.dbs[db].insert(
        key,
        Entry::with_expiry(Value::Str(Str::from_bytes(data)), expire_at_ms),
    );
    sh.stats.dirty += 1;
    sh.notify(class::STRING, "set", db, key);
    if expire_at_ms.is_some() {
        sh.notify(class::GENERIC, "expire", db, key);
    }
}

/// The length of a string grown to `size + append` bytes, or Redis's error when that passes
/// the largest string allowed.
fn grown_len(size: u64, append: u64) -> Result<usize> {
    match size.checked_add(append) {
        Some(total) if total <= STRING_LEN_MAX as u64 => Ok(total as usize),
        _ => Err(Error::err(
            "string exceeds maximum allowed size (proto-max-bulk-len)",
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// GET, SET and their variants.

/// GET key
fn get(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match read_str(sh, c.db, c.argv[1], c.now_ms)? {
        Some(s) => reply_str(&mut c.out, s),
        None => c.out.null(),
    }
    Ok(())
}

/// How an expiry argument is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpireUnit {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl ExpireUnit {
    fn parse(word: &[u8]) -> Option<ExpireUnit> {
        [
            ("ex", ExpireUnit::Ex),
            ("px", ExpireUnit::Px),
            ("exat", ExpireUnit::ExAt),
            ("pxat", ExpireUnit::PxAt),
        ]
        .into_iter()
        .find(|(name, _)| eq_ic(word, name))
        .map(|(_, unit)| unit)
    }

    fn absolute(self) -> bool {
        matches!(self, ExpireUnit::ExAt | ExpireUnit::PxAt)
    }

    /// The deadline `arg` names, with Redis's error for a bad value.
    fn deadline(self, arg: &[u8], now_ms: u64, cmd: &str) -> Result<u64> {
        let unit_ms = if matches!(self, ExpireUnit::Ex | ExpireUnit::ExAt) {
            1000
        } else {
            1
        };
        expire_deadline(arg, unit_ms, self.absolute(), now_ms, cmd)
    }
}

/// The options of SET and GETEX, parsed as Redis's `parseExtendedStringArgumentsOrReply`
/// does: a repeated option is accepted (the last expiry wins), conflicting ones are a syntax
/// error.
#[derive(Default)]
struct ExtOpts<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expire: Option<(ExpireUnit, &'a [u8])>,
}

fn parse_ext<'a>(c: &Call<'a>, for_set: bool) -> Result<ExtOpts<'a>> {
    let mut o = ExtOpts::default();
    let mut a = c.args(if for_set { 3 } else { 2 });
    while let Some(word) = a.next() {
        let other_expiry = |unit| o.expire.is_some_and(|(u, _)| u != unit);
        if for_set && eq_ic(word, "nx") && !o.xx {
            o.nx = true;
        } else if for_set && eq_ic(word, "xx") && !o.nx {
            o.xx = true;
        } else if for_set && eq_ic(word, "get") {
            o.get = true;
        } else if for_set && eq_ic(word, "keepttl") && o.expire.is_none() {
            o.keepttl = true;
        } else if !for_set && eq_ic(word, "persist") && o.expire.is_none() {
            o.persist = true;
        } else if let Some(unit) = ExpireUnit::parse(word)
            .filter(|&u| !o.keepttl && !o.persist && !other_expiry(u) && !a.is_empty())
        {
            o.expire = Some((unit, a.next_bytes()?));
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(o)
}

/// Parses an expiry given relative (`EX`/`PX`) or absolute (`EXAT`/`PXAT`) into a deadline,
/// with Redis's error for non-positive or overflowing values.
pub fn expire_deadline(
    arg: &[u8],
    unit_ms: i64,
    absolute: bool,
    now_ms: u64,
    cmd: &str,
) -> Result<u64> {
    let n = parse_i64(arg).ok_or(Error::NotInteger)?;
    let invalid = || Error::err(format!("invalid expire time in '{cmd}' command"));
    if n <= 0 {
        return Err(invalid());
    }
    let ms = n.checked_mul(unit_ms).ok_or_else(invalid)?;
    if absolute {
        Ok(ms as u64)
    } else {
        let at = ms.checked_add(now_ms as i64).ok_or_else(invalid)?;
        Ok(at as u64)
    }
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT ts | PXAT ms | KEEPTTL]
fn set(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let o = parse_ext(c, true)?;
    let expire_at_ms = match o.expire {
        Some((unit, arg)) => Some(unit.deadline(arg, c.now_ms, "set")?),
        None => None,
    };
    let key = c.argv[1];
    if o.get {
        match read_str(sh, c.db, key, c.now_ms)? {
            Some(s) => reply_str(&mut c.out, s),
            None => c.out.null(),
        }
    }
    let exists = sh.dbs[c.db].contains(key, c.now_ms);
    if (o.nx && exists) || (o.xx && !exists) {
        if !o.get {
            c.out.null();
        }
        return Ok(());
    }
    if o.keepttl {
        sh.dbs[c.db].set_value_keep_ttl(key, Value::Str(Str::from_bytes(c.argv[2])));
        sh.stats.dirty += 1;
        sh.notify(class::STRING, "set", c.db, key);
    } else {
        store(sh, c.db, key, c.argv[2], expire_at_ms);
    }
    if c.argv.len() > 3 {
        // The effect, without the conditions and GET that no longer matter, and with an
        // absolute deadline (Redis logs `SET key value PXAT ms`).
        log_set(sh, c.db, key, c.argv[2], expire_at_ms, o.keepttl);
    }
    if !o.get {
        c.out.ok();
    }
    Ok(())
}

/// Logs the effect of a SET: `SET key value [PXAT ms | KEEPTTL]`.
fn log_set(sh: &mut Shard, db: usize, key: &[u8], value: &[u8], at_ms: Option<u64>, keepttl: bool) {
    if !sh.propagating() {
        return;
    }
    let mut at = itoa::Buffer::new();
    match at_ms {
        Some(ms) => sh.rewrite(db, &[b"SET", key, value, b"PXAT", at.format(ms).as_bytes()]),
        None if keepttl => sh.rewrite(db, &[b"SET", key, value, b"KEEPTTL"]),
        None => sh.rewrite(db, &[b"SET", key, value]),
    }
}

/// SETNX key value
fn setnx(sh: &mut Shard, c: &mut Call) -> Result<()> {
    if sh.dbs[c.db].contains(c.argv[1], c.now_ms) {
        c.out.int(0);
    } else {
        store(sh, c.db, c.argv[1], c.argv[2], None);
        c.out.int(1);
    }
    Ok(())
}

/// SETEX key seconds value
fn setex(sh: &mut Shard, c: &mut Call) -> Result<()> {
    set_with_ttl(sh, c, ExpireUnit::Ex, "setex")
}

/// PSETEX key milliseconds value
fn psetex(sh: &mut Shard, c: &mut Call) -> Result<()> {
    set_with_ttl(sh, c, ExpireUnit::Px, "psetex")
}

fn set_with_ttl(sh: &mut Shard, c: &mut Call, unit: ExpireUnit, cmd: &str) -> Result<()> {
    let at = unit.deadline(c.argv[2], c.now_ms, cmd)?;
    store(sh, c.db, c.argv[1], c.argv[3], Some(at));
    log_set(sh, c.db, c.argv[1], c.argv[3], Some(at), false);
    c.out.ok();
    Ok(())
}

/// GETSET key value
fn getset(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match read_str(sh, c.db, c.argv[1], c.now_ms)? {
        Some(s) => reply_str(&mut c.out, s),
        None => c.out.null(),
    }
    store(sh, c.db, c.argv[1], c.argv[2], None);
    // Logged as SET, as Redis does.
    log_set(sh, c.db, c.argv[1], c.argv[2], None, false);
    Ok(())
}

/// GETDEL key
fn getdel(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match read_str(sh, c.db, c.argv[1], c.now_ms)? {
        Some(s) => reply_str(&mut c.out, s),
        None => {
            c.out.null();
            return Ok(());
        }
    }
    sh.dbs[c.db].remove(c.argv[1]);
    sh.stats.dirty += 1;
    sh.notify(class::GENERIC, "del", c.db, c.argv[1]);
    // Logged as DEL, as Redis does.
    sh.rewrite(c.db, &[b"DEL", c.argv[1]]);
    Ok(())
}

/// GETEX key [EX s | PX ms | EXAT ts | PXAT ms | PERSIST]
fn getex(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let o = parse_ext(c, false)?;
    let key = c.argv[1];
    let Some(s) = read_str(sh, c.db, key, c.now_ms)? else {
        c.out.null();
        return Ok(());
    };
    // Redis checks the expiry only once it knows the key holds a string.
    let expire = match o.expire {
        Some((unit, arg)) => Some((unit, unit.deadline(arg, c.now_ms, "getex")?)),
        None => None,
    };
    reply_str(&mut c.out, s);
    let db = &mut sh.dbs[c.db];
    match expire {
        Some((unit, at)) if unit.absolute() && at <= c.now_ms => {
            db.remove(key);
            sh.stats.dirty += 1;
            sh.notify(class::GENERIC, "del", c.db, key);
            sh.rewrite(c.db, &[b"DEL", key]);
        }
        Some((_, at)) => {
            db.set_expire(key, Some(at));
            sh.stats.dirty += 1;
            sh.notify(class::GENERIC, "expire", c.db, key);
            let mut num = itoa::Buffer::new();
            sh.rewrite(c.db, &[b"PEXPIREAT", key, num.format(at).as_bytes()]);
        }
        None if o.persist && db.get(key, c.now_ms).is_some() && db.expire_at(key).is_some() => {
            db.set_expire(key, None);
            sh.stats.dirty += 1;
            sh.notify(class::GENERIC, "persist", c.db, key);
            sh.rewrite(c.db, &[b"PERSIST", key]);
        }
        None => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Several keys.

/// MGET key [key ...]
fn mget(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let keys = &c.argv[1..];
    c.out.array(keys.len());
    for key in keys {
        // A key of another type reads as nil here, not as an error.
        match lookup_read(sh, c.db, key, c.now_ms).map(Value::as_str) {
            Some(Ok(s)) => reply_str(&mut c.out, s),
            _ => c.out.null(),
        }
    }
    Ok(())
}

/// MSET key value [key value ...]
fn mset(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let pairs = key_value_pairs(c, "mset")?;
    for pair in pairs {
        if let [key, value] = pair {
            store(sh, c.db, key, value, None);
        }
    }
    c.out.ok();
    Ok(())
}

/// MSETNX key value [key value ...]
fn msetnx(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let pairs = key_value_pairs(c, "msetnx")?;
    let db = &mut sh.dbs[c.db];
    if c.argv[1..]
        .iter()
        .step_by(2)
        .any(|key| db.contains(key, c.now_ms))
    {
        c.out.int(0);
        return Ok(());
    }
    for pair in pairs {
        if let [key, value] = pair {
            store(sh, c.db, key, value, None);
        }
    }
    c.out.int(1);
    Ok(())
}

/// The key/value pairs after the command name, or an arity error when one is incomplete.
fn key_value_pairs<'a>(c: &Call<'a>, cmd: &str) -> Result<std::slice::ChunksExact<'a, &'a [u8]>> {
    let args = &c.argv[1..];
    if !args.len().is_multiple_of(2) {
        return Err(Error::WrongArity(cmd.into()));
    }
    Ok(args.chunks_exact(2))
}

// ---------------------------------------------------------------------------------------------
// Changing a string in place.

/// APPEND key value
fn append(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let (key, tail) = (c.argv[1], c.argv[2]);
    let db = &mut sh.dbs[c.db];
    let len = match db.get_mut(key, c.now_ms) {
        None => {
            // A new key takes the value as SET would store it (so it may be an integer).
            let s = Str::from_bytes(tail);
            let len = s.len();
            db.insert(key, Entry::new(Value::Str(s)));
            len
        }
        Some(e) => {
            let s = e.value.as_str_mut()?;
            let len = grown_len(s.len() as u64, tail.len() as u64)?;
            let mut data = std::mem::replace(s, Str::Int(0)).into_bytes();
            data.extend_from_slice(tail);
            *s = Str::raw(data);
            len
        }
    };
    sh.stats.dirty += 1;
    sh.notify(class::STRING, "append", c.db, key);
    c.out.int(len as i64);
    Ok(())
}

/// STRLEN key
fn strlen(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let len = read_str(sh, c.db, c.argv[1], c.now_ms)?.map_or(0, Str::len);
    c.out.int(len as i64);
    Ok(())
}

/// SETRANGE key offset value
fn setrange(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let offset = parse_i64(c.argv[2]).ok_or(Error::NotInteger)?;
    if offset < 0 {
        return Err(Error::err("offset is out of range"));
    }
    let offset = offset as u64;
    let (key, patch) = (c.argv[1], c.argv[3]);
    let db = &mut sh.dbs[c.db];
    let len = match db.get_mut(key, c.now_ms) {
        None => {
            if patch.is_empty() {
                c.out.int(0);
                return Ok(());
            }
            let total = grown_len(offset, patch.len() as u64)?;
            let mut data = Vec::with_capacity(total);
            data.resize(total - patch.len(), 0);
            data.extend_from_slice(patch);
            db.insert(key, Entry::new(Value::Str(Str::raw(data))));
            total
        }
        Some(e) => {
            let s = e.value.as_str_mut()?;
            if patch.is_empty() {
                c.out.int(s.len() as i64);
                return Ok(());
            }
            let total = grown_len(offset, patch.len() as u64)?;
            let mut data = std::mem::replace(s, Str::Int(0)).into_bytes();
            if data.len() < total {
                data.resize(total, 0);
            }
            if let Some(dst) = data.get_mut(total - patch.len()..total) {
                dst.copy_from_slice(patch);
            }
            let len = data.len();
            *s = Str::raw(data);
            len
        }
    };
    sh.stats.dirty += 1;
    sh.notify(class::STRING, "setrange", c.db, key);
    c.out.int(len as i64);
    Ok(())
}

/// GETRANGE key start end (and SUBSTR, its old name)
fn getrange(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let start = parse_i64(c.argv[2]).ok_or(Error::NotInteger)?;
    let end = parse_i64(c.argv[3]).ok_or(Error::NotInteger)?;
    let Some(s) = read_str(sh, c.db, c.argv[1], c.now_ms)? else {
        c.out.bulk(b"");
        return Ok(());
    };
    let bytes = s.as_bytes();
    let part = byte_range(bytes.len(), start, end).and_then(|(from, to)| bytes.get(from..=to));
    c.out.bulk(part.unwrap_or_default());
    Ok(())
}

/// The inclusive byte range GETRANGE answers for a string of `len` bytes: negative offsets
/// count from the end, and the range is clamped to the string. `None` when it is empty.
fn byte_range(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    let len = len as i64;
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    if start > end || len == 0 {
        return None;
    }
    Some((start as usize, end as usize))
}

// ---------------------------------------------------------------------------------------------
// Counters.

/// INCR key
fn incr(sh: &mut Shard, c: &mut Call) -> Result<()> {
    incr_by(sh, c, 1)
}

/// DECR key
fn decr(sh: &mut Shard, c: &mut Call) -> Result<()> {
    incr_by(sh, c, -1)
}

/// INCRBY key increment
fn incrby(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let by = parse_i64(c.argv[2]).ok_or(Error::NotInteger)?;
    incr_by(sh, c, by)
}

/// DECRBY key decrement
fn decrby(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let by = parse_i64(c.argv[2]).ok_or(Error::NotInteger)?;
    let by = by
        .checked_neg()
        .ok_or_else(|| Error::err("decrement would overflow"))?;
    incr_by(sh, c, by)
}

/// Adds `by` to the integer under the key (absent: 0), keeping its TTL.
fn incr_by(sh: &mut Shard, c: &mut Call, by: i64) -> Result<()> {
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    let value = match db.get_mut(key, c.now_ms) {
        Some(e) => {
            let s = e.value.as_str_mut()?;
            let old = s.as_i64().ok_or(Error::NotInteger)?;
            let new = old.checked_add(by).ok_or(Error::Overflow)?;
            *s = Str::Int(new);
            new
        }
        None => {
            db.insert(key, Entry::new(Value::Str(Str::Int(by))));
            by
        }
    };
    sh.stats.dirty += 1;
    sh.notify(class::STRING, "incrby", c.db, key);
    c.out.int(value);
    Ok(())
}

/// INCRBYFLOAT key increment
///
/// Redis adds in C's `long double` and stores the sum as `%.17Lf` text without trailing
/// zeros; [`LongDouble`] reproduces both, so results match digit for digit.
fn incrbyfloat(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    let current = match db.get(key, c.now_ms) {
        Some(e) => match e.value.as_str()? {
            Str::Int(n) => LongDouble::from_i64(*n),
            Str::Bytes { data, .. } => LongDouble::parse(data).ok_or(Error::NotFloat)?,
        },
        None => LongDouble::from_i64(0),
    };
    let by = LongDouble::parse(c.argv[2]).ok_or(Error::NotFloat)?;
    let sum = current + by;
    if !sum.is_finite() {
        return Err(Error::err("increment would produce NaN or Infinity"));
    }
    // Stored as text even when it looks like an integer, as Redis does.
    let text = sum.to_human().into_bytes();
    c.out.bulk(&text);
    // The result is logged, not the increment (Redis logs `SET key result KEEPTTL`, so that
    // no replica redoes floating-point arithmetic).
    log_set(sh, c.db, key, &text, None, true);
    sh.dbs[c.db].set_value_keep_ttl(
        key,
        Value::Str(Str::Bytes {
            data: text.into(),
            raw: false,
        }),
    );
    sh.stats.dirty += 1;
    sh.notify(class::STRING, "incrbyfloat", c.db, key);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// LCS.

/// One run of consecutive matching bytes, as inclusive ranges in each string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LcsMatch {
    a: (usize, usize),
    b: (usize, usize),
}

impl LcsMatch {
    fn len(&self) -> usize {
        self.a.1 - self.a.0 + 1
    }
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]
fn lcs(sh: &mut Shard, c: &mut Call) -> Result<()> {
    // Both keys are looked up (and counted) before either is checked.
    let a = lookup_read(sh, c.db, c.argv[1], c.now_ms)
        .map(|v| v.as_str().map(|s| s.as_bytes().into_owned()));
    let b = lookup_read(sh, c.db, c.argv[2], c.now_ms)
        .map(|v| v.as_str().map(|s| s.as_bytes().into_owned()));
    let (Ok(a), Ok(b)) = (a.transpose(), b.transpose()) else {
        return Err(Error::err("The specified keys must contain string values"));
    };
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    let (mut idx, mut len, mut withmatchlen, mut minmatchlen) = (false, false, false, 0);
    let mut args = c.args(3);
    while let Some(word) = args.next() {
        if eq_ic(word, "idx") {
            idx = true;
        } else if eq_ic(word, "len") {
            len = true;
        } else if eq_ic(word, "withmatchlen") {
            withmatchlen = true;
        } else if eq_ic(word, "minmatchlen") && !args.is_empty() {
            minmatchlen = args.next_i64()?.max(0) as u64;
        } else {
            return Err(Error::Syntax);
        }
    }
    if idx && len {
        return Err(Error::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    let table = lcs_table(&a, &b)?;
    let total = table.last().copied().unwrap_or(0);
    if len {
        c.out.int(total as i64);
        return Ok(());
    }
    let (common, matches) = lcs_walk(&table, &a, &b, minmatchlen);
    if !idx {
        c.out.bulk(&common);
        return Ok(());
    }
    reply_lcs_idx(&mut c.out, &matches, withmatchlen, total);
    Ok(())
}

/// LCS's IDX reply: a map of the matches (ranges in each string, and maybe their length) and
/// the total length.
fn reply_lcs_idx(out: &mut Reply, matches: &[LcsMatch], withmatchlen: bool, total: u32) {
    out.map(2);
    out.bulk(b"matches");
    out.array(matches.len());
    for m in matches {
        out.array(2 + withmatchlen as usize);
        for (from, to) in [m.a, m.b] {
            out.array(2);
            out.int(from as i64);
            out.int(to as i64);
        }
        if withmatchlen {
            out.int(m.len() as i64);
        }
    }
    out.bulk(b"len");
    out.int(total as i64);
}

/// The dynamic-programming table: cell `i * (b.len() + 1) + j` holds the LCS length of the
/// first `i` bytes of `a` and the first `j` of `b`. Its size is bounded like Redis's.
fn lcs_table(a: &[u8], b: &[u8]) -> Result<Vec<u32>> {
    if a.len() >= u32::MAX as usize - 1 || b.len() >= u32::MAX as usize - 1 {
        return Err(Error::err("String too long for LCS"));
    }
    let width = b.len() + 1;
    let cells = (a.len() + 1).saturating_mul(width);
    if cells.saturating_mul(std::mem::size_of::<u32>()) > STRING_LEN_MAX {
        return Err(Error::err(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let mut table = Vec::new();
    if table.try_reserve_exact(cells).is_err() {
        return Err(Error::err(
            "Insufficient memory, failed allocating transient memory for LCS",
        ));
    }
    table.resize(cells, 0u32);
    for (i, &ca) in a.iter().enumerate() {
        let (done, rest) = table.split_at_mut((i + 1) * width);
        let prev = &done[i * width..];
        let row = &mut rest[..width];
        for (j, &cb) in b.iter().enumerate() {
            row[j + 1] = if ca == cb {
                prev[j] + 1
            } else {
                prev[j + 1].max(row[j])
            };
        }
    }
    Ok(table)
}

/// Walks the table back from the end, as Redis does: the common subsequence, and the runs of
/// matching bytes from last to first, those shorter than `minmatchlen` left out.
fn lcs_walk(table: &[u32], a: &[u8], b: &[u8], minmatchlen: u64) -> (Vec<u8>, Vec<LcsMatch>) {
    let width = b.len() + 1;
    let at = |i: usize, j: usize| table.get(i * width + j).copied().unwrap_or(0);
    let mut common = Vec::with_capacity(at(a.len(), b.len()) as usize);
    let mut matches = Vec::new();
    let mut run: Option<LcsMatch> = None;
    let (mut i, mut j) = (a.len(), b.len());
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            common.push(a[i - 1]);
            match &mut run {
                None => {
                    run = Some(LcsMatch {
                        a: (i - 1, i - 1),
                        b: (j - 1, j - 1),
                    })
                }
                Some(m) if m.a.0 == i && m.b.0 == j => {
                    m.a.0 -= 1;
                    m.b.0 -= 1;
                }
                Some(_) => emit = true,
            }
            emit |= run.is_some_and(|m| m.a.0 == 0 || m.b.0 == 0);
            i -= 1;
            j -= 1;
        } else {
            if at(i - 1, j) > at(i, j - 1) {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = run.is_some();
        }
        if emit {
            if let Some(m) = run.take().filter(|m| m.len() as u64 >= minmatchlen) {
                matches.push(m);
            }
        }
    }
    common.reverse();
    (common, matches)
}

#[cfg(test)]
mod tests {
    use crate::resp::Proto;
    use crate::shard::testing::TestShard;

    /// A bulk string reply.
    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    /// OBJECT ENCODING of `key` in the test shard.
    fn encoding(t: &mut TestShard, key: &str) -> &'static str {
        t.shard.dbs[0]
            .get(key.as_bytes(), t.now_ms)
            .map_or("none", |e| e.value.encoding())
    }

    #[test]
    fn get_set() {
        let mut t = TestShard::new();
        assert_eq!(t.run("GET k"), "$-1\r\n");
        assert_eq!(t.run("SET k v"), "+OK\r\n");
        assert_eq!(t.run("GET k"), "$1\r\nv\r\n");
        assert_eq!(t.run("SET k w NX"), "$-1\r\n");
        assert_eq!(t.run("SET k w XX GET"), "$1\r\nv\r\n");
        assert_eq!(t.run("SET k w NX XX"), "-ERR syntax error\r\n");
        assert_eq!(
            t.run("SET k w EX 0"),
            "-ERR invalid expire time in 'set' command\r\n"
        );
        assert_eq!(
            t.run("SET k w EX x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("SET k w PX 100"), "+OK\r\n");
        t.now_ms += 100;
        assert_eq!(t.run("GET k"), "$-1\r\n");
    }

    #[test]
    fn set_options_as_redis_parses_them() {
        let mut t = TestShard::new();
        // A repeated expiry is accepted and the last one wins; different ones conflict.
        assert_eq!(t.run("SET k v PX 10 PX 1000"), "+OK\r\n");
        t.now_ms += 500;
        assert_eq!(t.run("GET k"), bulk("v"));
        assert_eq!(t.run("SET k v EX 10 PX 10"), "-ERR syntax error\r\n");
        assert_eq!(t.run("SET k v KEEPTTL EX 10"), "-ERR syntax error\r\n");
        assert_eq!(t.run("SET k v PERSIST"), "-ERR syntax error\r\n");
        assert_eq!(t.run("SET k v EX"), "-ERR syntax error\r\n");
        // KEEPTTL keeps the deadline set above.
        assert_eq!(t.run("SET k w KEEPTTL"), "+OK\r\n");
        t.now_ms += 500;
        assert_eq!(t.run("GET k"), "$-1\r\n");
        // NX with GET answers the old value and sets nothing.
        t.run("SET k old");
        assert_eq!(t.run("SET k new NX GET"), bulk("old"));
        assert_eq!(t.run("GET k"), bulk("old"));
        assert_eq!(t.run("SET n new NX GET"), "$-1\r\n");
        assert_eq!(t.run("GET n"), bulk("new"));
        assert_eq!(t.run("SET k v PXAT 1"), "+OK\r\n");
        assert_eq!(t.run("GET k"), "$-1\r\n");
    }

    #[test]
    fn setnx_setex_psetex() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SETNX k 1"), ":1\r\n");
        assert_eq!(t.run("SETNX k 2"), ":0\r\n");
        assert_eq!(t.run("GET k"), bulk("1"));
        assert_eq!(encoding(&mut t, "k"), "int");
        assert_eq!(t.run("SETEX k 10 v"), "+OK\r\n");
        t.now_ms += 9_999;
        assert_eq!(t.run("GET k"), bulk("v"));
        t.now_ms += 1;
        assert_eq!(t.run("GET k"), "$-1\r\n");
        assert_eq!(t.run("PSETEX k 5 v"), "+OK\r\n");
        t.now_ms += 5;
        assert_eq!(t.run("GET k"), "$-1\r\n");
        for bad in ["0", "-1", "9223372036854775807", "9223372036854775"] {
            let line = format!("SETEX k {bad} v");
            assert_eq!(
                t.run(&line),
                "-ERR invalid expire time in 'setex' command\r\n",
                "{bad}"
            );
        }
        assert_eq!(
            t.run("PSETEX k 0 v"),
            "-ERR invalid expire time in 'psetex' command\r\n"
        );
        assert_eq!(
            t.run("SETEX k 1.5 v"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t.run("SETEX k 10"),
            "-ERR wrong number of arguments for 'setex' command\r\n"
        );
        assert_eq!(
            t.run("SETNX k"),
            "-ERR wrong number of arguments for 'setnx' command\r\n"
        );
    }

    #[test]
    fn getset_getdel() {
        let mut t = TestShard::new();
        assert_eq!(t.run("GETSET k a"), "$-1\r\n");
        assert_eq!(t.run("GETSET k 12"), bulk("a"));
        assert_eq!(encoding(&mut t, "k"), "int");
        // GETSET drops the old TTL.
        t.run("SET k v PX 10");
        assert_eq!(t.run("GETSET k w"), bulk("v"));
        t.now_ms += 10;
        assert_eq!(t.run("GET k"), bulk("w"));
        assert_eq!(t.run("GETDEL k"), bulk("w"));
        assert_eq!(t.run("GETDEL k"), "$-1\r\n");
        assert_eq!(t.run("EXISTS k"), ":0\r\n");
    }

    #[test]
    fn getex() {
        let mut t = TestShard::new();
        assert_eq!(t.run("GETEX k"), "$-1\r\n");
        // An absent key answers nil before the expiry is checked.
        assert_eq!(t.run("GETEX k EX -1"), "$-1\r\n");
        t.run("SET k v");
        assert_eq!(
            t.run("GETEX k EX -1"),
            "-ERR invalid expire time in 'getex' command\r\n"
        );
        assert_eq!(
            t.run("GETEX k EX x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        for bad in [
            "EX 1 PX 1",
            "PERSIST EX 1",
            "EX 1 PERSIST",
            "PX",
            "KEEPTTL",
            "NX",
            "FOO",
        ] {
            let line = format!("GETEX k {bad}");
            assert_eq!(t.run(&line), "-ERR syntax error\r\n", "{bad}");
        }
        assert_eq!(t.run("GETEX k PX 100"), bulk("v"));
        t.now_ms += 50;
        assert_eq!(t.run("GETEX k PERSIST PERSIST"), bulk("v"));
        t.now_ms += 100;
        assert_eq!(t.run("GETEX k EX 1 EX 2"), bulk("v"));
        t.now_ms += 1_999;
        assert_eq!(t.run("GET k"), bulk("v"));
        let at = (t.now_ms + 10).to_string();
        assert_eq!(t.run(&format!("GETEX k PXAT {at}")), bulk("v"));
        t.now_ms += 10;
        assert_eq!(t.run("GET k"), "$-1\r\n");
        // A deadline already past deletes the key after answering.
        t.run("SET k v");
        assert_eq!(t.run("GETEX k EXAT 1"), bulk("v"));
        assert_eq!(t.run("EXISTS k"), ":0\r\n");
        assert_eq!(
            t.run("GETEX"),
            "-ERR wrong number of arguments for 'getex' command\r\n"
        );
    }

    #[test]
    fn mget_mset_msetnx() {
        let mut t = TestShard::new();
        assert_eq!(t.run("MSET a 1 b 2 a 3"), "+OK\r\n");
        assert_eq!(t.run("MGET a b c"), "*3\r\n$1\r\n3\r\n$1\r\n2\r\n$-1\r\n");
        assert_eq!(
            t.run("MSET a 1 b"),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
        assert_eq!(
            t.run("MSETNX c 1 b"),
            "-ERR wrong number of arguments for 'msetnx' command\r\n"
        );
        assert_eq!(t.run("MSETNX c 1 a 2"), ":0\r\n");
        assert_eq!(t.run("EXISTS c"), ":0\r\n");
        assert_eq!(t.run("MSETNX c 1 d 2 c 3"), ":1\r\n");
        assert_eq!(t.run("MGET c d"), "*2\r\n$1\r\n3\r\n$1\r\n2\r\n");
        // MSET drops TTLs like SET.
        t.run("SET a v PX 10");
        t.run("MSET a w");
        t.now_ms += 10;
        assert_eq!(t.run("GET a"), bulk("w"));
        t.proto = Proto::Resp3;
        assert_eq!(t.run("MGET a zz"), "*2\r\n$1\r\nw\r\n_\r\n");
    }

    #[test]
    fn append_strlen() {
        let mut t = TestShard::new();
        assert_eq!(t.run("STRLEN k"), ":0\r\n");
        assert_eq!(t.run("APPEND k 123"), ":3\r\n");
        assert_eq!(encoding(&mut t, "k"), "int");
        assert_eq!(t.run("APPEND k 4"), ":4\r\n");
        assert_eq!(encoding(&mut t, "k"), "raw");
        assert_eq!(t.run("GET k"), bulk("1234"));
        assert_eq!(
            t.run("APPEND k"),
            "-ERR wrong number of arguments for 'append' command\r\n"
        );
        assert_eq!(t.run_args(&[b"APPEND", b"k", b""]), ":4\r\n");
        assert_eq!(t.run("STRLEN k"), ":4\r\n");
        t.run("SET n -12345");
        assert_eq!(t.run("STRLEN n"), ":6\r\n");
        // APPEND keeps the TTL.
        t.run("SET k v PX 10");
        t.run("APPEND k w");
        t.now_ms += 10;
        assert_eq!(t.run("GET k"), "$-1\r\n");
    }

    #[test]
    fn incr_decr() {
        let mut t = TestShard::new();
        assert_eq!(t.run("INCR n"), ":1\r\n");
        assert_eq!(t.run("INCRBY n 10"), ":11\r\n");
        assert_eq!(t.run("DECR n"), ":10\r\n");
        assert_eq!(t.run("DECRBY n 20"), ":-10\r\n");
        assert_eq!(t.run("DECRBY m -5"), ":5\r\n");
        assert_eq!(encoding(&mut t, "n"), "int");
        let not_int = "-ERR value is not an integer or out of range\r\n";
        assert_eq!(t.run("INCRBY n 1.5"), not_int);
        assert_eq!(t.run("INCRBY n 9223372036854775808"), not_int);
        for v in ["abc", "1.0", " 1", "01", "+1", "-0", ""] {
            t.run_args(&[b"SET", b"s", v.as_bytes()]);
            assert_eq!(t.run("INCR s"), not_int, "{v:?}");
        }
        t.run("SET big 9223372036854775807");
        assert_eq!(
            t.run("INCR big"),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(
            t.run("DECRBY big -1"),
            "-ERR increment or decrement would overflow\r\n"
        );
        t.run("SET small -9223372036854775808");
        assert_eq!(
            t.run("DECR small"),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(
            t.run("DECRBY x -9223372036854775808"),
            "-ERR decrement would overflow\r\n"
        );
        assert_eq!(
            t.run("INCRBY x -9223372036854775808"),
            ":-9223372036854775808\r\n"
        );
        // A numeric string stored as text still counts; the TTL stays.
        t.run_args(&[b"SET", b"t", b"41", b"PX", b"10"]);
        assert_eq!(t.run("INCR t"), ":42\r\n");
        t.now_ms += 10;
        assert_eq!(t.run("GET t"), "$-1\r\n");
    }

    #[test]
    fn incrbyfloat() {
        let mut t = TestShard::new();
        t.run("SET f 10.50");
        assert_eq!(t.run("INCRBYFLOAT f 0.1"), bulk("10.6"));
        assert_eq!(t.run("INCRBYFLOAT f -5"), bulk("5.6"));
        t.run("SET f 5.0e3");
        assert_eq!(t.run("INCRBYFLOAT f 2.0e2"), bulk("5200"));
        // Stored as text even when whole.
        assert_eq!(encoding(&mut t, "f"), "embstr");
        // long double arithmetic, as Redis: not what f64 gives.
        t.run("SET f 0.1");
        assert_eq!(t.run("INCRBYFLOAT f 0.2"), bulk("0.3"));
        t.run("SET f 1.1");
        assert_eq!(t.run("INCRBYFLOAT f 2.2"), bulk("3.3"));
        t.run("SET f 1000000");
        assert_eq!(
            t.run("INCRBYFLOAT f 0.1"),
            bulk("1000000.10000000000002274")
        );
        t.run("SET f 9223372036854775807");
        assert_eq!(t.run("INCRBYFLOAT f 1"), bulk("9223372036854775808"));
        assert_eq!(t.run("INCRBYFLOAT g 1.5e-7"), bulk("0.00000015"));
        assert_eq!(t.run("INCRBYFLOAT g 0x10"), bulk("16.00000015"));
        assert_eq!(t.run("INCRBYFLOAT h -1e-20"), bulk("0"));
        let not_float = "-ERR value is not a valid float\r\n";
        for bad in ["x", "1e", ".", "nan", " 1", "1 ", "1e4933", "1e-5000"] {
            let reply = t.run_args(&[b"INCRBYFLOAT", b"h", bad.as_bytes()]);
            assert_eq!(reply, not_float, "{bad:?}");
        }
        t.run("SET s abc");
        assert_eq!(t.run("INCRBYFLOAT s 1"), not_float);
        let nan_inf = "-ERR increment would produce NaN or Infinity\r\n";
        assert_eq!(t.run("INCRBYFLOAT h inf"), nan_inf);
        t.run("SET h 1.18e4932");
        assert_eq!(t.run("INCRBYFLOAT h 1.18e4932"), nan_inf);
        // Huge values print every digit, as %.17Lf does.
        assert_eq!(
            t.run("INCRBYFLOAT huge 1e400").len(),
            "$401\r\n".len() + 401 + 2
        );
        // The TTL stays.
        t.run_args(&[b"SET", b"t", b"1", b"PX", b"10"]);
        assert_eq!(t.run("INCRBYFLOAT t 1"), bulk("2"));
        t.now_ms += 10;
        assert_eq!(t.run("GET t"), "$-1\r\n");
    }

    #[test]
    fn getrange_substr() {
        let mut t = TestShard::new();
        t.run_args(&[b"SET", b"s", b"Hello World"]);
        let cases = [
            ("0 4", "Hello"),
            ("-3 -1", "rld"),
            ("0 -1", "Hello World"),
            ("-1 -5", ""),
            ("5 3", ""),
            ("-100 100", "Hello World"),
            ("20 30", ""),
            ("-5 -3", "Wor"),
            ("0 0", "H"),
            ("-1 -1", "d"),
            ("-9223372036854775808 9223372036854775807", "Hello World"),
        ];
        for (range, want) in cases {
            assert_eq!(t.run(&format!("GETRANGE s {range}")), bulk(want), "{range}");
            assert_eq!(t.run(&format!("SUBSTR s {range}")), bulk(want), "{range}");
        }
        assert_eq!(t.run("GETRANGE none 0 -1"), bulk(""));
        t.run("SET i 12345");
        assert_eq!(t.run("GETRANGE i 1 -2"), bulk("234"));
        assert_eq!(
            t.run("GETRANGE s x 1"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t.run("GETRANGE s 0"),
            "-ERR wrong number of arguments for 'getrange' command\r\n"
        );
        t.run_args(&[b"SET", b"e", b""]);
        assert_eq!(t.run("GETRANGE e 0 -1"), bulk(""));
    }

    #[test]
    fn setrange() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SETRANGE k 3 ab"), ":5\r\n");
        assert_eq!(t.run("GET k"), bulk("\0\0\0ab"));
        assert_eq!(encoding(&mut t, "k"), "raw");
        assert_eq!(t.run("SETRANGE k 1 xyz"), ":5\r\n");
        assert_eq!(t.run("GET k"), bulk("\0xyzb"));
        assert_eq!(t.run("SETRANGE k 7 !"), ":8\r\n");
        assert_eq!(t.run("GET k"), bulk("\0xyzb\0\0!"));
        // Nothing to write: the length, and no key created.
        assert_eq!(t.run_args(&[b"SETRANGE", b"k", b"100", b""]), ":8\r\n");
        assert_eq!(t.run_args(&[b"SETRANGE", b"new", b"5", b""]), ":0\r\n");
        assert_eq!(t.run("EXISTS new"), ":0\r\n");
        t.run("SET n 12");
        assert_eq!(t.run("SETRANGE n 1 9"), ":2\r\n");
        assert_eq!(t.run("GET n"), bulk("19"));
        assert_eq!(encoding(&mut t, "n"), "raw");
        assert_eq!(t.run("SETRANGE k -1 x"), "-ERR offset is out of range\r\n");
        assert_eq!(
            t.run("SETRANGE k x x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        let too_big = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n";
        assert_eq!(t.run("SETRANGE k 536870911 ab"), too_big);
        assert_eq!(t.run("SETRANGE k 9223372036854775807 x"), too_big);
        assert_eq!(t.run("SETRANGE big 536870912 x"), too_big);
        assert_eq!(t.run("EXISTS big"), ":0\r\n");
    }

    #[test]
    fn lcs() {
        let mut t = TestShard::new();
        t.run("MSET key1 ohmytext key2 mynewtext");
        assert_eq!(t.run("LCS key1 key2"), bulk("mytext"));
        assert_eq!(t.run("LCS key1 key2 LEN"), ":6\r\n");
        assert_eq!(
            t.run("LCS key1 key2 IDX"),
            "*4\r\n$7\r\nmatches\r\n*2\r\n*2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n\
             *2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n$3\r\nlen\r\n:6\r\n"
        );
        assert_eq!(
            t.run("LCS key1 key2 IDX MINMATCHLEN 4 WITHMATCHLEN"),
            "*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n$3\r\nlen\r\n:6\r\n"
        );
        t.proto = Proto::Resp3;
        assert_eq!(
            t.run("LCS key1 key2 IDX WITHMATCHLEN MINMATCHLEN -1"),
            "%2\r\n$7\r\nmatches\r\n*2\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
             *3\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n:2\r\n$3\r\nlen\r\n:6\r\n"
        );
        assert_eq!(
            t.run("LCS key1 none IDX"),
            "%2\r\n$7\r\nmatches\r\n*0\r\n$3\r\nlen\r\n:0\r\n"
        );
        assert_eq!(t.run("LCS none none2"), bulk(""));
        assert_eq!(
            t.run("LCS key1 key2 IDX LEN"),
            "-ERR If you want both the length and indexes, please just use IDX.\r\n"
        );
        assert_eq!(t.run("LCS key1 key2 MINMATCHLEN"), "-ERR syntax error\r\n");
        assert_eq!(t.run("LCS key1 key2 FOO"), "-ERR syntax error\r\n");
        assert_eq!(
            t.run("LCS key1 key2 MINMATCHLEN x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t.run("LCS key1"),
            "-ERR wrong number of arguments for 'lcs' command\r\n"
        );
        t.run("SET i 12345");
        t.run("SET j 92349");
        assert_eq!(t.run("LCS i j LEN"), ":3\r\n");
    }

    #[test]
    fn stats() {
        let mut t = TestShard::new();
        t.run("SET a 1");
        t.run("GET a");
        t.run("GET b");
        t.run("MGET a b c");
        t.run("STRLEN a");
        t.run("GETRANGE b 0 1");
        t.run("LCS a b");
        // Writes that look keys up for writing count nothing.
        t.run("INCR a");
        t.run("SETNX a 2");
        t.run("APPEND c x");
        assert_eq!(t.shard.stats.keyspace_hits, 4);
        assert_eq!(t.shard.stats.keyspace_misses, 5);
        let dirty = t.shard.stats.dirty;
        t.run("MSET x 1 y 2");
        t.run("GETDEL x");
        t.run("GETDEL x");
        t.run("GETEX y PERSIST");
        t.run("SETRANGE y 0 z");
        t.run_args(&[b"SETRANGE", b"y", b"0", b""]);
        assert_eq!(t.shard.stats.dirty, dirty + 4);
    }
}
