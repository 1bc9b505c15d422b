//! The search commands (RediSearch 2.8's FT.* over hashes, see [`crate::search`]) and MODULE
//! LIST, which reports a `search` module so that clients checking for it accept the server.
//!
//! FT.CREATE, FT.ALTER and FT.DROPINDEX run on every shard (each keeps the same definitions).
//! FT.SEARCH, FT.AGGREGATE and FT.INFO run on every shard too: each shard answers with a
//! *part* (its own matches, encoded by this module as one bulk string), and the connection's
//! shard merges the parts ([`merge_parts`]) into the reply the client sees. When the command
//! runs whole on one shard (one shard in the process, or inside a script or transaction), that
//! shard's part is rendered directly.

use super::spec::{acl, flag, Arg, ArgType, CommandSpec, Group, Merge, Route};
use super::Call;
use crate::resp::{Proto, Reply};
use crate::search::query::{self, Node};
use crate::search::schema::{self, Kind};
use crate::search::{Index, Indexes};
use crate::types::Value;
use crate::util::eq_ic;
use crate::{Error, Result, Shard};
use std::collections::HashMap;

const SEARCH: CommandSpec = CommandSpec {
    group: Group::Search,
    acl: acl::SEARCH,
    since: "1.0.0",
    complexity: "O(N)",
    ..CommandSpec::DEFAULT
};

/// The module version MODULE LIST reports (RediSearch 2.8.0).
pub const MODULE_VERSION: i64 = 20800;
/// Most results one FT.SEARCH may ask for (RediSearch's MAXSEARCHRESULTS default).
pub const SEARCH_RESULTS_MAX: u64 = 10_000;
/// Times a query runs again after finding documents whose keys are gone.
const STALE_RETRIES: usize = 3;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ft.create",
        arity: -2,
        flags: flag::WRITE | flag::DENYOOM,
        route: Route::AllShards(Merge::First),
        run: Some(ft_create),
        summary: "Creates an index over hashes with the given schema.",
        args: &[
            Arg::new("index", ArgType::String),
            Arg::new("schema", ArgType::String).multiple(),
        ],
        ..SEARCH
    },
    CommandSpec {
        name: "ft.search",
        arity: -3,
        flags: flag::READONLY,
        route: Route::AllShards(Merge::Search),
        run: Some(ft_search),
        summary: "Searches an index with a query, returning documents or only their keys.",
        args: &[
            Arg::new("index", ArgType::String),
            Arg::new("query", ArgType::String),
        ],
        ..SEARCH
    },
    CommandSpec {
        name: "ft.aggregate",
        arity: -3,
        flags: flag::READONLY,
        route: Route::AllShards(Merge::Search),
        run: Some(ft_aggregate),
        summary: "Runs a query and groups, reduces, sorts and limits its results.",
        args: &[
            Arg::new("index", ArgType::String),
            Arg::new("query", ArgType::String),
        ],
        ..SEARCH
    },
    CommandSpec {
        name: "ft.info",
        arity: 2,
        flags: flag::READONLY,
        route: Route::AllShards(Merge::Search),
        run: Some(ft_info),
        summary: "Describes an index: its definition, size and indexing progress.",
        complexity: "O(1)",
        args: &[Arg::new("index", ArgType::String)],
        ..SEARCH
    },
    CommandSpec {
        name: "ft.dropindex",
        arity: -2,
        flags: flag::WRITE,
        route: Route::AllShards(Merge::First),
        run: Some(ft_dropindex),
        summary: "Deletes an index, and with DD the documents it indexed.",
        complexity: "O(1) or O(N) with DD",
        args: &[
            Arg::new("index", ArgType::String),
            Arg::token("dd", "DD").optional(),
        ],
        ..SEARCH
    },
    CommandSpec {
        name: "ft.drop",
        arity: -2,
        flags: flag::WRITE,
        route: Route::AllShards(Merge::First),
        run: Some(ft_dropindex),
        summary: "Deletes an index and the documents it indexed, unless KEEPDOCS.",
        complexity: "O(N)",
        deprecated: Some(("2.0.0", "`FT.DROPINDEX`")),
        args: &[
            Arg::new("index", ArgType::String),
            Arg::token("keepdocs", "KEEPDOCS").optional(),
        ],
        ..SEARCH
    },
    CommandSpec {
        name: "ft._list",
        arity: 1,
        flags: flag::READONLY,
        run: Some(ft_list),
        summary: "Lists the names of every index.",
        complexity: "O(1)",
        ..SEARCH
    },
    CommandSpec {
        name: "ft.alter",
        arity: -5,
        flags: flag::WRITE | flag::DENYOOM,
        route: Route::AllShards(Merge::First),
        run: Some(ft_alter),
        summary: "Adds fields to an index's schema.",
        args: &[
            Arg::new("index", ArgType::String),
            Arg::new("field", ArgType::String).multiple(),
        ],
        ..SEARCH
    },
    CommandSpec {
        name: "ft.explain",
        arity: -3,
        flags: flag::READONLY,
        run: Some(ft_explain),
        summary: "Shows how a query is parsed.",
        args: &[
            Arg::new("index", ArgType::String),
            Arg::new("query", ArgType::String),
        ],
        ..SEARCH
    },
    CommandSpec {
        name: "ft.explaincli",
        arity: -3,
        flags: flag::READONLY,
        run: Some(ft_explaincli),
        summary: "Shows how a query is parsed, one line per element.",
        args: &[
            Arg::new("index", ArgType::String),
            Arg::new("query", ArgType::String),
        ],
        ..SEARCH
    },
    CommandSpec {
        name: "module",
        arity: -2,
        group: Group::Server,
        summary: "A container for module commands.",
        since: "4.0.0",
        complexity: "Depends on subcommand.",
        subcommands: &[CommandSpec {
            name: "list",
            arity: 2,
            flags: flag::ADMIN | flag::NOSCRIPT,
            group: Group::Server,
            run: Some(module_list),
            summary: "Returns the loaded modules (shardis reports its built-in search).",
            since: "4.0.0",
            complexity: "O(N) where N is the number of loaded modules.",
            ..CommandSpec::DEFAULT
        }],
        ..CommandSpec::DEFAULT
    },
];

fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

fn no_such_index(name: &str) -> Error {
    Error::Other(format!("{name}: no such index"))
}

fn unknown_index() -> Error {
    Error::Other("Unknown Index name".into())
}

/// RediSearch's number format for distances and computed values (`%.12g`).
pub fn fmt_g(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "nan"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .into();
    }
    let exp = x.abs().log10().floor() as i32;
    if !(-5..12).contains(&exp) {
        let s = format!("{:.11e}", x);
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = trim_zeros(m);
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    let decimals = (11 - exp).max(0) as usize;
    trim_zeros(&format!("{:.*}", decimals, x)).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A number as aggregate replies show it: integral values without a fraction.
fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        fmt_g(x)
    }
}

// ---------------------------------------------------------------------------------------------
// Parts: what one shard answers, as bytes.

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u64()?;
        self.take(usize::try_from(n).ok()?)
    }
    fn args(&mut self) -> Option<Vec<&'a [u8]>> {
        let n = self.u64()?;
        if n > self.0.len() as u64 {
            return None;
        }
        (0..n).map(|_| self.bytes()).collect()
    }
}

fn write_args(w: &mut Writer, argv: &[&[u8]]) {
    w.u64(argv.len() as u64);
    for a in argv {
        w.bytes(a);
    }
}

/// The value a result is sorted by.
#[derive(Debug, Clone, PartialEq)]
enum SortVal {
    Missing,
    Num(f64),
    Str(Vec<u8>),
}

/// One FT.SEARCH result.
#[derive(Debug, Clone)]
struct Row {
    key: Vec<u8>,
    /// Text score, or the distance for KNN.
    score: f64,
    sort: SortVal,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    /// Best text score first.
    Score,
    /// Nearest first (KNN).
    Dist,
    /// By a field's value.
    Field { asc: bool },
}

fn cmp_rows(order: Order, a: &Row, b: &Row) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let by = match order {
        Order::Score => b.score.total_cmp(&a.score),
        Order::Dist => a.score.total_cmp(&b.score),
        Order::Field { asc } => match (&a.sort, &b.sort) {
            (SortVal::Missing, SortVal::Missing) => Equal,
            (SortVal::Missing, _) => Greater,
            (_, SortVal::Missing) => Less,
            (x, y) => {
                let o = match (x, y) {
                    (SortVal::Num(p), SortVal::Num(q)) => p.total_cmp(q),
                    (SortVal::Num(_), SortVal::Str(_)) => Less,
                    (SortVal::Str(_), SortVal::Num(_)) => Greater,
                    (SortVal::Str(p), SortVal::Str(q)) => p.cmp(q),
                    _ => Equal,
                };
                if asc {
                    o
                } else {
                    o.reverse()
                }
            }
        },
    };
    by.then_with(|| a.key.cmp(&b.key))
}

// ---------------------------------------------------------------------------------------------
// FT.CREATE, FT.ALTER, FT.DROPINDEX, FT._LIST, FT.EXPLAIN, MODULE LIST.

/// FT.CREATE index [ON HASH] [PREFIX n p…] … SCHEMA field type [options] …
fn ft_create(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let def = schema::parse_create(c.argv)?;
    if sh.search.map.contains_key(&def.name) {
        return Err(Error::Other("Index already exists".into()));
    }
    let args = c.argv.iter().map(|a| a.to_vec()).collect();
    sh.search
        .map
        .insert(def.name.clone(), Index::new(def, args));
    if sh.id == 0 {
        crate::search::publish(sh.search.encode());
    }
    // Small keyspaces are indexed at once; larger ones by the background cursor.
    if sh.dbs[0].len() <= crate::search::SCAN_STEP_KEYS {
        sh.search_step(c.now_ms);
    }
    sh.stats.dirty += 1;
    c.out.ok();
    Ok(())
}

/// FT.ALTER index [SKIPINITIALSCAN] SCHEMA ADD field type [options] …
fn ft_alter(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let name = text(c.argv[1]);
    let mut i = 2;
    if eq_ic(c.argv[i], "SKIPINITIALSCAN") {
        i += 1;
    }
    if !(c.argv.get(i).is_some_and(|a| eq_ic(a, "SCHEMA"))
        && c.argv.get(i + 1).is_some_and(|a| eq_ic(a, "ADD")))
    {
        return Err(Error::Other("Unknown action passed to ALTER SCHEMA".into()));
    }
    let idx = sh.search.map.get_mut(&name).ok_or_else(unknown_index)?;
    let added = &c.argv[i + 2..];
    let fields = schema::parse_fields(added, &idx.def.fields)?;
    if fields.is_empty() {
        return Err(Error::Other("No fields provided".into()));
    }
    idx.add_fields(fields, added);
    if sh.id == 0 {
        crate::search::publish(sh.search.encode());
    }
    sh.stats.dirty += 1;
    c.out.ok();
    Ok(())
}

/// FT.DROPINDEX index [DD], and the deprecated FT.DROP index [KEEPDOCS] (which deletes the
/// documents by default; redis-py 4 sends it, with an empty argument for "delete").
fn ft_dropindex(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let name = text(c.argv[1]);
    let legacy = eq_ic(c.argv[0], "FT.DROP");
    let dd = match c.argv.get(2) {
        None => legacy,
        Some(_) if c.argv.len() > 3 => return Err(Error::Syntax),
        Some(a) if !legacy && eq_ic(a, "DD") => true,
        Some(a) if legacy && eq_ic(a, "KEEPDOCS") => false,
        Some(a) if legacy && a.is_empty() => true,
        Some(_) => return Err(Error::Syntax),
    };
    let idx = sh.search.map.remove(&name).ok_or_else(unknown_index)?;
    if sh.id == 0 {
        crate::search::publish(sh.search.encode());
    }
    if dd {
        // Logged as the drop plus a DEL per document: a replica or a replay, whose index may
        // not hold the same documents yet, deletes exactly these keys.
        sh.rewrite(0, &[b"FT.DROPINDEX", c.argv[1]]);
        for d in idx.all_docs() {
            if let Some(key) = idx.key_of(d) {
                let key = key.to_vec();
                if sh.dbs[0].remove(&key).is_some() {
                    sh.stats.dirty += 1;
                    sh.rewrite(0, &[b"DEL", &key]);
                    sh.search.touch(&sh.dbs[0], &key, c.now_ms);
                }
            }
        }
    }
    sh.stats.dirty += 1;
    c.out.ok();
    Ok(())
}

/// FT._LIST
fn ft_list(sh: &mut Shard, c: &mut Call) -> Result<()> {
    c.out.array(sh.search.map.len());
    for name in sh.search.map.keys() {
        c.out.bulk(name.as_bytes());
    }
    Ok(())
}

/// PARAMS n name value … anywhere after the query, as FT.EXPLAIN/SEARCH/AGGREGATE take them.
fn params_of(argv: &[&[u8]], from: usize) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    let mut i = from;
    while i < argv.len() {
        if eq_ic(argv[i], "PARAMS") {
            let n = argv
                .get(i + 1)
                .and_then(|a| crate::util::parse_i64(a))
                .filter(|n| *n >= 0 && n % 2 == 0)
                .ok_or_else(|| {
                    Error::Other(
                        "Bad arguments for PARAMS: Expected an even number of arguments".into(),
                    )
                })? as usize;
            let pairs = argv.get(i + 2..i + 2 + n).ok_or_else(|| {
                Error::Other(
                    "Bad arguments for PARAMS: Expected an argument, but none provided".into(),
                )
            })?;
            for p in pairs.chunks(2) {
                out.insert(text(p[0]), p[1].to_vec());
            }
            i += 2 + n;
        } else {
            i += 1;
        }
    }
    Ok(out)
}

fn explain_of(sh: &Shard, argv: &[&[u8]]) -> Result<String> {
    let name = text(argv[1]);
    if !sh.search.map.contains_key(&name) {
        return Err(no_such_index(&name));
    }
    let params = params_of(argv, 3)?;
    Ok(query::explain(&query::parse(argv[2], &params)?))
}

/// FT.EXPLAIN index query [DIALECT n] [PARAMS …]
fn ft_explain(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let e = explain_of(sh, c.argv)?;
    c.out.bulk(e.as_bytes());
    Ok(())
}

/// FT.EXPLAINCLI index query
fn ft_explaincli(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let e = explain_of(sh, c.argv)?;
    let lines: Vec<&str> = e.lines().collect();
    c.out.array(lines.len());
    for l in lines {
        c.out.bulk(l.as_bytes());
    }
    Ok(())
}

/// MODULE LIST: the built-in search, as RediSearch 2.8 would be listed.
fn module_list(_sh: &mut Shard, c: &mut Call) -> Result<()> {
    c.out.array(1);
    c.out.map(4);
    for (k, v) in [("name", "search"), ("ver", "")] {
        c.out.bulk(k.as_bytes());
        if v.is_empty() {
            c.out.int(MODULE_VERSION);
        } else {
            c.out.bulk(v.as_bytes());
        }
    }
    c.out.bulk(b"path");
    c.out.bulk(b"built-in");
    c.out.bulk(b"args");
    c.out.array(0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// FT.SEARCH

/// FT.SEARCH's options.
struct SearchOpts {
    index: String,
    query: Vec<u8>,
    nocontent: bool,
    withscores: bool,
    /// RETURN's (field, name) pairs.
    ret: Option<Vec<(String, String)>>,
    sortby: Option<(String, bool)>,
    offset: u64,
    num: u64,
    params: HashMap<String, Vec<u8>>,
}

fn count_arg(argv: &[&[u8]], i: usize, what: &str) -> Result<usize> {
    argv.get(i)
        .and_then(|a| crate::util::parse_i64(a))
        .filter(|n| *n >= 0 && (i as i64 + *n) < argv.len() as i64)
        .map(|n| n as usize)
        .ok_or_else(|| {
            Error::Other(format!(
                "Bad arguments for {what}: Expected an argument, but none provided"
            ))
        })
}

fn strip_at(a: &[u8]) -> String {
    text(a.strip_prefix(b"@").unwrap_or(a))
}

fn parse_search(argv: &[&[u8]]) -> Result<SearchOpts> {
    let mut o = SearchOpts {
        index: text(argv[1]),
        query: argv[2].to_vec(),
        nocontent: false,
        withscores: false,
        ret: None,
        sortby: None,
        offset: 0,
        num: 10,
        params: HashMap::new(),
    };
    let mut i = 3;
    let num_of = |a: Option<&&[u8]>| -> Result<u64> {
        a.and_then(|a| crate::util::parse_i64(a))
            .filter(|n| *n >= 0)
            .map(|n| n as u64)
            .ok_or_else(|| {
                Error::Other(
                    "Bad arguments for LIMIT: Value is not an integer or out of range".into(),
                )
            })
    };
    while i < argv.len() {
        let a = argv[i];
        i += 1;
        if eq_ic(a, "NOCONTENT") {
            o.nocontent = true;
        } else if eq_ic(a, "WITHSCORES") {
            o.withscores = true;
        } else if [
            "VERBATIM",
            "NOSTOPWORDS",
            "WITHPAYLOADS",
            "WITHSORTKEYS",
            "INORDER",
            "EXPLAINSCORE",
        ]
        .iter()
        .any(|w| eq_ic(a, w))
        {
        } else if [
            "TIMEOUT", "DIALECT", "LANGUAGE", "SCORER", "SLOP", "EXPANDER", "PAYLOAD",
        ]
        .iter()
        .any(|w| eq_ic(a, w))
        {
            if i >= argv.len() {
                return Err(Error::Other(format!(
                    "Bad arguments for {}: Expected an argument, but none provided",
                    text(a).to_uppercase()
                )));
            }
            if eq_ic(a, "DIALECT")
                && !crate::util::parse_i64(argv[i]).is_some_and(|d| (1..=4).contains(&d))
            {
                return Err(Error::Other(
                    "DIALECT requires a non negative integer >=1 and <= 4".into(),
                ));
            }
            i += 1;
        } else if eq_ic(a, "RETURN") {
            let n = count_arg(argv, i, "RETURN")?;
            let mut ret = Vec::new();
            let mut j = i + 1;
            let end = i + 1 + n;
            while j < end {
                let f = strip_at(argv[j]);
                j += 1;
                let mut name = f.clone();
                if j + 1 < end + 1 && j < end && eq_ic(argv[j], "AS") && j + 1 < end {
                    name = text(argv[j + 1]);
                    j += 2;
                }
                ret.push((f, name));
            }
            o.ret = Some(ret);
            i = end;
        } else if eq_ic(a, "SORTBY") {
            let f = argv.get(i).map(|f| strip_at(f)).ok_or(Error::Syntax)?;
            i += 1;
            let mut asc = true;
            if let Some(d) = argv.get(i) {
                if eq_ic(d, "ASC") || eq_ic(d, "DESC") {
                    asc = eq_ic(d, "ASC");
                    i += 1;
                }
            }
            if argv.get(i).is_some_and(|w| eq_ic(w, "WITHCOUNT")) {
                i += 1;
            }
            o.sortby = Some((f, asc));
        } else if eq_ic(a, "LIMIT") {
            o.offset = num_of(argv.get(i))?;
            o.num = num_of(argv.get(i + 1))?;
            i += 2;
            if o.offset.saturating_add(o.num) > SEARCH_RESULTS_MAX {
                return Err(Error::Other(format!(
                    "LIMIT exceeds maximum of {SEARCH_RESULTS_MAX}"
                )));
            }
        } else if eq_ic(a, "PARAMS") {
            let n = count_arg(argv, i, "PARAMS")?;
            if n % 2 != 0 {
                return Err(Error::Other(
                    "Bad arguments for PARAMS: Expected an even number of arguments".into(),
                ));
            }
            for p in argv[i + 1..i + 1 + n].chunks(2) {
                o.params.insert(text(p[0]), p[1].to_vec());
            }
            i += 1 + n;
        } else if eq_ic(a, "FILTER") {
            // FILTER numeric_field min max: the legacy numeric filter, as a range node.
            let (f, lo, hi) = (argv.get(i), argv.get(i + 1), argv.get(i + 2));
            let (Some(f), Some(lo), Some(hi)) = (f, lo, hi) else {
                return Err(Error::Syntax);
            };
            let q = format!(
                "({}) @{}:[{} {}]",
                String::from_utf8_lossy(&o.query),
                strip_at(f),
                text(lo),
                text(hi)
            );
            o.query = q.into_bytes();
            i += 3;
        } else if eq_ic(a, "INKEYS") || eq_ic(a, "INFIELDS") {
            let n = count_arg(argv, i, &text(a))?;
            i += 1 + n;
        } else {
            return Err(Error::Other(format!(
                "Unknown argument `{}` at position {}",
                text(a),
                i - 1
            )));
        }
    }
    Ok(o)
}

/// The hash field a query names by its schema alias (or by its own name).
fn hash_field<'a>(idx: &'a Index, name: &'a str) -> &'a str {
    idx.field(name).map_or(name, |(_, f)| f.name.as_str())
}

/// One shard's FT.SEARCH answer.
struct SearchPart {
    total: u64,
    knn_k: Option<u64>,
    order: Order,
    offset: u64,
    num: u64,
    withscores: bool,
    nocontent: bool,
    rows: Vec<Row>,
}

impl SearchPart {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.push(b'S');
        w.u64(self.total);
        w.u64(self.knn_k.map_or(u64::MAX, |k| k));
        let (o, asc) = match self.order {
            Order::Score => (0, 0),
            Order::Dist => (1, 0),
            Order::Field { asc } => (2, asc as u64),
        };
        w.u64(o);
        w.u64(asc);
        w.u64(self.offset);
        w.u64(self.num);
        w.u64(self.withscores as u64 | (self.nocontent as u64) << 1);
        w.u64(self.rows.len() as u64);
        for r in &self.rows {
            w.bytes(&r.key);
            w.f64(r.score);
            match &r.sort {
                SortVal::Missing => w.u64(0),
                SortVal::Num(n) => {
                    w.u64(1);
                    w.f64(*n);
                }
                SortVal::Str(s) => {
                    w.u64(2);
                    w.bytes(s);
                }
            }
            w.u64(r.fields.len() as u64);
            for (k, v) in &r.fields {
                w.bytes(k);
                w.bytes(v);
            }
        }
        w.0
    }

    fn decode(r: &mut Reader) -> Option<SearchPart> {
        let total = r.u64()?;
        let k = r.u64()?;
        let (o, asc) = (r.u64()?, r.u64()?);
        let order = match o {
            0 => Order::Score,
            1 => Order::Dist,
            _ => Order::Field { asc: asc != 0 },
        };
        let (offset, num, flags, n) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let mut rows = Vec::new();
        for _ in 0..n {
            let key = r.bytes()?.to_vec();
            let score = r.f64()?;
            let sort = match r.u64()? {
                0 => SortVal::Missing,
                1 => SortVal::Num(r.f64()?),
                _ => SortVal::Str(r.bytes()?.to_vec()),
            };
            let nf = r.u64()?;
            let mut fields = Vec::new();
            for _ in 0..nf {
                fields.push((r.bytes()?.to_vec(), r.bytes()?.to_vec()));
            }
            rows.push(Row {
                key,
                score,
                sort,
                fields,
            });
        }
        Some(SearchPart {
            total,
            knn_k: (k != u64::MAX).then_some(k),
            order,
            offset,
            num,
            withscores: flags & 1 != 0,
            nocontent: flags & 2 != 0,
            rows,
        })
    }
}

/// FT.SEARCH index query [NOCONTENT] [WITHSCORES] [RETURN n f [AS n]…] [SORTBY f [ASC|DESC]]
/// [LIMIT offset num] [PARAMS n k v…] [DIALECT d] [TIMEOUT ms] …
fn ft_search(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let o = parse_search(c.argv)?;
    let part = search_shard(sh, &o, c.now_ms)?;
    if sh.counting {
        render_search(vec![part], &mut c.out);
    } else {
        c.out.bulk(&part.encode());
    }
    Ok(())
}

/// Whether `key` is (still) a hash in database 0.
fn live_hash(sh: &Shard, key: &[u8], now_ms: u64) -> bool {
    matches!(
        sh.dbs[0].peek(key, now_ms).map(|i| &i.value),
        Some(Value::Hash(_))
    )
}

/// Drops documents whose keys are gone (expired, evicted): returns whether any were.
fn drop_stale(sh: &mut Shard, index: &str, keys: &[Vec<u8>], now_ms: u64) -> bool {
    let stale: Vec<&Vec<u8>> = keys.iter().filter(|k| !live_hash(sh, k, now_ms)).collect();
    if stale.is_empty() {
        return false;
    }
    for k in stale {
        // Through the db's own view, so a key that is a hash again is kept.
        let v = sh.dbs[0].peek(k, now_ms).map(|i| &i.value);
        if let Some(idx) = sh.search.map.get_mut(index) {
            idx.update(k, v);
        }
    }
    true
}

fn search_shard(sh: &mut Shard, o: &SearchOpts, now_ms: u64) -> Result<SearchPart> {
    let q = query::parse(&o.query, &o.params)?;
    for attempt in 0..=STALE_RETRIES {
        let idx = sh
            .search
            .map
            .get(&o.index)
            .ok_or_else(|| no_such_index(&o.index))?;
        let mut scores = Default::default();
        // A pure KNN needs no filter pass (it would list every document).
        let matched = match (&q.knn, &q.filter) {
            (Some(_), Node::All) => Vec::new(),
            _ => idx.eval(&q.filter, &mut scores)?,
        };
        let mut order = Order::Score;
        let mut cands: Vec<(u32, f64)> = match &q.knn {
            Some(k) => {
                order = Order::Dist;
                let among = (q.filter != Node::All).then_some(&matched[..]);
                idx.knn(&k.field, &k.blob, k.k, k.ef, among)?
                    .into_iter()
                    .map(|(d, doc)| (doc, d as f64))
                    .collect()
            }
            None => matched
                .iter()
                .map(|d| (*d, scores.get(d).copied().unwrap_or(1.0)))
                .collect(),
        };
        let total = cands.len() as u64;
        let score_name = q.knn.as_ref().map(|k| k.score_name.as_str());
        let db = &sh.dbs[0];
        let value_of = |key: &[u8], field: &str| -> Option<Vec<u8>> {
            match db.peek(key, now_ms).map(|i| &i.value) {
                Some(Value::Hash(h)) => h.get(field.as_bytes()).map(|v| v.to_vec()),
                _ => None,
            }
        };
        let mut rows: Vec<Row> = Vec::with_capacity(cands.len());
        let sort_field = match &o.sortby {
            Some((f, asc)) if Some(f.as_str()) == score_name => {
                order = if *asc {
                    Order::Dist
                } else {
                    Order::Field { asc: false }
                };
                None
            }
            Some((f, asc)) => {
                let Some((_, field)) = idx.field(f) else {
                    return Err(Error::Other(format!(
                        "Property `{f}` not loaded nor in schema"
                    )));
                };
                order = Order::Field { asc: *asc };
                Some((field.name.clone(), matches!(field.kind, Kind::Numeric)))
            }
            None => None,
        };
        for (doc, score) in cands.drain(..) {
            let Some(key) = idx.key_of(doc) else { continue };
            let sort = match (&sort_field, order) {
                (Some((f, numeric)), _) => match value_of(key, f) {
                    None => SortVal::Missing,
                    Some(v) => match crate::util::parse_f64(&v) {
                        Some(n) if *numeric => SortVal::Num(n),
                        _ => SortVal::Str(v.to_ascii_lowercase()),
                    },
                },
                // SORTBY the distance DESC.
                (None, Order::Field { .. }) => SortVal::Num(score),
                _ => SortVal::Missing,
            };
            rows.push(Row {
                key: key.to_vec(),
                score,
                sort,
                fields: Vec::new(),
            });
        }
        // KNN keeps all its k (the merge cuts the k nearest over every shard before ordering).
        let window = if q.knn.is_some() {
            usize::MAX
        } else {
            (o.offset + o.num) as usize
        };
        if rows.len() > window {
            rows.select_nth_unstable_by(window, |a, b| cmp_rows(order, a, b));
            rows.truncate(window);
        }
        rows.sort_by(|a, b| cmp_rows(order, a, b));
        let keys: Vec<Vec<u8>> = rows.iter().map(|r| r.key.clone()).collect();
        if attempt < STALE_RETRIES && drop_stale(sh, &o.index, &keys, now_ms) {
            continue;
        }
        let idx = sh
            .search
            .map
            .get(&o.index)
            .ok_or_else(|| no_such_index(&o.index))?;
        for r in &mut rows {
            r.fields = row_fields(sh, idx, o, score_name, r, now_ms);
        }
        return Ok(SearchPart {
            total,
            knn_k: q.knn.as_ref().map(|k| k.k as u64),
            order,
            offset: o.offset,
            num: o.num,
            withscores: o.withscores,
            nocontent: o.nocontent || o.ret.as_ref().is_some_and(|r| r.is_empty()),
            rows,
        });
    }
    Err(no_such_index(&o.index))
}

/// The fields a result returns: RETURN's, or the whole hash (with the distance first).
fn row_fields(
    sh: &Shard,
    idx: &Index,
    o: &SearchOpts,
    score_name: Option<&str>,
    r: &Row,
    now_ms: u64,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if o.nocontent {
        return Vec::new();
    }
    let hash = match sh.dbs[0].peek(&r.key, now_ms).map(|i| &i.value) {
        Some(Value::Hash(h)) => Some(h),
        _ => None,
    };
    let dist = || fmt_g(r.score).into_bytes();
    let mut out = Vec::new();
    match &o.ret {
        Some(list) => {
            for (f, name) in list {
                if Some(f.as_str()) == score_name {
                    out.push((name.as_bytes().to_vec(), dist()));
                } else if let Some(v) = hash.and_then(|h| h.get(hash_field(idx, f).as_bytes())) {
                    out.push((name.as_bytes().to_vec(), v.to_vec()));
                }
            }
        }
        None => {
            if let Some(s) = score_name {
                out.push((s.as_bytes().to_vec(), dist()));
            }
            if let Some(h) = hash {
                out.extend(h.iter().map(|(k, v)| (k.to_vec(), v.to_vec())));
            }
        }
    }
    out
}

/// Merges shards' parts into one ranked, limited reply.
fn render_search(parts: Vec<SearchPart>, out: &mut Reply) {
    let Some(first) = parts.first() else {
        out.array(0);
        return;
    };
    let (order, offset, num, ws, nc, knn) = (
        first.order,
        first.offset,
        first.num,
        first.withscores,
        first.nocontent,
        first.knn_k,
    );
    let mut total: u64 = parts.iter().map(|p| p.total).sum();
    if let Some(k) = knn {
        total = total.min(k);
    }
    let mut rows: Vec<Row> = parts.into_iter().flat_map(|p| p.rows).collect();
    if let Some(k) = knn {
        // The k nearest over all shards first; then their order.
        rows.sort_by(|a, b| cmp_rows(Order::Dist, a, b));
        rows.truncate(k as usize);
    }
    rows.sort_by(|a, b| cmp_rows(order, a, b));
    let rows: Vec<Row> = rows
        .into_iter()
        .skip(offset as usize)
        .take(num as usize)
        .collect();
    if out.resp3() {
        out.map(5);
        out.bulk(b"attributes");
        out.array(0);
        out.bulk(b"format");
        out.bulk(b"STRING");
        out.bulk(b"results");
        out.array(rows.len());
        for r in &rows {
            out.map(2 + ws as usize + !nc as usize);
            out.bulk(b"id");
            out.bulk(&r.key);
            if ws {
                out.bulk(b"score");
                out.double(r.score);
            }
            if !nc {
                out.bulk(b"extra_attributes");
                out.map(r.fields.len());
                for (k, v) in &r.fields {
                    out.bulk(k);
                    out.bulk(v);
                }
            }
            out.bulk(b"values");
            out.array(0);
        }
        out.bulk(b"total_results");
        out.int(total as i64);
        out.bulk(b"warning");
        out.array(0);
        return;
    }
    let per = 1 + ws as usize + !nc as usize;
    out.array(1 + rows.len() * per);
    out.int(total as i64);
    for r in &rows {
        out.bulk(&r.key);
        if ws {
            out.bulk(fmt_g(r.score).as_bytes());
        }
        if !nc {
            out.array(r.fields.len() * 2);
            for (k, v) in &r.fields {
                out.bulk(k);
                out.bulk(v);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// FT.INFO

struct InfoPart<'a> {
    args: Vec<&'a [u8]>,
    num_docs: u64,
    max_doc_id: u64,
    num_terms: u64,
    num_records: u64,
    failures: u64,
    vector_bytes: u64,
    indexing: bool,
    percent: f64,
}

/// FT.INFO index
fn ft_info(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let name = text(c.argv[1]);
    let idx = sh.search.map.get(&name).ok_or_else(unknown_index)?;
    let part = InfoPart {
        args: idx.args.iter().map(|a| a.as_slice()).collect(),
        num_docs: idx.num_docs() as u64,
        max_doc_id: idx.max_doc_id,
        num_terms: idx.num_terms() as u64,
        num_records: idx.num_records() as u64,
        failures: idx.failures,
        vector_bytes: idx.vector_memory() as u64,
        indexing: idx.scan.is_some(),
        percent: if idx.scan.is_none() {
            1.0
        } else {
            (idx.scanned as f64 / idx.scan_total.max(1) as f64).min(0.99)
        },
    };
    if sh.counting {
        render_info(vec![part], &mut c.out);
    } else {
        let mut w = Writer::default();
        w.0.push(b'I');
        write_args(&mut w, &part.args);
        for v in [
            part.num_docs,
            part.max_doc_id,
            part.num_terms,
            part.num_records,
            part.failures,
            part.vector_bytes,
            part.indexing as u64,
        ] {
            w.u64(v);
        }
        w.f64(part.percent);
        c.out.bulk(&w.0);
    }
    Ok(())
}

fn decode_info<'a>(r: &mut Reader<'a>) -> Option<InfoPart<'a>> {
    let args = r.args()?;
    let mut v = [0u64; 7];
    for x in &mut v {
        *x = r.u64()?;
    }
    Some(InfoPart {
        args,
        num_docs: v[0],
        max_doc_id: v[1],
        num_terms: v[2],
        num_records: v[3],
        failures: v[4],
        vector_bytes: v[5],
        indexing: v[6] != 0,
        percent: r.f64()?,
    })
}

/// Writes a key then a float: a double in RESP3, a bulk string in RESP2.
fn kv_float(out: &mut Reply, k: &str, v: f64) {
    out.bulk(k.as_bytes());
    if out.resp3() {
        out.double(v);
    } else {
        out.bulk(fmt_g(v).as_bytes());
    }
}

fn kv_int(out: &mut Reply, k: &str, v: u64) {
    out.bulk(k.as_bytes());
    out.int(v as i64);
}

fn render_info(parts: Vec<InfoPart>, out: &mut Reply) {
    let Some(first) = parts.first() else {
        out.array(0);
        return;
    };
    let Ok(def) = schema::parse_create(&first.args) else {
        out.error("ERR index definition could not be read");
        return;
    };
    let sum = |f: fn(&InfoPart) -> u64| parts.iter().map(f).sum::<u64>();
    let num_docs = sum(|p| p.num_docs);
    let records = sum(|p| p.num_records);
    let indexing = parts.iter().any(|p| p.indexing);
    let percent = parts.iter().map(|p| p.percent).fold(1.0, f64::min);
    let entries = 18;
    if out.resp3() {
        out.map(entries);
    } else {
        out.array(entries * 2);
    }
    out.bulk(b"index_name");
    out.bulk(def.name.as_bytes());
    out.bulk(b"index_options");
    out.array(0);
    out.bulk(b"index_definition");
    if out.resp3() {
        out.map(3);
    } else {
        out.array(6);
    }
    out.bulk(b"key_type");
    out.bulk(b"HASH");
    out.bulk(b"prefixes");
    if def.prefixes.is_empty() {
        out.array(1);
        out.bulk(b"");
    } else {
        out.array(def.prefixes.len());
        for p in &def.prefixes {
            out.bulk(p);
        }
    }
    kv_float(out, "default_score", def.score);
    out.bulk(b"attributes");
    out.array(def.fields.len());
    for f in &def.fields {
        attribute(out, f);
    }
    kv_int(out, "num_docs", num_docs);
    kv_int(out, "max_doc_id", sum(|p| p.max_doc_id));
    kv_int(out, "num_terms", sum(|p| p.num_terms));
    kv_int(out, "num_records", records);
    kv_float(out, "inverted_sz_mb", 0.0);
    kv_float(
        out,
        "vector_index_sz_mb",
        sum(|p| p.vector_bytes) as f64 / (1024.0 * 1024.0),
    );
    kv_float(out, "total_inverted_index_blocks", 0.0);
    kv_float(
        out,
        "records_per_doc_avg",
        if num_docs == 0 {
            0.0
        } else {
            records as f64 / num_docs as f64
        },
    );
    kv_int(out, "hash_indexing_failures", sum(|p| p.failures));
    kv_float(out, "total_indexing_time", 0.0);
    kv_int(out, "indexing", indexing as u64);
    kv_float(out, "percent_indexed", percent);
    kv_int(out, "number_of_uses", 0);
    kv_int(out, "cleaning", 0);
}

/// One entry of FT.INFO's `attributes`.
fn attribute(out: &mut Reply, f: &schema::Field) {
    let mut kv: Vec<(&str, String)> = vec![
        ("identifier", f.name.clone()),
        ("attribute", f.alias.clone()),
        ("type", f.kind.name().into()),
    ];
    match &f.kind {
        Kind::Text { weight, .. } => kv.push(("WEIGHT", fmt_g(*weight))),
        Kind::Tag { sep, .. } => kv.push(("SEPARATOR", (*sep as char).to_string())),
        Kind::Numeric => {}
        Kind::Vector(p) => {
            kv.push((
                "algorithm",
                if p.algo == schema::Algo::Hnsw {
                    "HNSW"
                } else {
                    "FLAT"
                }
                .into(),
            ));
            kv.push((
                "data_type",
                if p.f64 { "FLOAT64" } else { "FLOAT32" }.into(),
            ));
            kv.push(("dim", p.dim.to_string()));
            kv.push(("distance_metric", p.metric.name().into()));
            if p.algo == schema::Algo::Hnsw {
                kv.push(("M", p.m.to_string()));
                kv.push(("ef_construction", p.ef_construction.to_string()));
            }
        }
    }
    let mut flags = Vec::new();
    if f.sortable {
        flags.push("SORTABLE");
    }
    if f.noindex {
        flags.push("NOINDEX");
    }
    if let Kind::Tag {
        case_sensitive: true,
        ..
    } = f.kind
    {
        flags.push("CASESENSITIVE");
    }
    if out.resp3() {
        out.map(kv.len() + 1);
        for (k, v) in &kv {
            out.bulk(k.as_bytes());
            out.bulk(v.as_bytes());
        }
        out.bulk(b"flags");
        out.array(flags.len());
        for fl in flags {
            out.bulk(fl.as_bytes());
        }
    } else {
        out.array(kv.len() * 2 + flags.len());
        for (k, v) in &kv {
            out.bulk(k.as_bytes());
            out.bulk(v.as_bytes());
        }
        for fl in flags {
            out.bulk(fl.as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// FT.AGGREGATE

#[derive(Debug, Clone)]
enum Reducer {
    Count,
    Sum(String),
    Avg(String),
    Min(String),
    Max(String),
    CountDistinct(String),
}

#[derive(Debug, Clone)]
enum Step {
    GroupBy(Vec<String>, Vec<(Reducer, String)>),
    SortBy(Vec<(String, bool)>, Option<usize>),
    Limit(usize, usize),
}

struct AggPlan {
    index: String,
    query: Vec<u8>,
    /// LOAD's fields (`None`: none; `Some(empty)`: LOAD *).
    load: Option<Vec<String>>,
    steps: Vec<Step>,
    params: HashMap<String, Vec<u8>>,
}

impl AggPlan {
    /// Every field a row needs from its hash.
    fn needed(&self) -> Option<Vec<String>> {
        if self.load.as_ref().is_some_and(|l| l.is_empty()) {
            return None;
        }
        let mut v: Vec<String> = self.load.clone().unwrap_or_default();
        for s in &self.steps {
            match s {
                Step::GroupBy(keys, reds) => {
                    v.extend(keys.iter().cloned());
                    for (r, _) in reds {
                        match r {
                            Reducer::Count => {}
                            Reducer::Sum(f)
                            | Reducer::Avg(f)
                            | Reducer::Min(f)
                            | Reducer::Max(f)
                            | Reducer::CountDistinct(f) => v.push(f.clone()),
                        }
                    }
                }
                Step::SortBy(keys, _) => v.extend(keys.iter().map(|k| k.0.clone())),
                Step::Limit(..) => {}
            }
        }
        v.sort();
        v.dedup();
        Some(v)
    }
}

fn parse_aggregate(argv: &[&[u8]]) -> Result<AggPlan> {
    let mut p = AggPlan {
        index: text(argv[1]),
        query: argv[2].to_vec(),
        load: None,
        steps: Vec::new(),
        params: params_of(argv, 3)?,
    };
    let mut i = 3;
    let field = |a: &[u8]| -> Result<String> {
        a.strip_prefix(b"@").map(text).ok_or_else(|| {
            Error::Other(format!("Bad arguments: missing @ prefix in `{}`", text(a)))
        })
    };
    while i < argv.len() {
        let a = argv[i];
        i += 1;
        if eq_ic(a, "LOAD") {
            if argv.get(i).is_some_and(|x| *x == b"*") {
                p.load = Some(Vec::new());
                i += 1;
                continue;
            }
            let n = count_arg(argv, i, "LOAD")?;
            let list = argv[i + 1..i + 1 + n].iter().map(|f| strip_at(f)).collect();
            p.load = Some(list);
            i += 1 + n;
        } else if eq_ic(a, "GROUPBY") {
            let n = count_arg(argv, i, "GROUPBY")?;
            let keys = argv[i + 1..i + 1 + n]
                .iter()
                .map(|f| field(f))
                .collect::<Result<Vec<_>>>()?;
            i += 1 + n;
            let mut reds = Vec::new();
            while argv.get(i).is_some_and(|x| eq_ic(x, "REDUCE")) {
                let f = argv.get(i + 1).ok_or(Error::Syntax)?;
                let nargs = count_arg(argv, i + 2, "REDUCE")?;
                let args = &argv[i + 3..i + 3 + nargs];
                i += 3 + nargs;
                let one = || -> Result<String> {
                    match args {
                        [x] => field(x),
                        _ => Err(Error::Other(format!("Bad arguments for {}", text(f)))),
                    }
                };
                let lname = text(f).to_lowercase();
                let r = match lname.as_str() {
                    "count" if args.is_empty() => Reducer::Count,
                    "sum" => Reducer::Sum(one()?),
                    "avg" => Reducer::Avg(one()?),
                    "min" => Reducer::Min(one()?),
                    "max" => Reducer::Max(one()?),
                    "count_distinct" => Reducer::CountDistinct(one()?),
                    _ => {
                        return Err(Error::Other(format!(
                            "No such reducer `{}` (shardis supports COUNT, SUM, AVG, MIN, MAX, COUNT_DISTINCT)",
                            text(f)
                        )))
                    }
                };
                let mut name = format!(
                    "__generated_alias{}{}",
                    lname,
                    args.iter()
                        .map(|x| strip_at(x).to_lowercase())
                        .collect::<String>()
                );
                if argv.get(i).is_some_and(|x| eq_ic(x, "AS")) {
                    name = argv.get(i + 1).map(|x| text(x)).ok_or(Error::Syntax)?;
                    i += 2;
                }
                reds.push((r, name));
            }
            p.steps.push(Step::GroupBy(keys, reds));
        } else if eq_ic(a, "SORTBY") {
            let n = count_arg(argv, i, "SORTBY")?;
            let items = &argv[i + 1..i + 1 + n];
            i += 1 + n;
            let mut keys: Vec<(String, bool)> = Vec::new();
            for it in items {
                if eq_ic(it, "ASC") || eq_ic(it, "DESC") {
                    let last = keys.last_mut().ok_or(Error::Syntax)?;
                    last.1 = eq_ic(it, "ASC");
                } else {
                    keys.push((field(it)?, true));
                }
            }
            let mut max = None;
            if argv.get(i).is_some_and(|x| eq_ic(x, "MAX")) {
                max = argv
                    .get(i + 1)
                    .and_then(|x| crate::util::parse_i64(x))
                    .filter(|m| *m >= 0)
                    .map(|m| m as usize);
                i += 2;
            }
            p.steps.push(Step::SortBy(keys, max));
        } else if eq_ic(a, "LIMIT") {
            let num = |x: Option<&&[u8]>| {
                x.and_then(|x| crate::util::parse_i64(x))
                    .filter(|n| *n >= 0)
                    .map(|n| n as usize)
                    .ok_or(Error::Syntax)
            };
            p.steps
                .push(Step::Limit(num(argv.get(i))?, num(argv.get(i + 1))?));
            i += 2;
        } else if eq_ic(a, "PARAMS") {
            let n = count_arg(argv, i, "PARAMS")?;
            i += 1 + n;
        } else if ["DIALECT", "TIMEOUT"].iter().any(|w| eq_ic(a, w)) {
            i += 1;
        } else if eq_ic(a, "VERBATIM") {
        } else {
            return Err(Error::Other(format!(
                "Unknown argument `{}` (shardis's FT.AGGREGATE supports LOAD, GROUPBY/REDUCE, SORTBY, LIMIT)",
                text(a)
            )));
        }
    }
    Ok(p)
}

type AggRow = Vec<(String, Vec<u8>)>;
/// A group's GROUPBY values (`None` where a row lacks the field).
type GroupKey = Vec<Option<Vec<u8>>>;

/// FT.AGGREGATE index query [LOAD n @f…] [GROUPBY n @f… [REDUCE fn n args… [AS name]]…]
/// [SORTBY n @f [ASC|DESC]… [MAX m]] [LIMIT offset num] [PARAMS …] [DIALECT d]
fn ft_aggregate(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let plan = parse_aggregate(c.argv)?;
    let rows = aggregate_shard(sh, &plan, c.now_ms)?;
    if sh.counting {
        render_aggregate(&plan, rows, &mut c.out);
    } else {
        let mut w = Writer::default();
        w.0.push(b'A');
        write_args(&mut w, c.argv);
        w.u64(rows.len() as u64);
        for r in &rows {
            w.u64(r.len() as u64);
            for (k, v) in r {
                w.bytes(k.as_bytes());
                w.bytes(v);
            }
        }
        c.out.bulk(&w.0);
    }
    Ok(())
}

fn aggregate_shard(sh: &mut Shard, plan: &AggPlan, now_ms: u64) -> Result<Vec<AggRow>> {
    let q = query::parse(&plan.query, &plan.params)?;
    let idx = sh
        .search
        .map
        .get(&plan.index)
        .ok_or_else(|| no_such_index(&plan.index))?;
    let docs: Vec<u32> = match &q.knn {
        Some(k) => {
            let m = match &q.filter {
                Node::All => Vec::new(),
                f => idx.eval(f, &mut Default::default())?,
            };
            let among = (q.filter != Node::All).then_some(&m[..]);
            idx.knn(&k.field, &k.blob, k.k, k.ef, among)?
                .into_iter()
                .map(|x| x.1)
                .collect()
        }
        None => idx.eval(&q.filter, &mut Default::default())?,
    };
    let needed = plan.needed();
    let mut rows = Vec::with_capacity(docs.len());
    for d in docs {
        let Some(key) = idx.key_of(d) else { continue };
        let Some(Value::Hash(h)) = sh.dbs[0].peek(key, now_ms).map(|i| &i.value) else {
            continue;
        };
        let row: AggRow = match &needed {
            None => h.iter().map(|(k, v)| (text(k), v.to_vec())).collect(),
            Some(list) => list
                .iter()
                .filter_map(|f| {
                    h.get(hash_field(idx, f).as_bytes())
                        .map(|v| (f.clone(), v.to_vec()))
                })
                .collect(),
        };
        rows.push(row);
    }
    Ok(rows)
}

fn get<'a>(row: &'a AggRow, f: &str) -> Option<&'a [u8]> {
    row.iter().find(|(k, _)| k == f).map(|(_, v)| v.as_slice())
}

fn num_of(v: Option<&[u8]>) -> Option<f64> {
    v.and_then(crate::util::parse_f64)
}

fn cmp_vals(a: Option<&[u8]>, b: Option<&[u8]>) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a, b) {
        (None, None) => Equal,
        (None, _) => Greater,
        (_, None) => Less,
        (Some(x), Some(y)) => match (crate::util::parse_f64(x), crate::util::parse_f64(y)) {
            (Some(p), Some(q)) => p.total_cmp(&q),
            _ => x.cmp(y),
        },
    }
}

fn run_steps(plan: &AggPlan, mut rows: Vec<AggRow>) -> Vec<AggRow> {
    let mut grouped = false;
    for s in &plan.steps {
        match s {
            Step::GroupBy(keys, reds) => {
                grouped = true;
                let mut groups: Vec<(GroupKey, Vec<AggRow>)> = Vec::new();
                let mut at: HashMap<GroupKey, usize> = HashMap::new();
                for r in rows {
                    let k: GroupKey = keys
                        .iter()
                        .map(|f| get(&r, f).map(|v| v.to_vec()))
                        .collect();
                    match at.get(&k) {
                        Some(&i) => groups[i].1.push(r),
                        None => {
                            at.insert(k.clone(), groups.len());
                            groups.push((k, vec![r]));
                        }
                    }
                }
                rows = groups
                    .into_iter()
                    .map(|(k, members)| {
                        let mut out: AggRow = keys
                            .iter()
                            .zip(k)
                            .map(|(f, v)| (f.clone(), v.unwrap_or_default()))
                            .collect();
                        for (r, name) in reds {
                            let vals = |f: &str| -> Vec<f64> {
                                members.iter().filter_map(|m| num_of(get(m, f))).collect()
                            };
                            let v = match r {
                                Reducer::Count => fmt_num(members.len() as f64),
                                Reducer::Sum(f) => fmt_num(vals(f).iter().sum()),
                                Reducer::Avg(f) => {
                                    let v = vals(f);
                                    fmt_num(if v.is_empty() {
                                        0.0
                                    } else {
                                        v.iter().sum::<f64>() / v.len() as f64
                                    })
                                }
                                Reducer::Min(f) => {
                                    fmt_num(vals(f).into_iter().fold(f64::INFINITY, f64::min))
                                }
                                Reducer::Max(f) => {
                                    fmt_num(vals(f).into_iter().fold(f64::NEG_INFINITY, f64::max))
                                }
                                Reducer::CountDistinct(f) => {
                                    let mut d: Vec<&[u8]> =
                                        members.iter().filter_map(|m| get(m, f)).collect();
                                    d.sort();
                                    d.dedup();
                                    fmt_num(d.len() as f64)
                                }
                            };
                            out.push((name.clone(), v.into_bytes()));
                        }
                        out
                    })
                    .collect();
            }
            Step::SortBy(keys, max) => {
                rows.sort_by(|a, b| {
                    for (f, asc) in keys {
                        let o = cmp_vals(get(a, f), get(b, f));
                        let o = if *asc { o } else { o.reverse() };
                        if o != std::cmp::Ordering::Equal {
                            return o;
                        }
                    }
                    std::cmp::Ordering::Equal
                });
                if let Some(m) = max {
                    rows.truncate(*m);
                }
            }
            Step::Limit(off, num) => {
                rows = rows.into_iter().skip(*off).take(*num).collect();
            }
        }
    }
    if !grouped {
        // Without GROUPBY a row shows what LOAD (or SORTBY) brought.
        if let Some(load) = &plan.load {
            if !load.is_empty() {
                let sorted: Vec<String> = plan
                    .steps
                    .iter()
                    .flat_map(|s| match s {
                        Step::SortBy(k, _) => k.iter().map(|x| x.0.clone()).collect(),
                        _ => Vec::new(),
                    })
                    .collect();
                for r in &mut rows {
                    r.retain(|(k, _)| load.contains(k) || sorted.contains(k));
                }
            }
        } else {
            for r in &mut rows {
                r.retain(|(k, _)| {
                    plan.steps
                        .iter()
                        .any(|s| matches!(s, Step::SortBy(ks, _) if ks.iter().any(|x| &x.0 == k)))
                });
            }
        }
    }
    rows
}

fn render_aggregate(plan: &AggPlan, rows: Vec<AggRow>, out: &mut Reply) {
    let rows = run_steps(plan, rows);
    if out.resp3() {
        out.map(5);
        out.bulk(b"attributes");
        out.array(0);
        out.bulk(b"format");
        out.bulk(b"STRING");
        out.bulk(b"results");
        out.array(rows.len());
        for r in &rows {
            out.map(2);
            out.bulk(b"extra_attributes");
            out.map(r.len());
            for (k, v) in r {
                out.bulk(k.as_bytes());
                out.bulk(v);
            }
            out.bulk(b"values");
            out.array(0);
        }
        out.bulk(b"total_results");
        out.int(rows.len() as i64);
        out.bulk(b"warning");
        out.array(0);
        return;
    }
    out.array(1 + rows.len());
    out.int(rows.len() as i64);
    for r in &rows {
        out.array(r.len() * 2);
        for (k, v) in r {
            out.bulk(k.as_bytes());
            out.bulk(v);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Merging parts (the server's `Merge::Search`).

/// The payload of a bulk-string reply.
fn bulk_payload(reply: &[u8]) -> Option<&[u8]> {
    let rest = reply.strip_prefix(b"$")?;
    let nl = rest.windows(2).position(|w| w == b"\r\n")?;
    let n: usize = std::str::from_utf8(&rest[..nl]).ok()?.parse().ok()?;
    rest.get(nl + 2..nl + 2 + n)
}

/// Merges the parts of FT.SEARCH, FT.AGGREGATE or FT.INFO that every shard answered into the
/// client's reply. A part that is an error is the reply.
pub fn merge_parts(parts: &[&[u8]], proto: Proto, out: &mut Vec<u8>) {
    if let Some(e) = parts.iter().find(|p| p.first() == Some(&b'-')) {
        out.extend_from_slice(e);
        return;
    }
    let payloads: Option<Vec<&[u8]>> = parts.iter().map(|p| bulk_payload(p)).collect();
    let mut reply = Reply::new(out, proto);
    let Some(payloads) = payloads.filter(|p| !p.is_empty()) else {
        reply.error("ERR search parts could not be merged");
        return;
    };
    let kind = payloads[0].first().copied();
    let mut readers: Vec<Reader> = payloads
        .iter()
        .map(|p| Reader(p.get(1..).unwrap_or(&[])))
        .collect();
    let ok = match kind {
        Some(b'S') => readers
            .iter_mut()
            .map(SearchPart::decode)
            .collect::<Option<Vec<_>>>()
            .map(|parts| render_search(parts, &mut reply)),
        Some(b'I') => readers
            .iter_mut()
            .map(decode_info)
            .collect::<Option<Vec<_>>>()
            .map(|parts| render_info(parts, &mut reply)),
        Some(b'A') => (|| {
            let mut rows = Vec::new();
            let mut argv = None;
            for r in &mut readers {
                let a = r.args()?;
                let n = r.u64()?;
                for _ in 0..n {
                    let m = r.u64()?;
                    let mut row = Vec::new();
                    for _ in 0..m {
                        row.push((text(r.bytes()?), r.bytes()?.to_vec()));
                    }
                    rows.push(row);
                }
                argv.get_or_insert(a);
            }
            let plan = parse_aggregate(&argv?).ok()?;
            render_aggregate(&plan, rows, &mut reply);
            Some(())
        })(),
        _ => None,
    };
    if ok.is_none() {
        reply.error("ERR search parts could not be merged");
    }
}

impl Shard {
    /// One slice of background indexing (see [`Indexes::step`]); the server calls it from
    /// its cron while [`Shard::search_busy`] says there is work.
    pub fn search_step(&mut self, now_ms: u64) {
        let (search, dbs) = (&mut self.search, &mut self.dbs);
        search.step(&mut dbs[0], now_ms);
    }

    /// Whether background indexing has work left.
    pub fn search_busy(&self) -> bool {
        self.search.scanning()
    }

    /// Keys of database 0 a command changed: the indexes look at them again.
    pub fn search_touch(&mut self, key: &[u8], now_ms: u64) {
        if self.search.is_empty() {
            return;
        }
        let (search, dbs): (&mut Indexes, _) = (&mut self.search, &self.dbs);
        search.touch(&dbs[0], key, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::testing::TestShard;

    /// A RESP2 reply in a compact form: `[a, b]`, bulk strings bare.
    fn show(r: &[u8]) -> String {
        fn go(r: &[u8], pos: &mut usize) -> String {
            let nl = r[*pos..].windows(2).position(|w| w == b"\r\n").unwrap() + *pos;
            let head = String::from_utf8_lossy(&r[*pos + 1..nl]).into_owned();
            let t = r[*pos];
            *pos = nl + 2;
            match t {
                b'*' => {
                    let n: usize = head.parse().unwrap();
                    let items: Vec<String> = (0..n).map(|_| go(r, pos)).collect();
                    format!("[{}]", items.join(", "))
                }
                b'$' => {
                    let n: usize = head.parse().unwrap();
                    let s = String::from_utf8_lossy(&r[*pos..*pos + n]).into_owned();
                    *pos += n + 2;
                    s
                }
                _ => head,
            }
        }
        go(r, &mut 0)
    }

    fn run(t: &mut TestShard, line: &str) -> String {
        show(t.run(line).as_bytes())
    }

    fn run_args(t: &mut TestShard, argv: &[&[u8]]) -> String {
        show(&t.run_bytes(argv))
    }

    fn vec_blob(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn formats_numbers_as_redisearch() {
        assert_eq!(fmt_g(0.0), "0");
        assert_eq!(fmt_g(1.0), "1");
        assert_eq!(fmt_g(0.5), "0.5");
        assert_eq!(fmt_g(0.0824275016785), "0.0824275016785");
        assert_eq!(fmt_g(3.09944152832e-06), "3.09944152832e-06");
        assert_eq!(fmt_num(30.0), "30");
        assert_eq!(fmt_num(4.5), "4.5");
    }

    #[test]
    fn create_search_and_maintain() {
        let mut t = TestShard::new();
        assert_eq!(
            run(
                &mut t,
                "FT.CREATE idx PREFIX 1 doc: SCHEMA t TEXT n NUMERIC SORTABLE g TAG"
            ),
            "OK"
        );
        assert!(run(&mut t, "FT.CREATE idx SCHEMA t TEXT").contains("Index already exists"));
        run(&mut t, "HSET doc:1 t hello n 3 g a");
        run(&mut t, "HSET doc:2 t hello n 1 g b");
        run(&mut t, "HSET other t hello");
        assert_eq!(
            run(&mut t, "FT.SEARCH idx hello SORTBY n NOCONTENT"),
            "[2, doc:2, doc:1]"
        );
        run(&mut t, "HDEL doc:2 t");
        assert_eq!(run(&mut t, "FT.SEARCH idx hello NOCONTENT"), "[1, doc:1]");
        run(&mut t, "DEL doc:1");
        assert_eq!(run(&mut t, "FT.SEARCH idx hello NOCONTENT"), "[0]");
        assert_eq!(
            run(&mut t, "FT.SEARCH idx @g:{b} RETURN 1 n"),
            "[1, doc:2, [n, 1]]"
        );
        assert!(run(&mut t, "FT.SEARCH nope *").contains("no such index"));
        assert!(run(&mut t, "FT.INFO nope").contains("Unknown Index name"));
        assert_eq!(run(&mut t, "FT._LIST"), "[idx]");
        assert_eq!(run(&mut t, "FT.DROPINDEX idx DD"), "OK");
        assert_eq!(run(&mut t, "EXISTS doc:2"), "0");
        assert_eq!(run(&mut t, "EXISTS other"), "1");
    }

    #[test]
    fn knn_and_bad_blobs() {
        let mut t = TestShard::new();
        run(
            &mut t,
            "FT.CREATE v SCHEMA e VECTOR FLAT 6 TYPE FLOAT32 DIM 2 DISTANCE_METRIC L2 c TAG",
        );
        for (i, (x, y)) in [(0.0f32, 0.0f32), (1.0, 0.0), (5.0, 5.0)]
            .iter()
            .enumerate()
        {
            let key = format!("k{i}");
            let blob = vec_blob(&[*x, *y]);
            run_args(
                &mut t,
                &[
                    b"HSET",
                    key.as_bytes(),
                    b"e",
                    &blob,
                    b"c",
                    if i == 0 { b"x" } else { b"y" },
                ],
            );
        }
        let blob = vec_blob(&[0.9, 0.0]);
        let r = run_args(
            &mut t,
            &[
                b"FT.SEARCH",
                b"v",
                b"*=>[KNN 2 @e $b AS d]",
                b"PARAMS",
                b"2",
                b"b",
                &blob,
                b"RETURN",
                b"1",
                b"d",
                b"DIALECT",
                b"2",
            ],
        );
        assert!(r.starts_with("[2, k1, [d, 0.01"), "{r}");
        let r = run_args(
            &mut t,
            &[
                b"FT.SEARCH",
                b"v",
                b"@c:{y}=>[KNN 1 @e $b]",
                b"PARAMS",
                b"2",
                b"b",
                b"[5, 5]",
                b"NOCONTENT",
            ],
        );
        assert_eq!(r, "[1, k2]");
        let r = run_args(
            &mut t,
            &[
                b"FT.SEARCH",
                b"v",
                b"*=>[KNN 1 @e $b]",
                b"PARAMS",
                b"2",
                b"b",
                b"abc",
            ],
        );
        assert!(r.contains("does not match index's expected size"), "{r}");
        run(&mut t, "HSET k9 e short");
        assert!(run(&mut t, "FT.INFO v").contains("hash_indexing_failures, 1"));
    }

    #[test]
    fn aggregate_groups_and_reduces() {
        let mut t = TestShard::new();
        run(&mut t, "FT.CREATE a SCHEMA g TAG p NUMERIC");
        run(&mut t, "HSET x1 g a p 10");
        run(&mut t, "HSET x2 g a p 20");
        run(&mut t, "HSET x3 g b p 5");
        let r = run(&mut t, "FT.AGGREGATE a * GROUPBY 1 @g REDUCE COUNT 0 AS n REDUCE SUM 1 @p AS s REDUCE AVG 1 @p AS m SORTBY 2 @s DESC");
        assert_eq!(
            r,
            "[2, [g, a, n, 2, s, 30, m, 15], [g, b, n, 1, s, 5, m, 5]]"
        );
    }

    #[test]
    fn merging_parts() {
        let mut t = TestShard::new();
        run(&mut t, "FT.CREATE i SCHEMA n NUMERIC SORTABLE");
        run(&mut t, "HSET a n 1");
        run(&mut t, "HSET b n 3");
        t.shard.counting = false;
        let p1 = t.run_bytes(&[
            b"FT.SEARCH",
            b"i",
            b"*",
            b"SORTBY",
            b"n",
            b"DESC",
            b"LIMIT",
            b"0",
            b"1",
            b"NOCONTENT",
        ]);
        run(&mut t, "HSET c n 2");
        let p2 = t.run_bytes(&[
            b"FT.SEARCH",
            b"i",
            b"*",
            b"SORTBY",
            b"n",
            b"DESC",
            b"LIMIT",
            b"0",
            b"1",
            b"NOCONTENT",
        ]);
        let mut out = Vec::new();
        merge_parts(&[&p1, &p2], Proto::Resp2, &mut out);
        assert_eq!(out, b"*2\r\n:5\r\n$1\r\nb\r\n");
        merge_parts(&[&p1[..3]], Proto::Resp2, &mut out);
        assert!(out.ends_with(b"-ERR search parts could not be merged\r\n"));
    }
}
