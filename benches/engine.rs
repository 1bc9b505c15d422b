//! Engine micro-benchmark: commands executed against one shard directly (no network, no
//! runtime), to see what the engine itself costs per command. `cargo bench --bench engine`.
//! Prints ns/command for SET, GET, INCR, HSET, LPUSH over a keyspace of 100k keys.

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
}
