//! Pub/Sub through the real binary (2 shards): messages reach subscribers on every shard exactly
//! once and in order, patterns, RESP3 push messages, subscriptions that leave with their
//! connection, the output limit of a subscriber that does not read, and keyspace notifications.
//! Replies on one connection are compared with redis-server in `tests/diff/pubsub.redis`.

mod common;

use common::{encode, escape, RawConn, Server};
use std::time::{Duration, Instant};

fn message(channel: &str, msg: &str) -> Vec<u8> {
    format!(
        "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n{msg}\r\n",
        channel.len(),
        msg.len()
    )
    .into_bytes()
}

fn pmessage(pattern: &str, channel: &str, msg: &str) -> Vec<u8> {
    format!(
        "*4\r\n$8\r\npmessage\r\n${}\r\n{pattern}\r\n${}\r\n{channel}\r\n${}\r\n{msg}\r\n",
        pattern.len(),
        channel.len(),
        msg.len()
    )
    .into_bytes()
}

fn subscribe(server: &Server, cmd: &str, name: &str) -> RawConn {
    let mut c = server.raw();
    let reply = c.cmd(&[cmd, name]);
    assert!(
        reply.starts_with(format!("*3\r\n${}\r\n{}\r\n", cmd.len(), cmd.to_lowercase()).as_bytes()),
        "{cmd} {name}: {}",
        escape(&reply)
    );
    c
}

/// Polls `cond` until it holds (panics after 10 s).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn publish_reaches_every_subscriber_once_and_in_order() {
    let server = Server::start(&[]);
    // Enough connections that both shards have some (connections spread over shards).
    let mut subs: Vec<RawConn> = (0..8)
        .map(|_| subscribe(&server, "SUBSCRIBE", "news"))
        .collect();
    let mut pats: Vec<RawConn> = (0..4)
        .map(|_| subscribe(&server, "PSUBSCRIBE", "ne*"))
        .collect();
    let mut other = subscribe(&server, "SUBSCRIBE", "sport");
    let mut publisher = server.raw();
    for i in 0..50 {
        assert_eq!(
            publisher.cmd(&["PUBLISH", "news", &format!("m{i}")]),
            b":12\r\n",
            "every subscriber and pattern, on every shard, counts once"
        );
    }
    assert_eq!(publisher.cmd(&["PUBLISH", "sport", "goal"]), b":1\r\n");
    assert_eq!(publisher.cmd(&["PUBLISH", "nobody", "x"]), b":0\r\n");
    for s in &mut subs {
        for i in 0..50 {
            assert_eq!(s.read_reply(), message("news", &format!("m{i}")));
        }
    }
    for p in &mut pats {
        for i in 0..50 {
            assert_eq!(p.read_reply(), pmessage("ne*", "news", &format!("m{i}")));
        }
    }
    assert_eq!(other.read_reply(), message("sport", "goal"));
    // Nothing more arrives: each message came exactly once.
    other.set_read_timeout(Duration::from_millis(200));
    assert!(other.try_read_reply().is_err());
    assert_eq!(
        publisher.cmd(&["PUBSUB", "NUMSUB", "news", "sport", "none"]),
        b"*6\r\n$4\r\nnews\r\n:8\r\n$5\r\nsport\r\n:1\r\n$4\r\nnone\r\n:0\r\n"
    );
    assert_eq!(publisher.cmd(&["PUBSUB", "NUMPAT"]), b":1\r\n");
    assert_eq!(
        publisher.cmd(&["PUBSUB", "CHANNELS", "n*"]),
        b"*1\r\n$4\r\nnews\r\n"
    );
}

#[test]
fn subscriptions_leave_with_their_connection() {
    let server = Server::start(&[]);
    let subs: Vec<RawConn> = (0..6)
        .map(|_| subscribe(&server, "SUBSCRIBE", "c"))
        .collect();
    let pat = subscribe(&server, "PSUBSCRIBE", "c*");
    let mut admin = server.raw();
    assert_eq!(
        admin.cmd(&["PUBSUB", "NUMSUB", "c"]),
        b"*2\r\n$1\r\nc\r\n:6\r\n"
    );
    drop(subs);
    drop(pat);
    eventually("the subscriptions to go", || {
        admin.cmd(&["PUBSUB", "NUMSUB", "c"]) == b"*2\r\n$1\r\nc\r\n:0\r\n"
            && admin.cmd(&["PUBSUB", "NUMPAT"]) == b":0\r\n"
    });
    assert_eq!(admin.cmd(&["PUBLISH", "c", "x"]), b":0\r\n");
}

#[test]
fn resp3_subscribers_get_push_messages_and_may_run_commands() {
    let server = Server::start(&[]);
    let mut sub = server.raw();
    let hello = sub.cmd(&["HELLO", "3"]);
    assert!(hello.starts_with(b"%"), "{}", escape(&hello));
    // Push frames are read one by one (`read_reply` runs on to the next plain reply).
    sub.send(&encode(&["SUBSCRIBE", "r"]));
    assert_eq!(
        sub.try_read_frame().unwrap(),
        b">3\r\n$9\r\nsubscribe\r\n$1\r\nr\r\n:1\r\n"
    );
    assert_eq!(sub.cmd(&["GET", "nokey"]), b"_\r\n");
    assert_eq!(sub.cmd(&["PING"]), b"+PONG\r\n");
    let mut publisher = server.raw();
    assert_eq!(publisher.cmd(&["PUBLISH", "r", "hi"]), b":1\r\n");
    assert_eq!(
        sub.try_read_frame().unwrap(),
        b">3\r\n$7\r\nmessage\r\n$1\r\nr\r\n$2\r\nhi\r\n"
    );
    // A RESP3 subscriber may publish to itself: the message, then PUBLISH's count.
    assert_eq!(
        sub.cmd(&["PUBLISH", "r", "self"]),
        b">3\r\n$7\r\nmessage\r\n$1\r\nr\r\n$4\r\nself\r\n:1\r\n"
    );
}

#[test]
fn resp2_subscribed_context_allows_only_pubsub_commands() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.cmd(&["SUBSCRIBE", "a"]);
    assert_eq!(
        c.cmd(&["GET", "x"]),
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n".to_vec()
    );
    assert_eq!(c.cmd(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    assert_eq!(c.cmd(&["RESET"]), b"+RESET\r\n");
    // RESET left the channel.
    assert_eq!(
        c.cmd(&["PUBSUB", "NUMSUB", "a"]),
        b"*2\r\n$1\r\na\r\n:0\r\n"
    );
    assert_eq!(c.cmd(&["GET", "x"]), b"$-1\r\n");
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected_and_others_go_on() {
    let server = Server::start(&[
        "--client-output-buffer-limit",
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 262144 60",
    ]);
    let mut slow = subscribe(&server, "SUBSCRIBE", "flood");
    let mut good = subscribe(&server, "SUBSCRIBE", "flood");
    let mut publisher = server.raw();
    let payload = "x".repeat(8192);
    let n = 2000; // 16 MB in all: far past the socket buffers and the 1 MB limit.
    let mut received = 0;
    for i in 0..n {
        publisher.send(&encode(&["PUBLISH", "flood", &payload]));
        if i % 50 == 49 {
            // The good subscriber keeps up.
            good.set_read_timeout(Duration::from_millis(10));
            while good.try_read_reply().is_ok() {
                received += 1;
            }
        }
    }
    for _ in 0..n {
        publisher.read_reply();
    }
    good.set_read_timeout(Duration::from_secs(10));
    while received < n {
        let f = good.read_reply();
        assert_eq!(f, message("flood", &payload));
        received += 1;
    }
    // The slow one was closed: after what the kernel buffered, the stream ends.
    slow.set_read_timeout(Duration::from_secs(10));
    let mut tail = 0;
    while slow.try_read_reply().is_ok() {
        tail += 1;
    }
    assert!(tail < n, "the slow subscriber got everything ({tail})");
    assert!(
        server.log().contains("output buffer limits"),
        "{}",
        server.log()
    );
    assert_eq!(
        publisher.cmd(&["PUBSUB", "NUMSUB", "flood"]),
        b"*2\r\n$5\r\nflood\r\n:1\r\n"
    );
}

#[test]
fn keyspace_notifications_reach_subscribers() {
    let server = Server::start(&["--notify-keyspace-events", "KEA"]);
    let mut admin = server.raw();
    assert_eq!(
        admin.cmd(&["CONFIG", "GET", "notify-keyspace-events"]),
        b"*2\r\n$22\r\nnotify-keyspace-events\r\n$3\r\nAKE\r\n"
    );
    let mut events = subscribe(&server, "PSUBSCRIBE", "__keyevent@0__:*");
    let mut space = subscribe(&server, "SUBSCRIBE", "__keyspace@0__:k2");
    // Keys on both shards ("k1" and "k2" hash to different ones with 2 shards, or not: either
    // way every event arrives).
    admin.cmd(&["SET", "k1", "v"]);
    admin.cmd(&["LPUSH", "k2", "a"]);
    admin.cmd(&["DEL", "k1", "k2"]);
    admin.cmd(&["SET", "k3", "v", "PX", "1"]);
    std::thread::sleep(Duration::from_millis(20));
    admin.cmd(&["GET", "k3"]);
    let want = [
        ("set", "k1"),
        ("lpush", "k2"),
        ("del", "k1"),
        ("del", "k2"),
        ("set", "k3"),
        ("expire", "k3"),
        ("expired", "k3"),
    ];
    let mut got = Vec::new();
    for _ in 0..want.len() {
        got.push(events.read_reply());
    }
    for (event, key) in want {
        let m = pmessage("__keyevent@0__:*", &format!("__keyevent@0__:{event}"), key);
        assert!(
            got.contains(&m),
            "missing {event} {key}: {:?}",
            got.iter().map(|g| escape(g)).collect::<Vec<_>>()
        );
    }
    assert_eq!(space.read_reply(), message("__keyspace@0__:k2", "lpush"));
    assert_eq!(space.read_reply(), message("__keyspace@0__:k2", "del"));
    // Commands that run on copies (an EXEC block, a RENAME gathered from another shard) raise
    // their events too.
    admin.cmd(&["MULTI"]);
    admin.cmd(&["SET", "t1", "a"]);
    admin.cmd(&["SET", "t2", "b"]);
    admin.cmd(&["EXEC"]);
    admin.cmd(&["RENAME", "t1", "t3"]);
    let want = [
        ("set", "t1"),
        ("set", "t2"),
        ("rename_from", "t1"),
        ("rename_to", "t3"),
    ];
    let got: Vec<Vec<u8>> = (0..want.len()).map(|_| events.read_reply()).collect();
    for (event, key) in want {
        let m = pmessage("__keyevent@0__:*", &format!("__keyevent@0__:{event}"), key);
        assert!(got.contains(&m), "missing {event} {key}");
    }
    assert!(admin
        .cmd(&["CONFIG", "SET", "notify-keyspace-events", "Kq"])
        .starts_with(b"-ERR CONFIG SET failed"));
}

#[test]
fn shard_channels_go_through_their_slots_shard() {
    let server = Server::start(&[]);
    let smessage = |channel: &str, msg: &str| {
        format!(
            "*3\r\n$8\r\nsmessage\r\n${}\r\n{channel}\r\n${}\r\n{msg}\r\n",
            channel.len(),
            msg.len()
        )
        .into_bytes()
    };
    // Channels of both shards' slots, subscribers on both shards.
    let channels = ["s1", "s2", "s3", "s4"];
    let mut subs: Vec<RawConn> = (0..6)
        .map(|_| {
            let mut c = server.raw();
            c.send(&encode(&["SSUBSCRIBE", "s1", "s2", "s3", "s4"]));
            for (i, ch) in channels.iter().enumerate() {
                assert_eq!(
                    c.read_reply(),
                    format!("*3\r\n$10\r\nssubscribe\r\n$2\r\n{ch}\r\n:{}\r\n", i + 1).into_bytes()
                );
            }
            c
        })
        .collect();
    let mut publisher = server.raw();
    for ch in channels {
        for i in 0..20 {
            assert_eq!(
                publisher.cmd(&["SPUBLISH", ch, &format!("m{i}")]),
                b":6\r\n"
            );
        }
    }
    for s in &mut subs {
        for ch in channels {
            for i in 0..20 {
                assert_eq!(s.read_reply(), smessage(ch, &format!("m{i}")));
            }
        }
    }
    assert_eq!(
        publisher.cmd(&["PUBSUB", "SHARDNUMSUB", "s1", "s4", "x"]),
        b"*6\r\n$2\r\ns1\r\n:6\r\n$2\r\ns4\r\n:6\r\n$1\r\nx\r\n:0\r\n"
    );
    let names = publisher.cmd(&["PUBSUB", "SHARDCHANNELS"]);
    assert!(names.starts_with(b"*4\r\n"), "{}", escape(&names));
    // SUNSUBSCRIBE of one channel, then the connections go: nothing is left anywhere.
    assert_eq!(
        subs[0].cmd(&["SUNSUBSCRIBE", "s2"]),
        b"*3\r\n$12\r\nsunsubscribe\r\n$2\r\ns2\r\n:3\r\n"
    );
    assert_eq!(publisher.cmd(&["SPUBLISH", "s2", "x"]), b":5\r\n");
    drop(subs);
    eventually("the shard subscriptions to go", || {
        publisher.cmd(&["PUBSUB", "SHARDNUMSUB", "s1", "s2", "s3", "s4"])
            == b"*8\r\n$2\r\ns1\r\n:0\r\n$2\r\ns2\r\n:0\r\n$2\r\ns3\r\n:0\r\n$2\r\ns4\r\n:0\r\n"
    });
    assert_eq!(publisher.cmd(&["PUBSUB", "SHARDCHANNELS"]), b"*0\r\n");
}

#[test]
fn a_subscriber_over_the_soft_limit_for_its_seconds_is_disconnected() {
    let server = Server::start(&[
        "--client-output-buffer-limit",
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 0 65536 1",
    ]);
    let mut slow = subscribe(&server, "SUBSCRIBE", "drip");
    let mut publisher = server.raw();
    let payload = "y".repeat(4096);
    // Keep the slow subscriber over 64 KiB (past the socket buffers) until it is closed, which
    // must happen once it has been over for a second (the limit is checked as output is added).
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        for _ in 0..100 {
            publisher.send(&encode(&["PUBLISH", "drip", &payload]));
        }
        let mut receivers = Vec::new();
        for _ in 0..100 {
            receivers.push(publisher.read_reply());
        }
        if receivers.last().map(|r| r.as_slice()) == Some(b":0\r\n") {
            break;
        }
        assert!(Instant::now() < end, "the slow subscriber was never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    slow.set_read_timeout(Duration::from_secs(10));
    while slow.try_read_reply().is_ok() {}
    assert!(
        server.log().contains("output buffer limits"),
        "{}",
        server.log()
    );
}

#[test]
fn active_expiry_publishes_expired_events() {
    let server = Server::start(&["--notify-keyspace-events", "Ex"]);
    let mut events = subscribe(&server, "SUBSCRIBE", "__keyevent@0__:expired");
    let mut admin = server.raw();
    admin.cmd(&["SET", "soon", "v", "PX", "50"]);
    // Nobody touches the key: the active expiry cycle deletes it and the event goes out.
    events.set_read_timeout(Duration::from_secs(5));
    assert_eq!(
        events.read_reply(),
        message("__keyevent@0__:expired", "soon")
    );
}
