//! Client-side caching across shards: CLIENT TRACKING / CACHING / GETREDIR / TRACKINGINFO and
//! the delivery of invalidation messages.
//!
//! The shard that owns a key remembers who read it (`shards::tracking`): a tracking client's
//! requests say so (`ReqPart::track`, or the engine's `tracking.reader` for commands run here).
//! Broadcasting clients register their prefixes with every shard before CLIENT TRACKING
//! answers, so a write anywhere after the reply is seen. When a key changes, the owner sends a
//! note to the shard of each client concerned (`ReqBody::Tracking`); that shard checks the
//! client's mode now (tracking still on, NOLOOP, which mode the note was for) and writes the
//! message: a push in RESP3, or to the REDIRECT client, which may live on a third shard and
//! gets the message as a Pub/Sub `message` on `__redis__:invalidate` in RESP2.
//!
//! A client's own invalidations follow the reply of the command that caused them (as Redis
//! 7.0 sends them after the command): a note for a connection waiting on other shards is held
//! until its reply is written.

use crate::conn::{Conn, Wait};
use crate::ctx::ShardCtx;
use crate::msg::{RepBody, ReqBody, Token};
use shards::resp::{Proto, Reply};
use shards::tracking::Message;
use shards::util::eq_ic;
use shards::Error;

/// A connection's CLIENT TRACKING state.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// The client invalidations go to (0: this one).
    pub redirect: u64,
    pub prefixes: Vec<Vec<u8>>,
    /// CLIENT CACHING for the next command: yes (Some(true)) or no.
    pub caching: Option<bool>,
    /// The redirect client went away.
    pub broken: bool,
}

/// What a note from a key's owner asks of the shard of a connection.
#[derive(Debug)]
pub enum Note {
    /// Invalidate these keys (each with the client that changed it); None: everything (a flush).
    Forget {
        conn: Token,
        id: u64,
        keys: Option<Vec<(Vec<u8>, u64)>>,
        bcast: bool,
    },
    /// Write an invalidation message to this redirect target (keys, or null for a flush: RESP3's
    /// null when `null3`).
    Push {
        conn: Token,
        id: u64,
        keys: Option<Vec<Vec<u8>>>,
        null3: bool,
    },
}

const TRACKING_CHANNEL: &[u8] = b"__redis__:invalidate";

/// Whether the reads of the command about to run are remembered for this connection.
#[inline]
pub fn reads_tracked(conn: &Conn) -> bool {
    match conn.tracking.as_deref() {
        None => false,
        Some(t) if t.bcast => false,
        Some(t) if t.optin => t.caching == Some(true),
        Some(t) if t.optout => t.caching != Some(false),
        Some(_) => true,
    }
}

/// After a command: CLIENT CACHING's choice is used up, unless a transaction is being queued
/// or the command was another CLIENT subcommand (as Redis resets it).
#[inline]
pub fn after_command(conn: &mut Conn, name: &str) {
    let in_multi = conn.multi.is_some();
    if let Some(t) = conn.tracking.as_deref_mut() {
        if t.caching.is_some() && !in_multi && name != "client" {
            t.caching = None;
        }
    }
}

/// The client id a connection's command is sent with: its id, flagged when the command's
/// reads are to be remembered.
#[inline]
pub fn client_tag(conn: &Conn) -> u64 {
    if conn.track_now {
        conn.id | shards::tracking::READS_TRACKED
    } else {
        conn.id
    }
}

/// CLIENT TRACKING, CACHING, GETREDIR, TRACKINGINFO.
pub fn command(ctx: &ShardCtx, conn: &mut Conn, sub: &str, argv: &[&[u8]]) -> Result<(), Error> {
    match sub {
        "tracking" => tracking(ctx, conn, argv),
        "caching" => caching(conn, argv[2]),
        "getredir" => {
            let r = conn.tracking.as_deref().map_or(-1, |t| t.redirect as i64);
            conn.reply().int(r);
            Ok(())
        }
        _ => {
            trackinginfo(conn);
            Ok(())
        }
    }
}

fn tracking(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let on = match argv[2] {
        a if eq_ic(a, "on") => true,
        a if eq_ic(a, "off") => false,
        _ => return Err(Error::Syntax),
    };
    let mut new = State::default();
    let mut i = 3;
    while i < argv.len() {
        let a = argv[i];
        let more = i + 1 < argv.len();
        if eq_ic(a, "redirect") && more {
            i += 1;
            let id = shards::util::parse_i64(argv[i]).ok_or(Error::NotInteger)?;
            new.redirect = id.max(0) as u64;
            if id <= 0 || (new.redirect != conn.id && !ctx.shared.client_exists(new.redirect)) {
                return Err(Error::err(
                    "The client ID you want redirect to does not exist",
                ));
            }
        } else if eq_ic(a, "bcast") {
            new.bcast = true;
        } else if eq_ic(a, "optin") {
            new.optin = true;
        } else if eq_ic(a, "optout") {
            new.optout = true;
        } else if eq_ic(a, "noloop") {
            new.noloop = true;
        } else if eq_ic(a, "prefix") && more {
            i += 1;
            new.prefixes.push(argv[i].to_vec());
        } else {
            return Err(Error::Syntax);
        }
        i += 1;
    }
    if !on {
        stop(ctx, conn);
        conn.reply().ok();
        return Ok(());
    }
    // Checked in Redis's order.
    let old = conn.tracking.as_deref();
    if !new.bcast && !new.prefixes.is_empty() {
        return Err(Error::err(
            "PREFIX option requires BCAST mode to be enabled",
        ));
    }
    if old.is_some_and(|o| o.bcast != new.bcast) {
        return Err(Error::err("You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode."));
    }
    if new.bcast && (new.optin || new.optout) {
        return Err(Error::err("OPTIN and OPTOUT are not compatible with BCAST"));
    }
    if new.optin && new.optout {
        return Err(Error::err(
            "You can't specify both OPTIN mode and OPTOUT mode",
        ));
    }
    if old.is_some_and(|o| (o.optin && new.optout) || (o.optout && new.optin)) {
        return Err(Error::err("You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode."));
    }
    if new.bcast {
        check_prefixes(old.map_or(&[][..], |o| &o.prefixes), &new.prefixes)?;
        if new.prefixes.is_empty() {
            // BCAST alone follows every key.
            new.prefixes.push(Vec::new());
        }
    }
    // Prefixes only add up (Redis keeps those given before); the rest is replaced.
    let mut prefixes = old.map(|o| o.prefixes.clone()).unwrap_or_default();
    let added: Vec<Vec<u8>> = new
        .prefixes
        .iter()
        .filter(|p| !prefixes.contains(p))
        .cloned()
        .collect();
    prefixes.extend(added.iter().cloned());
    // Listed in order, as Redis keeps them in a radix tree.
    prefixes.sort();
    if conn.tracking.is_none() {
        ctx.shared
            .tracking_clients
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    conn.tracking = Some(Box::new(State {
        prefixes,
        caching: None,
        ..new
    }));
    if added.is_empty() {
        conn.reply().ok();
        return Ok(());
    }
    // Every shard must know the new prefixes before the reply leaves.
    let who = conn.id;
    let parts = (0..ctx.n)
        .map(|s| {
            (
                s,
                ReqBody::Follow {
                    who,
                    prefixes: added.clone(),
                    add: true,
                },
            )
        })
        .collect();
    crate::dispatch::fan_out(ctx, conn, parts, Box::new(|_, conn, _| conn.reply().ok()));
    Ok(())
}

/// Redis's rule: no prefix of a client may be a prefix of another of its prefixes.
fn check_prefixes(old: &[Vec<u8>], new: &[Vec<u8>]) -> Result<(), Error> {
    let show = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    for (i, p) in new.iter().enumerate() {
        for q in old {
            if q.starts_with(p) || p.starts_with(q) {
                return Err(Error::err(format!(
                    "Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                    show(p),
                    show(q)
                )));
            }
        }
        for q in &new[i + 1..] {
            if q.starts_with(p) || p.starts_with(q) {
                return Err(Error::err(format!(
                    "Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                    show(p),
                    show(q)
                )));
            }
        }
    }
    Ok(())
}

/// Tracking off (CLIENT TRACKING OFF, RESET, the connection closing): its prefixes are
/// dropped everywhere. Keys it read stay in the owners' tables until they change; the note
/// then finds tracking off and is dropped, as Redis skips such clients.
pub fn stop(ctx: &ShardCtx, conn: &mut Conn) {
    let Some(state) = conn.tracking.take() else {
        return;
    };
    ctx.shared
        .tracking_clients
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    if state.bcast {
        let who = conn.id;
        for s in 0..ctx.n {
            let body = ReqBody::Follow {
                who,
                prefixes: Vec::new(),
                add: false,
            };
            if s == ctx.id {
                serve_follow(ctx, who, &[], false);
            } else {
                ctx.send_unanswered(s, conn.token, body);
            }
        }
    }
}

fn caching(conn: &mut Conn, arg: &[u8]) -> Result<(), Error> {
    let Some(t) = conn.tracking.as_deref_mut() else {
        return Err(Error::err("CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"));
    };
    if eq_ic(arg, "yes") {
        if !t.optin {
            return Err(Error::err(
                "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            ));
        }
        t.caching = Some(true);
    } else if eq_ic(arg, "no") {
        if !t.optout {
            return Err(Error::err(
                "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            ));
        }
        t.caching = Some(false);
    } else {
        return Err(Error::Syntax);
    }
    conn.reply().ok();
    Ok(())
}

fn trackinginfo(conn: &mut Conn) {
    let t = conn.tracking.clone();
    let mut flags: Vec<&str> = Vec::new();
    match t.as_deref() {
        None => flags.push("off"),
        Some(t) => {
            flags.push("on");
            if t.bcast {
                flags.push("bcast");
            }
            if t.optin {
                flags.push("optin");
                if t.caching == Some(true) {
                    flags.push("caching-yes");
                }
            }
            if t.optout {
                flags.push("optout");
                if t.caching == Some(false) {
                    flags.push("caching-no");
                }
            }
            if t.noloop {
                flags.push("noloop");
            }
            if t.broken {
                flags.push("broken_redirect");
            }
        }
    }
    let mut r = conn.reply();
    r.map(3);
    r.bulk(b"flags");
    r.set(flags.len());
    for f in flags {
        r.bulk(f.as_bytes());
    }
    r.bulk(b"redirect");
    r.int(t.as_deref().map_or(-1, |t| t.redirect as i64));
    r.bulk(b"prefixes");
    let prefixes = t.map(|t| t.prefixes).unwrap_or_default();
    r.array(prefixes.len());
    for p in &prefixes {
        r.bulk(p);
    }
}

/// The CLIENT LIST flag letters for tracking (`t`, `R`, `B`, in Redis's order) and `redir`.
pub fn list_flags(conn: &Conn) -> (&'static str, i64) {
    match conn.tracking.as_deref() {
        None => ("", -1),
        Some(t) => (
            match (t.broken, t.bcast) {
                (false, false) => "t",
                (true, false) => "tR",
                (false, true) => "tB",
                (true, true) => "tRB",
            },
            t.redirect as i64,
        ),
    }
}

/// A gathered command (or a transaction run on copies) of a tracking client copies keys out
/// of this shard: they are remembered as read, under the locks that order the copy (so a
/// write after it always invalidates). The sender tags only work that reads.
pub fn remember_exported(ctx: &ShardCtx, client: u64, keys: &[(u8, shards::keyspace::Key)]) {
    use shards::tracking::READS_TRACKED;
    if client & READS_TRACKED == 0 {
        return;
    }
    let mut e = ctx.engine.borrow_mut();
    for (_, k) in keys {
        e.tracking.remember(k, client & !READS_TRACKED);
    }
}

/// Registers (or drops) a broadcasting client's prefixes with this shard.
pub fn serve_follow(ctx: &ShardCtx, who: u64, prefixes: &[Vec<u8>], add: bool) -> RepBody {
    ctx.engine.borrow_mut().tracking.follow(who, prefixes, add);
    RepBody::Ack
}

/// Delivers what the engine's tracking produced: broadcasts gathered since the last call
/// (`end_of_batch`), per-key invalidations, and after a flush a null invalidation to every
/// tracking connection of this shard. `me` is the connection being served, out of the table.
pub fn drain(ctx: &ShardCtx, me: Option<&mut Conn>, broadcasts: bool) {
    let (out, flushed) = {
        let mut e = ctx.engine.borrow_mut();
        let t = &mut e.tracking;
        if broadcasts && t.active() {
            t.flush_broadcasts();
        }
        if t.out.is_empty() && !t.flushed {
            return;
        }
        (std::mem::take(&mut t.out), std::mem::take(&mut t.flushed))
    };
    let mut per_shard: Vec<Vec<Note>> = (0..ctx.n).map(|_| Vec::new()).collect();
    if flushed {
        let mut tokens: Vec<(Token, u64)> = ctx
            .conns
            .borrow()
            .iter()
            .filter(|c| c.tracking.is_some())
            .map(|c| (c.token, c.id))
            .collect();
        if let Some(c) = me.as_deref().filter(|c| c.tracking.is_some()) {
            tokens.push((c.token, c.id));
        }
        for (conn, id) in tokens {
            per_shard[ctx.id].push(Note::Forget {
                conn,
                id,
                keys: None,
                bcast: false,
            });
        }
    }
    if !out.is_empty() {
        // Where each client is now (one lock for the lot); a client gone is skipped.
        let at: Vec<Option<(usize, Token)>> = {
            let clients = ctx.shared.idents.lock().unwrap_or_else(|e| e.into_inner());
            out.iter()
                .map(|m| clients.get(&m.to).map(|c| (c.shard, c.token)))
                .collect()
        };
        for (Message { to, keys, bcast }, at) in out.into_iter().zip(at) {
            let Some((shard, conn)) = at else {
                continue;
            };
            if let Some(list) = per_shard.get_mut(shard) {
                list.push(Note::Forget {
                    conn,
                    id: to,
                    keys: Some(keys),
                    bcast,
                });
            }
        }
    }
    let local = std::mem::take(&mut per_shard[ctx.id]);
    for (s, notes) in per_shard.into_iter().enumerate() {
        if !notes.is_empty() {
            ctx.send_unanswered(s, Token::default(), ReqBody::Tracking(notes));
        }
    }
    serve(ctx, me, &local);
}

/// Serves notes for this shard's connections.
pub fn serve(ctx: &ShardCtx, mut me: Option<&mut Conn>, notes: &[Note]) {
    for note in notes {
        match note {
            Note::Forget {
                conn,
                id,
                keys,
                bcast,
            } => with_conn(ctx, me.as_deref_mut(), *conn, *id, &mut |c| {
                forget(ctx, c, keys.as_deref(), *bcast)
            }),
            Note::Push {
                conn,
                id,
                keys,
                null3,
            } => with_conn(ctx, me.as_deref_mut(), *conn, *id, &mut |c| {
                push(c, keys.as_deref(), *null3, true)
            }),
        }
    }
}

/// Runs `f` on connection `token` of this shard if it is still client `id`, then has its
/// output written (after the reply it waits for, if any).
fn with_conn(
    ctx: &ShardCtx,
    me: Option<&mut Conn>,
    token: Token,
    id: u64,
    f: &mut dyn FnMut(&mut Conn),
) {
    if let Some(c) = me.filter(|c| c.token == token) {
        if c.id == id {
            held(c, f);
        }
        return;
    }
    // Out of the table while `f` runs: it may reach another connection (a redirect target).
    let Some(mut c) = ctx.conns.borrow_mut().take(token) else {
        return;
    };
    if c.id == id {
        held(&mut c, f);
    }
    let first = !c.flush_queued;
    c.flush_queued = true;
    ctx.conns.borrow_mut().put_back(c);
    if first {
        ctx.flush_later.borrow_mut().push(token);
    }
}

/// Writes what `f` writes after the reply the connection waits for, if it waits.
fn held(c: &mut Conn, f: &mut dyn FnMut(&mut Conn)) {
    // Only a reply on its way is waited for, not a blocked command's.
    if !matches!(c.wait, Wait::Run | Wait::Multi { .. }) {
        return f(c);
    }
    let mark = c.wbuf.len();
    f(c);
    let tail = c.wbuf.split_off(mark);
    c.push_later.extend_from_slice(&tail);
}

/// At the tracking client's shard: checks the client's mode now and sends the message on.
fn forget(ctx: &ShardCtx, c: &mut Conn, keys: Option<&[(Vec<u8>, u64)]>, bcast: bool) {
    let Some(t) = c.tracking.as_deref_mut() else {
        return;
    };
    let keys: Option<Vec<Vec<u8>>> = match keys {
        None => None,
        Some(keys) => {
            if t.bcast != bcast {
                return;
            }
            let me = c.id;
            let keys: Vec<Vec<u8>> = keys
                .iter()
                .filter(|(_, by)| !(t.noloop && *by == me))
                .map(|(k, _)| k.clone())
                .collect();
            if keys.is_empty() {
                return;
            }
            Some(keys)
        }
    };
    let null3 = c.proto == Proto::Resp3;
    if t.redirect == 0 || t.redirect == c.id {
        let redirected = t.redirect != 0;
        return push(c, keys.as_deref(), null3, redirected);
    }
    match ctx.shared.client_at(t.redirect) {
        Some((shard, conn)) if shard == ctx.id => {
            let id = t.redirect;
            with_conn(ctx, None, conn, id, &mut |x| {
                push(x, keys.as_deref(), null3, true)
            });
        }
        Some((shard, conn)) => ctx.send_unanswered(
            shard,
            Token::default(),
            ReqBody::Tracking(vec![Note::Push {
                conn,
                id: t.redirect,
                keys,
                null3,
            }]),
        ),
        None => {
            // The redirect client is gone: RESP3 clients are told, every time.
            t.broken = true;
            let redirect = t.redirect as i64;
            if c.proto == Proto::Resp3 {
                let mut r = c.reply();
                r.push(2);
                r.bulk(b"tracking-redir-broken");
                r.int(redirect);
            }
        }
    }
}

/// Writes one invalidation message: a push in RESP3; in RESP2 only to a redirect target with
/// subscriptions, as a Pub/Sub message.
fn push(c: &mut Conn, keys: Option<&[Vec<u8>]>, null3: bool, redirected: bool) {
    let resp3 = c.proto == Proto::Resp3;
    if !(resp3 || (redirected && crate::pubsub::subscribed(c))) {
        return;
    }
    let mut r = Reply::new(&mut c.wbuf, c.proto);
    if resp3 {
        r.push(2);
        r.bulk(b"invalidate");
    } else {
        r.array(3);
        r.bulk(b"message");
        r.bulk(TRACKING_CHANNEL);
    }
    match keys {
        Some(keys) => {
            r.array(keys.len());
            for k in keys {
                r.bulk(k);
            }
        }
        // A flush: the tracking client's null, whatever the target speaks (as Redis does).
        None => r.raw(if null3 { b"_\r\n" } else { b"$-1\r\n" }),
    }
}
