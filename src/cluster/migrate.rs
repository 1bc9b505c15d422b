//! MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH password]
//! [AUTH2 username password] [KEYS key …], as Redis's `migrateCommand` (in cluster mode and
//! out of it).
//!
//! Steps: the keys are locked on their shards and their entries copied out (a transaction,
//! [`crate::txn`]; DUMP payloads are made here); a plain thread connects to the target and
//! sends `[AUTH] SELECT db RESTORE[-ASKING] …` with the timeout on every socket operation, so a
//! slow or dead target never stalls a shard's event loop; the connection waits meanwhile (its
//! shard polls for the outcome every millisecond); then, unless COPY, the keys the target
//! accepted are deleted, and the locks go.
//!
//! Redis blocks the whole server during MIGRATE; here only commands on the migrating keys wait
//! (at most the timeout per socket operation), so the keys cannot change between the copy and
//! the delete. Differences: sockets to a target are not cached between calls, and a failed
//! transfer is not retried. MIGRATE to this very server times out, as in Redis.

use crate::conn::Conn;
use crate::ctx::{now_us, ShardCtx};
use crate::msg::RepBody;
use shards::keyspace::Key;
use shards::util::{eq_ic, parse_i64};
use shards::Error;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the transfer asks for.
struct Request {
    host: String,
    port: u16,
    timeout: Duration,
    /// The AUTH command's arguments (password, or username and password).
    auth: Option<Vec<Vec<u8>>>,
    db: i64,
    /// The encoded RESTORE commands, one per key that exists, with that key.
    restores: Vec<(Key, Vec<u8>)>,
}

/// How the transfer ended.
enum Outcome {
    /// Per key: whether the target restored it; plus the first error the target replied.
    Replied(Vec<bool>, Option<String>),
    /// A socket error (the reply text), after the keys in the list were restored.
    Io(String, Vec<bool>),
}

/// MIGRATE: parses, then copies the keys out (see the module doc).
pub fn handle(ctx: &ShardCtx, conn: &mut Conn, argv: &[&[u8]]) -> Result<(), Error> {
    let (mut copy, mut replace) = (false, false);
    let mut auth: Option<Vec<Vec<u8>>> = None;
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut j = 6;
    while j < argv.len() {
        let more = argv.len() - 1 - j;
        let a = argv[j];
        if eq_ic(a, "copy") {
            copy = true;
        } else if eq_ic(a, "replace") {
            replace = true;
        } else if eq_ic(a, "auth") {
            if more < 1 {
                return Err(Error::Syntax);
            }
            auth = Some(vec![argv[j + 1].to_vec()]);
            j += 1;
        } else if eq_ic(a, "auth2") {
            if more < 2 {
                return Err(Error::Syntax);
            }
            auth = Some(vec![argv[j + 1].to_vec(), argv[j + 2].to_vec()]);
            j += 2;
        } else if eq_ic(a, "keys") {
            if !argv[3].is_empty() {
                return Err(Error::err(
                    "When using MIGRATE KEYS option, the key argument must be set to the empty string",
                ));
            }
            keys.extend_from_slice(&argv[j + 1..]);
            break;
        } else {
            return Err(Error::Syntax);
        }
        j += 1;
    }
    let timeout = parse_i64(argv[5]).ok_or(Error::NotInteger)?;
    let db = parse_i64(argv[4]).ok_or(Error::NotInteger)?;
    let timeout = if timeout <= 0 { 1000 } else { timeout };
    if keys.is_empty() {
        keys.push(argv[3]);
    }
    let host = String::from_utf8_lossy(argv[1]).into_owned();
    // Redis reads the port with atoi: junk is port 0, which fails to connect.
    let port = parse_i64(argv[2])
        .filter(|p| (0..=65535).contains(p))
        .unwrap_or(0) as u16;
    let src_db = conn.db as u8;
    let mut per_shard: Vec<Vec<(u8, Key)>> = vec![Vec::new(); ctx.n];
    for k in &keys {
        per_shard[crate::dispatch::shard_of(ctx, k)].push((src_db, Key::from(*k)));
    }
    // Locked and copied shard by shard in ascending order; the locks stay until the end.
    let steps: std::collections::VecDeque<crate::txn::Step> = per_shard
        .into_iter()
        .enumerate()
        .filter(|(_, k)| !k.is_empty())
        .map(|(s, keys)| crate::txn::Step {
            shard: s,
            exclusive: false,
            lock: keys.clone(),
            op: crate::txn::TxOp::Export {
                keys,
                watch: Vec::new(),
                check: Vec::new(),
            },
            release: false,
        })
        .collect();
    let held: Vec<usize> = steps.iter().map(|s| s.shard).collect();
    let tx = crate::txn::tx_for(ctx, conn);
    let order: Vec<Key> = keys.iter().map(|k| Key::from(*k)).collect();
    crate::txn::run_steps(
        ctx,
        conn,
        tx,
        steps,
        Vec::new(),
        Box::new(move |ctx, conn, results| {
            let mut found: Vec<(Key, shards::keyspace::Entry)> = Vec::new();
            for (_, body) in results {
                if let RepBody::Entries(entries) = body {
                    for (_, k, e) in entries {
                        if let Some(e) = e {
                            found.push((k, e));
                        }
                    }
                }
            }
            // In the order the client named them, each once.
            let mut restores = Vec::new();
            let now_ms = now_us() / 1000;
            for k in &order {
                if restores.iter().any(|(r, _): &(Key, Vec<u8>)| r == k) {
                    continue;
                }
                let Some((_, e)) = found.iter().find(|(f, _)| f == k) else {
                    continue;
                };
                let ttl = match e.expire_at() {
                    Some(at) if at <= now_ms => continue,
                    Some(at) => (at - now_ms).max(1),
                    None => 0,
                };
                restores.push((k.clone(), restore_command(k, ttl, &e.value, replace)));
            }
            if restores.is_empty() {
                crate::txn::release_on(ctx, conn, tx, held);
                conn.reply().simple("NOKEY");
                return;
            }
            let req = Request {
                host,
                port,
                timeout: Duration::from_millis(timeout as u64),
                auth,
                db,
                restores,
            };
            start(
                ctx,
                conn,
                req,
                Locks {
                    tx,
                    held,
                    db: src_db,
                },
                copy,
            );
        }),
    );
    Ok(())
}

/// The transaction holding the migrating keys, and the database they are in.
struct Locks {
    tx: crate::txn::TxId,
    held: Vec<usize>,
    db: u8,
}

/// `RESTORE key ttl payload [REPLACE]` (RESTORE-ASKING in cluster mode).
fn restore_command(key: &[u8], ttl: u64, value: &shards::types::Value, replace: bool) -> Vec<u8> {
    let payload = shards::rdb::dump(value);
    let name: &[u8] = if super::enabled() {
        b"RESTORE-ASKING"
    } else {
        b"RESTORE"
    };
    let ttl = ttl.to_string();
    let mut args: Vec<&[u8]> = vec![name, key, ttl.as_bytes(), &payload];
    if replace {
        args.push(b"REPLACE");
    }
    let mut out = Vec::new();
    shards::resp::encode_command(&args, &mut out);
    out
}

/// Runs the transfer on its own thread; the connection waits for the outcome, then answers
/// (deleting what moved unless `copy`).
fn start(ctx: &ShardCtx, conn: &mut Conn, req: Request, locks: Locks, copy: bool) {
    let outcome: Arc<Mutex<Option<Outcome>>> = Arc::new(Mutex::new(None));
    let keys: Vec<Key> = req.restores.iter().map(|(k, _)| k.clone()).collect();
    let slot = outcome.clone();
    let spawned = std::thread::Builder::new()
        .name("migrate".into())
        .spawn(move || {
            let o = transfer(&req);
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(o);
        });
    if spawned.is_err() {
        crate::txn::release_on(ctx, conn, locks.tx, locks.held);
        conn.error("IOERR error or timeout connecting to the client");
        return;
    }
    let done_outcome = outcome.clone();
    conn.wait = crate::conn::Wait::Multi {
        outstanding: 1,
        results: Vec::new(),
        done: Box::new(move |ctx, conn, _| {
            let o = done_outcome
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            finish(ctx, conn, o, keys, locks, copy);
        }),
    };
    let token = conn.token;
    let Some(me) = ctx.me() else {
        return;
    };
    glommio::spawn_local(async move {
        while outcome.lock().map(|o| o.is_none()).unwrap_or(false) {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        while !me.answer_wait(token, 0) {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    })
    .detach();
}

/// Answers MIGRATE once the transfer is over, deleting the keys the target took (under the
/// locks, which go with the deletes).
fn finish(
    ctx: &ShardCtx,
    conn: &mut Conn,
    o: Option<Outcome>,
    keys: Vec<Key>,
    locks: Locks,
    copy: bool,
) {
    let (restored, reply): (Vec<bool>, Result<(), String>) = match o {
        Some(Outcome::Replied(ok, None)) => (ok, Ok(())),
        Some(Outcome::Replied(ok, Some(e))) => (ok, Err(e)),
        Some(Outcome::Io(e, ok)) => (ok, Err(e)),
        None => (
            Vec::new(),
            Err("IOERR error or timeout reading to target instance".into()),
        ),
    };
    let answer = move |conn: &mut Conn| match &reply {
        Ok(()) => conn.reply().ok(),
        Err(e) => conn.error(e),
    };
    let mut per_shard: Vec<Vec<(u8, Key, Option<shards::keyspace::Entry>)>> =
        vec![Vec::new(); ctx.n];
    if !copy {
        for (k, _) in keys.into_iter().zip(restored).filter(|(_, ok)| *ok) {
            per_shard[crate::dispatch::shard_of(ctx, &k)].push((locks.db, k, None));
        }
    }
    let Locks { tx, held, .. } = locks;
    crate::dispatch::import_and_release(
        ctx,
        conn,
        (tx, &held),
        per_shard,
        Box::new(move |_, conn, _| answer(conn)),
    );
}

/// The transfer itself (blocking, on its own thread).
fn transfer(req: &Request) -> Outcome {
    let none = vec![false; req.restores.len()];
    let connect_err = || {
        Outcome::Io(
            "IOERR error or timeout connecting to the client".into(),
            none.clone(),
        )
    };
    let Ok(addrs) = (req.host.as_str(), req.port).to_socket_addrs() else {
        return connect_err();
    };
    // As Redis (whose connect is non-blocking): a refused connection shows on the first write;
    // only a connect that times out (or a name that does not resolve) fails as connecting.
    let mut refused = false;
    let Some(sock) =
        addrs
            .into_iter()
            .find_map(|a| match TcpStream::connect_timeout(&a, req.timeout) {
                Ok(s) => Some(s),
                Err(e) => {
                    refused |= e.kind() != std::io::ErrorKind::TimedOut;
                    None
                }
            })
    else {
        if refused {
            return Outcome::Io(
                "IOERR error or timeout writing to target instance".into(),
                none,
            );
        }
        return connect_err();
    };
    let _ = sock.set_read_timeout(Some(req.timeout));
    let _ = sock.set_write_timeout(Some(req.timeout));
    let _ = sock.set_nodelay(true);
    let mut out = Vec::new();
    if let Some(auth) = &req.auth {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        args.extend(auth.iter().map(|a| a.as_slice()));
        shards::resp::encode_command(&args, &mut out);
    }
    let db = req.db.to_string();
    shards::resp::encode_command(&[b"SELECT", db.as_bytes()], &mut out);
    for (_, cmd) in &req.restores {
        out.extend_from_slice(cmd);
    }
    let mut writer = &sock;
    if writer.write_all(&out).and_then(|_| writer.flush()).is_err() {
        return Outcome::Io(
            "IOERR error or timeout writing to target instance".into(),
            none,
        );
    }
    let mut reader = BufReader::new(&sock);
    let read_err = |ok: Vec<bool>| {
        Outcome::Io(
            "IOERR error or timeout reading to target instance".into(),
            ok,
        )
    };
    let mut line = String::new();
    let mut first_error: Option<String> = None;
    let mut pre = Vec::new();
    for _ in 0..(req.auth.is_some() as usize + 1) {
        match read_line(&mut reader, &mut line) {
            Some(l) => pre.push(l),
            None => return read_err(none),
        }
    }
    let pre_error = pre.iter().find(|l| l.starts_with('-')).cloned();
    let mut restored = Vec::with_capacity(req.restores.len());
    for _ in &req.restores {
        let Some(l) = read_line(&mut reader, &mut line) else {
            return read_err(restored);
        };
        let err = pre_error
            .clone()
            .or_else(|| l.starts_with('-').then(|| l.clone()));
        match err {
            Some(e) => {
                if first_error.is_none() {
                    let text = e.strip_prefix('-').unwrap_or(&e);
                    first_error = Some(format!("ERR Target instance replied with error: {text}"));
                }
                restored.push(false);
            }
            None => restored.push(true),
        }
    }
    Outcome::Replied(restored, first_error)
}

/// One reply line (status or error), without its CRLF; None on a socket error or timeout.
fn read_line(reader: &mut impl BufRead, line: &mut String) -> Option<String> {
    line.clear();
    match reader.read_line(line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
    }
}
