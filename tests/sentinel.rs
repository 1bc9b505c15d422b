//! Sentinel mode through the real binaries: shardis sentinels fail over shardis nodes after a
//! SIGKILL, shardis and Redis sentinels find each other and follow each other's failovers,
//! redis-py's Sentinel client follows a failover through shardis sentinels, and SENTINEL's
//! replies match a Redis 7.0 sentinel's.
//!
//! Every process listens on a fixed port in 26400-26999 (a killed master restarts on its own
//! port); each test has its own range. Every wait polls its condition against a deadline.

mod common;

use common::{fresh_dir, RawConn};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SHARDIS: &str = env!("CARGO_BIN_EXE_shardis");

/// A process started by a test, SIGKILLed on drop.
struct Proc {
    child: Child,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, port: u16, dir: &Path, what: &str) -> Proc {
        std::fs::create_dir_all(dir).expect("creating the directory");
        let log = dir.join(format!("{what}-{port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let mut p = Proc {
            child,
            port,
            dir: dir.to_path_buf(),
            log,
        };
        p.wait_ready();
        p
    }

    /// A shardis data node (2 shards, no snapshots) with `extra` options.
    fn shardis(port: u16, dir: &Path, extra: &[&str]) -> Proc {
        let mut c = Command::new(SHARDIS);
        c.args([
            "--port",
            &port.to_string(),
            "--shards",
            "2",
            "--bind",
            "127.0.0.1",
        ])
        .args(["--save", "", "--dir", dir.to_str().unwrap_or(".")])
        .args(extra);
        Proc::spawn(c, port, dir, "shardis")
    }

    /// A redis-server data node.
    fn redis(port: u16, dir: &Path, extra: &[&str]) -> Proc {
        let mut c = Command::new("redis-server");
        c.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--dir", dir.to_str().unwrap_or(".")])
        .args(extra);
        Proc::spawn(c, port, dir, "redis")
    }

    /// A sentinel from `conf` (written to `<dir>/sentinel-<port>.conf`): shardis's, or Redis's
    /// when `real`.
    fn sentinel(port: u16, dir: &Path, conf: &str, real: bool) -> Proc {
        let path = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(&path, format!("port {port}\n{conf}")).expect("writing sentinel.conf");
        let mut c = Command::new(if real { "redis-server" } else { SHARDIS });
        c.arg(&path).arg("--sentinel");
        Proc::spawn(
            c,
            port,
            dir,
            if real { "redis-sentinel" } else { "sentinel" },
        )
    }

    fn conf(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("sentinel-{}.conf", self.port)))
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("port {} exited with {status}:\n{}", self.port, self.log());
            }
            if let Ok(mut c) = try_conn(self.port) {
                // A password-protected server is ready once it refuses politely.
                match redis::cmd("PING").query::<String>(&mut c) {
                    Ok(_) => return,
                    Err(e) if e.code() == Some("NOAUTH") => return,
                    Err(_) => {}
                }
            }
            assert!(
                Instant::now() < end,
                "port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn try_conn(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let c = client.get_connection_with_timeout(Duration::from_secs(2))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(c)
}

fn conn(port: u16) -> redis::Connection {
    try_conn(port).unwrap_or_else(|e| panic!("connecting to {port}: {e}"))
}

fn raw(port: u16) -> RawConn {
    RawConn::connect(([127, 0, 0, 1], port).into())
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SENTINEL GET-MASTER-ADDR-BY-NAME's port, if the sentinel answers.
fn master_port(sentinel: u16, name: &str) -> Option<u16> {
    let mut c = try_conn(sentinel).ok()?;
    let (_, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(name)
        .query(&mut c)
        .ok()?;
    Some(port)
}

/// A field of SENTINEL MASTER.
fn master_field(sentinel: u16, name: &str, field: &str) -> Option<String> {
    let mut c = try_conn(sentinel).ok()?;
    let kv: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(name)
        .query(&mut c)
        .ok()?;
    kv.chunks(2)
        .find(|p| p[0] == field)
        .and_then(|p| p.get(1).cloned())
}

fn info_field(port: u16, field: &str) -> Option<String> {
    let mut c = try_conn(port).ok()?;
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

fn monitor_conf(master: u16, quorum: u32) -> String {
    format!(
        "sentinel monitor mymaster 127.0.0.1 {master} {quorum}\n\
         sentinel down-after-milliseconds mymaster 1000\n\
         sentinel failover-timeout mymaster 3000\n"
    )
}

/// Subscribes to `channel` on a sentinel and returns the messages as they come.
fn subscribe(sentinel: u16, channel: &str) -> std::sync::mpsc::Receiver<String> {
    listen(sentinel, channel, false, |m| {
        m.get_payload::<String>().unwrap_or_default()
    })
}

/// Pattern-subscribes on a sentinel: (channel, message) pairs as they come.
fn psubscribe(sentinel: u16, pattern: &str) -> std::sync::mpsc::Receiver<(String, String)> {
    listen(sentinel, pattern, true, |m| {
        (
            m.get_channel_name().to_string(),
            m.get_payload::<String>().unwrap_or_default(),
        )
    })
}

/// (Pattern-)subscribes on a sentinel from a thread of its own, once subscribed returns what
/// `each` makes of the messages as they come.
fn listen<T: Send + 'static>(
    sentinel: u16,
    name: &str,
    pattern: bool,
    each: impl Fn(redis::Msg) -> T + Send + 'static,
) -> std::sync::mpsc::Receiver<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut c = conn(sentinel);
    let name = name.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut ps = c.as_pubsub();
        let subscribed = if pattern {
            ps.psubscribe(&name)
        } else {
            ps.subscribe(&name)
        };
        if subscribed.is_err() {
            return;
        }
        let _ = ready_tx.send(());
        let _ = ps.set_read_timeout(Some(Duration::from_millis(500)));
        loop {
            match ps.get_message() {
                Ok(m) => {
                    if tx.send(each(m)).is_err() {
                        return;
                    }
                }
                Err(e) if e.is_timeout() => continue,
                Err(_) => return,
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    rx
}

/// Three shardis sentinels fail a SIGKILLed shardis master over to one of its two replicas: the
/// acknowledged writes survive, the other replica follows, the old master comes back as a
/// replica, subscribers hear +switch-master and the config files hold the new master.
#[test]
fn failover_after_sigkill() {
    let dir = fresh_dir("sentinel-failover");
    let (m_port, r_ports, s_ports) = (26401, [26402, 26403], [26411, 26412, 26413]);
    let mut master = Proc::shardis(m_port, &dir.join("m"), &[]);
    let replicas: Vec<Proc> = r_ports
        .iter()
        .map(|&p| {
            let d = dir.join(format!("r{p}"));
            Proc::shardis(p, &d, &["--replicaof", "127.0.0.1", &m_port.to_string()])
        })
        .collect();
    wait_for("both replicas online", Duration::from_secs(30), || {
        info_field(m_port, "connected_slaves").as_deref() == Some("2")
            && r_ports
                .iter()
                .all(|&p| info_field(p, "master_link_status").as_deref() == Some("up"))
    });
    // Scripts: every sentinel appends what it runs them with to one file.
    let calls = dir.join("script-calls.txt");
    let script = dir.join("record.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .expect("writing the script");
    let _ = Command::new("chmod").arg("+x").arg(&script).status();
    let conf = monitor_conf(m_port, 2)
        + &format!(
            "sentinel notification-script mymaster {0}\nsentinel client-reconfig-script mymaster {0}\n",
            script.display()
        );
    let sentinels: Vec<Proc> = s_ports
        .iter()
        .map(|&p| Proc::sentinel(p, &dir, &conf, false))
        .collect();
    wait_for(
        "sentinels to know the replicas and each other",
        Duration::from_secs(30),
        || {
            s_ports.iter().all(|&s| {
                master_field(s, "mymaster", "num-slaves").as_deref() == Some("2")
                    && master_field(s, "mymaster", "num-other-sentinels").as_deref() == Some("2")
            })
        },
    );
    let switches = subscribe(s_ports[0], "+switch-master");
    let events = psubscribe(s_ports[1], "*");

    let mut c = conn(m_port);
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(i)
            .query(&mut c)
            .expect("SET");
    }
    let acked: i64 = redis::cmd("WAIT")
        .arg(2)
        .arg(5000)
        .query(&mut c)
        .expect("WAIT");
    assert_eq!(acked, 2, "both replicas acknowledge the writes");

    master.kill9();
    let killed = Instant::now();
    wait_for("a new master", Duration::from_secs(60), || {
        master_port(s_ports[0], "mymaster").is_some_and(|p| p != m_port)
    });
    let took = killed.elapsed();
    println!("failover: the sentinels named a new master {took:?} after the SIGKILL (down-after-milliseconds 1000)");
    let new_port = master_port(s_ports[0], "mymaster").unwrap_or(0);
    assert!(
        r_ports.contains(&new_port),
        "the new master is a replica: {new_port}"
    );
    wait_for("every sentinel to agree", Duration::from_secs(30), || {
        s_ports
            .iter()
            .all(|&s| master_port(s, "mymaster") == Some(new_port))
    });
    assert_eq!(info_field(new_port, "role").as_deref(), Some("master"));
    let other = if new_port == r_ports[0] {
        r_ports[1]
    } else {
        r_ports[0]
    };
    wait_for(
        "the other replica to follow",
        Duration::from_secs(30),
        || {
            info_field(other, "master_port") == Some(new_port.to_string())
                && info_field(other, "master_link_status").as_deref() == Some("up")
        },
    );
    let mut nc = conn(new_port);
    for i in 0..200 {
        let v: Option<i64> = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut nc)
            .expect("GET");
        assert_eq!(v, Some(i), "acknowledged write key:{i} survives");
    }
    let msg = switches
        .recv_timeout(Duration::from_secs(10))
        .expect("+switch-master published");
    // Another sentinel's events, as PSUBSCRIBE * hears them.
    let mut heard: Vec<(String, String)> = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while !heard.iter().any(|(c, _)| c == "+switch-master") && Instant::now() < end {
        if let Ok(ev) = events.recv_timeout(Duration::from_millis(100)) {
            heard.push(ev);
        }
    }
    let payload = |ch: &str| heard.iter().find(|(c, _)| c == ch).map(|(_, p)| p.clone());
    let old = format!("master mymaster 127.0.0.1 {m_port}");
    assert_eq!(payload("+sdown"), Some(old.clone()), "{heard:?}");
    assert!(
        payload("+odown").is_some_and(|p| p.starts_with(&format!("{old} #quorum "))),
        "{heard:?}"
    );
    assert!(payload("+new-epoch").is_some(), "{heard:?}");
    assert!(payload("+vote-for-leader").is_some(), "{heard:?}");
    assert_eq!(
        payload("+switch-master"),
        Some(format!("mymaster 127.0.0.1 {m_port} 127.0.0.1 {new_port}")),
        "{heard:?}"
    );
    assert_eq!(
        msg,
        format!("mymaster 127.0.0.1 {m_port} 127.0.0.1 {new_port}")
    );

    // The old master restarts, empty, believing it is a master: it is turned into a replica.
    let master = Proc::shardis(m_port, &dir.join("m"), &[]);
    let back = Instant::now();
    wait_for(
        "the old master to become a replica",
        Duration::from_secs(40),
        || {
            info_field(m_port, "role").as_deref() == Some("slave")
                && info_field(m_port, "master_port") == Some(new_port.to_string())
        },
    );
    println!(
        "failover: the restarted old master was converted after {:?}",
        back.elapsed()
    );
    wait_for("the old master to sync", Duration::from_secs(30), || {
        try_conn(m_port)
            .ok()
            .and_then(|mut c| {
                redis::cmd("GET")
                    .arg("key:7")
                    .query::<Option<i64>>(&mut c)
                    .ok()
            })
            .flatten()
            == Some(7)
    });
    wait_for(
        "the config files to be rewritten",
        Duration::from_secs(10),
        || {
            sentinels.iter().all(|s| {
                let conf = s.conf();
                conf.contains(&format!("sentinel monitor mymaster 127.0.0.1 {new_port} 2"))
                    && conf.contains(&format!(
                        "sentinel known-replica mymaster 127.0.0.1 {m_port}"
                    ))
                    && conf.contains("sentinel myid ")
            })
        },
    );
    let from = format!("127.0.0.1 {m_port} 127.0.0.1 {new_port}");
    wait_for("the scripts to run", Duration::from_secs(10), || {
        let calls = std::fs::read_to_string(&calls).unwrap_or_default();
        calls.contains(&format!("+switch-master mymaster {from}"))
            && calls.contains(&format!(
                "+odown master mymaster 127.0.0.1 {m_port} #quorum"
            ))
            && calls.contains(&format!("mymaster leader start {from}"))
            && calls.contains(&format!("mymaster leader end {from}"))
            && calls.contains(&format!("mymaster observer start {from}"))
    });
    let log = sentinels.iter().map(|s| s.log()).collect::<String>();
    for ev in [
        "+sdown",
        "+odown",
        "+try-failover",
        "+elected-leader",
        "+promoted-slave",
        "+failover-end",
        "+convert-to-slave",
    ] {
        assert!(log.contains(ev), "{ev} logged:\n{log}");
    }
    drop((master, replicas));
}

/// The ids in SENTINEL SENTINELS.
fn known_sentinels(sentinel: u16) -> Vec<String> {
    let Ok(mut c) = try_conn(sentinel) else {
        return Vec::new();
    };
    let list: Vec<Vec<String>> = redis::cmd("SENTINEL")
        .arg("SENTINELS")
        .arg("mymaster")
        .query(&mut c)
        .unwrap_or_default();
    let mut ids: Vec<String> = list
        .iter()
        .filter_map(|kv| kv.chunks(2).find(|p| p[0] == "runid").map(|p| p[1].clone()))
        .collect();
    ids.sort();
    ids
}

/// Whether a sentinel sees `n` replicas, all reporting role slave with a working link to
/// `master`.
fn replicas_settled(sentinel: u16, master: u16, n: usize) -> bool {
    let Ok(mut c) = try_conn(sentinel) else {
        return false;
    };
    let list: Vec<Vec<String>> = redis::cmd("SENTINEL")
        .arg("REPLICAS")
        .arg("mymaster")
        .query(&mut c)
        .unwrap_or_default();
    let field = |kv: &Vec<String>, f: &str| {
        kv.chunks(2)
            .find(|p| p[0] == f)
            .and_then(|p| p.get(1).cloned())
            .unwrap_or_default()
    };
    list.len() == n
        && list.iter().all(|kv| {
            field(kv, "flags") == "slave"
                && field(kv, "role-reported") == "slave"
                && field(kv, "master-link-status") == "ok"
                && field(kv, "master-port") == master.to_string()
        })
}

fn myid(sentinel: u16) -> String {
    redis::cmd("SENTINEL")
        .arg("MYID")
        .query(&mut conn(sentinel))
        .expect("SENTINEL MYID")
}

/// Sends SENTINEL FAILOVER until the sentinel accepts it (it needs a fresh INFO from a replica).
fn force_failover(sentinel: u16) {
    wait_for(
        "SENTINEL FAILOVER to be accepted",
        Duration::from_secs(30),
        || {
            redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg("mymaster")
                .query::<String>(&mut conn(sentinel))
                .is_ok()
        },
    );
}

/// A Redis sentinel and two shardis sentinels find each other through hello messages; a
/// failover led by the Redis sentinel is followed by the shardis ones, and one led by a shardis
/// sentinel is followed by the Redis one.
#[test]
fn interop_with_redis_sentinel() {
    let dir = fresh_dir("sentinel-interop");
    let (m_port, r_ports, s_ports) = (26421, [26422, 26423], [26431, 26432, 26433]);
    let mut nodes = vec![Proc::shardis(m_port, &dir.join("m"), &[])];
    for p in r_ports {
        let d = dir.join(format!("r{p}"));
        nodes.push(Proc::shardis(
            p,
            &d,
            &["--replicaof", "127.0.0.1", &m_port.to_string()],
        ));
    }
    wait_for("both replicas online", Duration::from_secs(30), || {
        info_field(m_port, "connected_slaves").as_deref() == Some("2")
            && r_ports
                .iter()
                .all(|&p| info_field(p, "master_link_status").as_deref() == Some("up"))
    });
    let sentinels: Vec<Proc> = s_ports
        .iter()
        .enumerate()
        .map(|(i, &p)| Proc::sentinel(p, &dir, &monitor_conf(m_port, 2), i == 0))
        .collect();
    let ids: Vec<String> = s_ports.iter().map(|&p| myid(p)).collect();
    wait_for(
        "every sentinel to know the two others",
        Duration::from_secs(30),
        || {
            s_ports.iter().enumerate().all(|(i, &p)| {
                let mut want: Vec<String> = ids
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, id)| id.clone())
                    .collect();
                want.sort();
                known_sentinels(p) == want
            })
        },
    );

    // The Redis sentinel and a shardis one describe the replicas and the third sentinel with the
    // same fields in the same order.
    wait_for(
        "both to see two healthy replicas",
        Duration::from_secs(30),
        || s_ports[..2].iter().all(|&s| replicas_settled(s, m_port, 2)),
    );
    for (sub, key) in [
        ("REPLICAS", "127.0.0.1:26422"),
        ("SENTINELS", ids[2].as_str()),
    ] {
        let fields = |port: u16| -> Vec<String> {
            let list: Vec<Vec<String>> = redis::cmd("SENTINEL")
                .arg(sub)
                .arg("mymaster")
                .query(&mut conn(port))
                .unwrap_or_default();
            list.iter()
                .find(|kv| kv.get(1).map(String::as_str) == Some(key))
                .map(|kv| kv.chunks(2).map(|p| p[0].clone()).collect())
                .unwrap_or_default()
        };
        let ours = fields(s_ports[1]);
        assert!(!ours.is_empty(), "SENTINEL {sub} lists {key}");
        assert_eq!(ours, fields(s_ports[0]), "SENTINEL {sub} fields");
    }

    // The Redis sentinel leads a failover; the shardis sentinels follow it.
    force_failover(s_ports[0]);
    wait_for(
        "the Redis sentinel to name a new master",
        Duration::from_secs(30),
        || master_port(s_ports[0], "mymaster").is_some_and(|p| p != m_port),
    );
    let first = master_port(s_ports[0], "mymaster").unwrap_or(0);
    wait_for(
        "the shardis sentinels to follow",
        Duration::from_secs(30),
        || {
            s_ports[1..]
                .iter()
                .all(|&s| master_port(s, "mymaster") == Some(first))
        },
    );
    wait_for(
        "the old master to replicate from the new one",
        Duration::from_secs(30),
        || {
            info_field(m_port, "master_port") == Some(first.to_string())
                && info_field(m_port, "master_link_status").as_deref() == Some("up")
        },
    );

    // A shardis sentinel leads the next one; the Redis sentinel follows it.
    wait_for(
        "every sentinel to see two healthy replicas",
        Duration::from_secs(30),
        || s_ports.iter().all(|&s| replicas_settled(s, first, 2)),
    );
    force_failover(s_ports[1]);
    wait_for(
        "the shardis sentinel to name a new master",
        Duration::from_secs(30),
        || master_port(s_ports[1], "mymaster").is_some_and(|p| p != first),
    );
    let second = master_port(s_ports[1], "mymaster").unwrap_or(0);
    wait_for(
        "the Redis sentinel to follow",
        Duration::from_secs(30),
        || master_port(s_ports[0], "mymaster") == Some(second),
    );
    assert_eq!(info_field(second, "role").as_deref(), Some("master"));
    drop((sentinels, nodes));
}

/// redis-py's `Sentinel` finds a password-protected redis-server master through a shardis
/// sentinel (using `auth-pass`), writes, and after a failover finds the new master (with the
/// data).
#[test]
fn redis_py_follows_failover() {
    let Some(python) = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import redis.sentinel"])
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("SKIPPED: no python3 with redis-py (run scripts/install-deps.sh)");
        return;
    };
    let dir = fresh_dir("sentinel-redis-py");
    let (m_port, r_port, s_port) = (26441, 26442, 26451);
    let auth = ["--requirepass", "secret", "--masterauth", "secret"];
    let _m = Proc::redis(m_port, &dir, &auth);
    let m = m_port.to_string();
    let replica_args = [&auth[..], &["--replicaof", "127.0.0.1", &m]].concat();
    let _r = Proc::redis(r_port, &dir, &replica_args);
    let info = |port: u16, field: &str| -> Option<String> {
        let client = redis::Client::open(format!("redis://:secret@127.0.0.1:{port}/")).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        let info: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_string())
    };
    wait_for("the replica online", Duration::from_secs(30), || {
        info(r_port, "master_link_status").as_deref() == Some("up")
    });
    let conf = monitor_conf(m_port, 1) + "sentinel auth-pass mymaster secret\n";
    let _s = Proc::sentinel(s_port, &dir, &conf, false);
    let script = r#"
import sys
from redis.sentinel import Sentinel
s = Sentinel([('127.0.0.1', int(sys.argv[1]))], socket_timeout=2)
m = s.master_for('mymaster', socket_timeout=2, password='secret')
old = m.get('pykey')
m.set('pykey', sys.argv[2])
print(s.discover_master('mymaster')[1], old.decode() if old else '-', m.get('pykey').decode())
"#;
    let py = |value: &str| -> String {
        let out = Command::new(python)
            .args(["-c", script, &s_port.to_string(), value])
            .output()
            .expect("running python3");
        assert!(
            out.status.success(),
            "redis-py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    wait_for(
        "the sentinel to know the replica",
        Duration::from_secs(30),
        || master_field(s_port, "mymaster", "num-slaves").as_deref() == Some("1"),
    );
    assert_eq!(py("one"), format!("{m_port} - one"));
    wait_for(
        "the write to reach the replica",
        Duration::from_secs(10),
        || info(r_port, "slave_repl_offset") == info(m_port, "master_repl_offset"),
    );
    force_failover(s_port);
    wait_for("the failover", Duration::from_secs(30), || {
        master_port(s_port, "mymaster") == Some(r_port)
            && info(r_port, "role").as_deref() == Some("master")
    });
    assert_eq!(py("two"), format!("{r_port} one two"));
}

/// The deterministic replies of a shardis sentinel and a Redis 7.0 sentinel, byte for byte.
#[test]
fn replies_match_redis_sentinel() {
    let dir = fresh_dir("sentinel-replies");
    let (ours, theirs, nobody) = (26461, 26462, 26469);
    let conf = format!(
        "sentinel monitor mymaster 127.0.0.1 {nobody} 2\nsentinel down-after-milliseconds mymaster 60000\n"
    );
    let mut s = Proc::sentinel(ours, &dir, &conf, false);
    let _real = Proc::sentinel(theirs, &dir, &conf, true);
    let cases: &[&[&str]] = &[
        &["SENTINEL", "MASTER", "nope"],
        &["SENTINEL", "FOO"],
        &["SENTINEL", "MASTER"],
        &["SENTINEL"],
        &["SENTINEL", "SET", "mymaster", "quorum", "0"],
        &[
            "SENTINEL",
            "SET",
            "mymaster",
            "down-after-milliseconds",
            "abc",
        ],
        &["SENTINEL", "SET", "mymaster", "foo", "1"],
        &["SENTINEL", "SET", "mymaster", "quorum"],
        &["SENTINEL", "SET", "nope", "quorum", "1"],
        &[
            "SENTINEL",
            "SET",
            "mymaster",
            "notification-script",
            "/bin/true",
        ],
        &["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", "26468", "2"],
        &["SENTINEL", "MONITOR", "m2", "127.0.0.1", "abc", "2"],
        &["SENTINEL", "MONITOR", "m2", "127.0.0.1", "26468", "0"],
        &["SENTINEL", "MONITOR", "m2", "127.0.0.1", "26468", "x"],
        &["SENTINEL", "MONITOR", "m2", "bad..host", "26468", "1"],
        &["SENTINEL", "REMOVE", "nope"],
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nope"],
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
        &["SENTINEL", "CKQUORUM", "mymaster"],
        &["SENTINEL", "CKQUORUM", "nope"],
        &["SENTINEL", "FAILOVER", "mymaster"],
        &["SENTINEL", "FAILOVER", "nope"],
        &["SENTINEL", "REPLICAS", "mymaster"],
        &["SENTINEL", "SLAVES", "nope"],
        &["SENTINEL", "SENTINELS", "mymaster"],
        &[
            "SENTINEL",
            "IS-MASTER-DOWN-BY-ADDR",
            "127.0.0.1",
            "x",
            "0",
            "*",
        ],
        &[
            "SENTINEL",
            "IS-MASTER-DOWN-BY-ADDR",
            "10.0.0.1",
            "1",
            "0",
            "*",
        ],
        &[
            "SENTINEL",
            "IS-MASTER-DOWN-BY-ADDR",
            "127.0.0.1",
            "26469",
            "0",
            "*",
        ],
        &["SENTINEL", "RESET", "nope"],
        &["SENTINEL", "RESET", "*"],
        &["SENTINEL", "PENDING-SCRIPTS"],
        &["SENTINEL", "SIMULATE-FAILURE", "HELP"],
        &["SENTINEL", "SIMULATE-FAILURE", "foo"],
        &["SENTINEL", "CONFIG", "GET", "announce-port"],
        &["SENTINEL", "CONFIG", "SET", "announce-port", "abc"],
        &["SENTINEL", "CONFIG", "SET", "foo", "bar"],
        &["SENTINEL", "CONFIG", "foo", "bar"],
        &["SENTINEL", "INFO-CACHE", "nope"],
        &["SENTINEL", "MYID", "x"],
        &["PING"],
        &["PING", "hello"],
        &["ROLE"],
        &["GET", "x"],
        &["PUBLISH", "foo", "bar"],
        &["CLIENT", "GETNAME"],
        &["CLIENT", "SETNAME", "a b"],
        &["CLIENT", "FOO"],
        &["AUTH", "x"],
        &["HELLO", "4"],
        &["COMMAND", "COUNT"],
    ];
    let (mut a, mut b) = (raw(ours), raw(theirs));
    for args in cases {
        let (x, y) = (a.cmd(args), b.cmd(args));
        assert_eq!(
            String::from_utf8_lossy(&x),
            String::from_utf8_lossy(&y),
            "reply to {args:?}"
        );
    }
    // The same in RESP3 (the ids in HELLO's reply differ).
    let (mut a, mut b) = (raw(ours), raw(theirs));
    let (x, y) = (a.cmd(&["HELLO", "3"]), b.cmd(&["HELLO", "3"]));
    let without_id = |r: Vec<u8>| -> String {
        let t = String::from_utf8_lossy(&r).into_owned();
        match t.split_once("$2\r\nid\r\n:") {
            Some((head, tail)) => format!("{head}{}", tail.split_once("\r\n").map_or("", |p| p.1)),
            None => t,
        }
    };
    assert_eq!(without_id(x), without_id(y), "HELLO 3");
    for args in [
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nope"][..],
        &["SENTINEL", "REPLICAS", "mymaster"],
        &[
            "SENTINEL",
            "IS-MASTER-DOWN-BY-ADDR",
            "10.0.0.1",
            "1",
            "0",
            "*",
        ],
        &["SENTINEL", "CONFIG", "GET", "announce-*"],
        &["SENTINEL", "DEBUG"],
        &["SENTINEL", "INFO-CACHE", "mymaster"],
        &["PING"],
    ] {
        let (x, y) = (a.cmd(args), b.cmd(args));
        assert_eq!(
            String::from_utf8_lossy(&x),
            String::from_utf8_lossy(&y),
            "RESP3 reply to {args:?}"
        );
    }

    // SENTINEL MASTER: the same fields in the same order.
    let fields = |port: u16| -> Vec<String> {
        let kv: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg("mymaster")
            .query(&mut conn(port))
            .expect("SENTINEL MASTER");
        kv.chunks(2).map(|p| p[0].clone()).collect()
    };
    assert_eq!(fields(ours), fields(theirs));
    let master0 = |port: u16| -> Option<String> {
        let info: String = redis::cmd("INFO")
            .arg("sentinel")
            .query(&mut conn(port))
            .ok()?;
        info.lines()
            .find(|l| l.starts_with("master0:"))
            .map(str::to_string)
    };
    assert_eq!(master0(ours), master0(theirs));
    assert_eq!(
        master0(ours).as_deref(),
        Some("master0:name=mymaster,status=ok,address=127.0.0.1:26469,slaves=0,sentinels=1")
    );

    // A malformed request gets Redis's protocol error; the sentinel goes on.
    let mut bad = raw(ours);
    bad.send(b"*x\r\n");
    assert_eq!(
        bad.read_reply(),
        b"-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert_eq!(raw(ours).cmd(&["PING"]), b"+PONG\r\n");

    // The generated id and every change are saved in the config file, and survive a restart.
    let id = myid(ours);
    assert_eq!(id.len(), 40);
    let mut c = conn(ours);
    let ok: String = redis::cmd("SENTINEL")
        .arg("SET")
        .arg("mymaster")
        .arg("down-after-milliseconds")
        .arg(5000)
        .arg("quorum")
        .arg(1)
        .query(&mut c)
        .expect("SENTINEL SET");
    assert_eq!(ok, "OK");
    let ok: String = redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg("other")
        .arg("127.0.0.1")
        .arg(26468)
        .arg(3)
        .query(&mut c)
        .expect("SENTINEL MONITOR");
    assert_eq!(ok, "OK");
    let conf = s.conf();
    for line in [
        format!("sentinel myid {id}"),
        format!("sentinel monitor mymaster 127.0.0.1 {nobody} 1"),
        "sentinel down-after-milliseconds mymaster 5000".to_string(),
        "sentinel monitor other 127.0.0.1 26468 3".to_string(),
        "sentinel current-epoch 0".to_string(),
    ] {
        assert!(conf.contains(&line), "{line:?} in\n{conf}");
    }
    let ok: String = redis::cmd("SENTINEL")
        .arg("REMOVE")
        .arg("other")
        .query(&mut c)
        .expect("SENTINEL REMOVE");
    assert_eq!(ok, "OK");
    assert!(!s.conf().contains("other"));
    s.kill9();
    let path = dir.join(format!("sentinel-{ours}.conf"));
    let mut c = Command::new(SHARDIS);
    c.arg(&path).arg("--sentinel");
    let _s = Proc::spawn(c, ours, &dir, "sentinel-again");
    assert_eq!(myid(ours), id);
    assert_eq!(
        master_field(ours, "mymaster", "down-after-milliseconds").as_deref(),
        Some("5000")
    );
    assert_eq!(
        master_field(ours, "mymaster", "quorum").as_deref(),
        Some("1")
    );

    // A Redis sentinel loads the file shardis wrote.
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).expect("mkdir");
    std::fs::copy(&path, copy.join("sentinel.conf")).expect("copying the config");
    let mut c = Command::new("redis-server");
    c.arg(copy.join("sentinel.conf"))
        .args(["--sentinel", "--port", "26463", "--dir"])
        .arg(&copy);
    let _real = Proc::spawn(c, 26463, &copy, "redis-sentinel-copy");
    assert_eq!(myid(26463), id);
    assert_eq!(
        master_field(26463, "mymaster", "down-after-milliseconds").as_deref(),
        Some("5000")
    );
}

/// `requirepass` on the sentinel: the same answers as a Redis sentinel before and after AUTH.
#[test]
fn sentinel_requirepass() {
    let dir = fresh_dir("sentinel-auth");
    let (ours, theirs) = (26471, 26472);
    let conf = "requirepass sentpass\nsentinel monitor mymaster 127.0.0.1 26479 1\n";
    let _s = Proc::sentinel(ours, &dir, conf, false);
    let _r = Proc::sentinel(theirs, &dir, conf, true);
    let cases: &[&[&str]] = &[
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
        &["AUTH", "wrong"],
        &["AUTH", "default", "wrong"],
        &["AUTH", "sentpass"],
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
    ];
    let (mut a, mut b) = (raw(ours), raw(theirs));
    for args in cases {
        let (x, y) = (a.cmd(args), b.cmd(args));
        assert_eq!(
            String::from_utf8_lossy(&x),
            String::from_utf8_lossy(&y),
            "reply to {args:?}"
        );
    }
}

/// Garbage from clients and from a monitored "instance" neither stops the sentinel nor
/// confuses it: it keeps answering and sees the instance as down.
#[test]
fn garbage_does_not_stop_the_sentinel() {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let dir = fresh_dir("sentinel-garbage");
    let (s_port, fake_port) = (26481, 26489);
    // A fake instance answering everything with junk (bad lengths, invalid UTF-8, half replies).
    let listener = std::net::TcpListener::bind(("127.0.0.1", fake_port)).expect("bind");
    std::thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let junk: Vec<u8> = match rng.gen_range(0..4) {
                0 => (0..rng.gen_range(1..300)).map(|_| rng.gen()).collect(),
                1 => b"$99999999999\r\n".to_vec(),
                2 => {
                    b"*3\r\n$7\r\nmessage\r\n$18\r\n__sentinel__:hello\r\n$3\r\n\xff,1\r\n".to_vec()
                }
                _ => b"\xef\xbf\xbd\r\n+PONG".to_vec(),
            };
            let _ = s.write_all(&junk);
        }
    });
    let conf = format!(
        "sentinel monitor mymaster 127.0.0.1 {fake_port} 1\nsentinel down-after-milliseconds mymaster 1000\n"
    );
    let _s = Proc::sentinel(s_port, &dir, &conf, false);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for i in 0..300 {
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", s_port)) else {
            panic!("the sentinel stopped accepting connections after {i} garbage clients");
        };
        let junk: Vec<u8> = match i % 3 {
            0 => (0..rng.gen_range(1..400)).map(|_| rng.gen()).collect(),
            1 => b"*2\r\n$8\r\nsentinel\r\n$-7\r\n".to_vec(),
            _ => {
                b"*3\r\n$7\r\nPUBLISH\r\n$18\r\n__sentinel__:hello\r\n$4\r\n\xff\xfe,,\r\n".to_vec()
            }
        };
        let _ = c.write_all(&junk);
    }
    wait_for(
        "the fake instance to be seen as down",
        Duration::from_secs(20),
        || master_field(s_port, "mymaster", "flags").is_some_and(|f| f.starts_with("s_down")),
    );
    assert_eq!(raw(s_port).cmd(&["PING"]), b"+PONG\r\n");
}

/// `shardis --sentinel` without a config file: monitors what SENTINEL MONITOR tells it to;
/// after being stopped for a few seconds it enters TILT mode.
#[test]
fn sentinel_without_config_file() {
    let dir = fresh_dir("sentinel-noconf");
    let port = 26491;
    let mut c = Command::new(SHARDIS);
    c.args(["--sentinel", "--port", &port.to_string()]);
    let s = Proc::spawn(c, port, &dir, "sentinel-noconf");
    let ok: String = redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg("m")
        .arg("127.0.0.1")
        .arg(26499)
        .arg(1)
        .query(&mut conn(port))
        .expect("SENTINEL MONITOR");
    assert_eq!(ok, "OK");
    assert_eq!(master_port(port, "m"), Some(26499));
    let role: (String, Vec<String>) = redis::cmd("ROLE").query(&mut conn(port)).expect("ROLE");
    assert_eq!(role, ("sentinel".to_string(), vec!["m".to_string()]));

    // Stopped for longer than the TILT trigger (2 s), it distrusts its clocks for a while.
    let mut tilts = raw(port);
    tilts.cmd(&["SUBSCRIBE", "+tilt"]);
    let pid = s.child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_eq!(
        String::from_utf8_lossy(&tilts.read_reply()),
        "*3\r\n$7\r\nmessage\r\n$5\r\n+tilt\r\n$18\r\n#tilt mode entered\r\n"
    );
    let info: String = redis::cmd("INFO")
        .arg("sentinel")
        .query(&mut conn(port))
        .expect("INFO");
    assert!(info.contains("sentinel_tilt:1\r\n"), "{info}");
}

/// A replica that follows the wrong master is put back (+fix-slave-config), with the INFO
/// period shortened through SENTINEL DEBUG.
#[test]
fn replica_of_the_wrong_master_is_fixed() {
    let dir = fresh_dir("sentinel-fix");
    let (m_port, r1, r2, s_port) = (26501, 26502, 26503, 26511);
    let m = m_port.to_string();
    let _m = Proc::shardis(m_port, &dir.join("m"), &[]);
    let _r1 = Proc::shardis(r1, &dir.join("r1"), &["--replicaof", "127.0.0.1", &m]);
    let _r2 = Proc::shardis(r2, &dir.join("r2"), &["--replicaof", "127.0.0.1", &m]);
    wait_for("both replicas online", Duration::from_secs(30), || {
        [r1, r2]
            .iter()
            .all(|&p| info_field(p, "master_link_status").as_deref() == Some("up"))
    });
    let _s = Proc::sentinel(s_port, &dir, &monitor_conf(m_port, 1), false);
    let ok: String = redis::cmd("SENTINEL")
        .arg("DEBUG")
        .arg("INFO-PERIOD")
        .arg(500)
        .query(&mut conn(s_port))
        .expect("SENTINEL DEBUG");
    assert_eq!(ok, "OK");
    wait_for(
        "the sentinel to know both replicas",
        Duration::from_secs(30),
        || replicas_settled(s_port, m_port, 2),
    );
    let fixes = subscribe(s_port, "+fix-slave-config");
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(r1)
        .query(&mut conn(r2))
        .expect("REPLICAOF");
    let msg = fixes
        .recv_timeout(Duration::from_secs(30))
        .expect("+fix-slave-config published");
    assert_eq!(
        msg,
        format!("slave 127.0.0.1:{r2} 127.0.0.1 {r2} @ mymaster 127.0.0.1 {m_port}")
    );
    wait_for(
        "the replica to follow the master again",
        Duration::from_secs(30),
        || {
            info_field(r2, "master_port") == Some(m.clone())
                && info_field(r2, "master_link_status").as_deref() == Some("up")
        },
    );
}

/// The promoted replica is the one with the lowest non-zero priority (redis-server replicas,
/// `replica-priority`).
#[test]
fn failover_respects_replica_priority() {
    let dir = fresh_dir("sentinel-priority");
    let (m_port, r0, r1, r2, s_port) = (26521, 26522, 26523, 26524, 26531);
    let m = m_port.to_string();
    let _m = Proc::redis(m_port, &dir, &[]);
    let replica = |port: u16, priority: &str| {
        Proc::redis(
            port,
            &dir,
            &[
                "--replicaof",
                "127.0.0.1",
                &m,
                "--replica-priority",
                priority,
            ],
        )
    };
    let _r0 = replica(r0, "0");
    let _r1 = replica(r1, "50");
    let _r2 = replica(r2, "10");
    wait_for("three replicas online", Duration::from_secs(30), || {
        [r0, r1, r2]
            .iter()
            .all(|&p| info_field(p, "master_link_status").as_deref() == Some("up"))
    });
    let _s = Proc::sentinel(s_port, &dir, &monitor_conf(m_port, 1), false);
    wait_for(
        "the sentinel to know the replicas",
        Duration::from_secs(30),
        || replicas_settled(s_port, m_port, 3),
    );
    force_failover(s_port);
    wait_for("the failover", Duration::from_secs(30), || {
        master_port(s_port, "mymaster").is_some_and(|p| p != m_port)
    });
    assert_eq!(master_port(s_port, "mymaster"), Some(r2));
}

/// Instances with renamed commands (`sentinel rename-command`): monitored and failed over with
/// their own command names.
#[test]
fn renamed_commands() {
    let dir = fresh_dir("sentinel-renamed");
    let (m_port, r_port, s_port) = (26541, 26542, 26551);
    let m = m_port.to_string();
    let renames = [
        "--rename-command",
        "INFO",
        "INFO-X",
        "--rename-command",
        "SLAVEOF",
        "SLAVEOF-X",
        "--rename-command",
        "REPLICAOF",
        "",
        "--rename-command",
        "CONFIG",
        "CONFIG-X",
    ];
    let _m = Proc::redis(m_port, &dir, &renames);
    let replica_args = [&renames[..], &["--replicaof", "127.0.0.1", &m]].concat();
    let _r = Proc::redis(r_port, &dir, &replica_args);
    let field = |port: u16, name: &str| -> Option<String> {
        let info: String = redis::cmd("INFO-X")
            .arg("replication")
            .query(&mut try_conn(port).ok()?)
            .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_string())
    };
    let role = |port: u16| field(port, "role");
    wait_for("the replica online", Duration::from_secs(30), || {
        field(r_port, "master_link_status").as_deref() == Some("up")
    });
    let conf = monitor_conf(m_port, 1)
        + "sentinel rename-command mymaster INFO INFO-X\n\
           sentinel rename-command mymaster SLAVEOF SLAVEOF-X\n\
           sentinel rename-command mymaster CONFIG CONFIG-X\n";
    let _s = Proc::sentinel(s_port, &dir, &conf, false);
    wait_for(
        "the sentinel to know the replica",
        Duration::from_secs(30),
        || replicas_settled(s_port, m_port, 1),
    );
    force_failover(s_port);
    wait_for("the failover", Duration::from_secs(30), || {
        master_port(s_port, "mymaster") == Some(r_port) && role(r_port).as_deref() == Some("master")
    });
}
