//! SORT and SORT_RO (Redis's `sort.c`): sort a list, set or sorted set numerically or
//! lexicographically, optionally by the values of other keys (`BY weight_*`, `BY obj_*->field`),
//! project other keys' values (`GET pattern`, `GET #`), take a LIMIT, and STORE the result as a
//! list.
//!
//! The keys BY and GET name derive from the elements, so no key spec can find them: outside
//! cluster mode the server gathers them (with [`pattern_keys`]) from whatever shards own them
//! before running the command here.

use super::spec::{acl, flag, kflag, Arg, ArgType, CommandSpec, Group, KeySpec, Route, Split};
use super::Call;
use crate::keyspace::Entry;
use crate::notify::class;
use crate::types::{SmallBytes, Value};
use crate::util::{eq_ic, parse_i64};
use crate::{Error, Result, Shard};
use std::cmp::Ordering;

const SORT_ACL: u32 = acl::SET | acl::SORTEDSET | acl::LIST | acl::DANGEROUS;

const BY_GET_NOTES: &str = "For the optional BY/GET keyword. It is marked 'unknown' because the key names derive from the content of the key we sort";
const STORE_NOTES: &str = "For the optional STORE keyword. It is marked 'unknown' because the keyword can appear anywhere in the argument array";

const SORT_ARGS: &[Arg] = &[
    Arg::key("key", 0),
    Arg {
        key_spec_index: 1,
        ..Arg::new("pattern", ArgType::Pattern)
            .with_token("BY")
            .optional()
    },
    Arg::block(
        "offset_count",
        &[
            Arg::new("offset", ArgType::Integer),
            Arg::new("count", ArgType::Integer),
        ],
    )
    .with_token("LIMIT")
    .optional(),
    Arg {
        key_spec_index: 1,
        ..Arg::new("pattern", ArgType::Pattern)
            .with_token("GET")
            .optional()
            .multiple()
            .multiple_token()
    },
    Arg::oneof(
        "order",
        &[Arg::token("asc", "ASC"), Arg::token("desc", "DESC")],
    )
    .optional(),
    Arg::token("sorting", "ALPHA").optional(),
];

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "sort",
        arity: -2,
        flags: flag::WRITE | flag::DENYOOM,
        acl: SORT_ACL,
        group: Group::Generic,
        keys: &[
            KeySpec::one(1, kflag::RO | kflag::ACCESS),
            KeySpec::unknown(kflag::RO | kflag::ACCESS, BY_GET_NOTES),
            KeySpec::unknown(kflag::OW | kflag::UPDATE, STORE_NOTES),
        ],
        getkeys: Some(sort_keys),
        route: Route::Keys(Split::Gather),
        run: Some(sort),
        summary: "Orders the elements of a list, set or sorted set, optionally by other keys' values, and returns or stores them.",
        complexity: "O(N+M*log(M)) where N is the number of elements in the list or set to sort, and M the number of returned elements. When the elements are not sorted, complexity is O(N).",
        args: SORT_STORE_ARGS,
        ..CommandSpec::DEFAULT
    },
    CommandSpec {
        name: "sort_ro",
        arity: -2,
        flags: flag::READONLY,
        acl: SORT_ACL,
        group: Group::Generic,
        keys: &[
            KeySpec::one(1, kflag::RO | kflag::ACCESS),
            KeySpec::unknown(kflag::RO | kflag::ACCESS, BY_GET_NOTES),
        ],
        getkeys: Some(sort_ro_keys),
        route: Route::Keys(Split::Gather),
        run: Some(sort_ro),
        summary: "Read-only SORT: orders the elements of a list, set or sorted set without storing them.",
        since: "7.0.0",
        complexity: "O(N+M*log(M)) where N is the number of elements in the list or set to sort, and M the number of returned elements. When the elements are not sorted, complexity is O(N).",
        args: SORT_ARGS,
        ..CommandSpec::DEFAULT
    },
];

const SORT_STORE_ARGS: &[Arg] = &[
    SORT_ARGS[0],
    SORT_ARGS[1],
    SORT_ARGS[2],
    SORT_ARGS[3],
    SORT_ARGS[4],
    SORT_ARGS[5],
    Arg {
        key_spec_index: 2,
        ..Arg::new("destination", ArgType::Key)
            .with_token("STORE")
            .optional()
    },
];

/// The sorted key and the STORE destination, as Redis's `sortGetKeys` finds them.
/// SORT_RO's key: only the one it sorts (it has no STORE).
fn sort_ro_keys(_: &[&[u8]], out: &mut Vec<usize>) {
    out.push(1);
}

fn sort_keys(argv: &[&[u8]], out: &mut Vec<usize>) {
    out.push(1);
    let mut i = 2;
    while i < argv.len() {
        let a = argv[i];
        let skip = if eq_ic(a, "limit") {
            2
        } else if eq_ic(a, "get") || eq_ic(a, "by") {
            1
        } else if eq_ic(a, "store") {
            if i + 1 < argv.len() {
                out.push(i + 1);
            }
            1
        } else {
            0
        };
        i += 1 + skip;
    }
}

/// SORT's options.
struct Opts<'a> {
    by: Option<&'a [u8]>,
    dontsort: bool,
    limit: (i64, i64),
    gets: Vec<&'a [u8]>,
    desc: bool,
    alpha: bool,
    store: Option<&'a [u8]>,
}

fn parse<'a>(argv: &[&'a [u8]], readonly: bool) -> Result<Opts<'a>> {
    let mut o = Opts {
        by: None,
        dontsort: false,
        limit: (0, -1),
        gets: Vec::new(),
        desc: false,
        alpha: false,
        store: None,
    };
    let mut j = 2;
    while j < argv.len() {
        let a = argv[j];
        let left = argv.len() - j - 1;
        if eq_ic(a, "asc") {
            o.desc = false;
        } else if eq_ic(a, "desc") {
            o.desc = true;
        } else if eq_ic(a, "alpha") {
            o.alpha = true;
        } else if eq_ic(a, "limit") && left >= 2 {
            let start = parse_i64(argv[j + 1]).ok_or(Error::NotInteger)?;
            let count = parse_i64(argv[j + 2]).ok_or(Error::NotInteger)?;
            o.limit = (start, count);
            j += 2;
        } else if !readonly && eq_ic(a, "store") && left >= 1 {
            o.store = Some(argv[j + 1]);
            j += 1;
        } else if eq_ic(a, "by") && left >= 1 {
            o.by = Some(argv[j + 1]);
            // A pattern without `*` names one fixed key: there is nothing to sort by.
            if !argv[j + 1].contains(&b'*') {
                o.dontsort = true;
            }
            j += 1;
        } else if eq_ic(a, "get") && left >= 1 {
            o.gets.push(argv[j + 1]);
            j += 1;
        } else {
            return Err(Error::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

/// The key a pattern names for `element`, and the hash field after `->`, if any. `None` for
/// `#` (the element itself) and for patterns without `*`.
pub fn pattern_key(pattern: &[u8], element: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let star = pattern.iter().position(|&b| b == b'*')?;
    let rest = &pattern[star + 1..];
    let (postfix, field) = match rest.windows(2).position(|w| w == b"->") {
        Some(f) if f + 2 < rest.len() => (&rest[..f], Some(rest[f + 2..].to_vec())),
        _ => (rest, None),
    };
    let mut key = Vec::with_capacity(star + element.len() + postfix.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(postfix);
    Some((key, field))
}

/// The value a BY/GET pattern gives for `element` (a string, or a hash field).
fn lookup_pattern(
    sh: &mut Shard,
    db: usize,
    now_ms: u64,
    pattern: &[u8],
    element: &[u8],
) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(element.to_vec());
    }
    let (key, field) = pattern_key(pattern, element)?;
    let entry = sh.dbs[db].get_read(&key, now_ms)?;
    match (&entry.value, field) {
        (Value::Str(s), None) => Some(s.as_bytes().into_owned()),
        (Value::Hash(h), Some(f)) => h.get(&f).map(|v| v.to_vec()),
        _ => None,
    }
}

/// The elements of a sortable value, in its native order.
fn elements(value: &Value) -> Result<Vec<SmallBytes>> {
    match value {
        Value::List(l) => Ok(l.iter().map(SmallBytes::from).collect()),
        Value::Set(s) => Ok(s.iter().map(|m| m.to_bytes()).collect()),
        Value::ZSet(z) => Ok(z.iter().map(|(m, _)| SmallBytes::from(m)).collect()),
        _ => Err(Error::WrongType),
    }
}

/// The keys BY and GET patterns name for the elements of `value` (the sorted key's value), for
/// the server to gather before running SORT across shards.
pub fn pattern_keys(argv: &[&[u8]], value: Option<&Value>) -> Vec<Vec<u8>> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Ok(elems) = elements(value) else {
        return Vec::new();
    };
    let patterns: Vec<&[u8]> = pattern_args(argv);
    let mut keys = Vec::new();
    for e in &elems {
        for p in &patterns {
            if let Some((k, _)) = pattern_key(p, e) {
                keys.push(k);
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The BY and GET pattern arguments of a SORT command line.
pub fn pattern_args<'a>(argv: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 1 < argv.len() {
        if eq_ic(argv[i], "by") || eq_ic(argv[i], "get") {
            out.push(argv[i + 1]);
            i += 2;
        } else if eq_ic(argv[i], "limit") {
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// Parses a score as C's `strtod` over the whole string (leading spaces allowed, NaN refused).
fn score_of(v: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(v).ok()?.trim_start();
    if s.is_empty() {
        return Some(0.0);
    }
    let lower = s.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    let f = if unsigned == "inf" || unsigned == "infinity" {
        if lower.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }
    } else {
        if !unsigned
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
        {
            return None;
        }
        s.parse::<f64>().ok()?
    };
    (!f.is_nan()).then_some(f)
}

/// One element with what it sorts by.
struct Item {
    elem: SmallBytes,
    score: f64,
    cmp: Option<Vec<u8>>,
}

fn sort(sh: &mut Shard, c: &mut Call) -> Result<()> {
    run_sort(sh, c, false)
}

fn sort_ro(sh: &mut Shard, c: &mut Call) -> Result<()> {
    run_sort(sh, c, true)
}

fn run_sort(sh: &mut Shard, c: &mut Call, readonly: bool) -> Result<()> {
    let mut o = parse(c.argv, readonly)?;
    let mut elems = match sh.dbs[c.db].get_read(c.argv[1], c.now_ms) {
        None => Vec::new(),
        Some(e) => elements(&e.value)?,
    };
    // As Redis 7.0 does, SORT converts a listpack sorted set to the big encoding.
    if let Some(Value::ZSet(z)) = sh.dbs[c.db]
        .get_mut(c.argv[1], c.now_ms)
        .map(|e| &mut e.value)
    {
        z.convert();
    }
    let is_set = matches!(
        sh.dbs[c.db].get(c.argv[1], c.now_ms).map(|e| &e.value),
        Some(Value::Set(_))
    );
    // Sets have no order of their own: a stored result must not depend on hash order.
    if o.dontsort && is_set && o.store.is_some() {
        o.dontsort = false;
        o.alpha = true;
        o.by = None;
    }
    // Unsorted lists and sorted sets keep their order, read from the tail with DESC.
    let is_list = matches!(
        sh.dbs[c.db].get(c.argv[1], c.now_ms).map(|e| &e.value),
        Some(Value::List(_) | Value::ZSet(_))
    );
    if o.dontsort && is_list && o.desc {
        elems.reverse();
    }
    let len = elems.len() as i64;
    let (mut start, mut end) = (
        o.limit.0.max(0),
        if o.limit.1 < 0 {
            len - 1
        } else {
            o.limit.0.max(0).saturating_add(o.limit.1) - 1
        },
    );
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    end = end.min(len - 1);
    let mut items = Vec::with_capacity(elems.len());
    for elem in elems {
        let mut item = Item {
            elem,
            score: 0.0,
            cmp: None,
        };
        if !o.dontsort {
            let by = match o.by {
                Some(p) => lookup_pattern(sh, c.db, c.now_ms, p, &item.elem),
                None => Some(item.elem.to_vec()),
            };
            if let Some(v) = by {
                if o.alpha {
                    if o.by.is_some() {
                        item.cmp = Some(v);
                    }
                } else {
                    item.score = score_of(&v).ok_or_else(|| {
                        Error::err("One or more scores can't be converted into double")
                    })?;
                }
            }
        }
        items.push(item);
    }
    if !o.dontsort {
        let (alpha, by, desc) = (o.alpha, o.by.is_some(), o.desc);
        items.sort_by(|a, b| {
            let ord = compare(a, b, alpha, by);
            if desc {
                ord.reverse()
            } else {
                ord
            }
        });
    }
    let picked: &[Item] = if start <= end && start >= 0 {
        &items[start as usize..=end as usize]
    } else {
        &[]
    };
    output(sh, c, &o, picked)
}

fn compare(a: &Item, b: &Item, alpha: bool, by: bool) -> Ordering {
    if !alpha {
        return a
            .score
            .partial_cmp(&b.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.elem.as_slice().cmp(b.elem.as_slice()));
    }
    if by {
        return match (&a.cmp, &b.cmp) {
            (Some(x), Some(y)) => x.cmp(y),
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
        };
    }
    a.elem.as_slice().cmp(b.elem.as_slice())
}

/// Replies with (or stores) the picked elements, or their GET projections.
fn output(sh: &mut Shard, c: &mut Call, o: &Opts, picked: &[Item]) -> Result<()> {
    let mut rows: Vec<Option<Vec<u8>>> = Vec::with_capacity(picked.len() * o.gets.len().max(1));
    for item in picked {
        if o.gets.is_empty() {
            rows.push(Some(item.elem.to_vec()));
        }
        for p in &o.gets {
            rows.push(lookup_pattern(sh, c.db, c.now_ms, p, &item.elem));
        }
    }
    let Some(dest) = o.store else {
        c.out.array(rows.len());
        for r in &rows {
            match r {
                Some(v) => c.out.bulk(v),
                None => c.out.null(),
            }
        }
        return Ok(());
    };
    let n = rows.len();
    let db = &mut sh.dbs[c.db];
    if n == 0 {
        if db.remove(dest).is_some() {
            sh.stats.dirty += 1;
            sh.notify(class::GENERIC, "del", c.db, dest);
        }
    } else {
        let fill = crate::types::list::Fill::new(sh.config.list_max_listpack_size);
        let mut list = crate::types::List::new();
        for r in &rows {
            list.push(
                crate::types::list::End::Tail,
                r.as_deref().unwrap_or(b""),
                fill,
            );
        }
        db.insert(dest, Entry::new(Value::List(list)));
        sh.stats.dirty += n as u64;
        sh.notify(class::LIST, "sortstore", c.db, dest);
    }
    c.out.int(n as i64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::shard::testing::TestShard;

    fn run(t: &mut TestShard, line: &str) -> String {
        t.run(line)
    }

    #[test]
    fn numeric_alpha_limit_desc() {
        let mut t = TestShard::new();
        run(&mut t, "RPUSH l 3 1 2 10");
        assert_eq!(
            run(&mut t, "SORT l"),
            "*4\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$2\r\n10\r\n"
        );
        assert_eq!(
            run(&mut t, "SORT l ALPHA"),
            "*4\r\n$1\r\n1\r\n$2\r\n10\r\n$1\r\n2\r\n$1\r\n3\r\n"
        );
        assert_eq!(
            run(&mut t, "SORT l DESC LIMIT 1 2"),
            "*2\r\n$1\r\n3\r\n$1\r\n2\r\n"
        );
        assert_eq!(run(&mut t, "SORT l LIMIT 10 2"), "*0\r\n");
        assert_eq!(
            run(&mut t, "SORT l LIMIT x 2"),
            "-ERR value is not an integer or out of range\r\n"
        );
        run(&mut t, "RPUSH w a");
        assert_eq!(
            run(&mut t, "SORT w"),
            "-ERR One or more scores can't be converted into double\r\n"
        );
        assert_eq!(run(&mut t, "SORT l BOGUS"), "-ERR syntax error\r\n");
        assert_eq!(run(&mut t, "SORT_RO l STORE d"), "-ERR syntax error\r\n");
        assert_eq!(run(&mut t, "SORT missing"), "*0\r\n");
        run(&mut t, "SET s x");
        assert_eq!(
            run(&mut t, "SORT s"),
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        );
    }

    #[test]
    fn by_get_store() {
        let mut t = TestShard::new();
        run(&mut t, "RPUSH l a b c");
        run(&mut t, "MSET w_a 3 w_b 1 w_c 2 v_a A v_c C");
        assert_eq!(
            run(&mut t, "SORT l BY w_*"),
            "*3\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\na\r\n"
        );
        assert_eq!(
            run(&mut t, "SORT l BY w_* GET v_* GET #"),
            "*6\r\n$-1\r\n$1\r\nb\r\n$1\r\nC\r\n$1\r\nc\r\n$1\r\nA\r\n$1\r\na\r\n"
        );
        assert_eq!(
            run(&mut t, "SORT l BY nosort"),
            "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"
        );
        assert_eq!(run(&mut t, "SORT l BY w_* STORE dst"), ":3\r\n");
        assert_eq!(
            run(&mut t, "LRANGE dst 0 -1"),
            "*3\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\na\r\n"
        );
        assert_eq!(run(&mut t, "SORT l BY w_* GET v_* STORE dst"), ":3\r\n");
        assert_eq!(
            run(&mut t, "LRANGE dst 0 -1"),
            "*3\r\n$0\r\n\r\n$1\r\nC\r\n$1\r\nA\r\n"
        );
        assert_eq!(run(&mut t, "SORT missing STORE dst"), ":0\r\n");
        assert_eq!(run(&mut t, "EXISTS dst"), ":0\r\n");
        run(&mut t, "HSET h_a f 9");
        run(&mut t, "HSET h_b f 1");
        assert_eq!(
            run(&mut t, "SORT l BY h_*->f GET h_*->f"),
            "*3\r\n$-1\r\n$1\r\n1\r\n$1\r\n9\r\n"
        );
    }

    #[test]
    fn pattern_keys_and_getkeys() {
        assert_eq!(
            super::pattern_key(b"obj_*->name", b"7"),
            Some((b"obj_7".to_vec(), Some(b"name".to_vec())))
        );
        assert_eq!(
            super::pattern_key(b"w_*->", b"7"),
            Some((b"w_7->".to_vec(), None))
        );
        assert_eq!(super::pattern_key(b"fixed", b"7"), None);
        let argv: Vec<&[u8]> = vec![
            b"SORT", b"l", b"LIMIT", b"0", b"1", b"STORE", b"d", b"GET", b"x",
        ];
        let mut out = Vec::new();
        super::sort_keys(&argv, &mut out);
        assert_eq!(out, vec![1, 6]);
    }
}
