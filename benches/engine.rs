//! Engine micro-benchmark: commands executed against one shard directly (no network, no
//! runtime), to see what the engine itself costs per command. `cargo bench --bench engine`.
//! Prints ns/command for SET, GET, INCR, HSET, LPUSH over a keyspace of 100k keys; for ZADD
//! into 100k small sorted sets (the listpack encoding) and ZADD, ZRANK and ZRANGE BYSCORE on one
//! sorted set of 100k members (the tree); GEOADD, GEOPOS and GEOSEARCH (a 2 km radius, about 24
//! matches, and the same with COUNT 3 ASC WITHDIST) over 100k points spread over 3° x 2° (about
//! 240 km x 220 km); then for the bitmap and HyperLogLog commands (scans over 1 MiB strings,
//! PFADD into sparse and dense values, cached and fresh PFCOUNT, unions and merges).

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
    // Points on a 3 x 2 degree area around (10, 45): about 6 km apart on average.
    let lon = |i: usize| 8.5 + (rand(i) as f64) * 3.0 / 100_000.0;
    // An independent spread for latitudes (rand(i + k) would put the points on a few lines).
    let rand2 =
        |i: usize| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % 100_000;
    let lat = |i: usize| 44.0 + (rand2(i) as f64) * 2.0 / 100_000.0;
    run(
        &mut shard,
        "GEOADD",
        |i| {
            vec![
                b"GEOADD".to_vec(),
                b"geo".to_vec(),
                format!("{:.6}", lon(i)).into_bytes(),
                format!("{:.6}", lat(i)).into_bytes(),
                format!("p{}", i % 100_000).into_bytes(),
            ]
        },
        N,
    );
    run(
        &mut shard,
        "GEOPOS",
        |i| {
            vec![
                b"GEOPOS".to_vec(),
                b"geo".to_vec(),
                format!("p{}", rand(i)).into_bytes(),
            ]
        },
        N,
    );
    let search = |i: usize, extra: &[&str]| {
        let mut args = vec![
            b"GEOSEARCH".to_vec(),
            b"geo".to_vec(),
            b"FROMLONLAT".to_vec(),
            format!("{:.4}", 9.0 + (i % 200) as f64 / 100.0).into_bytes(),
            format!("{:.4}", 44.5 + (i % 100) as f64 / 100.0).into_bytes(),
            b"BYRADIUS".to_vec(),
            b"2".to_vec(),
            b"km".to_vec(),
        ];
        args.extend(extra.iter().map(|a| a.as_bytes().to_vec()));
        args
    };
    run(&mut shard, "GEOSEARCH", |i| search(i, &[]), N / 10);
    run(
        &mut shard,
        "GEOSRCH-3",
        |i| search(i, &["COUNT", "3", "ASC", "WITHDIST"]),
        N / 10,
    );
    bits_and_hll(&mut shard);
}

fn bits_and_hll(shard: &mut Shard) {
    const N: usize = 200_000;
    let arg = |s: &str| s.as_bytes().to_vec();
    let num = |n: usize| n.to_string().into_bytes();
    // 100 bitmaps of 1 Mbit; offsets spread by a multiplicative hash.
    run(
        shard,
        "SETBIT",
        |i| {
            vec![
                arg("SETBIT"),
                format!("bm:{}", i % 100).into_bytes(),
                num((i * 2_654_435_761) % (1 << 20)),
                arg("1"),
            ]
        },
        N,
    );
    run(
        shard,
        "GETBIT",
        |i| {
            vec![
                arg("GETBIT"),
                format!("bm:{}", i % 100).into_bytes(),
                num((i * 40_503) % (1 << 20)),
            ]
        },
        N,
    );
    run(
        shard,
        "BITFIELD",
        |i| {
            vec![
                arg("BITFIELD"),
                format!("bm:{}", i % 100).into_bytes(),
                arg("INCRBY"),
                arg("u12"),
                format!("#{}", i % 5000).into_bytes(),
                arg("1"),
            ]
        },
        N,
    );
    // Whole-string work on 1 MiB values: ns per command over 2^20 bytes.
    let mib = vec![0x5au8; 1 << 20];
    for k in ["big:a", "big:b"] {
        let argv: Vec<&[u8]> = vec![b"SET", k.as_bytes(), &mib];
        if let Ok(l) = lookup(&argv) {
            shard.execute_reply(
                l,
                &argv,
                0,
                1_700_000_000_000_000,
                Proto::Resp2,
                &mut Vec::new(),
            );
        }
    }
    run(
        shard,
        "BITCOUNT 1MiB",
        |_| vec![arg("BITCOUNT"), arg("big:a")],
        2_000,
    );
    run(
        shard,
        "BITPOS 1MiB",
        |_| vec![arg("BITPOS"), arg("big:a"), arg("1"), arg("1")],
        2_000,
    );
    run(
        shard,
        "BITOP AND 2x1MiB",
        |_| {
            vec![
                arg("BITOP"),
                arg("AND"),
                arg("big:d"),
                arg("big:a"),
                arg("big:b"),
            ]
        },
        1_000,
    );
    // HyperLogLog: 1000 values that stay sparse (a few hundred elements), 10 that turn dense.
    run(
        shard,
        "PFADD sparse",
        |i| {
            vec![
                arg("PFADD"),
                format!("hs:{}", i % 1000).into_bytes(),
                format!("e{i}").into_bytes(),
            ]
        },
        N,
    );
    run(
        shard,
        "PFADD dense",
        |i| {
            vec![
                arg("PFADD"),
                format!("hd:{}", i % 10).into_bytes(),
                format!("e{i}").into_bytes(),
            ]
        },
        N,
    );
    run(
        shard,
        "PFCOUNT cached",
        |i| vec![arg("PFCOUNT"), format!("hd:{}", i % 10).into_bytes()],
        N,
    );
    run(
        shard,
        "PFADD+PFCOUNT dense",
        |i| {
            if i % 2 == 0 {
                vec![arg("PFADD"), arg("hd:0"), format!("x{i}").into_bytes()]
            } else {
                vec![arg("PFCOUNT"), arg("hd:0")]
            }
        },
        20_000,
    );
    run(
        shard,
        "PFCOUNT 3 keys",
        |_| vec![arg("PFCOUNT"), arg("hd:1"), arg("hd:2"), arg("hs:3")],
        20_000,
    );
    run(
        shard,
        "PFMERGE",
        |i| {
            vec![
                arg("PFMERGE"),
                arg("hm"),
                format!("hd:{}", i % 10).into_bytes(),
                format!("hs:{}", i % 1000).into_bytes(),
            ]
        },
        20_000,
    );
}
