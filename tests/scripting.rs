//! Lua scripting through the real binary (2 shards): atomicity of scripts over keys on both
//! shards under concurrent clients, scripts that reach keys they did not declare, SCRIPT KILL
//! and BUSY, and redis-py's `Lock` and `Script` helpers.

mod common;

use common::{key_on, RawConn, Server};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Moves ARGV[1] from KEYS[1] to KEYS[2], refusing to go negative.
const TRANSFER: &str = "local a = tonumber(redis.call('get', KEYS[1]) or '0') \
    local n = tonumber(ARGV[1]) \
    if a < n then return 0 end \
    redis.call('decrby', KEYS[1], n) redis.call('incrby', KEYS[2], n) return 1";

/// The same transfer over keys it does not declare (named in ARGV).
const TRANSFER_UNDECLARED: &str = "local a = tonumber(redis.call('get', ARGV[1]) or '0') \
    local n = tonumber(ARGV[3]) \
    if a < n then return 0 end \
    redis.call('decrby', ARGV[1], n) redis.call('incrby', ARGV[2], n) return 1";

const SUM: &str =
    "return tonumber(redis.call('get', KEYS[1])) + tonumber(redis.call('get', KEYS[2]))";

fn int(reply: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(reply);
    text.trim_start_matches(':')
        .trim_end()
        .parse()
        .unwrap_or_else(|_| panic!("not an integer reply: {text:?}"))
}

/// The number in a bulk-string reply (GET of a counter).
fn counter(reply: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(reply);
    text.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("not a counter: {text:?}"))
}

/// Transfers between two counters on different shards, from many clients at once, declared and
/// undeclared, while readers check that the sum never changes.
#[test]
fn transfers_across_shards_keep_the_sum() {
    let server = Server::start(&[]);
    let (a, b) = (key_on(0, "acct:a"), key_on(1, "acct:b"));
    let mut ctl = server.raw();
    assert_eq!(ctl.cmd(&["MSET", &a, "500", &b, "500"]), b"+OK\r\n");
    let sha_reply = ctl.cmd(&["SCRIPT", "LOAD", TRANSFER]);
    let sha = String::from_utf8_lossy(&sha_reply)
        .lines()
        .nth(1)
        .unwrap_or("")
        .to_string();
    assert_eq!(sha.len(), 40, "{sha_reply:?}");
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
        readers.push(thread::spawn(move || {
            let mut c = RawConn::connect(addr);
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(
                    int(&c.cmd(&["EVAL", SUM, "2", &a, &b])),
                    1000,
                    "a script saw half a transfer"
                );
                let mget = c.cmd(&["MGET", &a, &b]);
                let text = String::from_utf8_lossy(&mget).into_owned();
                let nums: Vec<i64> = text.lines().filter_map(|l| l.parse().ok()).collect();
                assert_eq!(
                    nums.iter().sum::<i64>(),
                    1000,
                    "MGET saw half a transfer: {text:?}"
                );
                reads += 1;
            }
            reads
        }));
    }
    let mut writers = Vec::new();
    for w in 0..6 {
        let (a, b, sha) = (a.clone(), b.clone(), sha.clone());
        writers.push(thread::spawn(move || {
            let mut c = RawConn::connect(addr);
            let mut moved = 0;
            for i in 0..150 {
                let (from, to) = if (i + w) % 2 == 0 { (&a, &b) } else { (&b, &a) };
                let n = (1 + (i * 7 + w) % 13).to_string();
                let r = match w % 3 {
                    0 => c.cmd(&["EVALSHA", &sha, "2", from, to, &n]),
                    1 => c.cmd(&["EVAL", TRANSFER, "2", from, to, &n]),
                    _ => c.cmd(&["EVAL", TRANSFER_UNDECLARED, "0", from, to, &n]),
                };
                moved += int(&r);
            }
            moved
        }));
    }
    let moved: i64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    stop.store(true, Ordering::Relaxed);
    let reads: usize = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(moved > 0, "no transfer happened");
    let total = int(&ctl.cmd(&["EVAL", SUM, "2", &a, &b]));
    assert_eq!(total, 1000);
    eprintln!("{moved} transfers, {reads} consistent reads");
}

/// A script that writes a key, then reaches a key on another shard it did not declare, runs
/// again over both: each write happens exactly once, whichever shard the connection is on.
#[test]
fn undeclared_keys_on_another_shard_are_written_once() {
    let server = Server::start(&[]);
    let (x, y) = (key_on(0, "und:x"), key_on(1, "und:y"));
    let script =
        "redis.call('incr', ARGV[1]) redis.call('incr', ARGV[2]) return redis.call('get', ARGV[1])";
    let mut rounds = 0i64;
    for c in 0..6 {
        let mut con = server.raw();
        for i in 0..5 {
            let (first, second) = if (c + i) % 2 == 0 { (&x, &y) } else { (&y, &x) };
            let r = con.cmd(&["EVAL", script, "0", first, second]);
            rounds += 1;
            assert!(r.starts_with(b"$"), "{}", String::from_utf8_lossy(&r));
            assert_eq!(counter(&con.cmd(&["GET", &x])), rounds);
            assert_eq!(counter(&con.cmd(&["GET", &y])), rounds);
        }
    }
    // Pipelined around a script whose declared key is on one shard and undeclared key on the
    // other: a shard that runs it sends it back to run as a transaction, and the replies stay
    // in order.
    for c in 0..6 {
        let mut con = server.raw();
        let (first, second) = if c % 2 == 0 { (&x, &y) } else { (&y, &x) };
        let mut batch = Vec::new();
        batch.extend(common::encode(&["SET", first, "before"]));
        batch.extend(common::encode(&[
            "EVAL",
            "redis.call('set', KEYS[1], 'mid') redis.call('set', ARGV[1], 'mid') return redis.call('get', ARGV[1])",
            "1",
            first,
            second,
        ]));
        batch.extend(common::encode(&["GET", first]));
        batch.extend(common::encode(&["SET", second, "after"]));
        batch.extend(common::encode(&["GET", second]));
        con.send(&batch);
        let replies = con.read_replies(5);
        assert_eq!(
            replies,
            vec![
                b"+OK\r\n".to_vec(),
                b"$3\r\nmid\r\n".to_vec(),
                b"$3\r\nmid\r\n".to_vec(),
                b"+OK\r\n".to_vec(),
                b"$5\r\nafter\r\n".to_vec(),
            ]
        );
    }
    // Declared keys on another shard, a key declared and one not.
    let mut con = server.raw();
    let r = con.cmd(&["EVAL", "redis.call('set', KEYS[1], 'k') redis.call('set', ARGV[1], 'a') return redis.call('mget', KEYS[1], ARGV[1])", "1", &x, &y]);
    assert_eq!(r, b"*2\r\n$1\r\nk\r\n$1\r\na\r\n");
}

/// Runs `script` (which loops forever without writing) on one connection and SCRIPT KILL from
/// others until it answers OK; checks the looping client's error and, when `busy_key` is set,
/// that commands for the looping shard got -BUSY meanwhile.
fn kill_looping(server: &Server, script: &'static str, check_busy: bool) {
    let addr = server.addr();
    let looping = thread::spawn(move || {
        let mut c = RawConn::connect(addr);
        c.set_read_timeout(Duration::from_secs(60));
        c.cmd(&["EVAL", script, "0"])
    });
    // Connections land on either shard; the ones on the looping shard wait for the script, the
    // others answer. Try until SCRIPT KILL is answered OK.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut killed = false;
    let mut saw_busy = false;
    while !killed && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        let mut c = RawConn::connect(addr);
        c.set_read_timeout(Duration::from_millis(500));
        // A key on each shard, and both at once: the looping shard's answer BUSY.
        for s in 0..2 {
            let k = key_on(s, "busy");
            c.send(&common::encode(&["GET", &k]));
            if let Ok(r) = c.try_read_reply() {
                saw_busy |= r.starts_with(b"-BUSY Redis is busy running a script.");
            }
        }
        c.send(&common::encode(&[
            "MGET",
            &key_on(0, "busy"),
            &key_on(1, "busy"),
        ]));
        if let Ok(r) = c.try_read_reply() {
            saw_busy |= r.starts_with(b"-BUSY Redis is busy running a script.");
        }
        c.send(&common::encode(&["SCRIPT", "KILL"]));
        if let Ok(r) = c.try_read_reply() {
            killed = r == b"+OK\r\n";
        }
    }
    assert!(killed, "SCRIPT KILL never answered OK for {script}");
    let reply = looping.join().expect("looping client");
    assert!(
        reply.starts_with(b"-ERR Script killed by user with SCRIPT KILL"),
        "{script}: {}",
        String::from_utf8_lossy(&reply)
    );
    if check_busy {
        assert!(saw_busy, "no -BUSY while {script} ran");
    }
    let mut c = server.raw();
    assert_eq!(
        c.cmd(&["SCRIPT", "KILL"]),
        b"-NOTBUSY No scripts in execution right now.\r\n"
    );
    assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
}

/// SCRIPT KILL stops a read-only script that runs forever, also one that loops inside a
/// coroutine or keeps catching the kill with pcall; commands for its shard from other shards
/// get -BUSY meanwhile.
#[test]
fn script_kill_and_busy() {
    let server = Server::start(&["--busy-reply-threshold", "100"]);
    kill_looping(&server, "while true do end", true);
    kill_looping(
        &server,
        "local co = coroutine.wrap(function() while true do end end) co()",
        false,
    );
    kill_looping(
        &server,
        "while true do pcall(function() while true do end end) end",
        false,
    );
}

/// Library code that never finishes is stopped after 500 ms, as Redis does; a script whose keys
/// change on every run is not run again forever; MOVE in a script on copies moves the key.
#[test]
fn runaway_loads_and_reroutes_end() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.set_read_timeout(Duration::from_secs(20));
    assert_eq!(
        c.cmd(&["FUNCTION", "LOAD", "#!lua name=inf\nwhile true do end"]),
        b"-ERR Error registering functions: ERR FUNCTION LOAD timeout\r\n".to_vec()
    );
    assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
    for _ in 0..4 {
        let mut c = server.raw();
        c.set_read_timeout(Duration::from_secs(20));
        let r = c.cmd(&[
            "EVAL",
            "return redis.call('get', 'x' .. redis.call('time')[2])",
            "0",
        ]);
        assert!(
            r == b"$-1\r\n" || r.starts_with(b"-ERR the keys this script reaches change"),
            "{}",
            String::from_utf8_lossy(&r)
        );
    }
    let (k0, k1) = (key_on(0, "mv"), key_on(1, "mv"));
    for k in [&k0, &k1] {
        for _ in 0..3 {
            let mut c = server.raw();
            assert_eq!(c.cmd(&["SET", k, "v"]), b"+OK\r\n");
            assert_eq!(
                c.cmd(&["EVAL", "return redis.call('move', KEYS[1], 1)", "1", k]),
                b":1\r\n"
            );
            assert_eq!(c.cmd(&["EXISTS", k]), b":0\r\n");
            assert_eq!(c.cmd(&["SELECT", "1"]), b"+OK\r\n");
            assert_eq!(c.cmd(&["GET", k]), b"$1\r\nv\r\n");
            assert_eq!(c.cmd(&["DEL", k]), b":1\r\n");
        }
    }
    // A script that ran cleanly over its declared keys, then reaches an undeclared key on the
    // other shard after writing: both writes happen.
    let script = "redis.call('set', KEYS[1], 'x') redis.call('set', ARGV[1], 'y') return 1";
    for c in 0..4 {
        let mut con = server.raw();
        let (a, b) = if c % 2 == 0 { (&k0, &k1) } else { (&k1, &k0) };
        let same = key_on(if c % 2 == 0 { 0 } else { 1 }, "same");
        assert_eq!(con.cmd(&["EVAL", script, "1", a, &same]), b":1\r\n");
        assert_eq!(con.cmd(&["DEL", a, b]).len(), 4);
        let r = con.cmd(&["EVAL", script, "1", a, b]);
        assert_eq!(r, b":1\r\n", "{}", String::from_utf8_lossy(&r));
        assert_eq!(con.cmd(&["MGET", a, b]), b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n");
    }
}

/// redis-py's `Lock` (SET NX PX plus Lua release and extend) and `Script` (EVALSHA falling back
/// to SCRIPT LOAD) against shardis. Skipped, loudly, when no python3 with redis-py is found
/// (scripts/install-deps.sh installs Debian's python3-redis).
#[test]
fn redis_py_lock_and_script() {
    let Some(python) = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import redis"])
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("SKIPPED: no python3 with redis-py (run scripts/install-deps.sh)");
        return;
    };
    let server = Server::start(&[]);
    let program = r#"
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
lock = r.lock("resource", timeout=10)
assert lock.acquire(blocking=False)
assert not r.lock("resource", timeout=10).acquire(blocking=False)
assert lock.owned()
lock.extend(5)
assert r.pttl("resource") > 10000
lock.reacquire()
lock.release()
assert r.get("resource") is None
with r.lock("resource2", timeout=5):
    assert r.exists("resource2")
incr = r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
assert incr(keys=["counter"], args=[5]) == 5
r.script_flush()
assert incr(keys=["counter"], args=[2]) == 7
swap = r.register_script("local a = redis.call('get', KEYS[1]) redis.call('set', KEYS[1], redis.call('get', KEYS[2])) redis.call('set', KEYS[2], a) return 'ok'")
r.set("left", "L"); r.set("right", "R")
assert swap(keys=["left", "right"]) == b"ok"
assert r.mget("left", "right") == [b"R", b"L"]
print("redis-py ok")
"#;
    let out = std::process::Command::new(python)
        .args(["-c", program, &server.port().to_string()])
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("redis-py ok"),
        "{text}"
    );
}

/// SHUTDOWN and wait for the process to exit.
fn stop(server: &mut Server, mode: &str) {
    let mut c = server.raw();
    c.send(&common::encode(&["SHUTDOWN", mode]));
    assert!(
        server.wait_exit(Duration::from_secs(20)).is_some(),
        "the server did not exit"
    );
}

const LIB: &str = "#!lua name=counters\n\
    redis.register_function('bump', function(keys, args) return redis.call('incrby', keys[1], args[1]) end)\n\
    redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}";

/// Function libraries survive restarts through the AOF (FUNCTION LOAD logged) and through
/// RDB files (FUNCTION2 records), and scripts' effects replay without Lua.
#[test]
fn functions_survive_restarts() {
    let dir = common::fresh_dir("functions-restart");
    let d = dir.to_str().unwrap().to_string();
    // AOF: the library and the effects of FCALL come back.
    let mut server = Server::start(&["--dir", &d, "--appendonly", "yes"]);
    let mut c = server.raw();
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", LIB]), b"$8\r\ncounters\r\n");
    let (a, b) = (key_on(0, "fn:a"), key_on(1, "fn:b"));
    assert_eq!(c.cmd(&["FCALL", "bump", "1", &a, "5"]), b":5\r\n");
    assert_eq!(c.cmd(&["FCALL", "bump", "1", &b, "7"]), b":7\r\n");
    stop(&mut server, "NOSAVE");
    let mut server = Server::start(&["--dir", &d, "--appendonly", "yes"]);
    let mut c = server.raw();
    assert_eq!(c.cmd(&["FCALL_RO", "peek", "1", &a]), b"$1\r\n5\r\n");
    assert_eq!(c.cmd(&["FCALL", "bump", "1", &b, "1"]), b":8\r\n");
    // RDB: saved with the data, loaded without the AOF.
    assert_eq!(c.cmd(&["SAVE"]), b"+OK\r\n");
    stop(&mut server, "NOSAVE");
    let server = Server::start(&["--dir", &d, "--appendonly", "no"]);
    let mut c = server.raw();
    assert_eq!(c.cmd(&["FCALL_RO", "peek", "1", &b]), b"$1\r\n8\r\n");
    let list = c.cmd(&["FUNCTION", "LIST"]);
    assert!(
        String::from_utf8_lossy(&list).contains("counters"),
        "{}",
        String::from_utf8_lossy(&list)
    );
}

/// FUNCTION DUMP payloads move libraries between Redis and shardis both ways (Redis's payload
/// compresses the code with LZF), and a dump.rdb made by Redis brings its libraries along.
#[test]
fn function_payloads_and_rdb_files_from_redis() {
    let dir = common::fresh_dir("functions-redis-rdb");
    let redis = common::RedisServer::start_with(&["--dir", dir.to_str().unwrap()]);
    let mut r = redis.raw();
    assert_eq!(r.cmd(&["FUNCTION", "LOAD", LIB]), b"$8\r\ncounters\r\n");
    let payload = r.cmd(&["FUNCTION", "DUMP"]);
    let body = &payload[payload.iter().position(|&b| b == b'\n').unwrap() + 1..payload.len() - 2];
    let server = Server::start(&[]);
    let mut c = server.raw();
    assert_eq!(c.cmd_bytes(&[b"FUNCTION", b"RESTORE", body]), b"+OK\r\n");
    assert_eq!(c.cmd(&["FCALL", "bump", "1", "x", "3"]), b":3\r\n");
    assert_eq!(
        c.cmd_bytes(&[b"FUNCTION", b"RESTORE", body]),
        b"-ERR Library 'counters' already exists\r\n"
    );
    assert_eq!(
        c.cmd_bytes(&[b"FUNCTION", b"RESTORE", body, b"REPLACE"]),
        b"+OK\r\n"
    );
    let ours = c.cmd(&["FUNCTION", "DUMP"]);
    let ours = &ours[ours.iter().position(|&b| b == b'\n').unwrap() + 1..ours.len() - 2];
    assert_eq!(r.cmd(&["FUNCTION", "FLUSH"]), b"+OK\r\n");
    assert_eq!(r.cmd_bytes(&[b"FUNCTION", b"RESTORE", ours]), b"+OK\r\n");
    assert_eq!(r.cmd(&["FCALL", "bump", "1", "y", "2"]), b":2\r\n");

    // Redis's dump.rdb, with the library, loads into shardis.
    assert_eq!(r.cmd(&["SAVE"]), b"+OK\r\n");
    let server = Server::start(&["--dir", dir.to_str().unwrap()]);
    let mut c = server.raw();
    assert_eq!(c.cmd(&["FCALL_RO", "peek", "1", "y"]), b"$1\r\n2\r\n");
}

/// A script that wrote cannot be killed (`UNKILLABLE`), and SHUTDOWN NOSAVE still stops the
/// server while it runs.
#[test]
fn unkillable_script_and_shutdown_nosave() {
    let mut server = Server::start(&["--busy-reply-threshold", "100"]);
    let addr = server.addr();
    thread::spawn(move || {
        let mut c = RawConn::connect(addr);
        c.set_read_timeout(Duration::from_secs(60));
        c.send(&common::encode(&[
            "EVAL",
            "redis.call('set', KEYS[1], '1') while true do end",
            "1",
            "w",
        ]));
        // No answer comes: the server stops while the script runs.
        let _ = c.try_read_reply();
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut unkillable = false;
    while !unkillable && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
        let mut c = RawConn::connect(addr);
        c.set_read_timeout(Duration::from_millis(500));
        c.send(&common::encode(&["SCRIPT", "KILL"]));
        if let Ok(r) = c.try_read_reply() {
            unkillable =
                r.starts_with(b"-UNKILLABLE Sorry the script already executed write commands");
            if unkillable {
                c.send(&common::encode(&["SHUTDOWN", "NOSAVE"]));
            }
        }
    }
    assert!(unkillable, "SCRIPT KILL never answered UNKILLABLE");
    assert!(
        server.wait_exit(Duration::from_secs(20)).is_some(),
        "SHUTDOWN NOSAVE did not stop the server while a script ran"
    );
}

/// With one shard every connection shares the busy script's thread: the hook serves them
/// meanwhile (Redis's processEventsWhileBlocked): -BUSY for commands, and SCRIPT KILL works.
#[test]
fn the_busy_shard_keeps_serving_its_connections() {
    let server = Server::start(&["--shards", "1", "--busy-reply-threshold", "100"]);
    let addr = server.addr();
    let looping = thread::spawn(move || {
        let mut c = RawConn::connect(addr);
        c.set_read_timeout(Duration::from_secs(60));
        c.cmd(&["EVAL", "while true do end", "0"])
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = server.raw();
    c.set_read_timeout(Duration::from_secs(20));
    loop {
        let r = c.cmd(&["GET", "k"]);
        if r.starts_with(b"-BUSY Redis is busy running a script.") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never -BUSY: {}",
            String::from_utf8_lossy(&r)
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.cmd(&["SCRIPT", "KILL"]), b"+OK\r\n");
    let reply = looping.join().expect("looping client");
    assert!(
        reply.starts_with(b"-ERR Script killed by user with SCRIPT KILL"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
}

/// FUNCTION STATS shows a function running past the threshold (from the busy shard's own
/// connections too), and FUNCTION KILL stops it.
#[test]
fn function_stats_and_kill_while_busy() {
    let server = Server::start(&["--shards", "1", "--busy-reply-threshold", "100"]);
    let mut c = server.raw();
    c.set_read_timeout(Duration::from_secs(20));
    let lib = "#!lua name=spin\nredis.register_function{function_name='spin', callback=function() while true do end end, flags={'no-writes'}}";
    assert_eq!(c.cmd(&["FUNCTION", "LOAD", lib]), b"$4\r\nspin\r\n");
    let addr = server.addr();
    let looping = thread::spawn(move || {
        let mut c = RawConn::connect(addr);
        c.set_read_timeout(Duration::from_secs(60));
        c.cmd(&["FCALL", "spin", "0", "arg"])
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = String::from_utf8_lossy(&c.cmd(&["FUNCTION", "STATS"])).into_owned();
        if r.contains("$4\r\nspin\r\n$7\r\ncommand\r\n*4\r\n$5\r\nFCALL\r\n$4\r\nspin\r\n$1\r\n0\r\n$3\r\narg\r\n$11\r\nduration_ms\r\n:") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "FUNCTION STATS never showed the function: {r:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.cmd(&["FUNCTION", "KILL"]), b"+OK\r\n");
    let reply = looping.join().expect("looping client");
    assert!(
        reply.starts_with(b"-ERR Script killed by user with SCRIPT KILL"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        String::from_utf8_lossy(&c.cmd(&["FUNCTION", "STATS"])).contains("running_script\r\n$-1")
    );
}
