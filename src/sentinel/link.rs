//! Links to monitored instances. Each master, replica and sentinel record has a command link
//! thread (PING, INFO, hello PUBLISH, queued commands); masters and replicas also have a hello
//! subscription thread. A thread serves the record with its id and ends when the record is
//! gone (removed, reset, or replaced after a failover).

use super::brain;
use super::client::{is_timeout, Conn, Value};
use super::state::*;
use std::time::{Duration, Instant};

/// How often a link thread wakes up to see what is due.
const TICK: Duration = Duration::from_millis(50);
/// The shortest wait between two connection attempts.
const RECONNECT_PERIOD: Duration = Duration::from_millis(500);

/// Starts the links of every record of master `name`.
pub fn spawn_all(st: &mut State, name: &str) {
    let Some(m) = st.masters.get(name) else {
        return;
    };
    let mut ids = vec![(m.inst.id, true)];
    ids.extend(m.replicas.values().map(|r| (r.id, true)));
    ids.extend(m.sentinels.values().map(|s| (s.id, false)));
    for (id, pubsub) in ids {
        spawn(id, pubsub);
    }
}

/// Starts the command link of record `id` and, for masters and replicas, its hello link.
pub fn spawn(id: u64, pubsub: bool) {
    std::thread::spawn(move || cmd_link(id));
    if pubsub {
        std::thread::spawn(move || hello_link(id));
    }
}

/// What a link does in one round, decided under the lock.
struct Plan {
    /// The instance's renamed commands (`sentinel rename-command`).
    renamed: std::collections::BTreeMap<String, String>,
    ip: String,
    port: u16,
    auth: Option<(Option<String>, String)>,
    client_name: String,
    timeout: Duration,
    jobs: Vec<Job>,
    info: bool,
    ping: bool,
    hello: Option<HelloParts>,
}

struct HelloParts {
    port_override: Option<u16>,
    announce_ip: String,
    my_port: u16,
    myid: String,
    epoch: u64,
    master: String,
    master_ip: String,
    master_port: u16,
    config_epoch: u64,
}

fn plan(st: &mut State, id: u64, connected: bool) -> Option<Plan> {
    let myid = st.myid.clone();
    let epoch = st.current_epoch;
    let (announce_ip, announce_port, my_port) = (st.announce_ip.clone(), st.announce_port, st.port);
    let sentinel_auth = st
        .sentinel_pass
        .clone()
        .map(|p| (st.sentinel_user.clone(), p));
    let (m, kind) = st.find(id)?;
    let down_after = Duration::from_millis(m.down_after_ms);
    let fast_info = m.inst.o_down_since.is_some() || m.failover_in_progress();
    let (mname, (mip, mport), cepoch) = (m.inst.name.clone(), m.current_addr(), m.config_epoch);
    // Other sentinels take sentinel-user/sentinel-pass; masters and replicas the master's
    // auth-user/auth-pass.
    let auth = if kind == Kind::Sentinel {
        sentinel_auth
    } else {
        m.auth_pass.clone().map(|p| (m.auth_user.clone(), p))
    };
    // Other sentinels never rename their commands.
    let renamed = if kind == Kind::Sentinel {
        Default::default()
    } else {
        m.renamed.clone()
    };
    let i = m.inst_mut(id)?;
    let now = Instant::now();
    i.link.connected = connected;
    let ping_period = ping_period().min(down_after);
    let info_period = if kind == Kind::Replica && (fast_info || i.role_reported == Role::Master) {
        Duration::from_millis(1000)
    } else {
        info_period()
    };
    let info = kind != Kind::Sentinel
        && connected
        && i.info_refresh
            .is_none_or(|t| now.saturating_duration_since(t) > info_period);
    // A PING goes out as soon as a link is (re)connected, then every ping period.
    let ping = (connected && i.link.last_ping_time.is_none())
        || now.saturating_duration_since(i.link.last_pong_time) > ping_period
            && i.link
                .last_ping_time
                .is_none_or(|t| now.saturating_duration_since(t) > ping_period / 2);
    if ping {
        i.link.last_ping_time = Some(now);
        if i.link.act_ping_time.is_none() {
            i.link.act_ping_time = Some(now);
        }
    }
    let hello = connected
        && i.link
            .last_pub_time
            .is_none_or(|t| now.saturating_duration_since(t) > publish_period());
    if hello {
        i.link.last_pub_time = Some(now);
    }
    let jobs = if connected {
        std::mem::take(&mut i.jobs)
    } else {
        Vec::new()
    };
    i.link.pending = jobs.len() as u32 + info as u32 + ping as u32 + hello as u32;
    let plan = Plan {
        renamed,
        ip: i.ip.clone(),
        port: i.port,
        auth,
        client_name: format!("sentinel-{}-cmd", &myid[..8.min(myid.len())]),
        timeout: (down_after / 2).clamp(Duration::from_millis(100), Duration::from_millis(1000)),
        jobs,
        info,
        ping,
        hello: hello.then(|| HelloParts {
            port_override: (announce_port != 0).then_some(announce_port),
            announce_ip,
            my_port,
            myid,
            epoch,
            master: mname,
            master_ip: mip,
            master_port: mport,
            config_epoch: cepoch,
        }),
    };
    Some(plan)
}

impl Plan {
    /// A command's name as the instance knows it.
    fn cmd(&self, name: &str) -> String {
        self.renamed
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_ascii_uppercase())
    }
}

/// Connects and introduces the link (AUTH, CLIENT SETNAME).
fn open(p: &Plan) -> std::io::Result<Conn> {
    let mut c = Conn::connect(&p.ip, p.port, p.timeout.max(Duration::from_millis(500)))?;
    c.set_timeout(p.timeout);
    if let Some((user, pass)) = &p.auth {
        let r = match user {
            Some(u) => c.call(&[&p.cmd("auth"), u, pass])?,
            None => c.call(&[&p.cmd("auth"), pass])?,
        };
        if let Value::Error(e) = r {
            warn!("AUTH failed on {}:{}: {e}", p.ip, p.port);
        }
    }
    let _ = c.call(&[&p.cmd("client"), "SETNAME", &p.client_name])?;
    Ok(c)
}

fn cmd_link(id: u64) {
    let mut conn: Option<Conn> = None;
    let mut last_attempt: Option<Instant> = None;
    loop {
        std::thread::sleep(TICK);
        let Some(mut p) = plan(&mut super::lock(), id, conn.is_some()) else {
            return;
        };
        if conn.is_none() {
            let due = last_attempt.is_none_or(|t| t.elapsed() >= RECONNECT_PERIOD);
            if !due {
                continue;
            }
            last_attempt = Some(Instant::now());
            match open(&p) {
                Ok(c) => {
                    conn = Some(c);
                    if let Some(i) = super::lock().inst_mut(id) {
                        i.link.connected = true;
                        i.link.last_ping_time = None;
                    }
                    // Plan again now that the link is up (INFO and hello are due at once).
                    match plan(&mut super::lock(), id, true) {
                        Some(np) => p = np,
                        None => return,
                    }
                }
                Err(_) => {
                    link_down(id);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        if run_plan(c, id, p).is_err() {
            conn = None;
            link_down(id);
        }
    }
}

/// Marks the link down and drops the commands waiting for it (as Redis drops a broken link's
/// pending commands): a SLAVEOF sent minutes later would be stale.
fn link_down(id: u64) {
    let mut st = super::lock();
    let Some(i) = st.inst_mut(id) else {
        return;
    };
    i.link.connected = false;
    i.link.pending = 0;
    let jobs = std::mem::take(&mut i.jobs);
    for job in jobs {
        if let Some(done) = job.done {
            done(&mut st, Err("link down".into()));
        }
    }
}

fn run_plan(c: &mut Conn, id: u64, mut p: Plan) -> std::io::Result<()> {
    for job in std::mem::take(&mut p.jobs) {
        let reply = c.send_many(&job.cmds).and_then(|_| {
            let mut last = Value::Nil;
            for _ in 0..job.cmds.len() {
                last = c.read()?;
            }
            Ok(last)
        });
        if let Some(done) = job.done {
            let r = reply.as_ref().map(|v| v.clone()).map_err(|e| e.to_string());
            done(&mut super::lock(), r);
        }
        // A failed command leaves the link in an unknown state: reconnect.
        reply?;
    }
    if p.info {
        let r = c.call(&[&p.cmd("info")])?;
        if let Value::Bulk(b) = r {
            let text = String::from_utf8_lossy(&b);
            brain::refresh_from_info(&mut super::lock(), id, &text);
        }
    }
    if p.ping {
        let r = c.call(&[&p.cmd("ping")]);
        let mut st = super::lock();
        let s_down = st.inst_mut(id).is_some_and(|i| i.s_down());
        match &r {
            Ok(v) => {
                if let Some(i) = st.inst_mut(id) {
                    let now = Instant::now();
                    i.link.last_pong_time = now;
                    let text = v.text().unwrap_or_default();
                    let valid = matches!(v, Value::Simple(s) if s == "PONG")
                        || text.starts_with("LOADING")
                        || text.starts_with("MASTERDOWN");
                    if valid {
                        i.link.last_avail_time = now;
                        i.link.act_ping_time = None;
                        if text == "PONG" {
                            i.master_reboot_since = None;
                        }
                    } else if text.starts_with("BUSY") && s_down {
                        // A script keeps the instance busy: try to stop it.
                        i.queue(vec![vec![b"SCRIPT".to_vec(), b"KILL".to_vec()]], None);
                    }
                }
            }
            Err(e) if is_timeout(e) => {}
            Err(_) => {}
        }
        drop(st);
        r?;
    }
    if let Some(h) = &p.hello {
        let local = c.local_ip().unwrap_or_else(|| "127.0.0.1".into());
        let ip = if h.announce_ip.is_empty() {
            local
        } else {
            h.announce_ip.clone()
        };
        let payload = format!(
            "{ip},{},{},{},{},{},{},{}",
            h.port_override.unwrap_or(h.my_port),
            h.myid,
            h.epoch,
            h.master,
            h.master_ip,
            h.master_port,
            h.config_epoch
        );
        c.call(&[&p.cmd("publish"), HELLO_CHANNEL, &payload])?;
    }
    Ok(())
}

/// Subscribes to the hello channel of a master or replica and hands every message over.
fn hello_link(id: u64) {
    loop {
        let target = {
            let mut st = super::lock();
            let myid = st.myid.clone();
            let Some((m, _)) = st.find(id) else {
                return;
            };
            let auth = m.auth_pass.clone().map(|p| (m.auth_user.clone(), p));
            let renamed = m.renamed.clone();
            let Some(i) = m.inst_mut(id) else {
                return;
            };
            (i.ip.clone(), i.port, auth, myid, renamed)
        };
        let (ip, port, auth, myid, renamed) = target;
        let p = Plan {
            renamed,
            ip,
            port,
            auth,
            client_name: format!("sentinel-{}-pubsub", &myid[..8.min(myid.len())]),
            timeout: Duration::from_millis(1000),
            jobs: Vec::new(),
            info: false,
            ping: false,
            hello: None,
        };
        if let Ok(c) = open(&p) {
            if subscribed(c, id, &p.cmd("subscribe")).is_none() {
                return;
            }
        }
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(100));
            if super::lock().inst_mut(id).is_none() {
                return;
            }
        }
    }
}

/// Reads hello messages until the connection fails (`Some`) or the record is gone (`None`).
fn subscribed(mut c: Conn, id: u64, subscribe: &str) -> Option<()> {
    if c.send(&[subscribe.as_bytes(), HELLO_CHANNEL.as_bytes()])
        .is_err()
    {
        return Some(());
    }
    c.set_timeout(Duration::from_millis(300));
    let mut quiet_since = Instant::now();
    loop {
        match c.read() {
            Ok(Value::Array(items)) => {
                quiet_since = Instant::now();
                let is_msg = items.first().and_then(|v| v.text()).as_deref() == Some("message");
                if let (true, Some(payload)) = (is_msg, items.get(2).and_then(|v| v.text())) {
                    brain::process_hello(&mut super::lock(), &payload);
                }
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                super::lock().inst_mut(id)?;
                // Every sentinel (this one included) publishes every 2 s: a silent link is a
                // dead one.
                if quiet_since.elapsed() > publish_period() * 3 {
                    return Some(());
                }
            }
            Err(_) => return Some(()),
        }
    }
}
