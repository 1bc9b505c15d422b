//! Pub/Sub across shards. A connection's subscriptions live with it, on the shard that accepted
//! it: each shard keeps the channels, patterns and shard channels its own connections listen to.
//! PUBLISH goes to every shard (one message per shard, in order on each link, so a publisher's
//! messages arrive in the order it sent them); each delivers to its subscribers and answers how
//! many it reached, and the publisher's shard adds the counts up. PUBSUB's questions are asked of
//! every shard the same way.
//!
//! In RESP2 a connection with subscriptions may only (un)subscribe, PING, QUIT and RESET (checked
//! in `dispatch::route`); in RESP3 messages are push replies and any command is allowed.
//! A subscriber that does not read is closed once its pending output passes
//! `client-output-buffer-limit pubsub` (hard at once, soft after its seconds).

use crate::conn::Conn;
use crate::ctx::ShardCtx;
use crate::msg::{RepBody, ReqBody, Token};
use indexmap::IndexSet;
use shards::resp::{Proto, Reply};
use shards::util::eq_ic;
use shards::Error;
use std::collections::HashMap;

/// Which namespace a subscription is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    fn sub_name(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        }
    }

    fn unsub_name(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        }
    }
}

/// A connection's subscriptions, in the order they were made.
#[derive(Debug, Default)]
pub struct ConnSubs {
    pub(crate) channels: IndexSet<Vec<u8>>,
    pub(crate) patterns: IndexSet<Vec<u8>>,
    pub(crate) shard: IndexSet<Vec<u8>>,
    /// Since when the pending output has been over the soft limit (Unix ms).
    pub soft_since: Option<u64>,
}

impl ConnSubs {
    fn set(&mut self, kind: Kind) -> &mut IndexSet<Vec<u8>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// The count a (un)subscribe reply carries: channels and patterns together, shard
    /// channels apart (as Redis 7.0 counts them).
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty()
    }
}

/// Subscribed channels, patterns and shard channels (INFO stats counts them).
pub type SubNames = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The subscriptions of one shard's connections to channels and patterns, and the subscribers
/// (on any shard) of the shard channels whose slot this shard owns.
#[derive(Default)]
pub struct Subs {
    channels: HashMap<Vec<u8>, Vec<Token>, ahash::RandomState>,
    patterns: HashMap<Vec<u8>, Vec<Token>, ahash::RandomState>,
    /// Shard channel → (shard of the connection, connection).
    owned: HashMap<Vec<u8>, Vec<(usize, Token)>, ahash::RandomState>,
}

impl Subs {
    /// The channels, patterns and shard channels subscribed here (INFO stats).
    pub fn names(&self) -> SubNames {
        (
            self.channels.keys().cloned().collect(),
            self.patterns.keys().cloned().collect(),
            self.owned.keys().cloned().collect(),
        )
    }

    fn table(&mut self, kind: Kind) -> &mut HashMap<Vec<u8>, Vec<Token>, ahash::RandomState> {
        match kind {
            Kind::Pattern => &mut self.patterns,
            _ => &mut self.channels,
        }
    }

    /// A subscriber of a shard channel this shard owns comes (`add`) or goes.
    pub fn own(&mut self, channel: &[u8], who: (usize, Token), add: bool) {
        if add {
            let list = self.owned.entry(channel.to_vec()).or_default();
            if !list.contains(&who) {
                list.push(who);
            }
        } else if let Some(list) = self.owned.get_mut(channel) {
            list.retain(|x| *x != who);
            if list.is_empty() {
                self.owned.remove(channel);
            }
        }
    }

    fn add(&mut self, kind: Kind, name: &[u8], t: Token) {
        self.table(kind).entry(name.to_vec()).or_default().push(t);
    }

    fn remove(&mut self, kind: Kind, name: &[u8], t: Token) {
        let table = self.table(kind);
        if let Some(list) = table.get_mut(name) {
            list.retain(|x| *x != t);
            if list.is_empty() {
                table.remove(name);
            }
        }
    }
}

/// Whether a connection in RESP2 with subscriptions may run this command.
pub fn allowed_when_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "psubscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "punsubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

/// Whether the connection has any subscription.
pub fn subscribed(conn: &Conn) -> bool {
    conn.subs.as_ref().is_some_and(|s| !s.is_empty())
}

/// The Pub/Sub commands (and PING on a subscribed RESP2 connection).
pub fn handle(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let name = String::from_utf8_lossy(argv[0]).to_ascii_lowercase();
    match name.as_str() {
        "subscribe" => subscribe(ctx, conn, Kind::Channel, &argv[1..]),
        "psubscribe" => subscribe(ctx, conn, Kind::Pattern, &argv[1..]),
        "ssubscribe" => shard_subscribe(ctx, conn, &argv[1..], true),
        "unsubscribe" => unsubscribe(ctx, conn, Kind::Channel, &argv[1..]),
        "punsubscribe" => unsubscribe(ctx, conn, Kind::Pattern, &argv[1..]),
        "sunsubscribe" => shard_subscribe(ctx, conn, &argv[1..], false),
        "publish" => publish(ctx, conn, argv[1], argv[2]),
        "spublish" => shard_publish(ctx, conn, argv[1], argv[2]),
        "ping" => {
            // RESP2 with subscriptions: PING answers as a message would come.
            let mut r = conn.reply();
            r.array(2);
            r.bulk(b"pong");
            r.bulk(argv.get(1).copied().unwrap_or(b""));
        }
        "pubsub" => return pubsub(ctx, conn, argv),
        _ => return Err(Error::err("unknown command")),
    }
    Ok(())
}

/// The header of a subscription reply or message: a push in RESP3, an array in RESP2.
fn header(r: &mut Reply<'_>, len: usize) {
    if r.resp3() {
        r.push(len);
    } else {
        r.array(len);
    }
}

fn subscribe(ctx: &ShardCtx, conn: &mut Conn, kind: Kind, names: &[&[u8]]) {
    let token = conn.token;
    for name in names {
        let subs = conn.subs.get_or_insert_with(Default::default);
        if subs.set(kind).insert(name.to_vec()) {
            ctx.subs.borrow_mut().add(kind, name, token);
        }
        let count = subs.count(kind);
        let mut r = conn.reply();
        header(&mut r, 3);
        r.bulk(kind.sub_name().as_bytes());
        r.bulk(name);
        r.int(count as i64);
    }
}

/// The names an (un)subscribe applies to: those given, or for an unsubscribe without any,
/// all the connection's. None (after answering with a null channel) when an unsubscribe has
/// nothing to leave.
fn targets(conn: &mut Conn, kind: Kind, names: &[&[u8]], add: bool) -> Option<Vec<Vec<u8>>> {
    let names: Vec<Vec<u8>> = if names.is_empty() && !add {
        conn.subs
            .as_mut()
            .map(|s| s.set(kind).iter().cloned().collect())
            .unwrap_or_default()
    } else {
        names.iter().map(|n| n.to_vec()).collect()
    };
    if names.is_empty() {
        let count = conn.subs.as_ref().map_or(0, |s| s.count(kind));
        let mut r = conn.reply();
        header(&mut r, 3);
        r.bulk(kind.unsub_name().as_bytes());
        r.null();
        r.int(count as i64);
        return None;
    }
    Some(names)
}

fn unsubscribe(ctx: &ShardCtx, conn: &mut Conn, kind: Kind, names: &[&[u8]]) {
    let token = conn.token;
    let Some(names) = targets(conn, kind, names, false) else {
        return;
    };
    for name in names {
        let subs = conn.subs.get_or_insert_with(Default::default);
        if subs.set(kind).shift_remove(name.as_slice()) {
            ctx.subs.borrow_mut().remove(kind, &name, token);
        }
        let count = subs.count(kind);
        let mut r = conn.reply();
        header(&mut r, 3);
        r.bulk(kind.unsub_name().as_bytes());
        r.bulk(&name);
        r.int(count as i64);
    }
}

/// Drops every subscription of a connection (it is closing, or RESET).
pub fn unsubscribe_all(ctx: &ShardCtx, conn: &mut Conn) {
    let Some(subs) = conn.subs.take() else {
        return;
    };
    {
        let mut table = ctx.subs.borrow_mut();
        for (kind, set) in [
            (Kind::Channel, &subs.channels),
            (Kind::Pattern, &subs.patterns),
        ] {
            for name in set {
                table.remove(kind, name, conn.token);
            }
        }
    }
    // Shard channels are registered with the shards that own their slots.
    let mut per_owner: Vec<Vec<Vec<u8>>> = vec![Vec::new(); ctx.n];
    for name in &subs.shard {
        per_owner[crate::dispatch::shard_of(ctx, name)].push(name.clone());
    }
    for (owner, channels) in per_owner.into_iter().enumerate() {
        if channels.is_empty() {
            continue;
        }
        if owner == ctx.id {
            let mut table = ctx.subs.borrow_mut();
            for c in &channels {
                table.own(c, (ctx.id, conn.token), false);
            }
        } else {
            ctx.send_unanswered(
                owner,
                conn.token,
                ReqBody::ShardSub {
                    channels,
                    add: false,
                },
            );
        }
    }
}

/// SSUBSCRIBE / SUNSUBSCRIBE: each shard channel is registered with (or removed from) the shard
/// that owns its slot, and the replies leave once every owner has it, so a message published
/// right after the reply reaches this connection.
fn shard_subscribe(ctx: &ShardCtx, conn: &mut Conn, names: &[&[u8]], add: bool) {
    let kind = Kind::Shard;
    let Some(names) = targets(conn, kind, names, add) else {
        return;
    };
    // The replies, with the counts after each, are known now; the registrations go out.
    let mut replies = Vec::new();
    let mut per_owner: Vec<Vec<Vec<u8>>> = vec![Vec::new(); ctx.n];
    for name in &names {
        let subs = conn.subs.get_or_insert_with(Default::default);
        let changed = if add {
            subs.set(kind).insert(name.clone())
        } else {
            subs.set(kind).shift_remove(name.as_slice())
        };
        if changed {
            per_owner[crate::dispatch::shard_of(ctx, name)].push(name.clone());
        }
        let count = subs.count(kind);
        let mut r = Reply::new(&mut replies, conn.proto);
        header(&mut r, 3);
        r.bulk(
            if add {
                kind.sub_name()
            } else {
                kind.unsub_name()
            }
            .as_bytes(),
        );
        r.bulk(name);
        r.int(count as i64);
    }
    let parts: Vec<(usize, ReqBody)> = per_owner
        .into_iter()
        .enumerate()
        .filter(|(_, c)| !c.is_empty())
        .map(|(s, channels)| (s, ReqBody::ShardSub { channels, add }))
        .collect();
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |_, conn, _| conn.wbuf.extend_from_slice(&replies)),
    );
}

/// Serves a shard-channel (un)registration for connection `conn` of shard `from`.
pub fn serve_shard_sub(
    ctx: &ShardCtx,
    from: usize,
    conn: Token,
    channels: &[Vec<u8>],
    add: bool,
) -> RepBody {
    let mut table = ctx.subs.borrow_mut();
    for c in channels {
        table.own(c, (from, conn), add);
    }
    RepBody::Ack
}

/// SPUBLISH: to the shard that owns the channel's slot, which sends the message to each
/// subscriber's shard.
fn shard_publish(ctx: &ShardCtx, conn: &mut Conn, channel: &[u8], message: &[u8]) {
    if crate::cluster::enabled() {
        crate::cluster::bus::publish(true, channel, message);
    }
    let owner = crate::dispatch::shard_of(ctx, channel);
    let parts = vec![(
        owner,
        ReqBody::Publish {
            shard: true,
            channel: channel.to_vec(),
            message: message.to_vec(),
        },
    )];
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(|_, conn, results| {
            let n = RepBody::count_sum(&results);
            conn.reply().int(n);
        }),
    );
}

/// At the owner of a shard channel: sends the message to every subscriber's shard (this one's
/// directly); returns how many subscribers there are.
fn deliver_owned(ctx: &ShardCtx, me: Option<&mut Conn>, channel: &[u8], message: &[u8]) -> i64 {
    let subscribers = ctx
        .subs
        .borrow()
        .owned
        .get(channel)
        .cloned()
        .unwrap_or_default();
    let mut per_shard: Vec<Vec<Token>> = vec![Vec::new(); ctx.n];
    for (s, t) in &subscribers {
        if let Some(list) = per_shard.get_mut(*s) {
            list.push(*t);
        }
    }
    for (s, tokens) in per_shard.iter().enumerate() {
        if tokens.is_empty() || s == ctx.id {
            continue;
        }
        ctx.send_unanswered(
            s,
            Token::default(),
            ReqBody::ShardDeliver {
                conns: tokens.clone(),
                channel: channel.to_vec(),
                message: message.to_vec(),
            },
        );
    }
    let local = std::mem::take(&mut per_shard[ctx.id]);
    deliver_to(ctx, me, &local, b"smessage", channel, message);
    subscribers.len() as i64
}

/// Writes a message to these connections of this shard (`me`: the one being served now).
pub fn deliver_to(
    ctx: &ShardCtx,
    me: Option<&mut Conn>,
    tokens: &[Token],
    kind: &[u8],
    channel: &[u8],
    message: &[u8],
) -> i64 {
    write_to(ctx, me, tokens, &|c: &mut Conn| {
        let mut r = Reply::new(&mut c.wbuf, c.proto);
        header(&mut r, 3);
        r.bulk(kind);
        r.bulk(channel);
        r.bulk(message);
    })
}

/// Applies `write` to each of these connections of this shard and queues them to be written
/// out at the end of the loop iteration, with whatever else they get by then (one write for
/// many messages, as Redis writes its clients' buffers before it sleeps). Returns how many
/// there were.
/// A connection's channel, pattern and shard-channel subscription counts.
pub fn counts(conn: &Conn) -> (usize, usize, usize) {
    conn.subs.as_deref().map_or((0, 0, 0), |s| {
        (s.channels.len(), s.patterns.len(), s.shard.len())
    })
}

pub(crate) fn write_to(
    ctx: &ShardCtx,
    mut me: Option<&mut Conn>,
    tokens: &[Token],
    write: &dyn Fn(&mut Conn),
) -> i64 {
    let mut n = 0;
    for &t in tokens {
        if let Some(c) = me.as_deref_mut().filter(|c| c.token == t) {
            write(c);
            n += 1;
            continue;
        }
        let mut conns = ctx.conns.borrow_mut();
        let Some(mut c) = conns.take(t) else {
            continue;
        };
        write(&mut c);
        n += 1;
        let first = !c.flush_queued;
        c.flush_queued = true;
        conns.put_back(c);
        if first {
            ctx.flush_later.borrow_mut().push(t);
        }
    }
    n
}

fn publish(ctx: &ShardCtx, conn: &mut Conn, channel: &[u8], message: &[u8]) {
    if crate::cluster::enabled() {
        // The rest of the cluster's subscribers get it over the bus, as in Redis.
        crate::cluster::bus::publish(false, channel, message);
    }
    let shard = false;
    let parts = (0..ctx.n)
        .map(|s| {
            (
                s,
                ReqBody::Publish {
                    shard,
                    channel: channel.to_vec(),
                    message: message.to_vec(),
                },
            )
        })
        .collect();
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(|_, conn, results| {
            let n = RepBody::count_sum(&results);
            conn.reply().int(n);
        }),
    );
}

/// Delivers a message to this shard's subscribers; `me` is the connection being served now
/// (taken out of the table), if any. Returns how many received it.
pub fn deliver(
    ctx: &ShardCtx,
    mut me: Option<&mut Conn>,
    shard: bool,
    channel: &[u8],
    message: &[u8],
) -> i64 {
    if shard {
        return deliver_owned(ctx, me, channel, message);
    }
    type Matched = Vec<(Vec<u8>, Vec<Token>)>;
    let (direct, matched): (Vec<Token>, Matched) = {
        let subs = ctx.subs.borrow();
        let direct = subs.channels.get(channel).cloned().unwrap_or_default();
        let matched = subs
            .patterns
            .iter()
            .filter(|(p, _)| shards::glob::matches(p, channel, false))
            .map(|(p, t)| (p.clone(), t.clone()))
            .collect();
        (direct, matched)
    };
    let mut n = deliver_to(
        ctx,
        me.as_deref_mut(),
        &direct,
        b"message",
        channel,
        message,
    );
    for (pattern, tokens) in matched {
        n += write_to(ctx, me.as_deref_mut(), &tokens, &|c: &mut Conn| {
            let mut r = Reply::new(&mut c.wbuf, c.proto);
            header(&mut r, 4);
            r.bulk(b"pmessage");
            r.bulk(&pattern);
            r.bulk(channel);
            r.bulk(message);
        });
    }
    n
}

/// Writes out the connections that got messages during this loop iteration.
pub fn flush_delivered(ctx: &ShardCtx) {
    if ctx.flush_later.borrow().is_empty() {
        return;
    }
    let tokens = std::mem::take(&mut *ctx.flush_later.borrow_mut());
    for t in tokens {
        let Some(mut c) = ctx.conns.borrow_mut().take(t) else {
            continue;
        };
        c.flush_queued = false;
        ctx.finish(c);
    }
}

/// Sends `message` on `channel` to every shard's subscribers, answering no one (keyspace
/// notifications).
pub fn broadcast(ctx: &ShardCtx, channel: Vec<u8>, message: Vec<u8>) {
    deliver(ctx, None, false, &channel, &message);
    for s in (0..ctx.n).filter(|&s| s != ctx.id) {
        ctx.send_unanswered(
            s,
            Token::default(),
            ReqBody::Publish {
                shard: false,
                channel: channel.clone(),
                message: message.clone(),
            },
        );
    }
}

/// Delivers a message that came over the cluster bus to this process's subscribers, answering
/// no one and propagating nothing (shard 0, woken by the bus).
pub fn deliver_from_bus(ctx: &ShardCtx, shard: bool, channel: Vec<u8>, message: Vec<u8>) {
    if !shard {
        broadcast(ctx, channel, message);
        return;
    }
    let owner = crate::dispatch::shard_of(ctx, &channel);
    if owner == ctx.id {
        deliver(ctx, None, true, &channel, &message);
    } else {
        ctx.send_unanswered(
            owner,
            Token::default(),
            ReqBody::Publish {
                shard: true,
                channel,
                message,
            },
        );
    }
}

/// What a shard answers to PUBSUB's questions.
pub fn serve_query(ctx: &ShardCtx, q: &PubsubQuery) -> RepBody {
    let subs = ctx.subs.borrow();
    match q {
        PubsubQuery::Names { kind, pattern } => {
            let names: Vec<&Vec<u8>> = match kind {
                Kind::Channel => subs.channels.keys().collect(),
                Kind::Pattern => subs.patterns.keys().collect(),
                Kind::Shard => subs.owned.keys().collect(),
            };
            RepBody::Names(
                names
                    .into_iter()
                    .filter(|c| {
                        pattern
                            .as_ref()
                            .is_none_or(|p| shards::glob::matches(p, c, false))
                    })
                    .cloned()
                    .collect(),
            )
        }
        PubsubQuery::Counts { kind, names } => RepBody::Counts(
            names
                .iter()
                .map(|n| match kind {
                    Kind::Shard => subs.owned.get(n).map_or(0, |l| l.len() as i64),
                    _ => subs.channels.get(n).map_or(0, |l| l.len() as i64),
                })
                .collect(),
        ),
    }
}

/// A PUBSUB question for every shard.
#[derive(Debug, Clone)]
pub enum PubsubQuery {
    /// The channels (or patterns, or shard channels) with subscribers, matching a pattern.
    Names {
        kind: Kind,
        pattern: Option<Vec<u8>>,
    },
    /// How many subscribers each of these channels has.
    Counts { kind: Kind, names: Vec<Vec<u8>> },
}

fn pubsub(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let sub = argv[1];
    let ask = |q: PubsubQuery| {
        (0..ctx.n)
            .map(|s| (s, ReqBody::Pubsub(q.clone())))
            .collect()
    };
    if eq_ic(sub, "channels") || eq_ic(sub, "shardchannels") {
        if argv.len() > 3 {
            return Err(unknown_sub(sub));
        }
        let kind = if eq_ic(sub, "channels") {
            Kind::Channel
        } else {
            Kind::Shard
        };
        let pattern = argv.get(2).map(|p| p.to_vec());
        crate::dispatch::fan_out(
            ctx,
            conn,
            ask(PubsubQuery::Names { kind, pattern }),
            Box::new(|_, conn, results| {
                let mut all: Vec<Vec<u8>> = names_of(results);
                all.sort();
                all.dedup();
                conn.reply().bulks(all.iter());
            }),
        );
    } else if eq_ic(sub, "numpat") {
        if argv.len() != 2 {
            return Err(unknown_sub(sub));
        }
        crate::dispatch::fan_out(
            ctx,
            conn,
            ask(PubsubQuery::Names {
                kind: Kind::Pattern,
                pattern: None,
            }),
            Box::new(|_, conn, results| {
                let mut all = names_of(results);
                all.sort();
                all.dedup();
                conn.reply().int(all.len() as i64);
            }),
        );
    } else if eq_ic(sub, "numsub") || eq_ic(sub, "shardnumsub") {
        let kind = if eq_ic(sub, "numsub") {
            Kind::Channel
        } else {
            Kind::Shard
        };
        let names: Vec<Vec<u8>> = argv[2..].iter().map(|n| n.to_vec()).collect();
        let asked = names.clone();
        crate::dispatch::fan_out(
            ctx,
            conn,
            ask(PubsubQuery::Counts { kind, names }),
            Box::new(move |_, conn, results| {
                let mut sums = vec![0i64; asked.len()];
                for (_, b) in results {
                    if let RepBody::Counts(c) = b {
                        for (s, x) in sums.iter_mut().zip(c) {
                            *s += x;
                        }
                    }
                }
                let proto = conn.proto;
                let mut r = conn.reply();
                if proto == Proto::Resp3 {
                    r.map(asked.len());
                } else {
                    r.array(asked.len() * 2);
                }
                for (n, c) in asked.iter().zip(sums) {
                    r.bulk(n);
                    r.int(c);
                }
            }),
        );
    } else if eq_ic(sub, "help") && argv.len() == 2 {
        let lines = [
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the currently active shard level channels matching a <pattern> (default: '*').",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
        ];
        crate::server_cmds::help(conn, "PUBSUB", &lines);
    } else {
        return Err(unknown_sub(sub));
    }
    Ok(())
}

/// Redis's reply to a PUBSUB subcommand it does not know or got the wrong arguments for.
fn unknown_sub(sub: &[u8]) -> Error {
    Error::err(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
        String::from_utf8_lossy(sub)
    ))
}

fn names_of(results: Vec<(usize, RepBody)>) -> Vec<Vec<u8>> {
    results
        .into_iter()
        .flat_map(|(_, b)| match b {
            RepBody::Names(n) => n,
            _ => Vec::new(),
        })
        .collect()
}

/// `client-output-buffer-limit`'s pubsub class: (hard bytes, soft bytes, soft seconds).
pub fn output_limits(spec: &str, which: &str) -> (u64, u64, u64) {
    let words: Vec<&str> = spec.split_whitespace().collect();
    for c in words.chunks(4) {
        if let [class, hard, soft, secs] = c {
            if class.eq_ignore_ascii_case(which) {
                let m = |s: &str| crate::config::parse_memory(s).unwrap_or(0);
                return (m(hard), m(soft), secs.parse().unwrap_or(0));
            }
        }
    }
    if which == "pubsub" {
        (32 << 20, 8 << 20, 60)
    } else {
        (0, 0, 0)
    }
}

/// Whether a subscriber's pending output is over its limits (it is then closed).
pub fn over_limit(ctx: &ShardCtx, conn: &mut Conn, now_ms: u64) -> bool {
    let pending = conn.pending_output() as u64;
    // Subscribers have the pubsub class's limits, other clients the normal class's.
    let (limits, soft_since) = match conn.subs.as_mut() {
        Some(subs) => (ctx.pubsub_limits.get(), &mut subs.soft_since),
        None => (ctx.normal_limits.get(), &mut conn.out_soft_since),
    };
    let (hard, soft, secs) = limits;
    if hard > 0 && pending > hard {
        return true;
    }
    if soft > 0 && pending > soft {
        let since = *soft_since.get_or_insert(now_ms);
        return now_ms.saturating_sub(since) >= secs * 1000;
    }
    *soft_since = None;
    false
}

/// Publishes the keyspace events the engine recorded (`notify-keyspace-events`):
/// `__keyspace@<db>__:<key>` with the event, `__keyevent@<db>__:<event>` with the key.
pub fn notify_events(ctx: &ShardCtx) {
    let events = {
        let mut e = ctx.engine.borrow_mut();
        if e.events.is_empty() {
            return;
        }
        std::mem::take(&mut e.events)
    };
    let flags = ctx.engine.borrow().notify_flags;
    use shards::shard::class;
    for ev in events {
        if flags & class::KEYSPACE != 0 {
            let mut ch = format!("__keyspace@{}__:", ev.db).into_bytes();
            ch.extend_from_slice(&ev.key);
            broadcast(ctx, ch, ev.event.as_bytes().to_vec());
        }
        if flags & class::KEYEVENT != 0 {
            let ch = format!("__keyevent@{}__:{}", ev.db, ev.event).into_bytes();
            broadcast(ctx, ch, ev.key.clone());
        }
    }
}
