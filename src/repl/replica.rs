//! Replication, the replica's side: REPLICAOF host port (or `replicaof` in the configuration)
//! makes shardis copy a Redis master (redis-server or shardis) with Redis's protocol.
//!
//! A link thread talks to the master: the handshake (PING, AUTH with `masteruser` /
//! `masterauth`, REPLCONF listening-port and capa eof psync2, PSYNC with the cached replication
//! id and offset), the payload of a full resync (length-prefixed or EOF-marked), then the
//! command stream. It answers REPLCONF GETACK and acknowledges once a second. What it receives
//! goes to shard 0 (polled every millisecond): a payload is loaded into every shard at one cut
//! (each shard keeps the keys of its slots, the databases emptied first), and the stream runs
//! on the shards in parallel. The link thread splits each piece it reads into steps (`split`):
//! runs of commands that each touch one shard's keys go to that shard (shard 0's through its
//! master connection, a connection without a socket whose replies go nowhere; the others' as
//! one batch per shard and database, with one batch in flight per shard), and what spans
//! shards or names no key (a MULTI … EXEC block, a script, FLUSHALL, …) is a barrier: it runs
//! on shard 0's master connection, the path every client's commands take (so writes over
//! several shards stay atomic), once every shard has applied what came before, and before any
//! shard applies what follows. So each shard applies its own part of the stream in the
//! master's order, and a reader never sees half of a transaction.
//!
//! While a replica, shardis refuses writes from clients (`replica-read-only`) and does not expire
//! or evict keys itself: the master's DELs do (readers see expired keys as absent meanwhile).

use crate::ctx::{now_us, ShardCtx};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;

/// The socket to the master: plain, or TLS with `tls-replication yes`.
enum MasterSock {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl MasterSock {
    fn tcp(&self) -> &TcpStream {
        match self {
            MasterSock::Plain(s) => s,
            MasterSock::Tls(t) => &t.sock,
        }
    }

    fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        self.tcp().set_read_timeout(d)
    }
}

impl Read for MasterSock {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            MasterSock::Plain(s) => s.read(buf),
            MasterSock::Tls(t) => t.read(buf),
        }
    }
}

impl Write for MasterSock {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            MasterSock::Plain(s) => s.write(buf),
            MasterSock::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            MasterSock::Plain(s) => s.flush(),
            MasterSock::Tls(t) => t.flush(),
        }
    }
}
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the link hands to shard 0.
pub enum ToShard {
    /// Load the payload in `Link::payload` into every shard.
    Load,
    /// Commands of the stream, split into steps, to run in order; `len` bytes of commands,
    /// and the stream bytes they came in (`raw`: with the master's GETACKs and newlines),
    /// relayed once applied (the replica's offset then moves to `end`).
    Stream {
        session: u64,
        steps: Vec<Step>,
        len: u64,
        raw: Vec<u8>,
        /// The stream offset after `raw`, and the stream's database there.
        end: u64,
        end_db: usize,
    },
}

/// A run of the stream as the link thread splits it for the shards.
pub enum Step {
    /// Commands that each touch one shard's keys: per shard, runs of (database, frames).
    Spread(Vec<Vec<(usize, Vec<u8>)>>),
    /// Commands that span shards or name no key, with the database they start in and the
    /// one they leave the connection in: they run on shard 0's master connection once every
    /// shard has applied what came before, and before any shard applies what follows.
    Barrier {
        db: usize,
        cmds: Vec<u8>,
        end_db: usize,
    },
}

/// One replication link to a master.
pub struct Link {
    pub host: String,
    pub port: u16,
    pub stop: AtomicBool,
    /// `connect`, `connecting`, `sync` or `connected` (ROLE's words).
    pub state: Mutex<&'static str>,
    /// The stream offset of the last byte applied (Redis's `slave_repl_offset`).
    pub offset: AtomicU64,
    /// The stream offset of the last byte read.
    pub read_offset: AtomicU64,
    pub last_io_ms: AtomicU64,
    pub inbox: Mutex<VecDeque<ToShard>>,
    pub payload: Mutex<Option<Arc<Vec<u8>>>>,
    /// A payload is being loaded.
    pub loading: AtomicBool,
    /// Bytes of the stream shard 0 has run, and the stream offset they started at.
    pub applied: AtomicU64,
    pub down_since_ms: AtomicU64,
    /// A payload being received: its length (-1 while unknown: EOF-marked) and the bytes so
    /// far (INFO's `master_sync_*`).
    pub sync_total: std::sync::atomic::AtomicI64,
    pub sync_read: AtomicU64,
    /// The replication hub (it relays what shard 0 applies).
    hub: std::sync::mpsc::Sender<super::ToHub>,
    /// Counts the link's synchronisations; stream chunks carry theirs.
    session: AtomicU64,
    /// Until then (ms), shard 0 applies no more of the stream: a chained replica's cut waits
    /// for it to be still.
    hold_until_ms: AtomicU64,
    /// REPLICAOF NO ONE: shard 0 finishes what it was applying, relays it, and promotes.
    promote: AtomicBool,
    promoting: AtomicBool,
    /// The promotion has taken effect.
    promoted: AtomicBool,
    /// Shard 0 applies nothing and has relayed everything it applied.
    quiet: AtomicBool,
    /// The link this one replaced, and whether shard 0 is done with this one (everything it
    /// applied relayed): a new link asks the hub where to continue only after that.
    prev: Option<Arc<Link>>,
    retired: AtomicBool,
    /// Messages the link thread has handed shard 0, and those shard 0 has applied and
    /// relayed in full: equal, the stream is still (a reconnection asks where to continue
    /// only then, so nothing read before is run twice).
    pushed: AtomicU64,
    settled: AtomicU64,
    /// The last payload could not be loaded: the link starts over with a full resync.
    load_failed: AtomicBool,
    /// The shards, the databases, and the stream's current database (the link thread's:
    /// every run of commands it hands over names its database).
    nshards: usize,
    dbs: usize,
    stream_db: std::sync::atomic::AtomicUsize,
    /// The stream's database after the last piece the shards applied in full: where a link
    /// that replaces this one goes on (what this one read and did not hand over is dropped).
    applied_db: std::sync::atomic::AtomicUsize,
    /// Shard 0's doorbell (`ReplShared::doorbell`).
    doorbell: i32,
    /// CLIENT KILL TYPE master: the stream's socket is dropped.
    broken: AtomicBool,
}

impl Link {
    fn new(
        host: String,
        port: u16,
        hub: std::sync::mpsc::Sender<super::ToHub>,
        prev: Option<Arc<Link>>,
        (nshards, dbs, doorbell): (usize, usize, i32),
    ) -> Link {
        Link {
            host,
            port,
            stop: AtomicBool::new(false),
            state: Mutex::new("connect"),
            offset: AtomicU64::new(0),
            read_offset: AtomicU64::new(0),
            last_io_ms: AtomicU64::new(0),
            inbox: Mutex::new(VecDeque::new()),
            payload: Mutex::new(None),
            loading: AtomicBool::new(false),
            applied: AtomicU64::new(0),
            down_since_ms: AtomicU64::new(now_us() / 1000),
            sync_total: std::sync::atomic::AtomicI64::new(-1),
            sync_read: AtomicU64::new(0),
            hub,
            session: AtomicU64::new(0),
            hold_until_ms: AtomicU64::new(0),
            promote: AtomicBool::new(false),
            promoting: AtomicBool::new(false),
            promoted: AtomicBool::new(false),
            quiet: AtomicBool::new(true),
            retired: AtomicBool::new(false),
            pushed: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            load_failed: AtomicBool::new(false),
            doorbell,
            broken: AtomicBool::new(false),
            nshards: nshards.max(1),
            dbs: dbs.max(1),
            // A new master's stream goes on in the database the last one's left off in.
            stream_db: std::sync::atomic::AtomicUsize::new(
                prev.as_ref()
                    .map_or(0, |p| p.applied_db.load(Ordering::Acquire)),
            ),
            applied_db: std::sync::atomic::AtomicUsize::new(
                prev.as_ref()
                    .map_or(0, |p| p.applied_db.load(Ordering::Acquire)),
            ),
            prev,
        }
    }

    /// CLIENT KILL TYPE master: the link drops its socket, reconnects and resumes.
    pub fn break_link(&self) {
        self.broken.store(true, Ordering::Release);
    }

    /// A chained replica's cut has been taken (or failed): the stream goes on.
    pub fn release_hold(&self) {
        self.hold_until_ms.store(0, Ordering::Release);
    }

    fn held(&self) -> bool {
        now_us() / 1000 < self.hold_until_ms.load(Ordering::Acquire)
    }

    /// Promotes the server as REPLICAOF NO ONE does, without a client to answer (a cluster
    /// failover): shard 0 finishes what it was applying, relays it and becomes a master.
    pub fn request_promotion(&self) {
        self.stop.store(true, Ordering::Release);
        self.promote.store(true, Ordering::Release);
    }

    pub fn state(&self) -> &'static str {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, s: &'static str) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Everything handed to shard 0 and not taken yet.
    fn take_inbox(&self) -> Vec<ToShard> {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    fn push(&self, msg: ToShard) {
        self.pushed.fetch_add(1, Ordering::AcqRel);
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(msg);
        if self.doorbell >= 0 {
            // Wakes shard 0 (its event loop reads the count back).
            let _ = crate::net::write(self.doorbell, &1u64.to_ne_bytes());
        }
    }
}

/// Keys neither expire nor get evicted on a replica: the master decides.
/// REPLICAOF host port (or `replicaof` at start-up, before any client is served): (re)starts
/// the link. The link thread and shard 0's task find each other through `ReplShared::link`.
pub fn start(shared: &crate::ctx::Shared, host: String, port: u16) {
    let repl = &shared.repl;
    let prev = stop(shared);
    // The hub keeps the backlog of what we apply (for chained replicas, and for our own
    // replicas after a promotion).
    let hub = repl.hub(&shared.scripts, shared.nshards);
    let dbs = usize::try_from(shared.config.get_i64("databases")).unwrap_or(16);
    let link = Arc::new(Link::new(
        host,
        port,
        hub,
        prev,
        (shared.nshards, dbs, repl.doorbell),
    ));
    // The shards go on handing their logs to the hub until the link is in step with the new
    // master (`hub::relay_from`): writes they ran before this are in the offset offered.
    *repl.link.lock().unwrap_or_else(|e| e.into_inner()) = Some(link.clone());
    shards::keyspace::REPLICA.store(true, Ordering::Release);
    let cfg = shared.config.clone();
    let our_port = shared.port;
    let l = link.clone();
    let _ = std::thread::Builder::new()
        .name("repl-link".into())
        .spawn(move || run_link(&l, &cfg, our_port));
    crate::log!("Connecting to MASTER {}:{}", link.host, link.port);
}

/// Stops the link (REPLICAOF to another master); returns it.
fn stop(shared: &crate::ctx::Shared) -> Option<Arc<Link>> {
    let old = shared
        .repl
        .link
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(l) = &old {
        l.stop.store(true, Ordering::Release);
    }
    old
}

/// REPLICAOF NO ONE: the link stops; shard 0 finishes applying what it started, relays it,
/// and makes the server a master (see `serve`). Answers once that has happened, except
/// inside a transaction (Sentinel's MULTI … EXEC), which never waits: there the promotion
/// completes a moment after.
pub fn promote(ctx: &ShardCtx, conn: &mut crate::conn::Conn, link: &Arc<Link>) {
    link.stop.store(true, Ordering::Release);
    link.promote.store(true, Ordering::Release);
    if conn.live.is_some() || conn.fd < 0 {
        conn.reply().ok();
        return;
    }
    let link = link.clone();
    park_until(
        ctx,
        conn,
        move || link.promoted.load(Ordering::Acquire),
        Box::new(|_, conn, _| {
            conn.reply().ok();
        }),
    );
}

/// The connection waits until `ready()` (at most 5 s), then `done` runs on it.
fn park_until(
    ctx: &ShardCtx,
    conn: &mut crate::conn::Conn,
    ready: impl Fn() -> bool + 'static,
    done: crate::conn::Done,
) {
    conn.wait = crate::conn::Wait::Multi {
        outstanding: 1,
        results: Vec::new(),
        done,
    };
    let token = conn.token;
    if let Some(me) = ctx.me() {
        glommio::spawn_local(async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !ready() && Instant::now() < deadline {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            while !me.answer_wait(token, 0) {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        })
        .detach();
    }
}

/// A chained replica's full resync on a replica: shard 0 stops applying the stream, and the
/// cut is taken once what it applied is relayed, so the snapshot matches an offset of the
/// master's stream exactly.
pub fn cut_when_still(
    ctx: &ShardCtx,
    conn: &mut crate::conn::Conn,
    link: &Arc<Link>,
    sync: u64,
    psync: bool,
) {
    link.hold_until_ms
        .store(now_us() / 1000 + 10_000, Ordering::Release);
    link.quiet.store(false, Ordering::Release);
    let link = link.clone();
    park_until(
        ctx,
        conn,
        move || link.quiet.load(Ordering::Acquire),
        Box::new(move |ctx, conn, _| {
            crate::save::start_cut(ctx, conn, crate::save::SnapKind::Replica(sync, psync));
        }),
    );
}

/// The link thread: connects, synchronises, streams, and starts over when the link breaks.
fn run_link(link: &Link, cfg: &crate::config::Config, our_port: u16) {
    while !link.stop.load(Ordering::Acquire) {
        link.set_state("connecting");
        match session(link, cfg, our_port) {
            Ok(()) => {}
            Err(e) => {
                if !link.stop.load(Ordering::Acquire) {
                    crate::log!("MASTER {}:{}: {e}", link.host, link.port);
                }
            }
        }
        link.set_state("connect");
        link.down_since_ms.store(now_us() / 1000, Ordering::Release);
        for _ in 0..10 {
            if link.stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Reads one reply line (without CRLF).
fn read_line(sock: &mut MasterSock, buf: &mut Vec<u8>) -> Result<String, String> {
    loop {
        // A master keeps the link alive with bare newlines while it prepares a payload.
        let lf = buf.iter().take_while(|&&b| b == b'\n').count();
        buf.drain(..lf);
        if let Some(nl) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..nl]).into_owned();
            buf.drain(..nl + 2);
            return Ok(line);
        }
        read_more(sock, buf)?;
    }
}

fn read_more(sock: &mut MasterSock, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match sock.read(&mut chunk) {
            Ok(0) => return Err("connection closed by the master".into()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            // A signal (a stop and continue, a profiler) is no reason to drop the link.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading: {e}")),
        }
    }
}

fn send(sock: &mut MasterSock, args: &[&str]) -> Result<(), String> {
    let mut out = Vec::new();
    crate::dispatch::encode_command(
        &args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(),
        &mut out,
    );
    sock.write_all(&out).map_err(|e| format!("writing: {e}"))
}

/// One connection to the master, until it breaks or the link stops.
fn session(link: &Link, cfg: &crate::config::Config, our_port: u16) -> Result<(), String> {
    let addr = format!("{}:{}", link.host, link.port);
    let sock_addr = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map_err(|e| format!("resolving {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolving {addr}: no address"))?;
    link.broken.store(false, Ordering::Release);
    let tcp = TcpStream::connect_timeout(&sock_addr, Duration::from_secs(5))
        .map_err(|e| format!("connecting: {e}"))?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut sock = if cfg.get("tls-replication") == "yes" {
        let config = crate::tls::client_config(&|k| cfg.get(k))?;
        // The name is not checked (see `tls::client_config`); an address or a host name
        // serves for SNI.
        let name = rustls_pki_types::ServerName::try_from(link.host.clone()).unwrap_or_else(|_| {
            rustls_pki_types::ServerName::try_from("localhost").expect("a valid name")
        });
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
        MasterSock::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
    } else {
        MasterSock::Plain(tcp)
    };
    let mut buf = Vec::new();
    send(&mut sock, &["PING"])?;
    let pong = read_line(&mut sock, &mut buf)?;
    if pong.starts_with('-') && !pong.starts_with("-NOAUTH") {
        return Err(format!("PING: {pong}"));
    }
    let pass = cfg.get("masterauth");
    if !pass.is_empty() {
        let user = cfg.get("masteruser");
        if user.is_empty() {
            send(&mut sock, &["AUTH", &pass])?;
        } else {
            send(&mut sock, &["AUTH", &user, &pass])?;
        }
        let r = read_line(&mut sock, &mut buf)?;
        if r.starts_with('-') {
            return Err(format!("AUTH: {r}"));
        }
    }
    let port = match cfg.get_i64("replica-announce-port") {
        0 => our_port as i64,
        p => p,
    };
    send(
        &mut sock,
        &["REPLCONF", "listening-port", &port.to_string()],
    )?;
    read_line(&mut sock, &mut buf)?;
    let ip = cfg.get("replica-announce-ip");
    if !ip.is_empty() {
        send(&mut sock, &["REPLCONF", "ip-address", &ip])?;
        read_line(&mut sock, &mut buf)?;
    }
    send(&mut sock, &["REPLCONF", "capa", "eof", "capa", "psync2"])?;
    read_line(&mut sock, &mut buf)?;
    let (replid, offset) = where_we_are(link)?;
    if offset == 0 {
        send(&mut sock, &["PSYNC", "?", "-1"])?;
    } else {
        send(&mut sock, &["PSYNC", &replid, &(offset + 1).to_string()])?;
    }
    let reply = read_line(&mut sock, &mut buf)?;
    link.set_state("sync");
    let session = link.session.fetch_add(1, Ordering::AcqRel) + 1;
    if let Some(rest) = reply.strip_prefix("+FULLRESYNC ") {
        let mut parts = rest.split(' ');
        let id = parts.next().unwrap_or("").to_string();
        // Offsets are signed 64-bit numbers to Redis: a larger one is refused.
        let off: u64 = parts
            .next()
            .and_then(|o| o.parse::<i64>().ok())
            .and_then(|o| u64::try_from(o).ok())
            .ok_or_else(|| format!("bad offset in {reply:?}"))?;
        crate::log!("Full resync from master: {id}:{off}");
        link.sync_read.store(0, Ordering::Release);
        link.sync_total.store(-1, Ordering::Release);
        let payload = read_payload(link, &mut sock, &mut buf)?;
        crate::log!(
            "MASTER <-> REPLICA sync: {} bytes of payload received, loading",
            payload.len()
        );
        *link.payload.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(payload));
        link.loading.store(true, Ordering::Release);
        link.load_failed.store(false, Ordering::Release);
        // The stream after a payload starts in database 0 (a master says SELECT first).
        link.stream_db.store(0, Ordering::Release);
        link.push(ToShard::Load);
        // Even when the link is being stopped, a load shard 0 has begun completes, and the
        // hub then learns whose history the data is (a promotion names it as replid2).
        while link.loading.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if link.load_failed.load(Ordering::Acquire) {
            return Err("the master's payload was not loaded; starting over".into());
        }
        in_step(link, session, id, off, true);
        crate::log!("MASTER <-> REPLICA sync: Finished with success");
    } else if let Some(rest) = reply.strip_prefix("+CONTINUE") {
        let id = rest.trim();
        let id = if id.is_empty() {
            replid
        } else {
            id.to_string()
        };
        in_step(link, session, id, offset, false);
        crate::log!("Successful partial resynchronization with master.");
    } else {
        return Err(format!("PSYNC: {reply}"));
    }
    link.set_state("connected");
    link.last_io_ms.store(now_us() / 1000, Ordering::Release);
    let timeout_ms = cfg.get_i64("repl-timeout").max(1) as u64 * 1000;
    stream(link, sock, buf, timeout_ms)
}

/// The link is in step with its master at `offset` under `replid` (`full`: after a payload):
/// its counters start there and the hub relays the stream from there.
fn in_step(link: &Link, session: u64, replid: String, offset: u64, full: bool) {
    link.offset.store(offset, Ordering::Release);
    link.read_offset.store(offset, Ordering::Release);
    link.applied.store(0, Ordering::Release);
    let _ = link.hub.send(super::ToHub::Relay {
        session,
        replid,
        offset,
        full,
    });
}

/// The replication id and offset to continue from: the hub's, once shard 0 has relayed all
/// it applied of the link this one replaced.
fn where_we_are(link: &Link) -> Result<(String, u64), String> {
    if let Some(prev) = &link.prev {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !prev.retired.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if link.pushed.load(Ordering::Acquire) == 0 {
            // The stream goes on in the database the shards last applied the old one's in.
            let db = prev.applied_db.load(Ordering::Acquire);
            link.stream_db.store(db, Ordering::Release);
            link.applied_db.store(db, Ordering::Release);
        }
    }
    // What this link read before it broke is applied and relayed first.
    let deadline = Instant::now() + Duration::from_secs(15);
    while link.settled.load(Ordering::Acquire) != link.pushed.load(Ordering::Acquire) {
        if Instant::now() >= deadline || link.stop.load(Ordering::Acquire) {
            return Err("the stream read before is still being applied".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = link.hub.send(super::ToHub::Ask(tx));
    rx.recv_timeout(Duration::from_secs(5))
        .map_err(|_| "the replication hub does not answer".to_string())
}

/// The payload of a full resync: `$<len>` or `$EOF:<40-byte mark>` … mark.
fn read_payload(link: &Link, sock: &mut MasterSock, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut head = read_line(sock, buf)?;
    // Masters send newlines while they prepare the payload.
    while head.is_empty() {
        head = read_line(sock, buf)?;
    }
    let Some(spec) = head.strip_prefix('$') else {
        return Err(format!("bad payload header {head:?}"));
    };
    let progress = |buf: &Vec<u8>| {
        link.sync_read.store(buf.len() as u64, Ordering::Release);
        link.last_io_ms.store(now_us() / 1000, Ordering::Release);
    };
    if let Some(mark) = spec.strip_prefix("EOF:") {
        let mark = mark.as_bytes().to_vec();
        if mark.len() != 40 {
            return Err("bad EOF mark".into());
        }
        link.sync_total.store(-1, Ordering::Release);
        loop {
            if buf.len() >= 40 && buf.ends_with(&mark) {
                // The payload is what came before the mark (taken, not copied).
                buf.truncate(buf.len() - 40);
                return Ok(std::mem::take(buf));
            }
            read_more(sock, buf)?;
            progress(buf);
        }
    }
    let len: i64 = spec
        .parse()
        .ok()
        .filter(|l| *l >= 0)
        .ok_or_else(|| format!("bad payload length {spec:?}"))?;
    link.sync_total.store(len, Ordering::Release);
    let len = usize::try_from(len).map_err(|_| format!("payload too large: {len}"))?;
    while buf.len() < len {
        read_more(sock, buf)?;
        progress(buf);
    }
    let rest = buf.split_off(len);
    Ok(std::mem::replace(buf, rest))
}

/// The command stream: commands go to shard 0; GETACKs are answered once everything before
/// them has run; an acknowledgement goes out every second.
fn stream(
    link: &Link,
    mut sock: MasterSock,
    mut buf: Vec<u8>,
    timeout_ms: u64,
) -> Result<(), String> {
    use shards::resp::{parse_command, ParseLimits, Parsed};
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let base = link.read_offset.load(Ordering::Acquire);
    // Stream bytes read and parsed so far, those handed to shard 0, and those answered here.
    let (mut parsed, mut handed, mut skipped) = (0u64, 0u64, 0u64);
    let mut last_ack = Instant::now();
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let limits = ParseLimits {
        bulk_len_max: usize::MAX,
    };
    let ack = |sock: &mut MasterSock, handed: u64, skipped: u64| -> Result<(), String> {
        // All handed over is applied: everything read counts; otherwise the offset shard 0
        // moves on as pieces are applied (see `Coord::settle`).
        let offset = if link.applied.load(Ordering::Acquire) >= handed {
            let o = base + handed + skipped;
            link.offset.fetch_max(o, Ordering::AcqRel);
            o
        } else {
            link.offset.load(Ordering::Acquire)
        };
        send(sock, &["REPLCONF", "ACK", &offset.to_string()])
    };
    ack(&mut sock, handed, skipped)?;
    loop {
        if link.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        if link.broken.swap(false, Ordering::AcqRel) {
            return Err("connection killed (CLIENT KILL)".into());
        }
        if handed.saturating_sub(link.applied.load(Ordering::Acquire)) > AHEAD_MAX {
            // The shards are that far behind: read no more until they catch up (the master
            // holds the rest, as it does for a slow redis-server replica).
            std::thread::sleep(Duration::from_millis(1));
            link.last_io_ms.store(now_us() / 1000, Ordering::Release);
            if last_ack.elapsed() >= Duration::from_secs(1) {
                ack(&mut sock, handed, skipped)?;
                last_ack = Instant::now();
            }
            continue;
        }
        let mut chunk = [0u8; 64 * 1024];
        match sock.read(&mut chunk) {
            Ok(0) => return Err("connection closed by the master".into()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                link.last_io_ms.store(now_us() / 1000, Ordering::Release);
            }
            Err(e) if super::read_again(&e) => {
                let silent =
                    (now_us() / 1000).saturating_sub(link.last_io_ms.load(Ordering::Acquire));
                if silent > timeout_ms {
                    return Err("timeout: no data nor PING from the master".into());
                }
            }
            Err(e) => return Err(format!("reading: {e}")),
        }
        let session = link.session.load(Ordering::Acquire);
        let (mut pos, mut raw_from) = (0, 0);
        let mut out = Vec::new();
        // Where an unfinished MULTI began: (position, `out`'s length, `parsed`, `skipped`).
        let mut open_block: Option<(usize, usize, u64, u64)> = None;
        while pos < buf.len() {
            let consumed = match parse_command(&buf[pos..], &mut ranges, &mut scratch, limits) {
                Ok(Parsed::Command { consumed }) => consumed,
                Ok(Parsed::Empty { consumed }) | Ok(Parsed::Inline { consumed }) => {
                    // Newlines (keepalives) and inline commands are not part of the stream's
                    // commands; Redis counts them all the same.
                    skipped += consumed as u64;
                    pos += consumed;
                    continue;
                }
                Ok(Parsed::Incomplete) => break,
                Err(e) => return Err(format!("bad stream: {}", e.reply_text())),
            };
            let frame = &buf[pos..pos + consumed];
            let name = ranges.first().map_or(&b""[..], |r| &frame[r.clone()]);
            if name.eq_ignore_ascii_case(b"MULTI") {
                open_block = Some((pos, out.len(), parsed, skipped));
            } else if name.eq_ignore_ascii_case(b"EXEC") || name.eq_ignore_ascii_case(b"DISCARD") {
                open_block = None;
            }
            let is_getack = ranges.len() >= 2
                && name.eq_ignore_ascii_case(b"REPLCONF")
                && frame[ranges[1].clone()].eq_ignore_ascii_case(b"GETACK");
            if is_getack {
                // Everything before it runs first; then the acknowledgement counts it too.
                let end = base + parsed + skipped;
                handed += hand_chunk(link, (session, end), &mut out, &buf[raw_from..pos]);
                raw_from = pos;
                let deadline = Instant::now() + Duration::from_secs(5);
                while link.applied.load(Ordering::Acquire) < handed && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                }
                skipped += consumed as u64;
                pos += consumed;
                ack(&mut sock, handed, skipped)?;
                last_ack = Instant::now();
                continue;
            }
            out.extend_from_slice(frame);
            parsed += consumed as u64;
            pos += consumed;
        }
        // A transaction the read cut in two waits for its EXEC: shard 0 (and the replicas
        // below) only ever get whole MULTI … EXEC blocks.
        if let Some((at, out_len, parsed_at, skipped_at)) = open_block.take() {
            out.truncate(out_len);
            (pos, parsed, skipped) = (at, parsed_at, skipped_at);
        }
        if pos > raw_from {
            let end = base + parsed + skipped;
            handed += hand_chunk(link, (session, end), &mut out, &buf[raw_from..pos]);
        }
        buf.drain(..pos);
        link.read_offset
            .store(base + parsed + skipped, Ordering::Release);
        if last_ack.elapsed() >= Duration::from_secs(1) {
            ack(&mut sock, handed, skipped)?;
            last_ack = Instant::now();
        }
    }
}

/// Most bytes of commands the link reads ahead of what the shards have applied.
const AHEAD_MAX: u64 = 64 * 1024 * 1024;

/// Hands shard 0 the commands read (`cmds`, emptied), split into steps, and the stream bytes
/// they came in, which end at stream offset `end`; returns the commands' length.
fn hand_chunk(link: &Link, (session, end): (u64, u64), cmds: &mut Vec<u8>, raw: &[u8]) -> u64 {
    let cmds = std::mem::take(cmds);
    let len = cmds.len() as u64;
    let mut db = link.stream_db.load(Ordering::Acquire);
    let steps = split(&cmds, link.nshards, link.dbs, &mut db);
    link.stream_db.store(db, Ordering::Release);
    link.push(ToShard::Stream {
        session,
        steps,
        len,
        raw: raw.to_vec(),
        end,
        end_db: db,
    });
    len
}

/// Splits whole commands of the stream (MULTI … EXEC blocks whole) into steps for `n`
/// shards. `db` is the stream's database (of `dbs`), carried from one piece to the next:
/// SELECTs outside blocks are taken here, as every run names its database.
pub fn split(cmds: &[u8], n: usize, dbs: usize, db: &mut usize) -> Vec<Step> {
    use shards::resp::{parse_command, ParseLimits, Parsed};
    let limits = ParseLimits {
        bulk_len_max: usize::MAX,
    };
    let (mut ranges, mut scratch) = (Vec::new(), Vec::new());
    let mut steps = Vec::new();
    // An open block: where it began and the database it began in.
    let mut block: Option<(usize, usize)> = None;
    let mut pos = 0;
    while pos < cmds.len() {
        let consumed = match parse_command(&cmds[pos..], &mut ranges, &mut scratch, limits) {
            Ok(Parsed::Command { consumed }) => consumed,
            Ok(Parsed::Empty { consumed }) | Ok(Parsed::Inline { consumed }) => {
                pos += consumed;
                continue;
            }
            // The link thread hands over whole commands; anything else runs as it is on
            // shard 0, which answers it as a client would be.
            Ok(Parsed::Incomplete) | Err(_) => {
                let from = block.map_or(pos, |(at, _)| at);
                barrier(&mut steps, *db, &cmds[from..], *db);
                return steps;
            }
        };
        let frame = &cmds[pos..pos + consumed];
        let argv: smallvec::SmallVec<[&[u8]; 8]> =
            ranges.iter().map(|r| &frame[r.clone()]).collect();
        let name = argv.first().copied().unwrap_or(b"");
        let selected = if name.eq_ignore_ascii_case(b"SELECT") && argv.len() == 2 {
            shards::util::parse_i64(argv[1])
                .and_then(|d| usize::try_from(d).ok())
                .filter(|&d| d < dbs)
        } else {
            None
        };
        let start = pos;
        pos += consumed;
        if let Some((at, db0)) = block {
            if let Some(d) = selected {
                *db = d;
            }
            if name.eq_ignore_ascii_case(b"EXEC") || name.eq_ignore_ascii_case(b"DISCARD") {
                barrier(&mut steps, db0, &cmds[at..pos], *db);
                block = None;
            }
            continue;
        }
        if name.eq_ignore_ascii_case(b"MULTI") {
            block = Some((start, *db));
            continue;
        }
        if let Some(d) = selected {
            *db = d;
            continue;
        }
        match home_shard(&argv, n) {
            Some(k) => spread(&mut steps, n, k, *db, frame),
            None => barrier(&mut steps, *db, frame, *db),
        }
    }
    if let Some((at, db0)) = block {
        barrier(&mut steps, db0, &cmds[at..], *db);
    }
    steps
}

/// Adds commands that run alone on shard 0's master connection.
fn barrier(steps: &mut Vec<Step>, db: usize, cmds: &[u8], end: usize) {
    if let Some(Step::Barrier {
        cmds: last, end_db, ..
    }) = steps.last_mut()
    {
        if *end_db == db {
            last.extend_from_slice(cmds);
            *end_db = end;
            return;
        }
    }
    steps.push(Step::Barrier {
        db,
        cmds: cmds.to_vec(),
        end_db: end,
    });
}

/// Adds a command for shard `k` alone.
fn spread(steps: &mut Vec<Step>, n: usize, k: usize, db: usize, frame: &[u8]) {
    if !matches!(steps.last(), Some(Step::Spread(_))) {
        steps.push(Step::Spread(vec![Vec::new(); n]));
    }
    let Some(Step::Spread(parts)) = steps.last_mut() else {
        return;
    };
    let runs = &mut parts[k];
    match runs.last_mut() {
        Some((d, run)) if *d == db => run.extend_from_slice(frame),
        _ => runs.push((db, frame.to_vec())),
    }
}

/// The one shard whose keys a command of the stream touches, when it touches only one
/// shard's and runs there as any forwarded command does (not a script, which may reach
/// keys it does not name, nor SORT with patterns, MOVE or COPY, which may write another
/// database too, nor a blocking command, which would end a batch, nor anything the server
/// itself runs); PING and PUBLISH go to shard 0.
fn home_shard(argv: &[&[u8]], n: usize) -> Option<usize> {
    let l = shards::cmd::lookup(argv).ok()?;
    let name = l.parent.map_or(l.spec.name, |p| p.name);
    if matches!(name, "ping" | "publish") {
        // No data: they need not wait for the other shards (a master sends PINGs every few
        // seconds, and PUBLISH with each message).
        return Some(0);
    }
    if !matches!(l.spec.route, shards::cmd::Route::Keys(_))
        || l.spec.flags & shards::cmd::flag::BLOCKING != 0
        || matches!(
            name,
            "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" | "move" | "copy"
        )
        || crate::dispatch::is_sort_with_patterns(l, argv)
    {
        return None;
    }
    let mut pos = Vec::new();
    shards::cmd::key_positions(l.spec, argv, &mut pos);
    let mut keys = pos.iter().map(|&p| argv.get(p));
    let first = shards::slot::shard_of(keys.next()??, n);
    for k in keys {
        if shards::slot::shard_of(k?, n) != first {
            return None;
        }
    }
    Some(first)
}

/// Shard 0's side: takes what the link hands over and has the shards apply it (see `Coord`),
/// relaying to the hub what they have applied. A link that was replaced is finished first
/// (what it handed over runs, and is relayed); a promotion waits for the stream to be still.
pub async fn serve(ctx: std::rc::Rc<ShardCtx>) {
    let mut cur: Option<Arc<Link>> = None;
    // Messages taken from the current link's inbox.
    let mut taken = 0u64;
    let mut idle = true;
    let mut last_work = Instant::now();
    loop {
        // Every millisecond while the stream flows, every few when it has been quiet for a
        // while (an idle replica costs next to nothing), rarely when not a replica; at once
        // when a shard has finished a part.
        let quiet = last_work.elapsed() > Duration::from_secs(1);
        let pause_ms = match (idle, quiet) {
            (true, _) => 100,
            (false, true) => 4,
            (false, false) => 1,
        };
        futures_lite::future::or(
            glommio::timer::sleep(Duration::from_millis(pause_ms)),
            Nudged,
        )
        .await;
        // Answers from the other shards (and clients) first: a nudge may come from here.
        futures_lite::future::yield_now().await;
        NUDGED.with(|n| n.set(false));
        let link = ctx.shared.repl.link();
        if let Some(old) = cur.clone() {
            if !link.as_ref().is_some_and(|l| Arc::ptr_eq(l, &old)) {
                drop_inbox(&old);
                if !pump(&ctx, None) && !old.promoted.load(Ordering::Acquire) {
                    idle = false;
                    continue;
                }
                old.retired.store(true, Ordering::Release);
                cur = None;
            }
        }
        idle = link.is_none();
        let Some(link) = link else {
            continue;
        };
        if !cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, &link)) {
            taken = 0;
        }
        cur = Some(link.clone());
        let t = COORD.with(|c| {
            c.borrow_mut()
                .get_or_insert_with(|| Coord::new(master_conn(&ctx, &link), ctx.n))
                .conn0
        });
        if link.promote.load(Ordering::Acquire) {
            // What was read and not taken is dropped: the promoted history ends where the
            // shards stopped.
            drop_inbox(&link);
            if pump(&ctx, None) && !link.promoting.swap(true, Ordering::AcqRel) {
                start_promotion(&ctx, t, &link);
            }
            continue;
        }
        let mut more = None;
        if !link.held() {
            let msgs = link.take_inbox();
            if !msgs.is_empty() {
                taken += msgs.len() as u64;
                last_work = Instant::now();
                more = Some((link.clone(), msgs));
            }
        }
        let still = pump(&ctx, more);
        link.quiet.store(still && link.held(), Ordering::Release);
        if still {
            link.settled.store(taken, Ordering::Release);
        }
    }
}

/// Drops what the link handed over and shard 0 has not taken (a payload not loaded then
/// counts as failed, so the link thread waiting for it goes on).
fn drop_inbox(link: &Link) {
    let dropped = link.take_inbox();
    if dropped.iter().any(|m| matches!(m, ToShard::Load)) {
        link.load_failed.store(true, Ordering::Release);
        link.loading.store(false, Ordering::Release);
    }
}

thread_local! {
    /// Shard 0's account of the stream being applied.
    static COORD: std::cell::RefCell<Option<Coord>> = const { std::cell::RefCell::new(None) };
    /// A shard has finished a part, or the master connection a wait: `serve` looks again.
    static NUDGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static WAKER: std::cell::RefCell<Option<std::task::Waker>> =
        const { std::cell::RefCell::new(None) };
}

/// Wakes shard 0's `serve` (from a master connection's callback or wait ending).
pub fn nudge() {
    NUDGED.with(|n| n.set(true));
    if let Some(w) = WAKER.with(|w| w.borrow_mut().take()) {
        w.wake();
    }
}

/// Ready once `nudge` has been called.
struct Nudged;

impl std::future::Future for Nudged {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if NUDGED.with(|n| n.get()) {
            return std::task::Poll::Ready(());
        }
        WAKER.with(|w| *w.borrow_mut() = Some(cx.waker().clone()));
        std::task::Poll::Pending
    }
}

/// What shard 0 has taken from a link and not handed out yet.
enum Item {
    Step(Step),
    /// The end of a piece of the stream: relayed once everything before it is applied.
    End(Chunk),
    Load(Arc<Link>),
}

/// A piece of the stream handed out, waiting to be applied in full by every shard.
struct Chunk {
    link: Arc<Link>,
    session: u64,
    len: u64,
    raw: Vec<u8>,
    end: u64,
    end_db: usize,
    /// Bytes each shard must have applied (shard 0: fed to the master connection).
    need: Vec<u64>,
}

/// Another shard's part of the stream: runs of (database, commands) waiting to go to it, one
/// batch in flight at a time (through a socketless connection here).
struct Lane {
    token: Option<crate::msg::Token>,
    queue: VecDeque<(usize, Vec<u8>)>,
    /// Bytes queued so far, and those the shard has applied.
    queued: u64,
    done: std::rc::Rc<std::cell::Cell<u64>>,
    busy: std::rc::Rc<std::cell::Cell<bool>>,
}

/// Most bytes of commands in one batch to another shard.
const BATCH_MAX: usize = 256 * 1024;

/// Shard 0's account of the stream the shards apply in parallel.
struct Coord {
    /// The master connection: shard 0's part of the stream, and the barriers.
    conn0: crate::msg::Token,
    /// Commands for it not fed yet (fed a slice at a time, so that the other shards get
    /// their next batches and clients are served in between), the bytes given to it so far
    /// (fed or not), and the database they leave it in.
    pend0: VecDeque<Vec<u8>>,
    given0: u64,
    db0: usize,
    /// A barrier or a load is on the master connection: nothing more goes out until it is
    /// done.
    fenced: bool,
    /// Per shard (shard 0's unused).
    lanes: Vec<Lane>,
    items: VecDeque<Item>,
    chunks: VecDeque<Chunk>,
}

/// Most bytes fed to the master connection at a time.
const FEED_MAX: usize = 64 * 1024;

impl Coord {
    fn new(conn0: crate::msg::Token, n: usize) -> Coord {
        Coord {
            conn0,
            pend0: VecDeque::new(),
            given0: 0,
            db0: 0,
            fenced: false,
            lanes: (0..n)
                .map(|_| Lane {
                    token: None,
                    queue: VecDeque::new(),
                    queued: 0,
                    done: Default::default(),
                    busy: Default::default(),
                })
                .collect(),
            items: VecDeque::new(),
            chunks: VecDeque::new(),
        }
    }

    /// Bytes the master connection has applied, and whether it is done with them (not
    /// waiting); None while it is out of the table.
    fn conn0_state(&self, ctx: &ShardCtx) -> Option<(u64, bool)> {
        let pending: u64 = self.pend0.iter().map(|p| p.len() as u64).sum();
        let fed = self.given0 - pending;
        ctx.conns.borrow().peek(self.conn0).map(|conn| {
            let unread = conn.rbuf.len().saturating_sub(conn.rpos) as u64;
            (
                fed - unread.min(fed),
                matches!(conn.wait, crate::conn::Wait::None),
            )
        })
    }

    /// The master connection has applied all it was given.
    fn caught_up0(&self, ctx: &ShardCtx) -> bool {
        self.conn0_state(ctx)
            .is_some_and(|(applied, idle)| idle && applied == self.given0)
    }

    fn lanes_idle(&self) -> bool {
        self.lanes
            .iter()
            .all(|l| !l.busy.get() && l.queue.is_empty())
    }

    /// Hands out what it can, in order; returns whether anything was done.
    fn hand_out(&mut self, ctx: &ShardCtx) -> bool {
        let mut any = false;
        while let Some(item) = self.items.front() {
            if self.fenced {
                if !self.caught_up0(ctx) {
                    break;
                }
                self.fenced = false;
                // Whatever the barrier did (a block that was refused runs none of its
                // SELECTs), the next one starts from the database the connection is in.
                if let Some(conn) = ctx.conns.borrow().peek(self.conn0) {
                    self.db0 = conn.db;
                }
            }
            let alone = matches!(item, Item::Load(_) | Item::Step(Step::Barrier { .. }));
            if alone && !(self.lanes_idle() && self.caught_up0(ctx)) {
                break;
            }
            let Some(item) = self.items.pop_front() else {
                break;
            };
            any = true;
            match item {
                Item::Step(Step::Spread(parts)) => {
                    for (k, runs) in parts.into_iter().enumerate() {
                        for (db, cmds) in runs {
                            if k == 0 {
                                self.give0(db, cmds, db);
                            } else if let Some(lane) = self.lanes.get_mut(k) {
                                lane.queued += cmds.len() as u64;
                                match lane.queue.back_mut() {
                                    Some((d, run)) if *d == db && run.len() < BATCH_MAX => {
                                        run.extend_from_slice(&cmds)
                                    }
                                    _ => lane.queue.push_back((db, cmds)),
                                }
                            }
                        }
                    }
                }
                Item::Step(Step::Barrier { db, cmds, end_db }) => {
                    self.give0(db, cmds, end_db);
                    self.fenced = true;
                }
                Item::End(mut chunk) => {
                    chunk.need = self.lanes.iter().map(|l| l.queued).collect();
                    if let Some(n) = chunk.need.first_mut() {
                        *n = self.given0;
                    }
                    self.chunks.push_back(chunk);
                }
                Item::Load(link) => {
                    self.load(ctx, &link);
                    self.fenced = true;
                }
            }
        }
        // The other shards' batches first: they run while this one feeds its own part.
        let sent = self.kick_lanes(ctx);
        any | sent | self.feed0(ctx)
    }

    /// Gives commands to the master connection (in database `db`, which they leave it in
    /// `end_db`).
    fn give0(&mut self, db: usize, cmds: Vec<u8>, end_db: usize) {
        if self.db0 != db {
            let mut select = Vec::new();
            shards::resp::encode_command(&[b"SELECT", db.to_string().as_bytes()], &mut select);
            self.given0 += select.len() as u64;
            self.pend0.push_back(select);
        }
        self.given0 += cmds.len() as u64;
        self.pend0.push_back(cmds);
        self.db0 = end_db;
    }

    /// Feeds the master connection a slice of what it was given, and runs it; returns
    /// whether anything was fed (more to come: `serve` is nudged to come back).
    fn feed0(&mut self, ctx: &ShardCtx) -> bool {
        if self.pend0.is_empty() {
            return false;
        }
        let Some(mut conn) = ctx.conns.borrow_mut().take(self.conn0) else {
            return false;
        };
        let mut fed = 0;
        while fed < FEED_MAX {
            let Some(cmds) = self.pend0.pop_front() else {
                break;
            };
            fed += cmds.len();
            conn.rbuf.extend_from_slice(&cmds);
        }
        crate::dispatch::process(ctx, &mut conn);
        ctx.finish(conn);
        if !self.pend0.is_empty() {
            nudge();
        }
        true
    }

    /// A payload to load: the master connection starts the cut that loads it everywhere.
    fn load(&mut self, ctx: &ShardCtx, link: &Arc<Link>) {
        let Some(mut conn) = ctx.conns.borrow_mut().take(self.conn0) else {
            link.load_failed.store(true, Ordering::Release);
            link.loading.store(false, Ordering::Release);
            return;
        };
        // A new copy (what came before it has been applied: see `hand_out`).
        conn.rbuf.clear();
        conn.rpos = 0;
        conn.db = 0;
        conn.multi = None;
        self.db0 = 0;
        link.applied_db.store(0, Ordering::Release);
        // The load belongs to this link even if another replaces it meanwhile.
        *ctx.shared
            .repl
            .loading_link
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(link.clone());
        crate::save::start_cut(ctx, &mut conn, crate::save::SnapKind::LoadReplica);
        ctx.finish(conn);
    }

    /// Sends each idle lane its next batch; returns whether any went.
    fn kick_lanes(&mut self, ctx: &ShardCtx) -> bool {
        let mut sent = false;
        if crate::pause::holds(&ctx.shared, shards::cmd::flag::WRITE) {
            // CLIENT PAUSE holds the master's writes on every shard, as the master
            // connection's are held (Redis pauses its master client too).
            return false;
        }
        for (k, lane) in self.lanes.iter_mut().enumerate().skip(1) {
            if lane.busy.get() {
                continue;
            }
            let Some((db, cmds)) = lane.queue.pop_front() else {
                continue;
            };
            let token = *lane.token.get_or_insert_with(|| lane_conn(ctx, self.conn0));
            let Some(mut conn) = ctx.conns.borrow_mut().take(token) else {
                lane.queue.push_front((db, cmds));
                continue;
            };
            conn.db = db;
            show_to_monitors(ctx, &mut conn, &cmds);
            sent = true;
            let len = cmds.len() as u64;
            let (done, busy) = (lane.done.clone(), lane.busy.clone());
            busy.set(true);
            crate::dispatch::fan_out(
                ctx,
                &mut conn,
                vec![(k, crate::msg::ReqBody::Run(cmds))],
                Box::new(move |_, _, _| {
                    done.set(done.get() + len);
                    busy.set(false);
                }),
            );
            ctx.finish(conn);
        }
        sent
    }

    /// Relays the pieces every shard has applied in full; returns whether the stream is
    /// still (nothing waiting, in flight or unrelayed).
    fn settle(&mut self, ctx: &ShardCtx) -> bool {
        let Some((applied0, idle0)) = self.conn0_state(ctx) else {
            return false;
        };
        while let Some(c) = self.chunks.front() {
            let done0 = applied0 > c.need[0] || (applied0 == c.need[0] && idle0);
            let done = done0
                && self
                    .lanes
                    .iter()
                    .zip(&c.need)
                    .skip(1)
                    .all(|(l, &need)| l.done.get() >= need);
            if !done {
                break;
            }
            let Some(c) = self.chunks.pop_front() else {
                break;
            };
            if c.session == c.link.session.load(Ordering::Acquire) {
                c.link.applied.fetch_add(c.len, Ordering::AcqRel);
                c.link.offset.fetch_max(c.end, Ordering::AcqRel);
            }
            c.link.applied_db.store(c.end_db, Ordering::Release);
            let _ = c.link.hub.send(super::ToHub::Upstream {
                session: c.session,
                bytes: c.raw,
            });
        }
        self.items.is_empty()
            && self.chunks.is_empty()
            && self.lanes_idle()
            && idle0
            && applied0 == self.given0
    }
}

/// MONITOR shows the master's commands a batch carries to another shard, as it shows those
/// the master connection runs.
fn show_to_monitors(ctx: &ShardCtx, conn: &mut crate::conn::Conn, cmds: &[u8]) {
    use shards::resp::{parse_command, ParseLimits, Parsed};
    if ctx.shared.monitoring.load(Ordering::Acquire) == 0 {
        return;
    }
    let limits = ParseLimits {
        bulk_len_max: usize::MAX,
    };
    let (mut ranges, mut scratch) = (Vec::new(), Vec::new());
    let mut pos = 0;
    while let Ok(Parsed::Command { consumed }) =
        parse_command(&cmds[pos..], &mut ranges, &mut scratch, limits)
    {
        let frame = &cmds[pos..pos + consumed];
        let argv: Vec<&[u8]> = ranges.iter().map(|r| &frame[r.clone()]).collect();
        if let Ok(l) = shards::cmd::lookup(&argv) {
            crate::monitor::feed(ctx, conn, l, &argv);
        }
        pos += consumed;
    }
}

/// A socketless connection on shard 0 through which batches go to another shard (under the
/// master connection `conn0`'s address, for MONITOR).
fn lane_conn(ctx: &ShardCtx, conn0: crate::msg::Token) -> crate::msg::Token {
    let addr = ctx
        .conns
        .borrow()
        .peek(conn0)
        .map_or_else(String::new, |c| c.addr.clone());
    let mut conns = ctx.conns.borrow_mut();
    let token = conns.vacant();
    let id = ctx.shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let mut c = crate::conn::Conn::new(-1, token, id, addr, String::new(), now_us() / 1000);
    c.authenticated = true;
    c.master_link = true;
    conns.put_internal(Box::new(c));
    token
}

/// On shard 0: takes `more` (messages from a link), hands out what it can and relays what
/// is applied. Returns whether the stream is still.
fn pump(ctx: &ShardCtx, more: Option<(Arc<Link>, Vec<ToShard>)>) -> bool {
    COORD.with(|c| {
        let mut g = c.borrow_mut();
        let Some(coord) = g.as_mut() else {
            return true;
        };
        if let Some((link, msgs)) = more {
            for msg in msgs {
                match msg {
                    ToShard::Load => coord.items.push_back(Item::Load(link.clone())),
                    ToShard::Stream {
                        session,
                        steps,
                        len,
                        raw,
                        end,
                        end_db,
                    } => {
                        coord.items.extend(steps.into_iter().map(Item::Step));
                        coord.items.push_back(Item::End(Chunk {
                            link: link.clone(),
                            session,
                            len,
                            raw,
                            end,
                            end_db,
                            need: Vec::new(),
                        }));
                    }
                }
            }
        }
        if coord.hand_out(ctx) {
            ctx.end_of_batch();
        }
        coord.settle(ctx)
    })
}

/// On shard 0, while a replica: CLIENT LIST's line for the master connection (`flags=M`),
/// if the filters let it through.
pub fn master_client_line(
    ctx: &ShardCtx,
    ids: Option<&[u64]>,
    kind: Option<&str>,
) -> Option<String> {
    if ctx.id != 0 || !matches!(kind, None | Some("master")) {
        return None;
    }
    let link = ctx.shared.repl.link()?;
    let token = COORD.with(|c| c.try_borrow().ok()?.as_ref().map(|c| c.conn0))?;
    let conns = ctx.conns.borrow();
    let conn = conns.peek(token)?;
    if ids.is_some_and(|ids| !ids.contains(&conn.id)) {
        return None;
    }
    let line = conn.info_line(now_us() / 1000);
    let line = line.replacen(
        &format!("addr={} ", conn.addr),
        &format!("addr={}:{} ", link.host, link.port),
        1,
    );
    Some(match line.split_once(" flags=") {
        Some((head, tail)) => {
            let rest = tail.split_once(' ').map_or("", |(_, r)| r);
            format!("{head} flags=M {rest}")
        }
        None => line,
    })
}

/// On shard 0: relays the stream pieces the shards have applied in full. Returns whether
/// the stream is still (nothing being applied, everything relayed).
pub fn relay_applied(ctx: &ShardCtx, _link: &Link) -> bool {
    COORD.with(|c| {
        c.try_borrow_mut()
            .ok()
            .is_some_and(|mut g| g.as_mut().is_none_or(|coord| coord.settle(ctx)))
    })
}

/// The stream is still: every shard starts logging its writes for the hub, and then the
/// server is a master (see `promoted`).
fn start_promotion(ctx: &ShardCtx, token: crate::msg::Token, link: &Arc<Link>) {
    let Some(mut conn) = ctx.conns.borrow_mut().take(token) else {
        link.promoting.store(false, Ordering::Release);
        return;
    };
    let parts = (0..ctx.n)
        .map(|s| (s, crate::msg::ReqBody::ReplPromote))
        .collect();
    let l = link.clone();
    crate::dispatch::fan_out(
        ctx,
        &mut conn,
        parts,
        Box::new(move |ctx, _, _| promoted(ctx, &l)),
    );
    ctx.finish(conn);
    ctx.end_of_batch();
}

/// On each shard, before a promotion: what it logs from now on goes to the hub.
pub fn prepare_promotion(ctx: &ShardCtx) -> crate::msg::RepBody {
    let mut e = ctx.engine.borrow_mut();
    match e.prop.as_mut() {
        None => e.prop = Some(Default::default()),
        // What it logged before (for the AOF, which takes it at the end of this batch) came
        // from the master: nothing is logged from here until the promotion, and the stream
        // says its database again.
        Some(p) => p.db = None,
    }
    crate::msg::RepBody::Ack
}

/// Every shard logs for the hub: the hub takes our history on under a new id, and the server
/// takes writes.
fn promoted(ctx: &ShardCtx, link: &Arc<Link>) {
    let repl = &ctx.shared.repl;
    // The hub stops relaying before any shard's log reaches it.
    let _ = link.hub.send(super::ToHub::Promote {
        replid: super::new_replid(),
    });
    repl.feeding.store(true, Ordering::Release);
    {
        let mut g = repl.link.lock().unwrap_or_else(|e| e.into_inner());
        if g.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            *g = None;
            shards::keyspace::REPLICA.store(false, Ordering::Release);
        }
    }
    link.promoted.store(true, Ordering::Release);
    link.retired.store(true, Ordering::Release);
}

/// The connection the master's commands run on: no socket, may run anything.
fn master_conn(ctx: &ShardCtx, link: &Link) -> crate::msg::Token {
    let mut conns = ctx.conns.borrow_mut();
    let token = conns.vacant();
    let id = ctx.shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let mut c = crate::conn::Conn::new(
        -1,
        token,
        id,
        format!("{}:{}", link.host, link.port),
        String::new(),
        now_us() / 1000,
    );
    c.authenticated = true;
    c.master_link = true;
    conns.put_internal(Box::new(c));
    token
}

/// The cut step of loading a master's payload on this shard (its exclusive lock is held):
/// the databases are emptied and the keys of this shard's slots loaded (shard 0 loads the
/// function libraries too).
pub fn load(ctx: &ShardCtx) -> Result<(), String> {
    let link = ctx
        .shared
        .repl
        .loading_link
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or("no replication link")?;
    let data = link
        .payload
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or("no payload")?;
    let mut e = ctx.engine.borrow_mut();
    let scfg = e.config.clone();
    for db in e.dbs.iter_mut() {
        db.snapshot_abort();
        db.clear();
    }
    e.flushed(None);
    let scripts = e.scripts.clone();
    if ctx.id == 0 {
        shards::script::function::flush_libraries(&scripts);
    }
    let (id, n) = (ctx.id, ctx.n);
    let defs = crate::load::read_rdb_into(
        &data,
        std::path::Path::new("(the master's payload)"),
        &mut e.dbs,
        &scfg,
        now_us() / 1000,
        (id == 0).then_some(&scripts),
        |k| crate::load::shard_of(k, n) == id,
    )
    .map_err(|e| e.to_string())?;
    // The master's search indexes replace ours (their data is built from the keys again).
    e.search = Default::default();
    e.search.decode(&defs.unwrap_or_default());
    if id == 0 {
        shards::search::publish(e.search.encode());
    }
    Ok(())
}

/// After the load (on every shard, or failed): the link goes on.
pub fn loaded(ctx: &ShardCtx, errors: &[String]) {
    let link = ctx
        .shared
        .repl
        .loading_link
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if !errors.is_empty() {
        crate::log!("Loading the master's payload failed: {}", errors.join("; "));
        if let Some(l) = &link {
            l.load_failed.store(true, Ordering::Release);
        }
    }
    if let Some(l) = link {
        l.payload.lock().unwrap_or_else(|e| e.into_inner()).take();
        l.loading.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<u8> {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut out = Vec::new();
        shards::resp::encode_command(&argv, &mut out);
        out
    }

    fn cmds(list: &[&[&str]]) -> Vec<u8> {
        list.iter().flat_map(|a| cmd(a)).collect()
    }

    /// Two keys on different shards of two.
    fn keys_on_two_shards() -> (String, String) {
        let a = "a".to_string();
        let sa = shards::slot::shard_of(a.as_bytes(), 2);
        let b = (0..1000)
            .map(|i| format!("k{i}"))
            .find(|k| shards::slot::shard_of(k.as_bytes(), 2) != sa)
            .expect("a key on the other shard");
        (a, b)
    }

    #[test]
    fn single_shard_commands_spread_by_shard_and_database() {
        let (a, b) = keys_on_two_shards();
        let (sa, sb) = (
            shards::slot::shard_of(a.as_bytes(), 2),
            shards::slot::shard_of(b.as_bytes(), 2),
        );
        let stream = cmds(&[
            &["SET", &a, "1"],
            &["SET", &b, "2"],
            &["SELECT", "3"],
            &["INCR", &a],
            &["HSET", &b, "f", "v"],
        ]);
        let mut db = 0;
        let steps = split(&stream, 2, 16, &mut db);
        assert_eq!(db, 3);
        let [Step::Spread(parts)] = steps.as_slice() else {
            panic!("one spread step expected");
        };
        assert_eq!(
            parts[sa],
            vec![(0, cmd(&["SET", &a, "1"])), (3, cmd(&["INCR", &a]))]
        );
        assert_eq!(
            parts[sb],
            vec![
                (0, cmd(&["SET", &b, "2"])),
                (3, cmd(&["HSET", &b, "f", "v"]))
            ]
        );
    }

    #[test]
    fn blocks_keyless_and_cross_shard_commands_are_barriers() {
        let (a, b) = keys_on_two_shards();
        let block = cmds(&[
            &["MULTI"],
            &["SET", &a, "1"],
            &["SELECT", "2"],
            &["SET", &b, "1"],
            &["EXEC"],
        ]);
        let mut stream = cmd(&["SET", &a, "0"]);
        stream.extend_from_slice(&block);
        stream.extend(cmd(&["DEL", &a, &b]));
        stream.extend(cmd(&["FLUSHALL"]));
        stream.extend(cmd(&["SET", &b, "3"]));
        let mut db = 1;
        let steps = split(&stream, 2, 16, &mut db);
        assert_eq!(steps.len(), 3, "spread, barrier, spread");
        let Step::Barrier {
            db: start,
            cmds: barrier,
            end_db,
        } = &steps[1]
        else {
            panic!("a barrier expected");
        };
        // The block starts in database 1 and leaves the connection in 2; DEL over both shards
        // and FLUSHALL join it.
        assert_eq!((*start, *end_db), (1, 2));
        let mut expect = block.clone();
        expect.extend(cmd(&["DEL", &a, &b]));
        expect.extend(cmd(&["FLUSHALL"]));
        assert_eq!(barrier, &expect);
        let Step::Spread(parts) = &steps[2] else {
            panic!("a spread expected");
        };
        let sb = shards::slot::shard_of(b.as_bytes(), 2);
        assert_eq!(parts[sb], vec![(2, cmd(&["SET", &b, "3"]))]);
        assert_eq!(db, 2);
    }

    #[test]
    fn scripts_bad_selects_and_unknown_commands_run_on_shard_0() {
        let mut db = 0;
        let stream = cmds(&[
            &["EVAL", "return 1", "1", "a"],
            &["SELECT", "99"],
            &["SELECT", "x"],
            &["NOSUCHCOMMAND", "a"],
            &["SET", "a"],
        ]);
        let steps = split(&stream, 2, 16, &mut db);
        let [Step::Barrier { cmds: barrier, .. }] = steps.as_slice() else {
            panic!("one barrier expected");
        };
        assert_eq!(barrier, &stream);
        assert_eq!(db, 0);
    }

    #[test]
    fn one_shard_takes_everything_keyed_and_a_cut_block_stays_whole() {
        let mut db = 0;
        let stream = cmds(&[&["SET", "a", "1"], &["MSET", "a", "1", "b", "2"]]);
        let steps = split(&stream, 1, 16, &mut db);
        let [Step::Spread(parts)] = steps.as_slice() else {
            panic!("one spread step expected");
        };
        assert_eq!(parts[0], vec![(0, stream.clone())]);
        // An unfinished block (never handed over by the link thread) runs as it is.
        let open = cmds(&[&["MULTI"], &["SET", "a", "1"]]);
        let steps = split(&open, 2, 16, &mut db);
        let [Step::Barrier { cmds: barrier, .. }] = steps.as_slice() else {
            panic!("one barrier expected");
        };
        assert_eq!(barrier, &open);
        // Half a command too.
        let half = &cmd(&["SET", "a", "1"])[..5];
        let steps = split(half, 2, 16, &mut db);
        assert!(matches!(steps.as_slice(), [Step::Barrier { .. }]));
    }
}
