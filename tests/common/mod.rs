//! Shared helpers for the integration tests: start the real `shardis` binary (or a real
//! `redis-server` as the oracle) on an ephemeral port, talk to it through the `redis` crate or
//! through a raw socket, and read RESP replies byte-exactly.
//!
//! Guarantees: every server started here is stopped when its handle drops (SIGTERM, then SIGKILL
//! after a grace period), every wait has a generous deadline and panics with the server's log
//! instead of hanging, and a raw reply is exactly the bytes the server sent for one reply.
//!
//! Environment:
//! - `SHARDIS_TEST_USE_REDIS=1` makes `Server::start` launch a redis-server instead of shardis,
//!   so that the tests themselves can be checked against the reference implementation.

#![allow(dead_code)]

pub mod data;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a raw connection waits for a reply before giving up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// True when the tests should run against redis-server instead of shardis.
pub fn use_redis_for_shardis() -> bool {
    std::env::var("SHARDIS_TEST_USE_REDIS").is_ok_and(|v| v == "1")
}

/// A running server process on 127.0.0.1, stopped on drop.
pub struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    what: &'static str,
}

impl Server {
    /// Starts shardis with test defaults (`--port 0 --shards 2 --bind 127.0.0.1 --save ""
    /// --enable-debug-command yes`) plus `extra_args`, and waits until it listens.
    ///
    /// With `SHARDIS_TEST_USE_REDIS=1` this starts a redis-server instead; `--shards N` is then
    /// dropped from `extra_args`, everything else is passed through.
    pub fn start(extra_args: &[&str]) -> Server {
        if use_redis_for_shardis() {
            let mut extra = Vec::new();
            let mut i = 0;
            while i < extra_args.len() {
                if extra_args[i] == "--shards" {
                    i += 2;
                    continue;
                }
                extra.push(extra_args[i]);
                i += 1;
            }
            return RedisServer::start_with(&extra).0;
        }
        let bin = env!("CARGO_BIN_EXE_shardis");
        let mut args: Vec<&str> = vec![
            "--port",
            "0",
            "--shards",
            "2",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--enable-debug-command",
            "yes",
            // A replica's full sync starts at once (Redis's default waits 5 s for others).
            "--repl-diskless-sync-delay",
            "0",
        ];
        // Data files go to a fresh directory unless the test names one: a dump.rdb lying in
        // the working directory must not be loaded.
        let own_dir;
        if !extra_args.contains(&"--dir") {
            own_dir = fresh_dir("shardis-test");
            args.push("--dir");
            args.push(own_dir.to_str().unwrap_or("."));
        }
        args.extend_from_slice(extra_args);
        let mut child = Command::new(bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        drain(child.stdout.take().unwrap(), log.clone(), None);
        let (tx, rx) = std::sync::mpsc::channel();
        drain(child.stderr.take().unwrap(), log.clone(), Some(tx));
        let deadline = Instant::now() + START_DEADLINE;
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(port) => break port,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "shardis {args:?} exited with {status} before listening; log:\n{}",
                            log.lock().unwrap()
                        );
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "shardis {args:?} did not print `listening on` within {START_DEADLINE:?}; log:\n{}",
                            log.lock().unwrap()
                        );
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "shardis {args:?} closed stderr before listening ({status:?}); log:\n{}",
                        log.lock().unwrap()
                    );
                }
            }
        };
        Server {
            child,
            port,
            log,
            what: "shardis",
        }
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process id, e.g. to read its CPU time from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A synchronous `redis` crate connection.
    pub fn client(&self) -> redis::Connection {
        let client = redis::Client::open(format!("redis://{}/", self.addr())).unwrap();
        let con = client
            .get_connection_with_timeout(REPLY_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {} at {}: {e}", self.what, self.addr()));
        con.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        con.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        con
    }

    /// A raw socket connection.
    pub fn raw(&self) -> RawConn {
        RawConn::connect(self.addr())
    }

    /// True while the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `deadline` for the process to exit on its own (e.g. after SHUTDOWN).
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// Sends SIGTERM, waits up to `STOP_GRACE`, then kills.
fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let end = Instant::now() + STOP_GRACE;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Copies a child's output into `log` on a thread until EOF. With `port_tx`, sends the port of
/// the first `listening on <host>:<port>` line.
fn drain<R: Read + Send + 'static>(
    out: R,
    log: Arc<Mutex<String>>,
    port_tx: Option<std::sync::mpsc::Sender<u16>>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut port_tx = port_tx;
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            log.lock().unwrap().push_str(&text);
            if let Some(port) = port_tx.as_ref().and_then(|_| parse_listening_port(&text)) {
                let _ = port_tx.take().unwrap().send(port);
            }
        }
    });
}

/// A new empty directory under the system's temporary directory.
pub fn fresh_dir(what: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// The port in a line containing `listening on <host>:<port>`.
pub fn parse_listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let addr = rest.split_whitespace().next()?;
    let port = &addr[addr.rfind(':')? + 1..];
    let digits: String = port.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Runs shardis (2 shards, any port, no save points) with `extra` options, expecting it to stop
/// by itself (a start-up error): its exit status and everything it printed.
pub fn run_to_exit(extra: &[&str]) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(["--port", "0", "--shards", "2", "--save", ""])
        .args(extra)
        .output()
        .expect("running shardis");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, log)
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read the port, close).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A reference redis-server (the oracle), stopped on drop.
pub struct RedisServer(pub Server);

impl std::ops::Deref for RedisServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl std::ops::DerefMut for RedisServer {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.0
    }
}

impl RedisServer {
    /// Starts `redis-server --port <free> --save "" --appendonly no --enable-debug-command yes
    /// --daemonize no` and waits until PING answers. Panics with a hint if it is not installed.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// As `start`, with extra redis.conf options.
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        let mut last_log = String::new();
        // A port found free can be taken before redis-server binds it; try a few.
        for _ in 0..5 {
            let port = free_port();
            let port_s = port.to_string();
            let mut args = vec![
                "--port",
                &port_s,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
                "--daemonize",
                "no",
                "--logfile",
                "",
                "--repl-diskless-sync-delay",
                "0",
            ];
            let own_dir = fresh_dir("redis-test");
            let own_dir_s = own_dir.to_string_lossy().into_owned();
            if !extra_args.contains(&"--dir") {
                args.push("--dir");
                args.push(&own_dir_s);
            }
            args.extend_from_slice(extra_args);
            let mut child = match Command::new("redis-server")
                .args(&args)
                .current_dir(std::env::temp_dir())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
            {
                Ok(child) => child,
                Err(e) if e.kind() == ErrorKind::NotFound => panic!(
                    "redis-server is not installed (needed as the reference server); \
                     run scripts/install-deps.sh"
                ),
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            let log = Arc::new(Mutex::new(String::new()));
            drain(child.stdout.take().unwrap(), log.clone(), None);
            drain(child.stderr.take().unwrap(), log.clone(), None);
            let server = Server {
                child,
                port,
                log,
                what: "redis-server",
            };
            let mut server = RedisServer(server);
            if server.wait_ping() {
                return server;
            }
            last_log = server.log();
        }
        panic!("redis-server did not start; last log:\n{last_log}");
    }

    /// Polls PING until it answers `+PONG` from this very process (INFO's process_id is the
    /// child's pid: another server that took the port in between must never be mistaken for
    /// ours); false if the process exits or the deadline passes.
    fn wait_ping(&mut self) -> bool {
        let deadline = Instant::now() + START_DEADLINE;
        let want_pid = format!("process_id:{}\r\n", self.0.pid());
        while Instant::now() < deadline {
            if !self.0.is_running() {
                return false;
            }
            if let Ok(stream) = TcpStream::connect(self.0.addr()) {
                let mut raw = RawConn::from_stream(stream);
                let pong = raw.send_checked(b"PING\r\n").is_ok()
                    && raw.try_read_reply().ok().as_deref() == Some(b"+PONG\r\n");
                let ours = pong
                    && raw.send_checked(&encode(&["INFO", "server"])).is_ok()
                    && raw
                        .try_read_reply()
                        .is_ok_and(|info| String::from_utf8_lossy(&info).contains(&want_pid));
                if ours {
                    return true;
                }
                if pong {
                    // Someone else answers on this port: give up on it and pick another.
                    return false;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// Encodes a command as a RESP multibulk.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A raw TCP connection that reads whole RESP replies.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    /// Connects with `REPLY_TIMEOUT` as read timeout.
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        RawConn::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> RawConn {
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Changes how long reads wait.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }

    /// The underlying socket.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Writes all of `bytes`; panics on error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.send_checked(bytes)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    /// Writes all of `bytes`.
    pub fn send_checked(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a command (RESP-encoded) and returns its raw reply.
    pub fn cmd(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&encode(args));
        self.read_reply()
    }

    /// Sends a command with binary arguments and returns its raw reply.
    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode(args));
        self.read_reply()
    }

    /// Reads one reply; panics with what was buffered on timeout, EOF or malformed bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        self.try_read_reply()
            .unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    /// Reads one reply: out-of-band push frames (`>`) that precede it are included, so the
    /// result is everything the server sent up to and including the next non-push reply.
    pub fn try_read_reply(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        loop {
            let frame = self.try_read_frame()?;
            let push = frame.first() == Some(&b'>');
            out.extend_from_slice(&frame);
            if !push {
                return Ok(out);
            }
        }
    }

    /// Reads exactly one RESP frame (a push frame counts as one).
    pub fn try_read_frame(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match frame_end(&self.buf, 0) {
                Ok(Some(end)) => return Ok(self.buf.drain(..end).collect()),
                Ok(None) => {}
                Err(e) => return Err(format!("{e}; buffered: {}", escape(&self.buf))),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "connection closed; buffered: {}",
                        escape(&self.buf)
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{e}; buffered: {}", escape(&self.buf))),
            }
        }
    }

    /// Reads `n` replies.
    pub fn read_replies(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.read_reply()).collect()
    }

    /// Reads until the server closes the connection and returns what arrived (after anything
    /// already buffered). Panics if the connection is still open after the read timeout.
    pub fn read_until_closed(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A reset after the server closed with unread input still means closed.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
                Err(e) => panic!(
                    "connection not closed by the server ({e}); got: {}",
                    escape(&out)
                ),
            }
        }
    }
}

fn parse_line_int(body: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad length {:?}", String::from_utf8_lossy(body)))
}

/// The line starting at `pos` (without CRLF) and the position after its CRLF.
fn line_at(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, String> {
    let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let nl = pos + nl;
    if nl == pos || buf[nl - 1] != b'\r' {
        return Err(format!("line without CRLF at offset {pos}"));
    }
    Ok(Some((&buf[pos..nl - 1], nl + 1)))
}

/// Where the RESP frame that starts at `pos` ends: `Ok(Some(end))` when it is complete,
/// `Ok(None)` when more bytes are needed. Covers every RESP2 and RESP3 type, including
/// streamed strings and aggregates; an attribute (`|`) is one frame with the reply after it.
pub fn frame_end(buf: &[u8], pos: usize) -> Result<Option<usize>, String> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let Some((line, next)) = line_at(buf, pos)? else {
        return Ok(None);
    };
    if line.is_empty() {
        return Err(format!("empty line at offset {pos}"));
    }
    let (kind, body) = (line[0], &line[1..]);
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(next)),
        b'$' | b'!' | b'=' if body == b"?" => streamed_string_end(buf, next),
        b'$' | b'!' | b'=' => {
            let n = parse_line_int(body)?;
            if n < 0 {
                return Ok(Some(next));
            }
            let end = next + n as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(format!(
                    "bulk of length {n} not followed by CRLF at offset {pos}"
                ));
            }
            Ok(Some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let mut p = next;
            if body == b"?" {
                // Streamed aggregate: elements until `.\r\n`.
                loop {
                    if buf.len() >= p + 3 && &buf[p..p + 3] == b".\r\n" {
                        return Ok(Some(p + 3));
                    }
                    match frame_end(buf, p)? {
                        Some(e) => p = e,
                        None => return Ok(None),
                    }
                }
            }
            let n = parse_line_int(body)?;
            let count = if n < 0 {
                0
            } else if kind == b'%' || kind == b'|' {
                2 * n
            } else {
                n
            };
            for _ in 0..count {
                match frame_end(buf, p)? {
                    Some(e) => p = e,
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute decorates the reply that follows it.
                return frame_end(buf, p);
            }
            Ok(Some(p))
        }
        other => Err(format!(
            "unknown RESP type byte {:?} at offset {pos}",
            other as char
        )),
    }
}

/// End of a streamed string's `;len` chunks, which end with `;0`.
fn streamed_string_end(buf: &[u8], mut p: usize) -> Result<Option<usize>, String> {
    loop {
        let Some((line, next)) = line_at(buf, p)? else {
            return Ok(None);
        };
        if line.first() != Some(&b';') {
            return Err(format!("expected a ;chunk at offset {p}"));
        }
        let n = parse_line_int(&line[1..])?;
        if n == 0 {
            return Ok(Some(next));
        }
        let end = next + n as usize + 2;
        if buf.len() < end {
            return Ok(None);
        }
        p = end;
    }
}

/// A complete frame split into its header line (with CRLF) and its top-level elements (each a
/// complete frame). Non-aggregates have no elements.
pub fn split_aggregate(frame: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (_, mut p) = line_at(frame, 0).unwrap().unwrap();
    let header = frame[..p].to_vec();
    let mut elems = Vec::new();
    if matches!(frame[0], b'*' | b'~' | b'>' | b'%') {
        while p < frame.len() {
            let e = frame_end(frame, p).unwrap().expect("a complete frame");
            elems.push(frame[p..e].to_vec());
            p = e;
        }
    }
    (header, elems)
}

/// Escapes bytes for messages: printable ASCII as is, CR/LF as `\r\n`, others as `\xHH`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// Splits a line into arguments as redis-cli does (Redis's `sdssplitargs`): whitespace
/// separates, `"…"` takes `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a` and `\<char>` escapes, `'…'`
/// takes only `\'`, and a closing quote must be followed by whitespace or the end.
pub fn split_args(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let s = line.as_bytes();
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < s.len() && s[p].is_ascii_whitespace() {
            p += 1;
        }
        if p >= s.len() {
            return Ok(args);
        }
        let mut cur = Vec::new();
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            if in_dq {
                if p >= s.len() {
                    return Err("unbalanced double quotes".into());
                }
                let hex = |i: usize| s.get(i).filter(|c| c.is_ascii_hexdigit()).is_some();
                if s[p] == b'\\' && s.get(p + 1) == Some(&b'x') && hex(p + 2) && hex(p + 3) {
                    let h = std::str::from_utf8(&s[p + 2..p + 4]).unwrap();
                    cur.push(u8::from_str_radix(h, 16).unwrap());
                    p += 4;
                    continue;
                }
                if s[p] == b'\\' && p + 1 < s.len() {
                    cur.push(match s[p + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        c => c,
                    });
                    p += 2;
                    continue;
                }
                if s[p] == b'"' {
                    if p + 1 < s.len() && !s[p + 1].is_ascii_whitespace() {
                        return Err("closing quote must be followed by a space".into());
                    }
                    p += 1;
                    break;
                }
                cur.push(s[p]);
                p += 1;
            } else if in_sq {
                if p >= s.len() {
                    return Err("unbalanced single quotes".into());
                }
                if s[p] == b'\\' && s.get(p + 1) == Some(&b'\'') {
                    cur.push(b'\'');
                    p += 2;
                    continue;
                }
                if s[p] == b'\'' {
                    if p + 1 < s.len() && !s[p + 1].is_ascii_whitespace() {
                        return Err("closing quote must be followed by a space".into());
                    }
                    p += 1;
                    break;
                }
                cur.push(s[p]);
                p += 1;
            } else {
                if p >= s.len() {
                    break;
                }
                match s[p] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
                p += 1;
            }
        }
        args.push(cur);
    }
}

/// The hash slot of a key, honouring a non-empty `{hashtag}` (the engine's own rule).
pub fn key_slot(key: &[u8]) -> u16 {
    shards::slot::key_slot(key).0
}

/// The shard that owns `key` in a shardis with `shards` shards (`slot mod shards`).
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    key_slot(key) as usize % shards
}

/// Runs a command through the `redis` crate; panics with the command and the error.
pub fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    try_q(con, args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs a command through the `redis` crate.
pub fn try_q<T: redis::FromRedisValue>(
    con: &mut redis::Connection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con)
}

/// A key named `prefix<n>` whose slot lives on `shard` of a 2-shard server.
pub fn key_on(shard: usize, prefix: &str) -> String {
    (0..1000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| shard_of(k.as_bytes(), 2) == shard)
        .expect("a key on each shard")
}

/// Waits until `n` clients are blocked in `cmd` (polls CLIENT LIST for `flags=b` lines: parked
/// on the key's shard, in that command); panics after 10 s.
pub fn wait_blocked(ctl: &mut RawConn, cmd: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = String::from_utf8_lossy(&ctl.cmd(&["CLIENT", "LIST"])).into_owned();
        let blocked = list
            .lines()
            .filter(|l| l.contains(" flags=b ") && l.contains(&format!(" cmd={cmd} ")))
            .count();
        if blocked >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {blocked} of {n} clients blocked: {list}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
