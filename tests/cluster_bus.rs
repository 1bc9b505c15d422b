//! Cluster mode, phase 2: the cluster bus. Clusters formed by `redis-cli --cluster create` from
//! shardis processes alone and from shardis and redis-server 7 together (one mixed cluster,
//! checked from both sides), slots resharded from redis-server to shardis under a cluster
//! client's writes, failure detection (PFAIL, then FAIL by majority) after a kill -9, replicas and
//! automatic failover (shardis replicas of shardis and of redis-server masters), and add-node,
//! reshard and del-node under load.
//! Every node has its own directory and an explicit bus port; node timeouts are short.

mod common;

use common::{free_port, fresh_dir, RedisServer, Server};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The node timeout of the tests that kill nodes (failure detection and failover).
const NODE_TIMEOUT: &str = "2000";
/// The node timeout of the others: long enough that a machine busy with other tests never
/// makes a node look failed (which would answer CLUSTERDOWN to the writers).
const CALM_NODE_TIMEOUT: &str = "15000";

fn text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply).into_owned()
}

/// A fresh shardis cluster node on a kernel-chosen port with an explicit bus port.
fn shardis_node() -> Server {
    let dir = fresh_dir("cluster-bus");
    shardis_node_in(&dir, None, free_port(), NODE_TIMEOUT)
}

/// A fresh shardis node with the calm node timeout.
fn calm_shardis_node() -> Server {
    let dir = fresh_dir("cluster-bus");
    shardis_node_in(&dir, None, free_port(), CALM_NODE_TIMEOUT)
}

/// A shardis cluster node keeping its nodes.conf in `dir` (a restart: the same port and bus
/// port again).
fn shardis_node_in(dir: &std::path::Path, port: Option<u16>, cport: u16, timeout: &str) -> Server {
    let cport = cport.to_string();
    let port = port.unwrap_or(0).to_string();
    Server::start(&[
        "--port",
        &port,
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        &cport,
        "--cluster-node-timeout",
        timeout,
        "--dir",
        dir.to_str().unwrap(),
    ])
}

/// A fresh redis-server 7 cluster node.
fn redis_node(timeout: &str) -> RedisServer {
    let cport = free_port().to_string();
    RedisServer::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        &cport,
        "--cluster-node-timeout",
        timeout,
    ])
}

fn redis_cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), log)
}

fn create(ports: &[u16], replicas: usize) {
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut args: Vec<&str> = vec!["--cluster", "create"];
    args.extend(addrs.iter().map(|s| s.as_str()));
    let r = replicas.to_string();
    args.extend(["--cluster-replicas", &r, "--cluster-yes"]);
    let (ok, log) = redis_cli(&args);
    assert!(ok, "{log}");
    assert!(log.contains("[OK] All 16384 slots covered."), "{log}");
}

fn check(port: u16) -> String {
    let (ok, log) = redis_cli(&["--cluster", "check", &format!("127.0.0.1:{port}")]);
    assert!(ok, "{log}");
    assert!(
        log.contains("[OK] All nodes agree about slots configuration."),
        "{log}"
    );
    assert!(log.contains("[OK] All 16384 slots covered."), "{log}");
    log
}

fn cluster_nodes(port: u16) -> String {
    let (_, out) = redis_cli(&["-p", &port.to_string(), "cluster", "nodes"]);
    out
}

/// Each node's (id, role, slots) as one node sees the cluster, without its own view markers.
fn topology(port: u16) -> BTreeSet<String> {
    cluster_nodes(port)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let role = if w[2].contains("master") {
                "master"
            } else {
                "slave"
            };
            format!("{} {} {} {}", w[0], role, w[3], w[8..].join(" "))
        })
        .collect()
}

/// Polls until `f` holds, up to `secs`; returns how long it took.
fn poll(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    println!("{what}: {took:?}");
    took
}

fn kill9(node: &Server) {
    let status = std::process::Command::new("kill")
        .args(["-9", &node.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn state_ok(port: u16) -> bool {
    redis_cli(&["-p", &port.to_string(), "cluster", "info"])
        .1
        .contains("cluster_state:ok")
}

fn consistent(ports: &[u16]) -> bool {
    let first = topology(ports[0]);
    first.len() == ports.len() && ports.iter().all(|&p| topology(p) == first)
}

#[test]
fn redis_cli_creates_a_shardis_cluster_and_detects_a_failure() {
    let nodes: Vec<Server> = (0..3).map(|_| shardis_node()).collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port()).collect();
    create(&ports, 0);
    poll("every node sees cluster_state:ok", 20, || {
        ports.iter().all(|&p| state_ok(p))
    });
    poll("consistent CLUSTER NODES", 20, || consistent(&ports));
    check(ports[1]);
    let info = redis_cli(&["-p", &ports[0].to_string(), "cluster", "info"]).1;
    assert!(info.contains("cluster_stats_messages_ping_sent:"), "{info}");
    assert!(
        info.contains("cluster_stats_messages_pong_received:"),
        "{info}"
    );
    let links = redis_cli(&["-p", &ports[0].to_string(), "cluster", "links"]).1;
    assert!(
        links.contains("direction") && links.contains("to"),
        "{links}"
    );
    // A cluster client writes and reads through the redirections.
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}/", ports[0])])
            .unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    for i in 0..300 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(v, i);
    }
    // kill -9 one master: the others mark it PFAIL, then FAIL by majority.
    let victim_id = text(&nodes[2].raw().cmd(&["CLUSTER", "MYID"]));
    let victim_id = victim_id
        .trim_start_matches('$')
        .lines()
        .nth(1)
        .unwrap_or("")
        .to_string();
    assert_eq!(victim_id.len(), 40);
    kill9(&nodes[2]);
    poll("the killed master is FAIL on both survivors", 30, || {
        ports[..2].iter().all(|&p| {
            cluster_nodes(p)
                .lines()
                .any(|l| l.starts_with(&victim_id) && l.contains("master,fail "))
        })
    });
    assert!(!state_ok(ports[0]));
}

#[test]
fn mixed_cluster_with_redis_server_and_reshard_under_load() {
    let ours: Vec<Server> = (0..2).map(|_| calm_shardis_node()).collect();
    let theirs: Vec<RedisServer> = (0..2).map(|_| redis_node(CALM_NODE_TIMEOUT)).collect();
    // Interleaved, so slot ranges alternate between the two kinds of node.
    let ports = vec![
        ours[0].port(),
        theirs[0].port(),
        ours[1].port(),
        theirs[1].port(),
    ];
    create(&ports, 0);
    poll("every node sees cluster_state:ok", 20, || {
        ports.iter().all(|&p| state_ok(p))
    });
    poll(
        "consistent CLUSTER NODES on shardis and redis-server",
        20,
        || consistent(&ports),
    );
    check(ports[0]);
    check(ports[1]);
    // PUBLISH reaches subscribers on every node, across the two implementations.
    for (sub_port, pub_port) in [(ports[0], ports[1]), (ports[3], ports[2])] {
        let mut sub = common::RawConn::connect(([127, 0, 0, 1], sub_port).into());
        sub.set_read_timeout(Duration::from_secs(10));
        sub.send(&common::encode(&["SUBSCRIBE", "news"]));
        assert!(text(&sub.read_reply()).contains("subscribe"));
        let mut publisher = common::RawConn::connect(([127, 0, 0, 1], pub_port).into());
        publisher.cmd(&["PUBLISH", "news", "hello"]);
        let msg = text(&sub.read_reply());
        assert!(msg.contains("message") && msg.contains("hello"), "{msg}");
    }
    // Load: a cluster client writes keys while slots move from redis-server to shardis.
    let seed = format!("redis://127.0.0.1:{}/", ports[0]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let client = redis::cluster::ClusterClient::new(vec![seed]).unwrap();
        let mut con = client.get_connection().unwrap();
        let (mut n, mut errors) = (0u64, Vec::new());
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) || n < 2000 {
            let r: redis::RedisResult<()> = redis::cmd("SET")
                .arg(format!("w:{n}"))
                .arg(n)
                .query(&mut con);
            if let Err(e) = r {
                errors.push(e.to_string());
            }
            n += 1;
        }
        (n, errors)
    });
    std::thread::sleep(Duration::from_millis(300));
    let from = text(&theirs[0].raw().cmd(&["CLUSTER", "MYID"]));
    let from = from.lines().nth(1).unwrap_or("").to_string();
    let to = text(&ours[1].raw().cmd(&["CLUSTER", "MYID"]));
    let to = to.lines().nth(1).unwrap_or("").to_string();
    let (ok, log) = redis_cli(&[
        "--cluster",
        "reshard",
        &format!("127.0.0.1:{}", ports[0]),
        "--cluster-from",
        &from,
        "--cluster-to",
        &to,
        "--cluster-slots",
        "60",
        "--cluster-yes",
    ]);
    assert!(ok, "{log}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (written, errors) = writer.join().unwrap();
    assert!(errors.is_empty(), "client-visible errors: {errors:?}");
    poll("consistent CLUSTER NODES after the reshard", 20, || {
        consistent(&ports)
    });
    check(ports[2]);
    check(ports[3]);
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}/", ports[1])])
            .unwrap();
    let mut con = client.get_connection().unwrap();
    for n in 0..written {
        let v: Option<u64> = redis::cmd("GET")
            .arg(format!("w:{n}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(v, Some(n), "key w:{n} lost");
    }
    println!("{written} keys written during the reshard, none lost");
}

fn myid(port: u16) -> String {
    redis_cli(&["-p", &port.to_string(), "cluster", "myid"])
        .1
        .trim()
        .to_string()
}

fn role(port: u16) -> String {
    redis_cli(&["-p", &port.to_string(), "role"])
        .1
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Writes `n` keys with the hash tag `{tag}` to the master at `port`, each acknowledged by a
/// replica (`WAIT 1 0`).
fn write_acked(port: u16, tag: &str, n: usize) -> Vec<String> {
    let mut con = common::RawConn::connect(([127, 0, 0, 1], port).into());
    let keys: Vec<String> = (0..n).map(|i| format!("{{{tag}}}:{i}")).collect();
    for k in &keys {
        assert_eq!(con.cmd(&["SET", k, k]), b"+OK\r\n");
    }
    assert_eq!(con.cmd(&["WAIT", "1", "0"]), b":1\r\n");
    keys
}

/// The master at `master_port` dies; the replica at `replica_port` must take its slots over.
fn kill_and_wait_for_failover(
    master: &Server,
    replica_port: u16,
    witness_port: u16,
    keys: &[String],
) {
    let replica_id = myid(replica_port);
    kill9(master);
    let took = poll("the replica promoted and seen as master", 60, || {
        role(replica_port) == "master"
            && cluster_nodes(witness_port).lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.first() == Some(&replica_id.as_str()) && w[2].contains("master") && w.len() > 8
            })
    });
    println!("failover took {took:?} (node timeout {NODE_TIMEOUT} ms)");
    poll("cluster_state:ok after the failover", 30, || {
        state_ok(witness_port)
    });
    let mut con = common::RawConn::connect(([127, 0, 0, 1], replica_port).into());
    for k in keys {
        assert_eq!(
            con.cmd(&["GET", k]),
            format!("${}\r\n{k}\r\n", k.len()).into_bytes(),
            "acknowledged write {k} lost"
        );
    }
}

#[test]
fn replicas_and_automatic_failover() {
    let first_dir = fresh_dir("cluster-bus");
    let first_cport = free_port();
    let mut nodes: Vec<Server> = vec![shardis_node_in(&first_dir, None, first_cport, NODE_TIMEOUT)];
    nodes.extend((0..5).map(|_| shardis_node()));
    let ports: Vec<u16> = nodes.iter().map(|n| n.port()).collect();
    create(&ports, 1);
    poll("every node sees cluster_state:ok", 20, || {
        ports.iter().all(|&p| state_ok(p))
    });
    poll("consistent CLUSTER NODES", 20, || consistent(&ports));
    check(ports[0]);
    // A master with its replica: the replica's line names the master.
    let master_id = myid(ports[0]);
    let replica_line = poll_line(ports[0], |w| w[3] == master_id);
    let replica_port: u16 = replica_line[1]
        .split(['@', ':'])
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap();
    poll("the replica's link is up", 20, || {
        redis_cli(&["-p", &replica_port.to_string(), "info", "replication"])
            .1
            .contains("master_link_status:up")
    });
    let slot0 = key_tag_for(&nodes[0]);
    let keys = write_acked(ports[0], &slot0, 50);
    kill_and_wait_for_failover(&nodes[0], replica_port, ports[1], &keys);
    let (_, log) = redis_cli(&["--cluster", "check", &format!("127.0.0.1:{}", ports[1])]);
    assert!(log.contains("[OK] All 16384 slots covered."), "{log}");
    // The old master comes back (same nodes.conf, same ports): it learns its slots moved on
    // (UPDATE), becomes a replica of the new master and copies its data.
    nodes[0] = shardis_node_in(&first_dir, Some(ports[0]), first_cport, NODE_TIMEOUT);
    let new_master = myid(replica_port);
    poll(
        "the old master rejoins as a replica of the new one",
        30,
        || {
            cluster_nodes(ports[0])
                .lines()
                .any(|l| l.contains("myself,slave") && l.contains(&new_master))
        },
    );
    poll("its replication link is up", 30, || {
        redis_cli(&["-p", &ports[0].to_string(), "info", "replication"])
            .1
            .contains("master_link_status:up")
    });
    let mut con = common::RawConn::connect(([127, 0, 0, 1], ports[0]).into());
    con.cmd(&["READONLY"]);
    let k = &keys[0];
    assert_eq!(
        con.cmd(&["GET", k]),
        format!("${}\r\n{k}\r\n", k.len()).into_bytes()
    );
}

/// The words of the first CLUSTER NODES line (seen from `port`) that `want` accepts.
fn poll_line(port: u16, want: impl Fn(&[&str]) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    poll("a matching CLUSTER NODES line", 20, || {
        let nodes = cluster_nodes(port);
        if let Some(l) = nodes.lines().find(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() >= 8 && want(&w)
        }) {
            found = l.split_whitespace().map(String::from).collect();
            true
        } else {
            false
        }
    });
    found
}

/// A hash tag whose slot the node at `node` serves.
fn key_tag_for(node: &Server) -> String {
    let mut con = node.raw();
    (0..100_000)
        .map(|i| format!("t{i}"))
        .find(|t| {
            let r = con.cmd(&["GET", &format!("{{{t}}}")]);
            !r.starts_with(b"-MOVED")
        })
        .unwrap()
}

#[test]
fn shardis_replica_takes_over_from_a_redis_master() {
    let theirs: Vec<RedisServer> = (0..2).map(|_| redis_node(NODE_TIMEOUT)).collect();
    let ours = shardis_node();
    let ports = vec![theirs[0].port(), ours.port(), theirs[1].port()];
    create(&ports, 0);
    poll("consistent CLUSTER NODES", 20, || consistent(&ports));
    // A shardis replica joins with add-node and follows the first redis-server master.
    let replica = shardis_node();
    let master_id = myid(ports[0]);
    let (ok, log) = redis_cli(&[
        "--cluster",
        "add-node",
        &format!("127.0.0.1:{}", replica.port()),
        &format!("127.0.0.1:{}", ports[0]),
        "--cluster-slave",
        "--cluster-master-id",
        &master_id,
    ]);
    assert!(ok, "{log}");
    let all = vec![ports[0], ports[1], ports[2], replica.port()];
    poll("the shardis replica is known everywhere", 20, || {
        consistent(&all)
    });
    poll("the shardis replica's link is up", 20, || {
        redis_cli(&["-p", &replica.port().to_string(), "info", "replication"])
            .1
            .contains("master_link_status:up")
    });
    check(replica.port());
    // Manual failovers both ways: the redis-server master pauses for the shardis replica
    // (MFSTART), then the shardis master pauses for the redis-server replica.
    for (to, from) in [(replica.port(), ports[0]), (ports[0], replica.port())] {
        // Every master must see the new roles first, or it refuses its vote (as Redis does).
        poll("every node sees the current roles", 20, || consistent(&all));
        poll(
            "the replica's link is up before a manual failover",
            20,
            || {
                redis_cli(&["-p", &to.to_string(), "info", "replication"])
                    .1
                    .contains("master_link_status:up")
            },
        );
        let (_, out) = redis_cli(&["-p", &to.to_string(), "cluster", "failover"]);
        assert_eq!(out.trim(), "OK");
        let start = Instant::now();
        while !(role(to) == "master" && role(from) == "slave") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no manual failover to {to}; logs:\n{}\n----\n{}",
                theirs[0].log(),
                replica.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("manual failover to {to}: {:?}", start.elapsed());
    }
    let tag = key_tag_for(&theirs[0]);
    let keys = write_acked(ports[0], &tag, 50);
    kill_and_wait_for_failover(&theirs[0], replica.port(), ports[2], &keys);
}

fn reshard(seed: u16, from: &str, to: &str, slots: usize) {
    let n = slots.to_string();
    let (ok, log) = redis_cli(&[
        "--cluster",
        "reshard",
        &format!("127.0.0.1:{seed}"),
        "--cluster-from",
        from,
        "--cluster-to",
        to,
        "--cluster-slots",
        &n,
        "--cluster-yes",
    ]);
    assert!(ok, "{log}");
}

#[test]
fn add_node_reshard_and_del_node_under_load() {
    let nodes: Vec<Server> = (0..3).map(|_| calm_shardis_node()).collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port()).collect();
    create(&ports, 0);
    poll("consistent CLUSTER NODES", 20, || consistent(&ports));
    let seed = format!("redis://127.0.0.1:{}/", ports[0]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let client = redis::cluster::ClusterClient::new(vec![seed]).unwrap();
        let mut con = client.get_connection().unwrap();
        let (mut n, mut errors) = (0u64, Vec::new());
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) || n < 1000 {
            let r: redis::RedisResult<()> = redis::cmd("SET")
                .arg(format!("a:{n}"))
                .arg(n)
                .query(&mut con);
            if let Err(e) = r {
                errors.push(e.to_string());
            }
            n += 1;
        }
        (n, errors)
    });
    // A new master joins, takes slots, gives them back and leaves.
    let extra = calm_shardis_node();
    let (ok, log) = redis_cli(&[
        "--cluster",
        "add-node",
        &format!("127.0.0.1:{}", extra.port()),
        &format!("127.0.0.1:{}", ports[0]),
    ]);
    assert!(ok, "{log}");
    let all = vec![ports[0], ports[1], ports[2], extra.port()];
    poll("the new node is known everywhere", 20, || consistent(&all));
    let (from, to) = (myid(ports[0]), myid(extra.port()));
    reshard(ports[1], &from, &to, 20);
    check(extra.port());
    reshard(ports[1], &to, &from, 20);
    check(ports[2]);
    let (ok, log) = redis_cli(&[
        "--cluster",
        "del-node",
        &format!("127.0.0.1:{}", ports[0]),
        &to,
    ]);
    assert!(ok, "{log}");
    poll("the removed node is forgotten", 20, || consistent(&ports));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (written, errors) = writer.join().unwrap();
    assert!(errors.is_empty(), "client-visible errors: {errors:?}");
    check(ports[1]);
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}/", ports[2])])
            .unwrap();
    let mut con = client.get_connection().unwrap();
    for n in 0..written {
        let v: Option<u64> = redis::cmd("GET")
            .arg(format!("a:{n}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(v, Some(n), "key a:{n} lost");
    }
    println!("{written} keys written during add-node, two reshards and del-node, none lost");
}

/// Garbage on the bus port drops that link and nothing else: bad signatures, impossible
/// lengths, and a real redis-server MEET with random bytes changed, many times over.
#[test]
fn malformed_bus_messages_drop_the_link_not_the_node() {
    use std::io::Write;
    let cport = free_port();
    let dir = fresh_dir("cluster-bus");
    let node = shardis_node_in(&dir, None, cport, CALM_NODE_TIMEOUT);
    let meet = include_bytes!("../src/cluster/bus/msg/testdata/redis7-meet.bin");
    let mut payloads: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        b"RCmb\xff\xff\xff\xff".to_vec(),
        b"RCmb\0\0\0\x08\0\x01".to_vec(),
        meet[..meet.len() - 7].to_vec(),
    ];
    let mut seed = 7u64;
    for _ in 0..300 {
        let mut m = meet.to_vec();
        for _ in 0..6 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (seed >> 33) as usize % m.len();
            m[at] = (seed >> 17) as u8;
        }
        // Most keep a valid frame, so the decoder (not the framing) sees the damage.
        if !seed.is_multiple_of(4) {
            m[..4].copy_from_slice(b"RCmb");
            let len = (m.len() as u32).to_be_bytes();
            m[4..8].copy_from_slice(&len);
        }
        payloads.push(m);
    }
    for p in &payloads {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", cport)) {
            let _ = s.write_all(p);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut con = node.raw();
    assert_eq!(con.cmd(&["PING"]), b"+PONG\r\n");
    assert!(text(&con.cmd(&["CLUSTER", "INFO"])).contains("cluster_known_nodes:"));
    // The bus still works: a real node can meet it.
    let other = calm_shardis_node();
    let (_, out) = redis_cli(&[
        "-p",
        &other.port().to_string(),
        "cluster",
        "meet",
        "127.0.0.1",
        &node.port().to_string(),
        &cport.to_string(),
    ]);
    assert_eq!(out.trim(), "OK");
    let other_id = myid(other.port());
    poll("the node meets a real peer after the garbage", 20, || {
        cluster_nodes(node.port())
            .lines()
            .any(|l| l.starts_with(&other_id) && !l.contains("handshake"))
    });
}
