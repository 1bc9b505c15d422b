//! Multi-key commands over keys on different shards are atomic and isolated (the transaction
//! layer, `src/txn.rs`), checked through the real binary with 2 shards and many clients.

mod common;

use common::{shard_of, RawConn, Server};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// `n` keys named from `prefix`, alternating between the two shards.
fn spread_keys(prefix: &str, n: usize) -> Vec<String> {
    let mut on = [Vec::new(), Vec::new()];
    for i in 0.. {
        let k = format!("{prefix}{i}");
        let s = shard_of(k.as_bytes(), 2);
        if on[s].len() < n.div_ceil(2) {
            on[s].push(k);
        }
        if on[0].len() + on[1].len() >= n + n % 2 {
            break;
        }
    }
    let mut keys = Vec::new();
    for i in 0..n.div_ceil(2) {
        keys.extend(on[0].get(i).cloned());
        keys.extend(on[1].get(i).cloned());
    }
    keys.truncate(n);
    keys
}

/// The bulk strings of an array reply (nil elements as None).
fn bulks(reply: &[u8]) -> Vec<Option<String>> {
    let text = String::from_utf8_lossy(reply).into_owned();
    let mut lines = text.split("\r\n");
    let mut out = Vec::new();
    let Some(head) = lines.next() else {
        return out;
    };
    let n: usize = head.trim_start_matches('*').parse().unwrap_or(0);
    for _ in 0..n {
        match lines.next() {
            Some("$-1") => out.push(None),
            Some(_) => out.push(lines.next().map(str::to_string)),
            None => break,
        }
    }
    out
}

/// Writers MSET a family of keys on both shards to one value; readers MGET them: no reader
/// ever sees values from two different MSETs.
#[test]
fn cross_shard_mset_is_seen_whole() {
    let server = Server::start(&[]);
    let keys = spread_keys("fam", 8);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (keys, stop) = (keys.clone(), stop.clone());
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v = format!("w{w}-{n}");
                    let mut args = vec!["MSET".to_string()];
                    for k in &keys {
                        args.push(k.clone());
                        args.push(v.clone());
                    }
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    assert_eq!(c.cmd(&args), b"+OK\r\n");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (keys, stop) = (keys.clone(), stop.clone());
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut args = vec!["MGET"];
                    args.extend(keys.iter().map(String::as_str));
                    let vals = bulks(&c.cmd(&args));
                    assert_eq!(vals.len(), keys.len());
                    let distinct: HashSet<_> = vals.iter().collect();
                    assert_eq!(distinct.len(), 1, "a mix of MSETs: {vals:?}");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let writes: u64 = writers.into_iter().map(|h| h.join().expect("writer")).sum();
    let reads: u64 = readers.into_iter().map(|h| h.join().expect("reader")).sum();
    assert!(writes > 50 && reads > 50, "writes {writes}, reads {reads}");
}

/// Many clients move elements between lists on both shards with LMOVE, RPOPLPUSH and BLMOVE:
/// at the end every element exists exactly once.
#[test]
fn moves_between_shards_lose_and_duplicate_nothing() {
    let server = Server::start(&[]);
    let lists = spread_keys("lst", 4);
    let mut ctl = server.raw();
    const ELEMENTS: usize = 60;
    for i in 0..ELEMENTS {
        let l = &lists[i % lists.len()];
        ctl.cmd(&["RPUSH", l, &format!("e{i}")]);
    }
    let addr = server.addr();
    let deadline = Instant::now() + Duration::from_millis(1500);
    let movers: Vec<_> = (0..4)
        .map(|m| {
            let lists = lists.clone();
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let mut i = m;
                while Instant::now() < deadline {
                    let (src, dst) = (&lists[i % 4], &lists[(i * 3 + 1) % 4]);
                    let r = match i % 3 {
                        0 => c.cmd(&["LMOVE", src, dst, "LEFT", "RIGHT"]),
                        1 => c.cmd(&["RPOPLPUSH", src, dst]),
                        _ => c.cmd(&["BLMOVE", src, dst, "RIGHT", "LEFT", "0.05"]),
                    };
                    assert!(
                        r.starts_with(b"$") || r == b"*-1\r\n",
                        "{}",
                        String::from_utf8_lossy(&r)
                    );
                    i += 1;
                }
            })
        })
        .collect();
    for h in movers {
        h.join().expect("mover");
    }
    let mut all = Vec::new();
    for l in &lists {
        all.extend(
            bulks(&ctl.cmd(&["LRANGE", l, "0", "-1"]))
                .into_iter()
                .flatten(),
        );
    }
    all.sort();
    let mut want: Vec<String> = (0..ELEMENTS).map(|i| format!("e{i}")).collect();
    want.sort();
    assert_eq!(all, want);
}

/// A gathered write (SMOVE across shards) does not lose writes made meanwhile by plain
/// single-shard commands on the same keys.
#[test]
fn gathered_writes_lose_no_concurrent_update() {
    let server = Server::start(&[]);
    let keys = spread_keys("set", 2);
    let (src, dst) = (keys[0].clone(), keys[1].clone());
    let mut ctl = server.raw();
    const MOVES: usize = 150;
    for i in 0..MOVES {
        ctl.cmd(&["SADD", &src, &format!("m{i}")]);
    }
    let addr = server.addr();
    let (s2, d2) = (src.clone(), dst.clone());
    let mover = thread::spawn(move || {
        let mut c = RawConn::connect(addr);
        for i in 0..MOVES {
            assert_eq!(c.cmd(&["SMOVE", &s2, &d2, &format!("m{i}")]), b":1\r\n");
        }
    });
    let d3 = dst.clone();
    let adder = thread::spawn(move || {
        let mut c = RawConn::connect(addr);
        for i in 0..MOVES {
            assert_eq!(c.cmd(&["SADD", &d3, &format!("a{i}")]), b":1\r\n");
        }
    });
    mover.join().expect("mover");
    adder.join().expect("adder");
    assert_eq!(
        ctl.cmd(&["SCARD", &dst]),
        format!(":{}\r\n", 2 * MOVES).as_bytes()
    );
    assert_eq!(ctl.cmd(&["EXISTS", &src]), b":0\r\n");
}

/// Readers that MGET the family inside MULTI/EXEC never see a mix of MSETs either, and
/// MULTI blocks that write the family are seen whole by MGET.
#[test]
fn exec_blocks_are_atomic_across_shards() {
    let server = Server::start(&[]);
    let keys = spread_keys("blk", 6);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr();
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (keys, stop) = (keys.clone(), stop.clone());
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let v = format!("x{w}-{n}");
                    assert_eq!(c.cmd(&["MULTI"]), b"+OK\r\n");
                    // Every other block needs the whole keyspace, so it runs live (holding
                    // every shard) rather than on copies: both kinds must be seen whole.
                    let live = n % 2 == 1;
                    for (i, k) in keys.iter().enumerate() {
                        assert_eq!(c.cmd(&["SET", k, &v]), b"+QUEUED\r\n");
                        if live && i == 1 {
                            assert_eq!(c.cmd(&["DBSIZE"]), b"+QUEUED\r\n");
                        }
                    }
                    let r = c.cmd(&["EXEC"]);
                    let replies = keys.len() + live as usize;
                    assert!(r.starts_with(format!("*{replies}\r\n").as_bytes()));
                    n += 1;
                }
            })
        })
        .collect();
    let done_reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (keys, stop, done_reads) = (keys.clone(), stop.clone(), done_reads.clone());
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    if reads == 21 {
                        done_reads.fetch_add(1, Ordering::Relaxed);
                    }
                    let vals = if r == 0 {
                        assert_eq!(c.cmd(&["MULTI"]), b"+OK\r\n");
                        for k in &keys {
                            assert_eq!(c.cmd(&["GET", k]), b"+QUEUED\r\n");
                        }
                        bulks(&c.cmd(&["EXEC"]))
                    } else {
                        let mut args = vec!["MGET"];
                        args.extend(keys.iter().map(String::as_str));
                        bulks(&c.cmd(&args))
                    };
                    let distinct: HashSet<_> = vals.iter().collect();
                    assert_eq!(distinct.len(), 1, "a mix of blocks: {vals:?}");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    // At least 1.2 s of contention, and until every reader has read more than 20 times (a
    // busy machine may need longer; a starved reader never gets there).
    thread::sleep(Duration::from_millis(1200));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while done_reads.load(Ordering::Relaxed) < 2 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for h in writers {
        h.join().expect("writer");
    }
    for h in readers {
        assert!(h.join().expect("reader") > 20);
    }
}

/// Optimistic increments with WATCH/MULTI/EXEC from several clients on counters on both
/// shards: every EXEC that succeeds counts once, none is lost.
#[test]
fn watch_retry_loops_lose_no_increment() {
    let server = Server::start(&[]);
    let keys = spread_keys("ctr", 2);
    let addr = server.addr();
    const PER_CLIENT: usize = 40;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let keys = keys.clone();
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let mut retries = 0;
                for _ in 0..PER_CLIENT {
                    loop {
                        assert_eq!(c.cmd(&["WATCH", &keys[0], &keys[1]]), b"+OK\r\n");
                        let cur: Vec<i64> = bulks(&c.cmd(&["MGET", &keys[0], &keys[1]]))
                            .into_iter()
                            .map(|v| v.and_then(|s| s.parse().ok()).unwrap_or(0))
                            .collect();
                        c.cmd(&["MULTI"]);
                        c.cmd(&["SET", &keys[0], &(cur[0] + 1).to_string()]);
                        c.cmd(&["SET", &keys[1], &(cur[1] + 2).to_string()]);
                        let r = c.cmd(&["EXEC"]);
                        if r == b"*-1\r\n" {
                            retries += 1;
                            continue;
                        }
                        assert_eq!(r, b"*2\r\n+OK\r\n+OK\r\n");
                        break;
                    }
                }
                retries
            })
        })
        .collect();
    let retries: usize = clients.into_iter().map(|h| h.join().expect("client")).sum();
    let mut ctl = server.raw();
    let total = 4 * PER_CLIENT;
    assert_eq!(
        bulks(&ctl.cmd(&["MGET", &keys[0], &keys[1]])),
        vec![Some(total.to_string()), Some((2 * total).to_string())],
        "after {retries} retries"
    );
}

/// Blocks run live (they hold every shard) whose own commands span shards, racing with other
/// such blocks, with plain cross-shard MSETs and with readers: nobody deadlocks, and readers
/// still see every write whole.
#[test]
fn live_blocks_with_cross_shard_commands_make_progress() {
    let server = Server::start(&[]);
    let keys = spread_keys("live", 4);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr();
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let stop = stop.clone();
            let keys = keys.clone();
            let args_of = move |v: &str| {
                let mut args = vec!["MSET".to_string()];
                for k in &keys {
                    args.push(k.clone());
                    args.push(v.to_string());
                }
                args
            };
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let args = args_of(&format!("w{w}-{n}"));
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    if w == 2 {
                        assert_eq!(c.cmd(&args), b"+OK\r\n");
                    } else {
                        assert_eq!(c.cmd(&["MULTI"]), b"+OK\r\n");
                        assert_eq!(c.cmd(&args), b"+QUEUED\r\n");
                        assert_eq!(c.cmd(&["DBSIZE"]), b"+QUEUED\r\n");
                        let r = c.cmd(&["EXEC"]);
                        assert!(
                            r.starts_with(b"*2\r\n+OK\r\n:"),
                            "{}",
                            String::from_utf8_lossy(&r)
                        );
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let reader = {
        let (keys, stop) = (keys.clone(), stop.clone());
        thread::spawn(move || {
            let mut c = RawConn::connect(addr);
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut args = vec!["MGET"];
                args.extend(keys.iter().map(String::as_str));
                let vals = bulks(&c.cmd(&args));
                let distinct: HashSet<_> = vals.iter().collect();
                assert_eq!(distinct.len(), 1, "a mix: {vals:?}");
                reads += 1;
            }
            reads
        })
    };
    thread::sleep(Duration::from_millis(1200));
    stop.store(true, Ordering::Relaxed);
    for h in workers {
        assert!(h.join().expect("worker") > 5);
    }
    assert!(reader.join().expect("reader") > 5);
}

/// Clients that go away in the middle of cross-shard transactions (a pipelined burst of MSETs,
/// MULTI blocks of both kinds, then an immediate close) leave no lock behind: the keys stay
/// usable and the server answers everyone.
#[test]
fn vanished_coordinators_leave_no_locks() {
    let server = Server::start(&[]);
    let keys = spread_keys("gone", 4);
    let mut burst = Vec::new();
    for i in 0..100 {
        let mut args = vec!["MSET".to_string()];
        for k in &keys {
            args.push(k.clone());
            args.push(format!("v{i}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        burst.extend(common::encode(&args));
        let block = [
            vec!["MULTI"],
            vec!["SET", keys[0].as_str(), "m"],
            vec!["SET", keys[1].as_str(), "m"],
            if i % 2 == 0 {
                vec!["DBSIZE"]
            } else {
                vec!["GET", keys[2].as_str()]
            },
            vec!["EXEC"],
        ];
        for cmd in block {
            burst.extend(common::encode(&cmd));
        }
    }
    for _ in 0..20 {
        let mut c = server.raw();
        c.send(&burst);
        drop(c);
    }
    let mut ctl = server.raw();
    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(String::as_str));
    assert!(ctl.cmd(&args).starts_with(b"*4\r\n"));
    let mut args = vec!["MSET".to_string()];
    for k in &keys {
        args.push(k.clone());
        args.push("after".to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(ctl.cmd(&args), b"+OK\r\n");
    assert_eq!(ctl.cmd(&["MULTI"]), b"+OK\r\n");
    assert_eq!(ctl.cmd(&["DBSIZE"]), b"+QUEUED\r\n");
    assert!(ctl.cmd(&["EXEC"]).starts_with(b"*1\r\n:"));
}
