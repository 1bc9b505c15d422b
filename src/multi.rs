//! MULTI/EXEC, DISCARD, WATCH and UNWATCH.
//!
//! While a connection is in MULTI its commands are checked (lookup, arity, NO_MULTI) and queued;
//! a rejected one makes EXEC answer `-EXECABORT`. WATCH asks each owning shard for the key's
//! version (bumped by every change of the key, see `Shard::watch_key`) and whether it is live.
//!
//! EXEC runs the block as one transaction ([`crate::txn`]): every key the queued commands name,
//! and every watched key, is locked on its shard (ascending shard order) and copied to the
//! connection's shard in the same step, where the owners also check the watched versions. If a
//! watched key changed (or, live when watched, has expired since) EXEC answers a null array.
//! Otherwise the commands run in order against the copies, like Redis's single thread would run
//! them, and the changed keys go back to their owners, which then release the locks. The block is
//! therefore atomic and isolated whatever shards its keys live on, and commands over keys on
//! several shards (MSET a b, SMOVE …) work inside it.
//!
//! A block that needs the whole keyspace (KEYS, SCAN, DBSIZE, FLUSHALL, RANDOMKEY, SWAPDB, SORT
//! with BY/GET patterns) or a server command other than SELECT (CLIENT, CONFIG, INFO, …) cannot
//! run on copies: it runs *live* instead. Its transaction takes every shard whole (a lock that
//! stops every other command that reads or writes data there, and every other transaction),
//! then its commands are fed back through the normal request path behind EXEC's array header,
//! carrying the transaction's id so that its locks do not stop them, and the shards are released
//! after the last one. So this kind of block is atomic and isolated too, at the price of
//! stopping the data commands of every shard while it runs.

use crate::conn::Conn;
use crate::ctx::{now_us, ShardCtx};
use crate::dispatch::{encode_command, shard_of};
use crate::msg::{RepBody, ReqBody};
use crate::txn::{Step, TxOp};
use shards::cmd::{lookup, ConnCmd, Lookup, Route};
use shards::keyspace::{Entry, Key};
use shards::resp::Reply;
use shards::{Error, Shard};
use std::collections::VecDeque;

/// What [`queue`] did with a command.
pub enum Queued {
    /// Not in MULTI, or a command that runs at once (EXEC, DISCARD, …).
    No,
    /// Queued, or refused with an error reply.
    Yes,
    /// Cluster mode: the redirection check needs to know which keys exist on this shard
    /// first; the command stays unread until it does.
    Probe(usize, Vec<shards::keyspace::Key>),
}

/// The commands queued since MULTI.
#[derive(Default)]
pub struct Multi {
    pub queued: Vec<Vec<Vec<u8>>>,
    /// A command was rejected while queueing: EXEC fails.
    pub failed: bool,
}

/// A key this connection watches, with what its owner said at WATCH time.
#[derive(Clone)]
pub struct Watched {
    pub db: u8,
    pub key: Key,
    pub version: u64,
    pub live: bool,
}

/// What a watched key must still be at EXEC, checked by its owner.
pub type WatchCheck = Vec<Watched>;

/// Commands that act at once even inside MULTI.
fn is_control(name: &[u8]) -> bool {
    [
        &b"exec"[..],
        b"discard",
        b"multi",
        b"watch",
        b"quit",
        b"reset",
    ]
    .iter()
    .any(|c| c.eq_ignore_ascii_case(name))
}

/// Inside MULTI: queues the command (or rejects it, failing the block). Returns false for the
/// commands that act at once (EXEC, DISCARD, …), which the caller then runs normally.
pub fn queue(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Queued {
    if conn.multi.is_none() || argv.first().is_some_and(|n| is_control(n)) {
        return Queued::No;
    }
    let mut probe = None;
    let rejected = match lookup(argv) {
        Err(e) => {
            if let Some(l) = shards::cmd::registry::find_unchecked(argv) {
                ctx.engine.borrow_mut().stats.count_rejected(l);
            }
            Some(e)
        }
        Ok(l)
            if l.spec.flags & shards::cmd::flag::NO_AUTH == 0
                && crate::acl_cmds::auth_required(ctx, conn) =>
        {
            Some(Error::Other("NOAUTH Authentication required.".into()))
        }
        Ok(l) if l.spec.flags & shards::cmd::flag::NO_MULTI != 0 => {
            Some(Error::err("Command not allowed inside a transaction"))
        }
        Ok(l) if crate::repl::read_only_refuses(ctx, conn, l.spec.flags) => {
            Some(Error::Other(crate::repl::READONLY.into()))
        }
        Ok(l) => crate::acl_cmds::check(ctx, conn, l, argv, shards::acl::LogContext::Multi)
            .err()
            .or_else(|| {
                // Cluster mode: each command is checked for redirection as it is queued (EXEC
                // checks the block as a whole again).
                let verdict = crate::cluster::route::check(ctx, conn, l, argv);
                crate::cluster::route::after_command(conn, l);
                match verdict {
                    crate::cluster::route::Verdict::Serve => None,
                    crate::cluster::route::Verdict::Refuse(text) => Some(Error::Other(text)),
                    crate::cluster::route::Verdict::Probe(shard, keys) => {
                        probe = Some((shard, keys));
                        None
                    }
                }
            })
            .or_else(|| {
                // While over `maxmemory`, Redis queues nothing (queuing takes memory too).
                let now_ms = crate::ctx::now_us() / 1000;
                shards::evict::out_of_memory(&mut ctx.engine.borrow_mut(), now_ms)
                    .then(|| Error::Other(shards::evict::OOM.into()))
            }),
    };
    if let (None, Some((shard, keys))) = (&rejected, probe) {
        return Queued::Probe(shard, keys);
    }
    match rejected {
        Some(e) => {
            let text = e.text();
            ctx.engine.borrow_mut().stats.record_error(&text);
            conn.error(&text);
            if let Some(m) = conn.multi.as_mut() {
                m.failed = true;
            }
        }
        None => {
            if let Some(m) = conn.multi.as_mut() {
                m.queued.push(argv.iter().map(|a| a.to_vec()).collect());
            }
            conn.reply().simple("QUEUED");
        }
    }
    Queued::Yes
}

/// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
pub fn handle(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]], cmd: ConnCmd) -> Result<(), Error> {
    match cmd {
        ConnCmd::Multi => {
            if conn.multi.is_some() {
                return Err(Error::err("MULTI calls can not be nested"));
            }
            conn.multi = Some(Multi::default());
            conn.reply().ok();
        }
        ConnCmd::Discard => {
            if conn.multi.take().is_none() {
                return Err(Error::err("DISCARD without MULTI"));
            }
            unwatch_all(ctx, conn);
            conn.reply().ok();
        }
        ConnCmd::Unwatch => {
            unwatch_all(ctx, conn);
            conn.reply().ok();
        }
        ConnCmd::Watch => {
            if conn.multi.is_some() {
                return Err(Error::err("WATCH inside MULTI is not allowed"));
            }
            watch(ctx, conn, argv);
        }
        ConnCmd::Exec => {
            let Some(m) = conn.multi.take() else {
                return Err(Error::err("EXEC without MULTI"));
            };
            if m.failed {
                unwatch_all(ctx, conn);
                return Err(Error::Other(
                    "EXECABORT Transaction discarded because of previous errors.".into(),
                ));
            }
            if denyoom_queued(&m.queued) {
                // Over `maxmemory`, a block that may grow the data is refused whole, as Redis
                // refuses such an EXEC (its commands are not checked one by one).
                let now_ms = crate::ctx::now_us() / 1000;
                if shards::evict::out_of_memory(&mut ctx.engine.borrow_mut(), now_ms) {
                    unwatch_all(ctx, conn);
                    return Err(Error::Other(format!(
                        "EXECABORT Transaction discarded because of: {}",
                        shards::evict::OOM
                    )));
                }
            }
            exec(ctx, conn, m.queued);
        }
        _ => {}
    }
    Ok(())
}

/// Whether a queued command may grow the data (`denyoom`).
fn denyoom_queued(queued: &[Vec<Vec<u8>>]) -> bool {
    queued.iter().any(|cmd| {
        let argv: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
        lookup(&argv).is_ok_and(|l| l.spec.flags & shards::cmd::flag::DENYOOM != 0)
    })
}

/// WATCH: asks each owner for its keys' versions, then answers OK.
fn watch(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) {
    let db = conn.db as u8;
    let mut per_shard: Vec<Vec<(u8, Key)>> = vec![Vec::new(); ctx.n];
    for k in &argv[1..] {
        let key = Key::from(*k);
        let already = conn.watching.iter().any(|w| w.db == db && w.key == key)
            || per_shard
                .iter()
                .flatten()
                .any(|(d, x)| *d == db && *x == key);
        if !already {
            per_shard[shard_of(ctx, k)].push((db, key));
        }
    }
    let parts: Vec<(usize, ReqBody)> = per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, k)| !k.is_empty())
        .map(|(s, k)| (s, ReqBody::WatchKeys(k)))
        .collect();
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(|_, conn, results| {
            for (_, body) in results {
                if let RepBody::Watched(w) = body {
                    conn.watching.extend(w);
                }
            }
            conn.reply().ok();
        }),
    );
}

/// Serves WATCH's request on an owner: registers the keys, returns their versions.
pub fn serve_watch(ctx: &ShardCtx, keys: &[(u8, Key)]) -> RepBody {
    let now_ms = now_us() / 1000;
    let mut engine = ctx.engine.borrow_mut();
    let watched = keys
        .iter()
        .map(|(db, k)| {
            let (version, live) = engine.watch_key(*db as usize, k, now_ms);
            Watched {
                db: *db,
                key: k.clone(),
                version,
                live,
            }
        })
        .collect();
    RepBody::Watched(watched)
}

/// Whether every watched key here is as it was (checked by the owner, under the locks).
pub fn watch_holds(ctx: &ShardCtx, check: &[Watched]) -> bool {
    let now_ms = now_us() / 1000;
    let engine = ctx.engine.borrow();
    check
        .iter()
        .all(|w| engine.watch_holds(w.db as usize, &w.key, w.version, w.live, now_ms))
}

/// Forgets the connection's watched keys (their owners are told without waiting).
pub fn unwatch_all(ctx: &ShardCtx, conn: &mut Conn) {
    if conn.watching.is_empty() {
        return;
    }
    let mut per_shard: Vec<Vec<(u8, Key)>> = vec![Vec::new(); ctx.n];
    for w in std::mem::take(&mut conn.watching) {
        per_shard[shard_of(ctx, &w.key)].push((w.db, w.key));
    }
    for (s, keys) in per_shard.into_iter().enumerate() {
        if keys.is_empty() {
            continue;
        }
        if s == ctx.id {
            let mut engine = ctx.engine.borrow_mut();
            for (db, k) in &keys {
                engine.unwatch_key(*db as usize, k);
            }
        } else {
            // Sequence number 0: the acknowledgement is for no operation and is dropped.
            ctx.send_unanswered(s, conn.token, ReqBody::UnwatchKeys(keys));
        }
    }
}

/// How EXEC runs a block.
enum Plan {
    /// On copies of these keys, under their locks.
    Copies(Vec<(u8, Key)>),
    /// Through the normal request path, unisolated.
    Live,
}

/// The keys of a queued block (following SELECTs), or Live when copies cannot serve it.
fn plan(conn: &Conn, queued: &[Vec<Vec<u8>>]) -> Plan {
    let mut db = conn.db;
    let mut keys: Vec<(u8, Key)> = Vec::new();
    for cmd in queued {
        let argv: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
        let Ok(l) = lookup(&argv) else {
            return Plan::Live;
        };
        match l.spec.route {
            Route::Server(ConnCmd::Select) => {
                if let Some(n) = argv.get(1).and_then(|a| shards::util::parse_i64(a)) {
                    if (0..shards::limits::DATABASES as i64).contains(&n) {
                        db = n as usize;
                    }
                }
            }
            Route::Keys(_) if !crate::dispatch::is_sort_with_patterns(l, &argv) => {
                for k in crate::dispatch::gather_keys(l, &argv, db) {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
            }
            _ => return Plan::Live,
        }
    }
    Plan::Copies(keys)
}

/// EXEC of a block that was queued without errors.
fn exec(ctx: &ShardCtx, conn: &mut Conn, queued: Vec<Vec<Vec<u8>>>) {
    match plan(conn, &queued) {
        Plan::Live => exec_live(ctx, conn, queued),
        Plan::Copies(keys) => exec_on_copies(ctx, conn, queued, keys),
    }
}

/// After EXEC's locking steps: the connection stops watching, and if an owner found a watched
/// key changed, the locks on `held` go and EXEC answers a null array. Returns whether it did.
fn aborted_by_watch(
    ctx: &ShardCtx,
    conn: &mut Conn,
    tx: crate::txn::TxId,
    held: impl IntoIterator<Item = usize>,
    results: &[(usize, RepBody)],
) -> bool {
    unwatch_all(ctx, conn);
    if !results.iter().any(|(_, b)| matches!(b, RepBody::Conflict)) {
        return false;
    }
    crate::txn::release_on(ctx, conn, tx, held);
    conn.reply().null_array();
    true
}

/// Runs the block through the normal request path, isolated by a transaction that holds
/// every shard whole (ascending order; the owners check the watched keys in the same step):
/// writes EXEC's array header and feeds the commands back as if the client had sent them
/// next. The commands run in the block's transaction, so its locks do not stop them; the
/// shards are released once the last one is done (see `dispatch::process`).
fn exec_live(ctx: &ShardCtx, conn: &mut Conn, queued: Vec<Vec<Vec<u8>>>) {
    let mut per_shard: Vec<Vec<Watched>> = vec![Vec::new(); ctx.n];
    for w in &conn.watching {
        per_shard[shard_of(ctx, &w.key)].push(w.clone());
    }
    let steps: VecDeque<Step> = per_shard
        .into_iter()
        .enumerate()
        .map(|(s, check)| Step {
            shard: s,
            lock: Vec::new(),
            exclusive: true,
            op: TxOp::Export {
                keys: Vec::new(),
                watch: Vec::new(),
                check,
            },
            release: false,
        })
        .collect();
    let tx = crate::txn::new_tx(ctx);
    crate::txn::run_steps(
        ctx,
        conn,
        tx,
        steps,
        Vec::new(),
        Box::new(move |ctx, conn, results| {
            if aborted_by_watch(ctx, conn, tx, 0..ctx.n, &results) {
                return;
            }
            Reply::new(&mut conn.wbuf, conn.proto).array(queued.len());
            let mut frames = Vec::new();
            for cmd in &queued {
                let argv: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
                encode_command(&argv, &mut frames);
            }
            conn.inject.extend_from_slice(&frames);
            conn.live = Some(crate::conn::LiveBlock {
                tx,
                left: queued.len(),
                fed: false,
            });
        }),
    );
}

/// Runs the block on copies of its keys, under their locks, and sends the changes back.
fn exec_on_copies(
    ctx: &ShardCtx,
    conn: &mut Conn,
    queued: Vec<Vec<Vec<u8>>>,
    keys: Vec<(u8, Key)>,
) {
    // Per shard: the keys to copy, and the watched keys to check.
    type Share = (Vec<(u8, Key)>, Vec<Watched>);
    let mut per_shard: Vec<Share> = vec![(Vec::new(), Vec::new()); ctx.n];
    for (db, k) in keys {
        per_shard[shard_of(ctx, &k)].0.push((db, k));
    }
    for w in &conn.watching {
        per_shard[shard_of(ctx, &w.key)].1.push(w.clone());
    }
    let steps: VecDeque<Step> = per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, (k, w))| !k.is_empty() || !w.is_empty())
        .map(|(s, (keys, check))| {
            let mut lock = keys.clone();
            for w in &check {
                if !lock.iter().any(|(d, k)| *d == w.db && *k == w.key) {
                    lock.push((w.db, w.key.clone()));
                }
            }
            Step {
                shard: s,
                lock,
                exclusive: false,
                op: TxOp::Export {
                    keys,
                    watch: Vec::new(),
                    check,
                },
                release: false,
            }
        })
        .collect();
    let held: Vec<usize> = steps.iter().map(|s| s.shard).collect();
    let tx = crate::txn::new_tx(ctx);
    crate::txn::run_steps(
        ctx,
        conn,
        tx,
        steps,
        Vec::new(),
        Box::new(move |ctx, conn, results| {
            if aborted_by_watch(ctx, conn, tx, held.iter().copied(), &results) {
                return;
            }
            let mut before: Vec<(u8, Key, Option<Entry>)> = Vec::new();
            for (_, body) in results {
                if let RepBody::Entries(e) = body {
                    before.extend(e);
                }
            }
            let (reply, mut scratch) = run_block(ctx, conn, &queued, &before);
            {
                // The block's commands count here, as if they had run on this shard.
                let mut engine = ctx.engine.borrow_mut();
                engine.stats.absorb(&scratch.stats);
            }
            crate::dispatch::absorb_events(ctx, &mut scratch);
            crate::dispatch::write_back(ctx, conn, tx, held, before, &mut scratch, reply);
        }),
    );
}

/// Runs the queued commands in order against a scratch shard holding the copies; returns
/// EXEC's reply and the scratch shard (whose statistics the real one takes over).
fn run_block(
    ctx: &ShardCtx,
    conn: &mut Conn,
    queued: &[Vec<Vec<u8>>],
    before: &[(u8, Key, Option<Entry>)],
) -> (Vec<u8>, Shard) {
    let mut scratch = crate::dispatch::scratch_with(ctx, before);
    scratch.caller = crate::acl_cmds::caller(ctx, conn);
    ctx.engine.borrow_mut().lend_timing(&mut scratch, conn.id);
    let proto = conn.proto;
    let mut out = Vec::new();
    Reply::new(&mut out, proto).array(queued.len());
    let now = now_us();
    for cmd in queued {
        let argv: Vec<&[u8]> = cmd.iter().map(|a| a.as_slice()).collect();
        let l: Lookup = match lookup(&argv) {
            Ok(l) => l,
            Err(e) => {
                Reply::new(&mut out, proto).error(&e.text());
                continue;
            }
        };
        // Permissions may have changed since the command was queued.
        if let Err(e) = crate::acl_cmds::check(ctx, conn, l, &argv, shards::acl::LogContext::Multi)
        {
            Reply::new(&mut out, proto).error(&e.text());
            continue;
        }
        if let Route::Server(ConnCmd::Select) = l.spec.route {
            match argv.get(1).and_then(|a| shards::util::parse_i64(a)) {
                Some(n) if (0..shards::limits::DATABASES as i64).contains(&n) => {
                    conn.db = n as usize;
                    Reply::new(&mut out, proto).ok();
                }
                Some(_) => Reply::new(&mut out, proto).error(&Error::DbIndexOutOfRange.text()),
                None => Reply::new(&mut out, proto).error(&Error::NotInteger.text()),
            }
            scratch.stats.count_call(l);
            continue;
        }
        // Inside a block a blocking command does not block: it answers as if timed out.
        if scratch
            .execute_reply(l, &argv, conn.db, now, proto, &mut out)
            .is_some()
        {
            out.extend_from_slice(&crate::block::cannot_block_reply(l.spec.name, proto));
        }
        if scratch.reroute.take().is_some() {
            // The block's copies hold only the keys its commands declare.
            Reply::new(&mut out, proto).error(crate::dispatch::UNDECLARED_IN_BLOCK);
        }
    }
    ctx.engine.borrow_mut().take_back_timing(&mut scratch, true);
    (out, scratch)
}
