//! Blocking list and sorted-set pops through the real binary (2 shards): woken by pushes and
//! adds from other clients on either shard, served in arrival order, timed out by the owning
//! shard, cancelled by a disconnect or CLIENT UNBLOCK, and never blocking anyone else.

mod common;

use common::{key_on, wait_blocked, RawConn, Server};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn push_from_another_shard_wakes_blpop() {
    let server = Server::start(&[]);
    for (waiter_key_shard, pusher) in [(0, 1), (1, 0)] {
        let key = key_on(waiter_key_shard, &format!("q{pusher}-"));
        let mut waiter = server.raw();
        waiter.send(&common::encode(&["BLPOP", &key, "0"]));
        let mut ctl = server.raw();
        wait_blocked(&mut ctl, "blpop", 1);
        let list = String::from_utf8_lossy(&ctl.cmd(&["CLIENT", "LIST"])).into_owned();
        assert!(
            list.contains("flags=b "),
            "blocked client not flagged: {list}"
        );
        // The blocked client does not block its shard: other work goes on.
        assert_eq!(
            ctl.cmd(&["SET", &key_on(waiter_key_shard, "other"), "v"]),
            b"+OK\r\n"
        );
        assert_eq!(ctl.cmd(&["RPUSH", &key, "job-1"]), b":1\r\n");
        let reply = waiter.read_reply();
        let expected = format!("*2\r\n${}\r\n{key}\r\n$5\r\njob-1\r\n", key.len());
        assert_eq!(String::from_utf8_lossy(&reply), expected);
        assert_eq!(ctl.cmd(&["LLEN", &key]), b":0\r\n");
    }
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let server = Server::start(&[]);
    let key = key_on(1, "fifo");
    let mut ctl = server.raw();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let mut w = server.raw();
        w.send(&common::encode(&["BRPOP", &key, "0"]));
        wait_blocked(&mut ctl, "brpop", i + 1);
        waiters.push(w);
    }
    assert_eq!(ctl.cmd(&["LPUSH", &key, "a", "b", "c"]), b":3\r\n");
    // BRPOP pops from the tail: the first waiter gets "a", then "b", then "c".
    for (w, want) in waiters.iter_mut().zip(["a", "b", "c"]) {
        let reply = String::from_utf8_lossy(&w.read_reply()).into_owned();
        assert!(reply.ends_with(&format!("$1\r\n{want}\r\n")), "{reply}");
    }
}

#[test]
fn timeout_answers_null_and_pops_nothing() {
    let server = Server::start(&[]);
    let key = key_on(0, "t");
    let mut c = server.raw();
    let started = Instant::now();
    assert_eq!(c.cmd(&["BLPOP", &key, "0.2"]), b"*-1\r\n");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190),
        "answered after {took:?}"
    );
    eprintln!("BLPOP 0.2 answered after {took:?}");
    assert_eq!(c.cmd(&["HELLO", "3"])[0], b'%');
    assert_eq!(
        c.cmd(&["BLMOVE", &key, "dst", "LEFT", "LEFT", "0.05"]),
        b"_\r\n"
    );
    assert_eq!(
        c.cmd(&["BLPOP", &key, "-1"]),
        b"-ERR timeout is negative\r\n"
    );
}

#[test]
fn disconnected_waiter_leaves_nothing_behind() {
    let server = Server::start(&[]);
    let key = key_on(1, "gone");
    let mut ctl = server.raw();
    {
        let mut w = server.raw();
        w.send(&common::encode(&["BLPOP", &key, "0"]));
        wait_blocked(&mut ctl, "blpop", 1);
    }
    // The connection is gone; wait until the server noticed, then push.
    let deadline = Instant::now() + Duration::from_secs(10);
    while String::from_utf8_lossy(&ctl.cmd(&["CLIENT", "LIST"])).contains("cmd=blpop ") {
        assert!(Instant::now() < deadline, "closed waiter still listed");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ctl.cmd(&["RPUSH", &key, "kept"]), b":1\r\n");
    assert_eq!(
        ctl.cmd(&["LRANGE", &key, "0", "-1"]),
        b"*1\r\n$4\r\nkept\r\n"
    );
}

#[test]
fn client_unblock_timeout_and_error() {
    let server = Server::start(&[]);
    let key = key_on(0, "ub");
    let mut ctl = server.raw();
    for (how, want) in [
        ("TIMEOUT", &b"*-1\r\n"[..]),
        (
            "ERROR",
            &b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"[..],
        ),
    ] {
        let mut w = server.raw();
        let id = String::from_utf8_lossy(&w.cmd(&["CLIENT", "ID"]))
            .trim_start_matches(':')
            .trim()
            .to_string();
        w.send(&common::encode(&["BLPOP", &key, "0"]));
        wait_blocked(&mut ctl, "blpop", 1);
        assert_eq!(ctl.cmd(&["CLIENT", "UNBLOCK", &id, how]), b":1\r\n");
        assert_eq!(w.read_reply(), want);
        // The connection goes on normally afterwards.
        assert_eq!(w.cmd(&["PING"]), b"+PONG\r\n");
    }
    assert_eq!(ctl.cmd(&["CLIENT", "UNBLOCK", "999999"]), b":0\r\n");
}

#[test]
fn pipelined_commands_wait_for_the_blocked_one() {
    let server = Server::start(&[]);
    let key = key_on(1, "pipe");
    let other = key_on(0, "pipe-other");
    let mut w = server.raw();
    let mut batch = common::encode(&["BLPOP", &key, "0"]);
    batch.extend(common::encode(&["SET", &other, "after"]));
    w.send(&batch);
    let mut ctl = server.raw();
    wait_blocked(&mut ctl, "blpop", 1);
    // The SET after the blocked BLPOP has not run yet.
    assert_eq!(ctl.cmd(&["GET", &other]), b"$-1\r\n");
    ctl.cmd(&["RPUSH", &key, "x"]);
    let first = String::from_utf8_lossy(&w.read_reply()).into_owned();
    assert!(first.ends_with("$1\r\nx\r\n"), "{first}");
    assert_eq!(w.read_reply(), b"+OK\r\n");
    assert_eq!(ctl.cmd(&["GET", &other]), b"$5\r\nafter\r\n");
}

#[test]
fn keys_on_both_shards_and_blmove() {
    let server = Server::start(&[]);
    let (a, b) = (key_on(0, "two"), key_on(1, "two"));
    let mut w = server.raw();
    w.send(&common::encode(&["BLPOP", &a, &b, "5"]));
    let mut ctl = server.raw();
    wait_blocked(&mut ctl, "blpop", 1);
    ctl.cmd(&["RPUSH", &b, "from-b"]);
    let reply = String::from_utf8_lossy(&w.read_reply()).into_owned();
    assert!(
        reply.contains(&b) && reply.ends_with("$6\r\nfrom-b\r\n"),
        "{reply}"
    );

    // BLMOVE from a source on one shard to a destination on the other.
    w.send(&common::encode(&["BLMOVE", &a, &b, "LEFT", "RIGHT", "5"]));
    wait_blocked(&mut ctl, "blmove", 1);
    ctl.cmd(&["RPUSH", &a, "moved"]);
    assert_eq!(w.read_reply(), b"$5\r\nmoved\r\n");
    assert_eq!(
        ctl.cmd(&["LRANGE", &b, "0", "-1"]),
        b"*1\r\n$5\r\nmoved\r\n"
    );
    assert_eq!(ctl.cmd(&["LLEN", &a]), b":0\r\n");
}

/// Waits until `n` clients report as blocked in INFO clients (parked or watching).
fn wait_info_blocked(ctl: &mut RawConn, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = String::from_utf8_lossy(&ctl.cmd(&["INFO", "clients"])).into_owned();
        let blocked: usize = info
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if blocked == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "blocked_clients {blocked}, want {n}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A blocking pop over keys on both shards waits on watchers, not by polling: it is woken by
/// a write to either key, times out on time, leaves no watcher when it goes away, and many of
/// them racing with many pushes pop every element exactly once.
#[test]
fn multi_shard_waiters_are_woken_not_polled() {
    let server = Server::start(&[]);
    let (a, b) = (key_on(0, "w"), key_on(1, "w"));
    let mut ctl = server.raw();

    // Timeout: answered with a null array close to the deadline.
    let mut w = server.raw();
    let started = Instant::now();
    assert_eq!(w.cmd(&["BLPOP", &a, &b, "0.3"]), b"*-1\r\n");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // A disconnected waiter leaves nothing behind: the element stays for the next reader.
    let mut gone = server.raw();
    gone.send(&common::encode(&["BLPOP", &a, &b, "0"]));
    wait_info_blocked(&mut ctl, 1);
    drop(gone);
    wait_info_blocked(&mut ctl, 0);
    ctl.cmd(&["RPUSH", &a, "kept"]);
    ctl.cmd(&["RPUSH", &b, "kept"]);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(ctl.cmd(&["LLEN", &a]), b":1\r\n");
    assert_eq!(ctl.cmd(&["LLEN", &b]), b":1\r\n");
    ctl.cmd(&["DEL", &a, &b]);

    // CLIENT UNBLOCK reaches a watching client too.
    let mut u = server.raw();
    let id = String::from_utf8_lossy(&u.cmd(&["CLIENT", "ID"]))
        .trim_start_matches(':')
        .trim()
        .to_string();
    u.send(&common::encode(&["BLPOP", &a, &b, "0"]));
    wait_info_blocked(&mut ctl, 1);
    assert_eq!(ctl.cmd(&["CLIENT", "UNBLOCK", &id, "ERROR"]), b":1\r\n");
    assert!(u.read_reply().starts_with(b"-UNBLOCKED"));
    wait_info_blocked(&mut ctl, 0);

    // Many waiters, many pushes on both shards: every element popped once, nobody stuck.
    const WAITERS: usize = 6;
    const PER_WAITER: usize = 20;
    let addr = server.addr();
    let (ka, kb) = (a.clone(), b.clone());
    let handles: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (ka, kb) = (ka.clone(), kb.clone());
            thread::spawn(move || {
                let mut c = RawConn::connect(addr);
                let mut got = Vec::new();
                for _ in 0..PER_WAITER {
                    let r = c.cmd(&["BLPOP", &ka, &kb, "10"]);
                    assert!(r.starts_with(b"*2\r\n"), "{}", String::from_utf8_lossy(&r));
                    got.push(r);
                }
                got
            })
        })
        .collect();
    for i in 0..WAITERS * PER_WAITER {
        let k = if i % 2 == 0 { &a } else { &b };
        ctl.cmd(&["RPUSH", k, &format!("e{i}")]);
        if i % 10 == 0 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    let mut seen: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("waiter thread"))
        .map(|r| {
            let s = String::from_utf8_lossy(&r).into_owned();
            s.rsplit("\r\n").nth(1).unwrap_or_default().to_string()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), WAITERS * PER_WAITER);
    assert_eq!(ctl.cmd(&["EXISTS", &a, &b]), b":0\r\n");
    wait_info_blocked(&mut ctl, 0);
}

/// Waiters parked on one key and a waiter over keys on both shards are served in the order
/// they came, as Redis serves them.
#[test]
fn cross_shard_and_parked_waiters_keep_arrival_order() {
    let server = Server::start(&[]);
    let (a, b) = (key_on(0, "fifo"), key_on(1, "fifo"));
    let mut ctl = server.raw();
    let mut first = server.raw();
    first.send(&common::encode(&["BLPOP", &a, &b, "5"]));
    wait_info_blocked(&mut ctl, 1);
    let mut second = server.raw();
    second.send(&common::encode(&["BLPOP", &a, "5"]));
    wait_info_blocked(&mut ctl, 2);
    let mut third = server.raw();
    third.send(&common::encode(&["BLPOP", &b, &a, "5"]));
    wait_info_blocked(&mut ctl, 3);
    for (i, who) in [&mut first, &mut second, &mut third]
        .into_iter()
        .enumerate()
    {
        let v = format!("x{i}");
        ctl.cmd(&["RPUSH", &a, &v]);
        let reply = String::from_utf8_lossy(&who.read_reply()).into_owned();
        assert!(
            reply.ends_with(&format!("${}\r\n{v}\r\n", v.len())),
            "waiter {i}: {reply}"
        );
    }
    wait_info_blocked(&mut ctl, 0);
}

#[test]
fn zadd_from_another_shard_wakes_bzpopmin() {
    let server = Server::start(&[]);
    for (waiter_key_shard, adder) in [(0, 1), (1, 0)] {
        let key = key_on(waiter_key_shard, &format!("zq{adder}-"));
        let mut waiter = server.raw();
        waiter.send(&common::encode(&["BZPOPMIN", &key, "0"]));
        let mut ctl = server.raw();
        wait_blocked(&mut ctl, "bzpopmin", 1);
        assert_eq!(ctl.cmd(&["ZADD", &key, "2", "b", "1", "a"]), b":2\r\n");
        let reply = String::from_utf8_lossy(&waiter.read_reply()).into_owned();
        let expected = format!("*3\r\n${}\r\n{key}\r\n$1\r\na\r\n$1\r\n1\r\n", key.len());
        assert_eq!(reply, expected);
        assert_eq!(ctl.cmd(&["ZCARD", &key]), b":1\r\n");
    }
}

#[test]
fn bzpop_waiters_are_served_in_arrival_order() {
    let server = Server::start(&[]);
    let key = key_on(1, "zfifo");
    let mut ctl = server.raw();
    let mut waiters = Vec::new();
    for i in 0..3 {
        let mut w = server.raw();
        w.send(&common::encode(&["BZPOPMAX", &key, "0"]));
        wait_blocked(&mut ctl, "bzpopmax", i + 1);
        waiters.push(w);
    }
    assert_eq!(
        ctl.cmd(&["ZADD", &key, "1", "a", "2", "b", "3", "c"]),
        b":3\r\n"
    );
    // BZPOPMAX pops the highest score: the first waiter gets "c", then "b", then "a".
    for (w, want) in waiters.iter_mut().zip(["c", "b", "a"]) {
        let reply = String::from_utf8_lossy(&w.read_reply()).into_owned();
        assert!(reply.contains(&format!("$1\r\n{want}\r\n")), "{reply}");
    }
    assert_eq!(ctl.cmd(&["EXISTS", &key]), b":0\r\n");
}

#[test]
fn bzmpop_takes_a_count_and_times_out_with_null() {
    let server = Server::start(&[]);
    let key = key_on(0, "zm");
    let mut w = server.raw();
    w.send(&common::encode(&[
        "BZMPOP", "0", "1", &key, "MIN", "COUNT", "2",
    ]));
    let mut ctl = server.raw();
    wait_blocked(&mut ctl, "bzmpop", 1);
    ctl.cmd(&["ZADD", &key, "3", "c", "1", "a", "2", "b"]);
    let want = format!(
        "*2\r\n${}\r\n{key}\r\n*2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n",
        key.len()
    );
    assert_eq!(String::from_utf8_lossy(&w.read_reply()), want);
    let empty = key_on(1, "zt");
    let started = Instant::now();
    assert_eq!(w.cmd(&["BZPOPMIN", &empty, "0.2"]), b"*-1\r\n");
    eprintln!("BZPOPMIN 0.2 answered after {:?}", started.elapsed());
    assert_eq!(w.cmd(&["HELLO", "3"])[0], b'%');
    assert_eq!(w.cmd(&["BZMPOP", "0.05", "1", &empty, "MAX"]), b"_\r\n");
    assert_eq!(w.cmd(&["BZPOPMAX", &empty, "0.05"]), b"_\r\n");
}

#[test]
fn bzpop_over_keys_on_both_shards_and_woken_by_a_store() {
    let server = Server::start(&[]);
    let (a, b) = (key_on(0, "ztwo"), key_on(1, "ztwo"));
    let mut w = server.raw();
    w.send(&common::encode(&["BZPOPMIN", &a, &b, "5"]));
    let mut ctl = server.raw();
    wait_blocked(&mut ctl, "bzpopmin", 1);
    ctl.cmd(&["ZADD", &b, "7", "from-b"]);
    let reply = String::from_utf8_lossy(&w.read_reply()).into_owned();
    assert!(
        reply.contains(&b) && reply.contains("$6\r\nfrom-b\r\n"),
        "{reply}"
    );
    // A ZUNIONSTORE whose destination is waited on serves the waiter (sources on the other
    // shard, so the store is gathered and written back).
    let src = key_on(1, "zsrc");
    ctl.cmd(&["ZADD", &src, "1", "x"]);
    w.send(&common::encode(&["BZPOPMAX", &a, "0"]));
    wait_blocked(&mut ctl, "bzpopmax", 1);
    assert_eq!(ctl.cmd(&["ZUNIONSTORE", &a, "1", &src]), b":1\r\n");
    let reply = String::from_utf8_lossy(&w.read_reply()).into_owned();
    assert!(reply.ends_with("$1\r\nx\r\n$1\r\n1\r\n"), "{reply}");
    assert_eq!(ctl.cmd(&["EXISTS", &a]), b":0\r\n");
}

#[test]
fn a_value_of_another_type_does_not_wake_the_waiter() {
    let server = Server::start(&[]);
    let key = key_on(0, "ztype");
    let mut w = server.raw();
    w.send(&common::encode(&["BZPOPMIN", &key, "0"]));
    let mut ctl = server.raw();
    wait_blocked(&mut ctl, "bzpopmin", 1);
    // A list under the key: the sorted-set waiter stays parked, as in Redis.
    assert_eq!(ctl.cmd(&["RPUSH", &key, "x"]), b":1\r\n");
    assert_eq!(ctl.cmd(&["DEL", &key]), b":1\r\n");
    wait_blocked(&mut ctl, "bzpopmin", 1);
    assert_eq!(ctl.cmd(&["ZADD", &key, "1", "m"]), b":1\r\n");
    let reply = String::from_utf8_lossy(&w.read_reply()).into_owned();
    assert!(reply.ends_with("$1\r\nm\r\n$1\r\n1\r\n"), "{reply}");
}
