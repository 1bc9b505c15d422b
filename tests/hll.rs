//! HyperLogLog against the real binary (2 shards) and redis-server: values made by one server
//! are read, counted, merged and extended by the other (sparse and dense, both directions),
//! random PFADD/PFMERGE/PFCOUNT sequences leave byte-identical strings, and PFCOUNT over keys
//! on both shards counts the union.

mod common;

use common::{escape, shard_of, RawConn, RedisServer, Server};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The payload of a bulk reply.
fn bulk(reply: &[u8]) -> Vec<u8> {
    let nl = reply.windows(2).position(|w| w == b"\r\n").unwrap();
    assert_eq!(reply[0], b'$', "{}", escape(reply));
    reply[nl + 2..reply.len() - 2].to_vec()
}

/// PFADD `n` elements named `{prefix}{i}` in one call.
fn pfadd(c: &mut RawConn, key: &str, prefix: &str, n: usize) -> Vec<u8> {
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"PFADD", key.as_bytes()];
    args.extend(names.iter().map(|s| s.as_bytes()));
    c.cmd_bytes(&args)
}

fn get(c: &mut RawConn, key: &str) -> Vec<u8> {
    bulk(&c.cmd(&["GET", key]))
}

fn set(c: &mut RawConn, key: &str, value: &[u8]) {
    assert_eq!(c.cmd_bytes(&[b"SET", key.as_bytes(), value]), b"+OK\r\n");
}

/// Values written by redis-server work in shardis and the other way round: counts agree, and
/// merging or extending them gives the same bytes on both sides.
#[test]
fn values_move_between_redis_and_shardis() {
    let server = Server::start(&[]);
    let oracle = RedisServer::start();
    let (mut ours, mut theirs) = (server.raw(), oracle.raw());
    // Keys on both shards.
    let keys = ["sparse", "dense", "cached", "mine"];
    assert!(keys.iter().any(|k| shard_of(k.as_bytes(), 2) == 0));
    assert!(keys.iter().any(|k| shard_of(k.as_bytes(), 2) == 1));

    // Redis makes a sparse value, a dense one, and one with a fresh cached count.
    pfadd(&mut theirs, "sparse", "s", 300);
    pfadd(&mut theirs, "dense", "d", 20_000);
    pfadd(&mut theirs, "cached", "c", 1_000);
    theirs.cmd(&["PFCOUNT", "cached"]);
    assert_eq!(
        theirs.cmd(&["PFDEBUG", "ENCODING", "sparse"]),
        b"+sparse\r\n"
    );
    assert_eq!(theirs.cmd(&["PFDEBUG", "ENCODING", "dense"]), b"+dense\r\n");
    for key in ["sparse", "dense", "cached"] {
        let v = get(&mut theirs, key);
        set(&mut ours, key, &v);
    }
    // Shardis makes one too, and hands it to redis.
    pfadd(&mut ours, "mine", "m", 2_000);
    let v = get(&mut ours, "mine");
    set(&mut theirs, "mine", &v);

    let both = |ours: &mut RawConn, theirs: &mut RawConn, args: &[&str]| {
        let (a, b) = (ours.cmd(args), theirs.cmd(args));
        assert_eq!(escape(&a), escape(&b), "{args:?}");
        a
    };
    for key in keys {
        both(&mut ours, &mut theirs, &["PFCOUNT", key]);
        both(&mut ours, &mut theirs, &["GET", key]);
        both(&mut ours, &mut theirs, &["PFDEBUG", "ENCODING", key]);
    }
    both(
        &mut ours,
        &mut theirs,
        &["PFCOUNT", "sparse", "dense", "cached", "mine"],
    );
    both(&mut ours, &mut theirs, &["PFCOUNT", "sparse", "mine"]);
    // Merges, sparse into sparse and into dense, and the bytes they leave.
    both(&mut ours, &mut theirs, &["PFMERGE", "m1", "sparse", "mine"]);
    both(&mut ours, &mut theirs, &["GET", "m1"]);
    both(
        &mut ours,
        &mut theirs,
        &["PFMERGE", "m2", "sparse", "dense", "cached"],
    );
    both(&mut ours, &mut theirs, &["GET", "m2"]);
    both(&mut ours, &mut theirs, &["PFCOUNT", "m2"]);
    both(&mut ours, &mut theirs, &["PFMERGE", "sparse", "cached"]);
    both(&mut ours, &mut theirs, &["GET", "sparse"]);
    // Extending each value.
    for key in keys {
        assert_eq!(
            pfadd(&mut ours, key, "more", 500),
            pfadd(&mut theirs, key, "more", 500)
        );
        both(&mut ours, &mut theirs, &["GET", key]);
        both(&mut ours, &mut theirs, &["PFCOUNT", key]);
        both(&mut ours, &mut theirs, &["GET", key]);
    }
}

/// Random PFADD / PFMERGE / PFCOUNT sequences over keys on both shards leave the same bytes
/// in shardis and redis-server, at every step.
#[test]
fn random_sequences_leave_identical_bytes() {
    let server = Server::start(&["--hll-sparse-max-bytes", "1200"]);
    let oracle = RedisServer::start_with(&["--hll-sparse-max-bytes", "1200"]);
    let (mut ours, mut theirs) = (server.raw(), oracle.raw());
    let mut rng = StdRng::seed_from_u64(0x4411);
    let keys = ["a", "b", "c", "d", "e"];
    for step in 0..400 {
        let key = keys[rng.gen_range(0..keys.len())];
        let args: Vec<String> = match rng.gen_range(0..10) {
            0 => {
                let mut a = vec!["PFMERGE".to_string(), key.to_string()];
                a.extend(
                    (0..rng.gen_range(1..4))
                        .map(|_| keys[rng.gen_range(0..keys.len())].to_string()),
                );
                a
            }
            1 => {
                let mut a = vec!["PFCOUNT".to_string()];
                a.extend(
                    (0..rng.gen_range(1..4))
                        .map(|_| keys[rng.gen_range(0..keys.len())].to_string()),
                );
                a
            }
            _ => {
                let mut a = vec!["PFADD".to_string(), key.to_string()];
                let n = rng.gen_range(0..60);
                a.extend((0..n).map(|_| format!("el{}", rng.gen_range(0..100_000))));
                a
            }
        };
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let (a, b) = (ours.cmd(&refs), theirs.cmd(&refs));
        assert_eq!(escape(&a), escape(&b), "step {step}: {}", args.join(" "));
        for k in keys {
            let (a, b) = (ours.cmd(&["GET", k]), theirs.cmd(&["GET", k]));
            assert!(
                a == b,
                "step {step}: {} then GET {k} differs",
                args.join(" ")
            );
        }
    }
    // The limit was in force: some values went dense, some may still be sparse.
    let dense = keys
        .iter()
        .filter(|k| ours.cmd(&["PFDEBUG", "ENCODING", k]) == b"+dense\r\n")
        .count();
    assert!(dense > 0);
}

/// The union count of keys on both shards is the count of their merge, and leaves the keys
/// as they were; a large union is within the HyperLogLog's error.
#[test]
fn union_across_shards() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    let keys: Vec<String> = (0..6).map(|i| format!("u{i}")).collect();
    assert!(keys.iter().any(|k| shard_of(k.as_bytes(), 2) == 0));
    assert!(keys.iter().any(|k| shard_of(k.as_bytes(), 2) == 1));
    // Overlapping ranges: key i holds elements 5000*i .. 5000*i + 10000.
    for (i, k) in keys.iter().enumerate() {
        let names: Vec<String> = (0..10_000).map(|j| format!("x{}", 5_000 * i + j)).collect();
        let mut args: Vec<&[u8]> = vec![b"PFADD", k.as_bytes()];
        args.extend(names.iter().map(|s| s.as_bytes()));
        assert_eq!(c.cmd_bytes(&args), b":1\r\n");
    }
    let before: Vec<Vec<u8>> = keys.iter().map(|k| get(&mut c, k)).collect();
    let mut args = vec!["PFCOUNT"];
    args.extend(keys.iter().map(|s| s.as_str()));
    let union = c.cmd(&args);
    let after: Vec<Vec<u8>> = keys.iter().map(|k| get(&mut c, k)).collect();
    assert_eq!(before, after);
    let n: f64 = String::from_utf8_lossy(&union[1..]).trim().parse().unwrap();
    let truth = 5_000.0 * 7.0;
    assert!((n - truth).abs() / truth < 0.03, "union {n} vs {truth}");
    let mut merge = vec!["PFMERGE", "all"];
    merge.extend(keys.iter().map(|s| s.as_str()));
    assert_eq!(c.cmd(&merge), b"+OK\r\n");
    assert_eq!(c.cmd(&["PFCOUNT", "all"]), union);
}
