//! TLS on client connections (issue 11), through the real binary: redis-cli --tls, redis-py with
//! ssl, and a rustls client for byte-level checks. Every test makes its own CA, a server
//! certificate for 127.0.0.1/localhost and a client certificate signed by the CA (rcgen), in a
//! fresh directory.
//!
//! With `SHARDIS_TEST_USE_REDIS=1` (redis-server as the oracle) the tests run against Redis
//! too, except what differs on purpose or cannot be started that way: the TLS-only check
//! (the harness gives redis-server a plain port), CONFIG SET `tls-port` (Redis can change it
//! at run time), `tls-ca-cert-dir` (OpenSSL wants c_rehash'd file names; shardis reads
//! every PEM file), and AUTH (the harness cannot start a redis-server with a password).

mod common;

use common::{encode, escape, frame_end, free_port, fresh_dir, use_redis_for_shardis, Server};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA, a server certificate and a client certificate, as PEM files and as DER.
struct Certs {
    dir: PathBuf,
    ca_der: CertificateDer<'static>,
    client_der: CertificateDer<'static>,
    client_key_der: Vec<u8>,
}

impl Certs {
    fn new() -> Certs {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let dir = fresh_dir("shardis-tls");
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "shardis test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
        write("ca.crt", ca_cert.pem());

        let server_cert = |name: &str| {
            let mut p =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                    .unwrap();
            p.distinguished_name.push(DnType::CommonName, "localhost");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
            write(&format!("{name}.crt"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        };
        server_cert("server");
        server_cert("server2");

        let mut c = CertificateParams::new(vec!["client".to_string()]).unwrap();
        c.distinguished_name.push(DnType::CommonName, "client");
        c.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().unwrap();
        let client = c.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
        write("client.crt", client.pem());
        write("client.key", client_key.serialize_pem());
        Certs {
            ca_der: ca_cert.der().clone(),
            client_der: client.der().clone(),
            client_key_der: client_key.serialize_der(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// The options for a server with these certificates on `tls_port`.
    fn server_args(&self, tls_port: u16) -> Vec<String> {
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            self.path("server.crt"),
            "--tls-key-file".into(),
            self.path("server.key"),
            "--tls-ca-cert-file".into(),
            self.path("ca.crt"),
        ]
    }
}

/// Starts shardis (2 shards) with TLS on a free port plus `extra`; returns it and the TLS
/// port. Without `--port` in `extra` only TLS is served (port 0, as in Redis).
fn start(certs: &Certs, extra: &[&str]) -> (Server, u16) {
    let tls_port = free_port();
    let mut args = certs.server_args(tls_port);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start(&args), tls_port)
}

/// True when redis-cli is installed (scripts/install-deps.sh); says so loudly when not.
fn have_redis_cli() -> bool {
    let ok = Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: no redis-cli (run scripts/install-deps.sh)");
    }
    ok
}

/// Runs `redis-cli --tls` against `port` (with the client certificate if `cert`), returning
/// its exit status and its output (stdout then stderr).
fn cli(certs: &Certs, port: u16, cert: bool, args: &[&str]) -> (bool, String) {
    cli_stdin(certs, port, cert, args, None)
}

fn cli_stdin(
    certs: &Certs,
    port: u16,
    cert: bool,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (bool, String) {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls"])
        .args(["--cacert", &certs.path("ca.crt")]);
    if cert {
        cmd.args(["--cert", &certs.path("client.crt")])
            .args(["--key", &certs.path("client.key")]);
    }
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("redis-cli runs");
    if let Some(mut input) = child.stdin.take() {
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("redis-cli stdin");
        }
    }
    let out = child.wait_with_output().expect("redis-cli runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A rustls client connection that reads whole RESP replies.
struct TlsConn {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsConn {
    /// Connects and completes the handshake; Err says why it failed.
    fn connect(
        certs: &Certs,
        port: u16,
        cert: bool,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<TlsConn, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certs.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let config = if cert {
            let key = PrivateKeyDer::try_from(certs.client_key_der.clone()).unwrap();
            builder
                .with_client_auth_cert(vec![certs.client_der.clone()], key)
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(common::REPLY_TIMEOUT)).unwrap();
        sock.set_write_timeout(Some(common::REPLY_TIMEOUT)).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| e.to_string())?;
        }
        Ok(TlsConn {
            stream,
            buf: Vec::new(),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).map_err(|e| e.to_string())?;
        self.stream.flush().map_err(|e| e.to_string())
    }

    fn read_reply(&mut self) -> Result<Vec<u8>, String> {
        loop {
            match frame_end(&self.buf, 0) {
                Ok(Some(end)) => return Ok(self.buf.drain(..end).collect()),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(format!("closed; buffered: {}", escape(&self.buf))),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{e}; buffered: {}", escape(&self.buf))),
            }
        }
    }

    fn cmd(&mut self, args: &[&str]) -> Result<Vec<u8>, String> {
        self.send(&encode(args))?;
        self.read_reply()
    }
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// redis-cli --tls: PING, SET and GET of keys on both shards, through a TLS-only server.
#[test]
fn redis_cli_ping_set_get() {
    if !have_redis_cli() {
        return;
    }
    let certs = Certs::new();
    let (server, port) = start(&certs, &["--tls-auth-clients", "no"]);
    if !use_redis_for_shardis() {
        assert_eq!(
            server.port(),
            port,
            "port 0 with a TLS port serves only TLS"
        );
    }
    let (ok, out) = cli(&certs, port, false, &["PING"]);
    assert!(ok && out.trim() == "PONG", "{out}\n{}", server.log());
    for i in 0..8 {
        let (key, value) = (format!("key:{i}"), format!("value-{i}"));
        let (ok, out) = cli(&certs, port, false, &["SET", &key, &value]);
        assert!(ok && out.trim() == "OK", "{out}");
        let (_, out) = cli(&certs, port, false, &["GET", &key]);
        assert_eq!(out.trim(), value);
    }
    let (_, out) = cli(&certs, port, false, &["DBSIZE"]);
    assert_eq!(out.trim(), "8");
}

/// The plain port and the TLS port at once, over the same keys; Pub/Sub across them.
#[test]
fn plain_and_tls_ports_at_once() {
    let certs = Certs::new();
    let plain = free_port().to_string();
    // redis-server gets a plain port from the harness already.
    let extra: &[&str] = if use_redis_for_shardis() {
        &[]
    } else {
        &["--port", &plain]
    };
    let (server, tls_port) = start(&certs, extra);
    assert_ne!(server.port(), tls_port);
    let mut tls = TlsConn::connect(&certs, tls_port, true, BOTH).unwrap();
    assert_eq!(tls.cmd(&["SET", "k", "from-tls"]).unwrap(), b"+OK\r\n");
    let mut raw = server.raw();
    assert_eq!(raw.cmd(&["GET", "k"]), b"$8\r\nfrom-tls\r\n");
    assert_eq!(raw.cmd(&["SET", "k2", "from-plain"]), b"+OK\r\n");
    assert_eq!(tls.cmd(&["GET", "k2"]).unwrap(), b"$10\r\nfrom-plain\r\n");
    // Pub/Sub messages reach a TLS subscriber (written outside a reply to its own command).
    let sub = tls.cmd(&["SUBSCRIBE", "news"]).unwrap();
    assert_eq!(sub, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(raw.cmd(&["PUBLISH", "news", "hello"]), b":1\r\n");
    let msg = tls.read_reply().unwrap();
    assert_eq!(msg, b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
    let mut con = server.client();
    let port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-port")
        .query(&mut con)
        .unwrap();
    assert_eq!(port, vec!["tls-port".to_string(), tls_port.to_string()]);
}

/// `tls-auth-clients yes` (the default): a client without a certificate is refused, one with
/// a certificate signed by the CA is served. `optional`: both are served.
#[test]
fn client_certificates_yes_and_optional() {
    let certs = Certs::new();
    let (server, port) = start(&certs, &[]);
    let refused = TlsConn::connect(&certs, port, false, BOTH).and_then(|mut c| c.cmd(&["PING"]));
    assert!(
        refused.is_err(),
        "served without a certificate: {refused:?}"
    );
    let mut ok = TlsConn::connect(&certs, port, true, BOTH).unwrap();
    assert_eq!(ok.cmd(&["PING"]).unwrap(), b"+PONG\r\n");
    if have_redis_cli() {
        let (_, out) = cli(&certs, port, false, &["PING"]);
        assert!(!out.contains("PONG"), "{out}");
        let (ok, out) = cli(&certs, port, true, &["PING"]);
        assert!(ok && out.trim() == "PONG", "{out}\n{}", server.log());
    }
    drop(server);

    let (server, port) = start(&certs, &["--tls-auth-clients", "optional"]);
    for cert in [false, true] {
        let mut c = TlsConn::connect(&certs, port, cert, BOTH).unwrap();
        assert_eq!(c.cmd(&["PING"]).unwrap(), b"+PONG\r\n", "{}", server.log());
    }
    if have_redis_cli() {
        for cert in [false, true] {
            let (ok, out) = cli(&certs, port, cert, &["PING"]);
            assert!(ok && out.trim() == "PONG", "{out}");
        }
    }
}

/// A 1 MB value and thousands of pipelined commands round-trip over TLS (replies larger than
/// rustls's buffers, input larger than one read), on both shards' keys.
#[test]
fn pipelined_big_payload() {
    let certs = Certs::new();
    let (server, port) = start(&certs, &["--tls-auth-clients", "no"]);
    let mut c = TlsConn::connect(&certs, port, false, BOTH).unwrap();
    let big: String = (0..1024 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut batch = encode(&["SET", "big", &big]);
    let n = 5000;
    for i in 0..n {
        batch.extend_from_slice(&encode(&["INCR", &format!("counter:{}", i % 10)]));
    }
    batch.extend_from_slice(&encode(&["GET", "big"]));
    batch.extend_from_slice(&encode(&["GET", "big"]));
    c.send(&batch).unwrap();
    assert_eq!(c.read_reply().unwrap(), b"+OK\r\n", "{}", server.log());
    for i in 0..n {
        let expected = format!(":{}\r\n", i / 10 + 1);
        assert_eq!(c.read_reply().unwrap(), expected.as_bytes(), "reply {i}");
    }
    let expected = format!("${}\r\n{big}\r\n", big.len());
    for _ in 0..2 {
        let got = c.read_reply().unwrap();
        assert!(got == expected.as_bytes(), "GET big: {} bytes", got.len());
    }
    if have_redis_cli() {
        let mut input = Vec::new();
        for i in 0..2000 {
            input.extend_from_slice(&encode(&["SET", &format!("p:{i}"), &big[..1000]]));
        }
        let (ok, out) = cli_stdin(&certs, port, false, &["--pipe"], Some(&input));
        assert!(ok && out.contains("errors: 0, replies: 2000"), "{out}");
        let (_, out) = cli(&certs, port, false, &["STRLEN", "p:1999"]);
        assert_eq!(out.trim(), "1000");
    }
}

/// redis-py over ssl, with a client certificate: commands and a pipeline. Skipped, loudly,
/// when no python3 with redis-py is found (scripts/install-deps.sh installs python3-redis).
#[test]
fn redis_py_over_ssl() {
    let Some(python) = ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import redis"])
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("SKIPPED: no python3 with redis-py (run scripts/install-deps.sh)");
        return;
    };
    let certs = Certs::new();
    let (server, port) = start(&certs, &[]);
    let program = r#"
import sys, redis
port, d = int(sys.argv[1]), sys.argv[2]
r = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=d + "/ca.crt",
                ssl_certfile=d + "/client.crt", ssl_keyfile=d + "/client.key")
assert r.ping()
r.set("greeting", "hello over tls")
assert r.get("greeting") == b"hello over tls"
p = r.pipeline(transaction=False)
for i in range(500):
    p.set("k%d" % i, "v" * i)
p.execute()
assert r.strlen("k499") == 499
assert r.mget("k1", "k2") == [b"v", b"vv"]
print("redis-py ssl ok")
"#;
    let out = Command::new(python)
        .args(["-c", program, &port.to_string(), &certs.path("")])
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("redis-py ssl ok"),
        "{text}\n{}",
        server.log()
    );
}

/// CONFIG GET shows the tls-* options; CONFIG SET of a missing certificate fails with Redis's
/// text and the server keeps serving TLS with the old one; a good new certificate is taken by
/// new connections; bad values of other options fail as in Redis.
#[test]
fn config_set_rebuilds_or_keeps_the_tls_config() {
    let certs = Certs::new();
    let (server, port) = start(&certs, &["--tls-auth-clients", "optional"]);
    let mut c = TlsConn::connect(&certs, port, false, BOTH).unwrap();
    let got = c.cmd(&["CONFIG", "GET", "tls-auth-clients"]).unwrap();
    assert_eq!(got, b"*2\r\n$16\r\ntls-auth-clients\r\n$8\r\noptional\r\n");
    let got = c.cmd(&["CONFIG", "GET", "tls-session-cache-size"]).unwrap();
    assert_eq!(
        got,
        b"*2\r\n$22\r\ntls-session-cache-size\r\n$5\r\n20480\r\n"
    );

    let got = c
        .cmd(&["CONFIG", "SET", "tls-cert-file", "/nonexistent/cert.pem"])
        .unwrap();
    assert_eq!(
        escape(&got),
        escape(b"-ERR CONFIG SET failed (possibly related to argument 'tls-cert-file') - Unable to update TLS configuration. Check server logs.\r\n")
    );
    let path = certs.path("server.crt");
    let got = c.cmd(&["CONFIG", "GET", "tls-cert-file"]).unwrap();
    assert_eq!(
        got,
        encode_map("tls-cert-file", &path),
        "the old value stays"
    );
    let mut fresh = TlsConn::connect(&certs, port, false, BOTH).unwrap();
    assert_eq!(fresh.cmd(&["PING"]).unwrap(), b"+PONG\r\n");
    assert!(
        server.log().contains("Failed to load certificate"),
        "{}",
        server.log()
    );

    // A key that is not the certificate's: refused the same way.
    let got = c
        .cmd(&["CONFIG", "SET", "tls-key-file", &certs.path("server2.key")])
        .unwrap();
    assert!(
        got.starts_with(b"-ERR CONFIG SET failed"),
        "{}",
        escape(&got)
    );

    // Both files at once, in one CONFIG SET: taken.
    let (cert2, key2) = (certs.path("server2.crt"), certs.path("server2.key"));
    let got = c
        .cmd(&[
            "CONFIG",
            "SET",
            "tls-cert-file",
            &cert2,
            "tls-key-file",
            &key2,
        ])
        .unwrap();
    assert_eq!(got, b"+OK\r\n");
    let mut fresh = TlsConn::connect(&certs, port, false, BOTH).unwrap();
    assert_eq!(fresh.cmd(&["PING"]).unwrap(), b"+PONG\r\n");
    // The connection opened before the change goes on.
    assert_eq!(c.cmd(&["PING"]).unwrap(), b"+PONG\r\n");

    for (name, value, why) in [
        (
            "tls-auth-clients",
            "maybe",
            "argument(s) must be one of the following: no, yes, optional",
        ),
        (
            "tls-session-cache-size",
            "-1",
            "argument must be between 0 and 2147483647 inclusive",
        ),
        (
            "tls-session-cache-timeout",
            "abc",
            "argument couldn't be parsed into an integer",
        ),
        (
            "tls-prefer-server-ciphers",
            "maybe",
            "argument must be 'yes' or 'no'",
        ),
        ("tls-port", "6390", "can't set immutable config"),
    ] {
        if name == "tls-port" && use_redis_for_shardis() {
            continue;
        }
        let got = c.cmd(&["CONFIG", "SET", name, value]).unwrap();
        let expected =
            format!("-ERR CONFIG SET failed (possibly related to argument '{name}') - {why}\r\n");
        assert_eq!(escape(&got), escape(expected.as_bytes()));
    }
    for (name, value) in [
        ("tls-protocols", "foo"),
        ("tls-ciphersuites", "BOGUS"),
        ("tls-ciphers", "BOGUS"),
        ("tls-ca-cert-file", "/nonexistent/ca.pem"),
    ] {
        let got = c.cmd(&["CONFIG", "SET", name, value]).unwrap();
        let expected = format!("-ERR CONFIG SET failed (possibly related to argument '{name}') - Unable to update TLS configuration. Check server logs.\r\n");
        assert_eq!(escape(&got), escape(expected.as_bytes()));
    }
    for (name, value) in [
        (
            "tls-ciphers",
            "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            "tls-ciphersuites",
            "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        ),
        ("tls-session-caching", "no"),
        ("tls-prefer-server-ciphers", "yes"),
    ] {
        assert_eq!(c.cmd(&["CONFIG", "SET", name, value]).unwrap(), b"+OK\r\n");
    }
    let mut fresh = TlsConn::connect(&certs, port, true, BOTH).unwrap();
    assert_eq!(fresh.cmd(&["PING"]).unwrap(), b"+PONG\r\n");
}

fn encode_map(k: &str, v: &str) -> Vec<u8> {
    format!("*2\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len()).into_bytes()
}

/// A client that sends plain RESP (not TLS) to the TLS port is closed; TLS clients, one open
/// before and one after, go on being served.
#[test]
fn garbage_on_the_tls_port_is_closed() {
    let certs = Certs::new();
    let (server, port) = start(&certs, &["--tls-auth-clients", "no"]);
    let mut good = TlsConn::connect(&certs, port, false, BOTH).unwrap();
    assert_eq!(good.cmd(&["SET", "x", "1"]).unwrap(), b"+OK\r\n");
    for garbage in [
        &b"*1\r\n$4\r\nPING\r\n"[..],
        &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3][..],
    ] {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.write_all(garbage).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => break,
                // An alert may come first; no RESP reply ever does.
                Ok(n) => assert!(!buf[..n].starts_with(b"+"), "{}", escape(&buf[..n])),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("not closed after {:?}: {e}", started.elapsed()),
            }
        }
    }
    assert_eq!(good.cmd(&["GET", "x"]).unwrap(), b"$1\r\n1\r\n");
    let mut after = TlsConn::connect(&certs, port, false, BOTH).unwrap();
    assert_eq!(
        after.cmd(&["INCR", "x"]).unwrap(),
        b":2\r\n",
        "{}",
        server.log()
    );
}

/// `tls-protocols TLSv1.2`: a client that offers only TLS 1.3 fails its handshake; one that
/// offers TLS 1.2 is served. Redis-style values: TLSv1.1 alone is refused at start-up.
#[test]
fn tls_protocols_limit_versions() {
    let certs = Certs::new();
    let (server, port) = start(
        &certs,
        &["--tls-protocols", "TLSv1.2", "--tls-auth-clients", "no"],
    );
    let only13 = TlsConn::connect(&certs, port, false, &[&rustls::version::TLS13]);
    assert!(only13.is_err(), "a TLS 1.3-only client was served");
    let mut c = TlsConn::connect(&certs, port, false, &[&rustls::version::TLS12]).unwrap();
    assert_eq!(c.cmd(&["PING"]).unwrap(), b"+PONG\r\n");
    assert_eq!(
        c.stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    // CONFIG SET turns TLS 1.3 on for new connections.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "tls-protocols", "TLSv1.3"])
            .unwrap(),
        b"+OK\r\n"
    );
    let mut c13 = TlsConn::connect(&certs, port, false, &[&rustls::version::TLS13]).unwrap();
    assert_eq!(
        c13.cmd(&["PING"]).unwrap(),
        b"+PONG\r\n",
        "{}",
        server.log()
    );
    assert!(TlsConn::connect(&certs, port, false, &[&rustls::version::TLS12]).is_err());
}

/// Start-up with a certificate file that is missing, or without the CA that client
/// certificates need, fails with the reason and a non-zero exit.
#[test]
fn bad_tls_config_stops_startup() {
    let certs = Certs::new();
    let port = free_port().to_string();
    let dir = fresh_dir("shardis-tls-bad");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--tls-cert-file", "/nonexistent/cert.pem"],
            "Failed to load certificate: /nonexistent/cert.pem",
        ),
        (
            &["--tls-ca-cert-file", ""],
            "tls-ca-cert-file or tls-ca-cert-dir",
        ),
        (&["--tls-protocols", "TLSv1.1"], "tls-protocols"),
    ];
    for (extra, why) in cases {
        let mut args = certs.server_args(port.parse().unwrap());
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = run_to_exit(&args, &dir);
        assert!(!out.0, "started with {extra:?}");
        assert!(out.1.contains(why), "{extra:?}: {}", out.1);
    }
}

/// Runs shardis with `args` until it exits (killing it after 20 s); (success, its stderr).
fn run_to_exit(args: &[String], dir: &Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(["--port", "0", "--shards", "1", "--save", ""])
        .args(["--dir", &dir.to_string_lossy()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shardis starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (status.success(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (true, "still running".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tls-* options in a config file (redis.conf syntax), with `port 0`: only TLS is served.
#[test]
fn tls_options_from_a_config_file() {
    let certs = Certs::new();
    let dir = fresh_dir("shardis-tls-conf");
    let tls_port = free_port();
    let conf = dir.join("shardis.conf");
    let text = format!(
        "port 0\nshards 1\nsave \"\"\ndir {}\ntls-port {tls_port}\ntls-cert-file {}\n\
         tls-key-file {}\ntls-auth-clients no\ntls-protocols \"TLSv1.2 TLSv1.3\"\n",
        dir.display(),
        certs.path("server.crt"),
        certs.path("server.key"),
    );
    std::fs::write(&conf, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("shardis starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + common::START_DEADLINE;
    let listening = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if let Some(port) = common::parse_listening_port(&line) {
                    break port;
                }
            }
            Err(_) if Instant::now() > deadline => break 0,
            Err(_) => {}
        }
    };
    let result = std::panic::catch_unwind(|| {
        assert_eq!(listening, tls_port, "{log}");
        assert!(log.contains("(TLS)"), "{log}");
        let mut c = TlsConn::connect(&certs, tls_port, false, BOTH).unwrap();
        let got = c.cmd(&["CONFIG", "GET", "tls-protocols"]).unwrap();
        assert_eq!(got, encode_map("tls-protocols", "TLSv1.2 TLSv1.3"));
        assert_eq!(c.cmd(&["PING"]).unwrap(), b"+PONG\r\n");
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// `tls-ca-cert-dir` alone: the CA certificates are found among the directory's PEM files
/// (other files, such as keys, are passed over), and a client certificate signed by the CA is
/// accepted.
#[test]
fn ca_cert_dir() {
    if use_redis_for_shardis() {
        eprintln!("SKIPPED with redis-server: OpenSSL reads only c_rehash'd names there");
        return;
    }
    let certs = Certs::new();
    let dir = certs.dir.to_string_lossy().into_owned();
    let (server, port) = start(
        &certs,
        &["--tls-ca-cert-file", "", "--tls-ca-cert-dir", &dir],
    );
    let mut c = TlsConn::connect(&certs, port, true, BOTH).unwrap();
    assert_eq!(c.cmd(&["PING"]).unwrap(), b"+PONG\r\n", "{}", server.log());
    let refused = TlsConn::connect(&certs, port, false, BOTH).and_then(|mut c| c.cmd(&["PING"]));
    assert!(refused.is_err(), "served without a certificate");
}

/// redis-benchmark --tls: many TLS clients at once, pipelined, on both shards; every SET lands.
#[test]
fn redis_benchmark_over_tls() {
    if !have_redis_cli() {
        return;
    }
    let certs = Certs::new();
    let (server, port) = start(&certs, &["--tls-auth-clients", "no"]);
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls"])
        .args(["--cacert", &certs.path("ca.crt")])
        .args(["-n", "20000", "-c", "20", "-P", "16", "-r", "1000", "-q"])
        .args(["-t", "set,get"])
        .output()
        .expect("redis-benchmark runs (scripts/install-deps.sh)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("SET: ") && text.contains("GET: ") && !text.contains("rror"),
        "{text}\n{}",
        server.log()
    );
    let mut c = TlsConn::connect(&certs, port, false, BOTH).unwrap();
    let size = c.cmd(&["DBSIZE"]).unwrap();
    let n: usize = std::str::from_utf8(&size[1..size.len() - 2])
        .unwrap()
        .parse()
        .unwrap();
    assert!((900..=1000).contains(&n), "DBSIZE {n}");
}

/// AUTH over TLS: with a password, a TLS client must authenticate like any other.
#[test]
fn auth_over_tls() {
    if use_redis_for_shardis() {
        eprintln!("SKIPPED with redis-server: the harness's start-up PING has no password");
        return;
    }
    let certs = Certs::new();
    let (server, port) = start(
        &certs,
        &["--tls-auth-clients", "no", "--requirepass", "s3cret"],
    );
    let mut c = TlsConn::connect(&certs, port, false, BOTH).unwrap();
    let got = c.cmd(&["PING"]).unwrap();
    assert!(got.starts_with(b"-NOAUTH"), "{}", escape(&got));
    assert!(c
        .cmd(&["AUTH", "wrong"])
        .unwrap()
        .starts_with(b"-WRONGPASS"));
    assert_eq!(c.cmd(&["AUTH", "s3cret"]).unwrap(), b"+OK\r\n");
    assert_eq!(c.cmd(&["PING"]).unwrap(), b"+PONG\r\n", "{}", server.log());
}

/// Waits until `cond` holds (30 s at most).
fn wait_until(what: &str, mut cond: impl FnMut() -> bool, log: &dyn Fn() -> String) {
    let end = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within 30 s\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn info_has(c: &mut common::RawConn, text: &str) -> bool {
    String::from_utf8_lossy(&c.cmd(&["INFO", "replication"])).contains(text)
}

/// Replication over TLS: a shardis replica (`tls-replication yes`, a client certificate) and a
/// redis-server replica of a shardis master's TLS port, and a shardis replica of a
/// redis-server master's TLS port. The data arrives, WAIT counts the acknowledgements that
/// come back encrypted, and a broken link resumes with a partial resync.
#[test]
fn replication_over_tls() {
    if use_redis_for_shardis() {
        return;
    }
    let certs = Certs::new();
    let plain = free_port().to_string();
    let (master, mtls) = start(&certs, &["--port", &plain]);
    let mut m = master.raw();
    let (a, b) = (common::key_on(0, "tls"), common::key_on(1, "tls"));
    m.cmd(&["MSET", &a, "1", &b, "2"]);
    let (ca, ccrt, ckey) = (
        certs.path("ca.crt"),
        certs.path("client.crt"),
        certs.path("client.key"),
    );
    let replicaof = format!("127.0.0.1 {mtls}");
    let replica = Server::start(&[
        "--replicaof",
        &replicaof,
        "--tls-replication",
        "yes",
        "--tls-ca-cert-file",
        &ca,
        "--tls-client-cert-file",
        &ccrt,
        "--tls-client-key-file",
        &ckey,
    ]);
    let mut r = replica.raw();
    wait_until(
        "shardis replica over TLS",
        || info_has(&mut r, "master_link_status:up"),
        &|| replica.log(),
    );
    let mtls_s = mtls.to_string();
    let redis_replica = common::RedisServer::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &mtls_s,
        "--tls-replication",
        "yes",
        "--tls-ca-cert-file",
        &ca,
        "--tls-cert-file",
        &ccrt,
        "--tls-key-file",
        &ckey,
    ]);
    let mut rr = redis_replica.raw();
    wait_until(
        "redis-server replica over TLS",
        || info_has(&mut rr, "master_link_status:up"),
        &|| redis_replica.log(),
    );
    m.cmd(&["SET", "after", "x"]);
    m.cmd(&["RPUSH", &a, "no"]);
    assert_eq!(m.cmd(&["WAIT", "2", "5000"]), b":2\r\n", "{}", master.log());
    for c in [&mut r, &mut rr] {
        assert_eq!(c.cmd(&["GET", &b]), b"$1\r\n2\r\n");
        assert_eq!(c.cmd(&["GET", "after"]), b"$1\r\nx\r\n");
    }
    // The redis-server replica's link breaks: it resumes where it was.
    assert_eq!(rr.cmd(&["CLIENT", "KILL", "TYPE", "master"]), b":1\r\n");
    m.cmd(&["SET", "resumed", "1"]);
    let stat = |c: &mut common::RawConn, name: &str| {
        String::from_utf8_lossy(&c.cmd(&["INFO", "stats"]))
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_string())
            })
    };
    wait_until(
        "partial resync over TLS",
        || stat(&mut m, "sync_partial_ok").as_deref() == Some("1"),
        &|| master.log(),
    );
    assert_eq!(m.cmd(&["WAIT", "2", "5000"]), b":2\r\n");
    assert_eq!(r.cmd(&["GET", "resumed"]), b"$1\r\n1\r\n");
    assert_eq!(rr.cmd(&["GET", "resumed"]), b"$1\r\n1\r\n");
    assert_eq!(
        stat(&mut m, "sync_full").as_deref(),
        Some("2"),
        "one full sync each"
    );

    // shardis follows a redis-server master on its TLS port.
    let rtls = free_port().to_string();
    let redis_master = common::RedisServer::start_with(&[
        "--tls-port",
        &rtls,
        "--tls-cert-file",
        &certs.path("server.crt"),
        "--tls-key-file",
        &certs.path("server.key"),
        "--tls-ca-cert-file",
        &ca,
    ]);
    let mut rm = redis_master.raw();
    rm.cmd(&["SET", "from-redis", "1"]);
    assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &rtls]), b"+OK\r\n");
    wait_until(
        "shardis replica of redis-server over TLS",
        || r.cmd(&["GET", "from-redis"]) == b"$1\r\n1\r\n",
        &|| replica.log(),
    );
    rm.cmd(&["SET", "streamed", "2"]);
    assert_eq!(rm.cmd(&["WAIT", "1", "5000"]), b":1\r\n");
    assert_eq!(r.cmd(&["GET", "streamed"]), b"$1\r\n2\r\n");
    // Its link breaks: it resumes with a partial resync over TLS.
    assert_eq!(rm.cmd(&["CLIENT", "KILL", "TYPE", "replica"]), b":1\r\n");
    rm.cmd(&["SET", "streamed", "3"]);
    wait_until(
        "partial resync from redis-server over TLS",
        || {
            replica
                .log()
                .contains("Successful partial resynchronization")
        },
        &|| replica.log(),
    );
    assert_eq!(rm.cmd(&["WAIT", "1", "5000"]), b":1\r\n");
    assert_eq!(r.cmd(&["GET", "streamed"]), b"$1\r\n3\r\n");
}
