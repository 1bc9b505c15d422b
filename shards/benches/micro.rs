//! Criterion micro-benchmarks of the engine's hot paths, so regressions show before they reach
//! the server: the RESP parser and reply writer, the keyspace table (insert, lookup, delete,
//! scan), and each data type's common commands run through the command table against one
//! shard (no network, no runtime).
//!
//!     cargo bench -p shards --bench micro            # all
//!     cargo bench -p shards --bench micro -- resp    # a group

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use shards::cmd::lookup;
use shards::keyspace::{Db, Entry};
use shards::resp::{encode_command, parse_command, ParseLimits, Parsed, Proto, Reply};
use shards::types::{Str, Value};
use shards::Shard;

const NOW_US: u64 = 1_700_000_000_000_000;
const KEYS: usize = 100_000;

fn key(i: usize) -> Vec<u8> {
    format!("key:{i}").into_bytes()
}

/// A pipeline of 16 `SET key:<i> <100 bytes>` commands, as a client sends them.
fn pipeline() -> Vec<u8> {
    let value = [b'x'; 100];
    let mut buf = Vec::new();
    for i in 0..16 {
        encode_command(&[b"SET", &key(i), &value], &mut buf);
    }
    buf
}

fn resp(c: &mut Criterion) {
    let buf = pipeline();
    let mut g = c.benchmark_group("resp");
    g.bench_function("parse 16 SETs", |b| {
        let (mut args, mut scratch) = (Vec::new(), Vec::new());
        let limits = ParseLimits {
            bulk_len_max: usize::MAX,
        };
        b.iter(|| {
            let mut pos = 0;
            while let Ok(Parsed::Command { consumed }) =
                parse_command(&buf[pos..], &mut args, &mut scratch, limits)
            {
                pos += consumed;
            }
            black_box(pos)
        })
    });
    g.bench_function("write 16 bulk replies", |b| {
        let mut out = Vec::with_capacity(4096);
        let value = [b'y'; 100];
        b.iter(|| {
            out.clear();
            let mut r = Reply::new(&mut out, Proto::Resp2);
            for i in 0..16 {
                r.bulk(&value);
                r.int(i);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn filled_db() -> Db {
    let mut db = Db::default();
    for i in 0..KEYS {
        db.insert(&key(i), Entry::new(Value::Str(Str::from_bytes(b"value"))));
    }
    db
}

fn keyspace(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyspace");
    let keys: Vec<Vec<u8>> = (0..KEYS).map(key).collect();
    g.bench_function("insert 100k", |b| {
        b.iter_batched(
            Db::default,
            |mut db| {
                for k in &keys {
                    db.insert(k, Entry::new(Value::Str(Str::from_bytes(b"value"))));
                }
                db
            },
            BatchSize::LargeInput,
        )
    });
    let mut db = filled_db();
    let mut i = 0;
    g.bench_function("lookup", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(db.get(&keys[i], NOW_US / 1000).is_some())
        })
    });
    g.bench_function("delete and reinsert", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            let e = db.remove(&keys[i]);
            if let Some(e) = e {
                db.insert(&keys[i], e);
            }
        })
    });
    g.bench_function("scan 100 keys", |b| {
        // A cursor is the count of slot ids still to visit: start (and restart) from the top.
        let mut cursor = u64::MAX;
        b.iter(|| {
            let mut n = 0;
            cursor = db.scan(cursor, 100, NOW_US / 1000, |_, _| n += 1);
            if cursor == 0 {
                cursor = u64::MAX;
            }
            assert!(n > 0);
            black_box(n)
        })
    });
    g.finish();
}

/// Runs `make(i)` commands round robin against `shard`, one per iteration.
fn command(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    shard: &mut Shard,
    name: &str,
    make: impl Fn(usize) -> Vec<Vec<u8>>,
) {
    let commands: Vec<Vec<Vec<u8>>> = (0..1024).map(&make).collect();
    let mut out = Vec::with_capacity(1 << 16);
    let mut i = 0;
    g.bench_function(name, |b| {
        b.iter(|| {
            let args = &commands[i % commands.len()];
            i += 1;
            let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            out.clear();
            if let Ok(l) = lookup(&argv) {
                shard.execute_reply(l, &argv, 0, NOW_US, Proto::Resp2, &mut out);
            }
            black_box(out.len())
        })
    });
}

fn words(s: &str) -> Vec<Vec<u8>> {
    s.split(' ').map(|w| w.as_bytes().to_vec()).collect()
}

fn types(c: &mut Criterion) {
    let mut g = c.benchmark_group("types");
    let mut sh = Shard::new(0, 1, 1);
    let n = |i: usize| i * 7919 % KEYS;
    command(&mut g, &mut sh, "SET", |i| {
        words(&format!("SET key:{} value-{i}", n(i)))
    });
    command(&mut g, &mut sh, "GET", |i| {
        words(&format!("GET key:{}", n(i)))
    });
    command(&mut g, &mut sh, "INCR", |i| {
        words(&format!("INCR counter:{}", i % 100))
    });
    command(&mut g, &mut sh, "HSET", |i| {
        words(&format!("HSET hash:{} f{} v", i % 1000, i % 10))
    });
    command(&mut g, &mut sh, "HGET", |i| {
        words(&format!("HGET hash:{} f{}", i % 1000, i % 10))
    });
    command(&mut g, &mut sh, "LPUSH", |i| {
        words(&format!("LPUSH list:{} item-{i}", i % 100))
    });
    command(&mut g, &mut sh, "RPOP", |i| {
        words(&format!("RPOP list:{}", i % 100))
    });
    command(&mut g, &mut sh, "SADD", |i| {
        words(&format!("SADD set:{} m{}", i % 100, i % 500))
    });
    command(&mut g, &mut sh, "SISMEMBER", |i| {
        words(&format!("SISMEMBER set:{} m{}", i % 100, i % 500))
    });
    command(&mut g, &mut sh, "ZADD", |i| {
        words(&format!("ZADD zset {} m{}", n(i), n(i)))
    });
    command(&mut g, &mut sh, "ZRANK", |i| {
        words(&format!("ZRANK zset m{}", n(i)))
    });
    command(&mut g, &mut sh, "XADD", |i| {
        words(&format!("XADD stream * sensor s-{} temp 21.5", i % 10))
    });
    command(&mut g, &mut sh, "XRANGE COUNT 10", |_| {
        words("XRANGE stream - + COUNT 10")
    });
    command(&mut g, &mut sh, "SETBIT", |i| {
        words(&format!("SETBIT bits {} 1", n(i) * 10))
    });
    command(&mut g, &mut sh, "BITCOUNT", |_| words("BITCOUNT bits"));
    command(&mut g, &mut sh, "PFADD", |i| {
        words(&format!("PFADD hll e{}", n(i)))
    });
    command(&mut g, &mut sh, "PFCOUNT", |_| words("PFCOUNT hll"));
    command(&mut g, &mut sh, "GEOADD", |i| {
        let (lon, lat) = (
            2.0 + (n(i) % 1000) as f64 / 1000.0,
            48.0 + (n(i) / 1000) as f64 / 1000.0,
        );
        words(&format!("GEOADD geo {lon} {lat} p{}", n(i)))
    });
    command(&mut g, &mut sh, "GEOSEARCH 2 km", |i| {
        words(&format!(
            "GEOSEARCH geo FROMMEMBER p{} BYRADIUS 2 km COUNT 10",
            n(i)
        ))
    });
    g.finish();
}

criterion_group!(benches, resp, keyspace, types);
criterion_main!(benches);
