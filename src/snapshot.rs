//! Writing a shard's snapshot: SAVE (at once, blocking the shard), and BGSAVE or the base of an
//! AOF rewrite in the background, a chunk of keys at a time, while the shard serves (the
//! databases save a key before its first write, see `shards::keyspace`). Files are written
//! under a temporary name, fsynced and renamed into place.

use crate::ctx::{now_us, ShardCtx, Shared};
use crate::persist;
use shards::rdb::file::{Aux, FileWriter};
use std::path::PathBuf;
use std::rc::Rc;

/// Chunks of keys serialised per step of a background snapshot (a chunk is 1024 slots).
const CHUNKS_PER_STEP: usize = 1;

/// What a background snapshot is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// BGSAVE: the shard's RDB file.
    Rdb,
    /// An AOF rewrite: the new base (sequence number `seq`) of this shard's AOF.
    AofBase { seq: u64 },
    /// A replica's full resynchronisation: the pieces go to the replication hub.
    Replica { sync: u64 },
}

/// A background snapshot in progress on this shard.
pub struct Running {
    pub target: Target,
    writer: FileWriter,
    /// The engine's write counter when the snapshot began.
    dirty: u64,
}

fn aux(ctx: &ShardCtx, aof_base: bool) -> Aux {
    Aux {
        ctime_s: now_us() / 1_000_000,
        used_mem: crate::info::allocated_bytes() / ctx.n.max(1) as u64,
        aof_base,
        search: shards::search::published(),
    }
}

/// This shard's RDB file.
pub fn rdb_path(ctx: &ShardCtx) -> PathBuf {
    let cfg = &ctx.shared.config;
    PathBuf::from(cfg.get("dir")).join(persist::shard_rdb_name(
        &cfg.get("dbfilename"),
        ctx.id,
        ctx.n,
    ))
}

/// SAVE on this shard: writes every key to its RDB file now.
pub fn save_sync(ctx: &ShardCtx) -> Result<(), String> {
    if ctx.snapshot.borrow_mut().take().is_some() {
        // A SAVE supersedes a background snapshot (whose task then reports it failed).
        for db in ctx.engine.borrow_mut().dbs.iter_mut() {
            db.snapshot_abort();
        }
    }
    let path = rdb_path(ctx);
    let tmp = persist::tmp_path(&path);
    // Streamed to the file (no copy of the serialised data in memory).
    let written = (|| -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        {
            let e = ctx.engine.borrow();
            let functions = shards::script::function::codes(&e.scripts);
            shards::rdb::file::save_to(
                &mut w,
                &functions,
                &e.dbs,
                now_us() / 1000,
                &aux(ctx, false),
            )?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        persist::sync_dir(&path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", path.display()));
    }
    let dirty = ctx.engine.borrow().stats.dirty;
    ctx.dirty_saved.set(dirty);
    Ok(())
}

/// DEBUG RELOAD on this shard: saves, empties the databases and loads the file back.
pub fn reload(ctx: &ShardCtx) -> Result<(), String> {
    save_sync(ctx)?;
    let path = rdb_path(ctx);
    let data = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut e = ctx.engine.borrow_mut();
    let scfg = e.config.clone();
    for db in e.dbs.iter_mut() {
        db.clear();
    }
    let scripts = e.scripts.clone();
    let defs = crate::load::read_rdb_into(
        &data,
        &path,
        &mut e.dbs,
        &scfg,
        now_us() / 1000,
        Some(&scripts),
        |_| true,
    )
    .map_err(|e| e.to_string())?;
    e.search = Default::default();
    e.search.decode(&defs.unwrap_or_default());
    Ok(())
}

/// Starts a background snapshot of every database toward `target`.
fn begin(ctx: &ShardCtx, target: Target) -> Result<(), String> {
    if ctx.snapshot.borrow().is_some() {
        return Err("a background snapshot is already running".into());
    }
    let now = now_us() / 1000;
    let dirty = {
        let mut e = ctx.engine.borrow_mut();
        for (i, db) in e.dbs.iter_mut().enumerate() {
            if !db.is_empty() {
                db.begin_snapshot(i, now);
            }
        }
        e.stats.dirty
    };
    let aof_base = matches!(target, Target::AofBase { .. });
    let mut writer = FileWriter::new(&aux(ctx, aof_base));
    for code in shards::script::function::codes(&ctx.engine.borrow().scripts) {
        writer.function(&code);
    }
    *ctx.snapshot.borrow_mut() = Some(Running {
        target,
        writer,
        dirty,
    });
    let Some(me) = ctx.me() else {
        return Err("shard is stopping".into());
    };
    glommio::spawn_local(async move { me.run_snapshot().await }).detach();
    Ok(())
}

/// The snapshot of a replica's full resynchronisation `sync` on this shard.
pub fn begin_replica(ctx: &ShardCtx, sync: u64) -> Result<(), String> {
    begin(ctx, Target::Replica { sync })
}

/// BGSAVE on this shard.
pub fn begin_bgsave(ctx: &ShardCtx) -> Result<(), String> {
    begin(ctx, Target::Rdb)
}

/// BGREWRITEAOF on this shard: later writes go to a new incremental file (named in the
/// manifest at once, so nothing logged from now on can be lost), and a new base is written
/// from a snapshot taken at this same point.
pub fn begin_rewrite(ctx: &ShardCtx) -> Result<(), String> {
    if ctx.snapshot.borrow().is_some() {
        return Err("a background snapshot is already running".into());
    }
    if ctx.aof.borrow().is_none() && ctx.shared.config.get("appendonly") != "yes" {
        // Nothing to rewrite: the AOF is off (it is made from scratch when turned on).
        crate::save::rewrite_done(ctx, true);
        return Ok(());
    }
    let seq = ctx.aof_switch_incr()?;
    begin(ctx, Target::AofBase { seq })
}

/// Removes shard RDB files of other shard counts (superseded by a complete save).
pub fn remove_other_sets(shared: &Shared) {
    let cfg = &shared.config;
    let dir = PathBuf::from(cfg.get("dir"));
    let dbfilename = cfg.get("dbfilename");
    for m in persist::rdb_sets(&dir, &dbfilename) {
        if m != shared.nshards {
            for i in 0..m {
                let _ = std::fs::remove_file(dir.join(persist::shard_rdb_name(&dbfilename, i, m)));
            }
        }
    }
}

impl ShardCtx {
    /// Writes the background snapshot out, a few chunks at a time, then puts the file in place.
    async fn run_snapshot(self: Rc<Self>) {
        let target = match self.snapshot.borrow().as_ref() {
            Some(r) => r.target.clone(),
            None => return,
        };
        if let Target::Replica { sync } = target {
            self.stream_snapshot(sync).await;
            self.snapshot.borrow_mut().take();
            for db in self.engine.borrow_mut().dbs.iter_mut() {
                db.snapshot_abort();
            }
            return;
        }
        let path = match &target {
            Target::Replica { .. } => PathBuf::new(),
            Target::Rdb => rdb_path(&self),
            Target::AofBase { seq } => match self.aof.borrow().as_ref() {
                Some(a) => a.dir.join(persist::base_name(
                    &self.shared.config.get("appendfilename"),
                    *seq,
                )),
                None => PathBuf::new(),
            },
        };
        let res = self.write_snapshot(&path).await;
        let dirty = self.snapshot.borrow_mut().take().map(|r| r.dirty);
        // A failed snapshot leaves nothing behind in the databases.
        for db in self.engine.borrow_mut().dbs.iter_mut() {
            db.snapshot_abort();
        }
        let ok = match res {
            Ok(size) => match &target {
                Target::Rdb => {
                    if let Some(d) = dirty {
                        self.dirty_saved.set(d);
                    }
                    true
                }
                Target::AofBase { seq } => match self.aof_install_base(*seq, size) {
                    Ok(()) => true,
                    Err(e) => {
                        crate::log!("shard {}: finishing the AOF rewrite: {e}", self.id);
                        false
                    }
                },
                Target::Replica { .. } => true,
            },
            Err(e) => {
                crate::log!("shard {}: writing {}: {e}", self.id, path.display());
                false
            }
        };
        match target {
            Target::Rdb => crate::save::bgsave_done(&self, ok),
            Target::AofBase { .. } => crate::save::rewrite_done(&self, ok),
            Target::Replica { .. } => {}
        }
    }

    /// Serialises the snapshot of a replica's full resynchronisation and hands its pieces
    /// (each starting with `SELECTDB`) to the replication hub, which builds the file.
    async fn stream_snapshot(&self, sync: u64) {
        loop {
            // The replicas' sockets set the pace: a full resync holds a bounded amount of
            // payload beyond the data (the copy-on-write snapshot keeps the rest).
            while self.shared.repl.payload.full() {
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
            let (pieces, done) = {
                let mut e = self.engine.borrow_mut();
                if let Some(db) = e.dbs.iter_mut().find(|d| d.snapshot_active()) {
                    db.snapshot_step(CHUNKS_PER_STEP);
                }
                let pieces: Vec<Vec<u8>> = e
                    .dbs
                    .iter_mut()
                    .map(|db| db.snapshot_take())
                    .filter(|p| !p.is_empty())
                    .collect();
                (pieces, !e.dbs.iter().any(|d| d.snapshot_active()))
            };
            for piece in pieces {
                crate::repl::send_piece(self, sync, piece, false);
            }
            if done {
                crate::repl::send_piece(self, sync, Vec::new(), true);
                return;
            }
            futures_lite::future::yield_now().await;
        }
    }

    /// Serialises and writes the snapshot to a temporary file, then renames it to `path`.
    /// Returns the file's size.
    async fn write_snapshot(&self, path: &std::path::Path) -> Result<u64, String> {
        let tmp = persist::tmp_path(path);
        let file = glommio::io::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(&tmp)
            .await
            .map_err(|e| e.to_string())?;
        let mut offset = 0u64;
        loop {
            let (piece, done) = {
                let mut e = self.engine.borrow_mut();
                let mut run = self.snapshot.borrow_mut();
                let Some(run) = run.as_mut() else {
                    return Err("the snapshot was dropped".into());
                };
                // Step the first database still in progress; take what every one produced
                // (writes save chunks of the others meanwhile).
                if let Some(db) = e.dbs.iter_mut().find(|d| d.snapshot_active()) {
                    db.snapshot_step(CHUNKS_PER_STEP);
                }
                for db in e.dbs.iter_mut() {
                    let p = db.snapshot_take();
                    if !p.is_empty() {
                        run.writer.append(&p);
                    }
                }
                let done = !e.dbs.iter().any(|d| d.snapshot_active());
                if done {
                    run.writer.finish();
                }
                (run.writer.take_pending(), done)
            };
            if !piece.is_empty() {
                let len = piece.len() as u64;
                crate::aof::write_fully(&file, piece, offset).await?;
                offset += len;
            }
            if done {
                break;
            }
            futures_lite::future::yield_now().await;
        }
        file.fdatasync().await.map_err(|e| e.to_string())?;
        file.close().await.map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
        persist::sync_dir(path).map_err(|e| e.to_string())?;
        Ok(offset)
    }
}
