//! Transactions across shards: a command whose keys live on several shards (MSET, MGET, DEL …
//! split per key; SMOVE, LMOVE, SINTERSTORE, RENAME … gathered; blocking pops over keys on
//! several shards) runs as one isolated unit, coordinated by the connection's shard.
//!
//! ## The scheme
//! The coordinator visits the involved shards one after another in **ascending shard order**.
//! At each it sends one [`ReqBody::Tx`] message that locks that shard's keys for the transaction
//! (all of them at once, or none: the request queues until every one is free) and then runs the
//! step's operation (a split command's part, or a copy of the keys for a gathered command) under
//! those locks. Only when every shard has granted does the coordinator finish (a gathered command
//! computes on its copies and sends the changes back); the last message to each shard releases
//! its locks. The last shard in the order releases as soon as its step has run: by then every lock
//! of the transaction is held, so this is still two-phase locking.
//!
//! **Why it cannot deadlock:** a transaction only ever waits for a lock on shard `s` while holding
//! locks on shards below `s`, never above. A cycle of transactions each waiting for the next would
//! need one of them to wait on a shard below one it holds. Within a shard a request takes all its
//! keys at once, and queued requests are granted in arrival order (a request never overtakes an
//! older one that wants one of its keys), so none starves.
//!
//! **What a single-shard command pays:** nothing while no key of its shard is locked (one
//! emptiness check). While some are, its keys are looked up in the lock table; a command that
//! touches a locked key is deferred, with everything after it from the same connection, until the
//! lock goes, so it sees the transaction whole or not at all. Commands on other keys never wait.
//!
//! **Whole shards:** a MULTI block that needs the whole keyspace (see `crate::multi`) locks every
//! shard *exclusively*, in the same ascending order: an exclusive request waits until no other
//! transaction holds a key there, and while it is held every other transaction and every other
//! command that reads or writes data on that shard waits. The block's own commands carry its
//! transaction id (`ReqPart::tx`), pass its locks, and run their own steps under it without
//! locking or releasing anything (a holder never queues behind the requests waiting for it).
//!
//! Locks live only in the owning shard's memory: a lock table per shard, no global state.

use crate::conn::Conn;
use crate::ctx::ShardCtx;
use crate::msg::{RepBody, ReqBody, ReqPart, Token};
use shards::cmd::Lookup;
use shards::keyspace::{Entry, Key};
use shards::resp::Proto;
use std::collections::{HashMap, VecDeque};

/// A transaction's id: the coordinating shard in the high bits, a counter below.
pub type TxId = u64;

/// What a transaction step does on a shard, under that shard's locks.
pub enum TxOp {
    /// Only lock (or only release).
    Nothing,
    /// Run these RESP frames (a split command's part, uncounted: the coordinator counts it).
    /// `peers`: the shards whose parts together make the write (empty for a read), logged
    /// with it in the AOF (see `crate::load`).
    Part { frames: Vec<u8>, peers: Vec<u16> },
    /// Copy out these keys' entries; `watch` (for a blocking command) registers a watcher on its
    /// keys for the coordinator's connection, in the same step; `check` (for EXEC) answers
    /// `Conflict` instead if one of these WATCHed keys changed.
    Export {
        keys: Vec<(u8, Key)>,
        watch: Vec<(u8, Key)>,
        check: crate::multi::WatchCheck,
    },
    /// Store (Some) or delete (None) these entries; `peers` as for `Part`.
    Import {
        entries: Vec<(u8, Key, Option<Entry>)>,
        peers: Vec<u16>,
    },
    /// Start a snapshot (see `crate::save`); the step locks the whole shard.
    Snapshot(crate::save::SnapKind),
}

/// A lock request that waits for keys held by another transaction.
struct Pending {
    exclusive: bool,
    from: usize,
    conn: Token,
    seq: u32,
    db: usize,
    proto: Proto,
    tx: TxId,
    keys: Vec<(usize, Key)>,
    op: TxOp,
    release: bool,
    /// The client's id (tagged when its reads are remembered for client-side caching).
    client: u64,
}

/// Commands that touched a locked key, with whatever their connection sent after them.
pub struct Deferred {
    /// Where the replies go: shard, connection, sequence number.
    pub origin: (usize, Token, u32),
    pub db: usize,
    pub proto: Proto,
    pub frames: Vec<u8>,
    /// Replies of the frames that ran before the deferral.
    pub out: Vec<u8>,
    /// Whether the calls count in the statistics (not for a split command's parts).
    pub counted: bool,
    /// Who runs the scripts among the frames (ACL checks of their calls).
    pub caller: Option<std::sync::Arc<shards::acl::Caller>>,
    /// The client's id (SLOWLOG).
    pub client: u64,
}

/// The locked keys of a shard, per database, so a lookup by a command's key bytes needs no key
/// copy.
#[derive(Default)]
struct Held {
    dbs: Vec<HashMap<Key, TxId, ahash::RandomState>>,
    len: usize,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn get(&self, db: usize, key: &[u8]) -> Option<TxId> {
        self.dbs.get(db)?.get(key).copied()
    }

    /// Locks `k` for `tx`; true if it was not locked before.
    fn insert(&mut self, k: &(usize, Key), tx: TxId) -> bool {
        if self.dbs.len() <= k.0 {
            self.dbs.resize_with(k.0 + 1, HashMap::default);
        }
        let new = self.dbs[k.0].insert(k.1.clone(), tx).is_none();
        self.len += new as usize;
        new
    }

    fn remove(&mut self, k: &(usize, Key)) {
        if let Some(m) = self.dbs.get_mut(k.0) {
            if m.remove(k.1.as_slice()).is_some() {
                self.len -= 1;
            }
        }
    }

    /// Whether a transaction other than `tx` holds a key here.
    fn any_other(&self, tx: TxId) -> bool {
        self.len > 0 && self.dbs.iter().flat_map(|m| m.values()).any(|&t| t != tx)
    }
}

/// One shard's lock table.
#[derive(Default)]
pub struct Locks {
    held: Held,
    by_tx: HashMap<TxId, Vec<(usize, Key)>, ahash::RandomState>,
    pending: VecDeque<Pending>,
    deferred: VecDeque<Deferred>,
    /// The transaction that holds the whole shard (a MULTI block run live), if any.
    exclusive: Option<TxId>,
    /// The transaction whose step runs now: its own locks do not stop it.
    pub current: Option<TxId>,
    /// Locks were released since the queues were last looked at.
    released: bool,
    /// Keys written while locked that have blocked clients: they look again on release.
    stalled: Vec<(usize, Key)>,
    /// Scratch for key positions (no allocation per command while locks are held).
    pos: Vec<usize>,
}

impl Locks {
    /// Whether `key` is locked by a transaction other than the one running now.
    pub fn blocks(&self, db: usize, key: &[u8]) -> bool {
        if self.exclusive_other() {
            return true;
        }
        if self.held.is_empty() {
            return false;
        }
        self.held
            .get(db, key)
            .is_some_and(|t| Some(t) != self.current)
    }

    /// Whether another transaction holds the whole shard.
    pub fn exclusive_other(&self) -> bool {
        self.exclusive.is_some_and(|t| Some(t) != self.current)
    }

    pub fn is_idle(&self) -> bool {
        self.held.is_empty() && self.exclusive.is_none()
    }

    /// Whether `tx` must wait for `keys` (or, `exclusive`, for the whole shard).
    fn conflicts(&self, tx: TxId, keys: &[(usize, Key)], exclusive: bool) -> bool {
        if self.exclusive.is_some_and(|t| t != tx) && (exclusive || !keys.is_empty()) {
            return true;
        }
        if exclusive {
            return self.held.any_other(tx);
        }
        keys.iter()
            .any(|k| self.held.get(k.0, &k.1).is_some_and(|t| t != tx))
    }

    /// Whether an older queued request of another transaction wants one of `keys` (a queued
    /// whole-shard request wants them all).
    fn queued_before(&self, tx: TxId, keys: &[(usize, Key)], exclusive: bool) -> bool {
        wanted_before(self.pending.iter(), tx, keys, exclusive)
    }

    fn acquire(&mut self, tx: TxId, keys: &[(usize, Key)], exclusive: bool) {
        if exclusive {
            self.exclusive = Some(tx);
        }
        let mine = self.by_tx.entry(tx).or_default();
        for k in keys {
            if self.held.insert(k, tx) {
                mine.push(k.clone());
            }
        }
    }

    /// Releases every lock of `tx` here; returns the keys.
    fn release(&mut self, tx: TxId) -> Vec<(usize, Key)> {
        // A request still queued (its coordinator went away) goes too.
        if !self.pending.is_empty() {
            self.pending.retain(|p| p.tx != tx);
        }
        if self.exclusive == Some(tx) {
            self.exclusive = None;
            self.released = true;
        }
        let keys = self.by_tx.remove(&tx).unwrap_or_default();
        for k in &keys {
            self.held.remove(k);
        }
        if !keys.is_empty() {
            self.released = true;
        }
        keys
    }

    pub fn defer(&mut self, d: Deferred) {
        self.deferred.push_back(d);
    }

    /// Notes a key whose blocked clients could not run because it is locked.
    pub fn stall(&mut self, key: (usize, Key)) {
        if !self.stalled.contains(&key) {
            self.stalled.push(key);
        }
    }
}

/// Whether one of `older` (queued requests of other transactions) wants what a request of
/// `tx` for `keys` (or the whole shard) wants.
fn wanted_before<'a>(
    older: impl Iterator<Item = &'a Pending>,
    tx: TxId,
    keys: &[(usize, Key)],
    exclusive: bool,
) -> bool {
    older.filter(|p| p.tx != tx).any(|p| {
        p.exclusive || (exclusive && !p.keys.is_empty()) || p.keys.iter().any(|k| keys.contains(k))
    })
}

/// A new transaction id, unique across shards.
pub fn new_tx(ctx: &ShardCtx) -> TxId {
    let n = ctx.next_tx.get().wrapping_add(1);
    ctx.next_tx.set(n);
    ((ctx.id as u64) << 48) | (n & ((1 << 48) - 1))
}

/// The transaction a multi-shard operation of `conn` runs in: the block's, inside a MULTI
/// block run live (it holds every shard already), else a new one.
pub fn tx_for(ctx: &ShardCtx, conn: &Conn) -> TxId {
    match &conn.live {
        Some(b) => b.tx,
        None => new_tx(ctx),
    }
}

/// Whether a command must wait for a lock: one of its keys is locked by another transaction.
pub fn locked_out(ctx: &ShardCtx, l: Lookup, argv: &[&[u8]], db: usize) -> bool {
    let mut locks = ctx.locks.borrow_mut();
    if locks.is_idle() {
        return false;
    }
    if locks.exclusive_other() {
        // The whole shard is taken: anything that reads or writes data waits.
        return !matches!(l.spec.route, shards::cmd::Route::Server(_))
            && (l.spec.flags & (shards::cmd::flag::WRITE | shards::cmd::flag::READONLY) != 0
                || !matches!(l.spec.route, shards::cmd::Route::Keys(_)));
    }
    let mut pos = std::mem::take(&mut locks.pos);
    shards::cmd::key_positions(l.spec, argv, &mut pos);
    let blocked = pos.iter().any(|&p| locks.blocks(db, argv[p]));
    locks.pos = pos;
    blocked
}

/// Serves a transaction step sent to this shard (by another shard or this one): locks, runs,
/// maybe releases. `RepBody::Deferred` means the keys are busy: the answer comes when granted.
pub fn serve(ctx: &ShardCtx, from: usize, p: &ReqPart) -> RepBody {
    let ReqBody::Tx {
        tx,
        lock,
        exclusive,
        op,
        release,
    } = &p.body
    else {
        return RepBody::Ack;
    };
    let keys: Vec<(usize, Key)> = lock.iter().map(|(d, k)| (*d as usize, k.clone())).collect();
    {
        let mut locks = ctx.locks.borrow_mut();
        // A transaction that holds the whole shard (a block run live, whose commands start
        // steps of their own) never waits here: it would wait for requests waiting for it.
        let wants = (*exclusive || !keys.is_empty()) && locks.exclusive != Some(*tx);
        if wants
            && (locks.conflicts(*tx, &keys, *exclusive)
                || locks.queued_before(*tx, &keys, *exclusive))
        {
            locks.pending.push_back(Pending {
                exclusive: *exclusive,
                from,
                conn: p.conn,
                seq: p.seq,
                db: p.db as usize,
                proto: p.proto,
                tx: *tx,
                keys,
                op: clone_op(op),
                release: *release,
                client: p.client,
            });
            return RepBody::Deferred;
        }
        locks.acquire(*tx, &keys, *exclusive);
    }
    if *exclusive && matches!(op, TxOp::Export { .. }) {
        aof_live_open(ctx, *tx);
    }
    run_op(
        ctx,
        from,
        p.conn,
        p.seq,
        p.db as usize,
        p.proto,
        *tx,
        op,
        *release,
        p.client,
    )
}

fn clone_op(op: &TxOp) -> TxOp {
    match op {
        TxOp::Nothing => TxOp::Nothing,
        TxOp::Part { frames, peers } => TxOp::Part {
            frames: frames.clone(),
            peers: peers.clone(),
        },
        TxOp::Export { keys, watch, check } => TxOp::Export {
            keys: keys.clone(),
            watch: watch.clone(),
            check: check.clone(),
        },
        TxOp::Import { entries, peers } => TxOp::Import {
            entries: entries.clone(),
            peers: peers.clone(),
        },
        TxOp::Snapshot(k) => TxOp::Snapshot(*k),
    }
}

/// Runs a step whose locks are held.
#[allow(clippy::too_many_arguments)]
fn run_op(
    ctx: &ShardCtx,
    from: usize,
    conn: Token,
    seq: u32,
    db: usize,
    proto: Proto,
    tx: TxId,
    op: &TxOp,
    release: bool,
    client: u64,
) -> RepBody {
    let outer = ctx.locks.borrow_mut().current.replace(tx);
    let body = match op {
        TxOp::Nothing => RepBody::Ack,
        TxOp::Part { frames, peers } => {
            let mut out = Vec::new();
            let outer_log = aof_begin(ctx, tx);
            {
                let mut e = ctx.engine.borrow_mut();
                e.counting = false;
                e.client = client;
            }
            crate::dispatch::run_frames(ctx, frames, db, proto, &mut out, None);
            ctx.engine.borrow_mut().counting = true;
            aof_end(ctx, tx, peers, outer_log);
            RepBody::Bytes(out)
        }
        TxOp::Export { keys, watch, check } => {
            if !watch.is_empty() {
                ctx.watch(from, conn, seq, watch);
            }
            if crate::multi::watch_holds(ctx, check) {
                crate::tracking::remember_exported(ctx, client, keys);
                ctx.export(keys)
            } else {
                RepBody::Conflict
            }
        }
        TxOp::Import { entries, peers } => {
            let outer_log = aof_begin(ctx, tx);
            ctx.import(entries);
            aof_end(ctx, tx, peers, outer_log);
            RepBody::Ack
        }
        TxOp::Snapshot(kind) => crate::save::serve_snapshot(ctx, *kind),
    };
    ctx.locks.borrow_mut().current = outer;
    if release {
        release_here(ctx, tx);
        // A woken cross-shard waiter has had its turn: the queues it held up go on.
        ctx.resume_awaiting(from, conn);
    }
    body
}

/// Starts logging a transaction's part apart (when the AOF is on): returns the shard's log,
/// with a fresh one in its place.
fn aof_begin(ctx: &ShardCtx, tx: TxId) -> Option<shards::shard::Propagate> {
    if ctx
        .aof_live
        .borrow()
        .as_ref()
        .is_some_and(|(t, _)| *t == tx)
    {
        // Inside a block run live: the block's record holds this part.
        return None;
    }
    let mut e = ctx.engine.borrow_mut();
    let outer = e.prop.take()?;
    e.prop = Some(shards::shard::Propagate::default());
    Some(outer)
}

/// A MULTI block run live takes this shard whole: everything the shard logs until the block
/// releases it is the block's, and goes into one record (see [`aof_live_close`]).
pub fn aof_live_open(ctx: &ShardCtx, tx: TxId) {
    let mut live = ctx.aof_live.borrow_mut();
    if live.is_some() {
        return;
    }
    let mut e = ctx.engine.borrow_mut();
    if let Some(outer) = e.prop.take() {
        e.prop = Some(shards::shard::Propagate::default());
        *live = Some((tx, outer));
    }
}

/// Ends the record of a block run live: `MULTI … EXEC <txid> <every shard>`, written on every
/// shard (the block held them all) even where it changed nothing, so that loading keeps the
/// block only if every shard logged it.
fn aof_live_close(ctx: &ShardCtx, tx: TxId) {
    let outer = {
        let mut live = ctx.aof_live.borrow_mut();
        match live.take() {
            Some((t, outer)) if t == tx => outer,
            other => {
                *live = other;
                return;
            }
        }
    };
    let peers: Vec<u16> = (0..ctx.n as u16).collect();
    aof_end(ctx, tx, &peers, Some(outer));
}

/// Ends a part begun with [`aof_begin`]: its commands go into the shard's log as one
/// `MULTI … EXEC`, and a part of a write over several shards carries the transaction id and
/// its participants on the `EXEC` (even when it changed nothing here), so that loading can
/// tell a transaction every participant logged from one a crash cut short.
fn aof_end(ctx: &ShardCtx, tx: TxId, peers: &[u16], outer: Option<shards::shard::Propagate>) {
    let Some(mut outer) = outer else {
        return;
    };
    let mut e = ctx.engine.borrow_mut();
    let inner = e.prop.take().unwrap_or_default();
    if !inner.buf.is_empty() || peers.len() > 1 {
        shards::resp::encode_command(&[b"MULTI"], &mut outer.buf);
        outer.buf.extend_from_slice(&inner.buf);
        if inner.db.is_some() {
            outer.db = inner.db;
        }
        if peers.len() > 1 {
            // Ids restart with each run and a log spans runs: the run's id makes them unique.
            let id = format!("{}:{tx}", &ctx.shared.run_id[..16]);
            let list = peers
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",");
            shards::resp::encode_command(
                &[b"EXEC", id.as_bytes(), list.as_bytes()],
                &mut outer.buf,
            );
        } else {
            shards::resp::encode_command(&[b"EXEC"], &mut outer.buf);
        }
    }
    e.prop = Some(outer);
}

/// Releases `tx`'s locks on this shard. Blocked clients that could not look at a written key
/// because it was locked look now.
pub fn release_here(ctx: &ShardCtx, tx: TxId) {
    aof_live_close(ctx, tx);
    let mut locks = ctx.locks.borrow_mut();
    locks.release(tx);
    if locks.stalled.is_empty() {
        return;
    }
    let stalled = std::mem::take(&mut locks.stalled);
    let mut engine = ctx.engine.borrow_mut();
    for k in stalled {
        if locks.held.get(k.0, &k.1).is_some() {
            locks.stalled.push(k);
        } else if !engine.ready.contains(&k) {
            engine.ready.push(k);
        }
    }
}

/// After locks were released: runs deferred commands whose keys are free, and grants queued
/// lock requests in arrival order. Called at the end of every batch of work.
pub fn pump(ctx: &ShardCtx) {
    loop {
        {
            let mut locks = ctx.locks.borrow_mut();
            if !locks.released {
                return;
            }
            locks.released = false;
        }
        let deferred = std::mem::take(&mut ctx.locks.borrow_mut().deferred);
        for d in deferred {
            resume(ctx, d);
        }
        let mut queue = std::mem::take(&mut ctx.locks.borrow_mut().pending);
        let mut waiting: VecDeque<Pending> = VecDeque::new();
        while let Some(p) = queue.pop_front() {
            let grant = {
                let mut locks = ctx.locks.borrow_mut();
                let older_wants = wanted_before(waiting.iter(), p.tx, &p.keys, p.exclusive);
                let ok = !older_wants && !locks.conflicts(p.tx, &p.keys, p.exclusive);
                if ok {
                    locks.acquire(p.tx, &p.keys, p.exclusive);
                }
                ok
            };
            if grant {
                if p.exclusive && matches!(p.op, TxOp::Export { .. }) {
                    aof_live_open(ctx, p.tx);
                }
                let body = run_op(
                    ctx, p.from, p.conn, p.seq, p.db, p.proto, p.tx, &p.op, p.release, p.client,
                );
                ctx.reply_to(p.from, p.conn, p.seq, body);
            } else {
                waiting.push_back(p);
            }
        }
        // Requests queued meanwhile (by the steps just run) go after the older ones.
        let mut locks = ctx.locks.borrow_mut();
        waiting.extend(std::mem::take(&mut locks.pending));
        locks.pending = waiting;
    }
}

/// Runs a deferred command run again (it defers again if it meets another lock).
fn resume(ctx: &ShardCtx, mut d: Deferred) {
    let frames = std::mem::take(&mut d.frames);
    let mut out = std::mem::take(&mut d.out);
    {
        let mut e = ctx.engine.borrow_mut();
        e.counting = d.counted;
        e.caller = d.caller.clone();
        e.client = d.client;
    }
    let end = crate::dispatch::run_frames(ctx, &frames, d.db, d.proto, &mut out, Some(d.origin));
    {
        let mut e = ctx.engine.borrow_mut();
        e.counting = true;
        e.caller = None;
    }
    let (origin, conn, seq) = d.origin;
    match end {
        crate::dispatch::RunEnd::Locked(pos) => ctx.locks.borrow_mut().defer(Deferred {
            frames: frames[pos..].to_vec(),
            out,
            ..d
        }),
        crate::dispatch::RunEnd::Blocked => {
            ctx.reply_to(origin, conn, seq, RepBody::Partial(out));
        }
        crate::dispatch::RunEnd::Done => ctx.reply_to(origin, conn, seq, RepBody::Bytes(out)),
        crate::dispatch::RunEnd::Reroute(at, keys) => {
            let rest = frames[at..].to_vec();
            ctx.reply_to(origin, conn, seq, RepBody::Reroute { out, rest, keys });
        }
    }
}

/// One step of a transaction, on one shard.
pub struct Step {
    pub shard: usize,
    pub lock: Vec<(u8, Key)>,
    /// Lock the whole shard.
    pub exclusive: bool,
    pub op: TxOp,
    pub release: bool,
}

/// What to do once every step has run: gets each step's (shard, result) in order.
pub type TxDone = Box<dyn FnOnce(&ShardCtx, &mut Conn, Vec<(usize, RepBody)>)>;

/// Runs `steps` (already in ascending shard order) one after another, then `done`.
pub fn run_steps(
    ctx: &ShardCtx,
    conn: &mut Conn,
    tx: TxId,
    mut steps: VecDeque<Step>,
    mut results: Vec<(usize, RepBody)>,
    done: TxDone,
) {
    let Some(step) = steps.pop_front() else {
        return done(ctx, conn, results);
    };
    conn.tx_open = Some(tx);
    let body = ReqBody::Tx {
        tx,
        lock: step.lock,
        exclusive: step.exclusive,
        op: step.op,
        release: step.release,
    };
    crate::dispatch::fan_out(
        ctx,
        conn,
        vec![(step.shard, body)],
        Box::new(move |ctx, conn, mut r| {
            results.append(&mut r);
            run_steps(ctx, conn, tx, steps, results, done);
        }),
    );
}

/// Releases `tx`'s locks on `shards` without waiting for acknowledgements.
pub fn release_on(ctx: &ShardCtx, conn: &Conn, tx: TxId, shards: impl IntoIterator<Item = usize>) {
    if conn.live.as_ref().is_some_and(|b| b.tx == tx) {
        // A command inside a block run live: the block releases when it is done.
        return;
    }
    for s in shards {
        if s == ctx.id {
            release_here(ctx, tx);
            ctx.resume_awaiting(ctx.id, conn.token);
        } else {
            // Sequence number 0: the acknowledgement is for no operation and is dropped.
            ctx.send_unanswered(
                s,
                conn.token,
                ReqBody::Tx {
                    tx,
                    lock: Vec::new(),
                    exclusive: false,
                    op: TxOp::Nothing,
                    release: true,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> (usize, Key) {
        (0, Key::from(s.as_bytes()))
    }

    #[test]
    fn locks_are_all_or_nothing_and_released_whole() {
        let mut l = Locks::default();
        assert!(!l.blocks(0, b"a"));
        l.acquire(1, &[k("a"), k("b")], false);
        assert!(l.blocks(0, b"a") && l.blocks(0, b"b") && !l.blocks(0, b"c"));
        assert!(l.conflicts(2, &[k("c"), k("b")], false));
        assert!(!l.conflicts(1, &[k("a"), k("c")], false));
        assert!(l.conflicts(2, &[], true) && !l.conflicts(1, &[], true));
        // The holder's own steps are not stopped by its locks.
        l.current = Some(1);
        assert!(!l.blocks(0, b"a"));
        l.current = None;
        l.acquire(1, &[k("a")], false);
        let mut released = l.release(1);
        released.sort_by(|x, y| x.1.as_slice().cmp(y.1.as_slice()));
        assert_eq!(released, vec![k("a"), k("b")]);
        assert!(l.released && l.is_idle() && !l.blocks(0, b"a"));
        assert!(l.release(1).is_empty());
    }
}
