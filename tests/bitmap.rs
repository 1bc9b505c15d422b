//! Bitmap commands against the real binary (2 shards): random operations compared reply for
//! reply with redis-server, whole scans of a 512 MiB bitmap, and BITOP over keys on both
//! shards with its keyspace statistics.

mod common;

use common::{escape, shard_of, RawConn, RedisServer, Server};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sends the same command to both servers and asserts identical raw replies.
fn same(ours: &mut RawConn, theirs: &mut RawConn, args: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
    let a = ours.cmd_bytes(&refs);
    let b = theirs.cmd_bytes(&refs);
    let line: Vec<String> = args.iter().map(|a| escape(a)).collect();
    assert_eq!(
        escape(&a),
        escape(&b),
        "{} (shardis left, redis right)",
        line.join(" ")
    );
    a
}

fn words(line: &str) -> Vec<Vec<u8>> {
    line.split(' ').map(|w| w.as_bytes().to_vec()).collect()
}

/// A random index argument: mostly near the string, sometimes negative or far out.
fn index(rng: &mut StdRng, len: i64) -> String {
    match rng.gen_range(0..10) {
        0 => rng.gen_range(-3 * len - 5..=-1).to_string(),
        1 => rng.gen_range(len..=3 * len + 20).to_string(),
        _ => rng.gen_range(0..=len.max(1)).to_string(),
    }
}

/// SETBIT, SETRANGE and BITFIELD writes mixed with BITCOUNT, BITPOS, GETBIT and BITFIELD reads
/// over a few keys of both shards; every reply must equal redis-server's.
#[test]
fn random_operations_match_redis() {
    let server = Server::start(&[]);
    let oracle = RedisServer::start();
    let (mut ours, mut theirs) = (server.raw(), oracle.raw());
    let mut rng = StdRng::seed_from_u64(0x5eed_b175);
    let keys = ["a", "b", "c", "d"];
    assert!(keys.iter().any(|k| shard_of(k.as_bytes(), 2) == 0));
    assert!(keys.iter().any(|k| shard_of(k.as_bytes(), 2) == 1));
    let types = [
        "u1", "u3", "i5", "u8", "i8", "i13", "u31", "i32", "u63", "i64",
    ];
    let overflows = ["WRAP", "SAT", "FAIL"];
    for _ in 0..3000 {
        let key = keys[rng.gen_range(0..keys.len())];
        let len_bits = 400i64;
        let cmd = match rng.gen_range(0..12) {
            0 | 1 => format!(
                "SETBIT {key} {} {}",
                rng.gen_range(0..len_bits),
                rng.gen_range(0..2)
            ),
            2 => {
                let fill = ["\u{0}", "\u{ff}"][rng.gen_range(0..2)];
                format!(
                    "SETRANGE {key} {} {}",
                    rng.gen_range(0..40),
                    fill.repeat(rng.gen_range(1..12))
                )
            }
            3 => format!(
                "BITFIELD {key} OVERFLOW {} {} {} {} {}",
                overflows[rng.gen_range(0..3)],
                ["SET", "INCRBY"][rng.gen_range(0..2)],
                types[rng.gen_range(0..types.len())],
                rng.gen_range(0..len_bits),
                rng.gen_range(-300i64..300) * [1, 1, 1, 1_000_000_000_000][rng.gen_range(0..4)]
            ),
            4 => format!(
                "BITFIELD_RO {key} GET {} {} GET {} #{}",
                types[rng.gen_range(0..types.len())],
                rng.gen_range(0..len_bits + 64),
                types[rng.gen_range(0..types.len())],
                rng.gen_range(0..8)
            ),
            5 => format!("GETBIT {key} {}", rng.gen_range(0..len_bits + 16)),
            6 => format!("BITCOUNT {key}"),
            7 => format!(
                "BITCOUNT {key} {} {} {}",
                index(&mut rng, 50),
                index(&mut rng, 50),
                ["BYTE", "BIT"][rng.gen_range(0..2)]
            ),
            8 => format!("BITPOS {key} {}", rng.gen_range(0..2)),
            9 => format!(
                "BITPOS {key} {} {}",
                rng.gen_range(0..2),
                index(&mut rng, 50)
            ),
            10 => format!(
                "BITPOS {key} {} {} {} {}",
                rng.gen_range(0..2),
                index(&mut rng, 400),
                index(&mut rng, 400),
                ["BYTE", "BIT"][rng.gen_range(0..2)]
            ),
            _ => format!(
                "BITPOS {key} {} {} {}",
                rng.gen_range(0..2),
                index(&mut rng, 50),
                index(&mut rng, 50)
            ),
        };
        same(&mut ours, &mut theirs, &words(&cmd));
    }
    // BITOP across the shards, then the results byte for byte.
    for op in ["AND", "OR", "XOR"] {
        same(
            &mut ours,
            &mut theirs,
            &words(&format!("BITOP {op} dest a b c d")),
        );
        same(&mut ours, &mut theirs, &words("GET dest"));
    }
    same(&mut ours, &mut theirs, &words("BITOP NOT dest c"));
    same(&mut ours, &mut theirs, &words("GET dest"));
    for key in keys {
        same(&mut ours, &mut theirs, &words(&format!("GET {key}")));
    }
}

/// A bitmap at the largest offset: the string is 512 MiB, whole scans see the one set bit.
#[test]
fn largest_bitmap() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    assert_eq!(c.cmd(&["SETBIT", "big", "4294967295", "1"]), b":0\r\n");
    assert_eq!(c.cmd(&["STRLEN", "big"]), b":536870912\r\n");
    assert_eq!(c.cmd(&["BITCOUNT", "big"]), b":1\r\n");
    assert_eq!(c.cmd(&["BITPOS", "big", "1"]), b":4294967295\r\n");
    assert_eq!(c.cmd(&["BITPOS", "big", "0"]), b":0\r\n");
    assert_eq!(
        c.cmd(&["SETBIT", "big", "4294967296", "1"]),
        b"-ERR bit offset is not an integer or out of range\r\n"
    );
    assert_eq!(
        c.cmd(&["BITFIELD", "big", "SET", "u8", "4294967295", "1"]),
        b"*1\r\n:128\r\n"
    );
    // BITFIELD may reach a few bits past 512 MiB, as in Redis.
    assert_eq!(c.cmd(&["STRLEN", "big"]), b":536870913\r\n");
    assert_eq!(c.cmd(&["DEL", "big"]), b":1\r\n");
    assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
}

/// The value of a numeric field of INFO.
fn info_field(c: &mut RawConn, section: &str, name: &str) -> u64 {
    let info = String::from_utf8_lossy(&c.cmd(&["INFO", section])).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

/// BITOP reads keys on both shards and writes its destination back to its owner; the reads
/// count as keyspace hits and misses.
#[test]
fn bitop_across_shards_counts_reads() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    let keys: Vec<String> = (0..10).map(|i| format!("src{i}")).collect();
    let on_0 = keys
        .iter()
        .find(|k| shard_of(k.as_bytes(), 2) == 0)
        .unwrap();
    let on_1 = keys
        .iter()
        .find(|k| shard_of(k.as_bytes(), 2) == 1)
        .unwrap();
    assert_eq!(c.cmd_bytes(&[b"SET", on_0.as_bytes(), b"\x0f"]), b"+OK\r\n");
    assert_eq!(
        c.cmd_bytes(&[b"SET", on_1.as_bytes(), b"\xf0\x01"]),
        b"+OK\r\n"
    );
    let stats = |c: &mut RawConn| {
        (
            info_field(c, "stats", "keyspace_hits"),
            info_field(c, "stats", "keyspace_misses"),
        )
    };
    let (h0, m0) = stats(&mut c);
    for dest in ["d0", "d1", "d2", "d3"] {
        assert_eq!(
            c.cmd(&["BITOP", "OR", dest, on_0, on_1, "missing"]),
            b":2\r\n"
        );
        assert_eq!(c.cmd(&["GET", dest]), b"$2\r\n\xff\x01\r\n");
    }
    let (h1, m1) = stats(&mut c);
    // Four BITOPs (2 hits and 1 miss each) and four GETs (hits).
    assert_eq!((h1 - h0, m1 - m0), (12, 4));
    assert_eq!(
        c.cmd(&["BITOP", "AND", "d0", "missing", "missing2"]),
        b":0\r\n"
    );
    assert_eq!(c.cmd(&["EXISTS", "d0"]), b":0\r\n");
    // A failed gathered command counts as an error reply.
    assert_eq!(c.cmd(&["LPUSH", "list", "x"]), b":1\r\n");
    let errors = info_field(&mut c, "stats", "total_error_replies");
    assert!(c
        .cmd(&["BITOP", "OR", "d0", on_0, on_1, "list"])
        .starts_with(b"-WRONGTYPE"));
    assert_eq!(
        info_field(&mut c, "stats", "total_error_replies"),
        errors + 1
    );
}
