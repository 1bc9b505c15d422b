//! Replication through the real binaries: redis-server 7 replicates from shardis (2 shards),
//! with writes of every type going on during the full sync, and resumes with a partial sync
//! after its link breaks; at every step both hold the same data (every key's type, contents
//! and deadline, read through commands).

mod common;

use common::{encode, RawConn, RedisServer, Server};
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn text(r: &[u8]) -> String {
    String::from_utf8_lossy(r).into_owned()
}

fn info_field(c: &mut RawConn, section: &str, name: &str) -> Option<String> {
    let info = text(&c.cmd(&["INFO", section]));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One random write of some type, over a small key space so keys get overwritten, deleted and
/// expired; some cross shards (MSET, RENAME, a transaction, a script).
fn random_write(rng: &mut rand::rngs::StdRng, i: u64) -> Vec<String> {
    let k = |rng: &mut rand::rngs::StdRng, t: &str| format!("{t}:{}", rng.gen_range(0..60));
    let v = i.to_string();
    let w = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    match rng.gen_range(0..18) {
        0 => w(&["SET", &k(rng, "s"), &v]),
        1 => w(&["INCRBY", &k(rng, "n"), "3"]),
        2 => w(&["APPEND", &k(rng, "s"), "x"]),
        3 => w(&["RPUSH", &k(rng, "l"), &v, "b"]),
        4 => w(&["LPOP", &k(rng, "l")]),
        5 => w(&["HSET", &k(rng, "h"), &format!("f{}", i % 7), &v]),
        6 => w(&["SADD", &k(rng, "t"), &format!("m{}", i % 13)]),
        7 => w(&["SREM", &k(rng, "t"), &format!("m{}", i % 13)]),
        8 => w(&[
            "ZADD",
            &k(rng, "z"),
            &format!("{}", i % 17),
            &format!("m{}", i % 11),
        ]),
        9 => w(&["XADD", &k(rng, "x"), "MAXLEN", "~", "20", "*", "f", &v]),
        10 => w(&["PFADD", &k(rng, "p"), &v]),
        11 => w(&["SETBIT", &k(rng, "b"), &format!("{}", i % 200), "1"]),
        12 => w(&["EXPIRE", &k(rng, "s"), "100"]),
        13 => w(&["SET", &k(rng, "e"), &v, "PX", "30"]),
        14 => w(&["DEL", &k(rng, "s"), &k(rng, "l")]),
        15 => w(&[
            "MSET",
            &k(rng, "s"),
            &v,
            &k(rng, "s"),
            &v,
            &k(rng, "n"),
            "7",
        ]),
        16 => w(&[
            "EVAL",
            "redis.call('incr', KEYS[1]) return redis.call('hset', KEYS[2], 'f', ARGV[1])",
            "2",
            "{q}n",
            "{q}h",
            &v,
        ]),
        _ => w(&["SPOP", &k(rng, "t")]),
    }
}

/// Writes until `stop`, pipelined a few at a time, with a MULTI over both shards now and then.
fn writer(addr: std::net::SocketAddr, seed: u64, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    let mut c = RawConn::connect(addr);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        let mut n = 0;
        if i.is_multiple_of(50) {
            for cmd in [
                vec!["MULTI".to_string()],
                random_write(&mut rng, i),
                random_write(&mut rng, i + 1),
                vec!["EXEC".to_string()],
            ] {
                batch.extend(encode(&cmd));
                n += 1;
            }
        }
        for j in 0..8 {
            batch.extend(encode(&random_write(&mut rng, i + j)));
            n += 1;
        }
        c.send(&batch);
        for _ in 0..n {
            c.read_reply();
        }
        i += 8;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Waits until the replica has applied everything the master has sent.
fn caught_up(master: &mut RawConn, replica: &mut RawConn) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let m = info_field(master, "replication", "master_repl_offset");
        let r = info_field(replica, "replication", "slave_repl_offset");
        if m.is_some() && m == r {
            return;
        }
        assert!(
            Instant::now() < end,
            "the replica did not catch up in 30 s: master at {m:?}, replica at {r:?}\n{}\n{}",
            text(&master.cmd(&["INFO", "replication"])),
            text(&replica.cmd(&["INFO", "replication"]))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn same_data(master: &mut RawConn, replica: &mut RawConn, what: &str) {
    caught_up(master, replica);
    let want = common::data::dataset(master);
    assert!(!want.is_empty());
    // A key whose deadline passes between the two reads goes on the master first: read the
    // master again if the first comparison fails that way.
    let got = common::data::dataset(replica);
    if want != got {
        caught_up(master, replica);
        let want = common::data::dataset(master);
        common::data::assert_same(&want, &common::data::dataset(replica), what);
    }
}

#[test]
fn redis_server_replicates_from_shardis() {
    let master = Server::start(&[]);
    let mut m = master.raw();
    // Data of every type before the replica comes.
    preload(&mut m, 3000);
    m.cmd(&["SELECT", "5"]);
    m.cmd(&["SET", "in-db-5", "v"]);
    m.cmd(&["SELECT", "0"]);

    // Writes go on while the replica synchronises.
    let mut replica = None;
    writes_during(master.addr(), || {
        let port = master.port().to_string();
        let s = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        wait_link_up(&mut s.raw(), "full sync", &|| {
            format!(
                "replica's log:\n{}\nmaster's log:\n{}",
                s.log(),
                master.log()
            )
        });
        replica = Some(s);
    });
    let replica = replica.unwrap();
    let mut r = replica.raw();
    same_data(&mut m, &mut r, "after the full sync");
    // ROLE and INFO on the master see the replica, acknowledged up to the master's offset.
    wait_for(
        "the replica's acknowledgement",
        Duration::from_secs(10),
        || {
            let role = text(&m.cmd(&["ROLE"]));
            let offset =
                info_field(&mut m, "replication", "master_repl_offset").unwrap_or_default();
            role.starts_with("*3\r\n$6\r\nmaster\r\n")
                && role.contains(&format!("${}\r\n{offset}\r\n", offset.len()))
        },
    );
    let slave0 = info_field(&mut m, "replication", "slave0").unwrap_or_default();
    assert!(slave0.contains("state=online"), "{slave0}");
    assert_eq!(
        info_field(&mut m, "replication", "connected_slaves").as_deref(),
        Some("1")
    );

    // WAIT counts the replicas that acknowledged this connection's writes.
    m.cmd(&["MSET", "{w}1", "1", "{x}2", "2", "{y}3", "3"]);
    assert_eq!(m.cmd(&["WAIT", "1", "5000"]), b":1\r\n");
    let t0 = Instant::now();
    assert_eq!(m.cmd(&["WAIT", "2", "300"]), b":1\r\n");
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(m.cmd(&["WAIT", "0", "0"]), b":1\r\n");
    assert_eq!(text(&r.cmd(&["GET", "{x}2"])), "$1\r\n2\r\n");

    // The link breaks; the replica comes back with PSYNC and continues from the backlog.
    assert!(text(&r.cmd(&["CLIENT", "KILL", "TYPE", "master"])).starts_with(':'));
    m.cmd(&["SET", "after-break", "1"]);
    m.cmd(&["MSET", "{a}1", "1", "{b}2", "2", "{c}3", "3"]);
    wait_for("the partial resync", Duration::from_secs(30), || {
        replica
            .log()
            .contains("Successful partial resynchronization with master")
    });
    same_data(&mut m, &mut r, "after the partial resync");
    assert!(master.log().contains("Partial resynchronization request"));

    // CLIENT LIST shows the replica (its link is a thread of the hub, not a connection of a
    // shard); the master drops it by its id: the replica comes back the same way.
    let listed = text(&m.cmd(&["CLIENT", "LIST", "TYPE", "replica"]));
    assert!(
        listed.contains(" flags=S ") && listed.contains(" cmd=replconf "),
        "{listed}"
    );
    let id = listed
        .split_whitespace()
        .find_map(|f| f.strip_prefix("id="))
        .expect("an id")
        .to_string();
    assert!(text(&m.cmd(&["CLIENT", "LIST"])).contains(&format!("id={id} ")));
    assert_eq!(m.cmd(&["CLIENT", "KILL", "ID", &id]), b":1\r\n");
    m.cmd(&["SET", "after-kill", "1"]);
    wait_for("the second partial resync", Duration::from_secs(30), || {
        stat(&mut m, "sync_partial_ok") == 2
    });
    same_data(&mut m, &mut r, "after CLIENT KILL TYPE replica");
}

/// Writes to `master` from two threads while `attach` runs, a while more, then stops.
fn writes_during(master: std::net::SocketAddr, attach: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || writer(master, 200 + t, stop, count))
        })
        .collect();
    attach();
    let during = count.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        count.load(Ordering::Relaxed) > during,
        "no writes after the sync"
    );
}

fn preload(c: &mut RawConn, n: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend(encode(&random_write(&mut rng, i)));
    }
    c.send(&batch);
    for _ in 0..n {
        c.read_reply();
    }
}

fn wait_link_up(r: &mut RawConn, what: &str, log: &dyn Fn() -> String) {
    let end = Instant::now() + Duration::from_secs(30);
    while info_field(r, "replication", "master_link_status").as_deref() != Some("up") {
        assert!(
            Instant::now() < end,
            "{what}: link not up in 30 s\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shardis_replicates_from_redis_server() {
    let master = RedisServer::start();
    let mut m = master.raw();
    preload(&mut m, 2000);
    m.cmd(&["SELECT", "3"]);
    m.cmd(&["SET", "in-db-3", "v"]);
    m.cmd(&["SELECT", "0"]);
    let mut replica = None;
    writes_during(master.addr(), || {
        let port = master.port().to_string();
        let s = Server::start(&["--replicaof", &format!("127.0.0.1 {port}")]);
        let mut r = s.raw();
        wait_link_up(&mut r, "full sync", &|| s.log());
        replica = Some(s);
    });
    let replica = replica.unwrap();
    let mut r = replica.raw();
    same_data(&mut m, &mut r, "after the full sync");
    // A read-only replica refuses clients' writes (not its master's).
    assert_eq!(
        text(&r.cmd(&["SET", "x", "1"])),
        "-READONLY You can't write against a read only replica.\r\n"
    );
    let role = text(&r.cmd(&["ROLE"]));
    assert!(role.starts_with("*5\r\n$5\r\nslave\r\n"), "{role}");
    assert!(role.contains("$9\r\nconnected\r\n"), "{role}");
    // WAIT on the master counts shardis once it acknowledged.
    m.cmd(&["SET", "acked", "1"]);
    assert_eq!(m.cmd(&["WAIT", "1", "5000"]), b":1\r\n");

    // The link breaks: shardis resumes with a partial resync.
    assert!(text(&m.cmd(&["CLIENT", "KILL", "TYPE", "replica"])).starts_with(':'));
    m.cmd(&["MSET", "after-break", "1", "{o}1", "2"]);
    wait_for("the partial resync", Duration::from_secs(30), || {
        replica
            .log()
            .contains("Successful partial resynchronization with master")
    });
    same_data(&mut m, &mut r, "after the partial resync");

    // Promoted, it takes writes again.
    assert_eq!(r.cmd(&["REPLICAOF", "NO", "ONE"]), b"+OK\r\n");
    assert_eq!(r.cmd(&["SET", "x", "1"]), b"+OK\r\n");
    assert!(text(&r.cmd(&["ROLE"])).starts_with("*3\r\n$6\r\nmaster\r\n"));
}

#[test]
fn shardis_replicates_from_shardis() {
    let master = Server::start(&[]);
    let mut m = master.raw();
    preload(&mut m, 2000);
    let mut replica = None;
    writes_during(master.addr(), || {
        let s = Server::start(&[]);
        let mut r = s.raw();
        let port = master.port().to_string();
        assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
        assert_eq!(
            r.cmd(&["REPLICAOF", "127.0.0.1", &port]),
            b"+OK Already connected to specified master\r\n"
        );
        wait_link_up(&mut r, "full sync", &|| s.log());
        replica = Some(s);
    });
    let replica = replica.unwrap();
    let mut r = replica.raw();
    same_data(&mut m, &mut r, "shardis from shardis");
    assert_eq!(m.cmd(&["WAIT", "1", "5000"]), b":1\r\n");
    // CLIENT LIST shows the link to the master; dropping it, the replica reconnects and
    // resumes.
    let listed = text(&r.cmd(&["CLIENT", "LIST", "TYPE", "master"]));
    assert!(
        listed.contains(" flags=M ")
            && listed.contains(&format!(" addr=127.0.0.1:{} ", master.port())),
        "{listed}"
    );
    assert_eq!(r.cmd(&["CLIENT", "KILL", "TYPE", "master"]), b":1\r\n");
    m.cmd(&["SET", "after-kill", "1"]);
    wait_for("the partial resync", Duration::from_secs(30), || {
        replica
            .log()
            .contains("Successful partial resynchronization with master")
    });
    same_data(&mut m, &mut r, "after CLIENT KILL TYPE master");
}

#[test]
fn replication_settings() {
    // A master that wants one replica for writes, and sends its payload length-prefixed.
    let master = Server::start(&[
        "--min-replicas-to-write",
        "1",
        "--repl-diskless-sync",
        "no",
        "--repl-backlog-size",
        "64kb",
    ]);
    let mut m = master.raw();
    assert_eq!(
        text(&m.cmd(&["SET", "k", "1"])),
        "-NOREPLICAS Not enough good replicas to write.\r\n"
    );
    assert_eq!(text(&m.cmd(&["GET", "k"])), "$-1\r\n");
    assert_eq!(
        info_field(&mut m, "replication", "repl_backlog_size").as_deref(),
        Some("65536")
    );
    let port = master.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let mut r = replica.raw();
    wait_link_up(&mut r, "length-prefixed sync", &|| replica.log());
    assert!(
        replica.log().contains("receiving") && !replica.log().contains("EOF"),
        "{}",
        replica.log()
    );
    wait_for("a good replica", Duration::from_secs(10), || {
        m.cmd(&["SET", "k", "2"]) == b"+OK\r\n"
    });
    same_data(&mut m, &mut r, "after a length-prefixed sync");

    // A replica whose master is unreachable: with replica-serve-stale-data no, only
    // commands marked stale are answered.
    let dead = common::free_port().to_string();
    let stale = Server::start(&[
        "--replicaof",
        &format!("127.0.0.1 {dead}"),
        "--replica-serve-stale-data",
        "no",
    ]);
    let mut s = stale.raw();
    assert_eq!(
        text(&s.cmd(&["GET", "k"])),
        "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n"
    );
    assert_eq!(
        info_field(&mut s, "replication", "master_link_status").as_deref(),
        Some("down")
    );
    assert_eq!(
        s.cmd(&["CONFIG", "SET", "replica-serve-stale-data", "yes"]),
        b"+OK\r\n"
    );
    assert_eq!(text(&s.cmd(&["GET", "k"])), "$-1\r\n");
}

/// What a replica announces (priority for Sentinel, address and port for its master's INFO),
/// under the new names and the old `slave-` ones; a master alone for `repl-backlog-ttl`
/// frees its backlog and takes a new id.
#[test]
fn replica_announcements_and_backlog_ttl() {
    let master = Server::start(&["--repl-backlog-ttl", "1"]);
    let mut m = master.raw();
    let port = master.port().to_string();
    let replica = Server::start(&[
        "--slave-priority",
        "7",
        "--replica-announce-ip",
        "10.9.8.7",
        "--replica-announce-port",
        "4242",
        "--replica-announced",
        "no",
    ]);
    let mut r = replica.raw();
    assert_eq!(
        text(&r.cmd(&["CONFIG", "GET", "replica-priority"])),
        "*2\r\n$16\r\nreplica-priority\r\n$1\r\n7\r\n"
    );
    assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    wait_link_up(&mut r, "announcing replica", &|| replica.log());
    assert_eq!(
        info_field(&mut r, "replication", "slave_priority").as_deref(),
        Some("7")
    );
    assert_eq!(
        info_field(&mut r, "replication", "replica_announced").as_deref(),
        Some("0")
    );
    wait_for(
        "the master to list the replica",
        Duration::from_secs(10),
        || {
            info_field(&mut m, "replication", "slave0")
                .is_some_and(|l| l.starts_with("ip=10.9.8.7,port=4242,state=online"))
        },
    );
    let id = replid(&mut m);
    assert_eq!(
        info_field(&mut m, "replication", "repl_backlog_active").as_deref(),
        Some("1")
    );
    drop(r);
    drop(replica);
    wait_for("the backlog to be freed", Duration::from_secs(10), || {
        info_field(&mut m, "replication", "repl_backlog_active").as_deref() == Some("0")
    });
    assert_ne!(replid(&mut m), id);
}

/// Reads a replication stream as a replica would, after the payload: the commands, as argument
/// lists, until `count` of them came (PINGs and GETACKs left out).
fn stream_commands(c: &mut RawConn, count: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    while out.len() < count {
        let f = c.read_reply();
        let (_, args) = common::split_aggregate(&f);
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                let t = text(a);
                t.split("\r\n").nth(1).unwrap_or("").to_string()
            })
            .collect();
        if args.first().is_some_and(|a| a == "PING" || a == "REPLCONF") {
            continue;
        }
        out.push(args);
    }
    out
}

#[test]
fn writes_over_several_shards_reach_replicas_whole() {
    let master = Server::start(&[]);
    let mut m = master.raw();
    // A raw replica: PSYNC, the payload, then the stream.
    let mut rep = master.raw();
    assert_eq!(rep.cmd(&["REPLCONF", "capa", "eof"]), b"+OK\r\n");
    rep.send(&encode(&["PSYNC", "?", "-1"]));
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    use std::io::Read;
    // +FULLRESYNC <id> <offset>\r\n$EOF:<mark>\r\n<payload><mark>
    let mut lines = Vec::new();
    while lines.len() < 2 {
        rep.stream().read_exact(&mut byte).unwrap();
        line.push(byte[0]);
        if line.ends_with(b"\r\n") {
            lines.push(text(&line[..line.len() - 2]));
            line.clear();
        }
    }
    assert!(lines[0].starts_with("+FULLRESYNC "), "{lines:?}");
    let mark = lines[1]
        .strip_prefix("$EOF:")
        .expect("an EOF-marked payload")
        .to_string();
    let mut payload = Vec::new();
    while !payload.ends_with(mark.as_bytes()) {
        rep.stream().read_exact(&mut byte).unwrap();
        payload.push(byte[0]);
    }
    assert!(payload.starts_with(b"REDIS0010"));
    rep.send(&encode(&["REPLCONF", "ACK", "0"]));

    let (a, b) = (common::key_on(0, "k"), common::key_on(1, "k"));
    m.cmd(&["MSET", &a, "1", &b, "2"]);
    m.cmd(&["MULTI"]);
    m.cmd(&["INCR", &a]);
    m.cmd(&["INCR", &b]);
    m.cmd(&["EXEC"]);
    m.cmd(&["SET", &a, "3"]);
    // Up to the last write, whatever the number of SELECTs.
    let mut cmds: Vec<Vec<String>> = Vec::new();
    while cmds.last().is_none_or(|c| c[0] != "SET") {
        cmds.extend(stream_commands(&mut rep, 1));
    }
    let names: Vec<&str> = cmds
        .iter()
        .map(|c| c[0].as_str())
        .filter(|n| *n != "SELECT")
        .collect();
    // Each write over both shards is one MULTI … EXEC holding both shards' parts (a
    // transaction run on copies is logged by its effect: the keys it wrote, restored).
    assert_eq!(
        names,
        ["MULTI", "MSET", "MSET", "EXEC", "MULTI", "RESTORE", "RESTORE", "EXEC", "SET"],
        "{cmds:?}"
    );
    let keys_in = |from: usize| -> Vec<String> {
        cmds.iter()
            .skip(from)
            .take_while(|c| c[0] != "EXEC")
            .filter(|c| c[0] != "MULTI" && c[0] != "SELECT")
            .map(|c| c[1].clone())
            .collect()
    };
    let mut first = keys_in(0);
    first.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(first, want, "{cmds:?}");
}

fn replid(c: &mut RawConn) -> String {
    info_field(c, "replication", "master_replid").unwrap_or_default()
}

fn stat(c: &mut RawConn, name: &str) -> i64 {
    info_field(c, "stats", name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// Chained replicas: a shardis replica passes its master's stream on byte for byte, so a
/// redis-server and a shardis below it hold the same data under the top master's replication
/// id and offsets; both attach (full sync from the middle replica's snapshot) while writes go
/// on at the top.
#[test]
fn chained_replicas_take_the_masters_stream() {
    let master = Server::start(&[]);
    let mut m = master.raw();
    preload(&mut m, 1500);
    let middle = Server::start(&[]);
    let mut a = middle.raw();
    let mport = master.port().to_string();
    assert_eq!(a.cmd(&["REPLICAOF", "127.0.0.1", &mport]), b"+OK\r\n");
    wait_link_up(&mut a, "middle replica", &|| middle.log());
    let (mut below_redis, mut below_shardis) = (None, None);
    writes_during(master.addr(), || {
        let aport = middle.port().to_string();
        let r = RedisServer::start();
        let mut rc = r.0.raw();
        assert_eq!(rc.cmd(&["REPLICAOF", "127.0.0.1", &aport]), b"+OK\r\n");
        let s = Server::start(&[]);
        let mut sc = s.raw();
        assert_eq!(sc.cmd(&["REPLICAOF", "127.0.0.1", &aport]), b"+OK\r\n");
        wait_link_up(&mut rc, "redis-server below a shardis replica", &|| {
            middle.log()
        });
        wait_link_up(&mut sc, "shardis below a shardis replica", &|| s.log());
        below_redis = Some(r);
        below_shardis = Some(s);
    });
    let (r, s) = (below_redis.unwrap(), below_shardis.unwrap());
    let (mut rc, mut sc) = (r.0.raw(), s.raw());
    same_data(&mut m, &mut a, "the middle replica");
    same_data(&mut a, &mut rc, "redis-server below the middle replica");
    same_data(&mut a, &mut sc, "shardis below the middle replica");
    // One history: the same id and offset everywhere.
    let id = replid(&mut m);
    for (c, what) in [
        (&mut a, "middle"),
        (&mut rc, "redis-server"),
        (&mut sc, "shardis"),
    ] {
        assert_eq!(replid(c), id, "{what}: replication id");
    }
    // (The master's PINGs move its offset now and then: read until all three agree.)
    wait_for("one offset at every level", Duration::from_secs(10), || {
        let top = info_field(&mut m, "replication", "master_repl_offset");
        info_field(&mut rc, "replication", "slave_repl_offset") == top
            && info_field(&mut sc, "replication", "slave_repl_offset") == top
    });
    assert_eq!(
        a.cmd(&["WAIT", "1", "0"]),
        b"-ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.\r\n"
    );
}

/// psync2 after a failover: the master goes; one shardis replica is promoted and keeps the old
/// id as replid2; the other replicas (shardis and redis-server) follow it with a partial
/// resync, and writes on the new master reach them.
#[test]
fn replicas_follow_a_promoted_replica_with_a_partial_resync() {
    let master = Server::start(&[]);
    let mut m = master.raw();
    preload(&mut m, 1500);
    let mport = master.port().to_string();
    let a = Server::start(&[]);
    let b = Server::start(&[]);
    let r = RedisServer::start();
    let (mut ac, mut bc, mut rc) = (a.raw(), b.raw(), r.0.raw());
    for (c, what) in [(&mut ac, "a"), (&mut bc, "b"), (&mut rc, "redis-server")] {
        assert_eq!(c.cmd(&["REPLICAOF", "127.0.0.1", &mport]), b"+OK\r\n");
        wait_link_up(c, what, &|| master.log());
    }
    writes_during(master.addr(), || {});
    assert_eq!(m.cmd(&["WAIT", "3", "10000"]), b":3\r\n");
    let old_id = replid(&mut m);
    let before = common::data::dataset(&mut m);
    drop(master);
    assert_eq!(ac.cmd(&["REPLICAOF", "NO", "ONE"]), b"+OK\r\n");
    assert_eq!(
        info_field(&mut ac, "replication", "role").as_deref(),
        Some("master")
    );
    assert_eq!(
        info_field(&mut ac, "replication", "master_replid2").as_deref(),
        Some(old_id.as_str())
    );
    assert_ne!(replid(&mut ac), old_id);
    // Writes are taken at once.
    assert_eq!(ac.cmd(&["SET", "after", "promotion"]), b"+OK\r\n");
    let aport = a.port().to_string();
    for (c, what) in [(&mut bc, "b"), (&mut rc, "redis-server")] {
        assert_eq!(c.cmd(&["REPLICAOF", "127.0.0.1", &aport]), b"+OK\r\n");
        wait_link_up(c, what, &|| a.log());
    }
    assert_eq!(stat(&mut ac, "sync_partial_ok"), 2, "{}", a.log());
    assert_eq!(stat(&mut ac, "sync_full"), 0, "{}", a.log());
    assert_eq!(
        info_field(&mut bc, "replication", "master_replid2").as_deref(),
        Some(old_id.as_str())
    );
    writes_during(a.addr(), || {});
    same_data(&mut ac, &mut bc, "shardis after the failover");
    same_data(&mut ac, &mut rc, "redis-server after the failover");
    let now = common::data::dataset(&mut ac);
    assert!(now.len() >= before.len() / 2 && now.contains_key(&(0, b"after".to_vec())));
    assert_eq!(ac.cmd(&["WAIT", "2", "5000"]), b":2\r\n");
}

/// The same failover among redis-servers with a shardis replica: promoted redis-server keeps
/// the old id, and shardis continues from it with a partial resync.
#[test]
fn shardis_follows_a_promoted_redis_server_with_a_partial_resync() {
    let master = RedisServer::start();
    let mut m = master.0.raw();
    preload(&mut m, 1000);
    let mport = master.0.port().to_string();
    let r = RedisServer::start();
    let s = Server::start(&[]);
    let (mut rc, mut sc) = (r.0.raw(), s.raw());
    for (c, what) in [(&mut rc, "redis-server"), (&mut sc, "shardis")] {
        assert_eq!(c.cmd(&["REPLICAOF", "127.0.0.1", &mport]), b"+OK\r\n");
        wait_link_up(c, what, &|| s.log());
    }
    writes_during(master.0.addr(), || {});
    assert_eq!(m.cmd(&["WAIT", "2", "10000"]), b":2\r\n");
    drop(master);
    assert_eq!(rc.cmd(&["REPLICAOF", "NO", "ONE"]), b"+OK\r\n");
    let rport = r.0.port().to_string();
    assert_eq!(sc.cmd(&["REPLICAOF", "127.0.0.1", &rport]), b"+OK\r\n");
    wait_link_up(&mut sc, "shardis after the failover", &|| s.log());
    assert_eq!(stat(&mut rc, "sync_partial_ok"), 1, "{}", s.log());
    writes_during(r.0.addr(), || {});
    same_data(&mut rc, &mut sc, "shardis after a redis-server failover");
}

/// Scripts on a read-only replica: a write inside one fails with Redis's READONLY error, a
/// script that declares it may write does not start, and read-only ones run; the replies are
/// redis-server's, byte for byte.
#[test]
fn scripts_on_a_read_only_replica_answer_as_redis() {
    let calls: &[&[&str]] = &[
        &["EVAL", "return redis.call('get','a')", "0"],
        &["EVAL", "redis.call('set','a','1'); return 1", "0"],
        &["EVAL", "#!lua\nredis.call('set','a','1'); return 1", "0"],
        &[
            "EVAL",
            "#!lua flags=no-writes\nreturn redis.call('get','a')",
            "0",
        ],
        &["EVAL", "return redis.pcall('set','a','1')", "0"],
        &["EVAL_RO", "return redis.call('get','a')", "0"],
        &["EVAL", "return redis.call('incr',KEYS[1])", "1", "{a}x"],
        &["FCALL", "w", "0"],
        &["FCALL", "r", "0"],
        &["SET", "a", "1"],
    ];
    let lib = "#!lua name=l\nredis.register_function('w', function() return redis.call('set','a','2') end)\nredis.register_function{function_name='r', callback=function() return redis.call('get','a') end, flags={'no-writes'}}";
    let mut replies = Vec::new();
    for redis in [true, false] {
        let (master, replica) = if redis {
            (RedisServer::start().0, RedisServer::start().0)
        } else {
            (Server::start(&[]), Server::start(&[]))
        };
        let mut m = master.raw();
        assert_eq!(m.cmd(&["SET", "a", "0"]), b"+OK\r\n");
        assert_eq!(m.cmd(&["FUNCTION", "LOAD", lib]), b"$1\r\nl\r\n");
        let mut r = replica.raw();
        let port = master.port().to_string();
        assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
        wait_link_up(&mut r, "replica", &|| replica.log());
        caught_up(&mut m, &mut r);
        let got: Vec<String> = calls.iter().map(|c| text(&r.cmd(c))).collect();
        assert_eq!(text(&r.cmd(&["GET", "a"])), "$1\r\n0\r\n");
        replies.push(got);
    }
    assert_eq!(replies[1], replies[0]);
}

/// `repl-diskless-sync-delay`: replicas that ask within it share one cut and one payload
/// (streamed EOF-marked to a redis-server and a shardis, and length-prefixed from disk to
/// an old-style SYNC), and all hold the master's data.
#[test]
fn replicas_within_the_sync_delay_share_one_payload() {
    let master = Server::start(&["--repl-diskless-sync-delay", "1"]);
    let mut m = master.raw();
    preload(&mut m, 1000);
    let port = master.port().to_string();
    let r = RedisServer::start();
    let s = Server::start(&[]);
    let (mut rc, mut sc) = (r.0.raw(), s.raw());
    let asked = Instant::now();
    assert_eq!(rc.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    assert_eq!(sc.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    // An old-style replica (SYNC, no EOF capability) gets the same payload from disk,
    // length-prefixed.
    let mut old = master.raw();
    old.send(&encode(&["SYNC"]));
    wait_link_up(&mut rc, "redis-server", &|| master.log());
    wait_link_up(&mut sc, "shardis", &|| master.log());
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "the delay was not waited"
    );
    let mut got = Vec::new();
    let payload = loop {
        let mut chunk = [0u8; 65536];
        let n = std::io::Read::read(old.stream(), &mut chunk).unwrap();
        assert!(n > 0, "the master closed an old-style replica's link");
        got.extend_from_slice(&chunk[..n]);
        if let Some(nl) = got.windows(2).position(|w| w == b"\r\n") {
            let len: usize = text(&got[1..nl]).parse().unwrap();
            if got.len() >= nl + 2 + len {
                break got[nl + 2..nl + 2 + len].to_vec();
            }
        }
    };
    assert!(
        payload.starts_with(b"REDIS") && got[0] == b'$',
        "{:?}",
        &got[..20]
    );
    let log = master.log();
    assert_eq!(log.matches("waits").count(), 3, "{log}");
    assert_eq!(stat(&mut m, "sync_full"), 3);
    let cuts: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains("waits"))
        .filter_map(|l| l.rsplit("(cut ").next())
        .collect();
    assert_eq!(cuts.len(), 1, "one cut for both: {log}");
    same_data(&mut m, &mut rc, "redis-server after a shared payload");
    same_data(&mut m, &mut sc, "shardis after a shared payload");
    // With repl-diskless-sync-max-replicas reached, the sync does not wait out the delay.
    for (k, v) in [
        ("repl-diskless-sync-delay", "60"),
        ("repl-diskless-sync-max-replicas", "1"),
    ] {
        assert_eq!(m.cmd(&["CONFIG", "SET", k, v]), b"+OK\r\n");
    }
    let late = RedisServer::start();
    let mut lc = late.0.raw();
    let asked = Instant::now();
    assert_eq!(lc.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    wait_link_up(&mut lc, "a replica with max-replicas reached", &|| {
        master.log()
    });
    assert!(asked.elapsed() < Duration::from_secs(20));
}

/// INFO's `master_sync_*` fields while a payload comes: a fake master answers the handshake,
/// announces 1000 bytes and sends 500 of them.
#[test]
fn sync_progress_shows_in_info() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let master = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let mut w = sock.try_clone().unwrap();
        let mut r = BufReader::new(sock);
        // PING, REPLCONF listening-port, REPLCONF capa, PSYNC: one reply each.
        let replies = [
            "+PONG\r\n",
            "+OK\r\n",
            "+OK\r\n",
            "+FULLRESYNC 0123456789012345678901234567890123456789 0\r\n$1000\r\n",
        ];
        for reply in replies {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let n: usize = line.trim_start_matches('*').trim().parse().unwrap();
            for _ in 0..2 * n {
                line.clear();
                r.read_line(&mut line).unwrap();
            }
            w.write_all(reply.as_bytes()).unwrap();
        }
        w.write_all(&[b'x'; 500]).unwrap();
        std::thread::sleep(Duration::from_secs(3));
    });
    let s = Server::start(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    wait_for("half the payload", Duration::from_secs(10), || {
        info_field(&mut c, "replication", "master_sync_read_bytes").as_deref() == Some("500")
    });
    let field = |c: &mut RawConn, f: &str| info_field(c, "replication", f).unwrap_or_default();
    assert_eq!(field(&mut c, "master_sync_in_progress"), "1");
    assert_eq!(field(&mut c, "master_sync_total_bytes"), "1000");
    assert_eq!(field(&mut c, "master_sync_left_bytes"), "500");
    assert_eq!(field(&mut c, "master_sync_perc"), "50.00");
    assert_eq!(field(&mut c, "master_link_status"), "down");
    master.join().unwrap();
}

/// The handshake of a fake master: answers PING, the REPLCONFs and PSYNC (the last with
/// `fullresync`, an RDB payload sent length-prefixed).
fn fake_master_handshake(sock: std::net::TcpStream, payload: &[u8]) -> std::net::TcpStream {
    use std::io::{BufRead, BufReader, Write};
    let mut w = sock.try_clone().unwrap();
    let mut r = BufReader::new(sock);
    let mut full = b"+FULLRESYNC 0123456789012345678901234567890123456789 0\r\n".to_vec();
    full.extend_from_slice(format!("${}\r\n", payload.len()).as_bytes());
    full.extend_from_slice(payload);
    for reply in [&b"+PONG\r\n"[..], b"+OK\r\n", b"+OK\r\n", &full] {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let n: usize = line.trim_start_matches('*').trim().parse().unwrap();
        for _ in 0..2 * n {
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        w.write_all(reply).unwrap();
    }
    w
}

/// A transaction the master's stream delivers in two pieces runs only once its EXEC has come,
/// and one whose link breaks before its EXEC is dropped (not left open on the connection that
/// applies the next master's stream).
#[test]
fn a_transaction_cut_by_the_link_runs_whole_or_not_at_all() {
    use std::io::{Read, Write};
    // An empty RDB, as redis-server sends it to an old-style SYNC.
    let redis = RedisServer::start();
    let mut rc = redis.0.raw();
    rc.send(&encode(&["SYNC"]));
    let mut got = Vec::new();
    let payload = loop {
        let mut chunk = [0u8; 4096];
        let n = rc.stream().read(&mut chunk).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&chunk[..n]);
        let lf = got.iter().take_while(|&&b| b == b'\n').count();
        let head = &got[lf..];
        if let Some(nl) = head.windows(2).position(|w| w == b"\r\n") {
            let len: usize = text(&head[1..nl]).parse().unwrap();
            if head.len() >= nl + 2 + len {
                break head[nl + 2..nl + 2 + len].to_vec();
            }
        }
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let s = Server::start(&[]);
    let mut c = s.raw();
    assert_eq!(c.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    let (sock, _) = listener.accept().unwrap();
    let mut w = fake_master_handshake(sock, &payload);
    wait_link_up(&mut c, "fake master", &|| s.log());
    let mut block = encode(&["MULTI"]);
    block.extend(encode(&["SET", "a", "1"]));
    block.extend(encode(&["SET", "b", "1"]));
    w.write_all(&block).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.cmd(&["GET", "a"]), b"$-1\r\n", "half a transaction ran");
    w.write_all(&encode(&["EXEC"])).unwrap();
    wait_for("the transaction", Duration::from_secs(5), || {
        c.cmd(&["MGET", "a", "b"]) == b"*2\r\n$1\r\n1\r\n$1\r\n1\r\n"
    });
    // Half a transaction, then the link breaks: the next link's stream runs on its own.
    w.write_all(&encode(&["MULTI"])).unwrap();
    w.write_all(&encode(&["SET", "c", "1"])).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(w);
    let (sock, _) = listener.accept().unwrap();
    let mut w = fake_master_handshake(sock, &payload);
    wait_link_up(&mut c, "fake master again", &|| s.log());
    w.write_all(&encode(&["SET", "d", "1"])).unwrap();
    wait_for("the new stream", Duration::from_secs(5), || {
        c.cmd(&["GET", "d"]) == b"$1\r\n1\r\n"
    });
    assert_eq!(c.cmd(&["GET", "c"]), b"$-1\r\n");
}

/// A shardis replica of shardis applies each shard's part of the stream in parallel: readers
/// on it never see half of a transaction over both shards, each key's writes arrive in the
/// master's order, and databases stay apart.
#[test]
fn shards_apply_the_stream_in_parallel_and_transactions_whole() {
    let master = Server::start(&[]);
    let mut m = master.raw();
    let replica = Server::start(&[]);
    let mut r = replica.raw();
    let port = master.port().to_string();
    assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &port]), b"+OK\r\n");
    wait_link_up(&mut r, "full sync", &|| replica.log());
    let (a, b) = (common::key_on(0, "pair"), common::key_on(1, "pair"));
    let (c0, c1) = (common::key_on(0, "count"), common::key_on(1, "count"));
    let stop = Arc::new(AtomicBool::new(false));
    let addr = master.addr();
    let st = stop.clone();
    let (a2, b2, c02, c12) = (a.clone(), b.clone(), c0.clone(), c1.clone());
    let writer = std::thread::spawn(move || {
        let mut w = common::RawConn::connect(addr);
        let mut i = 0u64;
        while !st.load(Ordering::Relaxed) && i < 1000 {
            i += 1;
            // Single-key writes on both shards, in two databases, then a transaction over
            // both shards, all pipelined.
            let mut batch = Vec::new();
            let n = i.to_string();
            for cmd in [
                vec!["SET", &c02, &n],
                vec!["SET", &c12, &n],
                vec!["SELECT", "5"],
                vec!["SET", &c02, "db5"],
                vec!["SELECT", "0"],
                vec!["MULTI"],
                vec!["INCR", &a2],
                vec!["INCR", &b2],
                vec!["EXEC"],
            ] {
                batch.extend(encode(&cmd));
            }
            w.send(&batch);
            for _ in 0..9 {
                w.read_reply();
            }
        }
        i
    });
    let (mut last0, mut last1, mut reads) = (0u64, 0u64, 0);
    let num = |v: &[u8]| -> u64 {
        let s = text(v);
        s.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or(0)
    };
    while !writer.is_finished() {
        // A transaction of reads over both shards sees both INCRs or neither.
        let mut batch = Vec::new();
        for cmd in [
            vec!["MULTI"],
            vec!["GET", &a],
            vec!["GET", &b],
            vec!["EXEC"],
        ] {
            batch.extend(encode(&cmd));
        }
        r.send(&batch);
        let exec = text(&(0..4).map(|_| r.read_reply()).last().unwrap());
        // Two values (a nil shows as `$-1`), equal.
        let vals: Vec<&str> = exec
            .lines()
            .filter(|l| *l == "$-1" || !l.starts_with(['*', '$']))
            .collect();
        assert_eq!(vals.len(), 2, "{exec:?}");
        assert_eq!(vals[0], vals[1], "half a transaction seen: {exec:?}");
        // Each shard's counter only moves forward.
        let (n0, n1) = (num(&r.cmd(&["GET", &c0])), num(&r.cmd(&["GET", &c1])));
        assert!(
            n0 >= last0 && n1 >= last1,
            "went back: {last0}→{n0}, {last1}→{n1}"
        );
        (last0, last1) = (n0, n1);
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(reads > 10, "only {reads} reads while the writer ran");
    same_data(&mut m, &mut r, "after parallel apply");
    assert_eq!(
        text(&r.cmd(&["GET", &a])),
        format!("${}\r\n{written}\r\n", written.to_string().len())
    );
    r.cmd(&["SELECT", "5"]);
    assert_eq!(r.cmd(&["GET", &c0]), b"$3\r\ndb5\r\n");

    // CLIENT PAUSE WRITE on the replica holds the master's writes on every shard too.
    assert_eq!(r.cmd(&["SELECT", "0"]), b"+OK\r\n");
    assert_eq!(r.cmd(&["CLIENT", "PAUSE", "500", "WRITE"]), b"+OK\r\n");
    m.cmd(&["SET", &c1, "paused"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_ne!(r.cmd(&["GET", &c1]), b"$6\r\npaused\r\n");
    wait_for("the pause to end", Duration::from_secs(10), || {
        r.cmd(&["GET", &c1]) == b"$6\r\npaused\r\n"
    });

    // MONITOR on the replica shows the master's writes to every shard.
    let mut mon = replica.raw();
    assert_eq!(mon.cmd(&["MONITOR"]), b"+OK\r\n");
    m.cmd(&["SET", &c0, "seen"]);
    m.cmd(&["SET", &c1, "seen"]);
    let mut lines = String::new();
    while !(lines.contains(&format!("\"{c0}\" \"seen\""))
        && lines.contains(&format!("\"{c1}\" \"seen\"")))
    {
        lines.push_str(&text(&mon.read_reply()));
    }
}
