//! Engine micro-benchmark: commands executed against one shard directly (no network, no
//! runtime), to see what the engine itself costs per command. `cargo bench --bench engine`.
//! Prints ns/command for SET, GET, INCR, HSET, LPUSH over a keyspace of 100k keys, and for ZADD
//! into 100k small sorted sets (the listpack encoding) and ZADD, ZRANK and ZRANGE BYSCORE on one
//! sorted set of 100k members (the tree).

use shards::cmd::lookup;
use shards::resp::Proto;
use shards::Shard;
use std::time::Instant;

fn run(shard: &mut Shard, name: &str, make: impl Fn(usize) -> Vec<Vec<u8>>, n: usize) {
    let mut out = Vec::with_capacity(1 << 20);
    let commands: Vec<Vec<Vec<u8>>> = (0..n).map(&make).collect();
    let started = Instant::now();
    for args in &commands {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        if let Ok(l) = lookup(&argv) {
            shard.execute_reply(l, &argv, 0, 1_700_000_000_000_000, Proto::Resp2, &mut out);
        }
        if out.len() > 1 << 19 {
            out.clear();
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / n as f64;
    println!("{name:8} {ns:8.1} ns/command");
}

fn main() {
    const KEYS: usize = 100_000;
    const N: usize = 1_000_000;
    let mut shard = Shard::new(0, 1, 42);
    let key = |i: usize| format!("key:{:012}", (i * 7919) % KEYS).into_bytes();
    run(
        &mut shard,
        "SET",
        |i| vec![b"SET".to_vec(), key(i), b"xxx".to_vec()],
        N,
    );
    run(&mut shard, "GET", |i| vec![b"GET".to_vec(), key(i)], N);
    run(
        &mut shard,
        "INCR",
        |i| vec![b"INCR".to_vec(), format!("ctr:{}", i % KEYS).into_bytes()],
        N,
    );
    run(
        &mut shard,
        "HSET",
        |i| {
            vec![
                b"HSET".to_vec(),
                format!("h:{}", i % KEYS).into_bytes(),
                b"f".to_vec(),
                b"v".to_vec(),
            ]
        },
        N,
    );
    run(
        &mut shard,
        "LPUSH",
        |i| {
            vec![
                b"LPUSH".to_vec(),
                format!("l:{}", i % 1000).into_bytes(),
                b"item".to_vec(),
            ]
        },
        N,
    );
    // A spread of pseudo-random numbers below 100k.
    let rand = |i: usize| (i.wrapping_mul(2_654_435_761) >> 7) % 100_000;
    run(
        &mut shard,
        "ZADD-lp",
        |i| {
            vec![
                b"ZADD".to_vec(),
                format!("z:{}", i % KEYS).into_bytes(),
                format!("{}", rand(i) % 1000).into_bytes(),
                format!("m{}", i % 10).into_bytes(),
            ]
        },
        N,
    );
    run(
        &mut shard,
        "ZADD",
        |i| {
            vec![
                b"ZADD".to_vec(),
                b"big".to_vec(),
                format!("{}", rand(i)).into_bytes(),
                format!("member:{}", rand(i + 1)).into_bytes(),
            ]
        },
        N,
    );
    run(
        &mut shard,
        "ZRANK",
        |i| {
            vec![
                b"ZRANK".to_vec(),
                b"big".to_vec(),
                format!("member:{}", rand(i)).into_bytes(),
            ]
        },
        N,
    );
    run(
        &mut shard,
        "ZRANGE",
        |i| {
            vec![
                b"ZRANGE".to_vec(),
                b"big".to_vec(),
                format!("{}", rand(i)).into_bytes(),
                b"+inf".to_vec(),
                b"BYSCORE".to_vec(),
                b"LIMIT".to_vec(),
                b"0".to_vec(),
                b"10".to_vec(),
            ]
        },
        N,
    );
}
