//! Sentinel mode through the real binaries: shardis sentinels fail over shardis nodes after a
//! SIGKILL, shardis and Redis sentinels find each other and follow each other's failovers,
//! redis-py's Sentinel client follows a failover through shardis sentinels, and SENTINEL's
//! replies match a Redis 7.0 sentinel's.
//!
//! Every process listens on a fixed port in 26400-26999 (a killed master restarts on its own
//! port); each test has its own range. Every wait polls its condition against a deadline.

mod common;

use common::{fresh_dir, RawConn};
use std::io::Read;
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
        c.args(["--port", &port.to_string(), "--shards", "2", "--bind", "127.0.0.1"])
            .args(["--save", "", "--dir", dir.to_str().unwrap_or(".")])
            .args(extra);
        Proc::spawn(c, port, dir, "shardis")
    }

    /// A redis-server data node.
    fn redis(port: u16, dir: &Path, extra: &[&str]) -> Proc {
        let mut c = Command::new("redis-server");
        c.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
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
        Proc::spawn(c, port, dir, if real { "redis-sentinel" } else { "sentinel" })
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
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < end, "port {} never answered PING", self.port);
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
        assert!(Instant::now() < end, "timed out after {limit:?} waiting for {what}");
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
    let (tx, rx) = std::sync::mpsc::channel();
    let mut c = conn(sentinel);
    let channel = channel.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut ps = c.as_pubsub();
        if ps.subscribe(&channel).is_err() {
            return;
        }
        let _ = ready_tx.send(());
        let _ = ps.set_read_timeout(Some(Duration::from_millis(500)));
        loop {
            match ps.get_message() {
                Ok(m) => {
                    if tx.send(m.get_payload::<String>().unwrap_or_default()).is_err() {
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
    let sentinels: Vec<Proc> = s_ports
        .iter()
        .map(|&p| Proc::sentinel(p, &dir, &monitor_conf(m_port, 2), false))
        .collect();
    wait_for("sentinels to know the replicas and each other", Duration::from_secs(30), || {
        s_ports.iter().all(|&s| {
            master_field(s, "mymaster", "num-slaves").as_deref() == Some("2")
                && master_field(s, "mymaster", "num-other-sentinels").as_deref() == Some("2")
        })
    });
    let switches = subscribe(s_ports[0], "+switch-master");

    let mut c = conn(m_port);
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(i)
            .query(&mut c)
            .expect("SET");
    }
    let acked: i64 = redis::cmd("WAIT").arg(2).arg(5000).query(&mut c).expect("WAIT");
    assert_eq!(acked, 2, "both replicas acknowledge the writes");

    master.kill9();
    let killed = Instant::now();
    wait_for("a new master", Duration::from_secs(60), || {
        master_port(s_ports[0], "mymaster").is_some_and(|p| p != m_port)
    });
    let took = killed.elapsed();
    println!("failover: the sentinels named a new master {took:?} after the SIGKILL (down-after-milliseconds 1000)");
    let new_port = master_port(s_ports[0], "mymaster").unwrap_or(0);
    assert!(r_ports.contains(&new_port), "the new master is a replica: {new_port}");
    wait_for("every sentinel to agree", Duration::from_secs(30), || {
        s_ports
            .iter()
            .all(|&s| master_port(s, "mymaster") == Some(new_port))
    });
    assert_eq!(info_field(new_port, "role").as_deref(), Some("master"));
    let other = if new_port == r_ports[0] { r_ports[1] } else { r_ports[0] };
    wait_for("the other replica to follow", Duration::from_secs(30), || {
        info_field(other, "master_port") == Some(new_port.to_string())
            && info_field(other, "master_link_status").as_deref() == Some("up")
    });
    let mut nc = conn(new_port);
    for i in 0..200 {
        let v: Option<i64> = redis::cmd("GET").arg(format!("key:{i}")).query(&mut nc).expect("GET");
        assert_eq!(v, Some(i), "acknowledged write key:{i} survives");
    }
    let msg = switches
        .recv_timeout(Duration::from_secs(10))
        .expect("+switch-master published");
    assert_eq!(msg, format!("mymaster 127.0.0.1 {m_port} 127.0.0.1 {new_port}"));

    // The old master restarts, empty, believing it is a master: it is turned into a replica.
    let master = Proc::shardis(m_port, &dir.join("m"), &[]);
    let back = Instant::now();
    wait_for("the old master to become a replica", Duration::from_secs(40), || {
        info_field(m_port, "role").as_deref() == Some("slave")
            && info_field(m_port, "master_port") == Some(new_port.to_string())
    });
    println!("failover: the restarted old master was converted after {:?}", back.elapsed());
    wait_for("the old master to sync", Duration::from_secs(30), || {
        try_conn(m_port)
            .ok()
            .and_then(|mut c| redis::cmd("GET").arg("key:7").query::<Option<i64>>(&mut c).ok())
            .flatten()
            == Some(7)
    });
    wait_for("the config files to be rewritten", Duration::from_secs(10), || {
        sentinels.iter().all(|s| {
            let conf = s.conf();
            conf.contains(&format!("sentinel monitor mymaster 127.0.0.1 {new_port} 2"))
                && conf.contains(&format!("sentinel known-replica mymaster 127.0.0.1 {m_port}"))
                && conf.contains("sentinel myid ")
        })
    });
    let log = sentinels.iter().map(|s| s.log()).collect::<String>();
    for ev in ["+sdown", "+odown", "+try-failover", "+elected-leader", "+promoted-slave", "+failover-end", "+convert-to-slave"] {
        assert!(log.contains(ev), "{ev} logged:\n{log}");
    }
    drop((master, replicas));
}
