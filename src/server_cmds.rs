//! Commands the server layer carries out itself: connection state (SELECT, HELLO, AUTH, RESET,
//! QUIT, CLIENT) and process-wide work (INFO, CONFIG, DEBUG, SHUTDOWN), some of which ask every
//! shard for its part.

use crate::block::Unblock;
use crate::conn::Conn;
use crate::ctx::{now_us, ShardCtx, REDIS_VERSION};
use crate::msg::{RepBody, ReqBody, ReqPart, ShardStats};
use shards::cmd::{ConnCmd, Lookup};
use shards::resp::{Proto, Reply};
use shards::util::{eq_ic, parse_i64};
use shards::Error;
use std::fmt::Write as _;

/// Which connections CLIENT KILL closes.
#[derive(Debug, Clone, Default)]
pub struct KillFilter {
    pub id: Option<u64>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    pub user: Option<String>,
    pub kind: Option<String>,
    /// The caller's id when SKIPME yes (the default).
    pub skip: Option<u64>,
}

impl KillFilter {
    fn matches(&self, c: &Conn) -> bool {
        self.id.is_none_or(|id| id == c.id)
            && self.addr.as_deref().is_none_or(|a| a == c.addr)
            && self.laddr.as_deref().is_none_or(|a| a == c.laddr)
            && self.user.as_deref().is_none_or(|u| {
                c.user
                    .as_ref()
                    .is_some_and(|cu| cu.name.as_slice() == u.as_bytes())
            })
            && self.kind.as_deref().is_none_or(|k| k == c.kind())
            && self.skip != Some(c.id)
    }
}

/// Carries out a server-level command for `conn`.
pub fn handle(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]], cmd: ConnCmd) {
    let r = match cmd {
        ConnCmd::Select => select(conn, argv),
        ConnCmd::Hello => hello(ctx, conn, argv),
        ConnCmd::Quit => {
            conn.reply().ok();
            conn.close_after_reply = true;
            Ok(())
        }
        ConnCmd::Reset => {
            conn.multi = None;
            crate::multi::unwatch_all(ctx, conn);
            crate::pubsub::unsubscribe_all(ctx, conn);
            crate::tracking::stop(ctx, conn);
            conn.db = 0;
            conn.proto = Proto::Resp2;
            conn.name = None;
            ctx.shared.set_ident(ctx.id, conn, true);
            crate::monitor::stop(ctx, conn);
            crate::acl_cmds::attach_default(&ctx.shared.acl, conn);
            conn.reply().simple("RESET");
            Ok(())
        }
        ConnCmd::Auth => auth(ctx, conn, argv),
        ConnCmd::Acl => crate::acl_cmds::handle(ctx, conn, l, argv),
        ConnCmd::Slowlog => slowlog(ctx, conn, l, argv),
        ConnCmd::Latency => latency(ctx, conn, l, argv),
        ConnCmd::Memory => crate::memory::handle(ctx, conn, l, argv),
        ConnCmd::Repl => crate::repl::handle(ctx, conn, l, argv),
        ConnCmd::Monitor => {
            crate::monitor::start(ctx, conn);
            Ok(())
        }
        ConnCmd::Client => client(ctx, conn, l, argv),
        ConnCmd::Info => {
            info(ctx, conn, argv);
            Ok(())
        }
        ConnCmd::Config => config(ctx, conn, l, argv),
        ConnCmd::Command => Err(Error::err("unsupported")),
        ConnCmd::Shutdown => shutdown(ctx, argv),
        ConnCmd::Debug => crate::server_cmds::debug(ctx, conn, argv),
        ConnCmd::Persist => crate::save::handle(ctx, conn, argv),
        ConnCmd::PubSub => crate::pubsub::handle(ctx, conn, argv),
        ConnCmd::Cluster => crate::cluster::commands::handle(ctx, conn, l, argv),
        ConnCmd::Migrate => crate::cluster::migrate::handle(ctx, conn, argv),
        ConnCmd::Multi | ConnCmd::Exec | ConnCmd::Discard | ConnCmd::Watch | ConnCmd::Unwatch => {
            crate::multi::handle(ctx, conn, argv, cmd)
        }
    };
    if let Err(e) = r {
        let text = e.text();
        ctx.engine.borrow_mut().stats.record_error(&text);
        conn.error(&text);
    }
}

fn select(conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let n = parse_i64(argv[1]).ok_or(Error::NotInteger)?;
    if n != 0 && crate::cluster::enabled() {
        return Err(Error::err("SELECT is not allowed in cluster mode"));
    }
    if !(0..shards::limits::DATABASES as i64).contains(&n) {
        return Err(Error::DbIndexOutOfRange);
    }
    conn.db = n as usize;
    conn.reply().ok();
    Ok(())
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

fn auth(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let (user, pass): (&[u8], &[u8]) = match argv.len() {
        2 => {
            if ctx.shared.acl.default_user().nopass {
                return Err(Error::err(
                    "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ));
            }
            (b"default", argv[1])
        }
        3 => (argv[1], argv[2]),
        _ => return Err(Error::Syntax),
    };
    if !crate::acl_cmds::login(ctx, conn, user, pass, argv[0]) {
        return Err(Error::Other(WRONGPASS.into()));
    }
    conn.reply().ok();
    Ok(())
}

/// Redis accepts client names of printable ASCII without spaces.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

fn hello(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let mut ver = None;
    let mut i = 1;
    if argv.len() >= 2 {
        let v = parse_i64(argv[1])
            .ok_or_else(|| Error::err("Protocol version is not an integer or out of range"))?;
        if !(2..=3).contains(&v) {
            return Err(Error::Other("NOPROTO unsupported protocol version".into()));
        }
        ver = Some(v);
        i = 2;
    }
    let (mut creds, mut name) = (None, None);
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        if eq_ic(argv[i], "auth") && more >= 2 {
            creds = Some((argv[i + 1], argv[i + 2]));
            i += 3;
        } else if eq_ic(argv[i], "setname") && more >= 1 {
            name = Some(argv[i + 1]);
            i += 2;
        } else {
            return Err(Error::err(format!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(argv[i])
            )));
        }
    }
    if let Some((u, p)) = creds {
        if !crate::acl_cmds::login(ctx, conn, u, p, argv[0]) {
            return Err(Error::Other(WRONGPASS.into()));
        }
    }
    if let Some(n) = name {
        if !valid_name(n) {
            return Err(Error::Other(BAD_NAME.into()));
        }
        conn.name = if n.is_empty() { None } else { Some(n.to_vec()) };
        ctx.shared.set_ident(ctx.id, conn, true);
    }
    if crate::acl_cmds::auth_required(ctx, conn) {
        return Err(Error::Other("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into()));
    }
    if let Some(v) = ver {
        conn.proto = if v == 3 { Proto::Resp3 } else { Proto::Resp2 };
    }
    let id = conn.id as i64;
    let proto = if conn.proto == Proto::Resp3 { 3 } else { 2 };
    let mut r = conn.reply();
    r.map(7);
    r.bulk(b"server");
    r.bulk(b"redis");
    r.bulk(b"version");
    r.bulk(REDIS_VERSION.as_bytes());
    r.bulk(b"proto");
    r.int(proto);
    r.bulk(b"id");
    r.int(id);
    r.bulk(b"mode");
    r.bulk(crate::cluster::server_mode().as_bytes());
    r.bulk(b"role");
    r.bulk(b"master");
    r.bulk(b"modules");
    r.array(0);
    Ok(())
}

fn client(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) -> Result<(), Error> {
    let now_ms = now_us() / 1000;
    match l.spec.name {
        "id" => {
            let id = conn.id as i64;
            conn.reply().int(id)
        }
        "getname" => match conn.name.clone() {
            Some(n) => conn.reply().bulk(&n),
            None => conn.reply().null(),
        },
        "getredir" | "trackinginfo" | "tracking" | "caching" => {
            crate::tracking::command(ctx, conn, l.spec.name, argv)?
        }
        "no-evict" => {
            conn.no_evict = match argv[2] {
                a if eq_ic(a, "on") => true,
                a if eq_ic(a, "off") => false,
                _ => return Err(Error::Syntax),
            };
            conn.reply().ok();
        }
        "reply" => {
            use crate::conn::ReplyMode;
            conn.reply_mode = match argv[2] {
                a if eq_ic(a, "on") => ReplyMode::On,
                a if eq_ic(a, "off") => ReplyMode::Off,
                a if eq_ic(a, "skip") => ReplyMode::Skip,
                _ => return Err(Error::Syntax),
            };
            if conn.reply_mode == ReplyMode::On {
                conn.reply().ok();
            }
        }
        "pause" => {
            let ms = parse_i64(argv[2])
                .ok_or_else(|| Error::err("timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(Error::err("timeout is negative"));
            }
            let all = match argv.get(3) {
                None => true,
                Some(a) if eq_ic(a, "all") => true,
                Some(a) if eq_ic(a, "write") => false,
                Some(_) => return Err(Error::err("CLIENT PAUSE mode must be WRITE or ALL")),
            };
            if argv.len() > 4 {
                return Err(Error::err(
                    "unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP.",
                ));
            }
            crate::pause::pause(&ctx.shared, now_ms.saturating_add(ms as u64), all);
            conn.reply().ok();
        }
        "unpause" => {
            crate::pause::unpause(ctx);
            conn.reply().ok();
        }
        "setname" => {
            if !valid_name(argv[2]) {
                return Err(Error::Other(BAD_NAME.into()));
            }
            conn.name = if argv[2].is_empty() {
                None
            } else {
                Some(argv[2].to_vec())
            };
            ctx.shared.set_ident(ctx.id, conn, true);
            conn.reply().ok();
        }
        "info" => {
            let line = conn.info_line(now_ms);
            conn.reply().verbatim(line.as_bytes());
        }
        "list" => client_list(ctx, conn, argv)?,
        "kill" => client_kill(ctx, conn, argv)?,
        "unblock" => client_unblock(ctx, conn, argv)?,
        "help" => help(
            conn,
            "CLIENT",
            &[
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are: ID, TYPE, USER, ADDR, LADDR, SKIPME.",
                "LIST [options ...]",
                "    Return information about client connections. Options: TYPE, ID.",
                "GETNAME",
                "    Return the name of the current connection.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
            ],
        ),
        _ => return Err(Error::err("unknown subcommand")),
    }
    Ok(())
}

pub fn help(conn: &mut Conn, cmd: &str, lines: &[&str]) {
    let mut r = conn.reply();
    r.array(lines.len() + 3);
    r.simple(&format!(
        "{cmd} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ));
    for l in lines {
        r.simple(l);
    }
    r.simple("HELP");
    r.simple("    Prints this help.");
}

fn client_list(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let mut ids: Option<Vec<u64>> = None;
    let mut kind: Option<String> = None;
    let mut i = 2;
    while i < argv.len() {
        if eq_ic(argv[i], "type") && i + 1 < argv.len() {
            let t = String::from_utf8_lossy(argv[i + 1]).to_ascii_lowercase();
            match t.as_str() {
                "normal" | "pubsub" | "master" | "replica" => kind = Some(t),
                "slave" => kind = Some("replica".into()),
                _ => return Err(Error::err(format!("Unknown client type '{t}'"))),
            }
            i += 2;
        } else if eq_ic(argv[i], "id") && i + 1 < argv.len() {
            let list = ids.get_or_insert_with(Vec::new);
            i += 1;
            while i < argv.len() {
                let id = parse_i64(argv[i])
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Error::err("Invalid client ID"))?;
                list.push(id as u64);
                i += 1;
            }
        } else {
            return Err(Error::Syntax);
        }
    }
    let parts = (0..ctx.n)
        .map(|s| (s, ReqBody::ClientList(ids.clone(), kind.clone())))
        .collect();
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |ctx, conn, results| {
            let mut text = String::new();
            let mut sorted = results;
            sorted.sort_by_key(|(s, _)| *s);
            for (_, b) in sorted {
                if let RepBody::Lines(l) = b {
                    text.push_str(&l);
                }
            }
            // Replicas' links are threads of the replication hub, not shards' connections.
            text.push_str(&crate::repl::replica_lines(
                &ctx.shared,
                ids.as_deref(),
                kind.as_deref(),
            ));
            conn.reply().verbatim(text.as_bytes());
        }),
    );
    Ok(())
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR]: ends a blocking command of another connection.
fn client_unblock(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let id = parse_i64(argv[2]).ok_or(Error::NotInteger)?;
    let error = match argv.get(3) {
        None => false,
        Some(a) if eq_ic(a, "timeout") => false,
        Some(a) if eq_ic(a, "error") => true,
        Some(_) => {
            return Err(Error::err(
                "CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            ))
        }
    };
    if argv.len() > 4 {
        return Err(Error::Syntax);
    }
    let parts = (0..ctx.n)
        .map(|s| {
            (
                s,
                ReqBody::ClientUnblock {
                    id: id as u64,
                    error,
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
            conn.reply().int(n.min(1));
        }),
    );
    Ok(())
}

fn client_kill(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let mut f = KillFilter {
        skip: Some(conn.id),
        ..Default::default()
    };
    let old_style = argv.len() == 3;
    if old_style {
        f.addr = Some(String::from_utf8_lossy(argv[2]).into_owned());
        f.skip = None;
    } else {
        if !argv.len().is_multiple_of(2) {
            return Err(Error::Syntax);
        }
        for pair in argv[2..].chunks(2) {
            let (k, v) = (pair[0], String::from_utf8_lossy(pair[1]).into_owned());
            if eq_ic(k, "id") {
                let id = parse_i64(pair[1])
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Error::err("client-id should be greater than 0"))?;
                f.id = Some(id as u64);
            } else if eq_ic(k, "type") {
                let t = v.to_ascii_lowercase();
                if !["normal", "master", "replica", "slave", "pubsub"].contains(&t.as_str()) {
                    return Err(Error::err(format!("Unknown client type '{v}'")));
                }
                f.kind = Some(t);
            } else if eq_ic(k, "addr") {
                f.addr = Some(v);
            } else if eq_ic(k, "laddr") {
                f.laddr = Some(v);
            } else if eq_ic(k, "user") {
                f.user = Some(v);
            } else if eq_ic(k, "skipme") {
                match v.to_ascii_lowercase().as_str() {
                    "yes" => f.skip = Some(conn.id),
                    "no" => f.skip = None,
                    _ => return Err(Error::Syntax),
                }
            } else {
                return Err(Error::Syntax);
            }
        }
    }
    let parts = (0..ctx.n)
        .map(|s| (s, ReqBody::ClientKill(f.clone())))
        .collect();
    // The replication links are not connections of the shards (see `repl::kill_links`).
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |ctx, conn, results| {
            let n: i64 = results
                .iter()
                .map(|(_, b)| if let RepBody::Count(n) = b { *n } else { 0 })
                .sum::<i64>()
                + crate::repl::kill_links(&ctx.shared, &f);
            if old_style {
                if n == 0 {
                    conn.error("ERR No such client");
                } else {
                    conn.reply().ok();
                }
            } else {
                conn.reply().int(n);
            }
        }),
    );
    Ok(())
}

/// Serves a part for this shard itself; `conn` is the calling connection (out of the slab).
pub fn serve_local(ctx: &ShardCtx, conn: &mut Conn, part: &ReqPart) -> RepBody {
    let now_ms = now_us() / 1000;
    match &part.body {
        // The publisher itself may be a subscriber (RESP3).
        ReqBody::Publish {
            shard,
            channel,
            message,
        } => RepBody::Count(crate::pubsub::deliver(
            ctx,
            Some(conn),
            *shard,
            channel,
            message,
        )),
        ReqBody::ClientList(ids, kind) => {
            let mut lines = String::new();
            let mut all: Vec<&Conn> = Vec::new();
            let conns = ctx.conns.borrow();
            all.extend(conns.iter());
            all.push(conn);
            all.sort_by_key(|c| c.id);
            for c in all {
                if ids.as_ref().is_none_or(|ids| ids.contains(&c.id))
                    && kind.as_deref().is_none_or(|k| k == c.kind())
                {
                    lines.push_str(&c.info_line(now_ms));
                }
            }
            if let Some(l) =
                crate::repl::replica::master_client_line(ctx, ids.as_deref(), kind.as_deref())
            {
                lines.push_str(&l);
            }
            RepBody::Lines(lines)
        }
        ReqBody::ClientKill(f) => {
            let mut n = kill_matching(ctx, f);
            if f.matches(conn) {
                conn.close_after_reply = true;
                n += 1;
            }
            RepBody::Count(n)
        }
        _ => ctx.serve_part(ctx.id, part),
    }
}

fn kill_matching(ctx: &ShardCtx, f: &KillFilter) -> i64 {
    let victims: Vec<crate::msg::Token> = ctx
        .conns
        .borrow()
        .iter()
        .filter(|c| f.matches(c))
        .map(|c| c.token)
        .collect();
    for t in &victims {
        let victim = ctx.conns.borrow_mut().take(*t);
        if let Some(c) = victim {
            ctx.close(c);
        }
    }
    victims.len() as i64
}

/// Serves the admin parts of requests from other shards.
pub fn serve_admin(ctx: &ShardCtx, body: &ReqBody) -> RepBody {
    let now_ms = now_us() / 1000;
    match body {
        ReqBody::Stats(latency) => {
            let mut st = shard_stats(ctx);
            if *latency {
                st.latency = ctx.engine.borrow().latency.histograms();
            }
            RepBody::Stats(Box::new(st))
        }
        ReqBody::ClientList(ids, kind) => {
            let conns = ctx.conns.borrow();
            let mut all: Vec<&Conn> = conns.iter().collect();
            all.sort_by_key(|c| c.id);
            let mut lines: String = all
                .into_iter()
                .filter(|c| ids.as_ref().is_none_or(|ids| ids.contains(&c.id)))
                .filter(|c| kind.as_deref().is_none_or(|k| k == c.kind()))
                .map(|c| c.info_line(now_ms))
                .collect();
            lines.extend(crate::repl::replica::master_client_line(
                ctx,
                ids.as_deref(),
                kind.as_deref(),
            ));
            RepBody::Lines(lines)
        }
        ReqBody::ClientKill(f) => RepBody::Count(kill_matching(ctx, f)),
        ReqBody::SetActiveExpire(on) => {
            ctx.engine.borrow_mut().config.active_expire = *on;
            RepBody::Ack
        }
        ReqBody::DebugObject(db, key) => crate::debug::object(ctx, *db as usize, key, now_ms),
        ReqBody::ClusterMissing(keys) => {
            RepBody::Count(crate::cluster::route::missing_here(ctx, keys))
        }
        ReqBody::ClusterKeys { slot, limit } => {
            crate::cluster::commands::keys_here(ctx, *slot, *limit)
        }
        ReqBody::Publish {
            shard,
            channel,
            message,
        } => RepBody::Count(crate::pubsub::deliver(ctx, None, *shard, channel, message)),
        ReqBody::Pubsub(q) => crate::pubsub::serve_query(ctx, q),
        ReqBody::Monitor(text) => {
            crate::monitor::deliver(ctx, None, text);
            RepBody::Ack
        }
        ReqBody::Unpause => {
            crate::pause::resume(ctx);
            RepBody::Ack
        }
        ReqBody::Populate {
            db,
            count,
            prefix,
            size,
        } => crate::debug::populate(ctx, *db as usize, *count, prefix, *size, now_ms),
        ReqBody::Digest => {
            RepBody::Digest(crate::debug::digest(&mut ctx.engine.borrow_mut(), now_ms))
        }
        ReqBody::ClientUnblock { id, error } => {
            let how = if *error {
                Unblock::Error
            } else {
                Unblock::Timeout
            };
            let target = ctx
                .conns
                .borrow()
                .iter()
                .find(|c| c.id == *id)
                .map(|c| (c.token, c.wait_shard()));
            if let Some((token, None)) = target {
                // A polling multi-shard blocking command: answer it here.
                let Some(mut c) = ctx.conns.borrow_mut().take(token) else {
                    return RepBody::Count(0);
                };
                let polling = matches!(c.wait, crate::conn::Wait::Retry);
                if polling {
                    c.wait = crate::conn::Wait::None;
                    ctx.end_watch(&mut c);
                    let reply = if *error {
                        crate::block::unblocked_error()
                    } else {
                        crate::block::timeout_reply(c.proto)
                    };
                    c.wbuf.extend_from_slice(&reply);
                    crate::dispatch::process(ctx, &mut c);
                }
                ctx.finish(c);
                return RepBody::Count(polling as i64);
            }
            match target {
                Some((token, Some(shard))) if shard == ctx.id => {
                    let w = ctx.blocked.borrow().of_conn(ctx.id, token);
                    if let Some(w) = w {
                        ctx.unblock(w, how);
                    }
                    RepBody::Count(1)
                }
                Some((token, Some(shard))) => {
                    ctx.send_unanswered(shard, token, ReqBody::Unblock(how));
                    RepBody::Count(1)
                }
                _ => RepBody::Count(0),
            }
        }
        ReqBody::Slowlog(count) => {
            let mut e = ctx.engine.borrow_mut();
            match count {
                Some(n) => RepBody::Slow(e.slowlog.newest(*n), e.slowlog.len()),
                None => {
                    e.slowlog.reset();
                    RepBody::Ack
                }
            }
        }
        ReqBody::Latency(reset) => {
            let mut e = ctx.engine.borrow_mut();
            match reset {
                Some(names) => RepBody::Count(e.latency.reset_events(names) as i64),
                None => RepBody::Latency(crate::msg::LatencyData {
                    hists: e.latency.histograms(),
                    events: e.latency.events(),
                }),
            }
        }
        ReqBody::ResetStat => {
            ctx.engine.borrow_mut().stats = Default::default();
            ctx.engine.borrow_mut().latency.reset_histograms();
            ctx.net.reset();
            RepBody::Ack
        }
        _ => RepBody::Ack,
    }
}

fn shard_stats(ctx: &ShardCtx) -> ShardStats {
    let e = ctx.engine.borrow();
    let mut cmd = e.stats.cmd_stats();
    cmd.sort_by(|a, b| a.0.cmp(&b.0));
    ShardStats {
        keys: e
            .dbs
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.is_empty())
            .map(|(i, d)| (i, d.len(), d.volatile_len() as u64))
            .collect(),
        keyspace_hits: e.stats.keyspace_hits,
        keyspace_misses: e.stats.keyspace_misses,
        expired_keys: e.expired_keys(),
        evicted_keys: e.stats.evicted_keys,
        eviction_exceeded_us: e.stats.eviction_exceeded_us,
        eviction_current_us: shards::evict::exceeded_now_us(&e, crate::ctx::now_us()),
        commands: e.stats.commands,
        cmd,
        connected_clients: ctx.conns.borrow().live,
        blocked_clients: ctx
            .conns
            .borrow()
            .iter()
            .filter(|c| {
                matches!(
                    c.wait,
                    crate::conn::Wait::Blocked { .. } | crate::conn::Wait::Retry
                )
            })
            .count(),
        connections_received: ctx.net.connections_received.get(),
        net_input_bytes: ctx.net.net_input_bytes.get(),
        net_output_bytes: ctx.net.net_output_bytes.get(),
        rejected_connections: ctx.net.rejected_connections.get(),
        errorstats: e
            .stats
            .errors
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        hops_out: ctx.net.hops_out.get(),
        tracking: {
            let (keys, items, prefixes) = e.tracking.totals();
            let conns = ctx
                .conns
                .borrow()
                .iter()
                .filter(|c| c.tracking.is_some())
                .count();
            (conns, keys, items, prefixes)
        },
        memory: crate::memory::thread_live_bytes(),
        lua_memory: shards::script::vm_memory() as u64,
        clients_memory: ctx
            .conns
            .borrow()
            .iter()
            .filter(|c| c.fd >= 0)
            .map(|c| (c.rbuf.capacity() + c.wbuf.capacity() + std::mem::size_of::<Conn>()) as u64)
            .sum(),
        aof: ctx.aof.borrow().as_ref().map(|a| {
            (
                a.base_size + a.incr_size,
                a.base_size,
                a.queued - a.written,
                a.last_error.is_none(),
            )
        }),
        latency: Vec::new(),
        rates: ctx.rates.borrow().rates(),
        pubsub: ctx.subs.borrow().names(),
    }
}

fn info(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) {
    let sections: Vec<String> = argv[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let with_latency = crate::info::wants_latency(&sections);
    let parts = (0..ctx.n)
        .map(|s| (s, ReqBody::Stats(with_latency)))
        .collect();
    let shared = ctx.shared.clone();
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |_, conn, results| {
            let mut stats: Vec<(usize, ShardStats)> = results
                .into_iter()
                .filter_map(|(s, b)| {
                    if let RepBody::Stats(st) = b {
                        Some((s, *st))
                    } else {
                        None
                    }
                })
                .collect();
            stats.sort_by_key(|(s, _)| *s);
            let text = crate::info::render(&shared, &sections, &stats);
            conn.reply().verbatim(text.as_bytes());
        }),
    );
}

/// Every shard's latency data, merged: histograms added per command, event series merged.
pub fn merge_latency(
    results: Vec<(usize, RepBody)>,
) -> (
    std::collections::BTreeMap<String, shards::latency::Histogram<u64>>,
    std::collections::BTreeMap<String, shards::latency::Series>,
) {
    let mut hists: std::collections::BTreeMap<String, shards::latency::Histogram<u64>> =
        Default::default();
    let mut events: std::collections::BTreeMap<String, shards::latency::Series> =
        Default::default();
    for (_, b) in results {
        if let RepBody::Latency(d) = b {
            for (name, h) in d.hists {
                match hists.get_mut(&name) {
                    Some(mine) => {
                        let _ = mine.add(&h);
                    }
                    None => {
                        hists.insert(name, h);
                    }
                }
            }
            for (name, s) in d.events {
                events.entry(name).or_default().merge(&s);
            }
        }
    }
    (hists, events)
}

/// LATENCY LATEST / HISTORY / RESET / HISTOGRAM / HELP over every shard.
fn latency(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) -> Result<(), Error> {
    let sub = l.spec.name;
    if sub == "help" {
        help(
            conn,
            "LATENCY",
            &[
                "DOCTOR",
                "    Return a human readable latency analysis report.",
                "GRAPH <event>",
                "    Return an ASCII latency graph for the <event> class.",
                "HISTORY <event>",
                "    Return time-latency samples for the <event> class.",
                "LATEST",
                "    Return the latest latency samples for all events.",
                "RESET [<event> ...]",
                "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HISTOGRAM [COMMAND ...]",
                "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
                "    If no commands are specified then all histograms are replied.",
            ],
        );
        return Ok(());
    }
    if sub == "reset" {
        let names: Vec<Vec<u8>> = argv[2..].iter().map(|a| a.to_vec()).collect();
        let parts = (0..ctx.n)
            .map(|s| (s, ReqBody::Latency(Some(names.clone()))))
            .collect();
        crate::dispatch::fan_out(
            ctx,
            conn,
            parts,
            Box::new(|_, conn, results| {
                // An event counts once however many shards had it: the most any shard reset.
                let n = results
                    .iter()
                    .filter_map(|(_, b)| match b {
                        RepBody::Count(n) => Some(*n),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                conn.reply().int(n);
            }),
        );
        return Ok(());
    }
    let args: Vec<Vec<u8>> = argv[2..].iter().map(|a| a.to_ascii_lowercase()).collect();
    let ctx_threshold = ctx.shared.config.get_i64("latency-monitor-threshold");
    let parts = (0..ctx.n).map(|s| (s, ReqBody::Latency(None))).collect();
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |_, conn, results| {
            let (hists, events) = merge_latency(results);
            let mut r = conn.reply();
            match sub {
                "doctor" => {
                    let threshold = ctx_threshold;
                    r.verbatim(latency_report(&events, threshold).as_bytes());
                }
                "graph" => {
                    let name = String::from_utf8_lossy(&args[0]).into_owned();
                    match events.get(&name).filter(|s| !s.samples.is_empty()) {
                        Some(s) => r.verbatim(latency_graph(&name, s).as_bytes()),
                        None => r.error(&format!("ERR No samples available for event '{name}'")),
                    }
                }
                "latest" => {
                    r.array(events.len());
                    for (name, s) in &events {
                        let (t, ms) = s.samples.back().copied().unwrap_or((0, 0));
                        r.array(4);
                        r.bulk(name.as_bytes());
                        r.int(t as i64);
                        r.int(ms as i64);
                        r.int(s.max_ms as i64);
                    }
                }
                "history" => {
                    let name = String::from_utf8_lossy(&args[0]).into_owned();
                    let samples = events
                        .get(&name)
                        .map(|s| s.samples.clone())
                        .unwrap_or_default();
                    r.array(samples.len());
                    for (t, ms) in samples {
                        r.array(2);
                        r.int(t as i64);
                        r.int(ms as i64);
                    }
                }
                _ => {
                    // HISTOGRAM [command …]: the named ones that have data (a container names
                    // its subcommands), or all.
                    let chosen: Vec<(&String, &shards::latency::Histogram<u64>)> = hists
                        .iter()
                        .filter(|(name, _)| {
                            args.is_empty()
                                || args.iter().any(|a| {
                                    let a = String::from_utf8_lossy(a);
                                    **name == a || name.starts_with(&format!("{a}|"))
                                })
                        })
                        .collect();
                    r.map(chosen.len());
                    for (name, h) in chosen {
                        r.bulk(name.as_bytes());
                        shards::latency::cdf_reply(h, &mut r);
                    }
                }
            }
        }),
    );
    Ok(())
}

/// LATENCY DOCTOR: a short report in our own words on each event's samples.
fn latency_report(
    events: &std::collections::BTreeMap<String, shards::latency::Series>,
    threshold_ms: i64,
) -> String {
    let mut out = String::new();
    if threshold_ms == 0 {
        out.push_str("The latency monitor is off: CONFIG SET latency-monitor-threshold <milliseconds> turns it on.\n");
    }
    if events.is_empty() {
        out.push_str("No latency events recorded.\n");
        return out;
    }
    for (name, s) in events {
        let n = s.samples.len().max(1) as f64;
        let avg = s.samples.iter().map(|x| x.1 as f64).sum::<f64>() / n;
        let first = s.samples.front().map_or(0, |x| x.0);
        let last = s.samples.back().map_or(0, |x| x.0);
        out.push_str(&format!(
            "{name}: {} samples over {} s, average {avg:.1} ms, worst ever {} ms.\n",
            s.samples.len(),
            last.saturating_sub(first),
            s.max_ms
        ));
    }
    out
}

/// LATENCY GRAPH: the event's samples as columns of `#`, oldest first, scaled between the
/// lowest and the highest sample, under a header naming both.
fn latency_graph(name: &str, s: &shards::latency::Series) -> String {
    const ROWS: u64 = 4;
    let hi = s.samples.iter().map(|x| x.1).max().unwrap_or(0);
    let lo = s.samples.iter().map(|x| x.1).min().unwrap_or(0);
    let mut out = format!(
        "{name} - high {hi} ms, low {lo} ms (all time high {} ms)\n{}\n",
        s.max_ms,
        "-".repeat(80)
    );
    let height = |ms: u64| {
        if hi == lo {
            ROWS
        } else {
            1 + (ms - lo) * (ROWS - 1) / (hi - lo)
        }
    };
    for row in (1..=ROWS).rev() {
        let line: String = s
            .samples
            .iter()
            .map(|x| if height(x.1) >= row { '#' } else { ' ' })
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// SLOWLOG GET / LEN / RESET over every shard's log (ids are process-wide, so the merge is by
/// id, newest first).
fn slowlog(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) -> Result<(), Error> {
    let count = match l.spec.name {
        "help" => {
            help(
                conn,
                "SLOWLOG",
                &[
                    "GET [<count>]",
                    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                    "    Entries are made of:",
                    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                    "    client name",
                    "LEN",
                    "    Return the length of the slowlog.",
                    "RESET",
                    "    Reset the slowlog.",
                ],
            );
            return Ok(());
        }
        "reset" => None,
        "len" => Some(0),
        _ => match argv.get(2) {
            None => Some(10),
            Some(a) => match parse_i64(a) {
                Some(-1) => Some(usize::MAX),
                Some(n) if n >= 0 => Some(n as usize),
                _ => return Err(Error::err("count should be greater than or equal to -1")),
            },
        },
    };
    let len_only = l.spec.name == "len";
    // Each shard keeps `slowlog-max-len`; together they show the newest that many.
    let max_len = ctx.shared.config.get_i64("slowlog-max-len").max(0) as usize;
    let parts = (0..ctx.n).map(|s| (s, ReqBody::Slowlog(count))).collect();
    crate::dispatch::fan_out(
        ctx,
        conn,
        parts,
        Box::new(move |_, conn, results| {
            let Some(count) = count else {
                conn.reply().ok();
                return;
            };
            let mut all = Vec::new();
            let mut len = 0;
            for (_, b) in results {
                if let RepBody::Slow(e, n) = b {
                    all.extend(e);
                    len += n;
                }
            }
            if len_only {
                conn.reply().int(len.min(max_len) as i64);
                return;
            }
            all.sort_by_key(|e| std::cmp::Reverse(e.id));
            all.truncate(count.min(max_len));
            shards::slowlog::reply(&all, &mut conn.reply());
        }),
    );
    Ok(())
}

fn config(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) -> Result<(), Error> {
    let cfg = &ctx.shared.config;
    match l.spec.name {
        "get" => {
            let pairs = cfg.matching(&argv[2..]);
            let mut r = conn.reply();
            r.map(pairs.len());
            for (k, v) in pairs {
                r.bulk(k.as_bytes());
                r.bulk(v.as_bytes());
            }
        }
        "set" => {
            // Redis: an odd count of names and values (past the arity check) is a syntax error.
            if !argv.len().is_multiple_of(2) {
                return Err(Error::Syntax);
            }
            let pairs: Vec<(&[u8], &[u8])> = argv[2..].chunks(2).map(|p| (p[0], p[1])).collect();
            cfg.set_many(&pairs, conn.local_client)
                .map_err(Error::Other)?;
            if pairs.iter().any(|(k, _)| eq_ic(k, "requirepass")) {
                let pass = cfg.get("requirepass");
                ctx.shared
                    .acl
                    .set_default_password((!pass.is_empty()).then_some(pass.as_bytes()));
            }
            crate::acl_cmds::apply_config(&ctx.shared);
            ctx.refresh_config();
            conn.reply().ok();
        }
        "resetstat" => {
            let parts = (0..ctx.n).map(|s| (s, ReqBody::ResetStat)).collect();
            crate::dispatch::fan_out(ctx, conn, parts, Box::new(|_, conn, _| conn.reply().ok()));
        }
        "rewrite" => {
            cfg.rewrite().map_err(Error::Other)?;
            conn.reply().ok();
        }
        "help" => help(
            conn,
            "CONFIG",
            &[
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
                "REWRITE",
                "    Rewrite the configuration file.",
            ],
        ),
        _ => return Err(Error::err("unknown subcommand")),
    }
    Ok(())
}

fn shutdown(ctx: &ShardCtx, argv: &[&[u8]]) -> Result<(), Error> {
    let (mut abort, mut save, mut nosave) = (false, false, false);
    for a in &argv[1..] {
        if eq_ic(a, "abort") {
            abort = true;
        } else if eq_ic(a, "nosave") {
            nosave = true;
        } else if eq_ic(a, "save") {
            save = true;
        } else if !(eq_ic(a, "now") || eq_ic(a, "force")) {
            return Err(Error::Syntax);
        }
    }
    if (save && nosave) || (abort && argv.len() > 2) {
        return Err(Error::Syntax);
    }
    if abort {
        return Err(Error::err("No shutdown in progress."));
    }
    crate::log!("User requested shutdown...");
    let how = if nosave {
        Some(false)
    } else if save {
        Some(true)
    } else {
        None
    };
    crate::save::request_shutdown(&ctx.shared, 0, how);
    Ok(())
}

/// DEBUG, allowed by `enable-debug-command`.
pub fn debug(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let allowed = match ctx.shared.config.get("enable-debug-command").as_str() {
        "yes" => true,
        "local" => conn.local_client,
        _ => false,
    };
    if !allowed {
        return Err(Error::err("DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server."));
    }
    crate::debug::run(ctx, conn, argv)
}

/// Helper for writing `key:value\r\n` lines.
pub fn field(out: &mut String, k: &str, v: impl std::fmt::Display) {
    let _ = write!(out, "{k}:{v}\r\n");
}

#[allow(dead_code)]
fn _proto_check(r: &mut Reply) {
    r.null();
}
