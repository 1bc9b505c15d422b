//! HyperLogLog commands (Redis's `hyperloglog.c`): PFADD, PFCOUNT, PFMERGE, PFDEBUG and
//! PFSELFTEST, over string values in Redis's exact HyperLogLog layout (see
//! [`crate::types::hll`]), with Redis 7.0's replies, errors and statistics.
//!
//! A value that is not a HyperLogLog string answers `WRONGTYPE Key is not a valid HyperLogLog
//! string value.`; a sparse value whose code is damaged answers `INVALIDOBJ Corrupted HLL
//! object detected`. PFCOUNT of one key refreshes the cached cardinality in the value (a write
//! that counts in `dirty`); PFCOUNT of several keys counts their union without changing them.
//! PFCOUNT reads count keyspace hits and misses, the other commands look keys up for writing.
//! Multi-key PFCOUNT and PFMERGE gather their keys from every shard (`Split::Gather`).

use super::spec::{acl, flag, kflag, Arg, ArgType, CommandSpec, Group, KeySpec, Route, Split};
use super::string::{lookup_read, lookup_read_mut};
use super::Call;
use crate::keyspace::Entry;
use crate::notify::class;
use crate::types::hll::{self, Encoding, REGISTERS};
use crate::types::{Str, Value};
use crate::util::eq_ic;
use crate::{Error, Result, Shard};

const HLL: CommandSpec = CommandSpec {
    group: Group::HyperLogLog,
    acl: acl::HYPERLOGLOG,
    ..CommandSpec::DEFAULT
};

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "pfadd",
        arity: -2,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::INSERT)],
        run: Some(pfadd),
        summary: "Adds elements to a HyperLogLog, creating it if needed; answers 1 when its estimate may have changed.",
        since: "2.8.9",
        complexity: "O(1) to add every element.",
        args: &[
            Arg::key("key", 0),
            Arg::new("element", ArgType::String).optional().multiple(),
        ],
        ..HLL
    },
    CommandSpec {
        name: "pfcount",
        arity: -2,
        flags: flag::READONLY | flag::MAY_REPLICATE,
        keys: &[KeySpec {
            notes: Some("RW because it may change the internal representation of the key, and propagate to replicas"),
            ..KeySpec::range(1, -1, 1, kflag::RW | kflag::ACCESS)
        }],
        route: Route::Keys(Split::Gather),
        run: Some(pfcount),
        summary: "Estimates how many distinct elements a HyperLogLog has seen, or several HyperLogLogs together.",
        since: "2.8.9",
        complexity: "O(1) with a very small average constant time when called with a single key. O(N) with N being the number of keys, and much bigger constant times, when called with multiple keys.",
        args: &[Arg::key("key", 0).multiple()],
        ..HLL
    },
    CommandSpec {
        name: "pfmerge",
        arity: -2,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[
            KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::INSERT),
            KeySpec::range(2, -1, 1, kflag::RO | kflag::ACCESS),
        ],
        route: Route::Keys(Split::Gather),
        run: Some(pfmerge),
        summary: "Merges HyperLogLogs into a destination HyperLogLog (itself included), which then estimates their union.",
        since: "2.8.9",
        complexity: "O(N) to merge N HyperLogLogs, but with high constant times.",
        args: &[Arg::key("destkey", 0), Arg::key("sourcekey", 1).multiple()],
        ..HLL
    },
    CommandSpec {
        name: "pfdebug",
        arity: 3,
        flags: flag::WRITE | flag::DENYOOM | flag::ADMIN,
        keys: &[KeySpec::one(2, kflag::RW | kflag::ACCESS)],
        run: Some(pfdebug),
        summary: "Inspects a HyperLogLog's internals: its registers, sparse opcodes or encoding, or converts it to dense.",
        since: "2.8.9",
        complexity: "N/A",
        syscmd: true,
        args: &[
            Arg::new("subcommand", ArgType::String),
            Arg::key("key", 0),
        ],
        ..HLL
    },
    CommandSpec {
        name: "pfselftest",
        arity: 1,
        flags: flag::ADMIN,
        run: Some(pfselftest),
        summary: "Runs the HyperLogLog implementation's self-checks.",
        since: "2.8.9",
        complexity: "N/A",
        syscmd: true,
        ..HLL
    },
];

/// Elements PFSELFTEST feeds its test values.
const SELF_TEST_ELEMENTS: u64 = 100_000;

/// The error for a string that is not a HyperLogLog.
fn not_hll() -> Error {
    Error::Other("WRONGTYPE Key is not a valid HyperLogLog string value.".into())
}

/// The error for a HyperLogLog whose sparse code is damaged.
fn corrupt(_: hll::Corrupt) -> Error {
    Error::Other("INVALIDOBJ Corrupted HLL object detected".into())
}

/// The encoding of a HyperLogLog value, or the error Redis gives for anything else (an
/// integer-encoded string never is one).
fn check_hll(v: &Value) -> Result<Encoding> {
    match v.as_str()? {
        Str::Bytes { data, .. } => hll::encoding_of(data).ok_or_else(not_hll),
        Str::Int(_) => Err(not_hll()),
    }
}

/// PFADD key [element ...]
fn pfadd(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let Shard {
        dbs, stats, config, ..
    } = sh;
    let db = &mut dbs[c.db];
    let key = c.argv[1];
    let mut updated = 0;
    match db.get_mut(key, c.now_ms) {
        Some(e) => {
            check_hll(&e.value)?;
        }
        None => {
            db.insert(key, Entry::new(Value::Str(Str::raw(hll::new_sparse()))));
            updated += 1;
        }
    }
    let Some(e) = db.get_mut(key, c.now_ms) else {
        return Err(Error::NoSuchKey);
    };
    let s = e.value.as_str_mut()?.bytes_mut();
    for element in &c.argv[2..] {
        if hll::add(s, element, config.hll_sparse_max_bytes).map_err(corrupt)? {
            updated += 1;
        }
    }
    if updated > 0 {
        hll::invalidate(s);
        stats.dirty += updated;
        sh.notify(class::STRING, "pfadd", c.db, key);
    }
    c.out.int((updated > 0) as i64);
    Ok(())
}

/// PFCOUNT key [key ...]
fn pfcount(sh: &mut Shard, c: &mut Call) -> Result<()> {
    if c.argv.len() > 2 {
        return pfcount_union(sh, c);
    }
    let (card, refreshed) = {
        let Some(v) = lookup_read_mut(sh, c.db, c.argv[1], c.now_ms) else {
            c.out.int(0);
            return Ok(());
        };
        check_hll(v)?;
        let s = v.as_str_mut()?.bytes_mut();
        match hll::cached(s) {
            Some(card) => (card, false),
            None => {
                let card = hll::estimate(&hll::histogram(s).map_err(corrupt)?);
                hll::store_cached(s, card);
                (card, true)
            }
        }
    };
    if refreshed {
        sh.stats.dirty += 1;
    }
    c.out.int(card as i64);
    Ok(())
}

/// The registers of the union of the HyperLogLogs under `keys` (missing keys are empty), and
/// whether any of them is dense.
fn union(sh: &mut Shard, c: &Call, keys: &[&[u8]]) -> Result<(Box<[u8; REGISTERS]>, bool)> {
    let mut max = Box::new([0u8; REGISTERS]);
    let mut dense = false;
    for key in keys {
        let Some(v) = lookup_read(sh, c.db, key, c.now_ms) else {
            continue;
        };
        dense |= check_hll(v)? == Encoding::Dense;
        hll::merge_into(&mut max, &v.as_str()?.as_bytes()).map_err(corrupt)?;
    }
    Ok((max, dense))
}

/// PFCOUNT with several keys: the estimate of their union; nothing is changed.
fn pfcount_union(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let (max, _) = union(sh, c, &c.argv[1..])?;
    let card = hll::estimate(&hll::histogram_of_registers(&max));
    c.out.int(card as i64);
    Ok(())
}

/// PFMERGE destkey [sourcekey ...]
fn pfmerge(sh: &mut Shard, c: &mut Call) -> Result<()> {
    // The destination takes part in the union too.
    let (max, use_dense) = union(sh, c, &c.argv[1..])?;
    let Shard {
        dbs, stats, config, ..
    } = sh;
    let db = &mut dbs[c.db];
    let dest = c.argv[1];
    if !db.contains(dest, c.now_ms) {
        db.insert(dest, Entry::new(Value::Str(Str::raw(hll::new_sparse()))));
    }
    let Some(e) = db.get_mut(dest, c.now_ms) else {
        return Err(Error::NoSuchKey);
    };
    let s = e.value.as_str_mut()?.bytes_mut();
    if use_dense {
        hll::to_dense(s).map_err(corrupt)?;
    }
    hll::raise_all(s, &max, config.hll_sparse_max_bytes);
    hll::invalidate(s);
    stats.dirty += 1;
    // Redis names a merge's event `pfadd` too.
    sh.notify(class::STRING, "pfadd", c.db, dest);
    c.out.ok();
    Ok(())
}

/// PFDEBUG GETREG | DECODE | ENCODING | TODENSE key
fn pfdebug(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let sub = c.argv[1];
    let Some(e) = sh.dbs[c.db].get_mut(c.argv[2], c.now_ms) else {
        return Err(Error::err("The specified key does not exist"));
    };
    let enc = check_hll(&e.value)?;
    let s = e.value.as_str_mut()?.bytes_mut();
    let mut converted = false;
    if eq_ic(sub, "getreg") {
        if enc == Encoding::Sparse {
            hll::to_dense(s).map_err(corrupt)?;
            converted = true;
        }
        c.out.array(REGISTERS);
        for r in hll::registers(s) {
            c.out.int(r as i64);
        }
    } else if eq_ic(sub, "decode") {
        if enc != Encoding::Sparse {
            return Err(Error::err("HLL encoding is not sparse"));
        }
        c.out.bulk(hll::decode_sparse(s).as_bytes());
    } else if eq_ic(sub, "encoding") {
        c.out.simple(enc.name());
    } else if eq_ic(sub, "todense") {
        if enc == Encoding::Sparse {
            hll::to_dense(s).map_err(corrupt)?;
            converted = true;
        }
        c.out.int(converted as i64);
    } else {
        return Err(Error::err(format!(
            "Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(sub)
        )));
    }
    if converted {
        sh.stats.dirty += 1;
    }
    Ok(())
}

/// PFSELFTEST
fn pfselftest(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let max_bytes = sh.config.hll_sparse_max_bytes;
    hll::self_test(&mut sh.rng, SELF_TEST_ELEMENTS, max_bytes).map_err(Error::err)?;
    c.out.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::shard::testing::TestShard;
    use crate::types::hll;

    const NOT_HLL: &str = "-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n";
    const CORRUPT: &str = "-INVALIDOBJ Corrupted HLL object detected\r\n";

    /// The raw value under `key`.
    fn raw(t: &mut TestShard, key: &str) -> Vec<u8> {
        t.shard.dbs[0]
            .get(key.as_bytes(), t.now_ms)
            .and_then(|e| e.value.as_str().ok().map(|s| s.as_bytes().into_owned()))
            .unwrap_or_default()
    }

    fn encoding(t: &mut TestShard, key: &str) -> &'static str {
        t.shard.dbs[0]
            .get(key.as_bytes(), t.now_ms)
            .map_or("none", |e| e.value.encoding())
    }

    #[test]
    fn pfadd_pfcount() {
        let mut t = TestShard::new();
        assert_eq!(t.run("PFCOUNT h"), ":0\r\n");
        assert_eq!(t.run("PFADD h"), ":1\r\n");
        assert_eq!(t.run("PFADD h"), ":0\r\n");
        // A new value with a stale cache, as Redis leaves it.
        assert_eq!(
            raw(&mut t, "h"),
            b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80\x7f\xff"
        );
        assert_eq!(encoding(&mut t, "h"), "raw");
        assert_eq!(t.run("PFADD h a b c d e f g"), ":1\r\n");
        assert_eq!(t.run("PFADD h a b c"), ":0\r\n");
        assert_eq!(t.run("PFCOUNT h"), ":7\r\n");
        // The count is cached in the header, valid until the next change.
        assert_eq!(hll::cached(&raw(&mut t, "h")), Some(7));
        assert_eq!(t.run("PFADD h h"), ":1\r\n");
        assert_eq!(hll::cached(&raw(&mut t, "h")), None);
        assert_eq!(t.run("PFCOUNT h"), ":8\r\n");
        assert_eq!(t.run("PFDEBUG ENCODING h"), "+sparse\r\n");
        t.run("SET s foo");
        assert_eq!(t.run("PFADD s a"), NOT_HLL);
        assert_eq!(t.run("PFCOUNT s"), NOT_HLL);
        t.run("SET n 123456789012345678");
        assert_eq!(t.run("PFCOUNT n"), NOT_HLL);
        t.run("LPUSH l a");
        assert_eq!(
            t.run("PFADD l a"),
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        );
        assert_eq!(
            t.run("PFADD"),
            "-ERR wrong number of arguments for 'pfadd' command\r\n"
        );
    }

    #[test]
    fn many_elements_turn_dense() {
        let mut t = TestShard::new();
        let mut args: Vec<Vec<u8>> = vec![b"PFADD".to_vec(), b"h".to_vec()];
        args.extend((0..5000).map(|i| format!("e{i}").into_bytes()));
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        assert_eq!(t.run_args(&argv), ":1\r\n");
        assert_eq!(t.run("PFDEBUG ENCODING h"), "+dense\r\n");
        assert_eq!(raw(&mut t, "h").len(), hll::DENSE_LEN);
        let n: i64 = t.run("PFCOUNT h")[1..].trim().parse().unwrap();
        assert!((n - 5000).abs() < 5000 / 50, "{n}");
        // A smaller limit turns sparse values dense sooner.
        t.shard.config.hll_sparse_max_bytes = 30;
        t.run("PFADD small a b c d e f g h i j");
        assert_eq!(t.run("PFDEBUG ENCODING small"), "+dense\r\n");
    }

    #[test]
    fn union_and_merge() {
        let mut t = TestShard::new();
        t.run("PFADD a 1 2 3 4 5");
        t.run("PFADD b 4 5 6 7");
        let before_a = raw(&mut t, "a");
        assert_eq!(t.run("PFCOUNT a b none"), ":7\r\n");
        // The union count changes nothing.
        assert_eq!(raw(&mut t, "a"), before_a);
        assert_eq!(t.run("PFMERGE d a b"), "+OK\r\n");
        assert_eq!(t.run("PFCOUNT d"), ":7\r\n");
        assert_eq!(t.run("PFDEBUG ENCODING d"), "+sparse\r\n");
        // Merging into an existing value keeps its own registers.
        t.run("PFADD a 100");
        assert_eq!(t.run("PFMERGE a b"), "+OK\r\n");
        assert_eq!(t.run("PFCOUNT a"), ":8\r\n");
        assert_eq!(t.run("PFMERGE e"), "+OK\r\n");
        assert_eq!(t.run("PFCOUNT e"), ":0\r\n");
        // A dense source makes the destination dense.
        t.run("PFDEBUG TODENSE b");
        assert_eq!(t.run("PFMERGE f a b"), "+OK\r\n");
        assert_eq!(t.run("PFDEBUG ENCODING f"), "+dense\r\n");
        assert_eq!(t.run("PFCOUNT f"), ":8\r\n");
        t.run("SET s foo");
        assert_eq!(t.run("PFMERGE s a"), NOT_HLL);
        assert_eq!(t.run("PFMERGE d s"), NOT_HLL);
        assert_eq!(t.run("PFCOUNT a s"), NOT_HLL);
    }

    #[test]
    fn corrupted_values() {
        let mut t = TestShard::new();
        t.run("PFADD h a b c");
        let mut v = raw(&mut t, "h");
        // An extra opcode at the end: the registers no longer add up to 16384.
        v.push(0x00);
        t.run_args(&[b"SET", b"bad", &v]);
        assert_eq!(t.run("PFCOUNT bad"), CORRUPT);
        assert_eq!(t.run("PFCOUNT h bad"), CORRUPT);
        assert_eq!(t.run("PFMERGE d bad"), CORRUPT);
        assert_eq!(t.run("PFDEBUG GETREG bad"), CORRUPT);
        assert_eq!(t.run("PFDEBUG TODENSE bad"), CORRUPT);
        // Header checks.
        let mut broken = raw(&mut t, "h");
        broken[0] = b'X';
        t.run_args(&[b"SET", b"magic", &broken]);
        assert_eq!(t.run("PFCOUNT magic"), NOT_HLL);
        let mut enc = raw(&mut t, "h");
        enc[4] = 2;
        t.run_args(&[b"SET", b"enc", &enc]);
        assert_eq!(t.run("PFADD enc x"), NOT_HLL);
        t.run("PFDEBUG TODENSE h");
        let mut dense = raw(&mut t, "h");
        dense.pop();
        t.run_args(&[b"SET", b"short", &dense]);
        assert_eq!(t.run("PFCOUNT short"), NOT_HLL);
    }

    #[test]
    fn pfdebug() {
        let mut t = TestShard::new();
        assert_eq!(
            t.run("PFDEBUG GETREG none"),
            "-ERR The specified key does not exist\r\n"
        );
        t.run("PFADD h a");
        let (index, count) = hll::locate(b"a");
        let decoded = t.run("PFDEBUG DECODE h");
        let want = if index == 0 {
            format!("v:{count},1 Z:16383")
        } else if index == 16383 {
            format!("Z:16383 v:{count},1")
        } else {
            format!("Z:{index} v:{count},1 Z:{}", 16383 - index)
        };
        assert_eq!(decoded, format!("${}\r\n{want}\r\n", want.len()));
        let regs = t.run("PFDEBUG GETREG h");
        assert!(regs.starts_with("*16384\r\n"));
        let values: Vec<&str> = regs
            .split("\r\n")
            .skip(1)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(values.len(), 16384);
        assert_eq!(values[index], format!(":{count}"));
        // GETREG turned it dense.
        assert_eq!(t.run("PFDEBUG ENCODING h"), "+dense\r\n");
        assert_eq!(
            t.run("PFDEBUG DECODE h"),
            "-ERR HLL encoding is not sparse\r\n"
        );
        assert_eq!(t.run("PFDEBUG TODENSE h"), ":0\r\n");
        t.run("PFADD g a");
        assert_eq!(t.run("PFDEBUG todense g"), ":1\r\n");
        assert_eq!(
            t.run("PFDEBUG FOO g"),
            "-ERR Unknown PFDEBUG subcommand 'FOO'\r\n"
        );
        t.run("SET s foo");
        assert_eq!(t.run("PFDEBUG ENCODING s"), NOT_HLL);
    }

    #[test]
    fn refreshing_the_cache_fails_a_watch() {
        let mut t = TestShard::new();
        t.run("PFADD h a b");
        let (version, live) = t.shard.watch_key(0, b"h", t.now_ms);
        t.run("PFCOUNT h"); // the cache was stale: the value changes
        assert!(!t.shard.watch_holds(0, b"h", version, live, t.now_ms));
        let (version, live) = t.shard.watch_key(0, b"h", t.now_ms);
        t.run("PFCOUNT h"); // cached: nothing changes
        t.run("PFADD h a"); // nothing new
        assert!(t.shard.watch_holds(0, b"h", version, live, t.now_ms));
    }

    #[test]
    fn pfselftest() {
        let mut t = TestShard::new();
        assert_eq!(t.run("PFSELFTEST"), "+OK\r\n");
    }

    #[test]
    fn stats() {
        let mut t = TestShard::new();
        let d = t.shard.stats.dirty;
        t.run("PFADD h a b c"); // created + 3 registers
        assert_eq!(t.shard.stats.dirty, d + 4);
        t.run("PFADD h a");
        t.run("PFCOUNT h"); // refreshes the cache
        t.run("PFCOUNT h"); // cached
        assert_eq!(t.shard.stats.dirty, d + 5);
        t.run("PFMERGE h");
        assert_eq!(t.shard.stats.dirty, d + 6);
        let (hits, misses) = (t.shard.stats.keyspace_hits, t.shard.stats.keyspace_misses);
        t.run("PFCOUNT h none");
        t.run("PFMERGE h none"); // the sources are read
        t.run("PFADD none2 x"); // not a read
        assert_eq!(t.shard.stats.keyspace_hits, hits + 2);
        assert_eq!(t.shard.stats.keyspace_misses, misses + 2);
    }
}
