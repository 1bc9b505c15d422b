//! Keyspace notifications against the real thing: one script of commands (every write command
//! of the registry, and every read command with keys, for `keymiss`) runs on
//! redis-server 7.0 (which publishes its events to a subscriber) and on a `Shard` (which
//! records them in `Shard::events`), and the two event sequences must be equal, command by
//! command. The script runs once per class setting, so the classes are checked too.
//!
//! Skipped, with a message, where redis-server is not installed. The server runs on port 7396
//! with `--save ""`; its active expiry is off, so keys expire only when the script looks.

use shards::cmd::{flag, lookup, registry};
use shards::resp::Proto;
use shards::shard::{parse_flags, Shard};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PORT: u16 = 7396;

/// The script, one command a line, arguments split on spaces; an argument `0x…` is given in
/// hex. `SLEEP ms` waits (both sides); `SELECT n` switches database (both sides).
/// Every write command of the registry has a case here (checked below).
const SCRIPT: &str = include_str!("notify_script.txt");

/// Write commands the script does not run, and why.
const NOT_IN_SCRIPT: &[(&str, &str)] = &[
    (
        "migrate",
        "the server runs it (it talks to another server): tests/cluster.rs",
    ),
    // RediSearch's: the redis-server compared against has no search module.
    ("ft.create", "tests/search.rs"),
    ("ft.alter", "tests/search.rs"),
    ("ft.dropindex", "tests/search.rs"),
    ("ft.drop", "tests/search.rs"),
];

#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 {
        return Err(std::io::Error::other("short line"));
    }
    let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    Ok(match line[0] {
        b'+' | b'-' => Reply::Simple(body),
        b':' => Reply::Int(body.parse().unwrap()),
        b'$' => {
            let n: i64 = body.parse().unwrap();
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        }
        b'*' => {
            let n: i64 = body.parse().unwrap();
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Reply::Array(items)
        }
        other => panic!("unexpected reply type {}", other as char),
    })
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn connect() -> BufReader<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", PORT)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return BufReader::new(s);
            }
            Err(e) if Instant::now() > deadline => panic!("redis-server did not start: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A redis-server of our own, killed when dropped.
struct Server {
    child: Child,
    conn: BufReader<TcpStream>,
    sub: BufReader<TcpStream>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let child = Command::new("redis-server")
            .args(["--port", &PORT.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
            ])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .args(["--dbfilename", "shardis-notify-unused.rdb"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let conn = connect();
        let mut sub = connect();
        sub.get_mut()
            .write_all(&encode(&[b"PSUBSCRIBE", b"__keyevent@*__:*"]))
            .unwrap();
        read_reply(&mut sub).unwrap();
        sub.get_mut()
            .write_all(&encode(&[b"SUBSCRIBE", b"__sync__"]))
            .unwrap();
        read_reply(&mut sub).unwrap();
        let mut s = Server { child, conn, sub };
        // Keys expire only when the script looks, on both sides.
        let r = s.call(&[b"DEBUG", b"SET-ACTIVE-EXPIRE", b"0"]);
        assert_eq!(r, Reply::Simple("OK".into()), "active expiry must be off");
        s
    }

    fn call(&mut self, args: &[&[u8]]) -> Reply {
        self.conn.get_mut().write_all(&encode(args)).unwrap();
        read_reply(&mut self.conn).unwrap()
    }

    /// The events published since the last call, up to a marker published now.
    fn events(&mut self) -> Vec<(usize, String, Vec<u8>)> {
        self.call(&[b"PUBLISH", b"__sync__", b"x"]);
        let mut events = Vec::new();
        loop {
            let Reply::Array(m) = read_reply(&mut self.sub).unwrap() else {
                panic!("not a push")
            };
            match &m[..] {
                [Reply::Bulk(Some(kind)), ..] if kind == b"message" => return events,
                [_, _, Reply::Bulk(Some(ch)), Reply::Bulk(Some(key))] => {
                    let ch = String::from_utf8_lossy(ch);
                    let rest = ch.strip_prefix("__keyevent@").unwrap();
                    let (db, event) = rest.split_once("__:").unwrap();
                    events.push((db.parse().unwrap(), event.to_string(), key.clone()));
                }
                other => panic!("unexpected message {other:?}"),
            }
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn steps() -> Vec<Vec<Vec<u8>>> {
    SCRIPT
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(' ').map(arg).collect())
        .collect()
}

fn arg(word: &str) -> Vec<u8> {
    match word.strip_prefix("0x") {
        Some(hex) => (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect(),
        None => word.as_bytes().to_vec(),
    }
}

fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Runs the script on both sides with `flags` set, comparing the events after each command.
fn run_script(server: &mut Server, flags: &str) -> Vec<String> {
    let config = [b"CONFIG".as_slice(), b"SET", b"notify-keyspace-events"];
    server.call(&[config[0], config[1], config[2], flags.as_bytes()]);
    server.call(&[b"FLUSHALL"]);
    server.call(&[b"SELECT", b"0"]);
    server.events();
    let mut shard = Shard::new(0, 1, 1);
    shard.notify_flags = parse_flags(flags).unwrap();
    let mut db = 0;
    let mut failures = Vec::new();
    for (i, step) in steps().into_iter().enumerate() {
        let argv: Vec<&[u8]> = step.iter().map(|s| s.as_slice()).collect();
        let name = text(&step[0]).to_ascii_uppercase();
        if name == "SLEEP" {
            std::thread::sleep(Duration::from_millis(text(&step[1]).parse().unwrap()));
            continue;
        }
        let expected_reply = server.call(&argv);
        let expected = server.events();
        if name == "SELECT" {
            db = text(&step[1]).parse().unwrap();
            continue;
        }
        let mut out = Vec::new();
        match lookup(&argv) {
            Ok(l) => {
                shard.execute_reply(l, &argv, db, now_us(), Proto::Resp2, &mut out);
            }
            Err(e) => out = e.text().into_bytes(),
        }
        let got: Vec<(usize, String, Vec<u8>)> = shard
            .events
            .drain(..)
            .map(|e| (e.db, e.event.to_string(), e.key))
            .collect();
        if got != expected {
            failures.push(format!(
                "[{flags}] line {i} `{}`: redis {:?} (reply {:?}), shard {:?} (reply {:?})",
                step.iter().map(|a| text(a)).collect::<Vec<_>>().join(" "),
                show(&expected),
                expected_reply,
                show(&got),
                String::from_utf8_lossy(&out),
            ));
        }
    }
    failures
}

fn show(events: &[(usize, String, Vec<u8>)]) -> Vec<String> {
    events
        .iter()
        .map(|(db, e, k)| format!("{db}:{e}:{}", String::from_utf8_lossy(k)))
        .collect()
}

#[test]
fn events_match_redis() {
    if Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("skipped: redis-server is not installed");
        return;
    }
    let mut server = Server::start();
    let mut failures = Vec::new();
    // All classes at once, then one class at a time (the keyevent channel does not name the
    // class; a run with only that class shows which events belong to it).
    for flags in [
        "KEA", "Eg", "E$", "El", "Es", "Eh", "Ez", "Ex", "En", "Em", "KEAnm",
    ] {
        failures.extend(run_script(&mut server, flags));
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_write_command_is_in_the_script() {
    let scripted: std::collections::HashSet<String> = steps()
        .iter()
        .map(|s| text(&s[0]).to_ascii_lowercase())
        .collect();
    let missing: Vec<&str> = registry::all()
        .filter(|c| c.flags & flag::WRITE != 0)
        .map(|c| c.name)
        .filter(|n| !scripted.contains(*n) && !NOT_IN_SCRIPT.iter().any(|(m, _)| m == n))
        .collect();
    assert!(
        missing.is_empty(),
        "write commands not in the script: {missing:?}"
    );
}

/// Read commands fire `keymiss` on a missing key (Redis's `lookupKeyRead`), so each read
/// command with keys has a case too.
#[test]
fn every_read_command_with_keys_is_in_the_script() {
    let scripted: std::collections::HashSet<String> = steps()
        .iter()
        .map(|s| text(&s[0]).to_ascii_lowercase())
        .collect();
    let missing: Vec<&str> = registry::all()
        .filter(|c| c.flags & flag::READONLY != 0 && !c.keys.is_empty())
        .map(|c| c.name)
        .filter(|n| !scripted.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "read commands not in the script: {missing:?}"
    );
}
