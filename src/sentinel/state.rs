//! The sentinel's state: the monitored masters, their replicas and the other sentinels watching
//! them, with everything the links learn about each. One `Mutex<State>` holds it all; threads
//! lock it briefly to read what to do or to record what they learned, never across network I/O.

use super::client::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The timing parameters in milliseconds, with Redis's names and defaults; SENTINEL DEBUG
/// lists and changes them.
pub static TIMINGS: [(&str, AtomicU64); 13] = [
    ("INFO-PERIOD", AtomicU64::new(10_000)),
    ("PING-PERIOD", AtomicU64::new(1000)),
    ("ASK-PERIOD", AtomicU64::new(1000)),
    ("PUBLISH-PERIOD", AtomicU64::new(2000)),
    ("DEFAULT-DOWN-AFTER", AtomicU64::new(DEFAULT_DOWN_AFTER_MS)),
    (
        "DEFAULT-FAILOVER-TIMEOUT",
        AtomicU64::new(DEFAULT_FAILOVER_TIMEOUT_MS),
    ),
    ("TILT-TRIGGER", AtomicU64::new(2000)),
    ("TILT-PERIOD", AtomicU64::new(30_000)),
    ("SLAVE-RECONF-TIMEOUT", AtomicU64::new(10_000)),
    ("MIN-LINK-RECONNECT-PERIOD", AtomicU64::new(15_000)),
    ("ELECTION-TIMEOUT", AtomicU64::new(10_000)),
    ("SCRIPT-MAX-RUNTIME", AtomicU64::new(60_000)),
    ("SCRIPT-RETRY-DELAY", AtomicU64::new(30_000)),
];

fn timing(i: usize) -> Duration {
    Duration::from_millis(TIMINGS[i].1.load(Ordering::Relaxed))
}

/// How often masters and replicas get INFO (every second while their master is failing over).
pub fn info_period() -> Duration {
    timing(0)
}
/// How often every instance gets a PING.
pub fn ping_period() -> Duration {
    timing(1)
}
/// How often other sentinels are asked whether a master is down.
pub fn ask_period() -> Duration {
    timing(2)
}
/// How often hello messages go out.
pub fn publish_period() -> Duration {
    timing(3)
}
pub fn default_down_after_ms() -> u64 {
    TIMINGS[4].1.load(Ordering::Relaxed)
}
pub fn default_failover_timeout_ms() -> u64 {
    TIMINGS[5].1.load(Ordering::Relaxed)
}
/// A timer tick this late puts the sentinel in TILT mode…
pub fn tilt_trigger() -> Duration {
    timing(6)
}
/// …for this long.
pub fn tilt_period() -> Duration {
    timing(7)
}
/// How long a replica may stay in `reconf_sent` before it counts as done.
pub fn slave_reconf_timeout() -> Duration {
    timing(8)
}
/// The longest a failover waits for its leader election.
pub fn election_timeout() -> Duration {
    timing(10)
}
/// A script running longer is killed (and retried).
pub fn script_max_runtime() -> Duration {
    timing(11)
}
/// The first wait before a script is retried; it doubles with every retry.
pub fn script_retry_delay() -> Duration {
    timing(12)
}
/// Redis's default down-after-milliseconds (a config rewrite leaves it out).
pub const DEFAULT_DOWN_AFTER_MS: u64 = 30_000;
/// Redis's default failover-timeout (a config rewrite leaves it out).
pub const DEFAULT_FAILOVER_TIMEOUT_MS: u64 = 180_000;
/// The hello channel.
pub const HELLO_CHANNEL: &str = "__sentinel__:hello";

/// Which kind of instance a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Master,
    Replica,
    Sentinel,
}

/// The role an instance reported in its last INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Slave,
}

/// A command queued for an instance's link, with what to do with the reply.
pub struct Job {
    pub cmds: Vec<Vec<Vec<u8>>>,
    /// Called with the reply to the last command (or the error) under the state lock.
    pub done: Option<DoneFn>,
}

/// What one link knows of its connection.
#[derive(Debug)]
pub struct LinkInfo {
    pub connected: bool,
    /// When the oldest unanswered PING was sent (Redis's `act_ping_time`).
    pub act_ping_time: Option<Instant>,
    pub last_ping_time: Option<Instant>,
    /// The last valid PING reply.
    pub last_avail_time: Instant,
    /// The last PING reply of any kind.
    pub last_pong_time: Instant,
    pub last_pub_time: Option<Instant>,
    pub pending: u32,
}

impl LinkInfo {
    fn new(now: Instant) -> LinkInfo {
        LinkInfo {
            connected: false,
            act_ping_time: Some(now),
            last_ping_time: None,
            last_avail_time: now,
            last_pong_time: now,
            last_pub_time: None,
            pending: 0,
        }
    }
}

/// A master, replica or sentinel as this sentinel sees it.
pub struct Inst {
    /// Unique for the life of the process; a link thread serves the record with its id and
    /// stops when no record has it any more.
    pub id: u64,
    pub kind: Kind,
    pub name: String,
    pub ip: String,
    pub port: u16,
    pub runid: String,
    pub link: LinkInfo,
    pub s_down_since: Option<Instant>,
    pub o_down_since: Option<Instant>,
    pub info_refresh: Option<Instant>,
    pub info: String,
    pub role_reported: Role,
    pub role_reported_time: Instant,
    // Replicas.
    pub master_link_down_time_ms: u64,
    pub master_link_up: bool,
    pub master_host: Option<String>,
    pub master_port: u16,
    pub slave_priority: i64,
    pub repl_offset: i64,
    pub replica_announced: bool,
    pub promoted: bool,
    pub reconf_sent: bool,
    pub reconf_inprog: bool,
    pub reconf_done: bool,
    pub reconf_sent_time: Option<Instant>,
    // Sentinels.
    pub last_hello_time: Instant,
    pub leader: Option<String>,
    pub leader_epoch: u64,
    pub master_down: bool,
    pub last_master_down_reply: Option<Instant>,
    pub ask_sent: Option<Instant>,
    /// When this sentinel last sent the replica a SLAVEOF to put it back in line.
    pub slaveof_sent: Option<Instant>,
    /// When a master was seen rebooted (a new run id) without answering PONG since.
    pub master_reboot_since: Option<Instant>,
    /// When the instance last entered SDOWN (never cleared, as Redis's `s_down_since_time`).
    pub last_sdown: Option<Instant>,
    /// When a replica's reported master last changed.
    pub slave_conf_change_time: Instant,
    /// Commands waiting for the link.
    pub jobs: Vec<Job>,
}

impl Inst {
    pub fn new(id: u64, kind: Kind, name: String, ip: String, port: u16) -> Inst {
        let now = Instant::now();
        Inst {
            id,
            kind,
            name,
            ip,
            port,
            runid: String::new(),
            link: LinkInfo::new(now),
            s_down_since: None,
            o_down_since: None,
            info_refresh: None,
            info: String::new(),
            role_reported: if kind == Kind::Replica {
                Role::Slave
            } else {
                Role::Master
            },
            role_reported_time: now,
            master_link_down_time_ms: 0,
            master_link_up: false,
            master_host: None,
            master_port: 0,
            slave_priority: 100,
            repl_offset: 0,
            replica_announced: true,
            promoted: false,
            reconf_sent: false,
            reconf_inprog: false,
            reconf_done: false,
            reconf_sent_time: None,
            last_hello_time: now,
            leader: None,
            leader_epoch: 0,
            master_down: false,
            last_master_down_reply: None,
            ask_sent: None,
            slaveof_sent: None,
            master_reboot_since: None,
            last_sdown: None,
            slave_conf_change_time: now,
            jobs: Vec::new(),
        }
    }

    pub fn s_down(&self) -> bool {
        self.s_down_since.is_some()
    }

    /// The `flags` field of SENTINEL MASTER and friends.
    pub fn flags(&self, failover: bool, force: bool) -> String {
        let mut f = Vec::new();
        if self.s_down() {
            f.push("s_down");
        }
        if self.o_down_since.is_some() {
            f.push("o_down");
        }
        f.push(match self.kind {
            Kind::Master => "master",
            Kind::Replica => "slave",
            Kind::Sentinel => "sentinel",
        });
        if !self.link.connected {
            f.push("disconnected");
        }
        if self.master_down {
            f.push("master_down");
        }
        if failover {
            f.push("failover_in_progress");
        }
        if self.promoted {
            f.push("promoted");
        }
        if self.reconf_sent {
            f.push("reconf_sent");
        }
        if self.reconf_inprog {
            f.push("reconf_inprog");
        }
        if self.reconf_done {
            f.push("reconf_done");
        }
        if force {
            f.push("force_failover");
        }
        if self.master_reboot_since.is_some() {
            f.push("master_reboot");
        }
        f.join(",")
    }

    /// Queues commands for the link.
    pub fn queue(&mut self, cmds: Vec<Vec<Vec<u8>>>, done: Option<DoneFn>) {
        self.jobs.push(Job { cmds, done });
    }
}

pub type DoneFn = Box<dyn FnOnce(&mut State, Result<Value, String>) + Send>;

/// The steps of a failover (Redis's names, as SENTINEL MASTER shows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailoverState {
    None,
    WaitStart,
    SelectSlave,
    SendSlaveofNoone,
    WaitPromotion,
    ReconfSlaves,
    UpdateConfig,
}

impl FailoverState {
    pub fn name(self) -> &'static str {
        match self {
            FailoverState::None => "none",
            FailoverState::WaitStart => "wait_start",
            FailoverState::SelectSlave => "select_slave",
            FailoverState::SendSlaveofNoone => "send_slaveof_noone",
            FailoverState::WaitPromotion => "wait_promotion",
            FailoverState::ReconfSlaves => "reconf_slaves",
            FailoverState::UpdateConfig => "update_config",
        }
    }
}

/// A monitored master with its replicas and sentinels.
pub struct Master {
    pub inst: Inst,
    pub quorum: u32,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    pub parallel_syncs: u32,
    pub auth_pass: Option<String>,
    pub auth_user: Option<String>,
    pub notification_script: Option<String>,
    pub client_reconfig_script: Option<String>,
    pub master_reboot_down_after_ms: u64,
    pub config_epoch: u64,
    pub leader: Option<String>,
    pub leader_epoch: u64,
    pub failover_state: FailoverState,
    pub failover_epoch: u64,
    pub failover_start_time: Option<Instant>,
    pub failover_state_change_time: Instant,
    pub force_failover: bool,
    /// The address key of the replica being promoted.
    pub promoted: Option<String>,
    /// Replicas by `ip:port`.
    pub replicas: BTreeMap<String, Inst>,
    /// Other sentinels by run id.
    pub sentinels: BTreeMap<String, Inst>,
    /// Renamed commands (`sentinel rename-command`), lower-case original to new name.
    pub renamed: BTreeMap<String, String>,
}

impl Master {
    pub fn new(id: u64, name: String, ip: String, port: u16, quorum: u32) -> Master {
        Master {
            inst: Inst::new(id, Kind::Master, name, ip, port),
            quorum,
            down_after_ms: default_down_after_ms(),
            failover_timeout_ms: default_failover_timeout_ms(),
            parallel_syncs: 1,
            auth_pass: None,
            auth_user: None,
            notification_script: None,
            client_reconfig_script: None,
            master_reboot_down_after_ms: 0,
            config_epoch: 0,
            leader: None,
            leader_epoch: 0,
            failover_state: FailoverState::None,
            failover_epoch: 0,
            failover_start_time: None,
            failover_state_change_time: Instant::now(),
            force_failover: false,
            promoted: None,
            replicas: BTreeMap::new(),
            sentinels: BTreeMap::new(),
            renamed: BTreeMap::new(),
        }
    }

    pub fn failover_in_progress(&self) -> bool {
        self.failover_state != FailoverState::None
    }

    /// The address clients should use: the promoted replica's once it has been promoted.
    pub fn current_addr(&self) -> (String, u16) {
        if self.failover_state >= FailoverState::ReconfSlaves {
            if let Some(r) = self.promoted.as_ref().and_then(|k| self.replicas.get(k)) {
                return (r.ip.clone(), r.port);
            }
        }
        (self.inst.ip.clone(), self.inst.port)
    }

    /// `name ip port` of the master as events show it after `@`.
    pub fn at(&self) -> String {
        format!("{} {} {}", self.inst.name, self.inst.ip, self.inst.port)
    }

    /// A command name as this master knows it (after `rename-command`).
    pub fn cmd(&self, name: &str) -> Vec<u8> {
        self.renamed
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
            .into_bytes()
    }

    /// Whether one of this master's records has link id `id`.
    pub fn has(&self, id: u64) -> bool {
        self.inst.id == id
            || self.replicas.values().any(|r| r.id == id)
            || self.sentinels.values().any(|s| s.id == id)
    }

    /// Finds one of this master's records by id.
    pub fn inst_mut(&mut self, id: u64) -> Option<&mut Inst> {
        if self.inst.id == id {
            return Some(&mut self.inst);
        }
        if let Some(r) = self.replicas.values_mut().find(|r| r.id == id) {
            return Some(r);
        }
        self.sentinels.values_mut().find(|s| s.id == id)
    }
}

/// An event subscriber: a client connection in pub/sub mode.
pub struct Subscriber {
    pub channels: Vec<Vec<u8>>,
    pub patterns: Vec<Vec<u8>>,
    pub resp3: bool,
    /// Bounded: a subscriber that does not read its messages is disconnected, not buffered
    /// without end.
    pub tx: std::sync::mpsc::SyncSender<Vec<u8>>,
}

/// A connected client, as CLIENT LIST shows it.
pub struct ClientInfo {
    pub addr: String,
    pub laddr: String,
    pub name: String,
    pub created: Instant,
    pub last_cmd: String,
    pub last_interaction: Instant,
    pub subs: usize,
    pub psubs: usize,
    pub kill: bool,
}

/// Everything the sentinel knows.
pub struct State {
    pub myid: String,
    pub run_id: String,
    pub current_epoch: u64,
    pub masters: BTreeMap<String, Master>,
    pub port: u16,
    pub bind: Vec<String>,
    pub dir: String,
    pub logfile: String,
    pub config_file: Option<std::path::PathBuf>,
    /// Lines of the config file this sentinel does not manage, kept on rewrite.
    pub other_lines: Vec<String>,
    pub announce_ip: String,
    pub announce_port: u16,
    pub resolve_hostnames: bool,
    pub announce_hostnames: bool,
    pub deny_scripts_reconfig: bool,
    pub requirepass: Option<String>,
    pub sentinel_user: Option<String>,
    pub sentinel_pass: Option<String>,
    pub loglevel: String,
    pub simulate_failure: u32,
    pub started: Instant,
    pub next_id: u64,
    pub clients: BTreeMap<u64, ClientInfo>,
    pub subscribers: BTreeMap<u64, Subscriber>,
    pub total_connections: u64,
    pub total_commands: u64,
    /// Set when something changed that the config file must record.
    pub config_dirty: bool,
    /// Masters whose failover finished (`UpdateConfig`), switched by the timer.
    pub shutdown: bool,
    /// Since when the sentinel is in TILT mode.
    pub tilt_since: Option<Instant>,
    /// Notification and client-reconfig scripts waiting or running.
    pub scripts: std::collections::VecDeque<super::scripts::Script>,
}

pub const SIMFAIL_CRASH_AFTER_ELECTION: u32 = 1;
pub const SIMFAIL_CRASH_AFTER_PROMOTION: u32 = 2;

impl State {
    pub fn new() -> State {
        State {
            myid: String::new(),
            run_id: super::random_hex(40),
            current_epoch: 0,
            masters: BTreeMap::new(),
            port: 26379,
            bind: Vec::new(),
            dir: String::new(),
            logfile: String::new(),
            config_file: None,
            other_lines: Vec::new(),
            announce_ip: String::new(),
            announce_port: 0,
            resolve_hostnames: false,
            announce_hostnames: false,
            deny_scripts_reconfig: true,
            requirepass: None,
            sentinel_user: None,
            sentinel_pass: None,
            loglevel: "notice".into(),
            simulate_failure: 0,
            started: Instant::now(),
            next_id: 1,
            clients: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            total_connections: 0,
            total_commands: 0,
            config_dirty: false,
            shutdown: false,
            tilt_since: None,
            scripts: std::collections::VecDeque::new(),
        }
    }

    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The master name and the record with link id `id`, if it still exists.
    pub fn find(&mut self, id: u64) -> Option<(&mut Master, Kind)> {
        let m = self.masters.values_mut().find(|m| m.has(id))?;
        let kind = m.inst_mut(id).map(|i| i.kind)?;
        Some((m, kind))
    }

    /// The record with link id `id`.
    pub fn inst_mut(&mut self, id: u64) -> Option<&mut Inst> {
        self.masters.values_mut().find_map(|m| m.inst_mut(id))
    }

    /// Publishes an event to subscribed clients and logs it, Redis's way: `%@` expands to the
    /// instance (`<type> <name> <ip> <port>`, plus `@ <master>` for replicas and sentinels).
    pub fn event(&mut self, warning: bool, kind: &str, msg: String) {
        if warning {
            crate::logging::write(crate::logging::Level::Warning, &format!("{kind} {msg}"));
        } else {
            crate::logging::write(crate::logging::Level::Notice, &format!("{kind} {msg}"));
        }
        self.publish(kind.as_bytes(), msg.as_bytes());
        // Warnings about an instance run its master's notification script.
        let script = warning
            .then(|| super::scripts::master_of(kind, &msg))
            .flatten()
            .and_then(|name| self.masters.get(&name))
            .and_then(|m| m.notification_script.clone());
        if let Some(path) = script {
            super::scripts::schedule(self, &path, &[kind.to_string(), msg]);
        }
    }

    /// Delivers a message to the clients subscribed to `channel`.
    pub fn publish(&mut self, channel: &[u8], msg: &[u8]) -> usize {
        let mut n = 0;
        let mut overflow = Vec::new();
        for (id, sub) in &self.subscribers {
            let mut frames = Vec::new();
            if sub.channels.iter().any(|c| c == channel) {
                let mut out = Vec::new();
                let mut r = shards::resp::Reply::new(&mut out, proto(sub.resp3));
                r.push(3);
                r.bulk(b"message");
                r.bulk(channel);
                r.bulk(msg);
                frames.push(out);
            }
            for p in &sub.patterns {
                if shards::glob::matches(p, channel, false) {
                    let mut out = Vec::new();
                    let mut r = shards::resp::Reply::new(&mut out, proto(sub.resp3));
                    r.push(4);
                    r.bulk(b"pmessage");
                    r.bulk(p);
                    r.bulk(channel);
                    r.bulk(msg);
                    frames.push(out);
                }
            }
            for f in frames {
                n += 1;
                if let Err(std::sync::mpsc::TrySendError::Full(_)) = sub.tx.try_send(f) {
                    overflow.push(*id);
                }
            }
        }
        for id in overflow {
            if let Some(c) = self.clients.get_mut(&id) {
                c.kill = true;
            }
        }
        n
    }
}

pub fn proto(resp3: bool) -> shards::resp::Proto {
    if resp3 {
        shards::resp::Proto::Resp3
    } else {
        shards::resp::Proto::Resp2
    }
}

/// `%@` for an instance of `m`: the instance itself for a master, with the master after `@`
/// for the others.
pub fn describe(m: &Master, i: &Inst) -> String {
    let t = match i.kind {
        Kind::Master => "master",
        Kind::Replica => "slave",
        Kind::Sentinel => "sentinel",
    };
    if i.kind == Kind::Master {
        format!("{t} {} {} {}", i.name, i.ip, i.port)
    } else {
        format!("{t} {} {} {} @ {}", i.name, i.ip, i.port, m.at())
    }
}

/// Milliseconds since `t` (0 for never).
pub fn ms_since(t: Option<Instant>) -> i64 {
    t.map(|t| t.elapsed().as_millis() as i64).unwrap_or(0)
}
