//! The cluster bus: Redis Cluster's node-to-node protocol ([`msg`] is its wire format), so
//! shardis nodes and redis-server 7 nodes form one cluster.
//!
//! **Threading.** The bus is one dedicated OS thread with non-blocking sockets and `poll(2)`,
//! not glommio tasks: the bus is a few messages a second per peer, latency-insensitive, and
//! its work (gossip, failure detection, epochs) mutates the one shared cluster [`State`]; a
//! plain thread keeps that work off every shard's executor (a shard never waits for the bus,
//! and a busy shard never delays a heartbeat into a false failure), and keeps the whole
//! protocol sequential, as Redis's single-threaded `cluster.c` is. Each pass of the loop reads
//! every whole message that arrived, then applies them (and, every 100 ms, the cron) to a copy
//! of the state under the cluster's lock (`Cluster::bus_change`), publishes it, saves
//! nodes.conf when the change is one Redis saves, and then writes what the pass queued. The
//! shards only read the state; admin commands (MEET, FORGET, SETSLOT, …) change it through the
//! same lock, and the bus picks their effects up on its next pass (a MEET'd node in handshake
//! gets a link, a forgotten node loses its link).
//!
//! What the bus does, as Redis 7.0's `cluster.c`: MEET handshakes (a node met gets a random
//! id until its PONG names it), PING/PONG with gossip about `max(3, nodes/10)` random nodes
//! plus every node in PFAIL, a ping every second to the least recently answered of five
//! random nodes and to any node not pinged for half the node timeout, PFAIL after the node
//! timeout without a PONG, FAIL once a majority of masters report it (reports valid for twice
//! the node timeout), FAIL broadcasts and their undoing, current/config epochs, slot ownership
//! taken by the higher config epoch, UPDATE for stale claims, config-epoch collisions, the
//! 60-second blacklist of forgotten nodes, the message counters of CLUSTER INFO and the links
//! of CLUSTER LINKS, PUBLISH / PUBLISHSHARD. Replicas: a replica's slots follow its master's;
//! when its master is FAIL it waits `500 ms + random(500 ms) + rank * 1 s` (rank: replicas of
//! the same master with a higher replication offset), asks the masters for votes
//! (FAILOVER_AUTH_REQUEST; a master votes once per epoch and once per failed master in twice
//! the node timeout), and with a majority takes the slots with its new config epoch, is
//! promoted through the replication's psync2 path and tells everyone (PONG). A master whose
//! slots all went to another node becomes that node's replica. CLUSTER FAILOVER (MFSTART, the
//! master pauses writes and reports its offset, the replica catches up), FORCE and TAKEOVER.
//! Not built: replica migration (orphaned masters adopting a replica), module messages, TLS.

pub mod msg;

use super::state::{nflag, Node, State, SLOTS};
use super::Cluster;
use msg::{flag, mtype, Body, Ext, Gossip, Header, Message};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

/// How long a forgotten node stays out (CLUSTER_BLACKLIST_TTL, seconds).
pub const BLACKLIST_TTL_S: u64 = 60;
/// Failure reports older than this many node timeouts no longer count.
const FAIL_REPORT_VALIDITY_MULT: u64 = 2;
/// A master's FAIL is undone after this many node timeouts if it is reachable again.
const FAIL_UNDO_TIME_MULT: u64 = 2;
/// Bytes one read takes from a socket.
const READ_CHUNK: usize = 64 * 1024;
/// Most bytes queued for one link before it is dropped (when `cluster-link-sendbuf-limit` is 0).
const OUT_MAX: usize = 256 * 1024 * 1024;
/// The cron's period.
const CRON_MS: u64 = 100;
/// Most links the bus keeps (peers times two, plus strangers' inbound connections).
const LINKS_MAX: usize = 4096;

/// What the bus shows the CLUSTER commands: counters, links, failure reports.
#[derive(Default, Clone)]
pub struct View {
    pub sent: [u64; mtype::COUNT],
    pub received: [u64; mtype::COUNT],
    pub links: Vec<LinkInfo>,
    /// Valid failure reports per node id.
    pub fail_reports: HashMap<String, usize>,
}

/// One CLUSTER LINKS entry.
#[derive(Clone)]
pub struct LinkInfo {
    pub direction: &'static str,
    pub node: String,
    pub create_time_ms: u64,
    pub events: &'static str,
    pub send_buffer_allocated: usize,
    pub send_buffer_used: usize,
}

static VIEW: Mutex<Option<View>> = Mutex::new(None);

/// The server's shared state, for replication (set once at start-up).
static SHARED: std::sync::OnceLock<Arc<crate::ctx::Shared>> = std::sync::OnceLock::new();

/// What CLUSTER commands ask the bus to do on its next pass.
static REQUESTS: Mutex<Vec<Request>> = Mutex::new(Vec::new());

/// A request from a CLUSTER command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// CLUSTER FAILOVER: with the master's agreement (none), FORCE or TAKEOVER.
    Failover { force: bool, takeover: bool },
}

/// Messages published here, for the bus to send (shard channel?, channel, message).
static OUTBOX: Mutex<Vec<Published>> = Mutex::new(Vec::new());
/// Messages that came over the bus, for shard 0 to deliver.
static INBOX: Mutex<Vec<Published>> = Mutex::new(Vec::new());
/// A published message: whether on a shard channel, the channel, the message.
type Published = (bool, Vec<u8>, Vec<u8>);
/// Most published messages waiting in either direction; beyond it new ones are dropped (pub/sub
/// is at-most-once).
const PUBLISH_QUEUE_MAX: usize = 100_000;
/// Wakes the bus thread (an eventfd; -1 before the bus starts).
static WAKE_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// PUBLISH / SPUBLISH here: the bus sends it to every node (PUBLISH) or to the nodes of this
/// node's shard (SPUBLISH).
pub fn publish(shard: bool, channel: &[u8], message: &[u8]) {
    {
        let mut out = OUTBOX.lock().unwrap_or_else(|e| e.into_inner());
        if out.len() >= PUBLISH_QUEUE_MAX {
            return;
        }
        out.push((shard, channel.to_vec(), message.to_vec()));
    }
    let fd = WAKE_FD.load(std::sync::atomic::Ordering::Acquire);
    if fd >= 0 {
        let _ = crate::net::write(fd, &1u64.to_ne_bytes());
    }
}

/// On shard 0 when its doorbell rings: delivers what came over the bus.
pub fn deliver_published(ctx: &crate::ctx::ShardCtx) {
    let msgs = std::mem::take(&mut *INBOX.lock().unwrap_or_else(|e| e.into_inner()));
    for (shard, channel, message) in msgs {
        crate::pubsub::deliver_from_bus(ctx, shard, channel, message);
    }
}

/// Hands the bus the server's shared state (replication is started and promoted through it).
pub fn set_shared(shared: Arc<crate::ctx::Shared>) {
    let _ = SHARED.set(shared);
}

/// Queues a request for the bus.
pub fn request(r: Request) {
    REQUESTS.lock().unwrap_or_else(|e| e.into_inner()).push(r);
}

/// This node's replication offset: what it applied as a replica, what it wrote as a master.
fn repl_offset() -> u64 {
    let Some(shared) = SHARED.get() else { return 0 };
    match shared.repl.link() {
        Some(l) => l.offset.load(std::sync::atomic::Ordering::Acquire),
        None => shared.repl.snapshot().offset,
    }
}

/// Makes this node a replica of the node at `index` (clusterSetMaster): its slots and open
/// slots go, and replication starts (REPLICATE, or a master whose slots all moved to another).
/// Returns the new master's address.
pub fn set_master(st: &mut State, index: usize) -> Option<(String, u16)> {
    let n = st.nodes.get(index)?;
    let (id, ip, port) = (n.id.clone(), n.ip.clone(), n.port);
    for slot in 0..SLOTS as u16 {
        if st.owner_index(slot) == Some(0) {
            st.assign(slot, None);
        }
    }
    st.migrating.clear();
    st.importing.clear();
    let me = st.me_mut();
    me.flags = (me.flags & !nflag::MASTER) | nflag::SLAVE;
    me.master = Some(id);
    Some((ip, port))
}

/// A replica (from nodes.conf at start-up, or whose master moved) replicates from its master's
/// current address, as Redis's cron re-points `masterhost`.
fn follow_master(st: &State) {
    let me = st.me();
    if me.flags & nflag::SLAVE == 0 {
        return;
    }
    let Some(master) = me.master.as_deref().and_then(|m| st.node(m)) else {
        return;
    };
    if master.ip.is_empty() || master.port == 0 || master.flags & nflag::NOADDR != 0 {
        return;
    }
    let Some(shared) = SHARED.get() else { return };
    let following = shared
        .repl
        .link()
        .is_some_and(|l| l.host == master.ip && l.port == master.port);
    if !following {
        start_replication(shared, master.ip.clone(), master.port);
    }
}

/// Starts replicating from `ip:port`.
pub fn start_replication(shared: &crate::ctx::Shared, ip: String, port: u16) {
    crate::log!("Cluster: replicating from {ip}:{port}");
    crate::repl::replica::start(shared, ip, port);
}

/// The bus's counters and links (empty before it starts).
pub fn view() -> View {
    VIEW.lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts the bus thread: listens on `addr` (the cluster port).
pub fn start(cluster: &'static Cluster, bind: &str, port: u16) -> anyhow::Result<()> {
    let host = if bind.is_empty() || bind == "*" {
        "0.0.0.0"
    } else {
        bind
    };
    let listener = TcpListener::bind((host, port))
        .map_err(|e| anyhow::anyhow!("cannot listen on the cluster bus port {host}:{port}: {e}"))?;
    listener.set_nonblocking(true)?;
    *VIEW.lock().unwrap_or_else(|e| e.into_inner()) = Some(View::default());
    // SAFETY: eventfd has no memory arguments; a failure returns -1 (publishes then wait for
    // the next cron pass).
    let wake = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    WAKE_FD.store(wake, std::sync::atomic::Ordering::Release);
    let seed = now_ms() ^ ((std::process::id() as u64) << 32);
    let mut bus = Bus {
        cluster,
        listener,
        links: BTreeMap::new(),
        peers: HashMap::new(),
        next_link: 1,
        rng: shards::rng::Rng::new(seed),
        sent: [0; mtype::COUNT],
        received: [0; mtype::COUNT],
        iteration: 0,
        last_cron_ms: 0,
        election: Election::default(),
        mf: ManualFailover::default(),
    };
    std::thread::Builder::new()
        .name("cluster-bus".into())
        .spawn(move || bus.run())?;
    crate::log!("Cluster bus: accepting on {host}:{port}");
    Ok(())
}

/// One TCP connection to or from a peer.
struct Link {
    sock: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// The node it belongs to (for an outbound link, the node it was opened for; for an
    /// inbound one, the sender once known).
    node: Option<String>,
    outbound: bool,
    /// An outbound connect still in progress.
    connecting: bool,
    ctime_ms: u64,
    /// The peer's address, for nodes whose IP we learn from the connection.
    peer_ip: String,
    closed: bool,
}

/// What the bus knows about a node beyond the shared state.
#[derive(Default)]
struct Peer {
    /// The outbound link.
    link: Option<u64>,
    /// The replication offset it last announced.
    repl_offset: u64,
    /// When this node last voted for one of its replicas (a master).
    voted_ms: u64,
    ctime_ms: u64,
    data_received_ms: u64,
    fail_time_ms: u64,
    /// Masters that reported it failing, and when.
    reports: HashMap<String, u64>,
}

struct Bus {
    cluster: &'static Cluster,
    listener: TcpListener,
    links: BTreeMap<u64, Link>,
    peers: HashMap<String, Peer>,
    next_link: u64,
    rng: shards::rng::Rng,
    sent: [u64; mtype::COUNT],
    received: [u64; mtype::COUNT],
    iteration: u64,
    last_cron_ms: u64,
    election: Election,
    mf: ManualFailover,
}

/// A replica's election (Redis's failover_auth_*).
#[derive(Default)]
struct Election {
    /// When the election starts (or started).
    time_ms: u64,
    votes: usize,
    sent: bool,
    rank: usize,
    epoch: u64,
}

/// A manual failover in progress (Redis's mf_*), on the master or on the replica.
#[derive(Default)]
struct ManualFailover {
    /// Its deadline; 0: none.
    end_ms: u64,
    /// Replica: the election may start.
    can_start: bool,
    /// Replica: the offset the paused master reported.
    master_offset: Option<u64>,
    /// Master: the replica taking over.
    replica: Option<String>,
}

/// How long a manual failover may take (CLUSTER_MF_TIMEOUT).
const MF_TIMEOUT_MS: u64 = 5000;

/// What a pass did to the state.
#[derive(Default, Clone, Copy)]
struct Todo {
    publish: bool,
    save: bool,
}

impl Todo {
    fn publish(&mut self) {
        self.publish = true;
    }
    fn save(&mut self) {
        self.publish = true;
        self.save = true;
    }
}

/// Wire flags for a node.
fn wire_flags(n: &Node, myself: bool) -> u16 {
    let mut f = 0;
    for (ours, theirs) in [
        (nflag::MASTER, flag::MASTER),
        (nflag::SLAVE, flag::SLAVE),
        (nflag::PFAIL, flag::PFAIL),
        (nflag::FAIL, flag::FAIL),
        (nflag::HANDSHAKE, flag::HANDSHAKE),
        (nflag::NOADDR, flag::NOADDR),
        (nflag::NOFAILOVER, flag::NOFAILOVER),
        (nflag::MEET, flag::MEET),
    ] {
        if n.flags & ours != 0 {
            f |= theirs;
        }
    }
    if myself {
        f |= flag::MYSELF;
    }
    f
}

impl Bus {
    fn run(&mut self) {
        loop {
            let now = now_ms();
            let wait = (self.last_cron_ms + CRON_MS)
                .saturating_sub(now)
                .min(CRON_MS);
            self.poll(wait as i32);
            let now = now_ms();
            let mut queue = Vec::new();
            self.read_all(&mut queue);
            let wake = WAKE_FD.load(std::sync::atomic::Ordering::Acquire);
            if wake >= 0 {
                let mut count = [0u8; 8];
                let _ = crate::net::read(wake, &mut count);
            }
            let published = std::mem::take(&mut *OUTBOX.lock().unwrap_or_else(|e| e.into_inner()));
            if !published.is_empty() {
                let st = self.cluster.state();
                for (shard, channel, message) in published {
                    self.send_publish(&st, shard, channel, message);
                }
            }
            let cron = now >= self.last_cron_ms + CRON_MS;
            if !queue.is_empty() || cron {
                let cluster = self.cluster;
                cluster.bus_change(|st| {
                    let mut todo = Todo::default();
                    for (lid, m) in queue {
                        self.process(st, lid, m, now, &mut todo);
                    }
                    if cron {
                        follow_master(st);
                        self.requests(st, now, &mut todo);
                        self.cron(st, now, &mut todo);
                        self.manual_failover_cron(st, now);
                        self.replica_failover(st, now, &mut todo);
                    }
                    ((), todo.publish, todo.save)
                });
                if cron {
                    self.last_cron_ms = now;
                    self.iteration += 1;
                }
            }
            self.write_all();
            self.reap();
            if cron {
                self.publish_view();
            }
        }
    }

    /// Waits up to `timeout_ms` for the listener or a link to be ready.
    fn poll(&mut self, timeout_ms: i32) {
        let mut fds = vec![libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let wake = WAKE_FD.load(std::sync::atomic::Ordering::Acquire);
        if wake >= 0 {
            fds.push(libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for l in self.links.values() {
            let mut events = libc::POLLIN;
            if l.connecting || !l.out.is_empty() {
                events |= libc::POLLOUT;
            }
            fds.push(libc::pollfd {
                fd: l.sock.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    }

    /// Accepts new connections and reads whole messages from every link.
    fn read_all(&mut self, queue: &mut Vec<(u64, Message)>) {
        while let Ok((sock, addr)) = self.listener.accept() {
            if self.links.len() >= LINKS_MAX || sock.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = sock.set_nodelay(true);
            let id = self.new_link(sock, None, false, false);
            if let Some(l) = self.links.get_mut(&id) {
                l.peer_ip = addr.ip().to_string();
            }
        }
        for (&id, l) in self.links.iter_mut() {
            if l.closed {
                continue;
            }
            if l.connecting {
                match l.sock.take_error() {
                    Ok(None) if l.sock.peer_addr().is_ok() => l.connecting = false,
                    Ok(None) => continue,
                    _ => {
                        l.closed = true;
                        continue;
                    }
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            loop {
                match l.sock.read(&mut chunk) {
                    Ok(0) => {
                        l.closed = true;
                        break;
                    }
                    Ok(n) => l.inbuf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        l.closed = true;
                        break;
                    }
                }
                if l.inbuf.len() > msg::MSG_LEN_MAX + READ_CHUNK {
                    break;
                }
            }
            let mut at = 0;
            while !l.closed {
                match msg::frame_len(&l.inbuf[at..]) {
                    Ok(Some(n)) => {
                        match msg::decode(&l.inbuf[at..at + n]) {
                            Ok(m) => queue.push((id, m)),
                            Err(e) => {
                                warn!("Cluster bus: dropping a link: {e}");
                                l.closed = true;
                            }
                        }
                        at += n;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!("Cluster bus: dropping a link: {e}");
                        l.closed = true;
                    }
                }
            }
            l.inbuf.drain(..at.min(l.inbuf.len()));
        }
    }

    fn new_link(
        &mut self,
        sock: TcpStream,
        node: Option<String>,
        outbound: bool,
        connecting: bool,
    ) -> u64 {
        let id = self.next_link;
        self.next_link += 1;
        self.links.insert(
            id,
            Link {
                sock,
                inbuf: Vec::new(),
                out: Vec::new(),
                node,
                outbound,
                connecting,
                ctime_ms: now_ms(),
                peer_ip: String::new(),
                closed: false,
            },
        );
        id
    }

    fn write_all(&mut self) {
        let limit = match self.cluster.config.get_i64("cluster-link-sendbuf-limit") {
            0 => OUT_MAX,
            n => n.max(0) as usize,
        };
        for l in self.links.values_mut() {
            if l.connecting || l.closed {
                continue;
            }
            while !l.out.is_empty() {
                match l.sock.write(&l.out) {
                    Ok(0) => {
                        l.closed = true;
                        break;
                    }
                    Ok(n) => {
                        l.out.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        l.closed = true;
                        break;
                    }
                }
            }
            if l.out.len() > limit {
                warn!("Cluster bus: a link's send buffer passed its limit; dropping it");
                l.closed = true;
            }
        }
    }

    /// Removes closed links (their nodes reconnect in the cron).
    fn reap(&mut self) {
        let closed: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| l.closed)
            .map(|(&id, _)| id)
            .collect();
        for id in closed {
            self.links.remove(&id);
            for p in self.peers.values_mut() {
                if p.link == Some(id) {
                    p.link = None;
                }
            }
        }
    }

    fn close(&mut self, lid: u64) {
        if let Some(l) = self.links.get_mut(&lid) {
            l.closed = true;
        }
    }

    fn publish_view(&self) {
        let now = now_ms();
        let validity = self.node_timeout() * FAIL_REPORT_VALIDITY_MULT;
        let mut v = View {
            sent: self.sent,
            received: self.received,
            ..Default::default()
        };
        for l in self.links.values() {
            let Some(node) = &l.node else { continue };
            v.links.push(LinkInfo {
                direction: if l.outbound { "to" } else { "from" },
                node: node.clone(),
                create_time_ms: l.ctime_ms,
                events: if l.out.is_empty() { "r" } else { "rw" },
                send_buffer_allocated: l.out.capacity(),
                send_buffer_used: l.out.len(),
            });
        }
        for (id, p) in &self.peers {
            let n = p
                .reports
                .values()
                .filter(|&&t| now.saturating_sub(t) <= validity)
                .count();
            v.fail_reports.insert(id.clone(), n);
        }
        *VIEW.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }

    fn node_timeout(&self) -> u64 {
        self.cluster.config.get_i64("cluster-node-timeout").max(1) as u64
    }

    /// Queues a message on a link.
    fn send(&mut self, lid: u64, m: &Message) {
        let Some(l) = self.links.get_mut(&lid) else {
            return;
        };
        if l.closed {
            return;
        }
        l.out.extend_from_slice(&m.encode());
        if let Some(c) = self.sent.get_mut(m.header.mtype as usize) {
            *c += 1;
        }
    }

    /// Sends to every node with a connected outbound link (Redis's clusterBroadcastMessage).
    fn broadcast(&mut self, st: &State, m: &Message) {
        let targets: Vec<u64> = st
            .nodes
            .iter()
            .skip(1)
            .filter(|n| n.flags & nflag::HANDSHAKE == 0)
            .filter_map(|n| self.peers.get(&n.id).and_then(|p| p.link))
            .collect();
        for lid in targets {
            self.send(lid, m);
        }
    }

    /// A message header about this node (clusterBuildMessageHdr).
    fn header(&self, st: &State, t: u16) -> Header {
        let me = st.me();
        let mut h = Header::new(t, msg::name_of(&me.id));
        let master_index = match (&me.master, me.flags & nflag::SLAVE != 0) {
            (Some(m), true) => st.find(m).unwrap_or(0),
            _ => 0,
        };
        for s in 0..SLOTS {
            if st.owner_index(s as u16) == Some(master_index) {
                msg::set_slot_bit(&mut h.slots, s);
            }
        }
        if let Some(m) = &me.master {
            h.slaveof = msg::name_of(m);
        }
        let announce = self.cluster.config.get("cluster-announce-ip");
        h.myip = announce;
        h.port = me.port;
        h.cport = me.cport;
        h.flags = wire_flags(me, true);
        h.state = if st.ok { 0 } else { 1 };
        h.current_epoch = st.current_epoch;
        h.config_epoch = st.nodes.get(master_index).map_or(0, |n| n.config_epoch);
        h.offset = repl_offset();
        if me.is_master() && self.mf.end_ms != 0 {
            h.mflags[0] |= msg::mflag::PAUSED;
        }
        h
    }

    /// Sends a PING, PONG or MEET with gossip (clusterSendPing).
    fn send_ping(&mut self, st: &mut State, lid: u64, t: u16, now: u64) {
        let target = self.links.get(&lid).and_then(|l| l.node.clone());
        let mut h = self.header(st, t);
        let known = st.nodes.len();
        let fresh = known.saturating_sub(2);
        let wanted = (known / 10).max(3).min(fresh);
        let mut chosen: Vec<usize> = Vec::new();
        let mut tries = wanted * 3;
        while chosen.len() < wanted && tries > 0 && known > 1 {
            tries -= 1;
            let i = 1 + self.rng.below(known - 1);
            let n = &st.nodes[i];
            let linked = self.peers.get(&n.id).is_some_and(|p| p.link.is_some());
            if n.flags & (nflag::PFAIL | nflag::HANDSHAKE | nflag::NOADDR) != 0
                || (!linked && st.ranges_of(i).is_empty())
                || Some(&n.id) == target.as_ref()
                || chosen.contains(&i)
            {
                continue;
            }
            chosen.push(i);
        }
        for (i, n) in st.nodes.iter().enumerate().skip(1) {
            if n.flags & nflag::PFAIL != 0 && n.flags & (nflag::HANDSHAKE | nflag::NOADDR) == 0 {
                chosen.push(i);
            }
        }
        let gossip = chosen
            .iter()
            .map(|&i| {
                let n = &st.nodes[i];
                Gossip {
                    name: msg::name_of(&n.id),
                    ping_sent: (n.ping_sent_ms / 1000) as u32,
                    pong_received: (n.pong_recv_ms / 1000) as u32,
                    ip: n.ip.clone(),
                    port: n.port,
                    cport: n.cport,
                    flags: wire_flags(n, false),
                    pport: 0,
                }
            })
            .collect();
        let mut exts = Vec::new();
        if !st.me().hostname.is_empty() {
            exts.push(Ext::Hostname(st.me().hostname.clone()));
        }
        h.mflags[0] |= msg::mflag::EXT_DATA;
        let m = Message {
            header: h,
            body: Body::Ping { gossip, exts },
        };
        if t == mtype::PING {
            if let Some(i) = target.as_deref().and_then(|id| st.find(id)) {
                if st.nodes[i].ping_sent_ms == 0 {
                    st.nodes[i].ping_sent_ms = now;
                }
            }
        }
        self.send(lid, &m);
    }

    /// Opens an outbound link to a node and queues its first PING (or MEET).
    fn connect(&mut self, st: &mut State, index: usize, now: u64) -> bool {
        let n = &st.nodes[index];
        let Ok(ip) = n.ip.parse::<std::net::IpAddr>() else {
            return false;
        };
        let addr = SocketAddr::new(ip, n.cport);
        let id = n.id.clone();
        let meet = n.flags & nflag::MEET != 0;
        let Ok(sock) = connect_nonblocking(addr) else {
            return false;
        };
        let lid = self.new_link(sock, Some(id.clone()), true, true);
        self.peers.entry(id).or_default().link = Some(lid);
        // A pending ping keeps its time, so a node that never answers still times out.
        let old_ping = st.nodes[index].ping_sent_ms;
        self.send_ping(st, lid, if meet { mtype::MEET } else { mtype::PING }, now);
        if old_ping != 0 {
            st.nodes[index].ping_sent_ms = old_ping;
        }
        st.nodes[index].flags &= !nflag::MEET;
        true
    }

    /// clusterCron: links, handshake timeouts, heartbeats and failure detection.
    fn cron(&mut self, st: &mut State, now: u64, todo: &mut Todo) {
        self.reconcile(st, now, todo);
        self.heartbeat(st, now, todo);
        self.detect_failures(st, now, todo);
    }

    /// Links follow the state: nodes gone lose theirs, new ones get one, handshakes time out.
    fn reconcile(&mut self, st: &mut State, now: u64, todo: &mut Todo) {
        let timeout = self.node_timeout();
        let handshake_timeout = timeout.max(1000);
        // Nodes gone from the state (FORGET, RESET) lose their links and bus data.
        let ids: Vec<String> = st.nodes.iter().map(|n| n.id.clone()).collect();
        let gone: Vec<String> = self
            .peers
            .keys()
            .filter(|k| !ids.contains(k))
            .cloned()
            .collect();
        for id in gone {
            self.drop_links(&id);
        }
        let now_s = now / 1000;
        st.blacklist.retain(|_, until| *until > now_s);
        let mut i = 1;
        while i < st.nodes.len() {
            let id = st.nodes[i].id.clone();
            let peer = self.peers.entry(id.clone()).or_insert_with(|| Peer {
                ctime_ms: now,
                ..Default::default()
            });
            if st.nodes[i].flags & nflag::HANDSHAKE != 0
                && now.saturating_sub(peer.ctime_ms) > handshake_timeout
            {
                crate::log!(
                    "Cluster bus: handshake with {}:{} timed out",
                    st.nodes[i].ip,
                    st.nodes[i].cport
                );
                self.forget_node(st, i);
                todo.publish();
                continue;
            }
            if peer.link.is_none()
                && st.nodes[i].flags & nflag::NOADDR == 0
                && self.connect(st, i, now)
            {
                todo.publish();
            }
            i += 1;
        }
    }

    /// Every second, a PING to the least recently answered of five random nodes.
    fn heartbeat(&mut self, st: &mut State, now: u64, todo: &mut Todo) {
        // Every second: ping the least recently answered of five random nodes.
        if self.iteration.is_multiple_of(10) && st.nodes.len() > 1 {
            let mut best: Option<usize> = None;
            for _ in 0..5 {
                let i = 1 + self.rng.below(st.nodes.len() - 1);
                let n = &st.nodes[i];
                let linked = self.peers.get(&n.id).and_then(|p| p.link);
                let usable =
                    linked.is_some_and(|l| self.links.get(&l).is_some_and(|l| !l.connecting));
                if !usable || n.ping_sent_ms != 0 || n.flags & nflag::HANDSHAKE != 0 {
                    continue;
                }
                if best.is_none_or(|b| st.nodes[b].pong_recv_ms > n.pong_recv_ms) {
                    best = Some(i);
                }
            }
            if let Some(i) = best {
                if let Some(l) = self.peers.get(&st.nodes[i].id).and_then(|p| p.link) {
                    self.send_ping(st, l, mtype::PING, now);
                    todo.publish();
                }
            }
        }
    }

    /// Pings nodes not pinged for half the node timeout, drops silent links, and marks PFAIL
    /// the nodes that did not answer within the node timeout.
    fn detect_failures(&mut self, st: &mut State, now: u64, todo: &mut Todo) {
        let timeout = self.node_timeout();
        let mut update = false;
        for i in 1..st.nodes.len() {
            let n = &st.nodes[i];
            if n.flags & (nflag::NOADDR | nflag::HANDSHAKE) != 0 {
                continue;
            }
            let Some(peer) = self.peers.get(&n.id) else {
                continue;
            };
            let ping_delay = now.saturating_sub(n.ping_sent_ms);
            let data_delay = now.saturating_sub(peer.data_received_ms);
            let link = peer.link;
            let link_ctime = link.and_then(|l| self.links.get(&l)).map(|l| l.ctime_ms);
            // A link that stays silent for half the timeout is reconnected.
            if let (Some(l), Some(ct)) = (link, link_ctime) {
                if now.saturating_sub(ct) > timeout
                    && n.ping_sent_ms != 0
                    && ping_delay > timeout / 2
                    && data_delay > timeout / 2
                {
                    self.close(l);
                }
            }
            let connected = link_ctime.is_some()
                && link
                    .and_then(|l| self.links.get(&l))
                    .is_some_and(|l| !l.connecting && !l.closed);
            if st.nodes[i].connected != connected {
                st.nodes[i].connected = connected;
                todo.publish();
            }
            if connected
                && st.nodes[i].ping_sent_ms == 0
                && now.saturating_sub(st.nodes[i].pong_recv_ms) > timeout / 2
            {
                if let Some(l) = link {
                    self.send_ping(st, l, mtype::PING, now);
                    todo.publish();
                }
                continue;
            }
            let n = &st.nodes[i];
            if n.ping_sent_ms == 0 {
                continue;
            }
            if ping_delay.min(data_delay) > timeout && n.flags & (nflag::PFAIL | nflag::FAIL) == 0 {
                crate::log!("*** NODE {} possibly failing", n.id);
                st.nodes[i].flags |= nflag::PFAIL;
                update = true;
            }
        }
        if update {
            todo.publish();
        }
    }

    /// Closes the links of node `id` and drops its bus data.
    fn drop_links(&mut self, id: &str) {
        if let Some(p) = self.peers.remove(id) {
            if let Some(l) = p.link {
                self.close(l);
            }
        }
        for l in self.links.values_mut() {
            if l.node.as_deref() == Some(id) {
                l.closed = true;
            }
        }
    }

    /// Removes a node (never this one) with its links and bus data.
    fn forget_node(&mut self, st: &mut State, index: usize) {
        let Some(n) = st.nodes.get(index) else {
            return;
        };
        let id = n.id.clone();
        self.drop_links(&id);
        for p in self.peers.values_mut() {
            p.reports.remove(&id);
        }
        st.remove(index);
    }

    /// Handles one message (clusterProcessPacket).
    fn process(&mut self, st: &mut State, lid: u64, m: Message, now: u64, todo: &mut Todo) {
        let h = &m.header;
        let t = h.mtype;
        if let Some(c) = self.received.get_mut(t as usize) {
            *c += 1;
        }
        let Some(link) = self.links.get(&lid) else {
            return;
        };
        if link.closed || h.version != msg::VERSION {
            return;
        }
        let link_node = link.node.clone();
        let outbound = link.outbound;
        let peer_ip = if link.peer_ip.is_empty() {
            link.sock
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        } else {
            link.peer_ip.clone()
        };
        let sender_id = msg::id_of(&h.sender);
        let mut sender = sender_id
            .as_deref()
            .and_then(|id| st.find(id))
            .filter(|&i| i != 0 && st.nodes[i].flags & nflag::HANDSHAKE == 0);
        if let Some(s) = sender {
            if h.current_epoch > st.current_epoch {
                st.current_epoch = h.current_epoch;
                todo.save();
            }
            if h.config_epoch > st.nodes[s].config_epoch {
                st.nodes[s].config_epoch = h.config_epoch;
                todo.save();
            }
            let id = st.nodes[s].id.clone();
            let peer = self.peers.entry(id.clone()).or_default();
            peer.data_received_ms = now;
            peer.repl_offset = h.offset;
            if !outbound {
                if let Some(l) = self.links.get_mut(&lid) {
                    l.node = Some(id);
                }
            }
        }
        let sender_ip = if h.myip.is_empty() {
            peer_ip.clone()
        } else {
            h.myip.clone()
        };
        if t == mtype::PING || t == mtype::MEET {
            self.on_ping_or_meet(st, lid, &m, sender, &sender_ip, now, todo);
        }
        match t {
            mtype::PING | mtype::PONG | mtype::MEET => {
                self.process_ping(st, lid, &m, link_node, &mut sender, sender_ip, now, todo)
            }
            mtype::FAIL => self.on_fail(st, sender, &m.body, now, todo),
            mtype::UPDATE => self.on_update(st, sender, &m.body, todo),
            mtype::FAILOVER_AUTH_REQUEST => {
                if let Some(s) = sender {
                    self.vote(st, s, &m.header, now, todo);
                }
            }
            mtype::FAILOVER_AUTH_ACK => {
                let Some(s) = sender else { return };
                if st.nodes[s].is_master()
                    && !st.ranges_of(s).is_empty()
                    && m.header.current_epoch >= self.election.epoch
                {
                    self.election.votes += 1;
                }
            }
            mtype::MFSTART => self.on_mfstart(st, sender, now),
            mtype::PUBLISH | mtype::PUBLISHSHARD if sender.is_some() => {
                if let Body::Publish { channel, message } = m.body {
                    deliver_later(t == mtype::PUBLISHSHARD, channel, message);
                }
            }
            // MODULE: no modules here.
            _ => {}
        }
    }

    /// The PING/PONG/MEET part of clusterProcessPacket.
    #[allow(clippy::too_many_arguments)]
    fn process_ping(
        &mut self,
        st: &mut State,
        lid: u64,
        m: &Message,
        link_node: Option<String>,
        sender: &mut Option<usize>,
        sender_ip: String,
        now: u64,
        todo: &mut Todo,
    ) {
        let h = &m.header;
        let outbound = self.links.get(&lid).is_some_and(|l| l.outbound);
        let Some(sender_id) = msg::id_of(&h.sender) else {
            return;
        };
        if outbound && !self.check_link_node(st, lid, link_node, sender, &sender_id, h, todo) {
            return;
        }
        let Some(s) = *sender else {
            return;
        };
        let nofailover = h.flags & flag::NOFAILOVER != 0;
        let n = &mut st.nodes[s];
        if (n.flags & nflag::NOFAILOVER != 0) != nofailover {
            n.flags ^= nflag::NOFAILOVER;
            todo.publish();
        }
        // The address changed (seen on an inbound PING).
        if h.mtype == mtype::PING
            && !outbound
            && (n.ip != sender_ip || n.port != h.port || n.cport != h.cport)
        {
            crate::log!(
                "Address updated for node {}, now {}:{}",
                n.id,
                sender_ip,
                h.port
            );
            n.ip = sender_ip;
            n.port = h.port;
            n.cport = h.cport;
            n.flags &= !nflag::NOADDR;
            let id = n.id.clone();
            if let Some(l) = self.peers.get_mut(&id).and_then(|p| p.link.take()) {
                self.close(l);
            }
            todo.save();
        }
        if outbound && h.mtype == mtype::PONG {
            let n = &mut st.nodes[s];
            n.pong_recv_ms = now;
            n.ping_sent_ms = 0;
            todo.publish();
            if n.flags & nflag::PFAIL != 0 {
                n.flags &= !nflag::PFAIL;
            } else if n.flags & nflag::FAIL != 0 {
                self.clear_failure_if_needed(st, s, now, todo);
            }
        }
        self.update_role(st, s, h, todo);
        self.update_claims(st, lid, s, h, todo);
        // Config epoch collision between two masters.
        if st.me().is_master()
            && st.nodes[s].is_master()
            && h.config_epoch == st.me().config_epoch
            // The node with the smaller id moves (clusterHandleConfigEpochCollision).
            && sender_id.as_str() > st.me().id.as_str()
        {
            st.current_epoch += 1;
            st.me_mut().config_epoch = st.current_epoch;
            crate::log!(
                "WARNING: configEpoch collision with node {sender_id}. configEpoch set to {}",
                st.current_epoch
            );
            todo.save();
        }
        if h.mflags[0] & msg::mflag::PAUSED != 0
            && self.mf.end_ms != 0
            && self.mf.master_offset.is_none()
            && st.me().master.as_deref() == Some(sender_id.as_str())
        {
            crate::log!(
                "Received replication offset for paused master manual failover: {}",
                h.offset
            );
            self.mf.master_offset = Some(h.offset);
        }
        self.gossip(st, Some(s), m, now, todo);
        if let Body::Ping { exts, .. } = &m.body {
            for e in exts {
                if let Ext::Hostname(hn) = e {
                    if st.nodes[s].hostname != *hn {
                        st.nodes[s].hostname = hn.clone();
                        todo.save();
                    }
                }
            }
        }
    }

    /// Takes the slots a master claims with a higher config epoch (clusterUpdateSlotsConfigWith).
    fn update_slots(
        &mut self,
        st: &mut State,
        s: usize,
        epoch: u64,
        slots: &[u8; msg::SLOT_BYTES],
        todo: &mut Todo,
    ) {
        if s == 0 {
            return;
        }
        let cur_master = if st.me().is_master() {
            Some(0)
        } else {
            st.me().master.as_deref().and_then(|m| st.find(m))
        };
        let mut new_master = None;
        let mut lost = 0usize;
        for j in 0..SLOTS {
            if !msg::slot_bit(slots, j) {
                continue;
            }
            let slot = j as u16;
            let owner = st.owner_index(slot);
            if owner == Some(s) || st.importing.contains_key(&slot) {
                continue;
            }
            if owner.is_none_or(|o| st.nodes[o].config_epoch < epoch) {
                if owner == Some(0) {
                    lost += 1;
                    st.migrating.remove(&slot);
                }
                if owner.is_some() && owner == cur_master {
                    new_master = Some(s);
                }
                st.assign(slot, Some(s));
                todo.save();
            }
        }
        if lost > 0 {
            crate::log!(
                "{lost} of my slots taken by {} (config epoch {epoch})",
                st.nodes[s].id
            );
        }
        // Our master (or we) lost every slot to one node: follow it as a replica, as Redis
        // does when a failed master comes back after its replica took over.
        if let (Some(nm), Some(cm)) = (new_master, cur_master) {
            if st.ranges_of(cm).is_empty() {
                crate::log!(
                    "Configuration change detected. Reconfiguring myself as a replica of {}",
                    st.nodes[nm].id
                );
                if let Some((ip, port)) = set_master(st, nm) {
                    self.end_manual_failover();
                    if let Some(shared) = SHARED.get() {
                        start_replication(shared, ip, port);
                    }
                }
            }
        }
    }

    /// The gossip sections of a message (clusterProcessGossipSection).
    fn gossip(
        &mut self,
        st: &mut State,
        sender: Option<usize>,
        m: &Message,
        now: u64,
        todo: &mut Todo,
    ) {
        let Body::Ping { gossip, .. } = &m.body else {
            return;
        };
        let sender_master = sender.filter(|&s| st.nodes[s].is_master());
        let reporter = sender_master.map(|s| st.nodes[s].id.clone());
        for g in gossip {
            let Some(id) = msg::id_of(&g.name) else {
                continue;
            };
            if let Some(i) = st.find(&id) {
                if i == 0 {
                    continue;
                }
                if let Some(rep) = &reporter {
                    let peer = self.peers.entry(id.clone()).or_default();
                    if g.flags & (flag::FAIL | flag::PFAIL) != 0 {
                        peer.reports.insert(rep.clone(), now);
                        self.mark_failing_if_needed(st, i, now, todo);
                    } else {
                        peer.reports.remove(rep);
                    }
                }
                let reports = self.peers.get(&id).map_or(0, |p| p.reports.len());
                let n = &mut st.nodes[i];
                if g.flags & (flag::FAIL | flag::PFAIL) == 0 && n.ping_sent_ms == 0 && reports == 0
                {
                    let pong = g.pong_received as u64 * 1000;
                    if pong <= now + 500 && pong > n.pong_recv_ms {
                        n.pong_recv_ms = pong;
                    }
                }
                if n.flags & (nflag::FAIL | nflag::PFAIL) != 0
                    && g.flags & (flag::NOADDR | flag::FAIL | flag::PFAIL) == 0
                    && (n.ip != g.ip || n.port != g.port || n.cport != g.cport)
                {
                    n.ip = g.ip.clone();
                    n.port = g.port;
                    n.cport = g.cport;
                    n.flags &= !nflag::NOADDR;
                    if let Some(l) = self.peers.get_mut(&id).and_then(|p| p.link.take()) {
                        self.close(l);
                    }
                    todo.save();
                }
            } else if sender.is_some()
                && g.flags & flag::NOADDR == 0
                && !st.blacklist.contains_key(&id)
            {
                self.start_handshake(st, &g.ip, g.port, g.cport, now);
                todo.publish();
            }
        }
    }

    /// A new node in handshake, unless one is already under way for that address.
    fn start_handshake(&mut self, st: &mut State, ip: &str, port: u16, cport: u16, now: u64) {
        let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
            return;
        };
        let ip = addr.to_string();
        if port == 0 || cport == 0 {
            return;
        }
        if st.nodes.iter().any(|n| {
            n.flags & nflag::HANDSHAKE != 0 && n.ip == ip && n.port == port && n.cport == cport
        }) {
            return;
        }
        let n = Node::new(
            super::state::random_id(),
            ip,
            port,
            cport,
            nflag::HANDSHAKE | nflag::MEET,
        );
        self.peers.insert(
            n.id.clone(),
            Peer {
                ctime_ms: now,
                ..Default::default()
            },
        );
        st.nodes.push(n);
    }

    /// PFAIL becomes FAIL once a majority of masters report it (markNodeAsFailingIfNeeded).
    fn mark_failing_if_needed(&mut self, st: &mut State, i: usize, now: u64, todo: &mut Todo) {
        let n = &st.nodes[i];
        if n.flags & nflag::PFAIL == 0 || n.flags & nflag::FAIL != 0 {
            return;
        }
        let needed = st.size / 2 + 1;
        let validity = self.node_timeout() * FAIL_REPORT_VALIDITY_MULT;
        let id = n.id.clone();
        let peer = self.peers.entry(id.clone()).or_default();
        peer.reports
            .retain(|_, t| now.saturating_sub(*t) <= validity);
        let mut failures = peer.reports.len();
        if st.me().is_master() {
            failures += 1;
        }
        if failures < needed {
            return;
        }
        crate::log!("Marking node {id} as failing (quorum reached).");
        st.nodes[i].flags = (st.nodes[i].flags & !nflag::PFAIL) | nflag::FAIL;
        peer.fail_time_ms = now;
        let m = Message {
            header: self.header(st, mtype::FAIL),
            body: Body::Fail {
                name: msg::name_of(&id),
            },
        };
        self.broadcast(st, &m);
        todo.save();
    }

    /// A node reachable again loses FAIL: at once for a replica or a master without slots,
    /// after twice the node timeout for a master with slots (clearNodeFailureIfNeeded).
    fn clear_failure_if_needed(&mut self, st: &mut State, i: usize, now: u64, todo: &mut Todo) {
        let n = &st.nodes[i];
        let has_slots = !st.ranges_of(i).is_empty();
        let fail_time = self.peers.get(&n.id).map_or(0, |p| p.fail_time_ms);
        let undo = self.node_timeout() * FAIL_UNDO_TIME_MULT;
        if !n.is_master() || !has_slots || now.saturating_sub(fail_time) > undo {
            crate::log!("Clear FAIL state for node {}: it is reachable again.", n.id);
            st.nodes[i].flags &= !nflag::FAIL;
            todo.save();
        }
    }
}

/// Starts a non-blocking connect.
fn connect_nonblocking(addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    let _ = s.set_nodelay(true);
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(s.into())
}

impl Bus {
    /// Requests from CLUSTER commands.
    fn requests(&mut self, st: &mut State, now: u64, todo: &mut Todo) {
        let reqs: Vec<Request> =
            std::mem::take(&mut *REQUESTS.lock().unwrap_or_else(|e| e.into_inner()));
        for r in reqs {
            let Request::Failover { force, takeover } = r;
            let Some(mi) = st.me().master.as_deref().and_then(|m| st.find(m)) else {
                continue;
            };
            if takeover {
                // No votes: a new config epoch of our own, then the master's slots.
                crate::log!("Taking over the master (user request).");
                st.current_epoch += 1;
                st.me_mut().config_epoch = st.current_epoch;
                self.replace_master(st, mi, now, todo);
                continue;
            }
            self.mf = ManualFailover {
                end_ms: now + MF_TIMEOUT_MS,
                can_start: force,
                ..Default::default()
            };
            if force {
                crate::log!("Forced failover user request accepted.");
                continue;
            }
            crate::log!("Manual failover user request accepted.");
            if let Some(l) = self.peers.get(&st.nodes[mi].id).and_then(|p| p.link) {
                let m = Message {
                    header: self.header(st, mtype::MFSTART),
                    body: Body::Empty,
                };
                self.send(l, &m);
            }
        }
    }

    /// Ends a manual failover (and the master's pause).
    fn end_manual_failover(&mut self) {
        if self.mf.replica.is_some() {
            if let Some(shared) = SHARED.get() {
                shared
                    .pause_end_ms
                    .store(1, std::sync::atomic::Ordering::Release);
                shards::keyspace::EXPIRY_PAUSED_UNTIL_MS
                    .store(0, std::sync::atomic::Ordering::Release);
            }
        }
        self.mf = ManualFailover::default();
    }

    /// A manual failover's deadline, the master's pings to the replica, and the replica's
    /// catching up (clusterHandleManualFailover).
    fn manual_failover_cron(&mut self, st: &mut State, now: u64) {
        if self.mf.end_ms == 0 {
            return;
        }
        if now > self.mf.end_ms {
            crate::log!("Manual failover timed out.");
            self.end_manual_failover();
            return;
        }
        if let Some(r) = self.mf.replica.clone() {
            if let Some(l) = self.peers.get(&r).and_then(|p| p.link) {
                self.send_ping(st, l, mtype::PING, now);
            }
            return;
        }
        if !self.mf.can_start {
            if let Some(off) = self.mf.master_offset {
                if repl_offset() >= off {
                    crate::log!(
                        "All master replication stream processed, manual failover can start."
                    );
                    self.mf.can_start = true;
                }
            }
        }
    }

    /// This replica's rank among its master's replicas: how many have a higher offset.
    fn rank(&self, st: &State) -> usize {
        let mine = repl_offset();
        let master = st.me().master.clone();
        st.nodes
            .iter()
            .skip(1)
            .filter(|n| {
                n.master.is_some() && n.master == master && n.flags & nflag::NOFAILOVER == 0
            })
            .filter(|n| self.peers.get(&n.id).is_some_and(|p| p.repl_offset > mine))
            .count()
    }

    /// A replica of a failed master asks the masters for their votes and, with a majority,
    /// takes over (clusterHandleSlaveFailover).
    fn replica_failover(&mut self, st: &mut State, now: u64, todo: &mut Todo) {
        let me = st.me();
        if me.flags & nflag::SLAVE == 0 {
            return;
        }
        let Some(mi) = me.master.as_deref().and_then(|m| st.find(m)) else {
            return;
        };
        let manual = self.mf.end_ms != 0 && self.mf.can_start;
        let master = &st.nodes[mi];
        let blocked = master.flags & nflag::FAIL == 0 || me.flags & nflag::NOFAILOVER != 0;
        if (blocked && !manual) || st.ranges_of(mi).is_empty() {
            return;
        }
        let timeout = self.node_timeout();
        let auth_timeout = (timeout * 2).max(2000);
        let retry = auth_timeout * 2;
        // Data too old for a failover (cluster-replica-validity-factor).
        let factor = self
            .cluster
            .config
            .get_i64("cluster-replica-validity-factor")
            .max(0) as u64;
        if factor > 0 && !manual {
            if let Some(l) = SHARED.get().and_then(|s| s.repl.link()) {
                let down = l.down_since_ms.load(std::sync::atomic::Ordering::Acquire);
                let mut age = now.saturating_sub(down);
                if age > timeout {
                    age -= timeout;
                }
                let ping_period = self
                    .cluster
                    .config
                    .get_i64("repl-ping-replica-period")
                    .max(1) as u64
                    * 1000;
                if l.state() != "connected" && age > ping_period + timeout * factor {
                    return;
                }
            }
        }
        let e = &mut self.election;
        if now.saturating_sub(e.time_ms) > retry {
            let rank = self.rank(st);
            let e = &mut self.election;
            e.time_ms = now + 500 + self.rng.below(500) as u64 + rank as u64 * 1000;
            e.votes = 0;
            e.sent = false;
            e.rank = rank;
            if manual {
                e.time_ms = now;
                e.rank = 0;
            }
            crate::log!(
                "Start of election delayed for {} milliseconds (rank #{rank}).",
                e.time_ms.saturating_sub(now)
            );
            // The other replicas of our master learn our offset at once.
            let siblings: Vec<u64> = st
                .nodes
                .iter()
                .skip(1)
                .filter(|n| n.master.is_some() && n.master == st.me().master)
                .filter_map(|n| self.peers.get(&n.id).and_then(|p| p.link))
                .collect();
            for l in siblings {
                self.send_ping(st, l, mtype::PONG, now);
            }
            return;
        }
        if !e.sent && !manual {
            let rank = self.rank(st);
            let e = &mut self.election;
            if rank > e.rank {
                e.time_ms += (rank - e.rank) as u64 * 1000;
                e.rank = rank;
            }
        }
        let e = &mut self.election;
        if now < e.time_ms || now - e.time_ms > auth_timeout {
            return;
        }
        if !e.sent {
            st.current_epoch += 1;
            e.epoch = st.current_epoch;
            e.sent = true;
            crate::log!("Starting a failover election for epoch {}.", e.epoch);
            let mut h = self.header(st, mtype::FAILOVER_AUTH_REQUEST);
            if manual {
                h.mflags[0] |= msg::mflag::FORCEACK;
            }
            self.broadcast(
                st,
                &Message {
                    header: h,
                    body: Body::Empty,
                },
            );
            todo.save();
            return;
        }
        let needed = st.size / 2 + 1;
        if e.votes >= needed {
            crate::log!("Failover election won: I'm the new master.");
            let epoch = e.epoch;
            if st.me().config_epoch < epoch {
                st.me_mut().config_epoch = epoch;
            }
            self.replace_master(st, mi, now, todo);
        }
    }

    /// Becomes a master in place of the node at `mi`, with its slots, and tells everyone
    /// (clusterFailoverReplaceYourMaster).
    fn replace_master(&mut self, st: &mut State, mi: usize, now: u64, todo: &mut Todo) {
        let me = st.me_mut();
        me.flags = (me.flags & !nflag::SLAVE) | nflag::MASTER;
        me.master = None;
        for slot in 0..SLOTS as u16 {
            if st.owner_index(slot) == Some(mi) {
                st.assign(slot, Some(0));
            }
        }
        if let Some(shared) = SHARED.get() {
            if let Some(l) = shared.repl.link() {
                l.request_promotion();
            }
        }
        self.election = Election::default();
        self.end_manual_failover();
        todo.save();
        let links: Vec<u64> = st
            .nodes
            .iter()
            .skip(1)
            .filter_map(|n| self.peers.get(&n.id).and_then(|p| p.link))
            .collect();
        for l in links {
            self.send_ping(st, l, mtype::PONG, now);
        }
    }

    /// A master's vote for a replica of a failed master (clusterSendFailoverAuthIfNeeded): once
    /// per epoch, once per master in twice the node timeout, and only if no slot it claims has
    /// a newer owner.
    fn vote(&mut self, st: &mut State, s: usize, h: &Header, now: u64, todo: &mut Todo) {
        if !st.me().is_master() || st.ranges_of(0).is_empty() {
            return;
        }
        if h.current_epoch < st.current_epoch || st.last_vote_epoch == st.current_epoch {
            return;
        }
        let node = &st.nodes[s];
        let Some(mi) = node.master.as_deref().and_then(|m| st.find(m)) else {
            return;
        };
        if node.is_master() {
            return;
        }
        let force = h.mflags[0] & msg::mflag::FORCEACK != 0;
        if st.nodes[mi].flags & nflag::FAIL == 0 && !force {
            return;
        }
        let timeout = self.node_timeout();
        let master_id = st.nodes[mi].id.clone();
        if now.saturating_sub(self.peers.get(&master_id).map_or(0, |p| p.voted_ms)) < timeout * 2 {
            return;
        }
        for j in 0..SLOTS {
            if !h.has_slot(j) {
                continue;
            }
            if let Some(o) = st.owner_index(j as u16) {
                if st.nodes[o].config_epoch > h.config_epoch {
                    return;
                }
            }
        }
        st.last_vote_epoch = st.current_epoch;
        self.peers.entry(master_id).or_default().voted_ms = now;
        crate::log!(
            "Failover auth granted to {} for epoch {}",
            st.nodes[s].id,
            st.current_epoch
        );
        todo.save();
        let m = Message {
            header: self.header(st, mtype::FAILOVER_AUTH_ACK),
            body: Body::Empty,
        };
        if let Some(l) = self.peers.get(&st.nodes[s].id).and_then(|p| p.link) {
            self.send(l, &m);
        }
    }
}

impl Bus {
    /// Sends a message published here: PUBLISH to every node, PUBLISHSHARD to the other nodes
    /// of this node's shard (its master and that master's replicas).
    fn send_publish(&mut self, st: &State, shard: bool, channel: Vec<u8>, message: Vec<u8>) {
        let t = if shard {
            mtype::PUBLISHSHARD
        } else {
            mtype::PUBLISH
        };
        let m = Message {
            header: self.header(st, t),
            body: Body::Publish { channel, message },
        };
        if !shard {
            self.broadcast(st, &m);
            return;
        }
        let me = st.me();
        let master = if me.is_master() {
            me.id.clone()
        } else {
            me.master.clone().unwrap_or_default()
        };
        let targets: Vec<u64> = st
            .nodes
            .iter()
            .skip(1)
            .filter(|n| n.id == master || n.master.as_deref() == Some(master.as_str()))
            .filter_map(|n| self.peers.get(&n.id).and_then(|p| p.link))
            .collect();
        for l in targets {
            self.send(l, &m);
        }
    }
}

impl Bus {
    /// FAIL: a node the sender's majority found failing.
    fn on_fail(
        &mut self,
        st: &mut State,
        sender: Option<usize>,
        body: &Body,
        now: u64,
        todo: &mut Todo,
    ) {
        let Body::Fail { name } = body else { return };
        if sender.is_none() {
            return;
        }
        let Some(i) = msg::id_of(name).and_then(|id| st.find(&id)) else {
            return;
        };
        if i != 0 && st.nodes[i].flags & nflag::FAIL == 0 {
            crate::log!("FAIL message received about {}", st.nodes[i].id);
            st.nodes[i].flags |= nflag::FAIL;
            st.nodes[i].flags &= !nflag::PFAIL;
            let id = st.nodes[i].id.clone();
            self.peers.entry(id).or_default().fail_time_ms = now;
            todo.save();
        }
    }

    /// UPDATE: a node's newer config epoch and slots.
    fn on_update(&mut self, st: &mut State, sender: Option<usize>, body: &Body, todo: &mut Todo) {
        let Body::Update {
            config_epoch,
            name,
            slots,
        } = body
        else {
            return;
        };
        if sender.is_none() {
            return;
        }
        let Some(i) = msg::id_of(name).and_then(|id| st.find(&id)) else {
            return;
        };
        if st.nodes[i].config_epoch >= *config_epoch {
            return;
        }
        if st.nodes[i].flags & nflag::SLAVE != 0 {
            st.nodes[i].flags = (st.nodes[i].flags & !nflag::SLAVE) | nflag::MASTER;
            st.nodes[i].master = None;
        }
        st.nodes[i].config_epoch = *config_epoch;
        self.update_slots(st, i, *config_epoch, slots, todo);
        todo.save();
    }

    /// MFSTART: our replica starts a manual failover; writes pause and it gets our offset.
    fn on_mfstart(&mut self, st: &mut State, sender: Option<usize>, now: u64) {
        let Some(s) = sender else { return };
        if st.nodes[s].master.as_deref() != Some(st.me().id.as_str()) {
            return;
        }
        crate::log!("Manual failover requested by replica {}.", st.nodes[s].id);
        self.mf = ManualFailover {
            end_ms: now + MF_TIMEOUT_MS,
            replica: Some(st.nodes[s].id.clone()),
            ..Default::default()
        };
        // Writes wait while the replica catches up (Redis pauses for twice the
        // timeout; the failover's end lifts it).
        if let Some(shared) = SHARED.get() {
            crate::pause::pause(shared, now + 2 * MF_TIMEOUT_MS, false);
        }
        if let Some(l) = self.peers.get(&st.nodes[s].id).and_then(|p| p.link) {
            self.send_ping(st, l, mtype::PING, now);
        }
    }

    /// PING or MEET: learn our own address, add a node that MEETs us (in handshake), answer
    /// PONG.
    #[allow(clippy::too_many_arguments)]
    fn on_ping_or_meet(
        &mut self,
        st: &mut State,
        lid: u64,
        m: &Message,
        sender: Option<usize>,
        sender_ip: &str,
        now: u64,
        todo: &mut Todo,
    ) {
        let (h, t) = (&m.header, m.header.mtype);
        // Learn our own address from the connection when nothing is announced.
        if (t == mtype::MEET || st.me().ip.is_empty())
            && self.cluster.config.get("cluster-announce-ip").is_empty()
        {
            if let Some(Ok(a)) = self.links.get(&lid).map(|l| l.sock.local_addr()) {
                let ip = a.ip().to_string();
                if st.me().ip != ip {
                    st.me_mut().ip = ip;
                    todo.save();
                }
            }
        }
        if sender.is_none() && t == mtype::MEET {
            let mut n = Node::new(
                super::state::random_id(),
                sender_ip.to_string(),
                h.port,
                h.cport,
                nflag::HANDSHAKE,
            );
            n.connected = false;
            let id = n.id.clone();
            st.nodes.push(n);
            self.peers.insert(
                id,
                Peer {
                    ctime_ms: now,
                    ..Default::default()
                },
            );
            self.gossip(st, None, m, now, todo);
            todo.publish();
        }
        self.send_ping(st, lid, mtype::PONG, now);
    }
}

/// Queues a message that came over the bus for shard 0 and rings its doorbell.
fn deliver_later(shard: bool, channel: Vec<u8>, message: Vec<u8>) {
    {
        let mut inbox = INBOX.lock().unwrap_or_else(|e| e.into_inner());
        if inbox.len() >= PUBLISH_QUEUE_MAX {
            return;
        }
        inbox.push((shard, channel, message));
    }
    if let Some(shared) = SHARED.get() {
        if shared.repl.doorbell >= 0 {
            let _ = crate::net::write(shared.repl.doorbell, &1u64.to_ne_bytes());
        }
    }
}

impl Bus {
    /// A PING/PONG/MEET on our outbound link: completes a handshake (the node in handshake
    /// takes the sender's id, or goes if that id is known already) or notices that the node
    /// changed its id. False when the message must not be processed further.
    #[allow(clippy::too_many_arguments)]
    fn check_link_node(
        &mut self,
        st: &mut State,
        lid: u64,
        link_node: Option<String>,
        sender: &mut Option<usize>,
        sender_id: &str,
        h: &Header,
        todo: &mut Todo,
    ) -> bool {
        let Some(node_id) = link_node.clone() else {
            return false;
        };
        let Some(ni) = st.find(&node_id) else {
            return false;
        };
        if st.nodes[ni].flags & nflag::HANDSHAKE != 0 {
            if sender.is_some() || sender_id == st.me().id.as_str() {
                // Already known under its real id (or it is us): the handshake node goes.
                self.forget_node(st, ni);
                todo.publish();
                return false;
            }
            if st.blacklist.contains_key(sender_id) {
                self.forget_node(st, ni);
                todo.publish();
                return false;
            }
            crate::log!("Handshake with node {} completed.", sender_id);
            let n = &mut st.nodes[ni];
            n.id = sender_id.to_string();
            n.flags &= !(nflag::HANDSHAKE | nflag::MEET);
            n.flags |= if h.flags & flag::SLAVE != 0 {
                nflag::SLAVE
            } else {
                nflag::MASTER
            };
            if let Some(p) = self.peers.remove(&node_id) {
                self.peers.insert(sender_id.to_string(), p);
            }
            if let Some(l) = self.links.get_mut(&lid) {
                l.node = Some(sender_id.to_string());
            }
            *sender = Some(ni);
            todo.save();
        } else if st.nodes[ni].id.as_str() != sender_id {
            crate::log!("PONG contains mismatching sender ID: the node's id changed");
            let n = &mut st.nodes[ni];
            n.flags |= nflag::NOADDR;
            n.ip.clear();
            n.port = 0;
            n.cport = 0;
            self.close(lid);
            todo.save();
            return false;
        }
        true
    }

    /// The sender's role as its header says: a master, or a replica of whom (a master turning
    /// replica loses its slots).
    fn update_role(&mut self, st: &mut State, s: usize, h: &Header, todo: &mut Todo) {
        // Role: master or replica of whom.
        if h.slaveof == msg::NO_NAME {
            let n = &mut st.nodes[s];
            if n.flags & nflag::MASTER == 0 || n.master.is_some() {
                n.flags = (n.flags & !nflag::SLAVE) | nflag::MASTER;
                n.master = None;
                todo.save();
            }
        } else {
            let master = msg::id_of(&h.slaveof);
            if st.nodes[s].flags & nflag::MASTER != 0 {
                for slot in 0..SLOTS as u16 {
                    if st.owner_index(slot) == Some(s) {
                        st.assign(slot, None);
                    }
                }
                st.nodes[s].flags = (st.nodes[s].flags & !nflag::MASTER) | nflag::SLAVE;
                todo.save();
            }
            if master.is_some()
                && st.nodes[s].master != master
                && master.as_deref().and_then(|m| st.find(m)).is_some()
            {
                st.nodes[s].master = master;
                todo.save();
            }
        }
    }

    /// The slots the sender claims: taken if its config epoch is newer; answered with an
    /// UPDATE when we know a newer owner.
    fn update_claims(&mut self, st: &mut State, lid: u64, s: usize, h: &Header, todo: &mut Todo) {
        // Slots.
        let sender_master = if st.nodes[s].flags & nflag::MASTER != 0 {
            Some(s)
        } else {
            st.nodes[s].master.as_deref().and_then(|m| st.find(m))
        };
        let dirty = sender_master.is_some_and(|sm| {
            (0..SLOTS).any(|j| (st.owner_index(j as u16) == Some(sm)) != h.has_slot(j))
        });
        if dirty && st.nodes[s].flags & nflag::MASTER != 0 {
            self.update_slots(st, s, h.config_epoch, &h.slots, todo);
        }
        if dirty {
            // A stale claim: tell the sender who owns the slot now.
            for j in 0..SLOTS {
                if !h.has_slot(j) {
                    continue;
                }
                match st.owner_index(j as u16) {
                    Some(o) if o != s && st.nodes[o].config_epoch > h.config_epoch => {
                        let mut owner_slots = Box::new([0u8; msg::SLOT_BYTES]);
                        for k in 0..SLOTS {
                            if st.owner_index(k as u16) == Some(o) {
                                msg::set_slot_bit(&mut owner_slots, k);
                            }
                        }
                        let upd = Message {
                            header: self.header(st, mtype::UPDATE),
                            body: Body::Update {
                                config_epoch: st.nodes[o].config_epoch,
                                name: msg::name_of(&st.nodes[o].id),
                                slots: owner_slots,
                            },
                        };
                        self.send(lid, &upd);
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod runtime_tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn wire_flags_follow_redis_values() {
        let mut n = Node::new(
            A.into(),
            "1.2.3.4".into(),
            1,
            2,
            nflag::MASTER | nflag::PFAIL,
        );
        assert_eq!(
            wire_flags(&n, true),
            flag::MASTER | flag::PFAIL | flag::MYSELF
        );
        n.flags = nflag::SLAVE | nflag::FAIL | nflag::NOFAILOVER | nflag::HANDSHAKE;
        assert_eq!(
            wire_flags(&n, false),
            flag::SLAVE | flag::FAIL | flag::NOFAILOVER | flag::HANDSHAKE
        );
    }

    #[test]
    fn set_master_drops_our_slots_and_open_slots() {
        let mut st = State::new(A.into(), 7000, 17000);
        st.nodes.push(Node::new(
            B.into(),
            "10.0.0.2".into(),
            7001,
            17001,
            nflag::MASTER,
        ));
        st.assign(5, Some(0));
        st.assign(6, Some(1));
        st.migrating.insert(5, B.into());
        assert_eq!(set_master(&mut st, 1), Some(("10.0.0.2".into(), 7001)));
        assert_eq!(st.owner_index(5), None);
        assert_eq!(st.owner_index(6), Some(1));
        assert!(st.migrating.is_empty());
        assert_eq!(st.me().flags & (nflag::SLAVE | nflag::MASTER), nflag::SLAVE);
        assert_eq!(st.me().master.as_deref(), Some(B));
        assert_eq!(set_master(&mut st, 9), None);
    }
}
