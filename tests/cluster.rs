//! Cluster mode, phase 1 (no cluster bus): redirections (CROSSSLOT, MOVED, ASK, ASKING,
//! TRYAGAIN, CLUSTERDOWN) between nodes whose membership the tests write as nodes.conf files,
//! nodes.conf kept across restarts, CLUSTER subcommands compared with a redis-server started
//! with `--cluster-enabled yes`, MIGRATE between shardis processes and redis-server, and
//! `cluster-enabled emulated` driven by the `redis` crate's cluster client.

mod common;

use common::{free_port, fresh_dir, key_slot, RawConn, RedisServer, Server};
use std::path::Path;
use std::time::{Duration, Instant};

const ID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const ID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// A shardis cluster node on `port` (bus `cport`) whose config lives in `dir`.
fn node(dir: &Path, port: u16, cport: u16, extra: &[&str]) -> Server {
    let port_s = port.to_string();
    let cport_s = cport.to_string();
    let mut args = vec![
        "--port",
        &port_s,
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        &cport_s,
        "--cluster-config-file",
        "nodes.conf",
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A single fresh node on a kernel-chosen port.
fn single_node(extra: &[&str]) -> Server {
    let dir = fresh_dir("cluster-node");
    let cport = free_port().to_string();
    let mut args = vec![
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        &cport,
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A key (`<prefix><n>`) whose slot satisfies `want`.
fn key_where(prefix: &str, want: impl Fn(u16) -> bool) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| want(key_slot(k.as_bytes())))
        .expect("a key")
}

/// Two nodes A (slots 0-8191) and B (8192-16383) that know each other from their nodes.conf.
struct Pair {
    a: Server,
    b: Server,
    dirs: (std::path::PathBuf, std::path::PathBuf),
    ports: (u16, u16, u16, u16),
}

fn conf_line(id: &str, port: u16, cport: u16, me: bool, slots: &str) -> String {
    let flags = if me { "myself,master" } else { "master" };
    format!("{id} 127.0.0.1:{port}@{cport} {flags} - 0 0 1 connected {slots}\n")
}

fn pair() -> Pair {
    let (pa, ca, pb, cb) = (free_port(), free_port(), free_port(), free_port());
    let da = fresh_dir("cluster-a");
    let db = fresh_dir("cluster-b");
    let vars = "vars currentEpoch 2 lastVoteEpoch 0\n";
    std::fs::write(
        da.join("nodes.conf"),
        conf_line(ID_A, pa, ca, true, "0-8191")
            + &conf_line(ID_B, pb, cb, false, "8192-16383")
            + vars,
    )
    .unwrap();
    std::fs::write(
        db.join("nodes.conf"),
        conf_line(ID_B, pb, cb, true, "8192-16383")
            + &conf_line(ID_A, pa, ca, false, "0-8191")
            + vars,
    )
    .unwrap();
    let a = node(&da, pa, ca, &[]);
    let b = node(&db, pb, cb, &[]);
    Pair {
        a,
        b,
        dirs: (da, db),
        ports: (pa, ca, pb, cb),
    }
}

#[test]
fn crossslot_clusterdown_and_single_node_rules() {
    let s = single_node(&[]);
    let mut c = s.raw();
    assert_eq!(
        c.cmd(&["GET", "foo"]),
        b"-CLUSTERDOWN Hash slot not served\r\n"
    );
    // Keyless commands are served whatever the state.
    assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
    assert_eq!(c.cmd(&["DBSIZE"]), b":0\r\n");
    assert_eq!(
        c.cmd(&["SELECT", "1"]),
        b"-ERR SELECT is not allowed in cluster mode\r\n"
    );
    assert_eq!(c.cmd(&["SELECT", "0"]), b"+OK\r\n");
    assert!(text(&c.cmd(&["INFO", "cluster"])).contains("cluster_enabled:1"));
    assert!(text(&c.cmd(&["INFO", "server"])).contains("redis_mode:cluster"));
    assert_eq!(
        c.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]),
        b"+OK\r\n"
    );
    assert!(text(&c.cmd(&["CLUSTER", "INFO"])).contains("cluster_state:ok\r\n"));
    assert_eq!(c.cmd(&["SET", "foo", "bar"]), b"+OK\r\n");
    assert_eq!(
        c.cmd(&["MSET", "a", "1", "b", "2"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(c.cmd(&["MSET", "{a}1", "1", "{a}2", "2"]), b"+OK\r\n");
    // The same key twice is one key.
    assert_eq!(
        c.cmd(&["MGET", "foo", "foo"]),
        b"*2\r\n$3\r\nbar\r\n$3\r\nbar\r\n"
    );
    // EVAL's declared keys are checked too.
    assert_eq!(
        c.cmd(&["EVAL", "return 1", "2", "a", "b"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    // Inside MULTI each command is checked when queued, and EXEC checks the block as a whole.
    assert_eq!(c.cmd(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "a", "1"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["SET", "b", "1"]), b"+QUEUED\r\n");
    assert_eq!(
        c.cmd(&["EXEC"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(c.cmd(&["EXEC"]), b"-ERR EXEC without MULTI\r\n");
    assert_eq!(c.cmd(&["MULTI"]), b"+OK\r\n");
    assert_eq!(
        c.cmd(&["MSET", "a", "1", "b", "2"]),
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        c.cmd(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    // Full coverage lost: the cluster is down; with reads allowed, reads pass.
    assert_eq!(c.cmd(&["CLUSTER", "DELSLOTS", "0"]), b"+OK\r\n");
    assert_eq!(
        c.cmd(&["GET", "foo"]),
        b"-CLUSTERDOWN The cluster is down\r\n"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "cluster-allow-reads-when-down", "yes"]),
        b"+OK\r\n"
    );
    assert_eq!(c.cmd(&["GET", "foo"]), b"$3\r\nbar\r\n");
    assert_eq!(
        c.cmd(&["SET", "foo", "x"]),
        b"-CLUSTERDOWN The cluster is down and only accepts read commands\r\n"
    );
    // Shard channels are served while the cluster is down, unless told otherwise.
    assert_eq!(c.cmd(&["SPUBLISH", "ch", "m"]), b":0\r\n");
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "cluster-allow-pubsubshard-when-down", "no"]),
        b"+OK\r\n"
    );
    assert_eq!(
        c.cmd(&["SPUBLISH", "ch", "m"]),
        b"-CLUSTERDOWN The cluster is down\r\n"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "cluster-require-full-coverage", "no"]),
        b"+OK\r\n"
    );
    assert_eq!(c.cmd(&["SET", "foo", "x"]), b"+OK\r\n");
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "cluster-enabled"]),
        b"*2\r\n$15\r\ncluster-enabled\r\n$3\r\nyes\r\n"
    );
    // The announced address shows at once, and is saved.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "cluster-announce-ip", "10.9.8.7"]),
        b"+OK\r\n"
    );
    let nodes = text(&c.cmd(&["CLUSTER", "NODES"]));
    assert!(
        nodes.contains(&format!(" 10.9.8.7:{}@", s.port())),
        "{nodes}"
    );
    let slots = text(&c.cmd(&["CLUSTER", "SLOTS"]));
    assert!(slots.contains("$8\r\n10.9.8.7\r\n"), "{slots}");
}

#[test]
fn moved_ask_asking_and_tryagain() {
    let p = pair();
    let (pa, _, pb, _) = p.ports;
    let mut a = p.a.raw();
    let mut b = p.b.raw();
    for c in [&mut a, &mut b] {
        assert!(text(&c.cmd(&["CLUSTER", "INFO"])).contains("cluster_state:ok\r\n"));
    }
    let on_b = key_where("kb", |s| s >= 8192);
    let slot_b = key_slot(on_b.as_bytes());
    assert_eq!(
        text(&a.cmd(&["GET", &on_b])),
        format!("-MOVED {slot_b} 127.0.0.1:{pb}\r\n")
    );
    assert_eq!(b.cmd(&["SET", &on_b, "1"]), b"+OK\r\n");
    // Slots of both parities (so on both shards of a 2-shard node): A migrates them to B.
    for parity in [0u16, 1] {
        let slot = key_where("m", |s| s < 8192 && s % 2 == parity);
        let slot = key_slot(slot.as_bytes());
        let tag = key_where("t", |s| s == slot);
        let here = format!("{{{tag}}}here");
        let gone = format!("{{{tag}}}gone");
        let s = slot.to_string();
        assert_eq!(a.cmd(&["SET", &here, "v"]), b"+OK\r\n");
        assert_eq!(
            a.cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", ID_B]),
            b"+OK\r\n"
        );
        assert_eq!(
            b.cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", ID_A]),
            b"+OK\r\n"
        );
        let nodes = text(&a.cmd(&["CLUSTER", "NODES"]));
        assert!(nodes.contains(&format!("[{slot}->-{ID_B}]")), "{nodes}");
        let nodes = text(&b.cmd(&["CLUSTER", "NODES"]));
        assert!(nodes.contains(&format!("[{slot}-<-{ID_A}]")), "{nodes}");
        // A key still here is served; a missing one is asked for at B.
        assert_eq!(a.cmd(&["GET", &here]), b"$1\r\nv\r\n");
        assert_eq!(
            text(&a.cmd(&["GET", &gone])),
            format!("-ASK {slot} 127.0.0.1:{pb}\r\n")
        );
        assert_eq!(
            a.cmd(&["MGET", &here, &gone]),
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
        );
        // B serves the slot only after ASKING, and only for the next command.
        assert_eq!(
            text(&b.cmd(&["SET", &gone, "x"])),
            format!("-MOVED {slot} 127.0.0.1:{pa}\r\n")
        );
        assert_eq!(b.cmd(&["ASKING"]), b"+OK\r\n");
        assert_eq!(b.cmd(&["SET", &gone, "x"]), b"+OK\r\n");
        assert_eq!(
            text(&b.cmd(&["GET", &gone])),
            format!("-MOVED {slot} 127.0.0.1:{pa}\r\n")
        );
        assert_eq!(b.cmd(&["ASKING"]), b"+OK\r\n");
        assert_eq!(
            b.cmd(&["MGET", &here, &gone]),
            b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
        );
        // Inside MULTI, ASKING lasts until EXEC.
        assert_eq!(b.cmd(&["ASKING"]), b"+OK\r\n");
        assert_eq!(b.cmd(&["MULTI"]), b"+OK\r\n");
        assert_eq!(b.cmd(&["GET", &gone]), b"+QUEUED\r\n");
        assert_eq!(b.cmd(&["GET", &gone]), b"+QUEUED\r\n");
        assert_eq!(b.cmd(&["EXEC"]), b"*2\r\n$1\r\nx\r\n$1\r\nx\r\n");
        // The same for a block that runs live (it has a server command).
        assert_eq!(b.cmd(&["ASKING"]), b"+OK\r\n");
        assert_eq!(b.cmd(&["MULTI"]), b"+OK\r\n");
        assert_eq!(b.cmd(&["GET", &gone]), b"+QUEUED\r\n");
        assert_eq!(b.cmd(&["CLUSTER", "MYID"]), b"+QUEUED\r\n");
        assert_eq!(
            text(&b.cmd(&["EXEC"])),
            format!("*2\r\n$1\r\nx\r\n$40\r\n{ID_B}\r\n")
        );
        // Closing the migration: B owns the slot, A points there.
        assert_eq!(a.cmd(&["DEL", &here]), b":1\r\n");
        assert_eq!(b.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", ID_B]), b"+OK\r\n");
        assert_eq!(a.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", ID_B]), b"+OK\r\n");
        assert_eq!(b.cmd(&["GET", &gone]), b"$1\r\nx\r\n");
        assert_eq!(
            text(&a.cmd(&["GET", &gone])),
            format!("-MOVED {slot} 127.0.0.1:{pb}\r\n")
        );
        let nodes = text(&a.cmd(&["CLUSTER", "NODES"]));
        assert!(!nodes.contains("->-"), "{nodes}");
    }
    // A script may touch only keys of slots this node serves.
    let got = text(&a.cmd(&["EVAL", "return redis.call('get', ARGV[1])", "0", &on_b]));
    assert!(
        got.starts_with("-ERR Script attempted to access a non local key in a cluster node"),
        "{got}"
    );
    // A client blocked on a slot that moves away is redirected.
    let waiting = key_where("bl", |s| s < 8192 && s != key_slot(kept_probe().as_bytes()));
    let ws = key_slot(waiting.as_bytes()).to_string();
    let mut blocked = p.a.raw();
    blocked.send(&common::encode(&["BLPOP", &waiting, "0"]));
    common::wait_blocked(&mut a, "blpop", 1);
    assert_eq!(
        a.cmd(&["CLUSTER", "SETSLOT", &ws, "NODE", ID_B]),
        b"+OK\r\n"
    );
    assert_eq!(
        text(&blocked.read_reply()),
        format!("-MOVED {ws} 127.0.0.1:{pb}\r\n")
    );
    // SETSLOT NODE refuses to give away a slot that still has keys here.
    let kept = kept_probe();
    let s = key_slot(kept.as_bytes()).to_string();
    assert_eq!(a.cmd(&["SET", &kept, "1"]), b"+OK\r\n");
    assert_eq!(
        text(&a.cmd(&["CLUSTER", "SETSLOT", &s, "NODE", ID_B])),
        format!("-ERR Can't assign hashslot {s} to a different node while I still hold keys for this hash slot.\r\n")
    );
    let slots = text(&a.cmd(&["CLUSTER", "SLOTS"]));
    assert!(slots.contains(ID_A) && slots.contains(ID_B), "{slots}");
    let _ = p.dirs;
}

/// A key of A's that the SETSLOT NODE refusal test keeps.
fn kept_probe() -> String {
    key_where("kept", |s| s < 8192)
}

#[test]
fn migrate_in_cluster_mode_uses_restore_asking() {
    let p = pair();
    let (_, _, pb, _) = p.ports;
    let mut a = p.a.raw();
    let mut b = p.b.raw();
    let key = key_where("mig", |s| s < 8192);
    let slot = key_slot(key.as_bytes()).to_string();
    assert_eq!(a.cmd(&["SET", &key, "v"]), b"+OK\r\n");
    assert_eq!(
        a.cmd(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", ID_B]),
        b"+OK\r\n"
    );
    assert_eq!(
        b.cmd(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", ID_A]),
        b"+OK\r\n"
    );
    assert_eq!(
        a.cmd(&["MIGRATE", "127.0.0.1", &pb.to_string(), &key, "0", "5000"]),
        b"+OK\r\n"
    );
    assert_eq!(
        text(&a.cmd(&["GET", &key])),
        format!("-ASK {slot} 127.0.0.1:{pb}\r\n")
    );
    assert_eq!(b.cmd(&["ASKING"]), b"+OK\r\n");
    assert_eq!(b.cmd(&["GET", &key]), b"$1\r\nv\r\n");
    assert_eq!(a.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot]), b":0\r\n");
    assert_eq!(b.cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot]), b":1\r\n");
    assert_eq!(
        b.cmd(&["CLUSTER", "GETKEYSINSLOT", &slot, "10"]),
        format!("*1\r\n${}\r\n{key}\r\n", key.len()).into_bytes()
    );
}

#[test]
fn nodes_conf_is_kept_across_restarts() {
    let dir = fresh_dir("cluster-restart");
    let (port, cport) = (free_port(), free_port());
    let (id, nodes) = {
        let s = node(&dir, port, cport, &[]);
        let mut c = s.raw();
        assert_eq!(
            c.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "99", "200", "200"]),
            b"+OK\r\n"
        );
        assert_eq!(c.cmd(&["CLUSTER", "SET-CONFIG-EPOCH", "7"]), b"+OK\r\n");
        assert_eq!(c.cmd(&["CLUSTER", "MEET", "127.0.0.1", "1"]), b"+OK\r\n");
        let id = text(&c.cmd(&["CLUSTER", "MYID"]));
        let nodes = text(&c.cmd(&["CLUSTER", "NODES"]));
        assert!(nodes.contains("handshake"), "{nodes}");
        let conf = std::fs::read_to_string(dir.join("nodes.conf")).unwrap();
        assert!(
            conf.ends_with("vars currentEpoch 7 lastVoteEpoch 0\n"),
            "{conf}"
        );
        assert!(!conf.contains("handshake"), "{conf}");
        (id, nodes)
    };
    let s = node(&dir, port, cport, &[]);
    let mut c = s.raw();
    assert_eq!(text(&c.cmd(&["CLUSTER", "MYID"])), id);
    let again = text(&c.cmd(&["CLUSTER", "NODES"]));
    let mine = |n: &str| n.lines().find(|l| l.contains("myself")).map(str::to_string);
    assert_eq!(mine(&again), mine(&nodes));
    assert!(text(&c.cmd(&["CLUSTER", "INFO"])).contains("cluster_my_epoch:7\r\n"));
    // A damaged file stops the start, as in Redis.
    drop(c);
    drop(s);
    std::fs::write(dir.join("nodes.conf"), "garbage\n").unwrap();
    let (status, log) = common::run_to_exit(&[
        "--port",
        &port.to_string(),
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        &cport.to_string(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(log.contains("corrupted cluster config file"), "{log}");
}

/// Replies from a fresh shardis node and a fresh redis-server node to the same commands, with
/// the node id, port and bus port replaced so that they compare.
#[test]
fn cluster_replies_match_redis() {
    let rdir = fresh_dir("cluster-redis");
    let rcport = free_port().to_string();
    let redis = RedisServer::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-port",
        &rcport,
        "--dir",
        rdir.to_str().unwrap(),
    ]);
    let ocport = free_port().to_string();
    let ours = single_node(&["--cluster-port", &ocport]);
    let mut r = redis.raw();
    let mut o = ours.raw();
    let rid = text(&r.cmd(&["CLUSTER", "MYID"]))
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let oid = text(&o.cmd(&["CLUSTER", "MYID"]))
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let norm = |reply: Vec<u8>, id: &str, port: u16, cport: &str| {
        text(&reply)
            .replace(id, "<ID>")
            .replace(&format!(":{port}@{cport}"), ":<PORT>@<CPORT>")
            .replace(&format!(":{port}\r\n"), ":<PORT>\r\n")
    };
    let compare = |r: &mut RawConn, o: &mut RawConn, args: &[&str]| {
        let ra: Vec<String> = args.iter().map(|a| a.replace("{id}", &rid)).collect();
        let oa: Vec<String> = args.iter().map(|a| a.replace("{id}", &oid)).collect();
        let ra: Vec<&str> = ra.iter().map(String::as_str).collect();
        let oa: Vec<&str> = oa.iter().map(String::as_str).collect();
        let want = norm(r.cmd(&ra), &rid, redis.port(), &rcport);
        let got = norm(o.cmd(&oa), &oid, ours.port(), &ocport);
        assert_eq!(got, want, "{args:?}");
    };
    let script: &[&[&str]] = &[
        &["CLUSTER", "KEYSLOT", "foo"],
        &["CLUSTER", "KEYSLOT", "{user1000}.following"],
        &["CLUSTER", "KEYSLOT", ""],
        &["CLUSTER", "COUNTKEYSINSLOT", "20000"],
        &["CLUSTER", "COUNTKEYSINSLOT", "-1"],
        &["CLUSTER", "COUNTKEYSINSLOT", "x"],
        &["CLUSTER", "COUNTKEYSINSLOT", "0"],
        &["CLUSTER", "GETKEYSINSLOT", "1", "-1"],
        &["CLUSTER", "GETKEYSINSLOT", "99999", "1"],
        &["CLUSTER", "GETKEYSINSLOT", "x", "1"],
        &["CLUSTER", "GETKEYSINSLOT", "0", "10"],
        &["CLUSTER", "ADDSLOTS", "16384"],
        &["CLUSTER", "ADDSLOTS", "-1"],
        &["CLUSTER", "ADDSLOTS", "abc"],
        &["CLUSTER", "ADDSLOTS", "+5"],
        &["CLUSTER", "ADDSLOTS", "05"],
        &["CLUSTER", "ADDSLOTS", "400", "400"],
        &["CLUSTER", "ADDSLOTSRANGE", "10", "5"],
        &["CLUSTER", "ADDSLOTSRANGE", "1", "2", "3"],
        &["CLUSTER", "ADDSLOTS"],
        &["CLUSTER", "ADDSLOTS", "100", "101"],
        &["CLUSTER", "ADDSLOTS", "101"],
        &["CLUSTER", "ADDSLOTSRANGE", "0", "10", "20", "30"],
        &["CLUSTER", "ADDSLOTSRANGE", "25", "40"],
        &["CLUSTER", "DELSLOTS", "5000"],
        &["CLUSTER", "DELSLOTSRANGE", "0", "2"],
        &["CLUSTER", "DELSLOTSRANGE", "0", "2"],
        &["CLUSTER", "SETSLOT", "5", "NODE", "abc"],
        &["CLUSTER", "SETSLOT", "5", "foo"],
        &["CLUSTER", "SETSLOT", "5", "stable", "x"],
        &["CLUSTER", "SETSLOT", "99999", "stable"],
        &["CLUSTER", "SETSLOT", "500", "MIGRATING", "{id}"],
        &["CLUSTER", "SETSLOT", "100", "IMPORTING", "{id}"],
        &["CLUSTER", "SETSLOT", "100", "MIGRATING", "abc"],
        &["CLUSTER", "SETSLOT", "100", "MIGRATING", "{id}"],
        &["CLUSTER", "NODES"],
        &["CLUSTER", "SETSLOT", "100", "STABLE"],
        &["CLUSTER", "FORGET", "abc"],
        &["CLUSTER", "FORGET", "{id}"],
        &["CLUSTER", "MEET", "1.2.3.4", "x"],
        &["CLUSTER", "MEET", "nohost", "5"],
        &["CLUSTER", "MEET", "1.2.3.4", "5", "x"],
        &["CLUSTER", "MEET", "1.2.3.4", "65535"],
        &["CLUSTER", "MEET", "1.2.3.4", "0"],
        &["CLUSTER", "MEET", "1.2.3.4", "70000", "5"],
        &["CLUSTER", "MEET", "1.2.3.4", "5", "0"],
        &["CLUSTER", "REPLICATE", "abc"],
        &["CLUSTER", "REPLICATE", "{id}"],
        &["CLUSTER", "COUNT-FAILURE-REPORTS", "abc"],
        &["CLUSTER", "COUNT-FAILURE-REPORTS", "{id}"],
        &["CLUSTER", "REPLICAS", "abc"],
        &["CLUSTER", "REPLICAS", "{id}"],
        &["CLUSTER", "SLAVES", "{id}"],
        &["CLUSTER", "LINKS"],
        &["CLUSTER", "RESET", "foo"],
        &["CLUSTER", "SET-CONFIG-EPOCH", "-1"],
        &["CLUSTER", "SET-CONFIG-EPOCH", "x"],
        &["CLUSTER", "FAILOVER"],
        &["CLUSTER", "FAILOVER", "foo"],
        &["CLUSTER", "FOO"],
        &["CLUSTER", "HELP"],
        &["CLUSTER"],
        &["SELECT", "1"],
        &["SELECT", "x"],
        &["SELECT", "0"],
        &["READONLY"],
        &["READWRITE"],
        &["ASKING"],
        &["GET", "foo"],
        &["CLUSTER", "SLOTS"],
        &["CLUSTER", "SHARDS"],
        &["CLUSTER", "FLUSHSLOTS"],
        &["CLUSTER", "NODES"],
        &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"],
    ];
    for args in script {
        compare(&mut r, &mut o, args);
    }
    // Redis waits a moment after its start before the state turns ok.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&r.cmd(&["CLUSTER", "INFO"])).contains("cluster_state:ok") {
        assert!(
            Instant::now() < deadline,
            "redis never reached cluster_state:ok"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let script: &[&[&str]] = &[
        &["CLUSTER", "INFO"],
        &["SET", "foo", "bar"],
        &["MSET", "a", "1", "b", "2"],
        &["GET", "foo"],
        &["CLUSTER", "COUNTKEYSINSLOT", "12182"],
        &["CLUSTER", "GETKEYSINSLOT", "12182", "5"],
        &["CLUSTER", "GETKEYSINSLOT", "12182", "0"],
        &["CLUSTER", "FLUSHSLOTS"],
        &["CLUSTER", "RESET"],
        &["CLUSTER", "SETSLOT", "12182", "NODE", "abc"],
        &["MULTI"],
        &["SET", "{a}1", "x"],
        &["SET", "{a}2", "y"],
        &["EXEC"],
        &["MULTI"],
        &["SET", "a", "1"],
        &["SET", "b", "2"],
        &["EXEC"],
        &["CLUSTER", "SET-CONFIG-EPOCH", "5"],
        &["CLUSTER", "SET-CONFIG-EPOCH", "6"],
        &["CLUSTER", "BUMPEPOCH"],
        &["CLUSTER", "INFO"],
        &["CLUSTER", "SLOTS"],
        &["CLUSTER", "SHARDS"],
        &["CLUSTER", "NODES"],
        &["DEL", "foo", "{a}1", "{a}2"],
        &["CLUSTER", "COUNTKEYSINSLOT", "12182"],
        &["CLUSTER", "GETKEYSINSLOT", "12182", "5"],
        &["SET", "foo", "again"],
        &["CLUSTER", "COUNTKEYSINSLOT", "12182"],
        &["FLUSHALL"],
        &["CLUSTER", "COUNTKEYSINSLOT", "12182"],
        &["HELLO", "3"],
        &["CLUSTER", "SLOTS"],
        &["CLUSTER", "SHARDS"],
        &["CLUSTER", "INFO"],
        &["CLUSTER", "LINKS"],
        &["MOVE", "foo", "1"],
        &["SWAPDB", "0", "1"],
        &["COPY", "foo", "bar", "DB", "1"],
        &["CONFIG", "GET", "cluster-node-timeout"],
        &["EVAL", "#!lua flags=no-cluster\nreturn 1", "0"],
        &["EVAL", "#!lua\nreturn 1", "0"],
        &["EVAL", "redis.call('set', 'a', 1); return redis.call('get', 'b')", "0"],
        &["EVAL", "redis.call('get', KEYS[1]); return redis.call('get', 'b')", "1", "a"],
        &["EVAL", "return redis.call('mget', 'a', 'b')", "0"],
        &["EVAL", "return redis.call('mget', '{a}1', '{a}2')", "0"],
        &["EVAL", "#!lua\nredis.call('set', 'a', 1); return redis.call('get', 'b')", "0"],
        &["EVAL", "#!lua\nredis.call('get', KEYS[1]); return redis.call('get', 'b')", "1", "a"],
        &["EVAL", "#!lua\nreturn redis.call('get', '{a}x')", "1", "{a}y"],
        &["EVAL", "#!lua flags=allow-cross-slot-keys\nredis.call('set', 'a', 1); return redis.call('get', 'b')", "0"],
        &["DEL", "a"],
        &["CONFIG", "GET", "cluster-require-full-coverage"],
        &["CONFIG", "GET", "cluster-allow-reads-when-down"],
        &["CONFIG", "GET", "cluster-replica-validity-factor"],
        &["CONFIG", "GET", "cluster-slave-validity-factor"],
        &["CONFIG", "GET", "cluster-announce-ip"],
        &["CONFIG", "GET", "cluster-announce-port"],
        &["CONFIG", "GET", "cluster-announce-bus-port"],
        &["CONFIG", "GET", "cluster-config-file"],
        &["CONFIG", "SET", "cluster-enabled", "no"],
        &["CONFIG", "SET", "cluster-node-timeout", "5000"],
        &["CONFIG", "GET", "cluster-node-timeout"],
        &[
            "COMMAND",
            "INFO",
            "asking",
            "readonly",
            "readwrite",
            "restore-asking",
        ],
        &[
            "COMMAND",
            "INFO",
            "cluster|setslot",
            "cluster|info",
            "cluster|countkeysinslot",
        ],
        &[
            "COMMAND", "GETKEYS", "MIGRATE", "h", "1", "", "0", "5", "KEYS", "a", "b",
        ],
    ];
    for args in script {
        if args[0] == "HELLO" {
            // Server versions and ids differ; only the mode matters here.
            let got = text(&o.cmd(args));
            assert!(got.contains("$4\r\nmode\r\n$7\r\ncluster\r\n"), "{got}");
            r.cmd(args);
            continue;
        }
        compare(&mut r, &mut o, args);
    }
}

#[test]
fn migrate_between_shardis_processes() {
    let src = Server::start(&[]);
    let dst = Server::start(&[]);
    let mut s = src.raw();
    let mut d = dst.raw();
    let port = dst.port().to_string();
    assert_eq!(s.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &port, "k", "0", "5000"]),
        b"+OK\r\n"
    );
    assert_eq!(s.cmd(&["EXISTS", "k"]), b":0\r\n");
    assert_eq!(d.cmd(&["GET", "k"]), b"$1\r\nv\r\n");
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &port, "k", "0", "5000"]),
        b"+NOKEY\r\n"
    );
    // COPY keeps the source; a key already there is refused without REPLACE.
    assert_eq!(s.cmd(&["SET", "k", "v2"]), b"+OK\r\n");
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &port, "k", "0", "5000", "COPY"]),
        b"-ERR Target instance replied with error: BUSYKEY Target key name already exists.\r\n"
    );
    assert_eq!(
        s.cmd(&[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "k",
            "0",
            "5000",
            "COPY",
            "REPLACE"
        ]),
        b"+OK\r\n"
    );
    assert_eq!(s.cmd(&["GET", "k"]), b"$2\r\nv2\r\n");
    assert_eq!(d.cmd(&["GET", "k"]), b"$2\r\nv2\r\n");
    // KEYS, over both shards, with a TTL and a missing key, into another database.
    let a = common::key_on(0, "a");
    let b = common::key_on(1, "b");
    assert_eq!(s.cmd(&["RPUSH", &a, "x", "y"]), b":2\r\n");
    assert_eq!(s.cmd(&["SET", &b, "z", "PX", "100000"]), b"+OK\r\n");
    assert_eq!(
        s.cmd(&[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "",
            "3",
            "5000",
            "KEYS",
            &a,
            &b,
            "nosuch"
        ]),
        b"+OK\r\n"
    );
    assert_eq!(s.cmd(&["EXISTS", &a, &b]), b":0\r\n");
    assert_eq!(d.cmd(&["SELECT", "3"]), b"+OK\r\n");
    assert_eq!(
        d.cmd(&["LRANGE", &a, "0", "-1"]),
        b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n"
    );
    let pttl: i64 = text(&d.cmd(&["PTTL", &b]))[1..].trim().parse().unwrap();
    assert!(pttl > 0 && pttl <= 100000, "{pttl}");
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &port, "k", "0", "5000", "KEYS", "k"]),
        b"-ERR When using MIGRATE KEYS option, the key argument must be set to the empty string\r\n"
    );
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &port, "k", "0", "5000", "AUTH"]),
        b"-ERR syntax error\r\n"
    );
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &port, "k", "0", "x"]),
        b"-ERR value is not an integer or out of range\r\n"
    );
    // Nobody listens there.
    let dead = free_port().to_string();
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &dead, "k", "0", "200"]),
        b"-IOERR error or timeout writing to target instance\r\n"
    );
    assert_eq!(s.cmd(&["GET", "k"]), b"$2\r\nv2\r\n");
    // A target that accepts and never answers: the migrating key stays locked (a write to it
    // waits) until the read times out; other keys are served meanwhile; nothing is deleted.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sport = silent.local_addr().unwrap().port().to_string();
    s.send(&common::encode(&[
        "MIGRATE",
        "127.0.0.1",
        &sport,
        "k",
        "0",
        "3000",
    ]));
    let mut other = src.raw();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&other.cmd(&["CLIENT", "LIST"])).contains("cmd=migrate") {
        assert!(Instant::now() < deadline, "MIGRATE never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(other.cmd(&["GET", "unrelated"]), b"$-1\r\n");
    other.send(&common::encode(&["APPEND", "k", "x"]));
    other.set_read_timeout(Duration::from_millis(300));
    assert!(other.try_read_reply().is_err(), "APPEND ran during MIGRATE");
    other.set_read_timeout(common::REPLY_TIMEOUT);
    assert_eq!(
        s.read_reply(),
        b"-IOERR error or timeout reading to target instance\r\n"
    );
    assert_eq!(other.read_reply(), b":3\r\n");
    drop(silent);
}

#[test]
fn migrate_with_auth_and_to_and_from_redis() {
    let src = Server::start(&[]);
    let locked = Server::start(&["--requirepass", "secret"]);
    let redis = RedisServer::start();
    let mut s = src.raw();
    let lport = locked.port().to_string();
    assert_eq!(s.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &lport, "k", "0", "5000", "COPY"]),
        b"-ERR Target instance replied with error: NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &lport, "k", "0", "5000", "COPY", "AUTH", "wrong"]),
        b"-ERR Target instance replied with error: WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        s.cmd(&[
            "MIGRATE",
            "127.0.0.1",
            &lport,
            "k",
            "0",
            "5000",
            "COPY",
            "AUTH",
            "secret"
        ]),
        b"+OK\r\n"
    );
    assert_eq!(
        s.cmd(&[
            "MIGRATE",
            "127.0.0.1",
            &lport,
            "k",
            "0",
            "5000",
            "REPLACE",
            "AUTH2",
            "default",
            "secret"
        ]),
        b"+OK\r\n"
    );
    let mut l = locked.raw();
    assert_eq!(l.cmd(&["AUTH", "secret"]), b"+OK\r\n");
    assert_eq!(l.cmd(&["GET", "k"]), b"$1\r\nv\r\n");
    // shardis to redis-server and back, with a hash (its DUMP payload must load in Redis).
    let mut r = redis.raw();
    let rport = redis.port().to_string();
    assert_eq!(s.cmd(&["HSET", "h", "f", "1", "g", "2"]), b":2\r\n");
    assert_eq!(
        s.cmd(&["MIGRATE", "127.0.0.1", &rport, "h", "0", "5000"]),
        b"+OK\r\n"
    );
    assert_eq!(r.cmd(&["HGET", "h", "g"]), b"$1\r\n2\r\n");
    // Redis's errors for the same failures as ours.
    assert_eq!(r.cmd(&["SET", "busy", "1"]), b"+OK\r\n");
    assert_eq!(s.cmd(&["SET", "busy", "2"]), b"+OK\r\n");
    let ours = s.cmd(&["MIGRATE", "127.0.0.1", &rport, "busy", "0", "5000"]);
    let sport = src.port().to_string();
    assert_eq!(
        r.cmd(&["MIGRATE", "127.0.0.1", &sport, "busy", "0", "5000"]),
        ours
    );
    let dead = free_port().to_string();
    assert_eq!(
        r.cmd(&["MIGRATE", "127.0.0.1", &dead, "busy", "0", "200"]),
        s.cmd(&["MIGRATE", "127.0.0.1", &dead, "busy", "0", "200"])
    );
    assert_eq!(
        r.cmd(&["MIGRATE", "127.0.0.1", &sport, "nosuch", "0", "200"]),
        s.cmd(&["MIGRATE", "127.0.0.1", &rport, "nosuch", "0", "200"])
    );
    assert_eq!(
        r.cmd(&["MIGRATE", "127.0.0.1", &sport, "h", "0", "5000"]),
        b"+OK\r\n"
    );
    assert_eq!(
        s.cmd(&["HGETALL", "h"]),
        b"*4\r\n$1\r\nf\r\n$1\r\n1\r\n$1\r\ng\r\n$1\r\n2\r\n"
    );
}

#[test]
fn emulated_mode_serves_cluster_clients() {
    let cport = free_port();
    let s = Server::start(&[
        "--cluster-enabled",
        "emulated",
        "--cluster-port",
        &cport.to_string(),
    ]);
    let mut c = s.raw();
    let port = s.port();
    let slots = c.cmd(&["CLUSTER", "SLOTS"]);
    let id = text(&c.cmd(&["CLUSTER", "MYID"]))
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(
        text(&slots),
        format!(
            "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$40\r\n{id}\r\n*0\r\n"
        )
    );
    let info = text(&c.cmd(&["CLUSTER", "INFO"]));
    assert!(info.contains("cluster_state:ok\r\n"), "{info}");
    assert!(info.contains("cluster_slots_assigned:16384\r\n"), "{info}");
    let nodes = text(&c.cmd(&["CLUSTER", "NODES"]));
    assert!(
        nodes.contains(&format!(
            "{id} 127.0.0.1:{port}@{cport} myself,master - 0 0 0 connected 0-16383\n"
        )),
        "{nodes}"
    );
    assert!(text(&c.cmd(&["CLUSTER", "SHARDS"])).contains("127.0.0.1"));
    assert!(text(&c.cmd(&["CLUSTER", "ADDSLOTS", "1"]))
        .starts_with("-ERR CLUSTER ADDSLOTS is not supported"));
    // No redirections: cross-slot commands run as on a plain server.
    assert_eq!(c.cmd(&["MSET", "a", "1", "b", "2"]), b"+OK\r\n");
    assert_eq!(c.cmd(&["ASKING"]), b"+OK\r\n");

    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{port}/")]).unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..50 {
        let () = redis::cmd("SET")
            .arg(format!("key{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    for i in 0..50 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("key{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(v, i);
    }
    let () = redis::cmd("MSET")
        .arg("{u}1")
        .arg("x")
        .arg("{u}2")
        .arg("y")
        .query(&mut con)
        .unwrap();
    let got: Vec<String> = redis::cmd("MGET")
        .arg("{u}1")
        .arg("{u}2")
        .query(&mut con)
        .unwrap();
    assert_eq!(got, vec!["x", "y"]);
    let mut pipe = redis::cluster::cluster_pipe();
    pipe.cmd("INCR").arg("counter").cmd("INCR").arg("counter");
    let counts: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(counts, vec![1, 2]);
    assert_eq!(c.cmd(&["DBSIZE"]), b":55\r\n");
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "cluster-announce-ip", "10.9.8.7"]),
        b"+OK\r\n"
    );
    assert!(text(&c.cmd(&["CLUSTER", "SLOTS"])).contains("$8\r\n10.9.8.7\r\n"));
}

#[test]
fn cluster_commands_without_cluster_mode() {
    let s = Server::start(&[]);
    let mut c = s.raw();
    for args in [
        &["CLUSTER", "INFO"][..],
        &["CLUSTER", "NODES"],
        &["ASKING"],
        &["READONLY"],
    ] {
        assert_eq!(
            c.cmd(args),
            b"-ERR This instance has cluster support disabled\r\n"
        );
    }
    assert!(text(&c.cmd(&["INFO", "cluster"])).contains("cluster_enabled:0"));
    assert_eq!(c.cmd(&["SELECT", "1"]), b"+OK\r\n");
    assert_eq!(
        c.cmd(&["COMMAND", "GETKEYS", "MIGRATE", "h", "1", "", "0", "5", "KEYS", "a", "b"]),
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
}

#[test]
fn redis_cli_reshards_between_two_nodes() {
    let p = pair();
    let (pa, _, pb, _) = p.ports;
    let mut a = p.a.raw();
    // Keys in the slots that move (0-49), written on A in one pipeline. (Each slot moved costs
    // a few nodes.conf fsyncs on each side, as in Redis: the test moves few.)
    let keys: Vec<String> = (0..20_000)
        .map(|i| format!("r:{i}"))
        .filter(|k| key_slot(k.as_bytes()) < 50)
        .collect();
    let mut batch = Vec::new();
    for k in &keys {
        batch.extend(common::encode(&["SET", k, k]));
    }
    a.send(&batch);
    for _ in &keys {
        assert_eq!(a.read_reply(), b"+OK\r\n");
    }
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "reshard", &format!("127.0.0.1:{pa}")])
        .args(["--cluster-from", ID_A, "--cluster-to", ID_B])
        .args(["--cluster-slots", "50", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{log}");
    let out = std::process::Command::new("redis-cli")
        .args(["--cluster", "check", &format!("127.0.0.1:{pb}")])
        .output()
        .expect("redis-cli");
    let check = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        check.contains("All nodes agree about slots configuration"),
        "{check}"
    );
    assert!(check.contains("All 16384 slots covered"), "{check}");
    assert!(check.contains("slots:[0-49],[8192-16383]"), "{check}");
    assert_eq!(a.cmd(&["DBSIZE"]), b":0\r\n");
    assert_eq!(
        text(&p.b.raw().cmd(&["DBSIZE"])),
        format!(":{}\r\n", keys.len())
    );
    // A cluster client finds every key at its new home.
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{pa}/")]).unwrap();
    let mut con = client.get_connection().unwrap();
    for k in &keys {
        let v: String = redis::cmd("GET").arg(k).query(&mut con).unwrap();
        assert_eq!(&v, k);
    }
}
