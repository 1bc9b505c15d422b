//! CLIENT PAUSE / UNPAUSE: process-wide, so every shard holds its clients' commands.
//!
//! The pause (its end and whether it holds every command or only those that may write) lives
//! in `Shared`; a connection whose next command is held stops there, input unread, and waits in
//! its shard's `paused` list. UNPAUSE tells every shard to go on at once; a pause that times out
//! is noticed by each shard's cron.

use crate::ctx::{now_us, ShardCtx, Shared};
use crate::msg::ReqBody;
use std::sync::atomic::Ordering;

/// Starts (or extends) a pause until `end_ms`; a pause of everything stays one.
pub fn pause(shared: &Shared, end_ms: u64, all: bool) {
    let now = now_us() / 1000;
    let active = shared.pause_end_ms.load(Ordering::Acquire) > now;
    let all = all || (active && shared.pause_all.load(Ordering::Acquire));
    let end = if active {
        end_ms.max(shared.pause_end_ms.load(Ordering::Acquire))
    } else {
        end_ms
    };
    shared.pause_all.store(all, Ordering::Release);
    shared.pause_end_ms.store(end, Ordering::Release);
    // Keys neither expire nor get evicted meanwhile (as Redis, for a failover's sake).
    shards::keyspace::EXPIRY_PAUSED_UNTIL_MS.store(end, Ordering::Release);
}

/// Ends the pause; every shard's held clients go on.
pub fn unpause(ctx: &ShardCtx) {
    ctx.shared.pause_end_ms.store(0, Ordering::Release);
    shards::keyspace::EXPIRY_PAUSED_UNTIL_MS.store(0, Ordering::Release);
    for s in 0..ctx.n {
        if s == ctx.id {
            resume(ctx);
        } else if let Some(t) = ctx.internal.get() {
            ctx.send_unanswered(s, t, ReqBody::Unpause);
        }
    }
}

/// Whether a command with these flags must wait now.
pub fn holds(shared: &Shared, flags: u32) -> bool {
    let end = shared.pause_end_ms.load(Ordering::Acquire);
    end != 0
        && end > now_us() / 1000
        && (shared.pause_all.load(Ordering::Acquire)
            || flags & (shards::cmd::flag::WRITE | shards::cmd::flag::MAY_REPLICATE) != 0)
}

/// Parks a connection until the pause ends.
pub fn hold(ctx: &ShardCtx, conn: &mut crate::conn::Conn) {
    if !conn.paused {
        conn.paused = true;
        ctx.paused.borrow_mut().push(conn.token);
    }
}

/// Once the pause is over: runs what the held connections sent meanwhile.
pub fn resume(ctx: &ShardCtx) {
    if ctx.paused.borrow().is_empty() {
        return;
    }
    let end = ctx.shared.pause_end_ms.load(Ordering::Acquire);
    if end != 0 && end > now_us() / 1000 {
        return;
    }
    let tokens = std::mem::take(&mut *ctx.paused.borrow_mut());
    for t in tokens {
        let Some(mut conn) = ctx.conns.borrow_mut().take(t) else {
            continue;
        };
        conn.paused = false;
        crate::dispatch::process(ctx, &mut conn);
        ctx.finish(conn);
    }
}
