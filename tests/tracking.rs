//! Client-side caching (CLIENT TRACKING) through the real binary, 2 shards, with clients on
//! both shards: the same multi-client scenarios run against shardis and redis-server and what
//! every connection receives must match, plus checks only shardis can answer (keys on both
//! shards in one broadcast, the table limit, INFO).

mod common;

use common::{encode, escape, key_on, split_args, RawConn, RedisServer, Server};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Named connections to one server, each with its client id learnt at connect.
struct Clients {
    addr: std::net::SocketAddr,
    conns: BTreeMap<String, (RawConn, u64)>,
}

impl Clients {
    fn new(addr: std::net::SocketAddr) -> Clients {
        Clients {
            addr,
            conns: BTreeMap::new(),
        }
    }

    fn conn(&mut self, name: &str) -> &mut (RawConn, u64) {
        if !self.conns.contains_key(name) {
            let mut c = RawConn::connect(self.addr);
            let r = c.cmd(&["CLIENT", "ID"]);
            let id = String::from_utf8_lossy(&r[1..r.len() - 2])
                .parse()
                .expect("client id");
            self.conns.insert(name.to_string(), (c, id));
        }
        self.conns.get_mut(name).expect("just made")
    }

    /// `{id:x}` in a command becomes connection x's client id.
    fn expand(&mut self, line: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(at) = rest.find("{id:") {
            out.push_str(&rest[..at]);
            let end = rest[at..].find('}').expect("closing brace") + at;
            let name = &rest[at + 4..end];
            let id = self.conn(name).1;
            out.push_str(&id.to_string());
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Client ids in received bytes (HELLO's `id`, a redirect, a broken redirect's push, a
    /// GETREDIR reply) shown as `<id name>`, so both servers' transcripts agree.
    fn normalize(&self, cmd: &str, bytes: &[u8]) -> String {
        let mut s = escape(bytes);
        for (name, (_, id)) in &self.conns {
            for label in ["id", "redirect", "tracking-redir-broken"] {
                s = s.replace(
                    &format!("{label}\\r\\n:{id}\\r\\n"),
                    &format!("{label}\\r\\n:<id {name}>\\r\\n"),
                );
            }
            if cmd.eq_ignore_ascii_case("CLIENT GETREDIR") && s == format!(":{id}\\r\\n") {
                s = format!(":<id {name}>\\r\\n");
            }
        }
        s
    }

    /// Frames a connection has received: with `reply`, at least up to the reply of the
    /// command it just sent; then whatever else is already there. Replies in order, pushes
    /// sorted (messages from different shards may come in any order).
    fn drain(&mut self, name: &str, reply: bool) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let c = &mut self.conns.get_mut(name).expect("known").0;
        let (mut replies, mut pushes) = (Vec::new(), Vec::new());
        let mut waiting = reply;
        loop {
            c.set_read_timeout(if waiting {
                Duration::from_secs(10)
            } else {
                Duration::from_millis(2)
            });
            let Ok(f) = c.try_read_frame() else {
                break;
            };
            if f.first() == Some(&b'>') || f.starts_with(b"*3\r\n$7\r\nmessage\r\n") {
                pushes.push(f);
            } else {
                replies.push(f);
                waiting = false;
            }
        }
        c.set_read_timeout(Duration::from_secs(10));
        pushes.sort();
        (replies, pushes)
    }
}

/// Runs a scenario (`<conn> <command>` per line, `#` comments) and returns the transcript: per
/// step, what each connection received.
fn transcript(addr: std::net::SocketAddr, script: &str, settle: Duration) -> Vec<String> {
    let mut cl = Clients::new(addr);
    let mut out = Vec::new();
    for line in script.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (who, cmd) = line.split_once(' ').expect("<conn> <command>");
        if let Some(ms) = cmd.strip_prefix("SLEEP ") {
            std::thread::sleep(Duration::from_millis(ms.parse().expect("ms")));
            continue;
        }
        let cmd = cl.expand(cmd);
        let args = split_args(&cmd).expect("command line");
        cl.conn(who).0.send(&encode(&args));
        let quit = cmd.eq_ignore_ascii_case("QUIT");
        let mut got = BTreeMap::new();
        got.insert(who.to_string(), cl.drain(who, true));
        // Messages to other connections (across shards, in shardis) have this long to come.
        std::thread::sleep(settle);
        let names: Vec<String> = cl.conns.keys().cloned().collect();
        for name in names {
            let (mut replies, mut pushes) = got.remove(&name).unwrap_or_default();
            if !(quit && name == who) {
                let (r, p) = cl.drain(&name, false);
                replies.extend(r);
                pushes.extend(p);
                pushes.sort();
            }
            if replies.is_empty() && pushes.is_empty() {
                continue;
            }
            let shown: Vec<String> = replies
                .iter()
                .chain(pushes.iter())
                .map(|f| cl.normalize(&cmd, f))
                .collect();
            out.push(format!("{line}  =>  {name}: {}", shown.join(" | ")));
        }
    }
    out
}

fn compare(script: &str) {
    let shardis = Server::start(&[]);
    let redis = RedisServer::start();
    let mine = transcript(shardis.addr(), script, Duration::from_millis(20));
    let theirs = transcript(redis.addr(), script, Duration::from_millis(5));
    let mut diffs = Vec::new();
    for i in 0..mine.len().max(theirs.len()) {
        let (a, b) = (mine.get(i), theirs.get(i));
        if a != b {
            diffs.push(format!(
                "step {i}:\n  shardis: {}\n  redis:   {}",
                a.map_or("(nothing)", |s| s.as_str()),
                b.map_or("(nothing)", |s| s.as_str())
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs[..diffs.len().min(8)].join("\n")
    );
}

#[test]
fn one_connection_matches_redis() {
    // Keys on both shards; the client's own invalidations follow its replies.
    let (k0, k1) = (key_on(0, "k"), key_on(1, "k"));
    let script = format!(
        "
a HELLO 3
a CLIENT TRACKING ON
a GET {k0}
a GET {k1}
a SET {k0} v
a SET {k1} v
a MGET {k0} {k1} missing
a MSET {k0} 1 {k1} 2
a CLIENT TRACKINGINFO
a CLIENT GETREDIR
# A script remembers its declared keys when it read something.
a EVAL \"redis.call('get', KEYS[1]) return 1\" 1 {k1}
a SET {k1} 3
a EVAL \"redis.call('set', KEYS[1], 1) return 1\" 1 {k0}
a SET {k0} 3
# A transaction's reads are remembered.
a MULTI
a GET {k0}
a EXEC
a DEL {k0}
a DEL {k0}
# Expired keys invalidate.
a SET e 1 PX 100
a GET e
a SLEEP 400
a PING
a FLUSHALL
a CLIENT TRACKING ON NOLOOP
a GET {k1}
a SET {k1} 1
a CLIENT TRACKING OFF
a CLIENT TRACKINGINFO
a CLIENT GETREDIR
# OPTIN / OPTOUT and CLIENT CACHING.
a CLIENT TRACKING ON OPTIN
a GET {k0}
a SET {k0} 1
a CLIENT CACHING yes
a CLIENT TRACKINGINFO
a GET {k0}
a GET {k1}
a SET {k0} 2
a SET {k1} 2
a CLIENT CACHING yes
a MULTI
a GET {k1}
a EXEC
a SET {k1} 3
a CLIENT CACHING no
a CLIENT TRACKING ON OPTOUT
a CLIENT TRACKING OFF
a CLIENT TRACKING ON OPTOUT
a CLIENT CACHING no
a GET {k0}
a GET {k1}
a SET {k0} 3
a SET {k1} 4
a CLIENT TRACKING OFF
# Errors, in Redis's order.
a CLIENT CACHING yes
a CLIENT CACHING maybe
a CLIENT TRACKING maybe
a CLIENT TRACKING ON foo
a CLIENT TRACKING ON REDIRECT
a CLIENT TRACKING ON REDIRECT abc
a CLIENT TRACKING ON REDIRECT 0
a CLIENT TRACKING ON REDIRECT 999999
a CLIENT TRACKING ON PREFIX a
a CLIENT TRACKING ON BCAST OPTIN
a CLIENT TRACKING ON OPTIN OPTOUT
a CLIENT TRACKING ON BCAST PREFIX a PREFIX ab
a CLIENT TRACKING ON BCAST PREFIX a
a CLIENT TRACKING ON BCAST PREFIX a
a CLIENT TRACKING ON BCAST PREFIX abc
a CLIENT TRACKING ON
a CLIENT TRACKING ON BCAST
a CLIENT TRACKINGINFO
a CLIENT TRACKING ON BCAST PREFIX b
a CLIENT CACHING yes
"
    );
    compare(&script);
}

#[test]
fn several_connections_match_redis() {
    let (k0, k1) = (key_on(0, "k"), key_on(1, "k"));
    let (x0, x1) = (key_on(0, "x"), key_on(1, "x"));
    // Six connections: whatever the shards accept them on, some pairs sit on different shards.
    let script = format!(
        "
b SUBSCRIBE foo
a CLIENT TRACKING ON REDIRECT {{id:b}}
a CLIENT GETREDIR
a GET {k0}
a GET {k1}
c SET {k0} 1
c SET {k1} 1
a CLIENT TRACKING ON BCAST PREFIX x REDIRECT {{id:b}}
a CLIENT TRACKING OFF
a CLIENT TRACKING ON BCAST PREFIX x REDIRECT {{id:b}}
c SET {x0} 1
c SET {x1} 1
c SET y 1
c MSET x{{t}}1 1 x{{t}}2 2 y{{t}} 3
a FLUSHALL
a CLIENT TRACKINGINFO
b QUIT
c SET {x0} 2
a PING
a CLIENT TRACKINGINFO
a HELLO 3
c SET {x1} 3
a PING
a CLIENT TRACKING OFF
d HELLO 3
e HELLO 3
d CLIENT TRACKING ON REDIRECT {{id:e}}
d GET {k0}
d GET {k1}
c SET {k0} 2
c SET {k1} 2
d CLIENT TRACKING OFF
d CLIENT TRACKING ON NOLOOP BCAST
d SET {x0} 1
c SET {x1} 1
d MSET n{{t}}3 1 n{{t}}4 1
c FLUSHDB
d CLIENT TRACKING OFF
# A RESP2 client without a redirect hears nothing, and the key stays remembered.
f CLIENT TRACKING ON
f GET {k1}
g SET {k1} 5
f GET {k1}
g DEL {k1}
g DEL {k1}
# Readers on both shards, one writer.
h HELLO 3
i HELLO 3
h CLIENT TRACKING ON
i CLIENT TRACKING ON
h GET {k0}
i GET {k0}
h GET {k1}
g MSET {k0} a {k1} b
g SET {k0} c
h CLIENT TRACKING OFF
i QUIT
g SET {k0} d
"
    );
    compare(&script);
}

fn pushes(c: &mut RawConn, wait: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        c.set_read_timeout(Duration::from_millis(50));
        match c.try_read_frame() {
            Ok(f) => out.push(f),
            Err(_) => continue,
        }
    }
    c.set_read_timeout(Duration::from_secs(10));
    out
}

fn info_field(c: &mut RawConn, section: &str, name: &str) -> i64 {
    let info = String::from_utf8_lossy(&c.cmd(&["INFO", section])).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {info}"))
}

#[test]
fn broadcast_hears_keys_from_both_shards() {
    let server = Server::start(&[]);
    let mut reader = server.raw();
    reader.cmd(&["HELLO", "3"]);
    assert_eq!(
        reader.cmd(&["CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "user:"]),
        b"+OK\r\n"
    );
    let keys: Vec<String> = (0..20).map(|i| format!("user:{i}")).collect();
    let mut writer = server.raw();
    let mut mset = vec!["MSET"];
    for k in &keys {
        mset.push(k);
        mset.push("v");
    }
    mset.extend(["other", "v"]);
    assert_eq!(writer.cmd(&mset), b"+OK\r\n");
    // One message per shard that owns some of the keys; together they name every key once.
    let mut heard: Vec<String> = Vec::new();
    for f in pushes(&mut reader, Duration::from_millis(500)) {
        let s = String::from_utf8_lossy(&f).into_owned();
        assert!(s.starts_with(">2\r\n$10\r\ninvalidate\r\n*"), "{s}");
        heard.extend(
            s.split("\r\n")
                .filter(|p| p.starts_with("user:") || *p == "other")
                .map(String::from),
        );
    }
    heard.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(heard, want);
    assert_eq!(
        info_field(&mut writer, "stats", "tracking_total_prefixes"),
        1
    );
    assert_eq!(info_field(&mut writer, "clients", "tracking_clients"), 1);
    let info = String::from_utf8_lossy(&reader.cmd(&["CLIENT", "INFO"])).into_owned();
    assert!(info.contains(" flags=tB "), "{info}");
    // Closing the reader drops its prefixes everywhere.
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(5);
    while info_field(&mut writer, "clients", "tracking_clients") != 0 {
        assert!(Instant::now() < deadline, "tracking client not dropped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        info_field(&mut writer, "stats", "tracking_total_prefixes"),
        0
    );
}

#[test]
fn the_table_is_bounded_and_counted() {
    let server = Server::start(&[]);
    let mut reader = server.raw();
    reader.cmd(&["HELLO", "3"]);
    reader.cmd(&["CLIENT", "TRACKING", "ON"]);
    for i in 0..50 {
        reader.cmd(&["GET", &format!("t{i}")]);
    }
    let mut admin = server.raw();
    assert_eq!(info_field(&mut admin, "stats", "tracking_total_keys"), 50);
    assert_eq!(info_field(&mut admin, "stats", "tracking_total_items"), 50);
    // A smaller table: further reads push keys out, each with an invalidation.
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "tracking-table-max-keys", "10"]),
        b"+OK\r\n"
    );
    let mut seen = 0;
    for i in 50..60 {
        let r = reader.cmd(&["GET", &format!("t{i}")]);
        seen += String::from_utf8_lossy(&r).matches("invalidate").count();
    }
    seen += pushes(&mut reader, Duration::from_millis(300)).len();
    let keys = info_field(&mut admin, "stats", "tracking_total_keys");
    assert!(keys <= 10, "{keys} keys remembered");
    assert!(seen >= 50, "only {seen} invalidations");
    // The server goes on, and reads are remembered again under the new limit.
    assert_eq!(admin.cmd(&["PING"]), b"+PONG\r\n");
}
