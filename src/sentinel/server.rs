//! The sentinel's own server: a thread per client connection, the commands a sentinel accepts
//! (SENTINEL …, PING, INFO, ROLE, pub/sub for events, AUTH, HELLO, CLIENT, COMMAND, SHUTDOWN,
//! RESET) with Redis 7.0's replies and error texts.

use super::brain;
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
pub fn bind() -> std::io::Result<Vec<TcpListener>> {
    let (port, binds) = {
        let st = super::lock();
        (st.port, st.bind.clone())
    };
    let binds = if binds.is_empty() {
        vec!["0.0.0.0".to_string()]
    } else {
        binds
    };
    let mut out = Vec::new();
    for b in binds {
        let b = b.trim_start_matches('-');
        let addr = if b.contains(':') {
            format!("[{b}]:{port}")
        } else {
            format!("{b}:{port}")
        };
        out.push(TcpListener::bind(addr)?);
    }
    Ok(out)
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

fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(PUBSUB_QUEUE_MAX);
    let id = {
        let mut st = super::lock();
        if st.clients.len() >= CLIENTS_MAX {
            let _ = s.write_all(b"-ERR max number of clients reached\r\n");
            return;
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
        id
    };
    let authed = super::lock().requirepass.is_none();
    let mut c = Client {
        id,
        proto: Proto::Resp2,
        authed,
        channels: Vec::new(),
        patterns: Vec::new(),
        tx,
        close: false,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut args = Vec::new();
    let mut scratch = Vec::new();
    'conn: loop {
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
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut pos = 0;
        let mut out = Vec::new();
        loop {
            scratch.clear();
            match parse_command(&buf[pos..], &mut args, &mut scratch, ParseLimits::default()) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Empty { consumed }) => pos += consumed,
                Ok(Parsed::Command { consumed }) => {
                    let argv: Vec<Vec<u8>> = args
                        .iter()
                        .map(|r| buf[pos..][r.clone()].to_vec())
                        .collect();
                    pos += consumed;
                    execute(&mut c, &argv, &mut out);
                }
                Ok(Parsed::Inline { consumed }) => {
                    let argv: Vec<Vec<u8>> =
                        args.iter().map(|r| scratch[r.clone()].to_vec()).collect();
                    pos += consumed;
                    execute(&mut c, &argv, &mut out);
                }
                Err(e) => {
                    Reply::new(&mut out, c.proto).error(&e.reply_text());
                    let _ = s.write_all(&out);
                    break 'conn;
                }
            }
            if c.close {
                break;
            }
        }
        buf.drain(..pos);
        if !out.is_empty() && s.write_all(&out).is_err() {
            break;
        }
        if c.close || buf.len() > QUERY_BUF_MAX {
            break;
        }
    }
    let mut st = super::lock();
    st.clients.remove(&id);
    st.subscribers.remove(&id);
}

fn lower(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_lowercase()
}

fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

/// A command's name and arity (Redis's convention: negative means "at least").
const COMMANDS: &[(&str, i32)] = &[
    ("ping", -1),
    ("sentinel", -2),
    ("subscribe", -2),
    ("unsubscribe", -1),
    ("psubscribe", -2),
    ("punsubscribe", -1),
    ("publish", 3),
    ("info", -1),
    ("role", 1),
    ("client", -2),
    ("shutdown", -1),
    ("auth", -2),
    ("hello", -1),
    ("command", -1),
    ("acl", -2),
    ("reset", 1),
    ("quit", -1),
];

/// Commands accepted but not listed by COMMAND (as in Redis's sentinel table).
const UNLISTED: &[&str] = &["reset", "quit"];

fn listed() -> impl Iterator<Item = &'static (&'static str, i32)> {
    COMMANDS.iter().filter(|(n, _)| !UNLISTED.contains(n))
}

fn arity_ok(arity: i32, argc: usize) -> bool {
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
    let Some(&(_, arity)) = COMMANDS.iter().find(|(n, _)| *n == name) else {
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
    if !arity_ok(arity, argv.len()) {
        return r.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
    }
    if !c.authed && !matches!(name.as_str(), "auth" | "hello" | "quit" | "reset") {
        return r.error("NOAUTH Authentication required.");
    }
    if c.subscribed()
        && proto == Proto::Resp2
        && !matches!(
            name.as_str(),
            "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset"
        )
    {
        return r.error(&format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ));
    }
    match name.as_str() {
        "ping" => ping(c, argv, &mut r),
        "sentinel" => sentinel_cmd(argv, &mut r),
        "subscribe" | "psubscribe" => subscribe(c, argv, name == "psubscribe", &mut r),
        "unsubscribe" | "punsubscribe" => unsubscribe(c, argv, name == "punsubscribe", &mut r),
        "publish" => publish(argv, &mut r),
        "info" => info(argv, &mut r),
        "role" => {
            let st = super::lock();
            r.array(2);
            r.bulk(b"sentinel");
            r.array(st.masters.len());
            for n in st.masters.keys() {
                r.bulk(n.as_bytes());
            }
        }
        "client" => client_cmd(c, argv, &mut r),
        "acl" => match lower(&argv[1]).as_str() {
            "whoami" => r.bulk(b"default"),
            "users" => {
                r.array(1);
                r.bulk(b"default");
            }
            _ => r.error(&format!(
                "ERR unknown subcommand '{}'. Try ACL HELP.",
                text(&argv[1])
            )),
        },
        "shutdown" => shutdown(),
        "auth" => auth(c, argv, &mut r),
        "hello" => hello(c, argv, out),
        "command" => command(argv, &mut r),
        "reset" => {
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
            Reply::new(out, Proto::Resp2).simple("RESET");
        }
        "quit" => {
            r.ok();
            c.close = true;
        }
        _ => r.error("ERR unknown command"),
    }
}

fn ping(c: &Client, argv: &[Vec<u8>], r: &mut Reply) {
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

fn hello(c: &mut Client, argv: &[Vec<u8>], out: &mut Vec<u8>) {
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
            for (n, a) in listed() {
                one(r, n, *a);
            }
        }
        "count" => r.int(listed().count() as i64),
        "docs" => r.map(0),
        "info" => {
            r.array(argv.len() - 2);
            for a in &argv[2..] {
                match COMMANDS.iter().find(|(n, _)| *n == lower(a)) {
                    Some((n, ar)) => one(r, n, *ar),
                    None => r.null_array(),
                }
            }
        }
        "list" => {
            r.array(listed().count());
            for (n, _) in listed() {
                r.bulk(n.as_bytes());
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

/// SENTINEL subcommands and their arities (counting `SENTINEL` and the subcommand).
const SUBCOMMANDS: &[(&str, i32)] = &[
    ("ckquorum", 3),
    ("config", -4),
    ("debug", -2),
    ("failover", 3),
    ("flushconfig", 2),
    ("get-master-addr-by-name", 3),
    ("help", 2),
    ("info-cache", -3),
    ("is-master-down-by-addr", 6),
    ("master", 3),
    ("masters", 2),
    ("monitor", 6),
    ("myid", 2),
    ("pending-scripts", 2),
    ("remove", 3),
    ("replicas", 3),
    ("reset", 3),
    ("sentinels", 3),
    ("set", -5),
    ("simulate-failure", -3),
    ("slaves", 3),
];

fn no_master(r: &mut Reply) {
    r.error("ERR No such master with that name");
}

fn sentinel_cmd(argv: &[Vec<u8>], r: &mut Reply) {
    let sub = lower(&argv[1]);
    let Some(&(_, arity)) = SUBCOMMANDS.iter().find(|(n, _)| *n == sub) else {
        return r.error(&format!(
            "ERR unknown subcommand '{}'. Try SENTINEL HELP.",
            text(&argv[1])
        ));
    };
    if !arity_ok(arity, argv.len()) {
        return r.error(&format!(
            "ERR wrong number of arguments for 'sentinel|{sub}' command"
        ));
    }
    let mut st = super::lock();
    let name = argv.get(2).map(|a| text(a)).unwrap_or_default();
    match sub.as_str() {
        "masters" => {
            r.array(st.masters.len());
            for m in st.masters.values() {
                write_inst(r, m, &m.inst);
            }
        }
        "master" => match st.masters.get(&name) {
            Some(m) => write_inst(r, m, &m.inst),
            None => no_master(r),
        },
        "replicas" | "slaves" => match st.masters.get(&name) {
            Some(m) => {
                // Replicas configured with replica-announced no are not shown.
                let shown: Vec<&Inst> = m
                    .replicas
                    .values()
                    .filter(|i| i.replica_announced)
                    .collect();
                r.array(shown.len());
                for i in shown {
                    write_inst(r, m, i);
                }
            }
            None => no_master(r),
        },
        "sentinels" => match st.masters.get(&name) {
            Some(m) => {
                r.array(m.sentinels.len());
                for i in m.sentinels.values() {
                    write_inst(r, m, i);
                }
            }
            None => no_master(r),
        },
        "get-master-addr-by-name" => match st.masters.get(&name) {
            Some(m) => {
                let (ip, port) = m.current_addr();
                r.array(2);
                r.bulk(ip.as_bytes());
                r.bulk(port.to_string().as_bytes());
            }
            None => r.null_array(),
        },
        "myid" => r.bulk(st.myid.as_bytes()),
        "flushconfig" => {
            st.config_dirty = true;
            if super::conf::flush(&mut st) {
                r.ok();
            } else {
                r.error("ERR Failed to save config");
            }
        }
        "pending-scripts" => super::scripts::pending(&st, r),
        "ckquorum" => ckquorum(&st, &name, r),
        "monitor" => monitor(&mut st, argv, r),
        "remove" => match st.masters.remove(&name) {
            Some(m) => {
                st.event(true, "-monitor", describe(&m, &m.inst));
                st.config_dirty = true;
                super::conf::flush(&mut st);
                r.ok();
            }
            None => no_master(r),
        },
        "reset" => {
            let names: Vec<String> = st
                .masters
                .keys()
                .filter(|n| shards::glob::matches(&argv[2], n.as_bytes(), false))
                .cloned()
                .collect();
            for n in &names {
                brain::reset_master(&mut st, n, None, true);
                if let Some(m) = st.masters.get(n) {
                    let msg = describe(m, &m.inst);
                    st.event(true, "+reset-master", msg);
                }
            }
            super::conf::flush(&mut st);
            r.int(names.len() as i64);
        }
        "failover" => failover(&mut st, &name, r),
        "is-master-down-by-addr" => is_master_down(&mut st, argv, r),
        "set" => set(&mut st, argv, r),
        "info-cache" => info_cache(&st, argv, r),
        "simulate-failure" => simulate_failure(&mut st, argv, r),
        "config" => config(&mut st, argv, r),
        "debug" => debug(argv, r),
        _ => r.simples(&[
            "SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands:",
            "MASTERS | MASTER <name> | REPLICAS <name> | SENTINELS <name>",
            "GET-MASTER-ADDR-BY-NAME <name> | CKQUORUM <name> | FAILOVER <name>",
            "MONITOR <name> <ip> <port> <quorum> | REMOVE <name> | RESET <pattern>",
            "SET <name> <option> <value> ... | CONFIG GET <param> | CONFIG SET <param> <value>",
            "IS-MASTER-DOWN-BY-ADDR <ip> <port> <epoch> <runid> | INFO-CACHE [<name> ...]",
            "MYID | FLUSHCONFIG | PENDING-SCRIPTS | SIMULATE-FAILURE <flag> ... | DEBUG | HELP",
        ]),
    }
}

/// The timing parameters SENTINEL DEBUG lists, in milliseconds (Redis's names and order).
const TIMINGS: &[(&str, u64)] = &[
    ("INFO-PERIOD", 10_000),
    ("PING-PERIOD", 1000),
    ("ASK-PERIOD", 1000),
    ("PUBLISH-PERIOD", 2000),
    ("DEFAULT-DOWN-AFTER", DEFAULT_DOWN_AFTER_MS),
    ("DEFAULT-FAILOVER-TIMEOUT", DEFAULT_FAILOVER_TIMEOUT_MS),
    ("TILT-TRIGGER", 2000),
    ("TILT-PERIOD", 30_000),
    ("SLAVE-RECONF-TIMEOUT", 10_000),
    ("MIN-LINK-RECONNECT-PERIOD", 15_000),
    ("ELECTION-TIMEOUT", 10_000),
    ("SCRIPT-MAX-RUNTIME", 60_000),
    ("SCRIPT-RETRY-DELAY", 30_000),
];

/// SENTINEL DEBUG: lists the timing parameters. They are constants here, so changing one is
/// refused.
fn debug(argv: &[Vec<u8>], r: &mut Reply) {
    if argv.len() == 2 {
        r.map(TIMINGS.len());
        for (k, v) in TIMINGS {
            r.bulk(k.as_bytes());
            r.bulk(v.to_string().as_bytes());
        }
        return;
    }
    let name = text(&argv[2]);
    let known = TIMINGS.iter().any(|(k, _)| k.eq_ignore_ascii_case(&name));
    if !known || !argv.len().is_multiple_of(2) {
        return r.error(&format!(
            "ERR Unknown option or number of arguments for SENTINEL DEBUG '{name}'"
        ));
    }
    r.error(&format!(
        "ERR SENTINEL DEBUG cannot change '{name}': the timings are fixed in shardis"
    ));
}

/// The flat field/value list of SENTINEL MASTER, REPLICAS and SENTINELS.
fn write_inst(r: &mut Reply, m: &Master, i: &Inst) {
    let mut f: Vec<(&str, String)> = vec![
        ("name", i.name.clone()),
        ("ip", i.ip.clone()),
        ("port", i.port.to_string()),
        ("runid", i.runid.clone()),
        (
            "flags",
            i.flags(
                i.kind == Kind::Master && m.failover_in_progress(),
                i.kind == Kind::Master && m.force_failover,
            ),
        ),
        ("link-pending-commands", i.link.pending.to_string()),
        ("link-refcount", "1".into()),
    ];
    if i.kind == Kind::Master && m.failover_in_progress() {
        f.push(("failover-state", m.failover_state.name().into()));
    }
    f.push(("last-ping-sent", ms_since(i.link.act_ping_time).to_string()));
    f.push((
        "last-ok-ping-reply",
        ms_since(Some(i.link.last_avail_time)).to_string(),
    ));
    f.push((
        "last-ping-reply",
        ms_since(Some(i.link.last_pong_time)).to_string(),
    ));
    if i.s_down() {
        f.push(("s-down-time", ms_since(i.s_down_since).to_string()));
    }
    if i.o_down_since.is_some() {
        f.push(("o-down-time", ms_since(i.o_down_since).to_string()));
    }
    f.push(("down-after-milliseconds", m.down_after_ms.to_string()));
    if i.kind != Kind::Sentinel {
        f.push(("info-refresh", ms_since(i.info_refresh).to_string()));
        let role = match i.role_reported {
            Role::Master => "master",
            Role::Slave => "slave",
        };
        f.push(("role-reported", role.into()));
        f.push((
            "role-reported-time",
            ms_since(Some(i.role_reported_time)).to_string(),
        ));
    }
    match i.kind {
        Kind::Master => {
            f.push(("config-epoch", m.config_epoch.to_string()));
            f.push(("num-slaves", m.replicas.len().to_string()));
            f.push(("num-other-sentinels", m.sentinels.len().to_string()));
            f.push(("quorum", m.quorum.to_string()));
            f.push(("failover-timeout", m.failover_timeout_ms.to_string()));
            f.push(("parallel-syncs", m.parallel_syncs.to_string()));
            if let Some(s) = &m.notification_script {
                f.push(("notification-script", s.clone()));
            }
            if let Some(s) = &m.client_reconfig_script {
                f.push(("client-reconfig-script", s.clone()));
            }
        }
        Kind::Replica => {
            f.push((
                "master-link-down-time",
                i.master_link_down_time_ms.to_string(),
            ));
            f.push((
                "master-link-status",
                if i.master_link_up { "ok" } else { "err" }.into(),
            ));
            f.push((
                "master-host",
                i.master_host.clone().unwrap_or_else(|| "?".into()),
            ));
            f.push(("master-port", i.master_port.to_string()));
            f.push(("slave-priority", i.slave_priority.to_string()));
            f.push(("slave-repl-offset", i.repl_offset.to_string()));
            f.push(("replica-announced", (i.replica_announced as u8).to_string()));
        }
        Kind::Sentinel => {
            f.push((
                "last-hello-message",
                ms_since(Some(i.last_hello_time)).to_string(),
            ));
            f.push((
                "voted-leader",
                i.leader.clone().unwrap_or_else(|| "?".into()),
            ));
            f.push(("voted-leader-epoch", i.leader_epoch.to_string()));
        }
    }
    r.map(f.len());
    for (k, v) in f {
        r.bulk(k.as_bytes());
        r.bulk(v.as_bytes());
    }
}

fn ckquorum(st: &State, name: &str, r: &mut Reply) {
    let Some(m) = st.masters.get(name) else {
        return no_master(r);
    };
    let voters = m.sentinels.len() + 1;
    let usable = 1 + m
        .sentinels
        .values()
        .filter(|s| !s.s_down() && s.o_down_since.is_none() && s.link.connected)
        .count();
    let mut e = format!("{usable} usable Sentinels.");
    let mut bad = false;
    if usable < m.quorum as usize {
        e.push_str(" Not enough available Sentinels to reach the specified quorum for this master");
        bad = true;
    }
    if usable < voters / 2 + 1 {
        e.push_str(
            " Not enough available Sentinels to reach the majority and authorize a failover",
        );
        bad = true;
    }
    if bad {
        r.error(&format!("NOQUORUM {e}"));
    } else {
        r.simple(&format!(
            "OK {usable} usable Sentinels. Quorum and failover authorization can be reached"
        ));
    }
}

fn monitor(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let name = text(&argv[2]);
    let ip = text(&argv[3]);
    let quorum = match text(&argv[5]).parse::<i64>() {
        Ok(q) => q,
        Err(_) => return r.error("ERR Invalid quorum"),
    };
    if quorum <= 0 {
        return r.error("ERR Quorum must be 1 or greater.");
    }
    let port = match text(&argv[4]).parse::<i64>() {
        Ok(p) if (1..=65535).contains(&p) => p as u16,
        _ => return r.error("ERR Invalid port"),
    };
    let ip_ok = if st.resolve_hostnames {
        std::net::ToSocketAddrs::to_socket_addrs(&(ip.as_str(), port)).is_ok()
    } else {
        ip.parse::<std::net::IpAddr>().is_ok()
    };
    if !ip_ok {
        return r.error("ERR Invalid IP address or hostname specified");
    }
    if st.masters.contains_key(&name) {
        return r.error("ERR Duplicate master name.");
    }
    let id = st.new_id();
    let quorum = u32::try_from(quorum).unwrap_or(u32::MAX);
    let m = Master::new(id, name.clone(), ip, port, quorum);
    let msg = format!("{} quorum {}", describe(&m, &m.inst), quorum);
    st.masters.insert(name.clone(), m);
    st.event(true, "+monitor", msg);
    st.config_dirty = true;
    super::conf::flush(st);
    super::link::spawn_all(st, &name);
    r.ok();
}

fn failover(st: &mut State, name: &str, r: &mut Reply) {
    let mut events = Vec::new();
    let State {
        masters,
        current_epoch,
        ..
    } = st;
    let Some(m) = masters.get_mut(name) else {
        return no_master(r);
    };
    if m.failover_in_progress() {
        return r.error("INPROG Failover already in progress");
    }
    if brain::select_slave(m).is_none() {
        return r.error("NOGOODSLAVE No suitable replica to promote");
    }
    brain::start_failover_events(m, current_epoch, &mut events);
    m.force_failover = true;
    for (w, k, msg) in events {
        st.event(w, k, msg);
    }
    st.config_dirty = true;
    r.ok();
}

fn is_master_down(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let (Ok(port), Ok(req_epoch)) = (text(&argv[3]).parse::<i64>(), text(&argv[4]).parse::<i64>())
    else {
        return r.error("ERR value is not an integer or out of range");
    };
    let ip = text(&argv[2]);
    let runid = text(&argv[5]);
    let myid = st.myid.clone();
    let mut events = Vec::new();
    let State {
        masters,
        current_epoch,
        tilt_since: tilt,
        ..
    } = st;
    let m = masters
        .values_mut()
        .find(|m| m.inst.ip == ip && i64::from(m.inst.port) == port);
    let mut down = false;
    let mut leader: Option<String> = None;
    let mut leader_epoch = 0;
    let mut dirty = false;
    if let Some(m) = m {
        down = m.inst.s_down() && tilt.is_none();
        if runid != "*" {
            let (l, e, d) = brain::vote_leader(
                m,
                current_epoch,
                &myid,
                req_epoch.max(0) as u64,
                &runid,
                &mut events,
            );
            leader = l;
            leader_epoch = e;
            dirty = d;
        }
    }
    for (w, k, msg) in events {
        st.event(w, k, msg);
    }
    if dirty {
        st.config_dirty = true;
        super::conf::flush(st);
    }
    r.array(3);
    r.int(down as i64);
    r.bulk(leader.as_deref().unwrap_or("*").as_bytes());
    r.int(leader_epoch as i64);
}

fn set(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let name = text(&argv[2]);
    let deny = st.deny_scripts_reconfig;
    let Some(m) = st.masters.get_mut(&name) else {
        return no_master(r);
    };
    let mut i = 3;
    let mut changes: Vec<String> = Vec::new();
    let mut err = None;
    while i < argv.len() {
        let opt = lower(&argv[i]);
        let val = argv.get(i + 1).map(|v| text(v));
        let invalid = |v: &str| format!("ERR Invalid argument '{v}' for SENTINEL SET '{opt}'");
        let positive = |v: &str| v.parse::<i64>().ok().filter(|n| *n > 0);
        match (opt.as_str(), val) {
            ("down-after-milliseconds", Some(v)) => match positive(&v) {
                Some(n) => m.down_after_ms = n as u64,
                None => err = Some(invalid(&v)),
            },
            ("failover-timeout", Some(v)) => match positive(&v) {
                Some(n) => m.failover_timeout_ms = n as u64,
                None => err = Some(invalid(&v)),
            },
            ("parallel-syncs", Some(v)) => match positive(&v).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => m.parallel_syncs = n,
                None => err = Some(invalid(&v)),
            },
            ("quorum", Some(v)) => match positive(&v).and_then(|n| u32::try_from(n).ok()) {
                Some(n) => m.quorum = n,
                None => err = Some(invalid(&v)),
            },
            ("master-reboot-down-after-period", Some(v)) => {
                match v.parse::<i64>().ok().filter(|n| *n >= 0) {
                    Some(n) => m.master_reboot_down_after_ms = n as u64,
                    None => err = Some(invalid(&v)),
                }
            }
            ("notification-script" | "client-reconfig-script", Some(_)) if deny => {
                err = Some("ERR Reconfiguration of scripts path is denied for security reasons. Check the deny-scripts-reconfig configuration directive in your Sentinel configuration".into())
            }
            ("notification-script", Some(v)) if !v.is_empty() && !executable(&v) => {
                err = Some("ERR Notification script seems non existing or non executable".into())
            }
            ("client-reconfig-script", Some(v)) if !v.is_empty() && !executable(&v) => {
                err = Some(
                    "ERR Client reconfiguration script seems non existing or non executable"
                        .into(),
                )
            }
            ("notification-script", Some(v)) => {
                m.notification_script = (!v.is_empty()).then_some(v)
            }
            ("client-reconfig-script", Some(v)) => {
                m.client_reconfig_script = (!v.is_empty()).then_some(v)
            }
            ("auth-pass", Some(v)) => m.auth_pass = (!v.is_empty()).then_some(v),
            ("auth-user", Some(v)) => m.auth_user = (!v.is_empty()).then_some(v),
            ("rename-command", Some(v)) if i + 2 < argv.len() => {
                let to = text(&argv[i + 2]);
                m.renamed.insert(v.to_ascii_lowercase(), to);
                i += 1;
            }
            _ => {
                err = Some(format!(
                    "ERR Unknown option or number of arguments for SENTINEL SET '{}'",
                    text(&argv[i])
                ))
            }
        }
        if err.is_some() {
            break;
        }
        let shown = if opt == "auth-pass" {
            "******".to_string()
        } else {
            argv.get(i + 1).map(|v| text(v)).unwrap_or_default()
        };
        changes.push(format!("{} {opt} {shown}", describe(m, &m.inst)));
        i += 2;
    }
    for c in changes {
        st.event(true, "+set", c);
    }
    st.config_dirty = true;
    super::conf::flush(st);
    match err {
        Some(e) => r.error(&e),
        None => r.ok(),
    }
}

/// Whether `path` names a file this process may execute.
fn executable(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated path and nothing else.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

fn info_cache(st: &State, argv: &[Vec<u8>], r: &mut Reply) {
    let names: Vec<String> = argv[2..].iter().map(|a| text(a)).collect();
    let masters: Vec<&Master> = st
        .masters
        .values()
        .filter(|m| names.is_empty() || names.contains(&m.inst.name))
        .collect();
    r.array(masters.len() * 2);
    for m in masters {
        r.bulk(m.inst.name.as_bytes());
        r.array(m.replicas.len() + 1);
        for i in std::iter::once(&m.inst).chain(m.replicas.values()) {
            r.array(2);
            r.int(ms_since(i.info_refresh));
            if i.info.is_empty() {
                r.null();
            } else {
                r.verbatim(i.info.as_bytes());
            }
        }
    }
}

fn simulate_failure(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let mut flags = 0;
    for a in &argv[2..] {
        match lower(a).as_str() {
            "crash-after-election" => flags |= SIMFAIL_CRASH_AFTER_ELECTION,
            "crash-after-promotion" => flags |= SIMFAIL_CRASH_AFTER_PROMOTION,
            "help" => {
                r.array(2);
                r.bulk(b"crash-after-election");
                r.bulk(b"crash-after-promotion");
                return;
            }
            _ => return r.error("ERR Unknown failure simulation specified"),
        }
    }
    st.simulate_failure = flags;
    r.ok();
}

const CONFIG_PARAMS: &[&str] = &[
    "resolve-hostnames",
    "announce-hostnames",
    "announce-ip",
    "announce-port",
    "sentinel-user",
    "sentinel-pass",
];

fn config(st: &mut State, argv: &[Vec<u8>], r: &mut Reply) {
    let sub = lower(&argv[2]);
    let usage = "ERR Only SENTINEL CONFIG GET <option> / SET <option> <value> are supported.";
    let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
    if sub == "get" && argv.len() == 4 {
        let mut pairs = Vec::new();
        for p in CONFIG_PARAMS {
            if !shards::glob::matches(&argv[3], p.as_bytes(), true) {
                continue;
            }
            let v = match *p {
                "resolve-hostnames" => yn(st.resolve_hostnames),
                "announce-hostnames" => yn(st.announce_hostnames),
                "announce-ip" => st.announce_ip.clone(),
                "announce-port" => st.announce_port.to_string(),
                "sentinel-user" => st.sentinel_user.clone().unwrap_or_default(),
                _ => st.sentinel_pass.clone().unwrap_or_default(),
            };
            pairs.push((*p, v));
        }
        r.map(pairs.len());
        for (k, v) in pairs {
            r.bulk(k.as_bytes());
            r.bulk(v.as_bytes());
        }
        return;
    }
    if sub != "set" || argv.len() != 5 {
        return r.error(usage);
    }
    let (opt, val) = (lower(&argv[3]), text(&argv[4]));
    let bad = || format!("ERR Invalid value '{val}' to SENTINEL CONFIG SET '{opt}'");
    match opt.as_str() {
        "resolve-hostnames" | "announce-hostnames" => {
            let b = match val.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return r.error(&bad()),
            };
            if opt == "resolve-hostnames" {
                st.resolve_hostnames = b;
            } else {
                st.announce_hostnames = b;
            }
        }
        "announce-ip" => st.announce_ip = val,
        "announce-port" => match val.parse::<u16>() {
            Ok(p) => st.announce_port = p,
            Err(_) => return r.error(&bad()),
        },
        "sentinel-user" => st.sentinel_user = (!val.is_empty()).then_some(val),
        "sentinel-pass" => st.sentinel_pass = (!val.is_empty()).then_some(val),
        _ => {
            return r.error(&format!(
                "ERR Invalid argument '{opt}' to SENTINEL CONFIG SET"
            ))
        }
    }
    st.config_dirty = true;
    super::conf::flush(st);
    r.ok();
}
