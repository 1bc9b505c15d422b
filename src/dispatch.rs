//! The request path: parse a connection's pipeline, look each command up, and execute it here,
//! forward it to the shard that owns its keys, or split it over several shards.
//!
//! Ordering: a connection's commands take effect in the order it sent them. Consecutive commands
//! for the same other shard travel together as one run; the connection then waits, executing
//! nothing else, until that run's replies are in. Replies therefore also leave in request order.
//!
//! Multi-key commands whose keys live on several shards either split per key (DEL, MGET, MSET:
//! each shard runs its share, replies merge) or gather (RENAME, COPY, MSETNX, LCS: the entries
//! are copied here, the command runs against the copies, changed entries go back). Both run as
//! transactions ([`crate::txn`]): their keys are locked on every shard first, so they are
//! atomic and isolated. A command that meets a key locked by a transaction waits for it.

use crate::block::Waiter;
use crate::conn::{Conn, Wait};
use crate::ctx::{now_us, ShardCtx};
use crate::msg::{RepBody, ReqBody, ReqPart, Token};
use shards::cmd::{
    key_positions, lookup, BeginSearch, CommandSpec, ConnCmd, FindKeys, KeySpec, Lookup, Merge,
    Route, Split,
};
use shards::keyspace::{Entry, Key};
use shards::resp::{parse_command, Parsed, Proto, Reply};
use shards::{Error, Shard};
use smallvec::SmallVec;

/// Where a command goes.
enum Target {
    Local(Lookup),
    Remote(usize, Lookup),
    Fail(Error),
    Server(Lookup, ConnCmd),
    Split(Lookup, Merge),
    All(Lookup, Merge),
    Gather(Lookup),
    /// CLIENT PAUSE holds the command: the connection waits, its input unread.
    Paused,
    /// Cluster mode, a slot in migration: ask this shard which of these keys exist, then
    /// route the command again (its input stays unread meanwhile).
    Probe(usize, Vec<Key>),
}

/// The shard that owns `key`.
pub fn shard_of(ctx: &ShardCtx, key: &[u8]) -> usize {
    crate::load::shard_of(key, ctx.n)
}

pub use shards::resp::encode_command;

/// Parses and carries out as much of the connection's input as it can without waiting.
pub fn process(ctx: &ShardCtx, conn: &mut Conn) {
    let Some(tx) = conn.live.as_ref().map(|b| b.tx) else {
        return process_input(ctx, conn);
    };
    // A block run live: its commands run in its transaction, which holds every shard; once
    // the last one is done, the shards are released.
    let outer = ctx.locks.borrow_mut().current.replace(tx);
    process_input(ctx, conn);
    ctx.locks.borrow_mut().current = outer;
    if conn.live.as_ref().is_some_and(|b| b.left == 0) && !conn.waiting() {
        conn.live = None;
        // Every shard releases and ends the block's AOF record; EXEC's reply is complete only
        // once all have answered (with `appendfsync always`, once each record is synced).
        let unsent = conn.wbuf.split_off(conn.wpos.min(conn.wbuf.len()));
        let parts = (0..ctx.n)
            .map(|s| {
                let body = ReqBody::Tx {
                    tx,
                    lock: Vec::new(),
                    exclusive: false,
                    op: crate::txn::TxOp::Nothing,
                    release: true,
                };
                (s, body)
            })
            .collect();
        fan_out(
            ctx,
            conn,
            parts,
            Box::new(move |ctx, conn, _| {
                conn.wbuf.extend_from_slice(&unsent);
                process_input(ctx, conn);
            }),
        );
    }
}

/// One command of a block run live has been dispatched.
fn live_step(conn: &mut Conn) {
    if let Some(b) = conn.live.as_mut().filter(|b| b.fed) {
        b.left = b.left.saturating_sub(1);
    }
}

fn process_input(ctx: &ShardCtx, conn: &mut Conn) {
    if conn.waiting() || conn.close_after_reply {
        return;
    }
    // Stopping: clients are no longer served (the shard's own connection still is).
    if conn.fd >= 0
        && ctx
            .shared
            .persist
            .stopping
            .load(std::sync::atomic::Ordering::Acquire)
    {
        return;
    }
    if !crate::acl_cmds::refresh(ctx, conn) {
        // Its user was deleted (or lost a channel it listens to): closed, as Redis does.
        conn.close_after_reply = true;
        return;
    }
    inject(conn);
    let mut rbuf = std::mem::take(&mut conn.rbuf);
    let mut scratch = std::mem::take(&mut conn.scratch);
    let mut ranges = std::mem::take(&mut conn.ranges);
    let mut pos = conn.rpos;
    let mut run: Option<(usize, Vec<u8>)> = None;
    let mut run_caller = None;
    let mut run_track = false;
    let limits = ctx.limits.get();
    // One clock reading per batch, as Redis reads it once per event-loop iteration.
    let now = now_us();
    loop {
        if conn.waiting() || conn.close_after_reply {
            break;
        }
        settle_mute(conn);
        if !conn.inject.is_empty() {
            let frames = std::mem::take(&mut conn.inject);
            rbuf.splice(pos..pos, frames);
            if let Some(b) = conn.live.as_mut() {
                b.fed = true;
            }
        }
        let (consumed, inline) =
            match parse_command(&rbuf[pos..], &mut ranges, &mut scratch, limits) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Empty { consumed }) => {
                    pos += consumed;
                    continue;
                }
                Ok(Parsed::Command { consumed }) => (consumed, false),
                Ok(Parsed::Inline { consumed }) => (consumed, true),
                Err(e) => {
                    if run.is_some() {
                        break;
                    }
                    let text = e.reply_text();
                    ctx.engine.borrow_mut().stats.record_error(&text);
                    conn.error(&text);
                    conn.close_after_reply = true;
                    pos = rbuf.len();
                    break;
                }
            };
        let base: &[u8] = if inline { &scratch } else { &rbuf[pos..] };
        let argv: SmallVec<[&[u8]; 8]> = ranges.iter().map(|r| &base[r.clone()]).collect();
        if conn.reply_mode != crate::conn::ReplyMode::On && !is_client_reply(&argv) {
            // CLIENT REPLY OFF/SKIP: this command's output is cut once it is done; it runs
            // alone so that nothing else's output mixes with it.
            if run.is_some() {
                break;
            }
            if conn.reply_mode == crate::conn::ReplyMode::Skip {
                conn.reply_mode = crate::conn::ReplyMode::On;
            }
            conn.mute_mark = Some(conn.wbuf.len());
        }
        if conn.multi.is_some() {
            // Queued replies must follow those of a run still out.
            if run.is_some() {
                break;
            }
            match crate::multi::queue(ctx, conn, &argv) {
                crate::multi::Queued::No => {}
                crate::multi::Queued::Yes => {
                    pos += consumed;
                    continue;
                }
                crate::multi::Queued::Probe(shard, keys) => {
                    crate::cluster::route::probe(ctx, conn, shard, keys);
                    break;
                }
            }
        }
        if conn.tracking.is_some() {
            conn.track_now = crate::tracking::reads_tracked(conn);
        }
        let target = busy_check(ctx, route(ctx, conn, &argv), &argv);
        let mut seen = target_lookup(&target);
        if let Some(l) = seen.filter(|l| crate::monitor::shown_before(*l)) {
            // Monitors see a script before the commands it calls, as in Redis.
            crate::monitor::feed(ctx, conn, l, &argv);
            seen = None;
        }
        if matches!(target, Target::Paused) {
            crate::pause::hold(ctx, conn);
            break;
        }
        if let Target::Probe(shard, keys) = target {
            if run.is_none() {
                crate::cluster::route::probe(ctx, conn, shard, keys);
            }
            break;
        }
        match target {
            Target::Remote(shard, l) => {
                match &run {
                    // A run goes to one shard, its reads all remembered for client-side
                    // caching or none.
                    Some((s, _)) if *s != shard || run_track != conn.track_now => break,
                    Some(_) => {}
                    None => {
                        run = Some((shard, Vec::new()));
                        run_track = conn.track_now;
                    }
                }
                if let Some((_, frames)) = &mut run {
                    if inline {
                        encode_command(&argv, frames);
                    } else {
                        frames.extend_from_slice(&rbuf[pos..pos + consumed]);
                    }
                }
                conn.last_cmd = names(l);
                if l.spec.group == shards::cmd::Group::Scripting && run_caller.is_none() {
                    run_caller = crate::acl_cmds::caller(ctx, conn);
                }
                if l.spec.flags & shards::cmd::flag::BLOCKING != 0 {
                    // A blocking command ends the run: what follows must wait for its answer.
                    crate::monitor::feed(ctx, conn, l, &argv);
                    pos += consumed;
                    live_step(conn);
                    break;
                }
            }
            _ if run.is_some() => break,
            target => {
                execute(ctx, conn, target, &argv, now);
                if conn.tracking.is_some() {
                    // Its own invalidations follow the reply, before the next command's.
                    crate::tracking::drain(ctx, Some(conn), false);
                }
            }
        }
        if let Some(l) = seen {
            crate::monitor::feed(ctx, conn, l, &argv);
        }
        if conn.tracking.is_some() {
            crate::tracking::after_command(conn, seen.map_or("", |l| names(l).0));
        }
        pos += consumed;
        live_step(conn);
        // The last command of a block run live: nothing after it may join its run.
        if conn.live.as_ref().is_some_and(|b| b.left == 0) {
            break;
        }
        if conn.mute_mark.is_some() && run.is_some() {
            break;
        }
    }
    if run.is_none() && !conn.waiting() {
        settle_mute(conn);
    }
    if let Some((shard, frames)) = run {
        conn.seq = crate::conn::next_seq(conn.seq);
        let part = ReqPart {
            conn: conn.token,
            seq: conn.seq,
            db: conn.db as u8,
            proto: conn.proto,
            tx: conn.tx_id(),
            body: ReqBody::Run(frames),
            caller: run_caller,
            client: conn.id
                | if run_track {
                    shards::tracking::READS_TRACKED
                } else {
                    0
                },
        };
        ctx.send(shard, part);
        conn.wait = Wait::Run;
    }
    if pos >= rbuf.len() {
        rbuf.clear();
        pos = 0;
    } else if pos > 64 * 1024 && pos * 2 > rbuf.len() {
        rbuf.drain(..pos);
        pos = 0;
    }
    conn.rpos = pos;
    conn.rbuf = rbuf;
    conn.scratch = scratch;
    conn.ranges = ranges;
}

/// Puts commands a block run live feeds back (see [`crate::multi`]) before the unread input.
fn inject(conn: &mut Conn) {
    if conn.inject.is_empty() {
        return;
    }
    let frames = std::mem::take(&mut conn.inject);
    let at = conn.rpos.min(conn.rbuf.len());
    conn.rbuf.splice(at..at, frames);
    if let Some(b) = conn.live.as_mut() {
        b.fed = true;
    }
}

fn names(l: Lookup) -> (&'static str, Option<&'static str>) {
    match l.parent {
        Some(p) => (p.name, Some(l.spec.name)),
        None => (l.spec.name, None),
    }
}

/// Whether a command is CLIENT REPLY (which answers even while replies are off).
fn is_client_reply(argv: &[&[u8]]) -> bool {
    argv.len() >= 2
        && argv[0].eq_ignore_ascii_case(b"client")
        && argv[1].eq_ignore_ascii_case(b"reply")
}

/// Cuts the output of a command whose reply is suppressed, once it is complete.
fn settle_mute(conn: &mut Conn) {
    if let Some(mark) = conn.mute_mark {
        if !conn.waiting() {
            conn.wbuf.truncate(mark.max(conn.wpos));
            conn.mute_mark = None;
        }
    }
}

/// The command a target runs (none for a refusal).
fn target_lookup(t: &Target) -> Option<Lookup> {
    match t {
        Target::Fail(_) | Target::Paused | Target::Probe(..) => None,
        Target::Local(l)
        | Target::Remote(_, l)
        | Target::Server(l, _)
        | Target::Split(l, _)
        | Target::All(l, _)
        | Target::Gather(l) => Some(*l),
    }
}

/// Decides where a command runs.
fn route(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Target {
    let l = match lookup(argv) {
        Ok(l) => l,
        Err(e) => {
            if let Some(l) = shards::cmd::registry::find_unchecked(argv) {
                ctx.engine.borrow_mut().stats.count_rejected(l);
            }
            return Target::Fail(e);
        }
    };
    let spec = l.spec;
    if conn.reroute_keys.is_some() {
        // A script a shard sent back (see `RepBody::Reroute`): a transaction this time.
        return Target::Gather(l);
    }
    if spec.flags & shards::cmd::flag::NO_AUTH == 0 && crate::acl_cmds::auth_required(ctx, conn) {
        ctx.engine.borrow_mut().stats.count_rejected(l);
        return Target::Fail(Error::Other("NOAUTH Authentication required.".into()));
    }
    let context = if conn.live.is_some() {
        // A block run live: EXEC re-checks its commands.
        shards::acl::LogContext::Multi
    } else {
        shards::acl::LogContext::Toplevel
    };
    if let Err(e) = crate::acl_cmds::check(ctx, conn, l, argv, context) {
        ctx.engine.borrow_mut().stats.count_rejected(l);
        if spec.name == "exec" {
            // As Redis: an EXEC refused discards the transaction (and says so even outside one).
            conn.multi = None;
            crate::multi::unwatch_all(ctx, conn);
            return Target::Fail(Error::Other(format!(
                "EXECABORT Transaction discarded because of: {}",
                e.text().trim_start_matches('-')
            )));
        }
        return Target::Fail(e);
    }
    match crate::cluster::route::check(ctx, conn, l, argv) {
        crate::cluster::route::Verdict::Serve => {}
        crate::cluster::route::Verdict::Probe(shard, keys) => return Target::Probe(shard, keys),
        crate::cluster::route::Verdict::Refuse(text) => {
            crate::cluster::route::after_command(conn, l);
            ctx.engine.borrow_mut().stats.count_rejected(l);
            if spec.name == "exec" {
                // As Redis: a redirected EXEC discards the transaction.
                conn.multi = None;
                crate::multi::unwatch_all(ctx, conn);
            }
            return Target::Fail(Error::Other(text));
        }
    }
    crate::cluster::route::after_command(conn, l);
    if conn.monitor
        && spec.flags
            & (shards::cmd::flag::READONLY
                | shards::cmd::flag::WRITE
                | shards::cmd::flag::MAY_REPLICATE)
            != 0
    {
        // A monitor is a replica to Redis: it may not touch the keyspace.
        return Target::Fail(Error::err("Replica can't interact with the keyspace"));
    }
    if crate::repl::read_only_refuses(ctx, conn, spec.flags) {
        return Target::Fail(Error::Other(crate::repl::READONLY.into()));
    }
    if !conn.master_link
        && crate::repl::stale_refused(ctx, spec.flags | l.parent.map_or(0, |p| p.flags))
    {
        return Target::Fail(Error::Other(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
                .into(),
        ));
    }
    if crate::repl::too_few_replicas(ctx, conn, spec.flags, ctx.min_replicas.get()) {
        return Target::Fail(Error::Other(
            "NOREPLICAS Not enough good replicas to write.".into(),
        ));
    }
    if crate::pause::holds(&ctx.shared, spec.flags | l.parent.map_or(0, |p| p.flags)) {
        return Target::Paused;
    }
    if conn.proto == Proto::Resp2 && crate::pubsub::subscribed(conn) {
        let name = l.parent.map_or(spec.name, |p| p.name);
        if !crate::pubsub::allowed_when_subscribed(name) {
            return Target::Fail(Error::err(format!(
                "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                l.full_name()
            )));
        }
        if name == "ping" {
            return Target::Server(l, shards::cmd::ConnCmd::PubSub);
        }
    }
    match spec.route {
        Route::Server(c) => Target::Server(l, c),
        Route::AllShards(_) if ctx.n == 1 => Target::Local(l),
        Route::AllShards(m) => Target::All(l, m),
        Route::ScanCursor => {
            match shards::cmd::keys::scan_shard_of(argv.get(1).copied().unwrap_or(b"")) {
                // A cursor naming a shard beyond the count (forged by a client) maps onto a real one.
                Some(s) if s % ctx.n != ctx.id => Target::Remote(s % ctx.n, l),
                _ => Target::Local(l),
            }
        }
        Route::Keys(split) => {
            if ctx.n == 1 {
                return Target::Local(l);
            }
            // The common case first: one key at a fixed position.
            if let (
                None,
                [KeySpec {
                    begin: BeginSearch::Index(i),
                    find: FindKeys::Range { lastkey: 0, .. },
                    ..
                }],
            ) = (spec.getkeys, spec.keys)
            {
                let Some(key) = argv.get(*i as usize) else {
                    return Target::Local(l);
                };
                let shard = shard_of(ctx, key);
                return if shard == ctx.id {
                    Target::Local(l)
                } else {
                    Target::Remote(shard, l)
                };
            }
            let mut pos = Vec::new();
            key_positions(spec, argv, &mut pos);
            let Some(&first) = pos.first() else {
                return Target::Local(l);
            };
            // SORT's BY/GET patterns name keys that may live anywhere.
            if is_sort_with_patterns(l, argv) {
                return Target::Gather(l);
            }
            let shard = shard_of(ctx, argv[first]);
            if pos[1..].iter().all(|&p| shard_of(ctx, argv[p]) == shard) {
                return if shard == ctx.id {
                    Target::Local(l)
                } else {
                    Target::Remote(shard, l)
                };
            }
            match split {
                Split::PerKey(m) => {
                    // Each key must come with its values (MSET's pairs): otherwise one shard
                    // would apply its part while another reports the error.
                    if let Some(FindKeys::Range { step, .. }) = spec.keys.first().map(|k| k.find) {
                        if step > 1 && !(argv.len() - first).is_multiple_of(step as usize) {
                            return Target::Fail(Error::WrongArity(l.full_name()));
                        }
                    }
                    Target::Split(l, m)
                }
                Split::Gather | Split::Never => Target::Gather(l),
            }
        }
    }
}

fn execute(ctx: &ShardCtx, conn: &mut Conn, target: Target, argv: &[&[u8]], now: u64) {
    match target {
        Target::Local(l) => {
            conn.last_cmd = names(l);
            let (db, proto) = (conn.db, conn.proto);
            if l.spec.group == shards::cmd::Group::Scripting
                && l.spec.run.is_some()
                && !ctx.locks.borrow().is_idle()
            {
                // A script could reach keys a transaction holds here: it takes locks instead.
                start_gather(ctx, conn, l, argv);
                return;
            }
            if crate::txn::locked_out(ctx, l, argv, db) {
                // Wait for the transaction: answered when the lock goes.
                conn.seq = crate::conn::next_seq(conn.seq);
                let mut frames = Vec::new();
                encode_command(argv, &mut frames);
                ctx.locks.borrow_mut().defer(crate::txn::Deferred {
                    origin: (ctx.id, conn.token, conn.seq),
                    db,
                    proto,
                    frames,
                    out: Vec::new(),
                    counted: true,
                    caller: crate::acl_cmds::caller(ctx, conn),
                    client: crate::tracking::client_tag(conn),
                });
                conn.wait = Wait::Run;
                return;
            }
            let script = l.spec.group == shards::cmd::Group::Scripting;
            let caller = if script {
                crate::acl_cmds::caller(ctx, conn)
            } else {
                None
            };
            // One borrow for the common case: who runs it (SLOWLOG, script ACL checks), then run.
            let blocked = {
                let mut e = ctx.engine.borrow_mut();
                e.client = crate::tracking::client_tag(conn);
                if script {
                    e.caller = caller;
                }
                let blocked = e.execute_reply(l, argv, db, now, proto, &mut conn.wbuf);
                if script {
                    e.caller = None;
                }
                blocked
            };
            let reroute = match l.spec.group {
                shards::cmd::Group::Scripting => ctx.engine.borrow_mut().reroute.take(),
                _ => None,
            };
            if let Some(keys) = reroute {
                // A script reached keys on other shards before finishing: it runs again over
                // them, as a transaction on copies.
                let keys = keys.into_iter().map(|(d, k)| (d as u8, k)).collect();
                gather_these(ctx, conn, l, argv, keys);
                return;
            }
            if blocked.is_some() && conn.live.is_some() {
                // Inside a block a blocking command does not block.
                ctx.engine.borrow_mut().block_args = None;
                conn.wbuf
                    .extend_from_slice(&crate::block::cannot_block_reply(l.spec.name, proto));
            } else if let Some(ms) = blocked {
                let frame = parked_frame(ctx, argv, None);
                let origin = (ctx.id, conn.token, conn.seq);
                ctx.block(waiter(l, argv, frame, origin, db, proto, ms, now));
                conn.wait = Wait::Blocked { shard: ctx.id };
            }
        }
        // Handled by the caller, which holds the connection instead.
        Target::Paused | Target::Probe(..) => {}
        Target::Fail(e) => {
            let text = e.text();
            ctx.engine.borrow_mut().stats.record_error(&text);
            conn.error(&text);
        }
        Target::Server(l, c) => {
            conn.last_cmd = names(l);
            let t0 = crate::clock::ticks();
            crate::server_cmds::handle(ctx, conn, l, argv, c);
            // Timed (what ran here, not the other shards' parts) and counted after it ran, as
            // Redis does (INFO does not see its own call).
            let spent = crate::clock::ticks().wrapping_sub(t0);
            let mut e = ctx.engine.borrow_mut();
            e.stats.count_call(l);
            e.client = conn.id;
            e.record_time(l, argv, spent, now);
        }
        Target::Split(l, m) => {
            conn.last_cmd = names(l);
            if l.spec.flags & shards::cmd::flag::DENYOOM != 0 {
                // Refused whole or run whole: the parts do not check memory again (a part
                // refused on one shard while the other applies its own would split the write).
                let mut e = ctx.engine.borrow_mut();
                if shards::evict::out_of_memory(&mut e, now / 1000) {
                    e.stats.count_rejected(l);
                    drop(e);
                    let text = Error::Other(shards::evict::OOM.into()).text();
                    ctx.engine.borrow_mut().stats.record_error(&text);
                    conn.error(&text);
                    return;
                }
            }
            ctx.engine.borrow_mut().stats.count_call(l);
            start_split(ctx, conn, l, argv, m);
        }
        Target::All(l, m) => {
            ctx.engine.borrow_mut().stats.count_call(l);
            conn.last_cmd = names(l);
            start_all(ctx, conn, l, argv, m);
        }
        Target::Gather(l) => {
            ctx.engine.borrow_mut().stats.count_call(l);
            conn.last_cmd = names(l);
            match conn.reroute_keys.take() {
                // A script a shard sent back, with the keys it reached there.
                Some(keys) => gather_these(ctx, conn, l, argv, keys),
                None => start_gather(ctx, conn, l, argv),
            }
        }
        Target::Remote(..) => {}
    }
}

/// How a run of frames ended.
pub enum RunEnd {
    /// Every frame ran.
    Done,
    /// The last frame blocked: it is parked, its answer comes later.
    Blocked,
    /// The frame at this byte offset touches a key locked by a transaction: it and the rest wait.
    Locked(usize),
    /// The frame at this byte offset is a script that must run as a transaction over these
    /// keys (on the connection's shard); it and the rest go back to the connection.
    Reroute(usize, Vec<(u8, Key)>),
}

/// Executes forwarded frames against this shard's engine (no routing: the sender routed them).
///
/// A command that blocks is parked here for `origin` (shard, connection, sequence number): the
/// frames before it have answered, its own answer comes later. A command that meets a locked
/// key stops the run there (only runs with an `origin` can wait).
pub fn run_frames(
    ctx: &ShardCtx,
    frames: &[u8],
    db: usize,
    proto: Proto,
    out: &mut Vec<u8>,
    origin: Option<(usize, Token, u32)>,
) -> RunEnd {
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let mut pos = 0;
    let limits = shards::resp::ParseLimits {
        bulk_len_max: usize::MAX,
    };
    let now = now_us();
    while pos < frames.len() {
        let consumed = match parse_command(&frames[pos..], &mut ranges, &mut scratch, limits) {
            Ok(Parsed::Command { consumed }) => consumed,
            _ => break,
        };
        let frame = &frames[pos..pos + consumed];
        let argv: SmallVec<[&[u8]; 8]> = ranges
            .iter()
            .map(|r| &frames[pos + r.start..pos + r.end])
            .collect();
        match lookup(&argv) {
            Ok(l) => {
                if origin.is_some() && crate::txn::locked_out(ctx, l, &argv, db) {
                    return RunEnd::Locked(pos);
                }
                let script = l.spec.group == shards::cmd::Group::Scripting && l.spec.run.is_some();
                if origin.is_some() && script && !ctx.locks.borrow().is_idle() {
                    // A script could reach keys a transaction holds here: it takes locks.
                    return RunEnd::Reroute(pos, gather_keys(l, &argv, db));
                }
                let blocked = ctx
                    .engine
                    .borrow_mut()
                    .execute_reply(l, &argv, db, now, proto, out);
                let reroute = match script {
                    true => ctx.engine.borrow_mut().reroute.take(),
                    false => None,
                };
                if let Some(keys) = reroute {
                    if origin.is_none() {
                        // Part of a block run live: it cannot run again elsewhere.
                        Reply::new(out, proto).error(UNDECLARED_IN_BLOCK);
                    } else {
                        let keys = keys.into_iter().map(|(d, k)| (d as u8, k)).collect();
                        return RunEnd::Reroute(pos, keys);
                    }
                }
                if blocked.is_some() && ctx.locks.borrow().current.is_some() {
                    // Part of a block run live: a blocking command does not block.
                    ctx.engine.borrow_mut().block_args = None;
                    out.extend_from_slice(&crate::block::cannot_block_reply(l.spec.name, proto));
                } else if let (Some(ms), Some((shard, conn, seq))) = (blocked, origin) {
                    ctx.block(waiter(
                        l,
                        &argv,
                        parked_frame(ctx, &argv, Some(frame)),
                        (shard, conn, seq),
                        db,
                        proto,
                        ms,
                        now,
                    ));
                    return RunEnd::Blocked;
                }
            }
            Err(e) => Reply::new(out, proto).error(&e.text()),
        }
        pos += consumed;
    }
    RunEnd::Done
}

/// The keys a blocked command waits on: those of its first key spec (BLMOVE: the source).
pub fn waited_keys(l: Lookup, argv: &[&[u8]]) -> Vec<Key> {
    let first = CommandSpec {
        keys: &l.spec.keys[..l.spec.keys.len().min(1)],
        ..*l.spec
    };
    let mut pos = Vec::new();
    key_positions(&first, argv, &mut pos);
    pos.iter().map(|&p| Key::from(argv[p])).collect()
}

/// The command a parked client runs again once its keys are written: the one it sent, or
/// the one the engine asked for instead (XREAD's `$` resolved, see `Shard::block_args`).
fn parked_frame(ctx: &ShardCtx, argv: &[&[u8]], sent: Option<&[u8]>) -> Vec<u8> {
    let mut frame = Vec::new();
    match (ctx.engine.borrow_mut().block_args.take(), sent) {
        (Some(args), _) => {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            encode_command(&args, &mut frame);
        }
        (None, Some(sent)) => frame.extend_from_slice(sent),
        (None, None) => encode_command(argv, &mut frame),
    }
    frame
}

/// A waiter for a blocked command (`origin` is shard, connection, sequence number).
#[allow(clippy::too_many_arguments)]
fn waiter(
    l: Lookup,
    argv: &[&[u8]],
    frame: Vec<u8>,
    origin: (usize, Token, u32),
    db: usize,
    proto: Proto,
    timeout_ms: u64,
    now_us: u64,
) -> Waiter {
    Waiter {
        origin: origin.0,
        conn: origin.1,
        seq: origin.2,
        db,
        proto,
        frame,
        keys: waited_keys(l, argv),
        deadline_ms: (timeout_ms > 0).then(|| now_us / 1000 + timeout_ms),
        pops: match l.spec.group {
            shards::cmd::Group::List => Some("list"),
            shards::cmd::Group::SortedSet => Some("zset"),
            // Stream readers look at every write: a deleted stream or group is news to a
            // blocked XREADGROUP (an error), and XREAD decides itself to go on waiting.
            _ => None,
        },
    }
}

/// Re-runs a parked command (its keys were written); true if it still has nothing to serve.
pub fn run_blocking_frame(
    ctx: &ShardCtx,
    frame: &[u8],
    db: usize,
    proto: Proto,
    out: &mut Vec<u8>,
) -> bool {
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let limits = shards::resp::ParseLimits {
        bulk_len_max: usize::MAX,
    };
    let Ok(Parsed::Command { .. }) = parse_command(frame, &mut ranges, &mut scratch, limits) else {
        return false;
    };
    let argv: SmallVec<[&[u8]; 8]> = ranges.iter().map(|r| &frame[r.clone()]).collect();
    match lookup(&argv) {
        // A key locked by a transaction: look again when it is released.
        Ok(l) if crate::txn::locked_out(ctx, l, &argv, db) => true,
        Ok(l) => {
            let mut engine = ctx.engine.borrow_mut();
            engine.rerun = true;
            let blocked = engine.execute_reply(l, &argv, db, now_us(), proto, out);
            engine.rerun = false;
            // Parked already with its rewritten command: a rewrite asked for again is the same.
            engine.block_args = None;
            blocked.is_some()
        }
        Err(e) => {
            Reply::new(out, proto).error(&e.text());
            false
        }
    }
}

/// Runs `parts` (shard, frame): the local one at once, the others forwarded; `done` gets every
/// shard's reply bytes once all are in.
pub fn fan_out(
    ctx: &ShardCtx,
    conn: &mut Conn,
    parts: Vec<(usize, ReqBody)>,
    done: crate::conn::Done,
) {
    conn.seq = crate::conn::next_seq(conn.seq);
    let mut results = Vec::new();
    let mut outstanding = 0;
    for (shard, body) in parts {
        let part = ReqPart {
            conn: conn.token,
            seq: conn.seq,
            db: conn.db as u8,
            proto: conn.proto,
            tx: conn.tx_id(),
            body,
            caller: None,
            client: crate::tracking::client_tag(conn),
        };
        if shard == ctx.id {
            match crate::server_cmds::serve_local(ctx, conn, &part) {
                // Waits for a lock here: answered (through the local path) when granted.
                RepBody::Deferred => outstanding += 1,
                body => results.push((shard, body)),
            }
        } else {
            ctx.send(shard, part);
            outstanding += 1;
        }
    }
    if outstanding == 0 {
        done(ctx, conn, results);
    } else {
        conn.wait = Wait::Multi {
            outstanding,
            results,
            done,
        };
    }
}

/// Reply bytes of each part, for merging.
fn bytes_of(results: Vec<(usize, RepBody)>) -> Vec<(usize, Vec<u8>)> {
    results
        .into_iter()
        .map(|(s, b)| match b {
            RepBody::Bytes(v) => (s, v),
            _ => (s, Vec::new()),
        })
        .collect()
}

/// Splits a per-key command (DEL, MGET, MSET, …) into one command per shard.
fn start_split(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]], merge: Merge) {
    let mut pos = Vec::new();
    key_positions(l.spec, argv, &mut pos);
    let step = match l.spec.keys.first().map(|k| k.find) {
        Some(FindKeys::Range { step, .. }) => step.max(1) as usize,
        _ => 1,
    };
    let key_shards: Vec<usize> = pos.iter().map(|&p| shard_of(ctx, argv[p])).collect();
    let mut per_shard: Vec<Vec<&[u8]>> = vec![Vec::new(); ctx.n];
    let mut locks: Vec<Vec<(u8, Key)>> = vec![Vec::new(); ctx.n];
    for (&p, &s) in pos.iter().zip(&key_shards) {
        if per_shard[s].is_empty() {
            per_shard[s].push(argv[0]);
        }
        per_shard[s].extend(argv[p..(p + step).min(argv.len())].iter().copied());
        locks[s].push((conn.db as u8, Key::from(argv[p])));
    }
    // A write's parts are logged with the list of shards that have one (see `crate::load`).
    let peers: Vec<u16> = if l.spec.flags & shards::cmd::flag::WRITE != 0 {
        (0..ctx.n)
            .filter(|&s| !per_shard[s].is_empty())
            .map(|s| s as u16)
            .collect()
    } else {
        Vec::new()
    };
    // One transaction step per shard, in ascending shard order; the last releases its locks
    // as it runs, the others are released once all have run.
    let mut steps: std::collections::VecDeque<crate::txn::Step> = per_shard
        .into_iter()
        .zip(locks)
        .enumerate()
        .filter(|(_, (a, _))| !a.is_empty())
        .map(|(s, (a, lock))| {
            let mut frame = Vec::with_capacity(16 + a.iter().map(|x| x.len() + 16).sum::<usize>());
            encode_command(&a, &mut frame);
            crate::txn::Step {
                shard: s,
                lock,
                exclusive: false,
                op: crate::txn::TxOp::Part {
                    frames: frame,
                    peers: peers.clone(),
                },
                release: false,
            }
        })
        .collect();
    let held: Vec<usize> = steps.iter().map(|s| s.shard).collect();
    // Inside a block run live the block's transaction already holds every shard.
    let nested = conn.live.is_some();
    if let Some(last) = steps.back_mut() {
        last.release = !nested;
    }
    let tx = crate::txn::tx_for(ctx, conn);
    crate::txn::run_steps(
        ctx,
        conn,
        tx,
        steps,
        Vec::new(),
        Box::new(move |ctx, conn, results| {
            crate::txn::release_on(
                ctx,
                conn,
                tx,
                held[..held.len().saturating_sub(1)].iter().copied(),
            );
            let proto = conn.proto;
            crate::merge::merge(
                merge,
                &bytes_of(results),
                &key_shards,
                proto,
                &mut conn.wbuf,
            );
        }),
    );
}

/// Runs a whole-keyspace command (DBSIZE, KEYS, FLUSHALL, …) on every shard.
fn start_all(ctx: &ShardCtx, conn: &mut Conn, _l: Lookup, argv: &[&[u8]], merge: Merge) {
    let mut frame = Vec::new();
    encode_command(argv, &mut frame);
    let parts = (0..ctx.n)
        .map(|s| (s, ReqBody::Part(frame.clone())))
        .collect();
    fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |_, conn, results| {
            let proto = conn.proto;
            crate::merge::merge(merge, &bytes_of(results), &[], proto, &mut conn.wbuf);
        }),
    );
}

/// A command for a shard whose script has run past `busy-reply-threshold` gets `-BUSY` (the
/// shard's own loop is inside the script; see `shards::script`).
fn busy_check(ctx: &ShardCtx, target: Target, argv: &[&[u8]]) -> Target {
    let scripts = ctx.shared.scripts.as_ref();
    let busy = |s: usize| {
        scripts
            .busy_of(s)
            .busy
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // The common case, no script past its threshold anywhere: one load per shard, no key walk.
    if !(0..ctx.n).any(busy) {
        return target;
    }
    let hit = match &target {
        Target::Remote(shard, l) => {
            l.spec.flags & shards::cmd::flag::ALLOW_BUSY == 0 && busy(*shard)
        }
        Target::Gather(l) | Target::Split(l, _) => {
            l.spec.flags & shards::cmd::flag::ALLOW_BUSY == 0 && {
                let mut pos = Vec::new();
                key_positions(l.spec, argv, &mut pos);
                pos.iter().any(|&p| busy(shard_of(ctx, argv[p])))
            }
        }
        Target::All(l, _) => {
            l.spec.flags & shards::cmd::flag::ALLOW_BUSY == 0 && (0..ctx.n).any(busy)
        }
        _ => false,
    };
    if hit {
        return Target::Fail(shards::Error::Other(
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
                .into(),
        ));
    }
    target
}

/// How many times a script that keeps reaching new undeclared keys is run again.
const REROUTES_MAX: u32 = 8;

/// The error of a script that reaches an undeclared key on another shard where it cannot be
/// run again over it (inside MULTI).
pub const UNDECLARED_IN_BLOCK: &str =
    "ERR Script attempted to access a key on another shard that it did not declare in KEYS \
     (inside MULTI every key a script uses must be declared)";

/// The (db, key) pairs a gathered command touches.
pub fn gather_keys(l: Lookup, argv: &[&[u8]], db: usize) -> Vec<(u8, Key)> {
    let mut pos = Vec::new();
    key_positions(l.spec, argv, &mut pos);
    let mut keys: Vec<(u8, Key)> = Vec::new();
    for &p in &pos {
        let k = (db as u8, Key::from(argv[p]));
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    // COPY … DB n writes its destination in another database.
    if l.spec.name == "copy" {
        if let Some(i) = argv.iter().position(|a| a.eq_ignore_ascii_case(b"db")) {
            if let Some(n) = argv.get(i + 1).and_then(|a| shards::util::parse_i64(a)) {
                if (0..shards::limits::DATABASES as i64).contains(&n) {
                    keys.push((n as u8, Key::from(argv[2])));
                }
            }
        }
    }
    keys
}

/// Copies the keys' entries here, runs the command on the copies, sends changes back.
pub fn start_gather(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) {
    if is_sort_with_patterns(l, argv) {
        return start_sort_gather(ctx, conn, l, argv);
    }
    let keys = gather_keys(l, argv, conn.db);
    gather_these(ctx, conn, l, argv, keys);
}

/// SORT/SORT_RO with BY or GET patterns: the keys they name derive from the sorted elements.
pub fn is_sort_with_patterns(l: Lookup, argv: &[&[u8]]) -> bool {
    matches!(l.spec.name, "sort" | "sort_ro")
        && shards::cmd::sort::pattern_args(argv)
            .iter()
            .any(|p| p.contains(&b'*'))
}

/// Gathers SORT's source key first, then every key its BY/GET patterns name for the source's
/// elements (plus the STORE destination), then runs it.
fn start_sort_gather(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) {
    let db = conn.db as u8;
    let source = Key::from(argv[1]);
    let owner = shard_of(ctx, &source);
    let parts = vec![(owner, ReqBody::Export(vec![(db, source)]))];
    let owned: Vec<Vec<u8>> = argv.iter().map(|a| a.to_vec()).collect();
    fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |ctx, conn, results| {
            let entry = results.into_iter().find_map(|(_, b)| match b {
                RepBody::Entries(mut e) => e.pop().and_then(|(_, _, e)| e),
                _ => None,
            });
            let args: Vec<&[u8]> = owned.iter().map(|a| a.as_slice()).collect();
            let mut keys = gather_keys(l, &args, conn.db);
            for k in shards::cmd::sort::pattern_keys(&args, entry.as_ref().map(|e| &e.value)) {
                let k = (db, Key::from(k.as_slice()));
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
            gather_these(ctx, conn, l, &args, keys);
        }),
    );
}

/// Copies these keys' entries here, then runs the command on the copies.
fn gather_these(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]], keys: Vec<(u8, Key)>) {
    let mut per_shard: Vec<Vec<(u8, Key)>> = vec![Vec::new(); ctx.n];
    for (db, k) in &keys {
        per_shard[shard_of(ctx, k)].push((*db, k.clone()));
    }
    let owned: Vec<Vec<u8>> = argv.iter().map(|a| a.to_vec()).collect();
    let mut watch: Vec<Vec<(u8, Key)>> = vec![Vec::new(); ctx.n];
    if l.spec.flags & shards::cmd::flag::BLOCKING != 0 {
        // Each owner watches the waited keys from the step that copies them, under their
        // locks, so a write after the copy always wakes the command.
        for k in waited_keys(l, argv) {
            watch[shard_of(ctx, &k)].push((conn.db as u8, k));
        }
        conn.retry_cmd = Some((l, owned.clone()));
    }
    // Lock and copy shard by shard in ascending order; the locks stay until the changes are in.
    let steps: std::collections::VecDeque<crate::txn::Step> = per_shard
        .into_iter()
        .zip(watch)
        .enumerate()
        .filter(|(_, (k, _))| !k.is_empty())
        .map(|(s, (keys, watch))| crate::txn::Step {
            shard: s,
            exclusive: false,
            lock: keys.clone(),
            op: crate::txn::TxOp::Export {
                keys,
                watch,
                check: Vec::new(),
            },
            release: false,
        })
        .collect();
    let held: Vec<usize> = steps.iter().map(|s| s.shard).collect();
    if l.spec.flags & shards::cmd::flag::READONLY == 0
        && l.spec.group != shards::cmd::Group::Scripting
    {
        // The copies are remembered as read for client-side caching only for a read.
        conn.track_now = false;
    }
    let tx = crate::txn::tx_for(ctx, conn);
    crate::txn::run_steps(
        ctx,
        conn,
        tx,
        steps,
        Vec::new(),
        Box::new(move |ctx, conn, results| gather_run(ctx, conn, l, owned, (tx, held), results)),
    );
}

fn gather_run(
    ctx: &ShardCtx,
    conn: &mut Conn,
    l: Lookup,
    argv: Vec<Vec<u8>>,
    (tx, held): (crate::txn::TxId, Vec<usize>),
    results: Vec<(usize, RepBody)>,
) {
    let mut before: Vec<(u8, Key, Option<Entry>)> = Vec::new();
    for (_, body) in results {
        if let RepBody::Entries(e) = body {
            before.extend(e);
        }
    }
    let mut scratch = scratch_with(ctx, &before);
    scratch.caller = crate::acl_cmds::caller(ctx, conn);
    let args: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
    let now = now_us();
    let (db, proto) = (conn.db, conn.proto);
    let mut reply = Vec::new();
    // A blocking command gathered again after a write is a re-run (see `Shard::rerun`).
    scratch.rerun = conn.retry_deadline.is_some();
    ctx.engine.borrow_mut().lend_timing(&mut scratch, conn.id);
    let blocked = scratch.execute_reply(l, &args, db, now, proto, &mut reply);
    ctx.engine
        .borrow_mut()
        .take_back_timing(&mut scratch, false);
    if scratch.reroute.is_none() {
        conn.reroutes = 0;
    }
    if let Some(more) = scratch.reroute.take() {
        // The script reached keys it did not declare: gather those too and run it again (a
        // few times: keys that change from run to run never settle).
        crate::txn::release_on(ctx, conn, tx, held);
        conn.reroutes += 1;
        if conn.reroutes > REROUTES_MAX {
            conn.reroutes = 0;
            conn.error(
                "ERR the keys this script reaches change from run to run: declare them in KEYS",
            );
            return;
        }
        let mut keys: Vec<(u8, Key)> = before.into_iter().map(|(d, k, _)| (d, k)).collect();
        for (d, k) in more {
            let k = (d as u8, k);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        gather_these(ctx, conn, l, &args, keys);
        return;
    }
    if let Some(rewritten) = scratch.block_args.take().filter(|_| blocked.is_some()) {
        // Runs again as the engine asked (XREAD's `$` resolved at its first run).
        conn.retry_cmd = Some((l, rewritten));
    }
    {
        // The scratch shard's counters belong to this shard (the call itself is counted).
        let mut engine = ctx.engine.borrow_mut();
        engine.stats.absorb(&scratch.stats);
        if blocked.is_none() && reply.first() == Some(&b'-') {
            engine.stats.cmd_stat(l).failed_calls += 1;
        }
    }
    absorb_events(ctx, &mut scratch);
    if blocked.is_some() && conn.live.is_some() {
        // Inside a block run live a blocking command does not block.
        reply = crate::block::cannot_block_reply(l.spec.name, proto);
    }
    if let Some(timeout_ms) = blocked.filter(|_| conn.live.is_none()) {
        // A blocking command over keys on several shards found nothing: the owners watch its
        // keys and wake it, until it is served or its deadline passes.
        crate::txn::release_on(ctx, conn, tx, held);
        let now_ms = now / 1000;
        let first = conn.retry_deadline.is_none();
        let deadline = *conn.retry_deadline.get_or_insert(if timeout_ms == 0 {
            u64::MAX
        } else {
            now_ms + timeout_ms
        });
        if now_ms >= deadline {
            ctx.end_watch(conn);
            conn.wbuf
                .extend_from_slice(&crate::block::timeout_reply(proto));
        } else {
            if first && deadline != u64::MAX {
                ctx.schedule_deadline(conn.token, deadline);
            }
            if std::mem::take(&mut conn.woken) {
                let again = conn.retry_cmd.clone().map_or(argv.clone(), |(_, a)| a);
                let again: Vec<&[u8]> = again.iter().map(|a| a.as_slice()).collect();
                start_gather(ctx, conn, l, &again);
            } else {
                conn.wait = Wait::Retry;
            }
        }
        return;
    }
    ctx.end_watch(conn);
    if l.spec.flags & (shards::cmd::flag::WRITE | shards::cmd::flag::MAY_REPLICATE) == 0 {
        crate::txn::release_on(ctx, conn, tx, held);
        conn.wbuf.extend_from_slice(&reply);
        return;
    }
    write_back(ctx, conn, tx, held, before, &mut scratch, reply);
}

/// A scratch shard holding copies of gathered entries, with this shard's configuration and
/// fresh statistics (what the command run on it counts is added here afterwards).
pub fn scratch_with(ctx: &ShardCtx, entries: &[(u8, Key, Option<Entry>)]) -> Shard {
    let mut scratch = Shard::new(ctx.id, 1, now_us());
    scratch.config = ctx.engine.borrow().config.clone();
    scratch.scripts = ctx.engine.borrow().scripts.clone();
    scratch.clock_ms = ctx.engine.borrow().clock_ms;
    // A script on the copies may touch only them (see `shards::script`).
    scratch.script_keys = Some(
        entries
            .iter()
            .map(|(d, k, _)| (*d as usize, k.clone()))
            .collect(),
    );
    for (db, k, e) in entries {
        scratch.import(*db as usize, vec![(k.clone(), e.clone())]);
    }
    scratch.stats = Default::default();
    // Memory is this shard's: deny-oom commands are refused on the copies if it is over
    // `maxmemory` with nothing left to evict, and the copies themselves are never evicted.
    {
        let mut e = ctx.engine.borrow_mut();
        scratch.oom = shards::evict::out_of_memory(&mut e, now_us() / 1000);
        scratch.evict_depth = 1;
    }
    // The commands run on the copies raise their keyspace events here; they are published
    // with this shard's own (see `absorb_events`).
    scratch.notify_flags = ctx.engine.borrow().notify_flags;
    scratch
}

/// Takes the keyspace events a scratch shard recorded into this shard's, to be published.
pub fn absorb_events(ctx: &ShardCtx, scratch: &mut Shard) {
    if !scratch.events.is_empty() {
        let events = std::mem::take(&mut scratch.events);
        ctx.engine.borrow_mut().events.extend(events);
    }
}

/// Ends a transaction that ran on copies in `scratch`: sends each changed entry back to its
/// owner, which applies it and releases the transaction's locks (owners without changes just
/// release), and answers `reply` once every change is in, so what the client sees next (on any
/// connection) includes them.
pub fn write_back(
    ctx: &ShardCtx,
    conn: &mut Conn,
    tx: crate::txn::TxId,
    held: Vec<usize>,
    before: Vec<(u8, Key, Option<Entry>)>,
    scratch: &mut Shard,
    reply: Vec<u8>,
) {
    let now = now_us();
    let mut per_shard: Vec<Vec<(u8, Key, Option<Entry>)>> = vec![Vec::new(); ctx.n];
    for (kdb, k, old) in before {
        let new = scratch
            .export(kdb as usize, &[&k], now / 1000)
            .pop()
            .and_then(|(_, e)| e);
        if new != old {
            per_shard[shard_of(ctx, &k)].push((kdb, k, new));
        }
    }
    // The reply leaves once every owner has applied its part, so what the client sees next
    // (on any connection) includes the change.
    import_and_release(
        ctx,
        conn,
        (tx, &held),
        per_shard,
        Box::new(move |_, conn, _| conn.wbuf.extend_from_slice(&reply)),
    );
}

/// Ends transaction `tx` (holding shards `held`): each shard with entries in `per_shard`
/// applies them (None deletes) and releases in one step, the others just release; `done`
/// runs once every owner has applied its part.
pub fn import_and_release(
    ctx: &ShardCtx,
    conn: &mut Conn,
    (tx, held): (crate::txn::TxId, &[usize]),
    per_shard: Vec<Vec<(u8, Key, Option<Entry>)>>,
    done: crate::conn::Done,
) {
    let nested = conn.live.as_ref().is_some_and(|b| b.tx == tx);
    let peers: Vec<u16> = (0..ctx.n)
        .filter(|&s| per_shard.get(s).is_some_and(|e| !e.is_empty()))
        .map(|s| s as u16)
        .collect();
    crate::txn::release_on(
        ctx,
        conn,
        tx,
        held.iter()
            .copied()
            .filter(|&s| per_shard.get(s).is_none_or(|e| e.is_empty())),
    );
    let parts: Vec<(usize, ReqBody)> = per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, e)| !e.is_empty())
        .map(|(s, entries)| {
            let body = ReqBody::Tx {
                tx,
                lock: Vec::new(),
                exclusive: false,
                op: crate::txn::TxOp::Import {
                    entries,
                    peers: peers.clone(),
                },
                release: !nested,
            };
            (s, body)
        })
        .collect();
    fan_out(ctx, conn, parts, done);
}

/// Answers a connection's complete commands while a script keeps this shard busy (see
/// `ShardCtx::busy_poll`): SCRIPT KILL / FUNCTION KILL act, SHUTDOWN NOSAVE stops the server,
/// everything else gets `-BUSY`.
pub fn answer_busy(ctx: &ShardCtx, conn: &mut Conn) {
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let limits = ctx.limits.get();
    loop {
        let pos = conn.rpos;
        let (consumed, inline) =
            match parse_command(&conn.rbuf[pos..], &mut ranges, &mut scratch, limits) {
                Ok(Parsed::Command { consumed }) => (consumed, false),
                Ok(Parsed::Inline { consumed }) => (consumed, true),
                Ok(Parsed::Empty { consumed }) => {
                    conn.rpos += consumed;
                    continue;
                }
                // Incomplete or malformed: the normal loop deals with it after the script.
                _ => return,
            };
        let base: &[u8] = if inline { &scratch } else { &conn.rbuf[pos..] };
        let argv: Vec<Vec<u8>> = ranges.iter().map(|r| base[r.clone()].to_vec()).collect();
        conn.rpos += consumed;
        let is = |i: usize, word: &str| {
            argv.get(i)
                .is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
        };
        let mut out = Reply::new(&mut conn.wbuf, conn.proto);
        if (is(0, "script") || is(0, "function")) && is(1, "kill") && argv.len() == 2 {
            match shards::cmd::script::kill(&ctx.shared.scripts) {
                Ok(()) => out.ok(),
                Err(e) => out.error(&e.text()),
            }
        } else if is(0, "function") && is(1, "stats") && argv.len() == 2 {
            shards::script::function::stats_reply(&ctx.shared.scripts, now_us() / 1000, &mut out);
        } else if is(0, "shutdown") && is(1, "nosave") {
            crate::save::request_shutdown(&ctx.shared, 0, Some(false));
        } else {
            out.error(
                "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
            );
        }
    }
}
