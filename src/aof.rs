//! The append-only file of one shard, at run time: the effects of its writes (gathered by the
//! engine in `Shard::prop`) are appended to the shard's current incremental file by a writer
//! task through glommio's asynchronous file I/O, so connections keep being served while a write
//! or an fsync is in flight.
//!
//! **Group commit.** Everything the shard executed in one loop iteration (or while the previous
//! write was in flight) goes out in one `write` and, with `appendfsync always`, one `fdatasync`.
//! Replies are held until the sync that covers them: while bytes are appended but not yet synced,
//! any output a connection produces (and any answer to another shard) is tagged with the log
//! position it must wait for, and leaves once the sync reaches it. So no client ever sees an
//! acknowledgement — or a value — that a crash could take back. With `everysec` the file is
//! written at once and synced once a second; with `no` the kernel decides.
//!
//! The files follow Redis 7's multi-part layout, one set per shard (see `crate::persist`).

use crate::ctx::ShardCtx;
use crate::msg::{RepPart, Token};
use glommio::io::BufferedFile;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

/// Syncs expected to take less than this are done inline (see `aof_write_piece`).
const INLINE_SYNC_US: u64 = 250;

/// `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Everysec,
    No,
}

impl Fsync {
    pub fn parse(s: &str) -> Fsync {
        match s {
            "always" => Fsync::Always,
            "no" => Fsync::No,
            _ => Fsync::Everysec,
        }
    }
}

/// One shard's log writer.
pub struct Aof {
    pub fsync: Fsync,
    /// The incremental file being appended to, and the offset of its end.
    file: Option<Rc<BufferedFile>>,
    pub path: PathBuf,
    offset: u64,
    /// Bytes waiting for the writer.
    pending: Vec<u8>,
    /// Log positions: bytes ever queued, written, synced (positions count from this start).
    pub queued: u64,
    pub written: u64,
    pub synced: u64,
    /// The writer task is running (it drains `pending` until empty).
    busy: bool,
    /// Connections whose output waits for a sync, and answers to other shards that do.
    held_conns: Vec<Token>,
    held_resp: VecDeque<(u64, usize, Vec<RepPart>)>,
    /// The last write or sync failed (INFO's aof_last_write_status).
    pub last_error: Option<String>,
    /// Bytes in the current incremental file (INFO's aof_current_size counts the base too).
    pub incr_size: u64,
    pub base_size: u64,
    /// A rewrite is running (BGREWRITEAOF), and whether one is waiting to start.
    pub rewriting: bool,
    pub rewrites: u64,
    /// The manifest of the shard's files.
    pub manifest: crate::persist::Manifest,
    pub dir: PathBuf,
    /// A rewrite switched files: bytes queued before this position go to the old file, the
    /// rest to the new one (opened by the writer when it gets there).
    switch: Option<(u64, PathBuf)>,
    /// The incremental file a running rewrite started.
    rewrite_incr: Option<crate::persist::ManifestFile>,
    /// How long an fdatasync takes, microseconds (moving average).
    sync_ewma_us: u64,
}

impl Aof {
    /// How far the log must be for a reply to leave: synced with `always`; written (in the
    /// kernel's page cache, so a crash of the process loses nothing) otherwise, as Redis
    /// writes its AOF buffer before it sends replies.
    pub fn durable(&self) -> u64 {
        if self.fsync == Fsync::Always {
            self.synced
        } else {
            self.written
        }
    }

    pub fn new(fsync: Fsync, dir: PathBuf, manifest: crate::persist::Manifest) -> Aof {
        Aof {
            fsync,
            file: None,
            path: PathBuf::new(),
            offset: 0,
            pending: Vec::new(),
            queued: 0,
            written: 0,
            synced: 0,
            busy: false,
            held_conns: Vec::new(),
            held_resp: VecDeque::new(),
            last_error: None,
            incr_size: 0,
            base_size: 0,
            rewriting: false,
            rewrites: 0,
            manifest,
            dir,
            switch: None,
            rewrite_incr: None,
            sync_ewma_us: 0,
        }
    }
}

impl ShardCtx {
    /// The log position output produced now must wait for (`appendfsync always` with writes
    /// not yet synced), if any.
    pub fn aof_gate(&self) -> Option<u64> {
        let aof = self.aof.borrow();
        let aof = aof.as_ref()?;
        let in_engine = self.aof_in_engine();
        let pos = aof.queued + in_engine;
        (pos > aof.durable() || !aof.held_resp.is_empty()).then_some(pos)
    }

    /// The position output produced now must wait for, and the position durable so far
    /// (None: no AOF).
    pub fn aof_gate_synced(&self) -> Option<(u64, u64)> {
        let aof = self.aof.borrow();
        let aof = aof.as_ref()?;
        let in_engine = self.aof_in_engine();
        Some((aof.queued + in_engine, aof.durable()))
    }

    /// Bytes the engine logged and the writer has not taken. Not those of a block run live:
    /// they are written when it ends, and its EXEC answers only after that (see `dispatch`).
    fn aof_in_engine(&self) -> u64 {
        if self.aof_live.borrow().is_some() {
            return 0;
        }
        self.engine
            .borrow()
            .prop
            .as_ref()
            .map_or(0, |p| p.buf.len() as u64)
    }

    /// Holds a connection's output until the log is synced to `pos`.
    pub fn aof_hold_conn(&self, token: Token) {
        if let Some(aof) = self.aof.borrow_mut().as_mut() {
            if !aof.held_conns.contains(&token) {
                aof.held_conns.push(token);
            }
        }
    }

    /// Holds answers to `peer` until the log is synced to `pos`.
    pub fn aof_hold_resp(&self, pos: u64, peer: usize, parts: Vec<RepPart>) {
        if let Some(aof) = self.aof.borrow_mut().as_mut() {
            aof.held_resp.push_back((pos, peer, parts));
        }
    }

    /// Moves what the engine logged into the writer's queue and starts the writer if idle.
    pub fn aof_collect(&self) {
        if self.aof_live.borrow().is_some() {
            // A block run live holds the shard: its record is written whole when it ends.
            return;
        }
        let mut guard = self.aof.borrow_mut();
        let Some(aof) = guard.as_mut() else {
            return;
        };
        {
            let mut engine = self.engine.borrow_mut();
            let Some(p) = engine.prop.as_mut() else {
                return;
            };
            if p.buf.is_empty() {
                return;
            }
            aof.queued += p.buf.len() as u64;
            if aof.pending.is_empty() {
                std::mem::swap(&mut aof.pending, &mut p.buf);
            } else {
                aof.pending.extend_from_slice(&p.buf);
                p.buf.clear();
            }
        }
        // Without `always`, the write is a copy into the page cache: done here, at once, so
        // the replies this loop iteration produced can leave now.
        let inline = aof.fsync != Fsync::Always && !aof.busy && aof.switch.is_none();
        if let (true, Some(file)) = (inline, aof.file.clone()) {
            let buf = std::mem::take(&mut aof.pending);
            match pwrite_fully(&file, &buf, aof.offset) {
                Ok(()) => {
                    aof.offset += buf.len() as u64;
                    aof.incr_size += buf.len() as u64;
                    aof.written = aof.queued;
                    aof.last_error = None;
                    let end = aof.written;
                    drop(guard);
                    self.aof_release(end);
                    return;
                }
                Err(e) => {
                    crate::log!("Can't write to the append only file: {e}");
                    aof.last_error = Some(e);
                    // Kept for the writer task to retry.
                    aof.pending = buf;
                }
            }
        }
        drop(guard);
        self.aof_kick();
    }

    /// Writes (and with `always` syncs) queued bytes until none are left.
    async fn aof_write_loop(self: Rc<Self>) {
        loop {
            let (mut buf, end, fsync, switch) = {
                let mut guard = self.aof.borrow_mut();
                let Some(aof) = guard.as_mut() else {
                    return;
                };
                // Nothing to write, and nothing written that `always` still has to sync.
                let unsynced = aof.fsync == Fsync::Always && aof.synced < aof.written;
                if aof.pending.is_empty() && aof.switch.is_none() && !unsynced {
                    aof.busy = false;
                    return;
                }
                let buf = std::mem::take(&mut aof.pending);
                (buf, aof.queued, aof.fsync, aof.switch.take())
            };
            let start = end - buf.len() as u64;
            let mut result = Ok(());
            if let Some((pos, path)) = switch {
                // The bytes before the switch finish the old file, synced before it is left.
                let old: Vec<u8> = buf
                    .drain(..(pos.saturating_sub(start) as usize).min(buf.len()))
                    .collect();
                result = self.aof_write_piece(old, true).await;
                if result.is_ok() {
                    result = self.aof_open(path).await.map_err(|e| e.to_string());
                }
            }
            let len = buf.len() as u64;
            if result.is_ok() && (!buf.is_empty() || fsync == Fsync::Always) {
                result = self.aof_write_piece(buf, fsync == Fsync::Always).await;
            }
            if let Err(e) = result {
                // Redis stops rather than acknowledge writes it could not log with `always`.
                crate::log!("Can't write to the append only file: {e}");
                if fsync == Fsync::Always {
                    crate::log!("Exiting: the AOF can't be written with appendfsync always");
                    std::process::exit(1);
                }
                if let Some(aof) = self.aof.borrow_mut().as_mut() {
                    aof.last_error = Some(e);
                }
                continue;
            }
            {
                let mut guard = self.aof.borrow_mut();
                if let Some(aof) = guard.as_mut() {
                    aof.written = end;
                    aof.incr_size += len;
                    aof.last_error = None;
                    if fsync == Fsync::Always {
                        aof.synced = end;
                    }
                }
            }
            self.aof_release(end);
        }
    }

    /// Appends `buf` to the current file (and syncs it if asked).
    async fn aof_write_piece(&self, buf: Vec<u8>, sync: bool) -> Result<(), String> {
        let (file, offset) = {
            let mut guard = self.aof.borrow_mut();
            let Some(aof) = guard.as_mut() else {
                return Ok(());
            };
            let Some(file) = aof.file.clone() else {
                return Ok(());
            };
            let off = aof.offset;
            aof.offset += buf.len() as u64;
            (file, off)
        };
        if !buf.is_empty() {
            pwrite_fully(&file, &buf, offset)?;
        }
        if sync {
            // A device that syncs in a few microseconds (a battery-backed cache, a VM's disk) is
            // synced inline, as Redis does: handing the sync to io_uring's worker thread and
            // back costs more than the sync. A slower one is synced through io_uring, and the
            // shard goes on executing commands (the next group) meanwhile.
            let inline = self
                .aof
                .borrow()
                .as_ref()
                .is_some_and(|a| a.sync_ewma_us < INLINE_SYNC_US);
            let t0 = std::time::Instant::now();
            if inline {
                use std::os::fd::AsRawFd;
                // SAFETY: fdatasync on a valid fd we hold open.
                if unsafe { libc::fdatasync(file.as_raw_fd()) } != 0 {
                    return Err(std::io::Error::last_os_error().to_string());
                }
            } else {
                file.fdatasync().await.map_err(|e| e.to_string())?;
            }
            let us = t0.elapsed().as_micros() as u64;
            if let Some(a) = self.aof.borrow_mut().as_mut() {
                a.sync_ewma_us = (a.sync_ewma_us * 7 + us) / 8;
            }
        }
        Ok(())
    }

    /// Starts the writer if it is idle.
    fn aof_kick(&self) {
        {
            let mut guard = self.aof.borrow_mut();
            let Some(aof) = guard.as_mut() else {
                return;
            };
            if aof.busy {
                return;
            }
            aof.busy = true;
        }
        if let Some(me) = self.me() {
            glommio::spawn_local(async move { me.aof_write_loop().await }).detach();
        }
    }

    /// Starts a rewrite's new incremental file: what is logged from now on goes there. Sets
    /// the AOF up first if `appendonly` was just turned on. Returns the new base's sequence
    /// number.
    pub fn aof_switch_incr(&self) -> Result<u64, String> {
        let cfg = &self.shared.config;
        let fname = cfg.get("appendfilename");
        if self.aof.borrow().is_none() {
            // `appendonly` turned on at run time: the AOF counts only once its first base is
            // written (the manifest is written then), as Redis waits for its first rewrite.
            let dir = crate::persist::shard_aof_dir(
                std::path::Path::new(&cfg.get("dir")),
                &cfg.get("appenddirname"),
                self.id,
                self.n,
            );
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let fsync = Fsync::parse(&cfg.get("appendfsync"));
            *self.aof.borrow_mut() = Some(Aof::new(fsync, dir, Default::default()));
            self.engine.borrow_mut().prop = Some(Default::default());
        }
        // What the engine logged so far belongs to the old file.
        self.aof_collect();
        let seq = {
            let mut guard = self.aof.borrow_mut();
            let Some(aof) = guard.as_mut() else {
                return Err("no AOF".into());
            };
            let seq = aof.manifest.next_incr_seq();
            let name = crate::persist::incr_name(&fname, seq);
            let path = aof.dir.join(&name);
            std::fs::File::create(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            let incr = crate::persist::ManifestFile {
                name,
                seq,
                kind: 'i',
            };
            if aof.manifest.base.is_some() || !aof.manifest.incrs.is_empty() {
                aof.manifest.incrs.push(incr.clone());
                let mpath = aof.dir.join(crate::persist::manifest_name(&fname));
                crate::persist::write_atomic(&mpath, aof.manifest.render().as_bytes())
                    .map_err(|e| format!("writing {}: {e}", mpath.display()))?;
            }
            aof.rewrite_incr = Some(incr);
            aof.switch = Some((aof.queued, path));
            aof.rewriting = true;
            aof.manifest.next_base_seq()
        };
        // The new file starts with its own SELECT.
        if let Some(p) = self.engine.borrow_mut().prop.as_mut() {
            p.db = None;
        }
        self.aof_kick();
        Ok(seq)
    }

    /// A rewrite's base is written: the manifest names it and the rewrite's incremental file
    /// (and what came after), and the files they replace go.
    pub fn aof_install_base(&self, seq: u64, size: u64) -> Result<(), String> {
        let fname = self.shared.config.get("appendfilename");
        let mut guard = self.aof.borrow_mut();
        let Some(aof) = guard.as_mut() else {
            return Err("no AOF".into());
        };
        aof.rewriting = false;
        let Some(incr) = aof.rewrite_incr.take() else {
            return Err("no rewrite in progress".into());
        };
        let old = aof.manifest.clone();
        let mut incrs: Vec<crate::persist::ManifestFile> = old
            .incrs
            .iter()
            .filter(|f| f.seq >= incr.seq)
            .cloned()
            .collect();
        if incrs.is_empty() {
            incrs.push(incr);
        }
        let manifest = crate::persist::Manifest {
            base: Some(crate::persist::ManifestFile {
                name: crate::persist::base_name(&fname, seq),
                seq,
                kind: 'b',
            }),
            incrs,
        };
        let mpath = aof.dir.join(crate::persist::manifest_name(&fname));
        crate::persist::write_atomic(&mpath, manifest.render().as_bytes())
            .map_err(|e| format!("writing {}: {e}", mpath.display()))?;
        for f in old.base.iter().chain(&old.incrs) {
            if !manifest.incrs.contains(f) && manifest.base.as_ref() != Some(f) {
                let _ = std::fs::remove_file(aof.dir.join(&f.name));
            }
        }
        aof.manifest = manifest;
        aof.base_size = size;
        aof.rewrites += 1;
        Ok(())
    }

    /// Follows CONFIG SET of `appendfsync` and `appendonly`: turning the AOF on starts a
    /// rewrite (its first base), turning it off writes out what is logged and stops.
    pub fn aof_config(&self) {
        let cfg = &self.shared.config;
        let on = cfg.get("appendonly") == "yes";
        let fsync = Fsync::parse(&cfg.get("appendfsync"));
        let (has, now_always) = {
            let mut guard = self.aof.borrow_mut();
            let mut now_always = false;
            if let Some(a) = guard.as_mut() {
                now_always = a.fsync != Fsync::Always && fsync == Fsync::Always;
                a.fsync = fsync;
            }
            (guard.is_some(), now_always)
        };
        if now_always {
            // What was written under `everysec` must be synced before replies go on.
            self.aof_kick();
        }
        if on && !has && self.id == 0 {
            self.shared
                .persist
                .rewrite_scheduled
                .store(true, std::sync::atomic::Ordering::Release);
        }
        if !on && has {
            let Some(me) = self.me() else {
                return;
            };
            glommio::spawn_local(async move {
                me.aof_drain().await;
                if me.shared.config.get("appendonly") != "yes" {
                    me.engine.borrow_mut().prop = None;
                    let held = me.aof.borrow_mut().take();
                    // Output held for a sync goes now (everything logged is synced).
                    if let Some(mut a) = held {
                        for (_, peer, parts) in a.held_resp.drain(..) {
                            me.send_responses(peer, parts);
                        }
                        for t in a.held_conns.drain(..) {
                            if let Some(conn) = me.conns.borrow_mut().take(t) {
                                me.finish(conn);
                            }
                        }
                    }
                }
            })
            .detach();
        }
    }

    /// Sends the held answers to other shards that the log now covers (in order: a held one
    /// keeps the newer ones behind it).
    pub fn aof_send_ready(&self) {
        let ready: Vec<(u64, usize, Vec<RepPart>)> = {
            let mut guard = self.aof.borrow_mut();
            let Some(aof) = guard.as_mut() else {
                return;
            };
            let durable = aof.durable();
            let mut ready = Vec::new();
            while aof.held_resp.front().is_some_and(|(p, _, _)| *p <= durable) {
                if let Some(r) = aof.held_resp.pop_front() {
                    ready.push(r);
                }
            }
            ready
        };
        for (_, peer, parts) in ready {
            self.send_responses(peer, parts);
        }
    }

    /// Lets go of output held for positions up to `pos`.
    fn aof_release(&self, pos: u64) {
        let (conns, resp) = {
            let mut guard = self.aof.borrow_mut();
            let Some(aof) = guard.as_mut() else {
                return;
            };
            let conns = std::mem::take(&mut aof.held_conns);
            let mut resp = Vec::new();
            while aof.held_resp.front().is_some_and(|(p, _, _)| *p <= pos) {
                if let Some(r) = aof.held_resp.pop_front() {
                    resp.push(r);
                }
            }
            (conns, resp)
        };
        for (_, peer, parts) in resp {
            self.send_responses(peer, parts);
        }
        for t in conns {
            let Some(conn) = self.conns.borrow_mut().take(t) else {
                continue;
            };
            // finish() holds it again if it has produced output meanwhile that is not synced.
            self.finish(conn);
        }
        self.end_of_batch();
    }

    /// Syncs the log if it has unsynced writes (`appendfsync everysec`, once a second).
    pub async fn aof_sync_tick(&self) {
        let (file, written) = {
            let guard = self.aof.borrow();
            let Some(aof) = guard.as_ref() else {
                return;
            };
            if aof.fsync != Fsync::Everysec || aof.written == aof.synced {
                return;
            }
            let Some(file) = aof.file.clone() else {
                return;
            };
            (file, aof.written)
        };
        match file.fdatasync().await {
            Ok(()) => {
                if let Some(aof) = self.aof.borrow_mut().as_mut() {
                    aof.synced = aof.synced.max(written);
                }
            }
            Err(e) => {
                crate::log!("Can't fsync the append only file: {e}");
                if let Some(aof) = self.aof.borrow_mut().as_mut() {
                    aof.last_error = Some(e.to_string());
                }
            }
        }
    }

    /// Opens the incremental file `path` for appending (its current end is where writes go).
    pub async fn aof_open(&self, path: PathBuf) -> std::io::Result<()> {
        let file = glommio::io::OpenOptions::new()
            .write(true)
            .create(true)
            .buffered_open(&path)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let size = file
            .file_size()
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut guard = self.aof.borrow_mut();
        if let Some(aof) = guard.as_mut() {
            aof.file = Some(Rc::new(file));
            aof.offset = size;
            aof.incr_size = size;
            aof.path = path;
        }
        Ok(())
    }

    /// Writes out and syncs everything logged so far (shutdown, and before a rewrite).
    pub async fn aof_drain(&self) {
        self.aof_collect();
        loop {
            let busy = self.aof.borrow().as_ref().is_some_and(|a| a.busy);
            if !busy {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        let file = self.aof.borrow().as_ref().and_then(|a| a.file.clone());
        if let Some(f) = file {
            if let Err(e) = f.fdatasync().await {
                crate::log!("Can't fsync the append only file: {e}");
            }
        }
        if let Some(aof) = self.aof.borrow_mut().as_mut() {
            aof.synced = aof.written;
        }
    }
}

/// Writes `buf` at `offset` with pwrite(2) on the shard's thread: a buffered write only copies
/// into the page cache (the fdatasync is what waits for the disk, and it goes through
/// io_uring), and doing it here saves an io_uring round trip per group commit.
pub fn pwrite_fully(file: &BufferedFile, buf: &[u8], mut offset: u64) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: pwrite reads `buf[done..]`, which we own, from a valid fd we hold open.
        let n = unsafe {
            libc::pwrite(
                fd,
                buf[done..].as_ptr().cast(),
                buf.len() - done,
                offset as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.to_string());
        }
        if n == 0 {
            return Err("short write (disk full?)".into());
        }
        done += n as usize;
        offset += n as u64;
    }
    Ok(())
}

pub async fn write_fully(
    file: &BufferedFile,
    mut buf: Vec<u8>,
    mut offset: u64,
) -> Result<(), String> {
    while !buf.is_empty() {
        let n = file
            .write_at(buf.clone(), offset)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("short write (disk full?)".into());
        }
        offset += n as u64;
        buf.drain(..n.min(buf.len()));
    }
    Ok(())
}
