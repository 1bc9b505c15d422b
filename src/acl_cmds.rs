//! The server's side of ACLs: the permission check on the request path, AUTH/HELLO's logins,
//! the ACL command, start-up loading (`user` directives, `aclfile`, `requirepass`), and keeping
//! connections in step with user changes made on any shard.
//!
//! Users live in one process-wide `shards::acl::Store`. A connection keeps a snapshot of its
//! user and the store's generation; when the generation moves it re-reads its user: a deleted
//! (or reloaded) user's connections are closed, and subscribers that lost access to one of their
//! channels are disconnected, as Redis does. The connection's own shard does this before its
//! next command, and every shard sweeps its idle connections from cron.

use crate::conn::Conn;
use crate::ctx::{now_us, ShardCtx, Shared};
use shards::acl::{Denied, LogContext, LogEntry, Store, User};
use shards::cmd::Lookup;
use shards::util::{eq_ic, parse_i64};
use shards::Error;
use std::sync::Arc;

/// Applies `requirepass`, the config file's `user` directives and the `aclfile` at start-up.
pub fn init(shared: &Shared) -> anyhow::Result<()> {
    let cfg = &shared.config;
    let acl = &shared.acl;
    apply_config(shared);
    let pass = cfg.get("requirepass");
    if !pass.is_empty() {
        acl.set_default_password(Some(pass.as_bytes()));
    }
    let file = cfg.get("aclfile");
    if !file.is_empty() && !cfg.users.is_empty() {
        anyhow::bail!("Configuring Redis with users defined in redis.conf and at the same setting an ACL file path is invalid. This setup is very likely to lead to configuration errors and security holes, please define either an ACL file or declare users directly in your redis.conf, but not both.");
    }
    acl.load_config_users(&cfg.users)
        .map_err(|e| anyhow::anyhow!("Error loading ACL users: {e}"))?;
    if !file.is_empty() {
        acl.load_file(&file)
            .map_err(|e| anyhow::anyhow!("Aborting Redis startup because of ACL errors: {e}"))?;
    }
    Ok(())
}

/// Config values the store reads directly (`acllog-max-len`, `acl-pubsub-default`).
pub fn apply_config(shared: &Shared) {
    use std::sync::atomic::Ordering;
    let cfg = &shared.config;
    shared.acl.log_max.store(
        cfg.get_i64("acllog-max-len").max(0) as usize,
        Ordering::Relaxed,
    );
    shared.acl.pubsub_allchannels.store(
        cfg.get("acl-pubsub-default") == "allchannels",
        Ordering::Relaxed,
    );
}

/// A new client connection: the default user, authenticated when it has no password.
pub fn attach_default(acl: &Store, conn: &mut Conn) {
    conn.acl_gen = acl.generation();
    conn.user = Some(acl.default_user());
    conn.authenticated = acl.default_open();
}

/// Whether a command needs AUTH first (Redis's `authRequired`).
pub fn auth_required(ctx: &ShardCtx, conn: &Conn) -> bool {
    !conn.authenticated && conn.user.is_some() && !ctx.shared.acl.default_open()
}

/// Re-reads the connection's user if any user changed. False when the connection must close:
/// its user was deleted or replaced, or it lost a channel it is subscribed to.
pub fn refresh(ctx: &ShardCtx, conn: &mut Conn) -> bool {
    let acl = &ctx.shared.acl;
    let gen = acl.generation();
    if gen == conn.acl_gen {
        return true;
    }
    conn.acl_gen = gen;
    let Some(old) = conn.user.clone() else {
        return true;
    };
    let Some(new) = acl.get(&old.name).filter(|u| u.uid == old.uid) else {
        return false;
    };
    if conn.subs.is_some() && new.channels_narrowed(&old) && !subscriptions_ok(conn, &new) {
        return false;
    }
    conn.user = Some(new);
    true
}

fn subscriptions_ok(conn: &Conn, user: &User) -> bool {
    let Some(subs) = conn.subs.as_deref() else {
        return true;
    };
    subs.patterns.iter().all(|p| user.subscription_ok(p, true))
        && subs
            .channels
            .iter()
            .chain(subs.shard.iter())
            .all(|c| user.subscription_ok(c, false))
}

/// Cron: once the generation moved, brings every connection of this shard up to date and
/// closes those whose user went away.
pub fn sweep(ctx: &ShardCtx) {
    let gen = ctx.shared.acl.generation();
    if ctx.acl_seen.get() == gen {
        return;
    }
    ctx.acl_seen.set(gen);
    let tokens: Vec<_> = ctx.conns.borrow().iter().map(|c| c.token).collect();
    for t in tokens {
        let conn = ctx.conns.borrow_mut().take(t);
        let Some(mut conn) = conn else { continue };
        if refresh(ctx, &mut conn) {
            ctx.conns.borrow_mut().put(conn);
        } else {
            ctx.close(conn);
        }
    }
}

/// The ACL check of one command: Ok, or the NOPERM error (logged in ACL LOG).
pub fn check(
    ctx: &ShardCtx,
    conn: &mut Conn,
    l: Lookup,
    argv: &[&[u8]],
    context: LogContext,
) -> Result<(), Error> {
    let Some(user) = conn.user.as_ref() else {
        return Ok(());
    };
    if user.unrestricted() {
        return Ok(());
    }
    match user.check(l, argv) {
        Ok(()) if matches!(l.spec.name, "sort" | "sort_ro") => sort_patterns(user, l, argv),
        Ok(()) => Ok(()),
        Err(d) => {
            log_denial(ctx, conn, d, l, argv, context);
            Err(Error::Other(match context {
                LogContext::Multi if conn.multi.is_none() => exec_error(d),
                _ => d.error(&l.full_name()),
            }))
        }
    }
}

/// SORT's BY and GET patterns read keys no key spec names: only a user who may read every key
/// may use them (as in Redis, an error of SORT's own, not logged).
fn sort_patterns(user: &User, l: Lookup, argv: &[&[u8]]) -> Result<(), Error> {
    let mut i = 2;
    while i + 1 < argv.len() {
        let (opt, arg) = (argv[i], argv[i + 1]);
        let what = if eq_ic(opt, "by") && arg.contains(&b'*') {
            "BY"
        } else if eq_ic(opt, "get") {
            "GET"
        } else {
            i += if eq_ic(opt, "limit") {
                3
            } else if eq_ic(opt, "store") || eq_ic(opt, "by") {
                2
            } else {
                1
            };
            continue;
        };
        if !user.may_read_any_key(l, argv) {
            return Err(Error::err(format!(
                "{what} option of SORT denied due to insufficient ACL permissions."
            )));
        }
        i += 2;
    }
    Ok(())
}

/// EXEC re-checks queued commands: Redis's text for a permission lost meanwhile.
fn exec_error(d: Denied) -> String {
    let why = match d {
        Denied::Cmd => "no permission to execute the command or subcommand",
        Denied::Key(_) => "no permission to touch the specified keys",
        Denied::Channel(_) => "no permission to access one of the channels used as arguments",
    };
    format!("NOPERM ACLs rules changed between the moment the transaction was accumulated and the EXEC call. This command is no longer allowed for the following reason: {why}")
}

fn log_denial(
    ctx: &ShardCtx,
    conn: &Conn,
    d: Denied,
    l: Lookup,
    argv: &[&[u8]],
    context: LogContext,
) {
    let now_ms = now_us() / 1000;
    let name = conn
        .user
        .as_ref()
        .map(|u| u.name.clone())
        .unwrap_or_default();
    ctx.shared
        .acl
        .log(d.entry(l, argv, context, &name, client_info(conn, now_ms), now_ms));
}

/// For a script about to run: who runs it, when the user has restrictions to check inside.
pub fn caller(ctx: &ShardCtx, conn: &Conn) -> Option<Arc<shards::acl::Caller>> {
    let user = conn.user.as_ref().filter(|u| !u.unrestricted())?;
    Some(Arc::new(shards::acl::Caller {
        user: user.clone(),
        client_info: client_info(conn, now_us() / 1000),
        store: ctx.shared.acl.clone(),
    }))
}

fn client_info(conn: &Conn, now_ms: u64) -> String {
    let mut s = conn.info_line(now_ms);
    s.pop();
    s
}

/// AUTH / HELLO AUTH: logs the connection in as `name`, or records the failure.
pub fn login(ctx: &ShardCtx, conn: &mut Conn, name: &[u8], pass: &[u8], cmd: &[u8]) -> bool {
    let acl = &ctx.shared.acl;
    let gen = acl.generation();
    match acl.authenticate(name, pass) {
        Some(u) => {
            conn.user = Some(u);
            conn.acl_gen = gen;
            conn.authenticated = true;
            true
        }
        None => {
            let now_ms = now_us() / 1000;
            acl.log(LogEntry {
                count: 1,
                reason: shards::acl::LogReason::Auth,
                context: if conn.multi.is_some() {
                    LogContext::Multi
                } else {
                    LogContext::Toplevel
                },
                object: cmd.to_vec(),
                username: name.to_vec(),
                ctime_ms: now_ms,
                client_info: client_info(conn, now_ms),
            });
            false
        }
    }
}

const NO_FILE: &str = "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

/// ACL and its subcommands.
pub fn handle(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, argv: &[&[u8]]) -> Result<(), Error> {
    let acl: &Arc<Store> = &ctx.shared.acl;
    match l.spec.name {
        "setuser" => {
            acl.setuser(argv[2], &argv[3..]).map_err(Error::Other)?;
            kick_now(ctx, conn);
            conn.reply().ok();
        }
        "deluser" => {
            let n = acl.deluser(&argv[2..]).map_err(Error::Other)?;
            kick_now(ctx, conn);
            conn.reply().int(n as i64);
        }
        "getuser" => match acl.get(argv[2]) {
            Some(u) => u.getuser_reply(&mut conn.reply()),
            None => conn.reply().null(),
        },
        "list" | "users" => {
            let users = acl.users();
            let mut r = conn.reply();
            r.array(users.len());
            for u in users {
                if l.spec.name == "users" {
                    r.bulk(&u.name);
                } else {
                    r.bulk(&u.line());
                }
            }
        }
        "whoami" => match conn.user.clone() {
            Some(u) => conn.reply().bulk(&u.name),
            None => conn.reply().null(),
        },
        "load" | "save" => {
            let file = ctx.shared.config.get("aclfile");
            if file.is_empty() {
                return Err(Error::Other(NO_FILE.into()));
            }
            if l.spec.name == "load" {
                acl.load_file(&file)
                    .map_err(|e| Error::Other(format!("ERR {e}")))?;
                kick_now(ctx, conn);
            } else {
                acl.save_file(&file).map_err(|e| {
                    crate::log!("Saving the ACL file {file}: {e}");
                    Error::err("There was an error trying to save the ACLs. Please check the server logs for more information")
                })?;
            }
            conn.reply().ok();
        }
        "cat" => cat(conn, argv)?,
        "genpass" => {
            let bits = match argv.get(2) {
                Some(a) => parse_i64(a).ok_or(Error::NotInteger)?,
                None => 256,
            };
            if !(1..=4096).contains(&bits) {
                return Err(Error::err("ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096"));
            }
            let chars = ((bits + 3) / 4) as usize;
            let hex = random_hex(chars);
            conn.reply().bulk(hex.as_bytes());
        }
        "log" => {
            let mut count = 10usize;
            if let Some(a) = argv.get(2) {
                if eq_ic(a, "reset") {
                    acl.log_reset();
                    conn.reply().ok();
                    return Ok(());
                }
                count = parse_i64(a).ok_or(Error::NotInteger)?.max(0) as usize;
            }
            acl.log_reply(count, now_us() / 1000, &mut conn.reply());
        }
        "dryrun" => dryrun(acl, conn, argv)?,
        "help" => crate::server_cmds::help(
            conn,
            "ACL",
            &[
                "CAT [<category>]",
                "    List all commands that belong to <category>, or all command categories",
                "    when no category is specified.",
                "DELUSER <username> [<username> ...]",
                "    Delete a list of users.",
                "DRYRUN <username> <command> [<arg> ...]",
                "    Returns whether the user can execute the given command without executing the command.",
                "GETUSER <username>",
                "    Get the user's details.",
                "GENPASS [<bits>]",
                "    Generate a secure 256-bit user password. The optional `bits` argument can",
                "    be used to specify a different size.",
                "LIST",
                "    Show users details in config file format.",
                "LOAD",
                "    Reload users from the ACL file.",
                "LOG [<count> | RESET]",
                "    Show the ACL log entries.",
                "SAVE",
                "    Save the current config to the ACL file.",
                "SETUSER <username> <attribute> [<attribute> ...]",
                "    Create or modify a user with the specified attributes.",
                "USERS",
                "    List all the registered usernames.",
                "WHOAMI",
                "    Return the current connection username.",
            ],
        ),
        _ => return Err(Error::err("unknown subcommand")),
    }
    Ok(())
}

/// After a change: this connection is brought up to date at once (closing it after the reply
/// if its own user went away); the others at their next command or the next cron sweep.
fn kick_now(ctx: &ShardCtx, conn: &mut Conn) {
    if !refresh(ctx, conn) {
        conn.close_after_reply = true;
    }
}

fn cat(conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    use shards::cmd::spec::acl::NAMES;
    match argv.get(2) {
        None => {
            let mut r = conn.reply();
            r.array(NAMES.len());
            for (_, n) in NAMES {
                r.bulk(n.as_bytes());
            }
        }
        Some(name) => {
            let cat = shards::acl::category(name).ok_or_else(|| {
                let n: String = String::from_utf8_lossy(name).chars().take(128).collect();
                Error::err(format!("Unknown category '{n}'"))
            })?;
            let names: Vec<&str> = shards::acl::index()
                .cmds
                .iter()
                .filter(|c| c.categories & cat != 0)
                .map(|c| c.fullname.as_str())
                .collect();
            let mut r = conn.reply();
            r.array(names.len());
            for n in names {
                r.bulk(n.as_bytes());
            }
        }
    }
    Ok(())
}

fn dryrun(acl: &Store, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let Some(user) = acl.get(argv[2]) else {
        return Err(Error::err(format!(
            "User '{}' not found",
            String::from_utf8_lossy(argv[2])
        )));
    };
    let sub = &argv[3..];
    let Some(l) = shards::cmd::registry::find_unchecked(sub) else {
        return Err(Error::err(format!(
            "Command '{}' not found",
            String::from_utf8_lossy(argv[3])
        )));
    };
    if !l.spec.arity_ok(sub.len()) {
        return Err(Error::err(format!(
            "wrong number of arguments for '{}' command",
            l.full_name()
        )));
    }
    match user.check(l, sub) {
        Ok(()) => conn.reply().ok(),
        Err(d) => {
            let text = match d {
                Denied::Cmd => format!(
                    "This user has no permissions to run the '{}' command",
                    l.full_name()
                ),
                Denied::Key(p) => format!(
                    "This user has no permissions to access the '{}' key",
                    String::from_utf8_lossy(sub[p])
                ),
                Denied::Channel(p) => format!(
                    "This user has no permissions to access the '{}' channel",
                    String::from_utf8_lossy(sub[p])
                ),
            };
            conn.reply().bulk(text.as_bytes());
        }
    }
    Ok(())
}

/// `n` random hex characters from the kernel's CSPRNG.
fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut bytes = vec![0u8; n.div_ceil(2)];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !ok {
        // Never expected on Linux; fall back to a time-seeded generator rather than fail.
        let mut rng = shards::rng::Rng::new(now_us() ^ std::process::id() as u64);
        for b in bytes.iter_mut() {
            *b = rng.below(256) as u8;
        }
    }
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(n);
    s
}
