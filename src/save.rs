//! SAVE, BGSAVE, LASTSAVE, BGREWRITEAOF, save points and saving at shutdown.
//!
//! **A consistent cut.** Every snapshot (SAVE, BGSAVE, the base of an AOF rewrite) starts on all
//! shards at one point of the transaction order: the coordinator locks every shard exclusively,
//! in ascending order (see `crate::txn`), and each shard starts its snapshot inside its step. A
//! cross-shard transaction is thus wholly before the cut on every shard or wholly after it, so
//! the shard files of one save never hold half of an MSET, and an AOF rewrite starts every
//! shard's new incremental file at the same point (the loader relies on it, see
//! `crate::load`). The locks are held only while the snapshots *start*: a background snapshot
//! then serialises while its shard serves (`shards::keyspace` saves a key before the
//! first write to it).
//!
//! Work the server starts by itself (save points, SHUTDOWN's save) runs through each shard's
//! internal connection, a connection without a socket, so it takes exactly the path a client's
//! BGSAVE takes.

use crate::conn::Conn;
use crate::ctx::{now_us, ShardCtx};
use crate::msg::RepBody;
use crate::txn::{Step, TxOp};
use shards::Error;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// What a snapshot step does on a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapKind {
    /// SAVE: serialise now, blocking the shard, and write the shard's RDB file.
    Save,
    /// BGSAVE: start a background snapshot to the shard's RDB file.
    BgSave,
    /// BGREWRITEAOF: switch to a new incremental file and write a new base in the background.
    Rewrite,
    /// DEBUG RELOAD: save, empty the databases and load the file back.
    Reload,
    /// A replica's full resynchronisation (its number, and whether it came by PSYNC): the
    /// shard's log is marked and a snapshot streams to the replication hub.
    Replica(u64, bool),
    /// A replica loads its master's payload: every shard empties its databases and loads the
    /// keys of its slots.
    LoadReplica,
}

/// Process-wide persistence status (INFO persistence, LASTSAVE).
pub struct Status {
    /// Unix seconds of the last successful save.
    pub lastsave: AtomicU64,
    pub bgsave: Job,
    pub bgsave_scheduled: AtomicBool,
    pub rdb_saves: AtomicU64,
    /// Per shard: writes since the last successful save (published by each shard's cron).
    pub dirty: Vec<AtomicU64>,
    /// Per shard: the AOF's current size and its size after the last rewrite.
    pub aof_size: Vec<AtomicU64>,
    pub aof_base: Vec<AtomicU64>,
    pub rewrite: Job,
    pub rewrite_scheduled: AtomicBool,
    pub aof_rewrites: AtomicU64,
    /// The last save point attempt failed at this Unix second (retry after 5 s, as Redis).
    pub last_bgsave_try: AtomicU64,
    /// Shards that have finished their shutdown work.
    pub stopped: AtomicUsize,
    pub stopping: AtomicBool,
    pub stop_save: AtomicBool,
    /// The shutdown save has run (successfully or not).
    pub stop_saved: AtomicBool,
}

impl Status {
    pub fn new(n: usize) -> Status {
        let now = now_us() / 1_000_000;
        Status {
            lastsave: AtomicU64::new(now),
            bgsave: Job::default(),
            bgsave_scheduled: AtomicBool::new(false),
            rdb_saves: AtomicU64::new(0),
            dirty: (0..n).map(|_| AtomicU64::new(0)).collect(),
            aof_size: (0..n).map(|_| AtomicU64::new(0)).collect(),
            aof_base: (0..n).map(|_| AtomicU64::new(0)).collect(),
            rewrite: Job::default(),
            rewrite_scheduled: AtomicBool::new(false),
            aof_rewrites: AtomicU64::new(0),
            last_bgsave_try: AtomicU64::new(0),
            stopped: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            stop_save: AtomicBool::new(false),
            stop_saved: AtomicBool::new(false),
        }
    }

    pub fn bgsave_running(&self) -> bool {
        self.bgsave.running()
    }

    pub fn rewrite_running(&self) -> bool {
        self.rewrite.running()
    }

    pub fn changes_since_save(&self) -> u64 {
        self.dirty.iter().map(|d| d.load(Ordering::Relaxed)).sum()
    }
}

/// A background job all shards do their part of (BGSAVE, an AOF rewrite).
pub struct Job {
    /// Shards still at it (0: not running).
    left: AtomicUsize,
    failed: AtomicBool,
    pub started_ms: AtomicU64,
    /// How long the last one took (-1: none yet), and whether it succeeded.
    pub last_secs: AtomicI64,
    pub last_ok: AtomicBool,
}

impl Default for Job {
    fn default() -> Job {
        Job {
            left: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            started_ms: AtomicU64::new(0),
            last_secs: AtomicI64::new(-1),
            last_ok: AtomicBool::new(true),
        }
    }
}

impl Job {
    pub fn running(&self) -> bool {
        self.left.load(Ordering::Acquire) > 0
    }

    fn start(&self, shards: usize) {
        self.left.store(shards, Ordering::Release);
        self.failed.store(false, Ordering::Release);
        self.started_ms.store(now_us() / 1000, Ordering::Relaxed);
    }

    /// One shard is done: when it is the last, records the outcome and returns whether every
    /// shard succeeded.
    fn finish_one(&self, ok: bool) -> Option<bool> {
        if !ok {
            self.failed.store(true, Ordering::Release);
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return None;
        }
        let now_ms = now_us() / 1000;
        let secs = now_ms.saturating_sub(self.started_ms.load(Ordering::Relaxed)) / 1000;
        self.last_secs.store(secs as i64, Ordering::Relaxed);
        let ok = !self.failed.load(Ordering::Acquire);
        self.last_ok.store(ok, Ordering::Relaxed);
        Some(ok)
    }
}

/// SAVE, BGSAVE, LASTSAVE, BGREWRITEAOF.
pub fn handle(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let st = &ctx.shared.persist;
    let name = String::from_utf8_lossy(argv[0]).to_ascii_lowercase();
    match name.as_str() {
        "lastsave" => {
            conn.reply().int(st.lastsave.load(Ordering::Relaxed) as i64);
        }
        "save" => {
            if st.bgsave_running() {
                return Err(Error::err("Background save already in progress"));
            }
            start_cut(ctx, conn, SnapKind::Save);
        }
        "bgsave" => {
            let schedule = match argv.get(1) {
                None => false,
                Some(a) if a.eq_ignore_ascii_case(b"schedule") && argv.len() == 2 => true,
                Some(_) => return Err(Error::Syntax),
            };
            if st.bgsave_running() {
                return Err(Error::err("Background save already in progress"));
            }
            if st.rewrite_running() {
                if schedule {
                    st.bgsave_scheduled.store(true, Ordering::Release);
                    conn.reply().simple("Background saving scheduled");
                    return Ok(());
                }
                return Err(Error::err(
                    "Another child process is active (AOF?): can't BGSAVE right now. Use \
                     BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
                ));
            }
            start_cut(ctx, conn, SnapKind::BgSave);
        }
        "bgrewriteaof" => {
            if st.rewrite_running() {
                return Err(Error::err(
                    "Background append only file rewriting already in progress",
                ));
            }
            if st.bgsave_running() {
                st.rewrite_scheduled.store(true, Ordering::Release);
                conn.reply()
                    .simple("Background append only file rewriting scheduled");
                return Ok(());
            }
            start_cut(ctx, conn, SnapKind::Rewrite);
        }
        _ => return Err(Error::err("unknown command")),
    }
    Ok(())
}

/// Locks every shard exclusively (ascending), starts the snapshot on each inside its step,
/// releases, and answers the connection.
pub fn start_cut(ctx: &ShardCtx, conn: &mut Conn, kind: SnapKind) {
    let st = &ctx.shared.persist;
    match kind {
        SnapKind::BgSave => st.bgsave.start(ctx.n),
        SnapKind::Rewrite => st.rewrite.start(ctx.n),
        SnapKind::Save | SnapKind::Reload | SnapKind::Replica(..) | SnapKind::LoadReplica => {}
    }
    let nested = conn.live.is_some();
    let steps: VecDeque<Step> = (0..ctx.n)
        .map(|s| Step {
            shard: s,
            lock: Vec::new(),
            exclusive: !nested,
            op: TxOp::Snapshot(kind),
            release: s == ctx.n - 1 && !nested,
        })
        .collect();
    let tx = crate::txn::tx_for(ctx, conn);
    crate::txn::run_steps(
        ctx,
        conn,
        tx,
        steps,
        Vec::new(),
        Box::new(move |ctx, conn, results| {
            crate::txn::release_on(ctx, conn, tx, 0..ctx.n.saturating_sub(1));
            let errors: Vec<String> = results
                .into_iter()
                .filter_map(|(s, b)| match b {
                    RepBody::Error(e) => Some(format!("shard {s}: {e}")),
                    _ => None,
                })
                .collect();
            let st = &ctx.shared.persist;
            match kind {
                SnapKind::Save => {
                    if errors.is_empty() {
                        saved(ctx);
                        conn.reply().simple("OK");
                    } else {
                        crate::log!("SAVE failed: {}", errors.join("; "));
                        conn.reply().error("ERR");
                    }
                    if st.stopping.load(Ordering::Acquire) {
                        if errors.is_empty() {
                            crate::log!("DB saved on disk");
                        }
                        st.stop_saved.store(true, Ordering::Release);
                    }
                }
                SnapKind::Reload => {
                    if errors.is_empty() {
                        saved(ctx);
                        crate::log!("DB reloaded by DEBUG RELOAD");
                        conn.reply().ok();
                    } else {
                        conn.reply().error(&format!(
                            "ERR Error trying to load the RDB dump: {}",
                            errors.join("; ")
                        ));
                    }
                }
                SnapKind::Replica(sync, psync) => {
                    crate::repl::cut_done(ctx, conn, sync, psync, &errors);
                }
                SnapKind::LoadReplica => crate::repl::replica::loaded(ctx, &errors),
                SnapKind::BgSave => {
                    crate::log!("Background saving started");
                    conn.reply().simple("Background saving started");
                }
                SnapKind::Rewrite => {
                    if !errors.is_empty() {
                        crate::log!("Background AOF rewrite failed: {}", errors.join("; "));
                    }
                    let _ = st;
                    conn.reply()
                        .simple("Background append only file rewriting started");
                }
            }
        }),
    );
}

/// A save of every shard succeeded: LASTSAVE moves, older shard file sets go.
fn saved(ctx: &ShardCtx) {
    let st = &ctx.shared.persist;
    st.lastsave.store(now_us() / 1_000_000, Ordering::Relaxed);
    // As Redis, a successful save of any kind makes the last BGSAVE status ok.
    st.bgsave.last_ok.store(true, Ordering::Relaxed);
    st.rdb_saves.fetch_add(1, Ordering::Relaxed);
    crate::snapshot::remove_other_sets(&ctx.shared);
}

/// Runs a snapshot step on this shard (its exclusive lock is held).
pub fn serve_snapshot(ctx: &ShardCtx, kind: SnapKind) -> RepBody {
    let res = match kind {
        SnapKind::Save => crate::snapshot::save_sync(ctx),
        SnapKind::Reload => crate::snapshot::reload(ctx),
        SnapKind::BgSave => crate::snapshot::begin_bgsave(ctx),
        SnapKind::Rewrite => crate::snapshot::begin_rewrite(ctx),
        SnapKind::Replica(sync, _) => crate::repl::begin_sync(ctx, sync),
        SnapKind::LoadReplica => crate::repl::replica::load(ctx),
    };
    match res {
        Ok(()) => RepBody::Ack,
        Err(e) => {
            crate::log!("shard {}: {e}", ctx.id);
            match kind {
                SnapKind::BgSave => bgsave_done(ctx, false),
                SnapKind::Rewrite => rewrite_done(ctx, false),
                SnapKind::Save
                | SnapKind::Reload
                | SnapKind::Replica(..)
                | SnapKind::LoadReplica => {}
            }
            RepBody::Error(e)
        }
    }
}

/// One shard finished (or failed) its part of a BGSAVE.
pub fn bgsave_done(ctx: &ShardCtx, ok: bool) {
    let st = &ctx.shared.persist;
    match st.bgsave.finish_one(ok) {
        None => {}
        Some(true) => {
            saved(ctx);
            crate::log!("Background saving terminated with success");
        }
        Some(false) => {
            st.last_bgsave_try
                .store(now_us() / 1_000_000, Ordering::Relaxed);
            crate::log!("Background saving error");
        }
    }
}

/// One shard finished (or failed) its part of an AOF rewrite.
pub fn rewrite_done(ctx: &ShardCtx, ok: bool) {
    let st = &ctx.shared.persist;
    match st.rewrite.finish_one(ok) {
        None => {}
        Some(true) => {
            st.aof_rewrites.fetch_add(1, Ordering::Relaxed);
            crate::log!("Background AOF rewrite finished successfully");
        }
        Some(false) => crate::log!("Background AOF rewrite failed"),
    }
}

/// Starts stopping the process: clients are no longer served; with `save` (default: if save
/// points are configured) every shard is saved at one cut; every AOF is written out and synced;
/// then the process exits. Called from any thread.
pub fn request_shutdown(
    shared: &std::sync::Arc<crate::ctx::Shared>,
    code: i32,
    save: Option<bool>,
) {
    let st = &shared.persist;
    if st.stopping.swap(true, Ordering::AcqRel) {
        return;
    }
    let save = save.unwrap_or_else(|| !save_points(&shared.config.get("save")).is_empty());
    st.stop_save.store(save, Ordering::Release);
    let shared = shared.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while shared.persist.stopped.load(Ordering::Acquire) < shared.nshards {
            // SHUTDOWN NOSAVE works while a script keeps a shard busy: that shard cannot stop
            // on its own, and there is nothing to save.
            if !save
                && shared
                    .scripts
                    .busy
                    .iter()
                    .any(|b| b.busy.load(Ordering::Relaxed))
            {
                crate::log!(
                    "A script keeps a shard busy: exiting without waiting for it (SHUTDOWN NOSAVE)"
                );
                break;
            }
            if std::time::Instant::now() > deadline {
                crate::log!("Shards did not finish their shutdown work in time; exiting anyway");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        shared.exit(code)
    });
}

/// Parses `save` ("3600 1 300 100"): (seconds, changes) pairs.
pub fn save_points(spec: &str) -> Vec<(u64, u64)> {
    let nums: Vec<u64> = spec
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    nums.chunks_exact(2).map(|c| (c[0], c[1])).collect()
}

/// Checks a configuration value of `save`: pairs of non-negative integers, or empty.
pub fn check_save_points(spec: &str) -> Result<(), String> {
    // Seconds at least 1, changes at least 0, as Redis checks them.
    let words: Vec<&str> = spec.split_whitespace().collect();
    let valid = words.len().is_multiple_of(2)
        && words.iter().enumerate().all(|(i, w)| {
            w.parse::<i64>()
                .is_ok_and(|v| v >= if i % 2 == 0 { 1 } else { 0 })
        });
    if valid {
        Ok(())
    } else {
        Err("Invalid save parameters".into())
    }
}

impl ShardCtx {
    /// Once per cron tick while the process stops: shard 0 starts the final save; once it is
    /// done (or not wanted) each shard writes out its AOF and reports.
    pub async fn stop_cron(&self) {
        let st = &self.shared.persist;
        if self.stop_done.get() {
            return;
        }
        if st.stop_save.load(Ordering::Acquire) && !st.stop_saved.load(Ordering::Acquire) {
            if self.id == 0 && !self.stop_save_started.get() && self.internal_command(&[b"SAVE"]) {
                crate::log!("Saving the final RDB snapshot before exiting.");
                self.stop_save_started.set(true);
            }
            return;
        }
        self.stop_done.set(true);
        self.aof_drain().await;
        st.stopped.fetch_add(1, Ordering::AcqRel);
    }

    /// Once per cron tick: publishes this shard's unsaved changes; shard 0 checks the save
    /// points and starts scheduled work.
    pub fn persist_cron(&self) {
        let st = &self.shared.persist;
        let dirty = {
            let e = self.engine.borrow();
            e.stats.dirty.saturating_sub(self.dirty_saved.get())
        };
        st.dirty[self.id].store(dirty, Ordering::Relaxed);
        if let Some(a) = self.aof.borrow().as_ref() {
            st.aof_size[self.id].store(a.base_size + a.incr_size, Ordering::Relaxed);
            st.aof_base[self.id].store(a.base_size, Ordering::Relaxed);
        }
        if self.id != 0 || st.stopping.load(Ordering::Acquire) {
            return;
        }
        if st.bgsave_running() || st.rewrite_running() {
            return;
        }
        if st.rewrite_scheduled.swap(false, Ordering::AcqRel) {
            self.internal_command(&[b"BGREWRITEAOF"]);
            return;
        }
        if st.bgsave_scheduled.swap(false, Ordering::AcqRel) {
            self.internal_command(&[b"BGSAVE"]);
            return;
        }
        if self.aof_rewrite_due() {
            crate::log!("Starting automatic rewriting of AOF");
            self.internal_command(&[b"BGREWRITEAOF"]);
            return;
        }
        let now = now_us() / 1_000_000;
        let changes = st.changes_since_save();
        let last = st.lastsave.load(Ordering::Relaxed);
        let retry_ok = st.bgsave.last_ok.load(Ordering::Relaxed)
            || now.saturating_sub(st.last_bgsave_try.load(Ordering::Relaxed)) >= 5;
        let due = save_points(&self.shared.config.get("save"))
            .into_iter()
            .find(|&(secs, n)| changes >= n && now.saturating_sub(last) >= secs);
        if let (Some((secs, n)), true) = (due, retry_ok) {
            crate::log!("{n} changes in {secs} seconds. Saving...");
            self.internal_command(&[b"BGSAVE"]);
        }
    }

    /// Whether the AOF grew enough since its last rewrite for an automatic one
    /// (`auto-aof-rewrite-percentage` over `auto-aof-rewrite-min-size`, all shards together).
    fn aof_rewrite_due(&self) -> bool {
        let cfg = &self.shared.config;
        let pct = cfg.get_i64("auto-aof-rewrite-percentage").max(0) as u64;
        if pct == 0 || self.aof.borrow().is_none() {
            return false;
        }
        let st = &self.shared.persist;
        let size: u64 = st.aof_size.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        let base: u64 = st
            .aof_base
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum::<u64>()
            .max(1);
        size > cfg.get_i64("auto-aof-rewrite-min-size").max(0) as u64
            && size.saturating_sub(base) * 100 / base >= pct
    }

    /// Runs a command on this shard's internal connection (if it is not busy with another).
    pub fn internal_command(&self, argv: &[&[u8]]) -> bool {
        let Some(token) = self.internal.get() else {
            return false;
        };
        let Some(mut conn) = self.conns.borrow_mut().take(token) else {
            return false;
        };
        if conn.waiting() {
            self.conns.borrow_mut().put_back(conn);
            return false;
        }
        crate::dispatch::encode_command(argv, &mut conn.rbuf);
        crate::dispatch::process(self, &mut conn);
        self.finish(conn);
        self.end_of_batch();
        true
    }
}
