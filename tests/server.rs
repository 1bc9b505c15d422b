//! Server-level tests against the real binary: CLIENT (ID, SETNAME, GETNAME, INFO, LIST, KILL)
//! over connections served by both shards, CONFIG GET/SET, INFO sections summed over shards,
//! HELLO, requirepass, DEBUG, maxclients, and the process itself: start-up options, config
//! files, a taken port, `--help`, SIGTERM and SHUTDOWN.
//!
//! Replies and error texts were checked against redis-server 7.0 (`SHARDIS_TEST_USE_REDIS=1`
//! runs this file against it; the tests of shardis's own binary and options skip themselves
//! there).

mod common;

use common::{encode, escape, parse_listening_port, q, use_redis_for_shardis, RawConn, Server};
use redis::Connection;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long an eventually-true condition may take (connections closing, counters moving).
const SETTLE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a shardis that must refuse to start may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);
/// The most connections opened while looking for ones served by every shard.
const CONNS_MAX: usize = 64;

/// Compares raw replies, showing both escaped when they differ.
macro_rules! assert_reply {
    ($got:expr, $want:expr $(, $($msg:tt)+)?) => {{
        let (got, want) = (&$got, &$want);
        assert_eq!(escape(&got[..]), escape(&want[..]) $(, $($msg)+)?);
    }};
}

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

/// The integer of a raw `:n` reply.
fn int_of(reply: &[u8]) -> i64 {
    let s = std::str::from_utf8(reply).unwrap();
    s.strip_prefix(':')
        .and_then(|s| s.strip_suffix("\r\n"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {}", escape(reply)))
}

/// The text of a raw bulk (or verbatim) string reply.
fn text_of(reply: &[u8]) -> String {
    let s = String::from_utf8_lossy(reply).into_owned();
    let body = s.split_once("\r\n").map(|(_, b)| b).unwrap_or("");
    let body = body.strip_suffix("\r\n").unwrap_or(body);
    let body = if reply.first() == Some(&b'=') {
        &body[4..]
    } else {
        body
    };
    body.to_string()
}

/// An INFO field, as text.
fn info_field(con: &mut Connection, section: &str, field: &str) -> String {
    let info: String = q(con, &["INFO", section]);
    let prefix = format!("{field}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}:\n{info}"))
        .trim()
        .to_string()
}

fn info_int(con: &mut Connection, section: &str, field: &str) -> i64 {
    info_field(con, section, field).parse().unwrap()
}

/// Polls `f` until it returns true or `SETTLE_DEADLINE` passes; returns the last result.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + SETTLE_DEADLINE;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `k=v` fields of a CLIENT LIST / CLIENT INFO line.
fn client_fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// CLIENT LIST as id → fields.
fn client_list(con: &mut Connection, extra: &[&str]) -> HashMap<u64, HashMap<String, String>> {
    let mut args = vec!["CLIENT", "LIST"];
    args.extend_from_slice(extra);
    let text: String = q(con, &args);
    text.lines()
        .map(client_fields)
        .map(|f| (f["id"].parse().unwrap(), f))
        .collect()
}

/// Clients per shard from shardis's `INFO shards` (empty against redis-server).
fn clients_per_shard(con: &mut Connection) -> Vec<i64> {
    let info: String = q(con, &["INFO", "shards"]);
    info.lines()
        .filter(|l| l.starts_with("shard"))
        .map(|l| {
            let f = client_fields(&l.replace([':', ','], " "));
            f["clients"].parse().unwrap()
        })
        .collect()
}

/// Opens at least `n` raw connections and, against shardis, enough more that both shards
/// serve some of them (the kernel spreads connections over the shards' listeners).
fn conns_on_every_shard(server: &Server, observer: &mut Connection, n: usize) -> Vec<RawConn> {
    let mut conns: Vec<RawConn> = Vec::new();
    while conns.len() < CONNS_MAX {
        let mut c = server.raw();
        // A reply proves the server has registered the connection.
        assert_reply!(c.cmd(&["PING"]), b"+PONG\r\n");
        conns.push(c);
        let per_shard = clients_per_shard(observer);
        if conns.len() >= n && per_shard.iter().all(|&c| c > 0) {
            return conns;
        }
    }
    panic!("{CONNS_MAX} connections never reached every shard");
}

fn local_addr(c: &mut RawConn) -> String {
    c.stream().local_addr().unwrap().to_string()
}

/// Asserts that the server closes `c` (without sending anything).
fn assert_closed(c: &mut RawConn, what: &str) {
    c.set_read_timeout(SETTLE_DEADLINE);
    let got = c.read_until_closed();
    assert!(got.is_empty(), "{what}: got {} before EOF", escape(&got));
}

#[test]
fn client_id_setname_getname_info() {
    let server = Server::start(&[]);
    let mut a = server.raw();
    let mut b = server.raw();
    let id_a = int_of(&a.cmd(&["CLIENT", "ID"]));
    let id_b = int_of(&b.cmd(&["CLIENT", "ID"]));
    assert!(id_a > 0 && id_b > 0 && id_a != id_b, "ids {id_a} {id_b}");
    assert_reply!(a.cmd(&["CLIENT", "GETNAME"]), b"$-1\r\n");
    assert_reply!(a.cmd(&["CLIENT", "SETNAME", "alpha"]), b"+OK\r\n");
    assert_reply!(a.cmd(&["CLIENT", "GETNAME"]), bulk("alpha"));
    assert_reply!(b.cmd(&["CLIENT", "GETNAME"]), b"$-1\r\n");
    assert_reply!(
        a.cmd(&["CLIENT", "SETNAME", "two words"]),
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    assert_reply!(a.cmd(&["CLIENT", "GETNAME"]), bulk("alpha"));
    assert_reply!(a.cmd(&["SELECT", "4"]), b"+OK\r\n");
    let info = text_of(&a.cmd(&["CLIENT", "INFO"]));
    assert!(
        info.ends_with('\n') && info.lines().count() == 1,
        "{info:?}"
    );
    let f = client_fields(&info);
    assert_eq!(f["id"], id_a.to_string());
    assert_eq!(f["name"], "alpha");
    assert_eq!(f["db"], "4");
    assert_eq!(f["addr"], local_addr(&mut a));
    assert_eq!(f["cmd"], "client|info");
    assert_eq!(f["resp"], "2");
    // An empty name clears it.
    assert_reply!(a.cmd(&["CLIENT", "SETNAME", ""]), b"+OK\r\n");
    assert_reply!(a.cmd(&["CLIENT", "GETNAME"]), b"$-1\r\n");
    assert_eq!(int_of(&a.cmd(&["CLIENT", "ID"])), id_a);
}

#[test]
fn client_list_shows_connections_of_every_shard() {
    let server = Server::start(&[]);
    let mut observer = server.client();
    let mut conns = conns_on_every_shard(&server, &mut observer, 6);
    let mut want: HashMap<u64, (String, String)> = HashMap::new();
    for (i, c) in conns.iter_mut().enumerate() {
        let name = format!("conn-{i}");
        assert_reply!(c.cmd(&["CLIENT", "SETNAME", &name]), b"+OK\r\n");
        if i % 2 == 1 {
            assert_reply!(c.cmd(&["SELECT", "7"]), b"+OK\r\n");
        }
        let id = int_of(&c.cmd(&["CLIENT", "ID"])) as u64;
        want.insert(id, (name, local_addr(c)));
    }
    let observer_id: u64 = q(&mut observer, &["CLIENT", "ID"]);
    let mut ids = HashSet::new();
    let settled = eventually(|| {
        ids = client_list(&mut observer, &[]).into_keys().collect();
        ids.len() == want.len() + 1
    });
    assert!(settled, "CLIENT LIST ids {ids:?}, want {want:?}");
    let list = client_list(&mut observer, &[]);
    assert!(list.contains_key(&observer_id));
    for (id, (name, addr)) in &want {
        let f = list
            .get(id)
            .unwrap_or_else(|| panic!("CLIENT LIST lacks id {id}: {list:?}"));
        assert_eq!(&f["name"], name);
        assert_eq!(&f["addr"], addr);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let id = int_of(&c.cmd(&["CLIENT", "ID"])) as u64;
        let db = if i % 2 == 1 { "7" } else { "0" };
        assert_eq!(list[&id]["db"], db, "conn-{i}");
    }
    // CLIENT LIST ID picks exactly the given connections, whichever shard serves them.
    let mut some: Vec<u64> = want.keys().copied().collect();
    some.sort();
    let picked: Vec<String> = some.iter().take(3).map(u64::to_string).collect();
    let mut args = vec!["ID"];
    args.extend(picked.iter().map(String::as_str));
    let got: HashSet<u64> = client_list(&mut observer, &args).into_keys().collect();
    assert_eq!(got, some.iter().take(3).copied().collect::<HashSet<_>>());
    assert!(client_list(&mut observer, &["ID", "999999"]).is_empty());
    assert!(client_list(&mut observer, &["TYPE", "pubsub"]).is_empty());
    assert_eq!(
        client_list(&mut observer, &["TYPE", "normal"]).len(),
        want.len() + 1
    );
}

#[test]
fn client_kill_that_matches_nothing() {
    let server = Server::start(&[]);
    let mut killer = server.raw();
    let mut other = server.raw();
    let id = int_of(&killer.cmd(&["CLIENT", "ID"]));
    let kid = id.to_string();
    // SKIPME yes (the default) spares the caller.
    assert_reply!(killer.cmd(&["CLIENT", "KILL", "ID", &kid]), b":0\r\n");
    assert_reply!(
        killer.cmd(&["CLIENT", "KILL", "ID", &kid, "SKIPME", "yes"]),
        b":0\r\n"
    );
    assert_reply!(killer.cmd(&["CLIENT", "KILL", "ID", "999999"]), b":0\r\n");
    assert_reply!(
        killer.cmd(&["CLIENT", "KILL", "ADDR", "1.2.3.4:5"]),
        b":0\r\n"
    );
    assert_reply!(
        killer.cmd(&["CLIENT", "KILL", "1.2.3.4:5"]),
        b"-ERR No such client\r\n"
    );
    assert_reply!(
        killer.cmd(&["CLIENT", "KILL", "ID", "0"]),
        b"-ERR client-id should be greater than 0\r\n"
    );
    assert_reply!(
        killer.cmd(&["CLIENT", "KILL", "TYPE", "nosuch"]),
        b"-ERR Unknown client type 'nosuch'\r\n"
    );
    assert_reply!(
        killer.cmd(&["CLIENT", "KILL", "ID", "1", "SKIPME"]),
        b"-ERR syntax error\r\n"
    );
    assert_reply!(killer.cmd(&["PING"]), b"+PONG\r\n");
    assert_reply!(other.cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn client_kill_by_id_addr_old_form_and_skipme() {
    let server = Server::start(&[]);
    let mut observer = server.client();
    let mut victims = conns_on_every_shard(&server, &mut observer, 8);
    let mut killer = server.raw();
    let killer_id = int_of(&killer.cmd(&["CLIENT", "ID"]));

    // KILL ID, on whichever shard the victims live.
    for _ in 0..2 {
        let mut v = victims.pop().unwrap();
        let id = int_of(&v.cmd(&["CLIENT", "ID"]));
        assert_reply!(
            killer.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]),
            b":1\r\n"
        );
        assert_closed(&mut v, "victim of KILL ID");
        assert_reply!(
            killer.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]),
            b":0\r\n"
        );
    }
    // KILL ADDR.
    for _ in 0..2 {
        let mut v = victims.pop().unwrap();
        let addr = local_addr(&mut v);
        assert_reply!(killer.cmd(&["CLIENT", "KILL", "ADDR", &addr]), b":1\r\n");
        assert_closed(&mut v, "victim of KILL ADDR");
    }
    // The old form answers +OK or an error.
    let mut v = victims.pop().unwrap();
    let addr = local_addr(&mut v);
    assert_reply!(killer.cmd(&["CLIENT", "KILL", &addr]), b"+OK\r\n");
    assert_closed(&mut v, "victim of the old CLIENT KILL form");
    assert_reply!(
        killer.cmd(&["CLIENT", "KILL", &addr]),
        b"-ERR No such client\r\n"
    );
    assert_reply!(
        killer.cmd(&["CLIENT", "KILL", "ID", "0"]),
        b"-ERR client-id should be greater than 0\r\n"
    );

    // SKIPME yes (the default) spares the caller.
    let kid = killer_id.to_string();
    assert_reply!(killer.cmd(&["CLIENT", "KILL", "ID", &kid]), b":0\r\n");
    assert_reply!(
        killer.cmd(&["CLIENT", "KILL", "ID", &kid, "SKIPME", "yes"]),
        b":0\r\n"
    );
    assert_reply!(killer.cmd(&["PING"]), b"+PONG\r\n");

    // Every remaining connection, on both shards, but not the caller.
    let alive = victims.len() as i64 + 1; // the victims and the observer
    let n = int_of(&killer.cmd(&["CLIENT", "KILL", "TYPE", "normal"]));
    assert_eq!(n, alive);
    for v in &mut victims {
        assert_closed(v, "victim of KILL TYPE normal");
    }
    assert_reply!(killer.cmd(&["PING"]), b"+PONG\r\n");

    // SKIPME no: the caller gets its reply, then is closed.
    killer.send(&encode(&["CLIENT", "KILL", "ID", &kid, "SKIPME", "no"]));
    assert_reply!(killer.read_reply(), b":1\r\n");
    assert_closed(&mut killer, "caller of KILL SKIPME no");
    assert_reply!(server.raw().cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn config_get_and_set() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "maxclients"]);
    assert_eq!(got, HashMap::from([("maxclients".into(), "10000".into())]));
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "hz", "port", "nosuch"]);
    assert_eq!(
        got,
        HashMap::from([
            ("hz".into(), "10".into()),
            ("port".into(), server.port().to_string()),
        ])
    );
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "maxmemory*"]);
    assert_eq!(got["maxmemory"], "0");
    assert_eq!(got["maxmemory-policy"], "noeviction");
    assert!(got.keys().all(|k| k.starts_with("maxmemory")), "{got:?}");
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "*"]);
    for k in [
        "bind",
        "port",
        "hz",
        "maxclients",
        "requirepass",
        "proto-max-bulk-len",
    ] {
        assert!(got.contains_key(k), "CONFIG GET * lacks {k}");
    }
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "nosuch*"]);
    assert!(got.is_empty());

    // Several at once, seen by every connection whichever shard serves it.
    let () = q(
        &mut con,
        &[
            "CONFIG",
            "SET",
            "hz",
            "20",
            "maxclients",
            "500",
            "timeout",
            "30",
        ],
    );
    for _ in 0..6 {
        let mut other = server.client();
        let got: HashMap<String, String> = q(
            &mut other,
            &["CONFIG", "GET", "hz", "maxclients", "timeout"],
        );
        assert_eq!(
            got,
            HashMap::from([
                ("hz".into(), "20".into()),
                ("maxclients".into(), "500".into()),
                ("timeout".into(), "30".into()),
            ])
        );
    }
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "proto-max-bulk-len"]);
    assert_eq!(got["proto-max-bulk-len"], "536870912");
    let () = q(&mut con, &["CONFIG", "SET", "proto-max-bulk-len", "2mb"]);
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "proto-max-bulk-len"]);
    assert_eq!(got["proto-max-bulk-len"], "2097152");

    let mut raw = server.raw();
    let cases: &[(&[&str], &str)] = &[
        (
            &["CONFIG", "SET", "databases", "3"],
            "-ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config\r\n",
        ),
        (
            &["CONFIG", "SET", "hz", "abc"],
            "-ERR CONFIG SET failed (possibly related to argument 'hz') - argument couldn't be parsed into an integer\r\n",
        ),
        (
            &["CONFIG", "SET", "maxmemory-policy", "bad"],
            "-ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction\r\n",
        ),
        (
            &["CONFIG", "SET", "appendonly", "maybe"],
            "-ERR CONFIG SET failed (possibly related to argument 'appendonly') - argument must be 'yes' or 'no'\r\n",
        ),
        (
            &["CONFIG", "SET", "nosuch", "1"],
            "-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n",
        ),
        (
            &["CONFIG", "SET", "hz", "1", "hz", "2"],
            "-ERR CONFIG SET failed (possibly related to argument 'hz') - duplicate parameter\r\n",
        ),
        (
            &["CONFIG", "SET", "hz"],
            "-ERR wrong number of arguments for 'config|set' command\r\n",
        ),
        // A bad pair fails the whole call: hz is not changed.
        (
            &["CONFIG", "SET", "hz", "30", "databases", "1"],
            "-ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config\r\n",
        ),
    ];
    for (args, want) in cases {
        let got = raw.cmd(args);
        assert_eq!(
            String::from_utf8_lossy(&got),
            *want,
            "{args:?}: {}",
            escape(&got)
        );
    }
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "hz"]);
    assert_eq!(got["hz"], "20");
}

#[test]
fn config_set_ranges_follow_redis() {
    let server = Server::start(&[]);
    let mut raw = server.raw();
    assert_reply!(
        raw.cmd(&["CONFIG", "SET", "proto-max-bulk-len", "1000"]),
        b"-ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be between 1048576 and 9223372036854775807 inclusive\r\n"
    );
    assert_reply!(raw.cmd(&["CONFIG", "SET", "hz", "1000"]), b"+OK\r\n");
    assert_reply!(
        raw.cmd(&["CONFIG", "GET", "hz"]),
        b"*2\r\n$2\r\nhz\r\n$3\r\n500\r\n"
    );
}

#[test]
fn proto_max_bulk_len_limits_bulk_arguments() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let () = q(&mut con, &["CONFIG", "SET", "proto-max-bulk-len", "1mb"]);
    // Exactly the limit is fine.
    let value = vec![b'x'; 1 << 20];
    let mut raw = server.raw();
    assert_reply!(raw.cmd_bytes(&[b"SET", b"big", &value]), b"+OK\r\n");
    assert_reply!(raw.cmd(&["STRLEN", "big"]), b":1048576\r\n");
    // One byte more is a protocol error that closes the connection, on either shard.
    for _ in 0..6 {
        let mut c = server.raw();
        c.send(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1048577\r\n");
        let got = c.read_until_closed();
        assert_reply!(
            got,
            b"-ERR Protocol error: invalid bulk length\r\n",
            "got {}",
            escape(&got)
        );
    }
    assert_reply!(raw.cmd(&["STRLEN", "big"]), b":1048576\r\n");
}

#[test]
fn info_server_clients_memory_sections() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let info: String = q(&mut con, &["INFO"]);
    for section in ["# Server", "# Clients", "# Memory", "# Stats", "# Keyspace"] {
        assert!(info.contains(section), "INFO lacks {section}:\n{info}");
    }
    assert!(
        !info.contains("# Commandstats"),
        "default INFO has no commandstats"
    );
    assert_eq!(info_field(&mut con, "server", "redis_version"), "7.0.15");
    assert_eq!(
        info_field(&mut con, "server", "tcp_port"),
        server.port().to_string()
    );
    let used: i64 = info_int(&mut con, "memory", "used_memory");
    assert!(used > 0, "used_memory:{used}");
    let several: String = q(&mut con, &["INFO", "server", "clients"]);
    assert!(several.contains("# Server") && several.contains("# Clients"));
    assert!(!several.contains("# Memory"));

    // connected_clients counts the connections of both shards.
    let mut extra = conns_on_every_shard(&server, &mut con, 5);
    let want = extra.len() as i64 + 1;
    assert!(
        eventually(|| info_int(&mut con, "clients", "connected_clients") == want),
        "connected_clients never reached {want}"
    );
    extra.truncate(2);
    assert!(
        eventually(|| info_int(&mut con, "clients", "connected_clients") == 3),
        "connected_clients after closing: {}",
        info_int(&mut con, "clients", "connected_clients")
    );
}

#[test]
fn info_keyspace_sums_keys_and_expires_over_shards() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let keys: Vec<String> = (0..10).map(|i| format!("key:{i}")).collect();
    for k in &keys {
        let () = q(&mut con, &["SET", k, "v"]);
    }
    for k in &keys[..4] {
        let () = q(&mut con, &["EXPIRE", k, "1000"]);
    }
    let mut db3 = server.client();
    let () = q(&mut db3, &["SELECT", "3"]);
    let () = q(&mut db3, &["MSET", "a", "1", "b", "2", "c", "3"]);
    let keyspace: String = q(&mut con, &["INFO", "keyspace"]);
    let lines: Vec<&str> = keyspace.lines().filter(|l| l.starts_with("db")).collect();
    assert_eq!(lines.len(), 2, "{keyspace}");
    assert!(
        lines[0].starts_with("db0:keys=10,expires=4,avg_ttl="),
        "{keyspace}"
    );
    assert_eq!(lines[1], "db3:keys=3,expires=0,avg_ttl=0");
}

/// The `k=v` fields of `cmdstat_<name>` in an INFO commandstats text.
fn cmdstat(stats: &str, name: &str) -> HashMap<String, String> {
    let line = stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:")))
        .unwrap_or_else(|| panic!("no cmdstat_{name}:\n{stats}"));
    line.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn info_commandstats_sums_calls_over_shards() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let () = q(&mut con, &["CONFIG", "RESETSTAT"]);
    // Single-key commands from several connections, on keys of both shards.
    let mut others: Vec<Connection> = (0..3).map(|_| server.client()).collect();
    for i in 0..7 {
        let () = q(&mut others[i % 3], &["SET", &format!("stat:{i}"), "v"]);
    }
    for (i, c) in others.iter_mut().enumerate() {
        let _: Option<String> = q(c, &["GET", &format!("stat:{i}")]);
    }
    let mut raw = server.raw();
    // A failed call counts as a call and a failure.
    assert_reply!(
        raw.cmd(&["SET", "stat:x", "v", "EX", "0"]),
        b"-ERR invalid expire time in 'set' command\r\n"
    );
    let stats: String = q(&mut con, &["INFO", "commandstats"]);
    let set = cmdstat(&stats, "set");
    assert_eq!(set["calls"], "8", "{stats}");
    assert_eq!(set["failed_calls"], "1", "{stats}");
    assert_eq!(set["rejected_calls"], "0", "{stats}");
    assert!(set.contains_key("usec") && set.contains_key("usec_per_call"));
    let get = cmdstat(&stats, "get");
    assert_eq!(get["calls"], "3", "{stats}");
    assert_eq!(get["failed_calls"], "0");
    assert!(!stats.contains("cmdstat_mset:"), "reset: {stats}");
    let all: String = q(&mut con, &["INFO", "everything"]);
    assert!(all.contains("# Commandstats") && all.contains("cmdstat_set:calls=8,"));
}

#[test]
fn info_commandstats_counts_rejected_calls() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let mut raw = server.raw();
    // (The redis crate's connection set-up may itself get errors: count from here.)
    let errors_before = info_int(&mut con, "stats", "total_error_replies");
    assert_reply!(raw.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    assert_reply!(
        raw.cmd(&["SET", "k"]),
        b"-ERR wrong number of arguments for 'set' command\r\n"
    );
    assert_reply!(
        raw.cmd(&["GET", "k", "x"]),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
    let stats: String = q(&mut con, &["INFO", "commandstats"]);
    let set = cmdstat(&stats, "set");
    assert_eq!(
        (set["calls"].as_str(), set["rejected_calls"].as_str()),
        ("1", "1"),
        "{stats}"
    );
    let get = cmdstat(&stats, "get");
    assert_eq!(
        (get["calls"].as_str(), get["rejected_calls"].as_str()),
        ("0", "1"),
        "{stats}"
    );
    assert_eq!(
        info_int(&mut con, "stats", "total_error_replies") - errors_before,
        2
    );
}

#[test]
fn info_counts_each_command_once() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let () = q(&mut con, &["CONFIG", "RESETSTAT"]);
    let keys: Vec<String> = (0..10).map(|i| format!("key:{i}")).collect();
    let before = info_int(&mut con, "stats", "total_commands_processed");
    // 10 + 10 single-key commands, 5 commands over keys of both shards, 4 connection-level
    // ones; with the INFO above, 30 commands.
    for k in &keys {
        let () = q(&mut con, &["SET", k, "v"]);
        let _: String = q(&mut con, &["GET", k]);
    }
    let () = q(
        &mut con,
        &[
            "MSET", &keys[0], "1", &keys[1], "2", &keys[2], "3", &keys[3], "4",
        ],
    );
    let _: Vec<String> = q(&mut con, &["MGET", &keys[0], &keys[1], &keys[2], &keys[3]]);
    let _: i64 = q(&mut con, &["DBSIZE"]);
    let _: i64 = q(&mut con, &["DEL", &keys[4], &keys[5], &keys[6], &keys[7]]);
    let _: i64 = q(
        &mut con,
        &["EXISTS", &keys[0], &keys[1], &keys[2], &keys[3]],
    );
    let () = q(&mut con, &["SELECT", "0"]);
    let _: i64 = q(&mut con, &["CLIENT", "ID"]);
    let _: String = q(&mut con, &["PING"]);
    let _: String = q(&mut con, &["ECHO", "x"]);
    let after = info_int(&mut con, "stats", "total_commands_processed");
    assert_eq!(after - before, 30);
    let stats: String = q(&mut con, &["INFO", "commandstats"]);
    for (name, calls) in [
        ("set", 10),
        ("get", 10),
        ("mset", 1),
        ("mget", 1),
        ("dbsize", 1),
        ("del", 1),
        ("exists", 1),
        ("select", 1),
        ("client|id", 1),
        ("ping", 1),
        ("echo", 1),
        ("info", 2),
        ("config|resetstat", 1),
    ] {
        assert_eq!(
            cmdstat(&stats, name)["calls"],
            calls.to_string(),
            "{name}: {stats}"
        );
    }
}

#[test]
fn hello_3_and_2_reply_with_server_maps() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    let id = int_of(&c.cmd(&["CLIENT", "ID"]));
    let fields = |proto: &str| {
        format!(
            "$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:{proto}\r\n$2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
        )
    };
    let got = c.cmd(&["HELLO", "3"]);
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("%7\r\n{}", fields("3"))
    );
    assert_reply!(c.cmd(&["GET", "missing"]), b"_\r\n");
    // Without a version, HELLO reports the current protocol.
    let got = c.cmd(&["HELLO"]);
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("%7\r\n{}", fields("3"))
    );
    let got = c.cmd(&["HELLO", "2", "SETNAME", "hi"]);
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("*14\r\n{}", fields("2"))
    );
    assert_reply!(c.cmd(&["GET", "missing"]), b"$-1\r\n");
    assert_reply!(c.cmd(&["CLIENT", "GETNAME"]), bulk("hi"));
    assert_reply!(
        c.cmd(&["HELLO", "4"]),
        b"-NOPROTO unsupported protocol version\r\n"
    );
    assert_reply!(
        c.cmd(&["HELLO", "3", "BOGUS"]),
        b"-ERR Syntax error in HELLO option 'BOGUS'\r\n"
    );
    // Errors leave the protocol as it was.
    assert_reply!(c.cmd(&["GET", "missing"]), b"$-1\r\n");
}

/// A server started with `--requirepass <pass>` (against redis-server, set by CONFIG SET after
/// start-up: the harness's start-up PING has no password).
fn start_with_password(pass: &str) -> Server {
    if use_redis_for_shardis() {
        let server = Server::start(&[]);
        assert_reply!(
            server.raw().cmd(&["CONFIG", "SET", "requirepass", pass]),
            b"+OK\r\n"
        );
        server
    } else {
        Server::start(&["--requirepass", pass])
    }
}

#[test]
fn requirepass_needs_auth() {
    let server = if use_redis_for_shardis() {
        // The harness's start-up PING needs no password; set it afterwards.
        let server = Server::start(&[]);
        assert_reply!(
            server
                .raw()
                .cmd(&["CONFIG", "SET", "requirepass", "secret"]),
            b"+OK\r\n"
        );
        server
    } else {
        Server::start(&["--requirepass", "secret"])
    };
    let noauth = b"-NOAUTH Authentication required.\r\n";
    let wrongpass = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    let mut c = server.raw();
    assert_reply!(c.cmd(&["GET", "x"]), noauth);
    assert_reply!(c.cmd(&["PING"]), noauth);
    assert_reply!(c.cmd(&["AUTH", "wrong"]), wrongpass);
    assert_reply!(c.cmd(&["AUTH", "default", "wrong"]), wrongpass);
    assert_reply!(c.cmd(&["AUTH", "nobody", "secret"]), wrongpass);
    assert_reply!(c.cmd(&["GET", "x"]), noauth);
    assert_reply!(c.cmd(&["AUTH", "secret"]), b"+OK\r\n");
    assert_reply!(c.cmd(&["SET", "x", "1"]), b"+OK\r\n");
    assert_reply!(c.cmd(&["GET", "x"]), bulk("1"));

    let mut h = server.raw();
    let got = h.cmd(&["HELLO", "3"]);
    assert!(
        got.starts_with(b"-NOAUTH HELLO must be called"),
        "{}",
        escape(&got)
    );
    assert_reply!(
        h.cmd(&["HELLO", "3", "AUTH", "default", "wrong"]),
        wrongpass
    );
    let got = h.cmd(&["HELLO", "3", "AUTH", "default", "secret"]);
    assert!(got.starts_with(b"%7\r\n"), "{}", escape(&got));
    assert_reply!(h.cmd(&["GET", "x"]), bulk("1"));
    assert_reply!(h.cmd(&["GET", "missing"]), b"_\r\n");

    // A new password applies to new connections on every shard; old ones stay authenticated.
    assert_reply!(
        c.cmd(&["CONFIG", "SET", "requirepass", "newpass"]),
        b"+OK\r\n"
    );
    for _ in 0..6 {
        let mut n = server.raw();
        assert_reply!(n.cmd(&["GET", "x"]), noauth);
        assert_reply!(n.cmd(&["AUTH", "secret"]), wrongpass);
        assert_reply!(n.cmd(&["AUTH", "newpass"]), b"+OK\r\n");
        assert_reply!(n.cmd(&["GET", "x"]), bulk("1"));
    }
    assert_reply!(c.cmd(&["GET", "x"]), bulk("1"));
}

#[test]
fn hello_before_auth_gives_redis_error_text() {
    let server = start_with_password("secret");
    let mut h = server.raw();
    assert_reply!(
        h.cmd(&["HELLO", "3"]),
        b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"
    );
    assert_reply!(
        h.cmd(&["GET", "x"]),
        b"-NOAUTH Authentication required.\r\n"
    );
}

#[test]
fn debug_sleep_and_digest() {
    let server = Server::start(&[]);
    let mut con = server.client();
    let () = q(&mut con, &["DEBUG", "SLEEP", "0"]);
    let () = q(&mut con, &["DEBUG", "SLEEP", "0.05"]);
    let empty: String = q(&mut con, &["DEBUG", "DIGEST"]);
    assert_eq!(empty, "0".repeat(40));

    let keys: Vec<String> = (0..40).map(|i| format!("dig:{i}")).collect();
    for k in &keys {
        let () = q(&mut con, &["SET", k, &format!("value of {k}")]);
    }
    let d1: String = q(&mut con, &["DEBUG", "DIGEST"]);
    assert_eq!(d1.len(), 40);
    assert_ne!(d1, empty);
    // Reads and rewriting the same value change nothing; every connection agrees.
    let _: Vec<Option<String>> = q(&mut con, &["MGET", "dig:1", "dig:2", "nope"]);
    let () = q(&mut con, &["SET", "dig:3", "value of dig:3"]);
    for _ in 0..4 {
        let mut other = server.client();
        assert_eq!(q::<String>(&mut other, &["DEBUG", "DIGEST"]), d1);
    }
    let () = q(&mut con, &["SET", "dig:3", "changed"]);
    let d2: String = q(&mut con, &["DEBUG", "DIGEST"]);
    assert_ne!(d2, d1);
    let () = q(&mut con, &["SET", "dig:3", "value of dig:3"]);
    assert_eq!(q::<String>(&mut con, &["DEBUG", "DIGEST"]), d1);
    // Another database's content counts too.
    let mut db2 = server.client();
    let () = q(&mut db2, &["SELECT", "2"]);
    let () = q(&mut db2, &["SET", "dig:0", "value of dig:0"]);
    assert_ne!(q::<String>(&mut con, &["DEBUG", "DIGEST"]), d1);
    let () = q(&mut db2, &["FLUSHDB"]);

    // The same data written in another order into another instance digests the same.
    let second = Server::start(&[]);
    let mut con2 = second.client();
    for k in keys.iter().rev() {
        let () = q(&mut con2, &["SET", k, &format!("value of {k}")]);
    }
    assert_eq!(q::<String>(&mut con2, &["DEBUG", "DIGEST"]), d1);
}

#[test]
fn maxclients_rejects_connections_beyond_the_limit() {
    let server = Server::start(&["--maxclients", "4"]);
    // The harness's own start-up probe may still count for a moment.
    let mut first = server.client();
    assert!(
        eventually(|| info_int(&mut first, "clients", "connected_clients") == 1),
        "a lone client is not alone"
    );
    let mut accepted = Vec::new();
    for i in 2..=4 {
        let mut c = server.raw();
        let got = c.cmd(&["PING"]);
        assert_reply!(
            got,
            b"+PONG\r\n",
            "connection {i} of maxclients 4: {}",
            escape(&got)
        );
        accepted.push(c);
    }
    for i in 5..=8 {
        let mut c = server.raw();
        let _ = c.send_checked(&encode(&["PING"]));
        c.set_read_timeout(SETTLE_DEADLINE);
        let got = c.read_until_closed();
        assert_reply!(
            got,
            b"-ERR max number of clients reached\r\n",
            "connection {i}: {}",
            escape(&got)
        );
    }
    assert_eq!(q::<String>(&mut first, &["PING"]), "PONG");
    for c in &mut accepted {
        assert_reply!(c.cmd(&["PING"]), b"+PONG\r\n");
    }
    // A freed place can be taken again.
    accepted.pop();
    assert!(
        eventually(|| info_int(&mut first, "clients", "connected_clients") == 3),
        "closed connection still counted"
    );
    let mut c = server.raw();
    assert_reply!(c.cmd(&["PING"]), b"+PONG\r\n");
}

// ---- The process: options, config file, port, signals (shardis's own binary). ----

/// A shardis process started by a test with exactly the given arguments, stopped on drop.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
    port_rx: mpsc::Receiver<u16>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardis"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shardis");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, port_rx) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (log, tx) = (log.clone(), tx.clone());
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { return };
                    if let Some(port) = parse_listening_port(&line) {
                        let _ = tx.send(port);
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Proc {
            child,
            log,
            port_rx,
        }
    }

    /// Starts shardis and waits until it listens; returns it and its port.
    fn start(args: &[&str]) -> (Proc, u16) {
        let mut p = Proc::spawn(args);
        let end = Instant::now() + EXIT_DEADLINE;
        while Instant::now() < end {
            if let Ok(port) = p.port_rx.recv_timeout(Duration::from_millis(100)) {
                return (p, port);
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("shardis {args:?} exited with {status}; log:\n{}", p.log());
            }
        }
        panic!("shardis {args:?} did not listen; log:\n{}", p.log());
    }

    /// Runs shardis to its exit; returns the status and everything it printed.
    fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
        let mut p = Proc::spawn(args);
        let status = p
            .wait_exit(EXIT_DEADLINE)
            .unwrap_or_else(|| panic!("shardis {args:?} still running; log:\n{}", p.log()));
        // The output threads finish at EOF, just after the exit.
        thread::sleep(Duration::from_millis(100));
        (status, p.log())
    }

    fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn connect(port: u16) -> Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    client
        .get_connection_with_timeout(Duration::from_secs(30))
        .unwrap()
}

/// A temporary file removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "shardis-test-{}-{nanos}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_taken_port_is_refused_with_a_message() {
    if use_redis_for_shardis() {
        return;
    }
    let first = Server::start(&[]);
    let port = first.port().to_string();
    let (status, log) = Proc::run_to_exit(&["--port", &port, "--shards", "2", "--save", ""]);
    assert!(
        !status.success(),
        "second shardis on {port}: {status}; log:\n{log}"
    );
    assert!(
        log.contains(&port),
        "message does not name port {port}:\n{log}"
    );
    // The first one is unharmed and still gets every connection.
    for _ in 0..6 {
        assert_reply!(first.raw().cmd(&["PING"]), b"+PONG\r\n");
    }

    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let (status, log) = Proc::run_to_exit(&["--port", &port, "--shards", "2", "--save", ""]);
    assert!(
        !status.success(),
        "shardis on a listener's port {port}: {status}; log:\n{log}"
    );
    assert!(
        log.contains(&port),
        "message does not name port {port}:\n{log}"
    );
}

#[test]
fn config_file_is_read_and_command_line_overrides_it() {
    if use_redis_for_shardis() {
        return;
    }
    let conf = TempFile::new(
        "redis.conf",
        "# a test configuration\nport 0\nshards 2\nhz 20\n\nmaxclients 123\nsave \"\"\nrequirepass \"\"\n",
    );
    let (_p, port) = Proc::start(&[conf.path()]);
    let mut con = connect(port);
    let got: HashMap<String, String> = q(
        &mut con,
        &["CONFIG", "GET", "maxclients", "hz", "shards", "save"],
    );
    assert_eq!(got["maxclients"], "123");
    assert_eq!(got["hz"], "20");
    assert_eq!(got["shards"], "2");
    assert_eq!(got["save"], "");
    assert_eq!(info_field(&mut con, "server", "config_file"), conf.path());

    let (_p, port) = Proc::start(&[conf.path(), "--maxclients", "77", "--hz", "50"]);
    let mut con = connect(port);
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "maxclients", "hz"]);
    assert_eq!(got["maxclients"], "77");
    assert_eq!(got["hz"], "50");
}

#[test]
fn a_bad_config_file_stops_start_up() {
    if use_redis_for_shardis() {
        return;
    }
    let conf = TempFile::new("bad.conf", "port 0\nshards 2\nno-such-option yes\n");
    let (status, log) = Proc::run_to_exit(&[conf.path()]);
    assert!(!status.success(), "{status}; log:\n{log}");
    assert!(log.contains("no-such-option"), "{log}");
    assert!(!log.contains("listening on"), "{log}");

    let conf = TempFile::new("badvalue.conf", "port 0\nshards 2\nhz fast\n");
    let (status, log) = Proc::run_to_exit(&[conf.path()]);
    assert!(!status.success(), "{status}; log:\n{log}");
    assert!(log.contains("hz"), "{log}");

    let (status, log) = Proc::run_to_exit(&["/nonexistent/dir/redis.conf"]);
    assert!(!status.success(), "{status}; log:\n{log}");
    assert!(log.contains("/nonexistent/dir/redis.conf"), "{log}");
}

#[test]
fn help_lists_the_options() {
    if use_redis_for_shardis() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--port",
        "--bind",
        "--shards",
        "--maxclients",
        "--requirepass",
        "--enable-debug-command",
        "--hz",
        "config-file",
    ] {
        assert!(text.contains(opt), "--help lacks {opt}:\n{text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn debug_is_refused_unless_enabled() {
    let want = b"-ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you can run it from a local connection, otherwise you need to set this option in the configuration file, and then restart the server.\r\n";
    let check = |port: u16| {
        let mut c = RawConn::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        let got = c.cmd(&["DEBUG", "DIGEST"]);
        assert_reply!(got, want, "got {}", escape(&got));
        assert_reply!(c.cmd(&["PING"]), b"+PONG\r\n");
    };
    if use_redis_for_shardis() {
        let r = common::RedisServer::start_with(&["--enable-debug-command", "no"]);
        check(r.port());
        return;
    }
    // The default is "no".
    let (_p, port) = Proc::start(&["--port", "0", "--shards", "2", "--save", ""]);
    check(port);
    let (_p, port) = Proc::start(&[
        "--port",
        "0",
        "--shards",
        "2",
        "--enable-debug-command",
        "no",
    ]);
    check(port);
}

#[test]
fn a_repeated_command_line_option_takes_the_last_value() {
    // The harness passes `--enable-debug-command yes`; this adds a second one.
    let server = Server::start(&["--enable-debug-command", "no", "--hz", "5", "--hz", "7"]);
    let mut c = server.raw();
    let got = c.cmd(&["DEBUG", "DIGEST"]);
    assert!(
        got.starts_with(b"-ERR DEBUG command not allowed."),
        "{}",
        escape(&got)
    );
    let mut con = server.client();
    let got: HashMap<String, String> = q(&mut con, &["CONFIG", "GET", "hz"]);
    assert_eq!(got["hz"], "7");
}

#[test]
fn sigterm_stops_the_server() {
    let mut server = Server::start(&[]);
    let mut idle: Vec<RawConn> = (0..4).map(|_| server.raw()).collect();
    for c in &mut idle {
        assert_reply!(c.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.pid() as libc::pid_t, libc::SIGTERM);
    }
    let status = server.wait_exit(common::STOP_GRACE);
    let log = server.log();
    let status = status.unwrap_or_else(|| panic!("still running after SIGTERM; log:\n{log}"));
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("SIGTERM"), "log:\n{log}");
    for c in &mut idle {
        assert_closed(c, "client of a stopped server");
    }
}

#[test]
fn sigterm_stops_a_server_whose_log_reader_is_gone() {
    if use_redis_for_shardis() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(["--port", "0", "--shards", "2", "--save", ""])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no listening line"
        );
    }
    drop(stderr);
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let end = Instant::now() + common::STOP_GRACE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= end {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let status = status.expect("still running after SIGTERM");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn shutdown_nosave_stops_the_server_and_closes_every_client() {
    let mut server = Server::start(&[]);
    let mut observer = server.client();
    let mut others = conns_on_every_shard(&server, &mut observer, 3);
    drop(observer);
    let mut c = server.raw();
    c.send(&encode(&["SHUTDOWN", "NOSAVE"]));
    assert_closed(&mut c, "the SHUTDOWN caller");
    let status = server.wait_exit(Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("still running; log:\n{}", server.log()));
    assert!(status.success(), "exit status {status}");
    for o in &mut others {
        assert_closed(o, "client of a stopped server");
    }
    assert!(
        std::net::TcpStream::connect(server.addr()).is_err(),
        "the port still accepts connections"
    );
}
