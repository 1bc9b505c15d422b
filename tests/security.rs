//! Security through the real binary: protected mode (more of issue 11 comes here).

mod common;

use common::Server;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connects to `port` on `ip` from a socket bound to `from`, sends PING and returns all it
/// reads until the server closes the connection or a reply has come and 300 ms passed.
fn ping_from(from: &str, ip: &str, port: u16) -> Vec<u8> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    let remote: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    sock.connect(&remote.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _ = s.write_all(b"*1\r\n$4\r\nPING\r\n");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// `protected-mode yes` (the default) without a password: clients from any address but
/// 127.0.0.1 get Redis's -DENIED text and are disconnected; loopback clients are served; with
/// a password, or protected mode off, outside clients connect.
#[test]
fn protected_mode_refuses_outside_clients_without_a_password() {
    let server = Server::start(&["--bind", "0.0.0.0"]);
    let port = server.port();
    let denied = ping_from("127.0.0.2", "127.0.0.2", port);
    assert!(
        denied.starts_with(b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user.")
            && denied.ends_with(b"to start accepting connections from the outside.\r\n"),
        "{}",
        String::from_utf8_lossy(&denied)
    );
    assert_eq!(ping_from("127.0.0.1", "127.0.0.1", port), b"+PONG\r\n");
    // From 127.0.0.3 to the loopback address: still not 127.0.0.1, still refused.
    assert!(ping_from("127.0.0.3", "127.0.0.1", port).starts_with(b"-DENIED"));
    let mut c = server.raw();
    assert!(String::from_utf8_lossy(&c.cmd(&["INFO", "stats"])).contains("rejected_connections:2"));
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "protected-mode", "no"]),
        b"+OK\r\n"
    );
    assert_eq!(ping_from("127.0.0.2", "127.0.0.2", port), b"+PONG\r\n");
    drop(server);

    let server = Server::start(&["--bind", "0.0.0.0", "--requirepass", "secret"]);
    let r = ping_from("127.0.0.2", "127.0.0.2", server.port());
    assert!(r.starts_with(b"-NOAUTH"), "{}", String::from_utf8_lossy(&r));
}

/// `timeout`: a client idle for longer is disconnected; subscribers and clients blocked in a
/// command are not, and an active client is served throughout.
#[test]
fn idle_clients_are_closed_after_timeout() {
    let server = Server::start(&["--timeout", "1"]);
    let mut idle = server.raw();
    assert_eq!(idle.cmd(&["PING"]), b"+PONG\r\n");
    let mut sub = server.raw();
    sub.cmd(&["SUBSCRIBE", "ch"]);
    let mut blocked = server.raw();
    blocked.send(&common::encode(&["BLPOP", "idle:list", "0"]));
    let mut active = server.raw();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    idle.set_read_timeout(Duration::from_millis(200));
    loop {
        assert_eq!(active.cmd(&["PING"]), b"+PONG\r\n");
        // A closed connection reads end-of-file (an error here); an open one times out.
        match idle.try_read_reply() {
            Err(e) if e.contains("closed") => break,
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idle client was not closed"
        );
    }
    // The subscriber and the blocked client are still there.
    let mut c = server.raw();
    assert_eq!(c.cmd(&["PUBLISH", "ch", "m"]), b":1\r\n");
    assert_eq!(
        sub.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nm\r\n"
    );
    assert_eq!(c.cmd(&["RPUSH", "idle:list", "x"]), b":1\r\n");
    assert_eq!(
        blocked.read_reply(),
        b"*2\r\n$9\r\nidle:list\r\n$1\r\nx\r\n"
    );
}

/// `client-output-buffer-limit normal`: a client that sends requests without reading the
/// replies is disconnected once its pending output passes the hard limit; others are served.
#[test]
fn a_client_that_does_not_read_is_cut_off_at_its_output_limit() {
    let server = Server::start(&["--client-output-buffer-limit", "normal 1mb 0 0"]);
    let mut c = server.raw();
    let big = "x".repeat(100_000);
    assert_eq!(c.cmd(&["SET", "big", &big]), b"+OK\r\n");
    let mut hog = server.raw();
    let mut batch = Vec::new();
    for _ in 0..400 {
        batch.extend(common::encode(&["GET", "big"]));
    }
    // The server stops reading this client's input once it is closed: the write may fail.
    let _ = hog.send_checked(&batch);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let list = String::from_utf8_lossy(&c.cmd(&["CLIENT", "LIST"])).into_owned();
        if list.lines().filter(|l| l.starts_with("id=")).count() == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client was not cut off:\n{list}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.cmd(&["GET", "big"]).len(), 100_000 + 11);
}

/// `client-query-buffer-limit`: a client whose unprocessed input passes it (here one huge
/// argument that never ends) is disconnected; others are served.
#[test]
fn a_client_over_its_query_buffer_limit_is_closed() {
    let server = Server::start(&["--client-query-buffer-limit", "1mb"]);
    let mut c = server.raw();
    let mut hog = server.raw();
    let _ = hog.send_checked(b"*2\r\n$3\r\nGET\r\n$100000000\r\n");
    let chunk = vec![b'x'; 64 * 1024];
    let mut closed = false;
    // Written until the server closes the connection (a write then fails).
    for _ in 0..400 {
        if hog.send_checked(&chunk).is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        hog.set_read_timeout(Duration::from_secs(10));
        let got = hog.read_until_closed();
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    }
    assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
}
