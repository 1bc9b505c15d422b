//! Reading a whole dataset through commands, to compare two servers' data logically (the
//! same keys, types, contents and deadlines), whatever their encodings.

use super::{encode, escape, split_aggregate, RawConn};
use std::collections::BTreeMap;

/// Sends a command and panics on an error reply.
pub fn ok(con: &mut RawConn, args: &[&str]) -> Vec<u8> {
    let r = con.cmd(args);
    assert_ne!(r.first(), Some(&b'-'), "{args:?}: {}", escape(&r));
    r
}

/// Pipelines `cmds` (in batches, so neither side's buffers fill) and panics on an error reply.
pub fn run_all(con: &mut RawConn, cmds: &[Vec<String>]) {
    for batch in cmds.chunks(500) {
        let mut out = Vec::new();
        for c in batch {
            out.extend(encode(c));
        }
        con.send(&out);
        for c in batch {
            let r = con.read_reply();
            let head: Vec<&String> = c.iter().take(3).collect();
            assert_ne!(r.first(), Some(&b'-'), "{head:?}…: {}", escape(&r));
        }
    }
}

/// The payload of a bulk-string reply (`None` for a nil).
pub fn bulk(reply: &[u8]) -> Option<Vec<u8>> {
    assert_eq!(reply.first(), Some(&b'$'), "{}", escape(reply));
    let nl = reply.iter().position(|&b| b == b'\n').unwrap();
    let len: i64 = std::str::from_utf8(&reply[1..nl - 1])
        .unwrap()
        .parse()
        .unwrap();
    (len >= 0).then(|| reply[nl + 1..nl + 1 + len as usize].to_vec())
}

/// The elements of an array of bulk strings.
pub fn bulks(reply: &[u8]) -> Vec<Option<Vec<u8>>> {
    assert_eq!(reply.first(), Some(&b'*'), "{}", escape(reply));
    split_aggregate(reply).1.iter().map(|e| bulk(e)).collect()
}

/// The text of a simple-string reply.
pub fn simple(reply: &[u8]) -> String {
    assert_eq!(reply.first(), Some(&b'+'), "{}", escape(reply));
    String::from_utf8_lossy(&reply[1..reply.len() - 2]).into_owned()
}

/// The value of an integer reply.
pub fn int(reply: &[u8]) -> i64 {
    assert_eq!(reply.first(), Some(&b':'), "{}", escape(reply));
    std::str::from_utf8(&reply[1..reply.len() - 2])
        .unwrap()
        .parse()
        .unwrap()
}

/// What one key holds: its type, contents (in a canonical order) and `PEXPIRETIME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub ty: String,
    pub contents: Vec<Vec<u8>>,
    pub deadline_ms: i64,
}

pub type Dataset = BTreeMap<(usize, Vec<u8>), View>;

/// Every key of every database, read through commands.
pub fn dataset(con: &mut RawConn) -> Dataset {
    let mut out = Dataset::new();
    for db in 0..16 {
        ok(con, &["SELECT", &db.to_string()]);
        let keys: Vec<Vec<u8>> = bulks(&con.cmd(&["KEYS", "*"]))
            .into_iter()
            .map(Option::unwrap)
            .collect();
        for key in keys {
            if let Some(view) = view(con, &key) {
                out.insert((db, key), view);
            }
        }
    }
    ok(con, &["SELECT", "0"]);
    out
}

/// The keys of `like`, read now (absent ones left out).
pub fn views_of(con: &mut RawConn, like: &Dataset) -> Dataset {
    let mut out = Dataset::new();
    for (db, key) in like.keys() {
        ok(con, &["SELECT", &db.to_string()]);
        if let Some(v) = view(con, key) {
            out.insert((*db, key.clone()), v);
        }
    }
    ok(con, &["SELECT", "0"]);
    out
}

pub fn view(con: &mut RawConn, key: &[u8]) -> Option<View> {
    let ty = simple(&con.cmd_bytes(&[b"TYPE", key]));
    let elems =
        |r: Vec<u8>| -> Vec<Vec<u8>> { bulks(&r).into_iter().map(Option::unwrap).collect() };
    let contents = match ty.as_str() {
        "none" => return None,
        "string" => vec![bulk(&con.cmd_bytes(&[b"GET", key])).unwrap()],
        "list" => elems(con.cmd_bytes(&[b"LRANGE", key, b"0", b"-1"])),
        "set" => {
            let mut m = elems(con.cmd_bytes(&[b"SMEMBERS", key]));
            m.sort();
            m
        }
        "hash" => {
            let e = elems(con.cmd_bytes(&[b"HGETALL", key]));
            let mut pairs: Vec<Vec<u8>> = e.chunks(2).map(|p| p.join(&b'\0')).collect();
            pairs.sort();
            pairs
        }
        "zset" => elems(con.cmd_bytes(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"])),
        // Entries, bookkeeping and groups as raw replies (without times: a replayed AOF
        // holds the delivery times but sets consumers' seen times anew).
        "stream" => {
            let mut parts = vec![
                con.cmd_bytes(&[b"XRANGE", key, b"-", b"+"]),
                con.cmd_bytes(&[b"XINFO", b"STREAM", key]),
                con.cmd_bytes(&[b"XINFO", b"GROUPS", key]),
            ];
            let groups = con.cmd_bytes(&[b"XINFO", b"GROUPS", key]);
            for g in stream_group_names(&groups) {
                parts.push(con.cmd_bytes(&[b"XPENDING", key, &g]));
                // Each pending entry's id, owner and delivery count (not its idle time).
                let (_, entries) =
                    split_aggregate(&con.cmd_bytes(&[b"XPENDING", key, &g, b"-", b"+", b"1000"]));
                for e in entries {
                    let (_, mut fields) = split_aggregate(&e);
                    fields.remove(2);
                    parts.push(fields.concat());
                }
            }
            parts
        }
        other => panic!("unexpected type {other}"),
    };
    let deadline_ms = int(&con.cmd_bytes(&[b"PEXPIRETIME", key]));
    Some(View {
        ty,
        contents,
        deadline_ms,
    })
}

/// The group names in an XINFO GROUPS reply (RESP2: each group a flat field/value array
/// starting with `name`).
pub fn stream_group_names(reply: &[u8]) -> Vec<Vec<u8>> {
    let (_, groups) = split_aggregate(reply);
    groups
        .iter()
        .filter_map(|g| {
            let (_, fields) = split_aggregate(g);
            fields.get(1).and_then(|f| bulk(f))
        })
        .collect()
}

/// Panics with the first differences when `got` is not `want`.
pub fn assert_same(want: &Dataset, got: &Dataset, what: &str) {
    if want == got {
        return;
    }
    let name = |(db, k): &(usize, Vec<u8>)| format!("db{db}:{}", escape(k));
    let missing: Vec<String> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .map(name)
        .collect();
    let extra: Vec<String> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .map(name)
        .collect();
    let differ: Vec<String> = want
        .iter()
        .filter_map(|(k, v)| {
            let g = got.get(k)?;
            (g != v).then(|| {
                let short = |v: &View| {
                    let c: Vec<String> = v.contents.iter().take(6).map(|e| escape(e)).collect();
                    format!(
                        "{} {:?}{} deadline {}",
                        v.ty,
                        c,
                        if v.contents.len() > 6 { "…" } else { "" },
                        v.deadline_ms
                    )
                };
                format!("{}: want {} got {}", name(k), short(v), short(g))
            })
        })
        .collect();
    panic!(
        "{what}: datasets differ ({} keys wanted, {} found)\n missing ({}): {:?}\n extra ({}): {:?}\n differing ({}): {:#?}",
        want.len(),
        got.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        extra.len(),
        &extra[..extra.len().min(10)],
        differ.len(),
        &differ[..differ.len().min(10)],
    );
}
