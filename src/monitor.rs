//! MONITOR: every command any client runs, as Redis prints it, streamed to the monitoring
//! clients of every shard.
//!
//! A command is seen on its connection's shard, where every command passes (whichever shard
//! then runs it): once it has been dispatched, its line goes to this shard's monitors directly
//! and to every other shard that has monitors as one message. Nothing is formatted while no
//! client monitors (one atomic load per command). Administrative commands are not shown, AUTH
//! and HELLO's credentials are redacted, as in Redis.

use crate::conn::Conn;
use crate::ctx::{now_us, ShardCtx};
use crate::msg::ReqBody;
use shards::cmd::{flag, Lookup};
use std::sync::atomic::Ordering;

/// MONITOR: this connection receives every command from now on.
pub fn start(ctx: &ShardCtx, conn: &mut Conn) {
    if !conn.monitor {
        conn.monitor = true;
        ctx.monitors.borrow_mut().push(conn.token);
        ctx.shared.monitors[ctx.id].fetch_add(1, Ordering::AcqRel);
        ctx.shared.monitoring.fetch_add(1, Ordering::AcqRel);
        shards::script::MONITORS.fetch_add(1, Ordering::AcqRel);
    }
    conn.reply().ok();
}

/// The connection stops monitoring (RESET, or it closes).
pub fn stop(ctx: &ShardCtx, conn: &mut Conn) {
    if conn.monitor {
        conn.monitor = false;
        ctx.monitors.borrow_mut().retain(|t| *t != conn.token);
        ctx.shared.monitors[ctx.id].fetch_sub(1, Ordering::AcqRel);
        ctx.shared.monitoring.fetch_sub(1, Ordering::AcqRel);
        shards::script::MONITORS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Shows a dispatched command to every monitor, if there are any.
pub fn feed(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) {
    if ctx.shared.monitoring.load(Ordering::Acquire) == 0 {
        return;
    }
    let flags = l.spec.flags | l.parent.map_or(0, |p| p.flags);
    if flags & (flag::ADMIN | flag::SKIP_MONITOR) != 0 && !shown_before(l) {
        return;
    }
    feed_script_calls(ctx, Some(conn));
    let text = line(conn.db, &conn.addr, argv, now_us());
    send(ctx, Some(conn), text);
}

/// Whether a command is shown when it is dispatched rather than once it ran: a script (EVAL,
/// FCALL and their kin, which Redis shows itself before running them although they skip the
/// usual feed), so that the commands it calls follow it.
pub fn shown_before(l: Lookup) -> bool {
    l.spec.group == shards::cmd::Group::Scripting && l.spec.run.is_some()
}

/// Shows the commands scripts run on this shard called, as Redis shows them (`[0 lua]`),
/// before the script's own line when the script ran here.
pub fn feed_script_calls(ctx: &ShardCtx, mut me: Option<&mut Conn>) {
    let calls = {
        let mut e = ctx.engine.borrow_mut();
        if e.script_calls.is_empty() {
            return;
        }
        std::mem::take(&mut e.script_calls)
    };
    let now = now_us();
    for (db, args) in calls {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        send(ctx, me.as_deref_mut(), line(db, "lua", &argv, now));
    }
}

/// One line to the monitors of every shard.
fn send(ctx: &ShardCtx, mut conn: Option<&mut Conn>, text: String) {
    let token = conn
        .as_ref()
        .map_or(crate::msg::Token::default(), |c| c.token);
    for s in 0..ctx.n {
        if ctx.shared.monitors[s].load(Ordering::Acquire) == 0 {
            continue;
        }
        if s == ctx.id {
            deliver(ctx, conn.as_deref_mut(), &text);
        } else {
            ctx.send_unanswered(s, token, ReqBody::Monitor(text.clone()));
        }
    }
}

/// Writes a monitor line to this shard's monitors (`me`: the connection being served now).
pub fn deliver(ctx: &ShardCtx, me: Option<&mut Conn>, text: &str) {
    let tokens = ctx.monitors.borrow().clone();
    crate::pubsub::write_to(ctx, me, &tokens, &|c: &mut Conn| {
        c.reply().simple(text);
    });
}

/// `1339518083.107412 [0 127.0.0.1:60866] "keys" "*"`.
fn line(db: usize, addr: &str, argv: &[&[u8]], now_us: u64) -> String {
    let mut s = format!(
        "{}.{:06} [{db} {addr}]",
        now_us / 1_000_000,
        now_us % 1_000_000
    );
    let hidden = shards::cmd::redacted(argv);
    for (i, a) in argv.iter().enumerate() {
        s.push(' ');
        if hidden.contains(&i) {
            s.push_str("\"(redacted)\"");
        } else {
            quote(&mut s, a);
        }
    }
    s
}

/// A quoted, escaped argument (Redis's `sdscatrepr`).
fn quote(s: &mut String, a: &[u8]) {
    s.push('"');
    for &b in a {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            7 => s.push_str("\\a"),
            8 => s.push_str("\\b"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_redis_prints_them() {
        let argv: Vec<&[u8]> = vec![b"set", b"a b", b"x\"y\n\x01"];
        assert_eq!(
            line(0, "127.0.0.1:5", &argv, 1_339_518_083_107_412),
            "1339518083.107412 [0 127.0.0.1:5] \"set\" \"a b\" \"x\\\"y\\n\\x01\""
        );
        let auth: Vec<&[u8]> = vec![b"AUTH", b"u", b"p"];
        assert!(line(3, "a", &auth, 5).ends_with("[3 a] \"AUTH\" \"(redacted)\" \"(redacted)\""));
        let hello: Vec<&[u8]> = vec![b"hello", b"3", b"auth", b"u", b"p", b"setname", b"n"];
        assert!(line(0, "a", &hello, 5)
            .ends_with("\"hello\" \"3\" \"auth\" \"(redacted)\" \"(redacted)\" \"setname\" \"n\""));
    }
}
