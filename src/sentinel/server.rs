//! The sentinel's own server: a thread per client connection, the commands a sentinel accepts
//! (SENTINEL …, PING, INFO, ROLE, pub/sub for events, AUTH, HELLO, CLIENT, COMMAND, SHUTDOWN,
//! RESET) with Redis 7.0's replies and error texts.

use super::brain;
use super::client;
use super::state::*;
use shards::resp::{parse_command, ParseLimits, Parsed, Proto, Reply};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The most a client may send without completing a command.
const QUERY_BUF_MAX: usize = 1 << 30;
/// The most messages waiting for one subscriber before it is disconnected.
const PUBSUB_QUEUE_MAX: usize = 10_000;
/// The most clients served at once (`maxclients`' default).
const CLIENTS_MAX: usize = 10_000;

/// Opens the listening sockets (`bind`, or every IPv4 address).
/// Opens the listening sockets: `bind`'s addresses (one starting with `-` is optional, as in
/// Redis), by default every IPv4 address and, if the machine has IPv6, every IPv6 address.
pub fn bind() -> std::io::Result<Vec<TcpListener>> {
    let (port, binds) = {
        let st = super::lock();
        (st.port, st.bind.clone())
    };
    let binds = if binds.is_empty() {
        vec!["*".to_string(), "-::*".to_string()]
    } else {
        binds
    };
    let mut out = Vec::new();
    for b in binds {
        let optional = b.starts_with('-');
        let host = b.trim_start_matches('-');
        let host = match host {
            "*" => "0.0.0.0",
            "::*" => "::",
            h => h,
        };
        match listen(host, port) {
            Ok(l) => out.push(l),
            Err(_) if optional => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A listener on `host:port`; an IPv6 one takes IPv6 only (IPv4 has its own).
fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let ip: std::net::IpAddr = host
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad bind address"))?;
    let addr = std::net::SocketAddr::new(ip, port);
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    if ip.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(511)?;
    Ok(sock.into())
}

pub fn accept_loop(l: TcpListener) {
    loop {
        match l.accept() {
            Ok((s, _)) => {
                std::thread::spawn(move || serve(s));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One client's connection state.
struct Client {
    id: u64,
    proto: Proto,
    authed: bool,
    channels: Vec<Vec<u8>>,
    patterns: Vec<Vec<u8>>,
    tx: mpsc::SyncSender<Vec<u8>>,
    close: bool,
}

impl Client {
    fn subscribed(&self) -> bool {
        !self.channels.is_empty() || !self.patterns.is_empty()
    }
}

/// Registers a new client (CLIENT LIST sees it); None when there are too many.
fn register(s: &TcpStream) -> Option<u64> {
    let mut st = super::lock();
    if st.clients.len() >= CLIENTS_MAX {
        return None;
    }
    let id = st.new_id();
    st.total_connections += 1;
    let info = ClientInfo {
        addr: s.peer_addr().map(|a| a.to_string()).unwrap_or_default(),
        laddr: s.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        name: String::new(),
        created: Instant::now(),
        last_cmd: "NULL".into(),
        last_interaction: Instant::now(),
        subs: 0,
        psubs: 0,
        kill: false,
    };
    st.clients.insert(id, info);
    Some(id)
}

/// Serves one client: reads with a short timeout so that event messages for it go out while
/// it is quiet, runs every whole command it sent, and unregisters it at the end.
fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let Some(id) = register(&s) else {
        let _ = s.write_all(b"-ERR max number of clients reached\r\n");
        return;
    };
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(PUBSUB_QUEUE_MAX);
    let mut c = Client {
        id,
        proto: Proto::Resp2,
        authed: super::lock().requirepass.is_none(),
        channels: Vec::new(),
        patterns: Vec::new(),
        tx,
        close: false,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let mut out = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            out.extend_from_slice(&msg);
        }
        if !out.is_empty() && s.write_all(&out).is_err() {
            break;
        }
        if super::lock().clients.get(&id).is_none_or(|i| i.kill) {
            break;
        }
        let n = match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            // A stop and continue (SIGSTOP, SIGCONT) interrupts the read: not an error.
            Err(e) if client::is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            Err(_) => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let ok = run_commands(&mut c, &mut buf, &mut out);
        if !out.is_empty() && s.write_all(&out).is_err() {
            break;
        }
        if !ok || c.close || buf.len() > QUERY_BUF_MAX {
            break;
        }
    }
    let mut st = super::lock();
    st.clients.remove(&id);
    st.subscribers.remove(&id);
}

/// Runs every whole command at the front of `buf` (removing them), replies into `out`. False
/// after a protocol error (its reply is in `out`; the connection must close).
fn run_commands(c: &mut Client, buf: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    let mut args = Vec::new();
    let mut scratch = Vec::new();
    let mut pos = 0;
    let mut ok = true;
    while !c.close {
        scratch.clear();
        let argv: Vec<Vec<u8>> =
            match parse_command(&buf[pos..], &mut args, &mut scratch, ParseLimits::default()) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Empty { consumed }) => {
                    pos += consumed;
                    continue;
                }
                Ok(Parsed::Command { consumed }) => {
                    let argv = args
                        .iter()
                        .map(|r| buf[pos..][r.clone()].to_vec())
                        .collect();
                    pos += consumed;
                    argv
                }
                Ok(Parsed::Inline { consumed }) => {
                    pos += consumed;
                    args.iter().map(|r| scratch[r.clone()].to_vec()).collect()
                }
                Err(e) => {
                    Reply::new(out, c.proto).error(&e.reply_text());
                    ok = false;
                    break;
                }
            };
        execute(c, &argv, out);
    }
    buf.drain(..pos);
    ok
}

fn lower(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_lowercase()
}

fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

/// A command flag: allowed before AUTH.
const NO_AUTH: u8 = 1;
/// A command flag: allowed in RESP2 pub/sub mode.
const PUBSUB: u8 = 2;
/// A command flag: accepted but not listed by COMMAND (as in Redis's sentinel table).
const UNLISTED: u8 = 4;

/// One command: its name, arity (Redis's convention: negative means "at least"), flags and
/// handler.
struct Command {
    name: &'static str,
    arity: i32,
    flags: u8,
    run: fn(&mut Client, &[Vec<u8>], &mut Reply),
}

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: u8,
    run: fn(&mut Client, &[Vec<u8>], &mut Reply),
) -> Command {
    Command {
        name,
        arity,
        flags,
        run,
    }
}

/// The commands a sentinel accepts.
const COMMANDS: &[Command] = &[
    cmd("ping", -1, PUBSUB, ping),
    cmd("sentinel", -2, 0, |_, a, r| {
        super::commands::sentinel_cmd(a, r)
    }),
    cmd("subscribe", -2, PUBSUB, |c, a, r| subscribe(c, a, false, r)),
    cmd("unsubscribe", -1, PUBSUB, |c, a, r| {
        unsubscribe(c, a, false, r)
    }),
    cmd("psubscribe", -2, PUBSUB, |c, a, r| subscribe(c, a, true, r)),
    cmd("punsubscribe", -1, PUBSUB, |c, a, r| {
        unsubscribe(c, a, true, r)
    }),
    cmd("publish", 3, 0, |_, a, r| publish(a, r)),
    cmd("info", -1, 0, |_, a, r| info(a, r)),
    cmd("role", 1, 0, |_, _, r| role(r)),
    cmd("client", -2, 0, client_cmd),
    cmd("shutdown", -1, 0, |_, _, _| shutdown()),
    cmd("auth", -2, NO_AUTH, auth),
    cmd("hello", -1, NO_AUTH, hello),
    cmd("command", -1, 0, |_, a, r| command(a, r)),
    cmd("acl", -2, 0, |_, a, r| acl(a, r)),
    cmd("reset", 1, NO_AUTH | PUBSUB | UNLISTED, reset),
    cmd("quit", -1, NO_AUTH | PUBSUB | UNLISTED, quit),
];

fn listed() -> impl Iterator<Item = &'static Command> {
    COMMANDS.iter().filter(|c| c.flags & UNLISTED == 0)
}

pub fn arity_ok(arity: i32, argc: usize) -> bool {
    if arity >= 0 {
        argc == arity as usize
    } else {
        argc >= (-arity) as usize
    }
}

fn execute(c: &mut Client, argv: &[Vec<u8>], out: &mut Vec<u8>) {
    let Some(first) = argv.first() else {
        return;
    };
    let name = lower(first);
    {
        let mut st = super::lock();
        st.total_commands += 1;
        if let Some(i) = st.clients.get_mut(&c.id) {
            i.last_cmd = match argv.get(1) {
                Some(sub) if matches!(name.as_str(), "sentinel" | "client" | "command" | "acl") => {
                    format!("{name}|{}", lower(sub))
                }
                _ => name.clone(),
            };
            i.last_interaction = Instant::now();
        }
    }
    let proto = c.proto;
    let mut r = Reply::new(out, proto);
    let Some(command) = COMMANDS.iter().find(|c| c.name == name) else {
        let mut msg = format!(
            "ERR unknown command '{}', with args beginning with: ",
            text(first).chars().take(128).collect::<String>()
        );
        for a in &argv[1..] {
            if msg.len() > 256 {
                break;
            }
            msg.push_str(&format!(
                "'{}' ",
                text(a).chars().take(128).collect::<String>()
            ));
        }
        return r.error(&msg);
    };
    if !arity_ok(command.arity, argv.len()) {
        return r.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }
    if !c.authed && command.flags & NO_AUTH == 0 {
        return r.error("NOAUTH Authentication required.");
    }
    if c.subscribed() && proto == Proto::Resp2 && command.flags & PUBSUB == 0 {
        return r.error(&format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ));
    }
    (command.run)(c, argv, &mut r);
}

/// ROLE: `sentinel` and the monitored masters' names.
fn role(r: &mut Reply) {
    let st = super::lock();
    r.array(2);
    r.bulk(b"sentinel");
    r.array(st.masters.len());
    for n in st.masters.keys() {
        r.bulk(n.as_bytes());
    }
}

/// ACL WHOAMI / USERS: a sentinel has one user, `default`.
fn acl(argv: &[Vec<u8>], r: &mut Reply) {
    match lower(&argv[1]).as_str() {
        "whoami" => r.bulk(b"default"),
        "users" => {
            r.array(1);
            r.bulk(b"default");
        }
        _ => r.error(&format!(
            "ERR unknown subcommand '{}'. Try ACL HELP.",
            text(&argv[1])
        )),
    }
}

/// RESET: back to a fresh connection (RESP2, no subscriptions, no name, AUTH again).
fn reset(c: &mut Client, _: &[Vec<u8>], r: &mut Reply) {
    c.channels.clear();
    c.patterns.clear();
    c.proto = Proto::Resp2;
    let mut st = super::lock();
    c.authed = st.requirepass.is_none();
    st.subscribers.remove(&c.id);
    if let Some(i) = st.clients.get_mut(&c.id) {
        i.name.clear();
        i.subs = 0;
        i.psubs = 0;
    }
    Reply::new(&mut *r.buf, Proto::Resp2).simple("RESET");
}

fn quit(c: &mut Client, _: &[Vec<u8>], r: &mut Reply) {
    r.ok();
    c.close = true;
}

fn ping(c: &mut Client, argv: &[Vec<u8>], r: &mut Reply) {
    if argv.len() > 2 {
        return r.error("ERR wrong number of arguments for 'ping' command");
    }
    if c.subscribed() && !r.resp3() {
        r.array(2);
        r.bulk(b"pong");
        r.bulk(argv.get(1).map(|a| a.as_slice()).unwrap_or(b""));
    } else if let Some(msg) = argv.get(1) {
        r.bulk(msg);
    } else {
        r.simple("PONG");
    }
}

fn shutdown() {
    let mut st = super::lock();
    warn!("User requested shutdown...");
    st.config_dirty = true;
    super::conf::flush(&mut st);
    warn!("Sentinel is now ready to exit, bye bye...");
    std::process::exit(0);
}

fn auth(c: &mut Client, argv: &[Vec<u8>], r: &mut Reply) {
    if argv.len() > 3 {
        return r.error("ERR syntax error");
    }
    let st = super::lock();
    let Some(pass) = &st.requirepass else {
        return r.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
    };
    let user_ok = argv.len() == 2 || argv[1] == b"default";
    if user_ok && argv.last().is_some_and(|p| p.as_slice() == pass.as_bytes()) {
        c.authed = true;
        r.ok();
    } else {
        r.error("WRONGPASS invalid username-password pair or user is disabled.");
    }
}

fn hello(c: &mut Client, argv: &[Vec<u8>], r: &mut Reply) {
    let out = &mut *r.buf;
    let mut proto = c.proto;
    let mut i = 1;
    if let Some(v) = argv.get(1) {
        match text(v).parse::<i64>() {
            Ok(2) => proto = Proto::Resp2,
            Ok(3) => proto = Proto::Resp3,
            Ok(_) => return Reply::new(out, c.proto).error("NOPROTO unsupported protocol version"),
            Err(_) => {
                return Reply::new(out, c.proto)
                    .error("ERR Protocol version is not an integer or out of range")
            }
        }
        i = 2;
    }
    let mut name = None;
    while i < argv.len() {
        let opt = lower(&argv[i]);
        if opt == "auth" && i + 2 < argv.len() {
            let st = super::lock();
            let ok = match &st.requirepass {
                Some(p) => argv[i + 2] == p.as_bytes() && argv[i + 1] == b"default",
                None => argv[i + 1] == b"default",
            };
            drop(st);
            if !ok {
                return Reply::new(out, c.proto)
                    .error("WRONGPASS invalid username-password pair or user is disabled.");
            }
            c.authed = true;
            i += 3;
        } else if opt == "setname" && i + 1 < argv.len() {
            name = Some(text(&argv[i + 1]));
            i += 2;
        } else {
            return Reply::new(out, c.proto).error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                text(&argv[i])
            ));
        }
    }
    if !c.authed {
        return Reply::new(out, c.proto).error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    if let Some(n) = name {
        if let Some(ci) = super::lock().clients.get_mut(&c.id) {
            ci.name = n;
        }
    }
    c.proto = proto;
    let mut r = Reply::new(out, proto);
    r.map(6);
    r.bulk(b"server");
    r.bulk(b"redis");
    r.bulk(b"version");
    r.bulk(crate::ctx::REDIS_VERSION.as_bytes());
    r.bulk(b"proto");
    r.int(if proto == Proto::Resp3 { 3 } else { 2 });
    r.bulk(b"id");
    r.int(c.id as i64);
    r.bulk(b"mode");
    r.bulk(b"sentinel");
    r.bulk(b"modules");
    r.array(0);
}

fn command(argv: &[Vec<u8>], r: &mut Reply) {
    let sub = argv.get(1).map(|a| lower(a)).unwrap_or_default();
    let one = |r: &mut Reply, name: &str, arity: i32| {
        r.array(10);
        r.bulk(name.as_bytes());
        r.int(arity as i64);
        r.set(0);
        r.int(0);
        r.int(0);
        r.int(0);
        r.set(0);
        r.set(0);
        r.array(0);
        r.array(0);
    };
    match sub.as_str() {
        "" => {
            r.array(listed().count());
            for c in listed() {
                one(r, c.name, c.arity);
            }
        }
        "count" => r.int(listed().count() as i64),
        "docs" => r.map(0),
        "info" => {
            r.array(argv.len() - 2);
            for a in &argv[2..] {
                match listed().find(|c| c.name == lower(a)) {
                    Some(c) => one(r, c.name, c.arity),
                    None => r.null_array(),
                }
            }
        }
        "list" => {
            r.array(listed().count());
            for c in listed() {
                r.bulk(c.name.as_bytes());
            }
        }
        _ => r.error(&format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            text(&argv[1])
        )),
    }
}

fn subscribe(c: &mut Client, argv: &[Vec<u8>], pattern: bool, r: &mut Reply) {
    for ch in &argv[1..] {
        let list = if pattern {
            &mut c.patterns
        } else {
            &mut c.channels
        };
        if !list.contains(ch) {
            list.push(ch.clone());
        }
        r.push(3);
        r.bulk(if pattern { b"psubscribe" } else { b"subscribe" });
        r.bulk(ch);
        r.int((c.channels.len() + c.patterns.len()) as i64);
    }
    sync_subs(c);
}

fn unsubscribe(c: &mut Client, argv: &[Vec<u8>], pattern: bool, r: &mut Reply) {
    let kind: &[u8] = if pattern {
        b"punsubscribe"
    } else {
        b"unsubscribe"
    };
    let targets: Vec<Vec<u8>> = if argv.len() > 1 {
        argv[1..].to_vec()
    } else if pattern {
        c.patterns.clone()
    } else {
        c.channels.clone()
    };
    if targets.is_empty() {
        r.push(3);
        r.bulk(kind);
        r.null();
        r.int((c.channels.len() + c.patterns.len()) as i64);
    }
    for ch in targets {
        if pattern {
            c.patterns.retain(|p| *p != ch);
        } else {
            c.channels.retain(|p| *p != ch);
        }
        r.push(3);
        r.bulk(kind);
        r.bulk(&ch);
        r.int((c.channels.len() + c.patterns.len()) as i64);
    }
    sync_subs(c);
}

fn sync_subs(c: &Client) {
    let mut st = super::lock();
    if let Some(i) = st.clients.get_mut(&c.id) {
        i.subs = c.channels.len();
        i.psubs = c.patterns.len();
    }
    if c.subscribed() {
        st.subscribers.insert(
            c.id,
            Subscriber {
                channels: c.channels.clone(),
                patterns: c.patterns.clone(),
                resp3: c.proto == Proto::Resp3,
                tx: c.tx.clone(),
            },
        );
    } else {
        st.subscribers.remove(&c.id);
    }
}

fn publish(argv: &[Vec<u8>], r: &mut Reply) {
    if argv[1] != HELLO_CHANNEL.as_bytes() {
        return r.error("ERR Only HELLO messages are accepted by Sentinel instances.");
    }
    brain::process_hello(&mut super::lock(), &text(&argv[2]));
    r.int(1);
}

fn info(argv: &[Vec<u8>], r: &mut Reply) {
    let st = super::lock();
    let wanted: Vec<String> = argv[1..].iter().map(|a| lower(a)).collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "default" || w == "all" || w == "everything");
    let want = |s: &str| all || wanted.iter().any(|w| w == s);
    let mut sections: Vec<String> = Vec::new();
    if want("server") {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let cfg = st
            .config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let up = st.started.elapsed().as_secs();
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        sections.push(format!(
            "# Server\r\nredis_version:{}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\nredis_mode:sentinel\r\nos:{} {}\r\narch_bits:64\r\nmultiplexing_api:threads\r\nprocess_id:{}\r\nprocess_supervised:no\r\nrun_id:{}\r\ntcp_port:{}\r\nserver_time_usec:{now_us}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\nhz:10\r\nconfigured_hz:10\r\nexecutable:{exe}\r\nconfig_file:{cfg}\r\n",
            crate::ctx::REDIS_VERSION,
            std::env::consts::OS,
            std::env::consts::ARCH,
            std::process::id(),
            st.run_id,
            st.port,
            up / 86400,
        ));
    }
    if want("clients") {
        sections.push(format!(
            "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:10000\r\nblocked_clients:0\r\ntracking_clients:0\r\nclients_in_timeout_table:0\r\n",
            st.clients.len()
        ));
    }
    if want("stats") {
        sections.push(format!(
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:0\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\n",
            st.total_connections,
            st.total_commands,
            st.subscribers.values().map(|s| s.channels.len()).sum::<usize>(),
            st.subscribers.values().map(|s| s.patterns.len()).sum::<usize>(),
        ));
    }
    if want("sentinel") {
        let mut s = format!(
            "# Sentinel\r\nsentinel_masters:{}\r\nsentinel_tilt:{}\r\nsentinel_tilt_since_seconds:{}\r\nsentinel_running_scripts:{}\r\nsentinel_scripts_queue_length:{}\r\nsentinel_simulate_failure_flags:{}\r\n",
            st.masters.len(),
            st.tilt_since.is_some() as u8,
            st.tilt_since.map_or(-1, |t| t.elapsed().as_secs() as i64),
            st.scripts.iter().filter(|s| s.child.is_some()).count(),
            st.scripts.iter().filter(|s| s.child.is_none()).count(),
            st.simulate_failure
        );
        for (n, (name, m)) in st.masters.iter().enumerate() {
            let status = if m.inst.o_down_since.is_some() {
                "odown"
            } else if m.inst.s_down() {
                "sdown"
            } else {
                "ok"
            };
            let (ip, port) = m.current_addr();
            s.push_str(&format!(
                "master{n}:name={name},status={status},address={ip}:{port},slaves={},sentinels={}\r\n",
                m.replicas.len(),
                m.sentinels.len() + 1
            ));
        }
        sections.push(s);
    }
    r.verbatim(sections.join("\r\n").as_bytes());
}

fn client_cmd(c: &mut Client, argv: &[Vec<u8>], r: &mut Reply) {
    let sub = lower(&argv[1]);
    let mut st = super::lock();
    match (sub.as_str(), argv.len()) {
        ("id", 2) => r.int(c.id as i64),
        ("getname", 2) => match st.clients.get(&c.id).map(|i| i.name.clone()) {
            Some(n) if !n.is_empty() => r.bulk(n.as_bytes()),
            _ => r.null(),
        },
        ("setname", 3) => {
            if argv[2].iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                return r.error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            if let Some(i) = st.clients.get_mut(&c.id) {
                i.name = text(&argv[2]);
            }
            r.ok();
        }
        ("setinfo", 4) | ("no-evict", 3) | ("no-touch", 3) => r.ok(),
        ("list", _) => {
            let mut s = String::new();
            for (id, i) in &st.clients {
                s.push_str(&client_line(*id, i));
                s.push('\n');
            }
            r.verbatim(s.as_bytes());
        }
        ("info", 2) => match st.clients.get(&c.id) {
            Some(i) => {
                let line = format!("{}\n", client_line(c.id, i));
                r.verbatim(line.as_bytes());
            }
            None => r.null(),
        },
        ("kill", 3) => {
            let addr = text(&argv[2]);
            match st.clients.values_mut().find(|i| i.addr == addr) {
                Some(i) => {
                    i.kill = true;
                    r.ok();
                }
                None => r.error("ERR No such client"),
            }
        }
        ("kill", n) if n >= 4 && n % 2 == 0 => {
            let mut killed = 0;
            let mut skipme = true;
            let mut filters: Vec<(String, String)> = Vec::new();
            for pair in argv[2..].chunks(2) {
                let (k, v) = (lower(&pair[0]), text(&pair[1]));
                if k == "skipme" {
                    skipme = v.eq_ignore_ascii_case("yes");
                } else if matches!(k.as_str(), "id" | "addr" | "laddr" | "type" | "user") {
                    filters.push((k, v));
                } else {
                    return r.error("ERR syntax error");
                }
            }
            for (id, i) in st.clients.iter_mut() {
                if skipme && *id == c.id {
                    continue;
                }
                let m = filters.iter().all(|(k, v)| match k.as_str() {
                    "id" => id.to_string() == *v,
                    "addr" => i.addr == *v,
                    "laddr" => i.laddr == *v,
                    "type" => match v.to_ascii_lowercase().as_str() {
                        "pubsub" => i.subs + i.psubs > 0,
                        "normal" => i.subs + i.psubs == 0,
                        _ => false,
                    },
                    _ => v == "default",
                });
                if m {
                    i.kill = true;
                    killed += 1;
                }
            }
            r.int(killed);
        }
        ("help", 2) => r.simples(&[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ID, GETNAME, SETNAME <name>, LIST, INFO, KILL <ip:port> | <filter> <value> ...",
        ]),
        (
            "id" | "getname" | "setname" | "info" | "kill" | "setinfo" | "no-evict" | "no-touch"
            | "help",
            _,
        ) => r.error(&format!(
            "ERR wrong number of arguments for 'client|{sub}' command"
        )),
        _ => r.error(&format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            text(&argv[1])
        )),
    }
}

fn client_line(id: u64, i: &ClientInfo) -> String {
    let flags = if i.subs + i.psubs > 0 { "P" } else { "N" };
    format!(
        "id={id} addr={} laddr={} fd=0 name={} age={} idle={} flags={flags} db=0 sub={} psub={} ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp=2",
        i.addr,
        i.laddr,
        i.name,
        i.created.elapsed().as_secs(),
        i.last_interaction.elapsed().as_secs(),
        i.subs,
        i.psubs,
        i.last_cmd,
    )
}
