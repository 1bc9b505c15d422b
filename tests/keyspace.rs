//! Keyspace tests through the `redis` crate: expiry (lazy and active, and DEBUG
//! SET-ACTIVE-EXPIRE), SCAN completeness across shards (COUNT, MATCH, TYPE, and keys changing
//! during the scan), the database-wide commands (KEYS, DBSIZE, RANDOMKEY, FLUSHDB, FLUSHALL,
//! SWAPDB, SELECT, MOVE), and the multi-key commands whose keys live on different shards.
//!
//! Keys are chosen with Redis Cluster's slot function so that "on both shards" and "on a
//! different shard" hold for shardis's `slot mod 2` placement. Every expectation here also
//! holds against redis-server 7.0 (`SHARDIS_TEST_USE_REDIS=1`).

mod common;

use common::{escape, q, try_q, Server};
use redis::{Connection, FromRedisValue, Value};
use std::collections::{BTreeSet, HashSet};
use std::thread;
use std::time::{Duration, Instant};

/// How long background expiry may take to clear keys that are due.
const ACTIVE_EXPIRE_DEADLINE: Duration = Duration::from_secs(10);
/// The most SCAN calls one full iteration may take before the test calls it a loop.
const SCAN_CALLS_MAX: usize = 100_000;

/// Runs a command with owned arguments (for generated key lists).
fn q_owned<T: FromRedisValue>(con: &mut Connection, args: &[String]) -> T {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    q(con, &refs)
}

/// The error a command returns, as `CODE message`.
fn err_of(con: &mut Connection, args: &[&str]) -> String {
    match try_q::<Value>(con, args) {
        Ok(v) => panic!("{args:?}: expected an error, got {v:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
    }
}

/// Which of the test server's two shards owns `key`.
fn shard_of(key: &str) -> usize {
    common::shard_of(key.as_bytes(), 2)
}

/// The first `prefix<n>` that lives on `shard`.
fn key_on(shard: usize, prefix: &str) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| shard_of(k) == shard)
        .unwrap()
}

/// Asserts that `keys` land on both shards, so a test really crosses them.
fn assert_spread(keys: &[String]) {
    let on0 = keys.iter().filter(|k| shard_of(k) == 0).count();
    assert!(
        on0 > 0 && on0 < keys.len(),
        "keys must span both shards ({on0} of {} on shard 0)",
        keys.len()
    );
}

/// An INFO field as an integer.
fn info_int(con: &mut Connection, section: &str, field: &str) -> i64 {
    let info: String = q(con, &["INFO", section]);
    let prefix = format!("{field}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}:\n{info}"))
        .trim()
        .parse()
        .unwrap()
}

/// Polls DBSIZE until it equals `want` or the deadline passes; returns the last value.
fn wait_dbsize(con: &mut Connection, want: i64, deadline: Duration) -> i64 {
    let end = Instant::now() + deadline;
    loop {
        let n: i64 = q(con, &["DBSIZE"]);
        if n == want || Instant::now() >= end {
            return n;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn set_of(keys: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    keys.into_iter().collect()
}

#[test]
fn key_slots_match_cluster_keyslot() {
    // Values from redis-server's CLUSTER KEYSLOT.
    for (key, slot) in [
        ("foo", 12182),
        ("hello", 866),
        ("somekey", 11058),
        ("foo{hash_tag}", 2515),
        ("a{}b", 13694),
        ("{}x", 10595),
        ("x{y", 2740),
    ] {
        assert_eq!(common::key_slot(key.as_bytes()), slot, "{key}");
    }
}

#[test]
fn keys_with_ex_and_px_expire_lazily_on_access() {
    let server = Server::start(&[]);
    let mut con = server.client();
    // Only lazy expiry may remove keys in this test.
    let () = q(&mut con, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    let () = q(&mut con, &["SET", "ex:key", "v", "EX", "1"]);
    let px_keys: Vec<String> = (0..20).map(|i| format!("px:{i}")).collect();
    assert_spread(&px_keys);
    for k in &px_keys {
        let () = q(&mut con, &["SET", k, "v", "PX", "300"]);
    }
    let () = q(&mut con, &["SET", "persistent", "v"]);
    let ttl: i64 = q(&mut con, &["PTTL", "ex:key"]);
    assert!(
        (1..=1000).contains(&ttl),
        "PTTL right after SET EX 1: {ttl}"
    );
    let expired_before = info_int(&mut con, "stats", "expired_keys");

    thread::sleep(Duration::from_millis(1100));
    // Redis counts keys that are due but not yet deleted: nothing has touched them.
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 22);
    assert_eq!(q::<Option<String>>(&mut con, &["GET", "ex:key"]), None);
    for k in &px_keys {
        assert_eq!(q::<Option<String>>(&mut con, &["GET", k]), None, "GET {k}");
    }
    assert_eq!(q::<i64>(&mut con, &["TTL", "ex:key"]), -2);
    assert_eq!(q::<i64>(&mut con, &["EXISTS", "px:0", "px:1"]), 0);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 1);
    assert_eq!(
        info_int(&mut con, "stats", "expired_keys") - expired_before,
        21
    );
    assert_eq!(
        q::<Option<String>>(&mut con, &["GET", "persistent"]).as_deref(),
        Some("v")
    );
}

#[test]
fn untouched_keys_expire_actively_on_both_shards() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let expired_before = info_int(&mut con, "stats", "expired_keys");
    let keys: Vec<String> = (0..200).map(|i| format!("active:{i}")).collect();
    assert_spread(&keys);
    for i in 0..10 {
        let () = q(&mut con, &["SET", &format!("stays:{i}"), "v"]);
    }
    for k in &keys {
        let () = q(&mut con, &["SET", k, "v", "PX", "100"]);
    }
    let left = wait_dbsize(&mut con, 10, ACTIVE_EXPIRE_DEADLINE);
    assert_eq!(
        left, 10,
        "keys left {ACTIVE_EXPIRE_DEADLINE:?} after they were due"
    );
    assert_eq!(
        info_int(&mut con, "stats", "expired_keys") - expired_before,
        200
    );
    let keyspace: String = q(&mut con, &["INFO", "keyspace"]);
    assert!(
        keyspace.contains("db0:keys=10,expires=0,"),
        "INFO keyspace:\n{keyspace}"
    );
}

#[test]
fn set_active_expire_0_stops_background_expiry_and_1_resumes_it() {
    let server = Server::start(&["--hz", "50"]);
    let mut con = server.client();
    let () = q(&mut con, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    let expired_before = info_int(&mut con, "stats", "expired_keys");
    let keys: Vec<String> = (0..100).map(|i| format!("paused:{i}")).collect();
    assert_spread(&keys);
    for k in &keys {
        let () = q(&mut con, &["SET", k, "v", "PX", "50"]);
    }
    // Many background cycles at hz 50; none may delete anything.
    thread::sleep(Duration::from_millis(600));
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 100);
    assert_eq!(info_int(&mut con, "stats", "expired_keys"), expired_before);

    let () = q(&mut con, &["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
    assert_eq!(wait_dbsize(&mut con, 0, ACTIVE_EXPIRE_DEADLINE), 0);
    assert_eq!(
        info_int(&mut con, "stats", "expired_keys") - expired_before,
        100
    );
}

/// One full SCAN iteration with extra options; calls `between` after every call.
fn scan_all_with(
    con: &mut Connection,
    opts: &[&str],
    mut between: impl FnMut(),
) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    for calls in 1..=SCAN_CALLS_MAX {
        let mut args = vec!["SCAN", &cursor];
        args.extend_from_slice(opts);
        let (next, batch): (String, Vec<String>) = q(con, &args);
        seen.extend(batch);
        if next == "0" {
            return (seen, calls);
        }
        cursor = next;
        between();
    }
    panic!("SCAN {opts:?} did not finish within {SCAN_CALLS_MAX} calls");
}

fn scan_all(con: &mut Connection, opts: &[&str]) -> Vec<String> {
    scan_all_with(con, opts, || {}).0
}

#[test]
fn scan_returns_every_key_on_both_shards_with_any_count() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let keys: Vec<String> = (0..2000).map(|i| format!("key:{i}")).collect();
    assert_spread(&keys);
    for chunk in keys.chunks(100) {
        let mut args = vec!["MSET".to_string()];
        for k in chunk {
            args.push(k.clone());
            args.push(format!("v{k}"));
        }
        let () = q_owned(&mut con, &args);
    }
    // Keys in another database must not show up.
    let mut other = server.client();
    let () = q(&mut other, &["SELECT", "1"]);
    let () = q(&mut other, &["MSET", "other:1", "x", "other:2", "x"]);
    let all = set_of(keys.iter().cloned());

    for count in [
        None,
        Some("1"),
        Some("3"),
        Some("10"),
        Some("97"),
        Some("1000"),
    ] {
        let opts: Vec<&str> = count.map(|c| vec!["COUNT", c]).unwrap_or_default();
        let (seen, calls) = scan_all_with(&mut con, &opts, || {});
        assert_eq!(set_of(seen.clone()), all, "SCAN {opts:?}");
        assert!(
            seen.len() <= 2 * all.len(),
            "SCAN {opts:?} returned {} keys for {}",
            seen.len(),
            all.len()
        );
        if count == Some("1") {
            assert!(calls >= 1000, "COUNT 1 finished in {calls} calls");
        }
    }

    let want: BTreeSet<String> = keys
        .iter()
        .filter(|k| k.starts_with("key:1"))
        .cloned()
        .collect();
    for count in ["5", "50", "5000"] {
        let seen = set_of(scan_all(&mut con, &["MATCH", "key:1*", "COUNT", count]));
        assert_eq!(seen, want, "SCAN MATCH key:1* COUNT {count}");
    }
    let seen = set_of(scan_all(&mut con, &["MATCH", "key:?7"]));
    assert_eq!(seen, set_of((1..10).map(|i| format!("key:{i}7"))));
    assert!(scan_all(&mut con, &["MATCH", "nomatch*", "COUNT", "100"]).is_empty());

    assert_eq!(set_of(scan_all(&mut con, &["TYPE", "string"])), all);
    assert!(scan_all(&mut con, &["TYPE", "list", "COUNT", "100"]).is_empty());
    let seen = set_of(scan_all(
        &mut con,
        &["MATCH", "key:19*", "TYPE", "string", "COUNT", "20"],
    ));
    assert_eq!(
        seen,
        set_of(keys.iter().filter(|k| k.starts_with("key:19")).cloned())
    );
    let seen = set_of(scan_all(&mut other, &[]));
    assert_eq!(seen, set_of(["other:1".into(), "other:2".into()]));
}

#[test]
fn scan_sees_every_key_that_stays_while_others_come_and_go() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let mut writer = server.client();
    let stable: Vec<String> = (0..2000).map(|i| format!("stable:{i}")).collect();
    let churn: Vec<String> = (0..600).map(|i| format!("churn:{i}")).collect();
    assert_spread(&stable);
    assert_spread(&churn);
    for chunk in stable.chunks(100).chain(churn.chunks(100)) {
        let mut args = vec!["MSET".to_string()];
        for k in chunk {
            args.push(k.clone());
            args.push("v".into());
        }
        let () = q_owned(&mut con, &args);
    }
    // Every key that existed at some time; new keys of earlier rounds stay.
    let mut ever: HashSet<String> = stable.iter().chain(churn.iter()).cloned().collect();
    for count in ["7", "20", "150"] {
        let mut to_delete = churn.iter();
        let mut added = 0;
        let (seen, _) = scan_all_with(&mut con, &["COUNT", count], || {
            // Between calls another client deletes some keys and adds new ones on both shards.
            let mut del = vec!["DEL".to_string()];
            del.extend(to_delete.by_ref().take(4).cloned());
            if del.len() > 1 {
                let _: i64 = q_owned(&mut writer, &del);
            }
            let mut mset = vec!["MSET".to_string()];
            for _ in 0..4 {
                let k = format!("new:{count}:{added}");
                added += 1;
                ever.insert(k.clone());
                mset.push(k);
                mset.push("v".into());
            }
            let () = q_owned(&mut writer, &mset);
        });
        let seen = set_of(seen);
        let missing: Vec<&String> = stable.iter().filter(|k| !seen.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "SCAN COUNT {count} missed {} keys present throughout, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        let unknown: Vec<&String> = seen.iter().filter(|k| !ever.contains(*k)).collect();
        assert!(unknown.is_empty(), "SCAN returned unknown keys {unknown:?}");
        // Restore the churn keys for the next round.
        let mut args = vec!["MSET".to_string()];
        for k in &churn {
            args.push(k.clone());
            args.push("v".into());
        }
        let () = q_owned(&mut con, &args);
    }
}

#[test]
fn keys_dbsize_randomkey_see_both_shards() {
    let server = Server::start(&[]);
    let mut con = server.client();
    assert_eq!(q::<Option<String>>(&mut con, &["RANDOMKEY"]), None);
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    assert_spread(&keys);
    let mut args = vec!["MSET".to_string()];
    for k in &keys {
        args.push(k.clone());
        args.push("v".into());
    }
    let () = q_owned(&mut con, &args);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 100);
    assert_eq!(
        set_of(q::<Vec<String>>(&mut con, &["KEYS", "*"])),
        set_of(keys.iter().cloned())
    );
    let mut got = q::<Vec<String>>(&mut con, &["KEYS", "k1?"]);
    got.sort();
    assert_eq!(got, (10..20).map(|i| format!("k{i}")).collect::<Vec<_>>());
    assert_eq!(
        q::<Vec<String>>(&mut con, &["KEYS", "k[5]"]),
        vec!["k5".to_string()]
    );
    let all = set_of(keys.iter().cloned());
    for _ in 0..50 {
        let k: String = q(&mut con, &["RANDOMKEY"]);
        assert!(all.contains(&k), "RANDOMKEY gave {k}");
    }

    // One key on one shard only: every connection, whichever shard serves it, finds it.
    for only_shard in 0..2 {
        let () = q(&mut con, &["FLUSHDB"]);
        let only = key_on(only_shard, "only:");
        let () = q(&mut con, &["SET", &only, "v"]);
        for _ in 0..8 {
            let mut c = server.client();
            for _ in 0..5 {
                assert_eq!(q::<String>(&mut c, &["RANDOMKEY"]), only);
            }
        }
    }
}

#[test]
fn randomkey_picks_keys_of_every_shard() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    assert_spread(&keys);
    let mut args = vec!["MSET".to_string()];
    for k in &keys {
        args.push(k.clone());
        args.push("v".into());
    }
    let () = q_owned(&mut con, &args);
    // Every connection, whichever shard serves it, picks from the whole keyspace.
    for conn in 0..4 {
        let mut c = server.client();
        let mut picked = HashSet::new();
        let mut distinct = HashSet::new();
        for _ in 0..200 {
            let k: String = q(&mut c, &["RANDOMKEY"]);
            picked.insert(shard_of(&k));
            distinct.insert(k);
        }
        assert_eq!(
            picked,
            HashSet::from([0, 1]),
            "connection {conn}: 200 RANDOMKEYs over keys on both shards only gave keys of shard {picked:?}"
        );
        // 200 uniform picks of 100 keys hit far more than half of them.
        assert!(distinct.len() > 50, "only {} distinct keys", distinct.len());
    }
}

#[test]
fn select_swapdb_move_flushdb_flushall_across_shards() {
    let server = Server::start(&[]);
    let mut db0 = server.client();
    let mut db1 = server.client();
    let () = q(&mut db1, &["SELECT", "1"]);
    let a: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    let b: Vec<String> = (0..30).map(|i| format!("b{i}")).collect();
    assert_spread(&a);
    assert_spread(&b);
    for k in &a {
        let () = q(&mut db0, &["SET", k, "in-db0"]);
    }
    for k in &b {
        let () = q(&mut db1, &["SET", k, "in-db1"]);
    }
    assert_eq!(q::<i64>(&mut db0, &["DBSIZE"]), 50);
    assert_eq!(q::<i64>(&mut db1, &["DBSIZE"]), 30);
    assert_eq!(q::<i64>(&mut db0, &["EXISTS", "b0", "b1"]), 0);

    let () = q(&mut db0, &["SWAPDB", "0", "1"]);
    // Every connection, on either shard, sees the swap.
    let mut fresh = server.client();
    for con in [&mut db0, &mut fresh] {
        assert_eq!(q::<i64>(con, &["DBSIZE"]), 30);
        for k in &b {
            assert_eq!(q::<String>(con, &["GET", k]), "in-db1", "GET {k}");
        }
        assert_eq!(q::<i64>(con, &["EXISTS", "a0", "a1"]), 0);
    }
    assert_eq!(q::<i64>(&mut db1, &["DBSIZE"]), 50);
    for k in &a {
        assert_eq!(q::<String>(&mut db1, &["GET", k]), "in-db0", "GET {k}");
    }
    assert_eq!(
        err_of(&mut db0, &["SWAPDB", "0", "16"]),
        "ERR DB index is out of range"
    );
    assert_eq!(
        err_of(&mut db0, &["SELECT", "16"]),
        "ERR DB index is out of range"
    );
    let () = q(&mut db0, &["SWAPDB", "1", "0"]);
    assert_eq!(q::<i64>(&mut db0, &["DBSIZE"]), 50);

    // MOVE keys of both shards to db 2, with their TTLs.
    let () = q(&mut db0, &["EXPIRE", "a0", "1000"]);
    let () = q(&mut db0, &["EXPIRE", "a1", "1000"]);
    let mut db2 = server.client();
    let () = q(&mut db2, &["SELECT", "2"]);
    for k in &a[..20] {
        assert_eq!(q::<i64>(&mut db0, &["MOVE", k, "2"]), 1, "MOVE {k} 2");
    }
    assert_eq!(q::<i64>(&mut db0, &["DBSIZE"]), 30);
    assert_eq!(q::<i64>(&mut db2, &["DBSIZE"]), 20);
    for k in &a[..20] {
        assert_eq!(q::<String>(&mut db2, &["GET", k]), "in-db0");
    }
    for k in ["a0", "a1"] {
        let ttl: i64 = q(&mut db2, &["TTL", k]);
        assert!((990..=1000).contains(&ttl), "TTL {k} after MOVE: {ttl}");
    }
    // Already in the target database, or missing: nothing moves.
    let () = q(&mut db0, &["SET", "a0", "again"]);
    assert_eq!(q::<i64>(&mut db0, &["MOVE", "a0", "2"]), 0);
    assert_eq!(q::<String>(&mut db0, &["GET", "a0"]), "again");
    assert_eq!(q::<String>(&mut db2, &["GET", "a0"]), "in-db0");
    assert_eq!(q::<i64>(&mut db0, &["MOVE", "nosuchkey", "2"]), 0);
    assert_eq!(
        err_of(&mut db0, &["MOVE", "a0", "0"]),
        "ERR source and destination objects are the same"
    );

    let () = q(&mut db0, &["FLUSHDB"]);
    assert_eq!(q::<i64>(&mut db0, &["DBSIZE"]), 0);
    assert!(q::<Vec<String>>(&mut db0, &["KEYS", "*"]).is_empty());
    assert_eq!(q::<i64>(&mut db1, &["DBSIZE"]), 30);
    assert_eq!(q::<i64>(&mut db2, &["DBSIZE"]), 20);
    let () = q(&mut db1, &["FLUSHALL"]);
    for con in [&mut db0, &mut db1, &mut db2] {
        assert_eq!(q::<i64>(con, &["DBSIZE"]), 0);
    }
    let keyspace: String = q(&mut db0, &["INFO", "keyspace"]);
    assert!(!keyspace.contains("db"), "INFO keyspace:\n{keyspace}");
}

#[test]
fn multi_key_commands_split_across_shards_merge_in_key_order() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let keys: Vec<String> = (0..50).map(|i| format!("mk:{i}")).collect();
    assert_spread(&keys);
    let mut mset = vec!["MSET".to_string()];
    for (i, k) in keys.iter().enumerate() {
        mset.push(k.clone());
        mset.push(format!("value-{i}"));
    }
    let () = q_owned(&mut con, &mset);

    // MGET in key order, with missing keys and repeats interleaved.
    let mut mget = vec!["MGET".to_string()];
    let mut want = Vec::new();
    for (i, k) in keys.iter().enumerate().rev() {
        mget.push(k.clone());
        want.push(Some(format!("value-{i}")));
        if i % 7 == 0 {
            mget.push(format!("missing:{i}"));
            want.push(None);
            mget.push(keys[0].clone());
            want.push(Some("value-0".into()));
        }
    }
    assert_eq!(q_owned::<Vec<Option<String>>>(&mut con, &mget), want);

    let mut exists = vec!["EXISTS".to_string()];
    exists.extend(keys.iter().cloned());
    exists.push(keys[3].clone());
    exists.push(keys[4].clone());
    exists.push("missing".into());
    assert_eq!(q_owned::<i64>(&mut con, &exists), 52);

    let mut touch = vec!["TOUCH".to_string()];
    touch.extend(keys.iter().cloned());
    touch.push("missing".into());
    assert_eq!(q_owned::<i64>(&mut con, &touch), 50);

    // DEL counts each deleted key once, repeats included.
    let mut del = vec!["DEL".to_string()];
    del.extend(keys[..25].iter().cloned());
    del.extend(keys[..5].iter().cloned());
    del.push("missing".into());
    assert_eq!(q_owned::<i64>(&mut con, &del), 25);
    let mut exists = vec!["EXISTS".to_string()];
    exists.extend(keys.iter().cloned());
    assert_eq!(q_owned::<i64>(&mut con, &exists), 25);

    let mut unlink = vec!["UNLINK".to_string()];
    unlink.extend(keys.iter().cloned());
    assert_eq!(q_owned::<i64>(&mut con, &unlink), 25);
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 0);
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().cloned());
    assert_eq!(
        q_owned::<Vec<Option<String>>>(&mut con, &mget),
        vec![None; 50]
    );
}

/// PTTL of `key`, asserted to be a live TTL of at most `max_ms`.
fn live_pttl(con: &mut Connection, key: &str, max_ms: i64) -> i64 {
    let ttl: i64 = q(con, &["PTTL", key]);
    assert!(
        ttl > max_ms - 60_000 && ttl <= max_ms,
        "PTTL {key} = {ttl}, expected a TTL just under {max_ms}"
    );
    ttl
}

#[test]
fn rename_renamenx_copy_between_shards_keep_value_and_ttl() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let src = key_on(0, "src:");
    let dst = key_on(1, "dst:");
    let third = key_on(0, "third:");
    let () = q(&mut con, &["SET", &src, "hello", "PX", "100000"]);
    let () = q(&mut con, &["RENAME", &src, &dst]);
    assert_eq!(q::<i64>(&mut con, &["EXISTS", &src]), 0);
    assert_eq!(q::<String>(&mut con, &["GET", &dst]), "hello");
    live_pttl(&mut con, &dst, 100_000);

    // RENAME replaces the target and its TTL; a source without TTL leaves it persistent.
    let () = q(&mut con, &["SET", &src, "plain"]);
    let () = q(&mut con, &["RENAME", &src, &dst]);
    assert_eq!(q::<String>(&mut con, &["GET", &dst]), "plain");
    assert_eq!(q::<i64>(&mut con, &["TTL", &dst]), -1);
    assert_eq!(err_of(&mut con, &["RENAME", &src, &dst]), "ERR no such key");

    // RENAMENX: refused onto an existing key, done (with TTL) onto a free one.
    let () = q(&mut con, &["SET", &src, "second", "EX", "500"]);
    assert_eq!(q::<i64>(&mut con, &["RENAMENX", &src, &dst]), 0);
    assert_eq!(q::<String>(&mut con, &["GET", &src]), "second");
    assert_eq!(q::<String>(&mut con, &["GET", &dst]), "plain");
    let () = q(&mut con, &["DEL", &dst]);
    assert_eq!(q::<i64>(&mut con, &["RENAMENX", &src, &dst]), 1);
    assert_eq!(q::<i64>(&mut con, &["EXISTS", &src]), 0);
    assert_eq!(q::<String>(&mut con, &["GET", &dst]), "second");
    live_pttl(&mut con, &dst, 500_000);
    assert_eq!(
        err_of(&mut con, &["RENAMENX", &src, &dst]),
        "ERR no such key"
    );

    // COPY: the source stays, the copy has its value and TTL; REPLACE overwrites.
    assert_eq!(q::<i64>(&mut con, &["COPY", &dst, &src]), 1);
    assert_eq!(q::<String>(&mut con, &["GET", &src]), "second");
    assert_eq!(q::<String>(&mut con, &["GET", &dst]), "second");
    live_pttl(&mut con, &src, 500_000);
    let () = q(&mut con, &["SET", &third, "other"]);
    assert_eq!(q::<i64>(&mut con, &["COPY", &dst, &third]), 0);
    assert_eq!(q::<String>(&mut con, &["GET", &third]), "other");
    assert_eq!(q::<i64>(&mut con, &["COPY", &dst, &third, "REPLACE"]), 1);
    assert_eq!(q::<String>(&mut con, &["GET", &third]), "second");
    live_pttl(&mut con, &third, 500_000);
    assert_eq!(q::<i64>(&mut con, &["COPY", "missing", &third]), 0);

    // COPY into another database, replacing what is there.
    let mut db3 = server.client();
    let () = q(&mut db3, &["SELECT", "3"]);
    let () = q(&mut db3, &["SET", &src, "old-in-db3"]);
    assert_eq!(q::<i64>(&mut con, &["COPY", &dst, &src, "DB", "3"]), 0);
    assert_eq!(q::<String>(&mut db3, &["GET", &src]), "old-in-db3");
    assert_eq!(
        q::<i64>(&mut con, &["COPY", &dst, &src, "DB", "3", "REPLACE"]),
        1
    );
    assert_eq!(q::<String>(&mut db3, &["GET", &src]), "second");
    live_pttl(&mut db3, &src, 500_000);
    assert_eq!(
        q::<i64>(&mut con, &["COPY", &dst, &third, "DB", "3", "REPLACE"]),
        1
    );
    assert_eq!(q::<String>(&mut db3, &["GET", &third]), "second");
    assert_eq!(q::<i64>(&mut db3, &["DBSIZE"]), 2);
    // The source database is untouched.
    assert_eq!(q::<String>(&mut con, &["GET", &src]), "second");
    assert_eq!(
        err_of(&mut con, &["COPY", &dst, &dst]),
        "ERR source and destination objects are the same"
    );
}

#[test]
fn msetnx_across_shards_sets_all_or_none() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let keys: Vec<String> = (0..20).map(|i| format!("nx:{i}")).collect();
    assert_spread(&keys);
    let mut args = vec!["MSETNX".to_string()];
    for k in &keys {
        args.push(k.clone());
        args.push(format!("first-{k}"));
    }
    assert_eq!(q_owned::<i64>(&mut con, &args), 1);
    for k in &keys {
        assert_eq!(q::<String>(&mut con, &["GET", k]), format!("first-{k}"));
    }

    // One existing key, on the other shard than most new ones: nothing is set.
    let fresh: Vec<String> = (0..20).map(|i| format!("fresh:{i}")).collect();
    assert_spread(&fresh);
    for existing in [key_on(0, "nx:"), key_on(1, "nx:")] {
        let mut args = vec!["MSETNX".to_string()];
        for k in &fresh {
            args.push(k.clone());
            args.push("second".into());
        }
        args.push(existing.clone());
        args.push("second".into());
        assert_eq!(q_owned::<i64>(&mut con, &args), 0);
        let mut exists = vec!["EXISTS".to_string()];
        exists.extend(fresh.iter().cloned());
        assert_eq!(q_owned::<i64>(&mut con, &exists), 0);
        assert_eq!(
            q::<String>(&mut con, &["GET", &existing]),
            format!("first-{existing}")
        );
    }
    assert_eq!(q::<i64>(&mut con, &["DBSIZE"]), 20);
    // A key repeated in one MSETNX: the last value wins, as in Redis.
    let (a, b) = (key_on(0, "rep:"), key_on(1, "rep:"));
    assert_eq!(
        q::<i64>(&mut con, &["MSETNX", &a, "1", &b, "2", &a, "3"]),
        1
    );
    assert_eq!(q::<String>(&mut con, &["GET", &a]), "3");
    assert_eq!(q::<String>(&mut con, &["GET", &b]), "2");
}

#[test]
fn lcs_across_shards() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let (k1, k2) = (key_on(0, "lcs:"), key_on(1, "lcs:"));
    let () = q(&mut con, &["SET", &k1, "ohmytext"]);
    let () = q(&mut con, &["SET", &k2, "mynewtext"]);
    assert_eq!(q::<String>(&mut con, &["LCS", &k1, &k2]), "mytext");
    assert_eq!(q::<i64>(&mut con, &["LCS", &k1, &k2, "LEN"]), 6);
    assert_eq!(q::<String>(&mut con, &["LCS", &k1, "missing"]), "");
    // The IDX form, byte for byte as Redis's documentation shows it.
    let mut raw = server.raw();
    let got = raw.cmd(&["LCS", &k1, &k2, "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"]);
    let want = b"*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n$3\r\nlen\r\n:6\r\n";
    assert_eq!(got, want, "got {}", escape(&got));
    let got = raw.cmd(&["LCS", &k1, &k2, "IDX"]);
    let want = b"*4\r\n$7\r\nmatches\r\n*2\r\n*2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n*2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n$3\r\nlen\r\n:6\r\n";
    assert_eq!(got, want, "got {}", escape(&got));
}
