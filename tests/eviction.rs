//! Memory limits and eviction against the real binary (2 shards): floods of writes under every
//! `maxmemory-policy` keep `used_memory` within 5% of `maxmemory` and the server alive; volatile
//! policies evict only keys with a TTL and answer -OOM when none is left; `noeviction` answers
//! -OOM to writes while reads and deletes go on; and an LRU quality check compares how many
//! hot keys survive a fill in shardis and in redis-server.

mod common;

use common::{RedisServer, Server};
use redis::Connection;
use std::time::Duration;

/// The limit the flood tests run under: well above the 2-shard server's own use at start
/// (about 4 MB), so most of it is keys.
const MAXMEMORY: u64 = 16 << 20;
/// Bytes of each value written (big values: fewer commands to fill the limit in debug builds).
const VALUE_LEN: usize = 4000;
/// Keys one pipelined batch writes.
const BATCH: usize = 100;
/// Keys a flood writes: about twice what fits under [`MAXMEMORY`].
const FLOOD_KEYS: usize = 6_000;

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

fn info_u64(con: &mut Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
        .trim()
        .parse()
        .unwrap()
}

fn used_memory(con: &mut Connection) -> u64 {
    info_u64(con, "memory", "used_memory")
}

/// Writes keys `{prefix}{from}..{from+n}`, pipelined; `ttl_s`: with EX (growing with the key
/// number, so volatile-ttl has an order to follow). Stops at the first error, returned.
fn flood(
    con: &mut Connection,
    prefix: &str,
    from: usize,
    n: usize,
    ttl_s: Option<usize>,
) -> Result<(), redis::RedisError> {
    let value = vec![b'x'; VALUE_LEN];
    let mut i = from;
    while i < from + n {
        let mut p = redis::pipe();
        for j in i..(i + BATCH).min(from + n) {
            let c = p.cmd("SET").arg(format!("{prefix}{j}")).arg(&value[..]);
            if let Some(t) = ttl_s {
                c.arg("EX").arg(t + j);
            }
            c.ignore();
        }
        p.query::<()>(con)?;
        i += BATCH;
    }
    Ok(())
}

/// How many of `{prefix}0..n` exist.
fn count_existing(con: &mut Connection, prefix: &str, n: usize) -> usize {
    let mut p = redis::pipe();
    for i in 0..n {
        p.cmd("EXISTS").arg(format!("{prefix}{i}"));
    }
    let found: Vec<u64> = p.query(con).unwrap();
    found.iter().filter(|&&x| x == 1).count()
}

fn assert_within_limit(con: &mut Connection, policy: &str) {
    let used = used_memory(con);
    let pct = (used as f64 / MAXMEMORY as f64 - 1.0) * 100.0;
    eprintln!("{policy}: used_memory {used} = maxmemory {MAXMEMORY} {pct:+.2}%");
    assert!(
        pct.abs() <= 5.0,
        "{policy}: used_memory {used} is {pct:+.2}% off"
    );
}

/// Floods a server under `policy` and checks the limit holds (volatile policies: half the keys
/// get a TTL, and every key without one survives).
fn flood_under(policy: &str) {
    let mut s = Server::start(&["--maxmemory", "16mb", "--maxmemory-policy", policy]);
    let mut con = s.client();
    let base = used_memory(&mut con);
    assert!(
        base < MAXMEMORY / 2,
        "base memory {base} leaves too little room"
    );
    let volatile = policy.starts_with("volatile");
    // Keys without a TTL: about a third of the room, all of which must survive under the
    // volatile policies.
    const PERSISTENT: usize = 1000;
    if volatile {
        flood(&mut con, "p:", 0, PERSISTENT, None).unwrap();
    }
    if let Err(e) = flood(&mut con, "k:", 0, FLOOD_KEYS, volatile.then_some(10_000)) {
        let mem: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
        let ks: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
        let st: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
        panic!("{policy}: {e}\n{mem}\n{ks}\n{st}");
    }
    assert_within_limit(&mut con, policy);
    assert!(info_u64(&mut con, "stats", "evicted_keys") > 0);
    if volatile {
        assert_eq!(count_existing(&mut con, "p:", PERSISTENT), PERSISTENT);
    }
    // The most recent writes are there under LRU/LFU-like policies at least in part.
    assert!(count_existing(&mut con, "k:", FLOOD_KEYS) > 500);
    assert!(s.is_running(), "{policy}: server died");
}

#[test]
fn evict_allkeys_lru() {
    flood_under("allkeys-lru");
}

#[test]
fn evict_allkeys_lfu() {
    flood_under("allkeys-lfu");
}

#[test]
fn evict_allkeys_random() {
    flood_under("allkeys-random");
}

#[test]
fn evict_volatile_lru() {
    flood_under("volatile-lru");
}

#[test]
fn evict_volatile_lfu() {
    flood_under("volatile-lfu");
}

#[test]
fn evict_volatile_random() {
    flood_under("volatile-random");
}

#[test]
fn evict_volatile_ttl() {
    flood_under("volatile-ttl");
}

/// Writes keys without a TTL until the server refuses one; checks the refusal is Redis's OOM,
/// and that reads and deletes still work.
fn fill_until_oom(policy: &str) {
    let mut s = Server::start(&["--maxmemory", "16mb", "--maxmemory-policy", policy]);
    let mut con = s.client();
    let err = flood(&mut con, "p:", 0, FLOOD_KEYS, None)
        .expect_err("writes past maxmemory should be refused");
    // The redis crate shows the code apart: "OOM: command not allowed …".
    assert_eq!(err.code(), Some("OOM"), "{policy}: {err}");
    assert!(err.to_string().contains(&OOM[4..]), "{policy}: {err}");
    // Memory use hovers at the limit: one of a few more writes meets the refusal too.
    let mut raw = s.raw();
    let value = "y".repeat(VALUE_LEN);
    let refused = (0..100).any(|i| {
        raw.cmd(&["SET", &format!("new{i}"), &value]) == format!("-{OOM}\r\n").into_bytes()
    });
    assert!(refused, "{policy}: no write refused");
    assert_eq!(raw.cmd(&["GET", "p:0"]).len(), VALUE_LEN + 9);
    assert_eq!(raw.cmd(&["DEL", "p:0", "p:1"]), b":2\r\n");
    assert_eq!(raw.cmd(&["EXISTS", "p:2"]), b":1\r\n");
    assert_eq!(info_u64(&mut con, "stats", "evicted_keys"), 0);
    // Raising the limit lets writes in again.
    assert_eq!(raw.cmd(&["CONFIG", "SET", "maxmemory", "0"]), b"+OK\r\n");
    assert_eq!(raw.cmd(&["SET", "new", &value]), b"+OK\r\n");
    assert!(s.is_running());
}

#[test]
fn noeviction_refuses_writes_but_serves_reads_and_deletes() {
    fill_until_oom("noeviction");
}

#[test]
fn volatile_policy_without_ttl_keys_refuses_writes() {
    fill_until_oom("volatile-lru");
}

/// Under allkeys-lru with room for `room` bytes of keys: writes a hot set, then fills past the
/// limit in rounds a second apart (the LRU clock ticks in seconds), reading the hot set before
/// each round. Returns the share of hot keys that survived, in percent.
fn hot_keys_surviving(con: &mut Connection) -> f64 {
    const HOT: usize = 500;
    const ROOM: u64 = 10 << 20;
    let base = used_memory(con);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(base + ROOM)
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query(con)
        .unwrap();
    flood(con, "h:", 0, HOT, None).unwrap();
    // About 70% of the room in cold keys, then five rounds of a quarter of it each.
    let cold = (ROOM as usize / (VALUE_LEN + 100)) * 7 / 10;
    flood(con, "c:", 0, cold, None).unwrap();
    let round_keys = cold / 3;
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(1100));
        let mut p = redis::pipe();
        for i in 0..HOT {
            p.cmd("GET").arg(format!("h:{i}")).ignore();
        }
        p.query::<()>(con).unwrap();
        flood(con, "f:", round * round_keys, round_keys, None).unwrap();
    }
    count_existing(con, "h:", HOT) as f64 * 100.0 / HOT as f64
}

#[test]
fn lru_keeps_hot_keys_as_well_as_redis() {
    let shardis = Server::start(&[]);
    let ours = hot_keys_surviving(&mut shardis.client());
    let redis = RedisServer::start_with(&[]);
    let theirs = hot_keys_surviving(&mut redis.client());
    eprintln!("hot keys surviving: shardis {ours:.1}%, redis {theirs:.1}%");
    assert!(
        ours > theirs - 10.0,
        "shardis kept {ours:.1}% of hot keys, redis {theirs:.1}%"
    );
}

/// Over `maxmemory`, an EXEC whose block may grow the data is refused whole (EXECABORT) and
/// the block discarded, as Redis does, whichever shards its keys live on.
#[test]
fn exec_of_a_growing_block_is_refused_over_the_limit() {
    let server = Server::start(&[]);
    let mut a = server.raw();
    let mut admin = server.raw();
    let (k0, k1) = (common::key_on(0, "x"), common::key_on(1, "x"));
    assert_eq!(a.cmd(&["MULTI"]), b"+OK\r\n");
    assert_eq!(a.cmd(&["SET", &k0, "1"]), b"+QUEUED\r\n");
    assert_eq!(a.cmd(&["SET", &k1, "1"]), b"+QUEUED\r\n");
    assert_eq!(admin.cmd(&["CONFIG", "SET", "maxmemory", "1"]), b"+OK\r\n");
    assert_eq!(
        a.cmd(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.\r\n"
    );
    assert_eq!(a.cmd(&["EXEC"]), b"-ERR EXEC without MULTI\r\n");
    assert_eq!(a.cmd(&["EXISTS", &k0, &k1]), b":0\r\n");
    // A block that only reads or deletes still runs.
    assert_eq!(a.cmd(&["MULTI"]), b"+OK\r\n");
    assert_eq!(admin.cmd(&["CONFIG", "SET", "maxmemory", "0"]), b"+OK\r\n");
    assert_eq!(a.cmd(&["DEL", &k0]), b"+QUEUED\r\n");
    assert_eq!(admin.cmd(&["CONFIG", "SET", "maxmemory", "1"]), b"+OK\r\n");
    assert_eq!(a.cmd(&["EXEC"]), b"*1\r\n:0\r\n");
    assert_eq!(admin.cmd(&["CONFIG", "SET", "maxmemory", "0"]), b"+OK\r\n");
}
