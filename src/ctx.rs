//! A shard's runtime context and its tasks: the event loop that owns the listener and the client
//! sockets, the tasks that serve requests from other shards and take in their responses, the
//! senders that drain the outbox into the request mesh, and the active expiry timer.

use crate::block::{BlockTable, Unblock, Waiter, Watcher};
use crate::config::Config;
use crate::conn::{Conn, Slab, Wait};
use crate::msg::{RepBody, RepPart, ReqBody, ReqPart, Request, Response, Token};
use crate::net::{self, Epoll, EV_READ, EV_WRITE};
use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::{GlommioError, ResourceType};
use shards::keyspace::{Entry, Key};
use shards::resp::ParseLimits;
use shards::Shard;
use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The Redis version shardis reports (clients and test suites gate features on it).
pub const REDIS_VERSION: &str = "7.0.15";

/// What a client from outside the loopback interface is told in protected mode (Redis's text).
const PROTECTED_DENIED: &str = "-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";

/// Whether a peer (`ip:port`) is the loopback address Redis trusts in protected mode: exactly
/// 127.0.0.1 or ::1.
fn is_loopback(addr: &str) -> bool {
    addr.starts_with("127.0.0.1:") || addr.starts_with("[::1]:")
}

/// Bytes read from a socket per readiness event (Redis's PROTO_IOBUF_LEN).
const READ_CHUNK: usize = 16 * 1024;
/// Unprocessed input above which a waiting connection stops being read.
const PAUSE_READ_BYTES: usize = 1024 * 1024;
/// Events taken per epoll_wait.
const EVENTS_MAX: usize = 256;
/// The listeners' epoll tokens (connection tokens are slab indexes, far below).
const LISTENER: u64 = u64::MAX;
const TLS_LISTENER: u64 = u64::MAX - 1;
/// A replica's link thread has handed shard 0 more of the stream (`ReplShared::doorbell`).
const REPL_DOORBELL: u64 = u64::MAX - 2;

/// State every shard shares: read-mostly, atomics only.
pub struct Shared {
    pub nshards: usize,
    pub port: u16,
    pub config: Arc<Config>,
    pub next_client_id: AtomicU64,
    pub started: SystemTime,
    pub run_id: String,
    peak_memory: AtomicU64,
    /// Bytes allocated once the server was set up, without the data it loaded (INFO's
    /// used_memory_startup): the main thread's before loading, plus what each shard's thread
    /// holds when it is ready (the loaded data was allocated by the main thread).
    pub startup_memory: AtomicU64,
    /// Client connections open on all shards (maxclients is process-wide).
    pub clients: std::sync::atomic::AtomicUsize,
    /// Persistence status (LASTSAVE, INFO persistence, save points).
    pub persist: crate::save::Status,
    /// Script bodies and each shard's running-script state (see `shards::script`).
    pub scripts: Arc<shards::script::Store>,
    /// ACL users and the ACL LOG (see `crate::acl_cmds`).
    pub acl: Arc<shards::acl::Store>,
    /// Every client by id: where its connection is (tracking redirects and invalidations) and
    /// its address and name (SLOWLOG entries made on whichever shard ran the command). Written
    /// on connect, rename and close only.
    pub idents: std::sync::Mutex<std::collections::HashMap<u64, Ident>>,
    /// Connections with CLIENT TRACKING on (INFO's `tracking_clients`).
    pub tracking_clients: std::sync::atomic::AtomicUsize,
    /// Replication (see `crate::repl`).
    pub repl: crate::repl::ReplShared,
    /// MONITOR clients per shard, and in all (see `crate::monitor`).
    pub monitors: Vec<std::sync::atomic::AtomicUsize>,
    pub monitoring: std::sync::atomic::AtomicUsize,
    /// CLIENT PAUSE: until when (Unix ms; 0 none), and whether every command waits (see
    /// `crate::pause`).
    pub pause_end_ms: AtomicU64,
    pub pause_all: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new(
        nshards: usize,
        port: u16,
        config: Arc<Config>,
        scripts: Arc<shards::script::Store>,
    ) -> Shared {
        let started = SystemTime::now();
        let seed = started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0) as u64
            ^ std::process::id() as u64;
        let mut rng = shards::rng::Rng::new(seed);
        let run_id: String = (0..40)
            .map(|_| char::from_digit(rng.below(16) as u32, 16).unwrap_or('0'))
            .collect();
        let replid: String = (0..40)
            .map(|_| char::from_digit(rng.below(16) as u32, 16).unwrap_or('0'))
            .collect();
        let repl_config = config.clone();
        Shared {
            nshards,
            port,
            config,
            next_client_id: AtomicU64::new(1),
            started,
            run_id,
            peak_memory: AtomicU64::new(0),
            startup_memory: AtomicU64::new(0),
            clients: std::sync::atomic::AtomicUsize::new(0),
            persist: crate::save::Status::new(nshards),
            scripts,
            acl: Arc::new(shards::acl::Store::new()),
            idents: Default::default(),
            tracking_clients: std::sync::atomic::AtomicUsize::new(0),
            repl: crate::repl::ReplShared::new(replid, repl_config),
            monitors: (0..nshards)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
            monitoring: std::sync::atomic::AtomicUsize::new(0),
            pause_end_ms: AtomicU64::new(0),
            pause_all: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The highest `used` seen so far (INFO's used_memory_peak).
    pub fn peak_memory(&self, used: u64) -> u64 {
        self.peak_memory
            .fetch_max(used, Ordering::Relaxed)
            .max(used)
    }

    /// Stops the process now (after the shards' shutdown work, see `crate::save`).
    pub fn exit(&self, code: i32) -> ! {
        crate::log!("shardis is now ready to exit, bye bye...");
        std::process::exit(code)
    }
}

/// Current time in microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Counters of this shard's network side.
#[derive(Default)]
pub struct NetStats {
    pub connections_received: Cell<u64>,
    pub rejected_connections: Cell<u64>,
    pub net_input_bytes: Cell<u64>,
    pub net_output_bytes: Cell<u64>,
    pub hops_out: Cell<u64>,
}

/// Instantaneous rates (INFO's `instantaneous_*`): like Redis, the mean of the last 16
/// samples taken at least 100 ms apart.
#[derive(Default)]
pub struct Rates {
    last: Option<(std::time::Instant, u64, u64, u64)>,
    samples: std::collections::VecDeque<(f64, f64, f64)>,
}

impl Rates {
    /// Records the counters now: commands, bytes in, bytes out.
    pub fn sample(&mut self, commands: u64, input: u64, output: u64) {
        let now = std::time::Instant::now();
        if let Some((t, c, i, o)) = self.last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt < 0.1 {
                return;
            }
            let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
            self.samples
                .push_back((per(commands, c), per(input, i), per(output, o)));
            if self.samples.len() > 16 {
                self.samples.pop_front();
            }
        }
        self.last = Some((now, commands, input, output));
    }

    /// Commands, input bytes and output bytes per second.
    pub fn rates(&self) -> (f64, f64, f64) {
        let n = self.samples.len().max(1) as f64;
        let (a, b, c) = self
            .samples
            .iter()
            .fold((0.0, 0.0, 0.0), |s, x| (s.0 + x.0, s.1 + x.1, s.2 + x.2));
        (a / n, b / n, c / n)
    }
}

impl NetStats {
    pub fn reset(&self) {
        self.connections_received.set(0);
        self.rejected_connections.set(0);
        self.net_input_bytes.set(0);
        self.net_output_bytes.set(0);
        self.hops_out.set(0);
    }
}

/// One shard's runtime.
pub struct ShardCtx {
    pub id: usize,
    pub n: usize,
    pub shared: Arc<Shared>,
    pub engine: RefCell<Shard>,
    pub conns: RefCell<Slab>,
    pub epoll: Epoll,
    listeners: net::Listeners,
    /// The TLS server config new connections to the TLS port get (see `crate::tls`).
    tls_config: RefCell<Option<Arc<rustls::ServerConfig>>>,
    /// Request parts per destination shard, gathered during one loop iteration.
    outbox: RefCell<Vec<Vec<ReqPart>>>,
    out_tx: Vec<Option<LocalSender<Request>>>,
    /// Answers to other shards produced outside a request batch (served blocked clients).
    resp_outbox: RefCell<Vec<Vec<RepPart>>>,
    resp_tx: Vec<Option<LocalSender<Response>>>,
    /// Clients blocked on this shard's keys.
    pub blocked: RefCell<BlockTable>,
    /// Keys locked by cross-shard transactions, and the work waiting for them.
    pub locks: RefCell<crate::txn::Locks>,
    /// The last transaction id this shard handed out.
    pub next_tx: Cell<u64>,
    /// A retry of messages a full mesh link refused is scheduled.
    flush_armed: Cell<bool>,
    /// This context itself, for spawning tasks that outlive a call.
    me: RefCell<std::rc::Weak<ShardCtx>>,
    pub net: NetStats,
    /// Cached configuration values, refreshed when the config generation moves.
    cfg_gen: Cell<u64>,
    pub limits: Cell<ParseLimits>,
    pub query_buf_max: Cell<usize>,
    pub maxclients: Cell<usize>,
    /// The ACL generation this shard's connections were last brought up to date with.
    pub acl_seen: Cell<u64>,
    /// `protected-mode yes`: without a password, only loopback clients are accepted.
    protected: Cell<bool>,
    /// `min-replicas-to-write` and `min-replicas-max-lag`.
    pub min_replicas: Cell<(i64, i64)>,
    /// The append-only file's writer, when `appendonly` is on.
    pub aof: RefCell<Option<crate::aof::Aof>>,
    /// The engine's write counter as of the last successful save of this shard.
    pub dirty_saved: Cell<u64>,
    /// The shard's internal connection (server-initiated work: save points, shutdown).
    pub internal: Cell<Option<Token>>,
    /// A background snapshot of this shard is being written.
    pub snapshot: RefCell<Option<crate::snapshot::Running>>,
    /// Shutdown: this shard has done its part; shard 0 has started the final save.
    pub stop_done: Cell<bool>,
    pub stop_save_started: Cell<bool>,
    /// The AOF record of a MULTI block run live that holds this shard: its id and the shard's
    /// log set aside meanwhile (see `txn::aof_live_open`).
    pub aof_live: RefCell<Option<(crate::txn::TxId, shards::shard::Propagate)>>,
    /// The Pub/Sub subscriptions of this shard's connections.
    pub subs: RefCell<crate::pubsub::Subs>,
    /// `client-output-buffer-limit pubsub`: hard bytes, soft bytes, soft seconds.
    pub pubsub_limits: Cell<(u64, u64, u64)>,
    /// The normal class of `client-output-buffer-limit` (0 0 0: none, Redis's default).
    pub normal_limits: Cell<(u64, u64, u64)>,
    /// Connections that got Pub/Sub messages this loop iteration, to write out at its end.
    pub flush_later: RefCell<Vec<Token>>,
    /// This shard's MONITOR clients.
    pub monitors: RefCell<Vec<Token>>,
    /// Connections held by CLIENT PAUSE.
    pub paused: RefCell<Vec<Token>>,
    /// INFO's instantaneous rates.
    pub rates: RefCell<Rates>,
}

impl ShardCtx {
    /// Builds the shard, joins the meshes, spawns its tasks and runs its event loop.
    pub async fn run(
        id: usize,
        n: usize,
        listeners: net::Listeners,
        shared: Arc<Shared>,
        req_mesh: MeshBuilder<Request, Full>,
        rep_mesh: MeshBuilder<Response, Full>,
        start: crate::load::Start,
    ) -> anyhow::Result<()> {
        let (req_tx, mut req_rx) = req_mesh
            .join()
            .await
            .map_err(|_| anyhow::anyhow!("joining request mesh"))?;
        let (rep_tx, mut rep_rx) = rep_mesh
            .join()
            .await
            .map_err(|_| anyhow::anyhow!("joining response mesh"))?;
        let epoll = Epoll::new()?;
        if let Some(fd) = listeners.plain {
            epoll.add(fd, EV_READ, LISTENER)?;
        }
        if let Some(fd) = listeners.tls {
            epoll.add(fd, EV_READ, TLS_LISTENER)?;
        }
        if id == 0 && shared.repl.doorbell >= 0 {
            epoll.add(shared.repl.doorbell, EV_READ, REPL_DOORBELL)?;
        }
        let seed = net_seed(id);
        let mut out_tx = Vec::with_capacity(n);
        let mut out_rx = Vec::new();
        let mut resp_tx = Vec::with_capacity(n);
        let mut resp_rx = Vec::new();
        for peer in 0..n {
            if peer == id {
                out_tx.push(None);
                resp_tx.push(None);
                continue;
            }
            let (tx, rx) = local_channel::new_unbounded();
            out_tx.push(Some(tx));
            out_rx.push((peer, rx));
            let (tx, rx) = local_channel::new_unbounded();
            resp_tx.push(Some(tx));
            resp_rx.push((peer, rx));
        }
        let ctx = Rc::new(ShardCtx {
            id,
            n,
            shared: shared.clone(),
            engine: RefCell::new({
                let mut e = Shard::new(id, n, seed);
                e.ticks = crate::clock::ticks;
                e.scripts = shared.scripts.clone();
                e.clock_ms = || now_us() / 1000;
                e.busy_poll = Some(busy_poll_current);
                e.memory_probe = crate::maxmemory::probe();
                e.client_ident = client_ident_current;
                e.ticks_to_us = crate::clock::to_us;
                e.thread_allocated = crate::memory::thread_allocated;
                e
            }),
            conns: RefCell::new(Slab::default()),
            epoll,
            listeners,
            tls_config: RefCell::new(None),
            outbox: RefCell::new((0..n).map(|_| Vec::new()).collect()),
            out_tx,
            resp_outbox: RefCell::new((0..n).map(|_| Vec::new()).collect()),
            resp_tx,
            blocked: RefCell::new(BlockTable::default()),
            locks: RefCell::new(crate::txn::Locks::default()),
            next_tx: Cell::new(0),
            flush_armed: Cell::new(false),
            me: RefCell::new(std::rc::Weak::new()),
            net: NetStats::default(),
            cfg_gen: Cell::new(u64::MAX),
            limits: Cell::new(ParseLimits::default()),
            query_buf_max: Cell::new(1 << 30),
            maxclients: Cell::new(10000),
            acl_seen: Cell::new(0),
            protected: Cell::new(true),
            min_replicas: Cell::new((0, 10)),
            aof: RefCell::new(None),
            dirty_saved: Cell::new(0),
            internal: Cell::new(None),
            snapshot: RefCell::new(None),
            stop_done: Cell::new(false),
            stop_save_started: Cell::new(false),
            aof_live: RefCell::new(None),
            subs: RefCell::new(Default::default()),
            pubsub_limits: Cell::new((32 << 20, 8 << 20, 60)),
            normal_limits: Cell::new((0, 0, 0)),
            flush_later: RefCell::new(Vec::new()),
            monitors: RefCell::new(Vec::new()),
            paused: RefCell::new(Vec::new()),
            rates: RefCell::new(Rates::default()),
        });
        *ctx.me.borrow_mut() = Rc::downgrade(&ctx);
        set_current(&ctx);
        ctx.engine.borrow_mut().dbs = start.dbs;
        ctx.engine.borrow_mut().search.decode(&start.search);
        if let Some(a) = start.aof {
            let fsync = crate::aof::Fsync::parse(&shared.config.get("appendfsync"));
            let mut aof = crate::aof::Aof::new(fsync, a.dir, a.manifest);
            aof.base_size = a.base_size;
            *ctx.aof.borrow_mut() = Some(aof);
            ctx.engine.borrow_mut().prop = Some(Default::default());
            ctx.aof_open(a.incr.clone())
                .await
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", a.incr.display()))?;
        }
        // After the AOF is set up: seeing `appendonly yes` without one would start a rewrite.
        ctx.refresh_config();
        shared
            .startup_memory
            .fetch_add(crate::memory::thread_live_bytes(), Ordering::Relaxed);
        {
            // The shard's internal connection, for work the server starts by itself.
            let mut conns = ctx.conns.borrow_mut();
            let token = conns.vacant();
            let mut c = Conn::new(
                -1,
                token,
                0,
                "internal".into(),
                String::new(),
                now_us() / 1000,
            );
            c.authenticated = true;
            c.local_client = true;
            conns.put_internal(Box::new(c));
            ctx.internal.set(Some(token));
        }

        let req_tx = Rc::new(req_tx);
        for (peer, rx) in out_rx {
            let req_tx = req_tx.clone();
            glommio::spawn_local(async move {
                while let Some(req) = rx.recv().await {
                    if req_tx.send_to(peer, req).await.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
        // Responses (to requests, and later answers to blocked clients) leave through one
        // queue per peer, so they arrive in the order they were produced.
        let rep_tx = Rc::new(rep_tx);
        for (peer, rx) in resp_rx {
            let rep_tx = rep_tx.clone();
            glommio::spawn_local(async move {
                while let Some(resp) = rx.recv().await {
                    if rep_tx.send_to(peer, resp).await.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
        for (_, rx) in req_rx.streams() {
            let ctx = ctx.clone();
            glommio::spawn_local(async move {
                while let Some(req) = rx.recv().await {
                    ctx.serve(req);
                    glommio::yield_if_needed().await;
                }
            })
            .detach();
        }
        let block_ctx = ctx.clone();
        glommio::spawn_local(async move { block_ctx.block_timer().await }).detach();
        for (_, rx) in rep_rx.streams() {
            let ctx = ctx.clone();
            glommio::spawn_local(async move {
                while let Some(resp) = rx.recv().await {
                    ctx.take_response(resp);
                    glommio::yield_if_needed().await;
                }
            })
            .detach();
        }
        let timer_ctx = ctx.clone();
        glommio::spawn_local(async move { timer_ctx.cron().await }).detach();
        if ctx.id == 0 {
            // Shard 0 runs a replica's stream (see `crate::repl::replica`).
            let repl_ctx = ctx.clone();
            glommio::spawn_local(async move { crate::repl::replica::serve(repl_ctx).await })
                .detach();
        }
        ctx.event_loop().await;
        Ok(())
    }

    /// Re-reads hot configuration values if CONFIG SET changed anything.
    pub fn refresh_config(&self) {
        let cfg = &self.shared.config;
        let g = cfg.generation();
        if g == self.cfg_gen.get() {
            return;
        }
        self.cfg_gen.set(g);
        self.limits.set(ParseLimits {
            bulk_len_max: cfg.get_i64("proto-max-bulk-len").max(1) as usize,
        });
        self.query_buf_max
            .set(cfg.get_i64("client-query-buffer-limit").max(1024) as usize);
        self.maxclients
            .set(cfg.get_i64("maxclients").max(1) as usize);
        {
            let mut e = self.engine.borrow_mut();
            // The thresholds as loading reads them; DEBUG SET-ACTIVE-EXPIRE's switch stays.
            e.config = shards::shard::ShardConfig {
                active_expire: e.config.active_expire,
                ..crate::load::shard_config(cfg)
            };
            shards::evict::configure(&mut e, now_us() / 1000);
        }
        self.aof_config();
        self.engine.borrow_mut().notify_flags =
            shards::shard::parse_flags(&cfg.get("notify-keyspace-events")).unwrap_or(0);
        let limits = cfg.get("client-output-buffer-limit");
        self.pubsub_limits
            .set(crate::pubsub::output_limits(&limits, "pubsub"));
        self.normal_limits
            .set(crate::pubsub::output_limits(&limits, "normal"));
        self.protected.set(cfg.get("protected-mode") == "yes");
        shards::keyspace::REPLICA_READ_ONLY.store(
            cfg.get("replica-read-only") == "yes",
            std::sync::atomic::Ordering::Relaxed,
        );
        self.min_replicas.set((
            cfg.get_i64("min-replicas-to-write"),
            cfg.get_i64("min-replicas-max-lag"),
        ));
        crate::logging::set_level(&cfg.get("loglevel"));
        {
            let mut e = self.engine.borrow_mut();
            let slower = cfg.get_i64("slowlog-log-slower-than");
            e.slowlog.threshold_ticks = if slower < 0 {
                u64::MAX
            } else {
                crate::clock::from_us(slower as u64)
            };
            e.slowlog
                .set_max_len(cfg.get_i64("slowlog-max-len").max(0) as usize);
            e.latency.tracking = cfg.get("latency-tracking") == "yes";
            let max_keys = cfg.get_i64("tracking-table-max-keys").max(0) as usize;
            e.tracking.max_keys = max_keys.div_ceil(self.n);
            e.latency.monitor_ticks = match cfg.get_i64("latency-monitor-threshold") {
                0 => u64::MAX,
                ms => crate::clock::from_us(ms as u64 * 1000),
            };
        }
        *self.tls_config.borrow_mut() = cfg.tls.get();
    }

    /// Background work at `hz`: active expiry, save points, the AOF's once-a-second sync,
    /// shutdown work.
    async fn cron(&self) {
        let mut last_sync = std::time::Instant::now();
        loop {
            let hz = self.shared.config.get_i64("hz").clamp(1, 500) as u64;
            let stopping = self.shared.persist.stopping.load(Ordering::Acquire);
            let period = if stopping { 5 } else { 1000 / hz };
            glommio::timer::sleep(Duration::from_millis(period)).await;
            self.refresh_config();
            if stopping {
                self.stop_cron().await;
                continue;
            }
            self.persist_cron();
            crate::acl_cmds::sweep(self);
            crate::pause::resume(self);
            self.rates.borrow_mut().sample(
                self.engine.borrow().stats.commands,
                self.net.net_input_bytes.get(),
                self.net.net_output_bytes.get(),
            );
            if last_sync.elapsed() >= Duration::from_secs(1) {
                last_sync = std::time::Instant::now();
                self.close_idle();
                self.aof_sync_tick().await;
            }
            // Like Redis, spend at most a quarter of each cron period expiring keys; yield
            // between steps so clients are served meanwhile.
            let budget = Duration::from_micros(250_000 / hz);
            let started = std::time::Instant::now();
            loop {
                let (_, more) = self.engine.borrow_mut().active_expire(now_us() / 1000);
                if !more || started.elapsed() >= budget {
                    break;
                }
                glommio::yield_if_needed().await;
            }
            // Background indexing of search indexes: a slice per tick, yielding between.
            while self.engine.borrow().search_busy() && started.elapsed() < budget * 2 {
                self.engine.borrow_mut().search_step(now_us() / 1000);
                glommio::yield_if_needed().await;
            }
            // An eviction run that ran out of time goes on here, as Redis's eviction timer does.
            if self.engine.borrow().config.memory.maxmemory != 0 {
                shards::evict::perform(&mut self.engine.borrow_mut(), now_us() / 1000);
            }
            // What the expiry and eviction logged (AOF DELs, `expired` and `evicted` events)
            // goes out now, not with the next client's request.
            self.end_of_batch();
        }
    }

    /// `timeout`: closes clients idle for longer, as Redis does (not subscribers, and not
    /// clients blocked in a command).
    fn close_idle(&self) {
        let timeout_s = self.shared.config.get_i64("timeout");
        if timeout_s <= 0 {
            return;
        }
        let now_ms = now_us() / 1000;
        let idle: Vec<Token> = self
            .conns
            .borrow()
            .iter()
            .filter(|c| {
                c.subs.is_none()
                    && matches!(c.wait, Wait::None)
                    && now_ms.saturating_sub(c.last_ms) > timeout_s as u64 * 1000
            })
            .map(|c| c.token)
            .collect();
        for t in idle {
            let conn = self.conns.borrow_mut().take(t);
            if let Some(conn) = conn {
                crate::logging::write(crate::logging::Level::Verbose, "Closing idle client");
                self.close(conn);
            }
        }
    }

    /// The event loop: accept, read, execute or forward, write; park on epoll when idle.
    async fn event_loop(&self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_MAX];
        loop {
            let n = self.epoll.poll(&mut events);
            if n == 0 {
                self.flush_outbox();
                self.epoll.park().await;
                continue;
            }
            self.refresh_config();
            for ev in &events[..n] {
                let (flags, data) = (ev.events, ev.u64);
                if data == LISTENER || data == TLS_LISTENER {
                    self.accept_all(data == TLS_LISTENER);
                } else if data == REPL_DOORBELL {
                    let mut count = [0u8; 8];
                    let _ = crate::net::read(self.shared.repl.doorbell, &mut count);
                    crate::repl::replica::nudge();
                    // The cluster bus rings the same bell for messages published elsewhere.
                    crate::cluster::bus::deliver_published(self);
                } else {
                    self.on_event(data, flags);
                }
            }
            self.end_of_batch();
            // Let the mesh tasks run between batches: answers from other shards must not wait
            // for a preemption tick while this loop stays busy.
            futures_lite::future::yield_now().await;
        }
    }

    /// After a batch of work: serve blocked clients whose keys were written, then send what
    /// was gathered for other shards.
    pub fn end_of_batch(&self) {
        crate::txn::pump(self);
        self.serve_ready();
        crate::repl::feed(self);
        self.aof_collect();
        crate::tracking::drain(self, None, true);
        crate::monitor::feed_script_calls(self, None);
        crate::pubsub::notify_events(self);
        crate::pubsub::flush_delivered(self);
        self.flush_outbox();
        self.flush_responses();
    }

    /// Checks waiters' deadlines (often while anyone is blocked, rarely otherwise).
    async fn block_timer(&self) {
        loop {
            let idle = self.blocked.borrow().is_empty();
            glommio::timer::sleep(Duration::from_millis(if idle { 100 } else { 5 })).await;
            if idle {
                continue;
            }
            let now_ms = now_us() / 1000;
            let expired = self.blocked.borrow().expired(now_ms);
            for id in expired {
                self.unblock(id, Unblock::Timeout);
            }
            crate::cluster::route::redirect_blocked(self);
            self.end_of_batch();
        }
    }

    /// Times out a waiting multi-shard blocking command at its deadline (if it still waits
    /// then: a run in flight at the deadline times itself out when it finds nothing).
    pub fn schedule_deadline(&self, token: Token, deadline_ms: u64) {
        let Some(me) = self.me.borrow().upgrade() else {
            return;
        };
        glommio::spawn_local(async move {
            let wait_ms = deadline_ms.saturating_sub(now_us() / 1000);
            glommio::timer::sleep(Duration::from_millis(wait_ms)).await;
            let Some(mut conn) = me.conns.borrow_mut().take(token) else {
                return;
            };
            if matches!(conn.wait, Wait::Retry) && conn.retry_deadline == Some(deadline_ms) {
                conn.wait = Wait::None;
                me.end_watch(&mut conn);
                conn.wbuf
                    .extend_from_slice(&crate::block::timeout_reply(conn.proto));
                crate::dispatch::process(&me, &mut conn);
            }
            me.finish(conn);
            me.end_of_batch();
        })
        .detach();
    }

    /// Ends the wait of a multi-shard blocking command: the owners of its keys stop watching.
    pub fn end_watch(&self, conn: &mut Conn) {
        conn.retry_deadline = None;
        conn.woken = false;
        let Some((l, argv)) = conn.retry_cmd.take() else {
            return;
        };
        let args: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
        let mut owners: Vec<usize> = crate::dispatch::waited_keys(l, &args)
            .iter()
            .map(|k| crate::dispatch::shard_of(self, k))
            .collect();
        owners.sort_unstable();
        owners.dedup();
        for shard in owners {
            if shard == self.id {
                {
                    let mut engine = self.engine.borrow_mut();
                    self.blocked
                        .borrow_mut()
                        .unwatch(self.id, conn.token, &mut engine.waited);
                }
                self.resume_awaiting(self.id, conn.token);
            } else {
                // Sequence number 0: the acknowledgement is not for any operation.
                self.send_unanswered(shard, conn.token, ReqBody::Unwatch);
            }
        }
    }

    /// The keys whose waiters stopped for this connection's turn go on.
    pub fn resume_awaiting(&self, origin: usize, conn: Token) {
        self.blocked.borrow_mut().resume_awaiting(origin, conn);
    }

    /// Tells a watching connection that one of its keys was written.
    fn wake(&self, w: Watcher) {
        self.reply_to(w.origin, w.conn, w.seq, RepBody::Wake);
    }

    /// Parks a blocked command here.
    pub fn block(&self, w: Waiter) {
        let mut engine = self.engine.borrow_mut();
        self.blocked.borrow_mut().add(w, &mut engine.waited);
    }

    /// Ends a waiter without serving it, answering as `how` says.
    pub fn unblock(&self, id: u64, how: Unblock) {
        let w = {
            let mut engine = self.engine.borrow_mut();
            self.blocked.borrow_mut().remove(id, &mut engine.waited)
        };
        let Some(w) = w else { return };
        let reply = match how {
            Unblock::Drop => return,
            Unblock::Timeout => crate::block::timeout_reply(w.proto),
            Unblock::Error => crate::block::unblocked_error(),
        };
        self.answer(w.origin, w.conn, w.seq, reply);
    }

    /// Ends a waiter without serving it, answering this (error) reply.
    pub fn unblock_with(&self, id: u64, reply: Vec<u8>) {
        let w = {
            let mut engine = self.engine.borrow_mut();
            self.blocked.borrow_mut().remove(id, &mut engine.waited)
        };
        if let Some(w) = w {
            self.answer(w.origin, w.conn, w.seq, reply);
        }
    }

    /// Re-runs the waiters of every key written since the last look, in arrival order.
    fn serve_ready(&self) {
        loop {
            let ready = std::mem::take(&mut self.engine.borrow_mut().ready);
            let resumed = self.blocked.borrow_mut().take_resumed();
            if ready.is_empty() && resumed.is_empty() {
                return;
            }
            // Written keys (everyone waiting now gets a turn), then keys going on after a
            // watcher's turn for an earlier write (unless written again since): only those
            // that had no turn for that write yet.
            let now_bound = self.blocked.borrow().bound_now();
            let mut keys: Vec<((usize, Key), u64)> =
                ready.iter().map(|k| (k.clone(), now_bound)).collect();
            for (k, bound) in resumed {
                if !keys.iter().any(|(x, _)| *x == k) {
                    keys.push((k, bound));
                }
            }
            for ((db, key), bound) in keys {
                if self.locks.borrow().blocks(db, &key) {
                    // Written under a transaction's lock: look again when it is released.
                    self.locks.borrow_mut().stall((db, key));
                    continue;
                }
                let queue = self.blocked.borrow().queue(db, &key);
                let found = self
                    .engine
                    .borrow()
                    .dbs
                    .get(db)
                    .and_then(|d| d.peek(&key, now_us() / 1000))
                    .map(|e| e.value.type_name());
                for id in queue {
                    if id >= bound {
                        continue;
                    }
                    // A deleted key serves no pop; stream readers still look (a blocked
                    // XREADGROUP answers that its stream is gone).
                    if found.is_none() && !self.blocked.borrow().sees_deletion(id) {
                        continue;
                    }
                    // A watcher (a blocking command over keys on several shards) has its turn
                    // in the same order: it is woken to run again, and the queue waits for it.
                    let woken = {
                        let mut engine = self.engine.borrow_mut();
                        let k = (db, key.clone());
                        self.blocked
                            .borrow_mut()
                            .wake_watcher(id, &k, bound, &mut engine.waited)
                    };
                    if let Some(w) = woken {
                        self.wake(w);
                        break;
                    }
                    // A waiter for another type of value stays parked (BZPOPMIN on a key that
                    // became a list); the others go on in arrival order.
                    if !self.blocked.borrow().wants(id, found) {
                        continue;
                    }
                    if !self.try_serve(id) {
                        break;
                    }
                }
            }
        }
    }

    /// Re-runs one waiter's command; false if it still has nothing to serve.
    fn try_serve(&self, id: u64) -> bool {
        let (frame, db, proto) = match self.blocked.borrow().get(id) {
            Some(w) => (w.frame.clone(), w.db, w.proto),
            None => return true,
        };
        let mut out = Vec::new();
        if crate::dispatch::run_blocking_frame(self, &frame, db, proto, &mut out) {
            return false;
        }
        let w = {
            let mut engine = self.engine.borrow_mut();
            self.blocked.borrow_mut().remove(id, &mut engine.waited)
        };
        if let Some(w) = w {
            self.answer(w.origin, w.conn, w.seq, out);
        }
        true
    }

    /// Sends the final reply of a blocked command to its connection, wherever it lives.
    fn answer(&self, origin: usize, conn: Token, seq: u32, reply: Vec<u8>) {
        self.reply_to(origin, conn, seq, RepBody::Bytes(reply));
    }

    /// Sends a late answer (of a blocked, deferred or queued request) to its connection,
    /// wherever it lives. A wake goes through whatever the connection does meanwhile.
    pub fn reply_to(&self, origin: usize, conn: Token, seq: u32, body: RepBody) {
        if origin == self.id {
            let Some(mut c) = self.conns.borrow_mut().take(conn) else {
                return;
            };
            if c.seq == seq || matches!(body, RepBody::Wake) {
                self.deliver(&mut c, self.id, body);
                crate::dispatch::process(self, &mut c);
            }
            self.finish(c);
        } else {
            self.resp_outbox.borrow_mut()[origin].push(RepPart { conn, seq, body });
        }
    }

    /// Registers a watcher for a connection on `keys` here (see [`crate::block`]).
    pub fn watch(&self, from: usize, conn: Token, seq: u32, keys: &[(u8, Key)]) {
        let w = Watcher {
            origin: from,
            conn,
            seq,
        };
        let keys = keys.iter().map(|(d, k)| (*d as usize, k.clone())).collect();
        let mut engine = self.engine.borrow_mut();
        self.blocked.borrow_mut().watch(w, keys, &mut engine.waited);
    }

    /// Copies out the live entries of `keys` (absent ones as None).
    pub fn export(&self, keys: &[(u8, Key)]) -> RepBody {
        let now_ms = now_us() / 1000;
        let mut engine = self.engine.borrow_mut();
        let entries = keys
            .iter()
            .map(|(db, k)| {
                let e = engine
                    .export(*db as usize, &[k], now_ms)
                    .pop()
                    .and_then(|(_, e)| e);
                (*db, k.clone(), e)
            })
            .collect();
        RepBody::Entries(entries)
    }

    /// Stores (Some) or deletes (None) entries. The AOF logs each as `RESTORE … ABSTTL` or
    /// `DEL`.
    pub fn import(&self, entries: &[(u8, Key, Option<Entry>)]) {
        let mut engine = self.engine.borrow_mut();
        for (db, k, e) in entries {
            engine.import(*db as usize, vec![(k.clone(), e.clone())]);
            if engine.prop.is_none() {
                continue;
            }
            match e {
                Some(e) => {
                    let payload = shards::rdb::dump(&e.value);
                    let ttl = e.expire_at().unwrap_or(0).to_string();
                    engine.propagate(
                        *db as usize,
                        &[
                            b"RESTORE",
                            k.as_slice(),
                            ttl.as_bytes(),
                            &payload,
                            b"REPLACE",
                            b"ABSTTL",
                        ],
                    );
                }
                None => engine.propagate(*db as usize, &[b"DEL", k.as_slice()]),
            }
        }
    }

    /// Sends answers gathered for other shards (or holds them until the AOF is synced, see
    /// `crate::aof`).
    fn flush_responses(&self) {
        self.aof_send_ready();
        let gate = self.aof_gate();
        let batches: Vec<(usize, Vec<RepPart>)> = {
            let mut outbox = self.resp_outbox.borrow_mut();
            outbox
                .iter_mut()
                .enumerate()
                .filter(|(_, parts)| !parts.is_empty())
                .map(|(shard, parts)| (shard, std::mem::take(parts)))
                .collect()
        };
        for (shard, batch) in batches {
            match gate {
                Some(pos) => self.aof_hold_resp(pos, shard, batch),
                None => self.send_responses(shard, batch),
            }
        }
    }

    /// Sends answers to `shard` now (kept ahead of newer ones if the link is full).
    pub fn send_responses(&self, shard: usize, batch: Vec<RepPart>) {
        if let Some(Some(tx)) = self.resp_tx.get(shard) {
            let msg = Response {
                from: self.id,
                parts: batch,
            };
            if let Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) = tx.try_send(msg) {
                // The link is full: keep the batch, ahead of anything newer, and retry.
                let mut outbox = self.resp_outbox.borrow_mut();
                let parts = &mut outbox[shard];
                let mut back = msg.parts;
                back.append(parts);
                *parts = back;
                drop(outbox);
                self.retry_flush();
            }
        }
    }

    /// This context, for tasks that outlive a call.
    pub fn me(&self) -> Option<Rc<ShardCtx>> {
        self.me.borrow().upgrade()
    }

    /// Flushes the outboxes again shortly (a mesh link was full: the peer is busy).
    fn retry_flush(&self) {
        if self.flush_armed.replace(true) {
            return;
        }
        let Some(me) = self.me.borrow().upgrade() else {
            return;
        };
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_micros(200)).await;
            me.flush_armed.set(false);
            me.end_of_batch();
        })
        .detach();
    }

    fn accept_all(&self, tls: bool) {
        let listener = if tls {
            self.listeners.tls
        } else {
            self.listeners.plain
        };
        let Some(listener) = listener else {
            return;
        };
        for _ in 0..64 {
            match net::accept(listener) {
                None => return,
                Some(Err(_)) => return,
                Some(Ok((fd, addr))) if !tls => self.add_conn(fd, addr, None),
                Some(Ok((fd, addr))) => {
                    let config = self.tls_config.borrow().clone();
                    match config.map(crate::tls::Session::new) {
                        Some(Ok(session)) => self.add_conn(fd, addr, Some(Box::new(session))),
                        _ => net::close(fd),
                    }
                }
            }
        }
    }

    /// Takes in an accepted connection (`tls`: its TLS session, on the TLS port).
    fn add_conn(&self, fd: RawFd, addr: String, tls: Option<Box<crate::tls::Session>>) {
        let now_ms = now_us() / 1000;
        self.net
            .connections_received
            .set(self.net.connections_received.get() + 1);
        let mut conns = self.conns.borrow_mut();
        // maxclients counts the clients of every shard.
        let clients = self.shared.clients.fetch_add(1, Ordering::AcqRel);
        if clients >= self.maxclients.get() {
            self.shared.clients.fetch_sub(1, Ordering::AcqRel);
            self.net
                .rejected_connections
                .set(self.net.rejected_connections.get() + 1);
            if tls.is_none() {
                let _ = net::write(fd, b"-ERR max number of clients reached\r\n");
            }
            net::close(fd);
            return;
        }
        if self.protected.get() && self.shared.acl.default_user().nopass && !is_loopback(&addr) {
            // Protected mode, as Redis: told why, then closed.
            self.shared.clients.fetch_sub(1, Ordering::AcqRel);
            self.net
                .rejected_connections
                .set(self.net.rejected_connections.get() + 1);
            if tls.is_none() {
                let _ = net::write(fd, PROTECTED_DENIED.as_bytes());
            }
            net::close(fd);
            return;
        }
        let token = conns.vacant();
        let id = self.shared.next_client_id.fetch_add(1, Ordering::Relaxed);
        let mut conn = Box::new(Conn::new(fd, token, id, addr, net::local_addr(fd), now_ms));
        crate::acl_cmds::attach_default(&self.shared.acl, &mut conn);
        if self.epoll.add(fd, EV_READ, token_data(token)).is_err() {
            net::close(fd);
            conns.release(token);
            self.shared.clients.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        conn.tls = tls;
        self.shared.set_ident(self.id, &conn, true);
        conns.put(conn);
    }

    fn on_event(&self, data: u64, flags: u32) {
        let token = data_token(data);
        let Some(mut conn) = self.conns.borrow_mut().take(token) else {
            return;
        };
        let hangup = flags & (libc::EPOLLERR as u32 | libc::EPOLLHUP as u32) != 0;
        if hangup && conn.read_paused {
            // epoll reports hang-ups even when reading is paused; the peer is gone, and
            // leaving the socket registered would report it again at once, forever.
            return self.close(conn);
        }
        if flags & EV_READ != 0 || hangup {
            match conn.read_input(READ_CHUNK) {
                Ok(0) => return self.close(conn),
                Ok(n) => {
                    self.net
                        .net_input_bytes
                        .set(self.net.net_input_bytes.get() + n as u64);
                    conn.last_ms = now_us() / 1000;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(conn),
            }
            if conn.rbuf.len().saturating_sub(conn.rpos) > self.query_buf_max.get() {
                crate::log!(
                    "closing client {} ({}): query buffer limit reached",
                    conn.id,
                    conn.addr
                );
                return self.close(conn);
            }
        }
        crate::dispatch::process(self, &mut conn);
        self.finish(conn);
    }

    /// After work on a connection: write what it has, adjust epoll interest, put it back (or
    /// close it).
    pub fn finish(&self, mut conn: Box<Conn>) {
        if conn.fd < 0 {
            // The shard's internal connection: its replies go nowhere.
            conn.wbuf.clear();
            conn.wpos = 0;
            let master = conn.master_link;
            self.conns.borrow_mut().put_back(conn);
            if master {
                // A replica's stream moved on: shard 0 hands out more of it.
                crate::repl::replica::nudge();
            }
            return;
        }
        let mut held = false;
        if conn.pending_output() > 0 {
            // `appendfsync always`: no output leaves before the log that covers it is synced.
            if let Some((pos, synced)) = self.aof_gate_synced() {
                if conn.wbuf.len() != conn.held_len {
                    conn.hold_until = pos;
                    conn.held_len = conn.wbuf.len();
                }
                if conn.hold_until > synced {
                    self.aof_hold_conn(conn.token);
                    held = true;
                }
            }
        }
        if conn.pending_output() > 0 && !held {
            loop {
                match conn.write_output() {
                    Ok(n) => {
                        conn.wpos += n;
                        self.net
                            .net_output_bytes
                            .set(self.net.net_output_bytes.get() + n as u64);
                        if conn.wpos == conn.wbuf.len() {
                            conn.output_written();
                            conn.held_len = 0;
                            if conn.wbuf.capacity() > 1 << 20 {
                                conn.wbuf = Vec::new();
                            }
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return self.close(conn),
                }
            }
        }
        // A TLS connection may have ciphertext left (handshake bytes, the end of a reply).
        let tls_left = match conn.tls.as_deref_mut() {
            None => false,
            Some(tls) => match tls.flush(conn.fd) {
                Ok(left) => left,
                Err(_) => return self.close(conn),
            },
        };
        if conn.close_after_reply && conn.pending_output() == 0 && !tls_left && !conn.waiting() {
            return self.close(conn);
        }
        if conn.fd >= 0 && crate::pubsub::over_limit(self, &mut conn, now_us() / 1000) {
            crate::log!(
                "Client id={} addr={} closed for overcoming of output buffer limits.",
                conn.id,
                conn.addr
            );
            return self.close(conn);
        }
        let want_write = match conn.tls.as_deref() {
            None => conn.pending_output() > 0 && !held,
            Some(tls) => tls.want_write(conn.pending_output() > 0 && !held),
        };
        let pause = conn.waiting() && conn.rbuf.len().saturating_sub(conn.rpos) > PAUSE_READ_BYTES;
        if want_write != conn.want_write || pause != conn.read_paused {
            let mut ev = if pause { 0 } else { EV_READ };
            if want_write {
                ev |= EV_WRITE;
            }
            if self
                .epoll
                .modify(conn.fd, ev, token_data(conn.token))
                .is_err()
            {
                return self.close(conn);
            }
            conn.want_write = want_write;
            conn.read_paused = pause;
        }
        self.conns.borrow_mut().put_back(conn);
    }

    pub fn close(&self, conn: Box<Conn>) {
        self.shared.clients.fetch_sub(1, Ordering::AcqRel);
        self.shared.set_ident(self.id, &conn, false);
        let mut conn = conn;
        crate::monitor::stop(self, &mut conn);
        if let Wait::Blocked { shard } = conn.wait {
            self.cancel_block(shard, conn.token);
        }
        let mut conn = conn;
        crate::pubsub::unsubscribe_all(self, &mut conn);
        crate::tracking::stop(self, &mut conn);
        self.end_watch(&mut conn);
        crate::multi::unwatch_all(self, &mut conn);
        // A transaction it was coordinating must not keep its locks (releasing one that is
        // over is harmless).
        conn.live = None;
        if let Some(tx) = conn.tx_open.take() {
            crate::txn::release_on(self, &conn, tx, 0..self.n);
        }
        self.epoll.delete(conn.fd);
        if let Some(tls) = conn.tls.as_deref_mut() {
            tls.close(conn.fd);
        }
        net::close(conn.fd);
        self.conns.borrow_mut().release(conn.token);
    }

    /// Queues a request for `shard` that is for no operation of the connection (releases,
    /// unwatches, cancellations): sequence number 0, and no answer comes back.
    pub fn send_unanswered(&self, shard: usize, conn: Token, body: ReqBody) {
        let part = ReqPart {
            conn,
            seq: 0,
            db: 0,
            proto: shards::resp::Proto::Resp2,
            tx: 0,
            body,
            caller: None,
            client: 0,
        };
        self.send(shard, part);
    }

    /// Queues a request part for `shard`; it leaves at the end of this loop iteration.
    pub fn send(&self, shard: usize, part: ReqPart) {
        self.net.hops_out.set(self.net.hops_out.get() + 1);
        self.outbox.borrow_mut()[shard].push(part);
    }

    /// Sends every destination's gathered parts as one message.
    pub fn flush_outbox(&self) {
        let mut outbox = self.outbox.borrow_mut();
        for (shard, parts) in outbox.iter_mut().enumerate() {
            if parts.is_empty() {
                continue;
            }
            let batch = std::mem::take(parts);
            if let Some(Some(tx)) = self.out_tx.get(shard) {
                let msg = Request {
                    from: self.id,
                    parts: batch,
                };
                if let Err(GlommioError::WouldBlock(ResourceType::Channel(msg))) = tx.try_send(msg)
                {
                    // The link is full: keep the batch, ahead of anything newer, and retry.
                    let mut back = msg.parts;
                    back.append(parts);
                    *parts = back;
                    self.retry_flush();
                }
            }
        }
    }

    /// Drops the waiter of a connection blocked on `shard` (which may be this one).
    pub fn cancel_block(&self, shard: usize, conn: Token) {
        if shard == self.id {
            let id = self.blocked.borrow().of_conn(self.id, conn);
            if let Some(id) = id {
                self.unblock(id, Unblock::Drop);
            }
        } else {
            self.send_unanswered(shard, conn, ReqBody::Unblock(Unblock::Drop));
        }
    }

    /// Serves a request batch from another shard, synchronously, and queues the answers.
    fn serve(&self, req: Request) {
        // A CONFIG SET on another shard must apply to the commands it forwards here next.
        self.refresh_config();
        let from = req.from;
        let parts = req
            .parts
            .into_iter()
            .filter_map(|p| {
                // A deferred part is answered later, on its own; one sent for no operation
                // (sequence number 0) is not answered.
                let body = self.serve_part(from, &p);
                (p.seq != 0 && !matches!(body, RepBody::Deferred)).then_some(RepPart {
                    conn: p.conn,
                    seq: p.seq,
                    body,
                })
            })
            .collect::<Vec<_>>();
        // Answers leave with the others at the end of the batch (in order, and kept if the
        // link back is full).
        self.resp_outbox.borrow_mut()[from].extend(parts);
        self.end_of_batch();
    }

    /// Serves one request part (from another shard or from this one's own connections), in
    /// the transaction it belongs to, if any.
    pub fn serve_part(&self, from: usize, p: &ReqPart) -> RepBody {
        if p.tx == 0 {
            return self.serve_part_now(from, p);
        }
        let outer = self.locks.borrow_mut().current.replace(p.tx);
        let body = self.serve_part_now(from, p);
        self.locks.borrow_mut().current = outer;
        body
    }

    fn serve_part_now(&self, from: usize, p: &ReqPart) -> RepBody {
        let db = p.db as usize;
        match &p.body {
            ReqBody::Run(frames) | ReqBody::Part(frames) => {
                // A split command's part is not counted: the connection's shard counts it once.
                let counted = matches!(p.body, ReqBody::Run(_));
                let mut out = Vec::new();
                let origin = (from, p.conn, p.seq);
                {
                    let mut e = self.engine.borrow_mut();
                    e.counting = counted;
                    e.caller = p.caller.clone();
                    e.client = p.client;
                }
                let end =
                    crate::dispatch::run_frames(self, frames, db, p.proto, &mut out, Some(origin));
                {
                    let mut e = self.engine.borrow_mut();
                    e.counting = true;
                    e.caller = None;
                }
                match end {
                    crate::dispatch::RunEnd::Done => RepBody::Bytes(out),
                    crate::dispatch::RunEnd::Blocked => RepBody::Partial(out),
                    crate::dispatch::RunEnd::Locked(at) => {
                        self.locks.borrow_mut().defer(crate::txn::Deferred {
                            origin,
                            db,
                            proto: p.proto,
                            frames: frames[at..].to_vec(),
                            out,
                            counted,
                            caller: p.caller.clone(),
                            client: p.client,
                        });
                        RepBody::Deferred
                    }
                    crate::dispatch::RunEnd::Reroute(at, keys) => RepBody::Reroute {
                        out,
                        rest: frames[at..].to_vec(),
                        keys,
                    },
                }
            }
            ReqBody::Unblock(how) => {
                let id = self.blocked.borrow().of_conn(from, p.conn);
                if let Some(id) = id {
                    self.unblock(id, *how);
                    RepBody::Count(1)
                } else {
                    RepBody::Count(0)
                }
            }
            ReqBody::Export(keys) => self.export(keys),
            ReqBody::Unwatch => {
                {
                    let mut engine = self.engine.borrow_mut();
                    self.blocked
                        .borrow_mut()
                        .unwatch(from, p.conn, &mut engine.waited);
                }
                self.resume_awaiting(from, p.conn);
                RepBody::Ack
            }
            ReqBody::Tx { .. } => crate::txn::serve(self, from, p),
            ReqBody::WatchKeys(keys) => crate::multi::serve_watch(self, keys),
            ReqBody::ShardSub { channels, add } => {
                crate::pubsub::serve_shard_sub(self, from, p.conn, channels, *add)
            }
            ReqBody::ShardDeliver {
                conns,
                channel,
                message,
            } => {
                crate::pubsub::deliver_to(self, None, conns, b"smessage", channel, message);
                RepBody::Ack
            }
            ReqBody::Tracking(notes) => {
                crate::tracking::serve(self, None, notes);
                RepBody::Ack
            }
            ReqBody::ReplMark(wid) => crate::repl::mark(self, *wid),
            ReqBody::ReplPromote => crate::repl::replica::prepare_promotion(self),
            ReqBody::Follow { who, prefixes, add } => {
                crate::tracking::serve_follow(self, *who, prefixes, *add)
            }
            ReqBody::UnwatchKeys(keys) => {
                let mut engine = self.engine.borrow_mut();
                for (db, k) in keys {
                    engine.unwatch_key(*db as usize, k);
                }
                RepBody::Ack
            }
            other => crate::server_cmds::serve_admin(self, other),
        }
    }

    /// Takes in a response batch: each part goes to its connection, which then goes on with
    /// its pipeline.
    fn take_response(&self, resp: Response) {
        for part in resp.parts {
            let Some(mut conn) = self.conns.borrow_mut().take(part.conn) else {
                continue;
            };
            // A wake is for whatever the connection waits on now (its transaction steps have
            // moved the sequence number on since the watch was registered).
            if part.seq != conn.seq && !matches!(part.body, RepBody::Wake) {
                self.conns.borrow_mut().put_back(conn);
                continue;
            }
            self.deliver(&mut conn, resp.from, part.body);
            crate::dispatch::process(self, &mut conn);
            self.finish(conn);
        }
        self.end_of_batch();
    }

    /// The answer of a WAIT to its connection (if it still waits), which then goes on.
    /// Returns false when the connection is out of the table just now (being served).
    pub fn answer_wait(&self, token: Token, n: i64) -> bool {
        if !self.conns.borrow().contains(token) {
            // Gone, or taken out by whoever serves it now.
            return !self.conns.borrow().is_taken(token);
        }
        let Some(mut conn) = self.conns.borrow_mut().take(token) else {
            return true;
        };
        if matches!(conn.wait, Wait::Multi { .. }) {
            self.deliver(&mut conn, self.id, RepBody::Count(n));
            crate::dispatch::process(self, &mut conn);
        }
        self.finish(conn);
        self.end_of_batch();
        true
    }

    /// Hands one part's answer to a waiting connection.
    pub fn deliver(&self, conn: &mut Conn, from: usize, body: RepBody) {
        if matches!(body, RepBody::Wake) && !matches!(conn.wait, Wait::Retry) {
            conn.woken = conn.retry_cmd.is_some();
            return;
        }
        match std::mem::replace(&mut conn.wait, Wait::None) {
            Wait::None => {}
            // A watched key was written: gather and run the command again.
            Wait::Retry => match (body, conn.retry_cmd.clone()) {
                (RepBody::Wake, Some((l, argv))) => {
                    let args: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
                    crate::dispatch::start_gather(self, conn, l, &args);
                }
                _ => conn.wait = Wait::Retry,
            },
            Wait::Run | Wait::Blocked { .. } => match body {
                RepBody::Bytes(b) => conn.wbuf.extend_from_slice(&b),
                // The run's last command blocked on `from`: its answer comes later.
                RepBody::Partial(b) => {
                    conn.wbuf.extend_from_slice(&b);
                    conn.wait = Wait::Blocked { shard: from };
                }
                // A script that must run as a transaction: it and what followed it are read
                // again, the script gathering the keys the shard found it needs.
                RepBody::Reroute { out, rest, keys } => {
                    conn.wbuf.extend_from_slice(&out);
                    let mut frames = rest;
                    frames.extend_from_slice(&std::mem::take(&mut conn.inject));
                    conn.inject = frames;
                    conn.reroute_keys = Some(keys);
                }
                _ => {}
            },
            Wait::Multi {
                outstanding,
                mut results,
                done,
            } => {
                results.push((from, body));
                if outstanding > 1 {
                    conn.wait = Wait::Multi {
                        outstanding: outstanding - 1,
                        results,
                        done,
                    };
                } else {
                    done(self, conn, results);
                }
            }
        }
        if !conn.push_later.is_empty() && !matches!(conn.wait, Wait::Run | Wait::Multi { .. }) {
            // Invalidations that came while the reply was on its way follow it.
            let held = std::mem::take(&mut conn.push_later);
            conn.wbuf.extend_from_slice(&held);
        }
    }
}

thread_local! {
    /// This thread's shard, for the busy poll a script's hook calls.
    static CURRENT: RefCell<std::rc::Weak<ShardCtx>> = const { RefCell::new(std::rc::Weak::new()) };
}

/// Records the shard this thread runs (see [`busy_poll_current`]).
pub fn set_current(ctx: &Rc<ShardCtx>) {
    CURRENT.with(|c| *c.borrow_mut() = Rc::downgrade(ctx));
}

/// A client's address and name, for a SLOWLOG entry (`Shard::client_ident`).
fn client_ident_current(id: u64) -> (String, String) {
    CURRENT
        .with(|c| c.borrow().upgrade())
        .and_then(|ctx| {
            let idents = ctx.shared.idents.lock().ok()?;
            idents.get(&id).map(|c| (c.addr.clone(), c.name.clone()))
        })
        .unwrap_or_default()
}

/// A client in the process-wide registry.
#[derive(Debug, Clone)]
pub struct Ident {
    pub shard: usize,
    pub token: Token,
    pub addr: String,
    pub name: String,
}

impl Shared {
    /// Records (`open`) or forgets a client of shard `shard`, with its address and name.
    pub fn set_ident(&self, shard: usize, conn: &Conn, open: bool) {
        if let Ok(mut m) = self.idents.lock() {
            if open {
                let name = conn
                    .name
                    .as_deref()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .unwrap_or_default();
                m.insert(
                    conn.id,
                    Ident {
                        shard,
                        token: conn.token,
                        addr: conn.addr.clone(),
                        name,
                    },
                );
            } else {
                m.remove(&conn.id);
            }
        }
    }

    /// Where client `id`'s connection is: its shard and handle there.
    pub fn client_at(&self, id: u64) -> Option<(usize, Token)> {
        let m = self.idents.lock().ok()?;
        m.get(&id).map(|c| (c.shard, c.token))
    }

    /// Whether a client with this id is connected.
    pub fn client_exists(&self, id: u64) -> bool {
        self.client_at(id).is_some()
    }
}

/// Serves this thread's connections while a script keeps the shard busy (`Shard::busy_poll`).
fn busy_poll_current() {
    if let Some(ctx) = CURRENT.with(|c| c.borrow().upgrade()) {
        ctx.busy_poll();
    }
}

impl ShardCtx {
    /// While a script runs past `busy-reply-threshold`: reads what clients sent and answers
    /// each complete command at once, as Redis does while blocked in a script: SCRIPT KILL and
    /// FUNCTION KILL act, SHUTDOWN NOSAVE stops the server, anything else gets `-BUSY`. New
    /// connections, and connections waiting on another shard, wait for the script. Touches
    /// no engine state (the engine is inside the script).
    fn busy_poll(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let n = self.epoll.poll(&mut events);
        for ev in &events[..n] {
            if ev.u64 == LISTENER || ev.u64 == TLS_LISTENER {
                continue;
            }
            let Some(mut conn) = self.conns.borrow_mut().take(data_token(ev.u64)) else {
                continue;
            };
            if conn.fd >= 0 && !conn.waiting() {
                let _ = conn.read_input(READ_CHUNK);
                crate::dispatch::answer_busy(self, &mut conn);
                while conn.pending_output() > 0 {
                    match conn.write_output() {
                        Ok(n) => conn.wpos += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                if let Some(tls) = conn.tls.as_deref_mut() {
                    let _ = tls.flush(conn.fd);
                }
                if conn.pending_output() == 0 {
                    conn.output_written();
                }
            }
            self.conns.borrow_mut().put_back(conn);
        }
    }
}

fn token_data(t: Token) -> u64 {
    ((t.generation as u64) << 32) | t.index as u64
}

fn data_token(d: u64) -> Token {
    Token {
        index: d as u32,
        generation: (d >> 32) as u32,
    }
}

fn net_seed(id: usize) -> u64 {
    now_us() ^ ((id as u64) << 48) ^ std::process::id() as u64
}
