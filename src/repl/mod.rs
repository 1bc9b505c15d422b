//! Replication, the master's side: replicas (redis-server or shardis) attach with Redis's own
//! protocol (REPLCONF, PSYNC or SYNC) and receive one RDB stream and then one command stream
//! for the whole process.
//!
//! Each shard logs the effects of its writes (`Shard::prop`, the same log the AOF writes). Once a
//! replica has attached, every shard hands what it logged in a loop iteration to the replication
//! hub (`hub`), a thread of its own, which merges the shards' logs into one stream: each shard's
//! order is kept, a write over several shards (logged on each as `MULTI … EXEC <txid>
//! <participants>`) comes out as one `MULTI … EXEC` once every participant's part is in, and
//! `SELECT`s are written where the stream's database changes. The hub counts the replication
//! offset, keeps the backlog and writes to the replicas, each through its own writer thread.
//!
//! A full resynchronisation takes a consistent cut of every shard (the exclusive step BGSAVE
//! uses): in that step each shard hands over what it logged before, marks the cut in its log,
//! and starts a copy-on-write snapshot whose pieces go to the hub. The hub lets no shard's
//! writes after its cut into the stream before every shard's cut is in, so the offset after the
//! cut names exactly the data the snapshot holds. The RDB the replica receives is assembled from
//! the shards' pieces as they come (every piece starts with its database's `SELECTDB`).
//!
//! The replica's socket leaves the shard that accepted it: PSYNC hands a duplicate of it to the
//! hub, and the connection closes without touching the socket. (So replicas cannot attach over
//! TLS yet.)

pub mod hub;
pub mod replica;

use crate::conn::Conn;
use crate::ctx::{now_us, ShardCtx};
use shards::util::eq_ic;
use shards::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

/// What the shards and the commands tell the hub.
pub enum ToHub {
    /// What shard `shard` logged since its last message.
    Feed { shard: usize, bytes: Vec<u8> },
    /// Shard `shard`'s cut for full resynchronisation `sync`: what follows in its log is after
    /// the snapshot.
    Cut { shard: usize, sync: u64 },
    /// A piece of shard `shard`'s snapshot for `sync` (`done`: its last).
    Rdb {
        shard: usize,
        sync: u64,
        piece: Vec<u8>,
        done: bool,
    },
    /// The cut for `sync` failed: its markers and pieces are to be dropped.
    Abort { sync: u64 },
    /// A replica: its socket, and what it asked for.
    Attach(Box<Attach>),
    /// WAIT `wid`: everything shard `shard` logged before this mark counts.
    Mark { shard: usize, wid: u64 },
    /// A replica's link (session `session`) is in step with its master at `offset` under
    /// `replid` (`full`: after loading a payload): the hub relays the master's stream.
    Relay {
        session: u64,
        replid: String,
        offset: u64,
        full: bool,
    },
    /// Bytes of the master's stream shard 0 has applied, in order.
    Upstream { session: u64, bytes: Vec<u8> },
    /// A chained replica's full resync `sync`: its snapshot holds the relayed stream so far.
    RelayCut { sync: u64 },
    /// REPLICAOF NO ONE has taken effect: our history goes on under `replid`.
    Promote { replid: String },
    /// Full resynchronisation `sync` is for this many replicas (they gathered within
    /// `repl-diskless-sync-delay`).
    Expect { sync: u64, replicas: usize },
    /// The hub's replication id and offset, once it has taken everything sent before.
    Ask(Sender<(String, u64)>),
    /// CLIENT KILL: drop the replica whose connection had this id (None: every replica).
    Kill(Option<u64>),
}

/// A replica handed to the hub.
pub struct Attach {
    pub sock: std::net::TcpStream,
    pub client: Arc<ClientDesc>,
    /// The replica's TLS session, when it came to the TLS port.
    pub tls: Option<rustls::ServerConnection>,
    pub id: u64,
    pub addr: String,
    pub listening_port: u16,
    pub capa_eof: bool,
    pub how: Start,
}

/// How a replica starts.
pub enum Start {
    /// `+CONTINUE`: the stream from this offset, out of the backlog.
    Continue { from: u64 },
    /// `+FULLRESYNC` (or, for SYNC, no line at all), the snapshot of cut `sync`, the stream.
    Full { sync: u64, psync: bool },
}

/// A replica as INFO and ROLE show it.
#[derive(Debug, Clone)]
pub struct ReplicaInfo {
    /// The id its connection had (CLIENT KILL ID).
    pub id: u64,
    /// Its connection as CLIENT LIST shows it.
    pub client: Arc<ClientDesc>,
    pub ip: String,
    pub port: u16,
    /// `wait_bgsave`, `send_bulk` or `online`.
    pub state: &'static str,
    pub ack_offset: u64,
    pub ack_ms: u64,
}

/// What CLIENT LIST shows of a replica's connection after it became a replication link.
#[derive(Debug, Default)]
pub struct ClientDesc {
    pub addr: String,
    pub laddr: String,
    pub name: String,
    pub user: String,
    pub created_ms: u64,
}

/// CLIENT LIST's lines for the replicas (their links are threads of the hub), filtered as
/// CLIENT LIST TYPE / ID filter.
pub fn replica_lines(
    shared: &crate::ctx::Shared,
    ids: Option<&[u64]>,
    kind: Option<&str>,
) -> String {
    if !matches!(kind, None | Some("replica")) {
        return String::new();
    }
    let now_ms = now_us() / 1000;
    let mut out = String::new();
    for r in shared.repl.snapshot().replicas {
        if ids.is_some_and(|ids| !ids.contains(&r.id)) {
            continue;
        }
        let c = &r.client;
        out.push_str(&format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=S db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd=replconf user={} redir=-1 resp=2\n",
            r.id,
            c.addr,
            c.laddr,
            c.name,
            now_ms.saturating_sub(c.created_ms) / 1000,
            now_ms.saturating_sub(r.ack_ms) / 1000,
            c.user,
        ));
    }
    out
}

/// What the hub publishes for INFO replication and ROLE.
#[derive(Debug, Clone, Default)]
pub struct MasterState {
    pub replid: String,
    pub replid2: String,
    pub second_offset: i64,
    /// The hub runs (there is a backlog).
    pub active: bool,
    pub offset: u64,
    pub backlog_first: u64,
    pub backlog_len: u64,
    pub replicas: Vec<ReplicaInfo>,
}

/// Process-wide replication state.
pub struct ReplShared {
    /// The replication id this process started with (the hub's current ids are in `state`).
    pub replid: String,
    /// The shards hand their logs to the hub (from the first replica's cut on).
    pub feeding: Arc<AtomicBool>,
    hub: Mutex<Option<Sender<ToHub>>>,
    next_sync: AtomicU64,
    pub state: Arc<Mutex<MasterState>>,
    /// WAITs in progress: the stream offset that covers each one's writes, once known.
    pub wait_targets: Arc<Mutex<std::collections::HashMap<u64, Option<u64>>>>,
    /// The link to our master, while a replica.
    pub link: Mutex<Option<Arc<replica::Link>>>,
    /// The link whose payload the shards are loading.
    pub loading_link: Mutex<Option<Arc<replica::Link>>>,
    /// Payload bytes on their way to replicas: the shards' snapshots wait while it is over
    /// `PAYLOAD_QUEUE_MAX`, so a full resync holds only so much beyond the data.
    pub payload: Arc<PayloadQueue>,
    /// Replicas asking for a full resync within `repl-diskless-sync-delay` share one payload:
    /// the one being gathered, and how each closed gathering's cut went (sync → its result
    /// and how many replicas have still to read it).
    gathering: Mutex<Option<Gathering>>,
    gathered: Mutex<std::collections::HashMap<u64, (Option<bool>, usize)>>,
    /// INFO stats: full resyncs served, partial ones accepted and refused.
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    config: Arc<crate::config::Config>,
    /// An eventfd in shard 0's epoll set: a replica's link thread rings it when it hands
    /// shard 0 more of the stream (-1: none could be made, shard 0 polls).
    pub doorbell: i32,
}

/// Replicas waiting out `repl-diskless-sync-delay` for one full resynchronisation.
struct Gathering {
    sync: u64,
    due_ms: u64,
    replicas: usize,
}

/// Most payload bytes queued between the shards' snapshots and the replicas' sockets.
pub const PAYLOAD_QUEUE_MAX: usize = 2 * 1024 * 1024;

/// Bytes between the snapshots and the sockets.
#[derive(Default)]
pub struct PayloadQueue {
    /// Sent by the shards, not yet taken by the hub.
    pub unread: std::sync::atomic::AtomicUsize,
    /// Handed to the replicas' writer threads and not written yet (the hub's count of its
    /// live replicas, refreshed every pass).
    pub unwritten: std::sync::atomic::AtomicUsize,
}

impl PayloadQueue {
    /// Whether a snapshot should wait before making more.
    pub fn full(&self) -> bool {
        self.unread.load(Ordering::Relaxed) + self.unwritten.load(Ordering::Relaxed)
            > PAYLOAD_QUEUE_MAX
    }
}

impl ReplShared {
    pub fn new(replid: String, config: Arc<crate::config::Config>) -> ReplShared {
        ReplShared {
            replid: replid.clone(),
            feeding: Arc::new(AtomicBool::new(false)),
            hub: Mutex::new(None),
            next_sync: AtomicU64::new(1),
            state: Arc::new(Mutex::new(MasterState {
                replid: replid.clone(),
                replid2: hub::NO_ID.to_string(),
                second_offset: -1,
                ..Default::default()
            })),
            wait_targets: Default::default(),
            link: Mutex::new(None),
            loading_link: Mutex::new(None),
            payload: Default::default(),
            gathering: Mutex::new(None),
            gathered: Default::default(),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
            config,
            // SAFETY: eventfd has no memory arguments; a failure returns -1.
            doorbell: unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) },
        }
    }

    /// The hub's mailbox, starting the hub on first use.
    pub fn hub(&self, scripts: &Arc<shards::script::Store>, nshards: usize) -> Sender<ToHub> {
        let mut g = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = g.as_ref() {
            return tx.clone();
        }
        let tx = hub::start(self, nshards, scripts.clone());
        *g = Some(tx.clone());
        tx
    }

    /// The hub's mailbox if it runs.
    fn running_hub(&self) -> Option<Sender<ToHub>> {
        self.hub
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .cloned()
    }

    /// The link to our master, while a replica.
    pub fn link(&self) -> Option<Arc<replica::Link>> {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn snapshot(&self) -> MasterState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// At the end of a loop iteration: what this shard logged goes to the hub, once replicas
/// exist. A block run live is handed over whole when it ends (as the AOF writes it).
pub fn feed(ctx: &ShardCtx) {
    let repl = &ctx.shared.repl;
    if ctx.aof_live.borrow().is_some() {
        return;
    }
    let feeding = repl.feeding.load(Ordering::Acquire);
    let bytes = {
        let mut e = ctx.engine.borrow_mut();
        let aof_on = ctx.aof.borrow().is_some();
        let Some(p) = e.prop.as_mut() else {
            return;
        };
        if !feeding {
            // A replica (or a master whose replicas are gone) keeps the log only for the AOF,
            // which takes it itself: without one nothing else would ever empty it.
            if !aof_on {
                p.buf.clear();
            }
            return;
        }
        if p.buf.is_empty() {
            return;
        }
        if aof_on {
            // The AOF takes the same bytes right after.
            p.buf.clone()
        } else {
            std::mem::take(&mut p.buf)
        }
    };
    if let Some(tx) = repl.running_hub() {
        let _ = tx.send(ToHub::Feed {
            shard: ctx.id,
            bytes,
        });
    }
}

/// The cut step of full resynchronisation `sync` on this shard (its exclusive lock is held):
/// what was logged before goes to the hub, then the cut marker, then the snapshot's pieces as
/// they are made.
pub fn begin_sync(ctx: &ShardCtx, sync: u64) -> Result<(), String> {
    let repl = &ctx.shared.repl;
    let tx = repl.hub(&ctx.shared.scripts, ctx.n);
    if let Some(link) = repl.link() {
        // A replica: the snapshot goes with the offset of the master's stream applied so
        // far (shard 0 applies it, and has stopped for this cut).
        let _ = tx.send(ToHub::Cut {
            shard: ctx.id,
            sync,
        });
        if ctx.id == 0 {
            if !replica::relay_applied(ctx, &link) {
                return Err("the master's stream is still being applied".into());
            }
            let _ = tx.send(ToHub::RelayCut { sync });
        }
        return crate::snapshot::begin_replica(ctx, sync);
    }
    repl.feeding.store(true, Ordering::Release);
    {
        let mut e = ctx.engine.borrow_mut();
        if e.prop.is_none() {
            e.prop = Some(Default::default());
        }
    }
    feed(ctx);
    let _ = tx.send(ToHub::Cut {
        shard: ctx.id,
        sync,
    });
    crate::snapshot::begin_replica(ctx, sync)
}

/// A piece of this shard's snapshot for `sync`.
pub fn send_piece(ctx: &ShardCtx, sync: u64, piece: Vec<u8>, done: bool) {
    if let Some(tx) = ctx.shared.repl.running_hub() {
        ctx.shared
            .repl
            .payload
            .unread
            .fetch_add(piece.len(), Ordering::Relaxed);
        let _ = tx.send(ToHub::Rdb {
            shard: ctx.id,
            sync,
            piece,
            done,
        });
    }
}

/// PSYNC, SYNC, REPLCONF, ROLE, REPLICAOF / SLAVEOF.
pub fn handle(
    ctx: &ShardCtx,
    conn: &mut Conn,
    l: shards::cmd::Lookup,
    argv: &[&[u8]],
) -> Result<(), Error> {
    match l.spec.name {
        "replconf" => replconf(conn, argv),
        "psync" | "sync" => attach(ctx, conn, argv),
        "role" => {
            role(ctx, conn);
            Ok(())
        }
        "wait" => wait(ctx, conn, argv),
        _ => replicaof(ctx, conn, argv),
    }
}

fn replconf(conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    if argv.len().is_multiple_of(2) {
        return Err(Error::Syntax);
    }
    for pair in argv[1..].chunks(2) {
        let (opt, val) = (pair[0], pair[1]);
        if eq_ic(opt, "listening-port") {
            let port = shards::util::parse_i64(val)
                .filter(|p| (0..=65535).contains(p))
                .ok_or(Error::NotInteger)?;
            conn.repl_port = port as u16;
        } else if eq_ic(opt, "capa") {
            if eq_ic(val, "eof") {
                conn.repl_eof = true;
            }
        } else if eq_ic(opt, "ip-address") {
            conn.repl_ip = Some(String::from_utf8_lossy(val).into_owned());
        } else if eq_ic(opt, "rdb-only") || eq_ic(opt, "rdb-filter-only") {
        } else if eq_ic(opt, "ack") || eq_ic(opt, "getack") {
            // Only a replica's link sends these, and that link is the hub's: nothing to say.
            return Ok(());
        } else {
            return Err(Error::err(format!(
                "Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    conn.reply().ok();
    Ok(())
}

/// PSYNC / SYNC: a partial resynchronisation out of the backlog when the replica's history is
/// ours and still there, otherwise a full one from a new cut.
fn attach(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    if conn.fd < 0 {
        return Err(Error::err("no socket to replicate to"));
    }
    let psync = argv.len() == 3;
    let repl = &ctx.shared.repl;
    let link = repl.link();
    if link.as_ref().is_some_and(|l| l.state() != "connected") {
        return Err(Error::Other(
            "NOMASTERLINK Can't SYNC while not connected with my master".into(),
        ));
    }
    if psync {
        let state = repl.snapshot();
        let asked = shards::util::parse_i64(argv[2]).unwrap_or(-1);
        // psync2: our history, or our former master's up to where ours forked from it.
        let ours = argv[1] == state.replid.as_bytes()
            || (argv[1] == state.replid2.as_bytes() && asked <= state.second_offset);
        if ours
            && asked >= 0
            && state.active
            && (asked as u64) >= state.backlog_first
            && (asked as u64) <= state.offset + 1
        {
            repl.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
            return hand_over(ctx, conn, Start::Continue { from: asked as u64 });
        }
        if argv[1] != b"?" {
            repl.sync_partial_err.fetch_add(1, Ordering::Relaxed);
        }
    }
    repl.sync_full.fetch_add(1, Ordering::Relaxed);
    let sync = repl.next_sync.fetch_add(1, Ordering::Relaxed);
    crate::log!(
        "Replica {} asks for synchronization; starting a full resync",
        conn.addr
    );
    let delay_ms = ctx.shared.config.get_i64("repl-diskless-sync-delay").max(0) as u64 * 1000;
    match link {
        // A replica's snapshot must match an offset of its master's stream: shard 0 stops
        // applying it until the cut is taken, which waits for the stream to be still.
        Some(l) => replica::cut_when_still(ctx, conn, &l, sync, psync),
        None if delay_ms > 0 && ctx.shared.config.get("repl-diskless-sync") == "yes" => {
            gather(ctx, conn, sync, psync, delay_ms)
        }
        None => crate::save::start_cut(ctx, conn, crate::save::SnapKind::Replica(sync, psync)),
    }
    Ok(())
}

/// `repl-diskless-sync-delay`: the first replica to ask waits that long for others, then
/// takes the cut; those that came meanwhile get the same payload once it is taken.
fn gather(ctx: &ShardCtx, conn: &mut Conn, sync: u64, psync: bool, delay_ms: u64) {
    let repl = &ctx.shared.repl;
    let now_ms = now_us() / 1000;
    let (sync, first, due_ms) = {
        let mut g = repl.gathering.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_mut() {
            Some(x) => {
                x.replicas += 1;
                (x.sync, false, x.due_ms)
            }
            None => {
                let due_ms = now_ms + delay_ms;
                *g = Some(Gathering {
                    sync,
                    due_ms,
                    replicas: 1,
                });
                (sync, true, due_ms)
            }
        }
    };
    crate::log!(
        "Replica {} waits {} ms for others to share its full resync (cut {sync})",
        conn.addr,
        due_ms.saturating_sub(now_ms)
    );
    conn.wait = crate::conn::Wait::Multi {
        outstanding: 1,
        results: Vec::new(),
        done: Box::new(move |ctx, conn, results| {
            let ok = crate::msg::RepBody::count_sum(&results) > 0;
            if first {
                crate::save::start_cut(ctx, conn, crate::save::SnapKind::Replica(sync, psync));
            } else if !ok {
                conn.error("ERR could not start a full resynchronization, try again");
            } else if let Err(e) = hand_over(ctx, conn, Start::Full { sync, psync }) {
                conn.error(&e.text());
            }
        }),
    };
    let token = conn.token;
    let Some(me) = ctx.me() else {
        return;
    };
    glommio::spawn_local(async move {
        let repl = &me.shared.repl;
        let mut ok = 1;
        if first {
            // Until the delay ends, or enough replicas came (`repl-diskless-sync-max-replicas`).
            let most = me
                .shared
                .config
                .get_i64("repl-diskless-sync-max-replicas")
                .max(0) as usize;
            while now_us() / 1000 < due_ms {
                let gathered = repl
                    .gathering
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map_or(0, |g| g.replicas);
                if most > 0 && gathered >= most {
                    break;
                }
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
            let n = repl
                .gathering
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .map_or(1, |g| g.replicas);
            repl.gathered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(sync, (None, n - 1));
            let tx = repl.hub(&me.shared.scripts, me.n);
            let _ = tx.send(ToHub::Expect { sync, replicas: n });
        } else {
            // The others wait for the first one's cut (and give up after a while).
            let deadline = due_ms + 30_000;
            loop {
                let result = {
                    let mut g = repl.gathered.lock().unwrap_or_else(|e| e.into_inner());
                    let result = match g.get_mut(&sync) {
                        Some((Some(cut), left)) => {
                            *left = left.saturating_sub(1);
                            Some((*cut, *left))
                        }
                        _ => None,
                    };
                    if result.is_some_and(|(_, left)| left == 0) {
                        g.remove(&sync);
                    }
                    result
                };
                if let Some((cut, _)) = result {
                    ok = cut as i64;
                    break;
                }
                if now_us() / 1000 > deadline {
                    ok = 0;
                    break;
                }
                glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        if first && !me.conns.borrow().contains(token) && !me.conns.borrow().is_taken(token) {
            // The replica that was to take the cut is gone: the others are told so.
            if let Some((cut, _)) = repl
                .gathered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&sync)
            {
                *cut = Some(false);
            }
            if let Some(tx) = repl.running_hub() {
                let _ = tx.send(ToHub::Abort { sync });
            }
            return;
        }
        while !me.answer_wait(token, ok) {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .detach();
}

/// After the cut of `sync` (`ok`: on every shard): the replica goes to the hub.
pub fn cut_done(ctx: &ShardCtx, conn: &mut Conn, sync: u64, psync: bool, errors: &[String]) {
    if let Some(l) = ctx.shared.repl.link() {
        l.release_hold();
    }
    {
        // Replicas that gathered for this cut go on with it.
        let mut g = ctx
            .shared
            .repl
            .gathered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((cut, left)) = g.get_mut(&sync) {
            *cut = Some(errors.is_empty());
            if *left == 0 {
                g.remove(&sync);
            }
        }
    }
    if !errors.is_empty() {
        if let Some(tx) = ctx.shared.repl.running_hub() {
            let _ = tx.send(ToHub::Abort { sync });
        }
        crate::log!("Full resync {sync} could not start: {}", errors.join("; "));
        conn.error("ERR could not start a full resynchronization, try again");
        return;
    }
    if let Err(e) = hand_over(ctx, conn, Start::Full { sync, psync }) {
        conn.error(&e.text());
    }
}

/// Gives a duplicate of the connection's socket to the hub and closes the connection.
fn hand_over(ctx: &ShardCtx, conn: &mut Conn, how: Start) -> Result<(), Error> {
    use std::os::fd::FromRawFd;
    // SAFETY: dup(2) of the connection's open socket; the new descriptor is owned below.
    let fd = unsafe { libc::dup(conn.fd) };
    if fd < 0 {
        return Err(Error::err("could not hand the connection to replication"));
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let sock = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let _ = sock.set_nonblocking(false);
    let ip = conn.repl_ip.clone().unwrap_or_else(|| {
        conn.addr
            .rsplit_once(':')
            .map_or("", |(h, _)| h)
            .to_string()
    });
    // A TLS session goes with the socket, with any reply not written yet.
    let tls = conn.tls.take().map(|session| {
        let mut tls = session.into_inner();
        tls.set_buffer_limit(None);
        let unsent = conn.wbuf.split_off(conn.wpos.min(conn.wbuf.len()));
        let _ = std::io::Write::write_all(&mut tls.writer(), &unsent);
        tls
    });
    let client = Arc::new(ClientDesc {
        addr: conn.addr.clone(),
        laddr: conn.laddr.clone(),
        name: conn
            .name
            .as_deref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default(),
        user: conn
            .user
            .as_ref()
            .map(|u| String::from_utf8_lossy(&u.name).into_owned())
            .unwrap_or_default(),
        created_ms: conn.created_ms,
    });
    let attach = Attach {
        sock,
        client,
        tls,
        id: conn.id,
        addr: ip,
        listening_port: conn.repl_port,
        capa_eof: conn.repl_eof,
        how,
    };
    let tx = ctx.shared.repl.hub(&ctx.shared.scripts, ctx.n);
    let _ = tx.send(ToHub::Attach(Box::new(attach)));
    // The connection goes; the socket stays open through the duplicate.
    conn.close_after_reply = true;
    Ok(())
}

/// CLIENT KILL with `TYPE replica|slave|master` or `ID` (and no other filter): the replicas
/// it names are dropped (their links are threads of the hub, not connections), and with
/// `TYPE master` the link to our master breaks (it reconnects and resumes). Returns how many.
pub fn kill_links(shared: &crate::ctx::Shared, f: &crate::server_cmds::KillFilter) -> i64 {
    if f.addr.is_some() || f.laddr.is_some() || f.user.is_some() {
        return 0;
    }
    let repl = &shared.repl;
    let mut n = 0;
    if matches!(f.kind.as_deref(), None | Some("replica" | "slave")) {
        let matching = repl
            .snapshot()
            .replicas
            .iter()
            .filter(|r| f.id.is_none_or(|id| id == r.id))
            .count();
        // Without a filter nothing is killed (CLIENT KILL needs one); TYPE or ID is one.
        if matching > 0 && (f.kind.is_some() || f.id.is_some()) {
            if let Some(hub) = repl.hub.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = hub.send(ToHub::Kill(f.id));
                n += matching as i64;
            }
        }
    }
    if f.kind.as_deref() == Some("master") && f.id.is_none() {
        if let Some(link) = repl.link() {
            if link.state() == "connected" {
                link.break_link();
                n += 1;
            }
        }
    }
    n
}

/// Whether a failed read on a replication socket is only a timeout or a signal (read again).
pub fn read_again(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// A new replication id: 40 hex digits.
pub fn new_replid() -> String {
    let mut rng = shards::rng::Rng::new(now_us() ^ ((std::process::id() as u64) << 40));
    (0..40)
        .map(|_| char::from_digit(rng.below(16) as u32, 16).unwrap_or('0'))
        .collect()
}

/// How many replicas have acknowledged the stream up to `offset`.
fn acked(repl: &ReplShared, offset: u64) -> i64 {
    repl.snapshot()
        .replicas
        .iter()
        .filter(|r| r.state == "online" && r.ack_offset >= offset)
        .count() as i64
}

/// WAIT numreplicas timeout: every shard hands what it logged to the hub and marks the
/// point; the hub names the stream offset past all the marks (which covers this connection's
/// writes, all executed before) and asks the replicas for acknowledgements; the connection
/// then waits until enough replicas acknowledge that offset, or the timeout.
fn wait(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let want = shards::util::parse_i64(argv[1]).ok_or(Error::NotInteger)?;
    let timeout = shards::util::parse_i64(argv[2])
        .ok_or_else(|| Error::err("timeout is not an integer or out of range"))?;
    if timeout < 0 {
        return Err(Error::err("timeout is negative"));
    }
    let repl = &ctx.shared.repl;
    if repl.link().is_some() {
        return Err(Error::err(
            "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.",
        ));
    }
    if !repl.feeding.load(Ordering::Acquire) || conn.live.is_some() {
        // No replica ever attached (nothing was sent), or inside a transaction (which never
        // waits): the count now.
        let n = if repl.feeding.load(Ordering::Acquire) {
            acked(repl, repl.snapshot().offset)
        } else {
            0
        };
        if n >= want || conn.live.is_some() {
            conn.reply().int(n);
            return Ok(());
        }
    }
    let wid = repl.next_sync.fetch_add(1, Ordering::Relaxed);
    repl.wait_targets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(wid, None);
    let deadline_ms = if timeout == 0 {
        u64::MAX
    } else {
        now_us() / 1000 + timeout as u64
    };
    let parts = (0..ctx.n)
        .map(|s| (s, crate::msg::ReqBody::ReplMark(wid)))
        .collect();
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |ctx, conn, _| {
            // Still waiting: the answer comes from the task below.
            conn.wait = crate::conn::Wait::Multi {
                outstanding: 1,
                results: Vec::new(),
                done: Box::new(|_, conn, results| {
                    let n = crate::msg::RepBody::count_sum(&results);
                    conn.reply().int(n);
                }),
            };
            let token = conn.token;
            if let Some(me) = ctx.me() {
                glommio::spawn_local(async move {
                    let n = wait_for_acks(&me, wid, want, deadline_ms).await;
                    // The connection may be out of its table for a moment (being served).
                    while !me.answer_wait(token, n) {
                        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                    }
                })
                .detach();
            }
        }),
    );
    Ok(())
}

/// Polls until `want` replicas acknowledged the offset of WAIT `wid`, or the deadline.
async fn wait_for_acks(ctx: &ShardCtx, wid: u64, want: i64, deadline_ms: u64) -> i64 {
    let repl = &ctx.shared.repl;
    let mut n;
    loop {
        let target = repl
            .wait_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&wid)
            .copied()
            .flatten();
        n = target.map_or(0, |t| acked(repl, t));
        if (target.is_some() && n >= want) || now_us() / 1000 >= deadline_ms {
            break;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(2)).await;
    }
    repl.wait_targets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&wid);
    n
}

/// The mark of WAIT `wid` on this shard: what it logged so far goes first.
pub fn mark(ctx: &ShardCtx, wid: u64) -> crate::msg::RepBody {
    feed(ctx);
    if let Some(tx) = ctx.shared.repl.running_hub() {
        let _ = tx.send(ToHub::Mark { shard: ctx.id, wid });
    }
    crate::msg::RepBody::Ack
}

fn role(ctx: &ShardCtx, conn: &mut Conn) {
    let link = ctx.shared.repl.link();
    if let Some(l) = link {
        let mut r = conn.reply();
        r.array(5);
        r.bulk(b"slave");
        r.bulk(l.host.as_bytes());
        r.int(l.port as i64);
        r.bulk(l.state().as_bytes());
        r.int(l.offset.load(Ordering::Acquire) as i64);
        return;
    }
    let state = ctx.shared.repl.snapshot();
    let mut r = conn.reply();
    r.array(3);
    r.bulk(b"master");
    r.int(state.offset as i64);
    let online: Vec<&ReplicaInfo> = state
        .replicas
        .iter()
        .filter(|r| r.state == "online")
        .collect();
    r.array(online.len());
    for rep in online {
        r.array(3);
        r.bulk(rep.ip.as_bytes());
        r.bulk(rep.port.to_string().as_bytes());
        r.bulk(rep.ack_offset.to_string().as_bytes());
    }
}

fn replicaof(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    if eq_ic(argv[1], "no") && eq_ic(argv[2], "one") {
        let Some(link) = ctx.shared.repl.link() else {
            conn.reply().ok();
            return Ok(());
        };
        crate::log!("MASTER MODE enabled (user request from '{}')", conn.addr);
        replica::promote(ctx, conn, &link);
        return Ok(());
    }
    let port = shards::util::parse_i64(argv[2])
        .filter(|p| (0..=65535).contains(p))
        .ok_or_else(|| Error::err("Invalid master port"))?;
    let host = String::from_utf8_lossy(argv[1]).into_owned();
    let same = ctx
        .shared
        .repl
        .link()
        .is_some_and(|l| l.host == host && l.port == port as u16);
    if same {
        conn.reply()
            .simple("OK Already connected to specified master");
        return Ok(());
    }
    crate::log!(
        "REPLICAOF {host}:{port} enabled (user request from '{}')",
        conn.addr
    );
    replica::start(&ctx.shared, host, port as u16);
    conn.reply().ok();
    Ok(())
}

/// The error for a write from a client of a read-only replica, if this is one.
pub fn read_only_refuses(ctx: &ShardCtx, conn: &Conn, flags: u32) -> bool {
    flags & shards::cmd::flag::WRITE != 0
        && shards::keyspace::REPLICA.load(Ordering::Relaxed)
        && conn.fd >= 0
        && !conn.master_link
        && ctx.shared.config.get("replica-read-only") == "yes"
}

pub const READONLY: &str = shards::script::READONLY_REPLICA;

/// `min-replicas-to-write`: whether a client's write must be refused for want of replicas
/// that acknowledged within `min-replicas-max-lag` seconds (`settings`: the two values, cached
/// by the shard).
pub fn too_few_replicas(ctx: &ShardCtx, conn: &Conn, flags: u32, settings: (i64, i64)) -> bool {
    let (min, max_lag) = settings;
    if min <= 0 || flags & shards::cmd::flag::WRITE == 0 || conn.fd < 0 || conn.master_link {
        return false;
    }
    let now_ms = now_us() / 1000;
    let good = ctx
        .shared
        .repl
        .snapshot()
        .replicas
        .iter()
        .filter(|r| r.state == "online" && now_ms.saturating_sub(r.ack_ms) <= max_lag as u64 * 1000)
        .count() as i64;
    good < min
}

/// `replica-serve-stale-data no`: whether a command must be refused while the link to the
/// master is down.
pub fn stale_refused(ctx: &ShardCtx, flags: u32) -> bool {
    if flags & shards::cmd::flag::STALE != 0 || !shards::keyspace::REPLICA.load(Ordering::Relaxed) {
        return false;
    }
    let down = ctx
        .shared
        .repl
        .link()
        .is_some_and(|l| l.state() != "connected");
    down && ctx.shared.config.get("replica-serve-stale-data") == "no"
}

/// INFO replication.
pub fn info(shared: &crate::ctx::Shared, o: &mut String) {
    let repl = &shared.repl;
    let state = repl.snapshot();
    let now_ms = now_us() / 1000;
    let field = |o: &mut String, k: &str, v: &dyn std::fmt::Display| {
        o.push_str(&format!("{k}:{v}\r\n"));
    };
    let link = repl.link();
    let mut offset = state.offset;
    match &link {
        None => field(o, "role", &"master"),
        Some(l) => {
            field(o, "role", &"slave");
            field(o, "master_host", &l.host);
            field(o, "master_port", &l.port);
            let up = l.state() == "connected";
            field(o, "master_link_status", &if up { "up" } else { "down" });
            let io = now_ms.saturating_sub(l.last_io_ms.load(Ordering::Acquire)) / 1000;
            field(
                o,
                "master_last_io_seconds_ago",
                &if up { io as i64 } else { -1 },
            );
            let syncing = l.state() == "sync";
            field(o, "master_sync_in_progress", &(syncing as u8));
            if syncing {
                // As Redis computes them: the total is -1 while an EOF-marked payload comes
                // (and the rest and share come out negative then).
                let total = l.sync_total.load(Ordering::Acquire);
                let read = l.sync_read.load(Ordering::Acquire) as i64;
                field(o, "master_sync_total_bytes", &total);
                field(o, "master_sync_read_bytes", &read);
                field(o, "master_sync_left_bytes", &(total - read));
                let perc = if total != 0 {
                    read as f64 * 100.0 / total as f64
                } else {
                    0.0
                };
                field(o, "master_sync_perc", &format!("{perc:.2}"));
                let io = now_ms.saturating_sub(l.last_io_ms.load(Ordering::Acquire)) / 1000;
                field(o, "master_sync_last_io_seconds_ago", &io);
            }
            field(
                o,
                "slave_read_repl_offset",
                &l.read_offset.load(Ordering::Acquire),
            );
            offset = l.offset.load(Ordering::Acquire);
            field(o, "slave_repl_offset", &offset);
            if !up {
                let since = now_ms.saturating_sub(l.down_since_ms.load(Ordering::Acquire));
                field(o, "master_link_down_since_seconds", &(since / 1000));
            }
            field(
                o,
                "slave_priority",
                &shared.config.get_i64("replica-priority"),
            );
            let ro = shared.config.get("replica-read-only") == "yes";
            field(o, "slave_read_only", &(ro as u8));
            let announced = shared.config.get("replica-announced") == "yes";
            field(o, "replica_announced", &(announced as u8));
        }
    }
    field(o, "connected_slaves", &state.replicas.len());
    for (i, r) in state.replicas.iter().enumerate() {
        let lag = now_ms.saturating_sub(r.ack_ms) / 1000;
        o.push_str(&format!(
            "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
            r.ip, r.port, r.state, r.ack_offset, lag
        ));
    }
    field(o, "master_failover_state", &"no-failover");
    field(o, "master_replid", &state.replid);
    field(o, "master_replid2", &state.replid2);
    field(o, "master_repl_offset", &offset);
    field(o, "second_repl_offset", &state.second_offset);
    let active = state.active;
    field(o, "repl_backlog_active", &(active as u8));
    field(
        o,
        "repl_backlog_size",
        &shared.config.get_i64("repl-backlog-size"),
    );
    field(
        o,
        "repl_backlog_first_byte_offset",
        &if active { state.backlog_first } else { 0 },
    );
    field(o, "repl_backlog_histlen", &state.backlog_len);
}
