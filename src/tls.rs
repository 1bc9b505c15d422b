//! TLS for client connections, with rustls (ring as the crypto provider; TLS 1.2 and 1.3).
//!
//! The `tls-*` options become one [`rustls::ServerConfig`], built at start-up (a bad certificate
//! or key stops the server with the reason) and rebuilt by CONFIG SET of any option it depends on
//! (a bad value leaves the old one in place and fails the command with Redis's text). The
//! current config lives in [`Current`] inside the shared [`crate::config::Config`]; shards cache
//! it with their other hot values when the config generation moves, so new connections use the
//! new one and open ones keep theirs.
//!
//! A TLS connection is an ordinary `Conn` with a [`Session`]: on readable, the ciphertext one
//! `read` returns is fed to rustls and all the plaintext it yields goes to the query buffer (so
//! no plaintext ever waits inside rustls for a readiness event that will not come); on flush,
//! plaintext is handed to rustls (up to its 64 KiB buffer) and the ciphertext written to the
//! socket. Ciphertext left over when the socket is full keeps EPOLLOUT registered, handshake
//! bytes included. The plain-TCP path never touches this module.
//!
//! A replica that attached over TLS takes its session to the replication threads
//! (`crate::repl::hub`); `tls-replication yes` makes a replica's link to its master a TLS
//! client (`client_config`).
//!
//! Not built: `tls-cluster` (no cluster bus yet),
//! `tls-key-file-pass` (encrypted keys), `tls-dh-params-file` (rustls uses ECDHE only),
//! `tls-session-cache-timeout` (rustls's cache has no timeout), and CONFIG SET `tls-port`.

use rustls::crypto::ring::cipher_suite as suite;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::{Arc, RwLock};

/// Options whose change rebuilds the server config (CONFIG SET fails if the rebuild does).
pub const REBUILD_ON: &[&str] = &[
    "tls-cert-file",
    "tls-key-file",
    "tls-ca-cert-file",
    "tls-ca-cert-dir",
    "tls-auth-clients",
    "tls-protocols",
    "tls-ciphersuites",
    "tls-ciphers",
    "tls-prefer-server-ciphers",
    "tls-session-caching",
    "tls-session-cache-size",
];

/// Ciphertext read from a socket per readiness event (as much as a plain read takes).
const CIPHER_CHUNK: usize = 16 * 1024;

/// The TLS 1.3 suites rustls offers, by their IANA/OpenSSL names (`tls-ciphersuites`).
const TLS13_SUITES: &[(&str, SupportedCipherSuite)] = &[
    ("TLS_AES_256_GCM_SHA384", suite::TLS13_AES_256_GCM_SHA384),
    ("TLS_AES_128_GCM_SHA256", suite::TLS13_AES_128_GCM_SHA256),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        suite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
];

/// The TLS 1.2 suites rustls offers, by their OpenSSL names (`tls-ciphers`).
const TLS12_SUITES: &[(&str, SupportedCipherSuite)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
];

/// OpenSSL cipher-string keywords that select every suite rustls has.
const CIPHER_KEYWORDS: &[&str] = &["DEFAULT", "ALL", "HIGH", "ECDHE", "EECDH", "AESGCM"];

thread_local! {
    /// Ciphertext just read from a socket, until rustls has taken it: one buffer per shard
    /// thread rather than one per connection.
    static CIPHER: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; CIPHER_CHUNK].into_boxed_slice());
}

/// The server config new TLS connections use (None while TLS is off).
#[derive(Default)]
pub struct Current(RwLock<Option<Arc<ServerConfig>>>);

impl Current {
    pub fn get(&self) -> Option<Arc<ServerConfig>> {
        self.0.read().ok().and_then(|c| c.clone())
    }

    pub fn set(&self, config: Arc<ServerConfig>) {
        if let Ok(mut c) = self.0.write() {
            *c = Some(config);
        }
    }
}

/// Builds the server config from the `tls-*` values `get` returns. The error says what is
/// wrong, for the log (Redis logs the reason and tells the client only that it failed).
pub fn build(get: &dyn Fn(&str) -> String) -> Result<Arc<ServerConfig>, String> {
    let versions = protocols(&get("tls-protocols"))?;
    let mut suites = pick_suites(&get("tls-ciphersuites"), TLS13_SUITES, "ciphersuites")?;
    suites.extend(pick_suites(&get("tls-ciphers"), TLS12_SUITES, "ciphers")?);
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites,
        ..rustls::crypto::ring::default_provider()
    });
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("Failed to configure protocols/ciphers: {e}"))?;
    let auth = get("tls-auth-clients");
    let roots = ca_roots(&get("tls-ca-cert-file"), &get("tls-ca-cert-dir"))?;
    let builder = if auth == "no" {
        builder.with_no_client_auth()
    } else {
        if roots.is_empty() {
            return Err(
                "Either tls-ca-cert-file or tls-ca-cert-dir must be specified when \
                 tls-auth-clients is yes or optional"
                    .into(),
            );
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if auth == "optional" {
            verifier.allow_unauthenticated()
        } else {
            verifier
        };
        let verifier = verifier
            .build()
            .map_err(|e| format!("Failed to configure client verification: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    let (certs, key) = cert_and_key(&get("tls-cert-file"), &get("tls-key-file"))?;
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("Failed to use certificate and key: {e}"))?;
    config.ignore_client_order = get("tls-prefer-server-ciphers") == "yes";
    config.session_storage = if get("tls-session-caching") == "yes" {
        // OpenSSL reads a size of 0 as "no limit"; rustls's cache needs one: the default.
        let size = get("tls-session-cache-size").parse().unwrap_or(0usize);
        ServerSessionMemoryCache::new(if size == 0 { 20480 } else { size })
    } else {
        Arc::new(NoServerSessionStorage {})
    };
    Ok(Arc::new(config))
}

/// The client side, for a replica's link to its master with `tls-replication yes`: the
/// master's certificate is verified against `tls-ca-cert-file` / `tls-ca-cert-dir` (not its
/// name, as Redis does not check it either), and the replica shows `tls-client-cert-file` /
/// `tls-client-key-file` (or else `tls-cert-file` / `tls-key-file`) when set.
pub fn client_config(get: &dyn Fn(&str) -> String) -> Result<Arc<rustls::ClientConfig>, String> {
    let versions = protocols(&get("tls-protocols"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = ca_roots(&get("tls-ca-cert-file"), &get("tls-ca-cert-dir"))?;
    if roots.is_empty() {
        return Err("tls-replication needs tls-ca-cert-file or tls-ca-cert-dir".into());
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("Failed to configure server verification: {e}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("Failed to configure protocols: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyName(inner)));
    let (cert, key) = match (get("tls-client-cert-file"), get("tls-client-key-file")) {
        (c, k) if !c.is_empty() && !k.is_empty() => (c, k),
        _ => (get("tls-cert-file"), get("tls-key-file")),
    };
    let config = if cert.is_empty() || key.is_empty() {
        builder.with_no_client_auth()
    } else {
        let (certs, key) = cert_and_key(&cert, &key)?;
        builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("Failed to use client certificate and key: {e}"))?
    };
    Ok(Arc::new(config))
}

/// Verifies a server's certificate chain, whatever name it was issued for.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // The name is checked once the chain is good.
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `tls-protocols`: the versions named, case-insensitive; empty means TLS 1.2 and 1.3. Older
/// versions, which rustls does not speak, are left out (with a log line) as long as one that
/// it does remains.
fn protocols(value: &str) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    if value.trim().is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    let mut versions = Vec::new();
    for word in value.split_whitespace() {
        match word.to_ascii_lowercase().as_str() {
            "tlsv1.3" => versions.push(&rustls::version::TLS13),
            "tlsv1.2" => versions.push(&rustls::version::TLS12),
            "tlsv1" | "tlsv1.1" => {
                crate::log!("tls-protocols: {word} is not supported (only TLSv1.2 and TLSv1.3)")
            }
            _ => return Err(format!("Invalid tls-protocols specified: {word}")),
        }
    }
    if versions.is_empty() {
        return Err(format!(
            "tls-protocols '{value}' names no supported protocol (TLSv1.2, TLSv1.3)"
        ));
    }
    versions.dedup();
    Ok(versions)
}

/// A `:`-separated OpenSSL list of suites (`tls-ciphersuites`, `tls-ciphers`): the ones rustls
/// has, in the order given. As OpenSSL does, names it does not know and exclusions (`!x`,
/// `-x`, `@STRENGTH`) are skipped, and the list fails only if it selects nothing. Empty
/// selects every suite in `table`.
fn pick_suites(
    value: &str,
    table: &[(&str, SupportedCipherSuite)],
    what: &str,
) -> Result<Vec<SupportedCipherSuite>, String> {
    let all = || table.iter().map(|(_, s)| *s).collect::<Vec<_>>();
    if value.trim().is_empty() {
        return Ok(all());
    }
    let mut picked: Vec<SupportedCipherSuite> = Vec::new();
    for word in value.split([':', ',', ' ']).map(str::trim) {
        let word = word.strip_prefix('+').unwrap_or(word);
        if word.is_empty() || word.starts_with(['!', '-', '@']) {
            continue;
        }
        if CIPHER_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) {
            picked.extend(all());
        } else if let Some((_, s)) = table.iter().find(|(n, _)| n.eq_ignore_ascii_case(word)) {
            picked.push(*s);
        }
    }
    let mut unique: Vec<SupportedCipherSuite> = Vec::new();
    for s in picked {
        if !unique.iter().any(|u| u.suite() == s.suite()) {
            unique.push(s);
        }
    }
    if unique.is_empty() {
        return Err(format!("Failed to configure {what}: {value}"));
    }
    Ok(unique)
}

/// The CA certificates clients are verified against: every certificate in `file`, and in every
/// file of `dir` that holds PEM certificates.
fn ca_roots(file: &str, dir: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let mut add = |path: &std::path::Path, strict: bool| -> Result<(), String> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                format!(
                    "Failed to configure CA certificate(s) file/directory: {}: {e}",
                    path.display()
                )
            });
        let certs = match certs {
            Ok(c) => c,
            Err(e) if strict => return Err(e),
            Err(_) => return Ok(()),
        };
        for c in certs {
            roots.add(c).map_err(|e| {
                format!("Failed to add CA certificate from {}: {e}", path.display())
            })?;
        }
        Ok(())
    };
    if !file.is_empty() {
        add(std::path::Path::new(file), true)?;
    }
    if !dir.is_empty() {
        // As OpenSSL's lookup directory, a missing one adds nothing rather than failing.
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    add(&entry.path(), false)?;
                }
            }
            Err(e) => crate::log!("tls-ca-cert-dir {dir}: {e}"),
        }
    }
    Ok(roots)
}

fn cert_and_key(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    if cert.is_empty() || key.is_empty() {
        return Err("tls-cert-file and tls-key-file must be set when tls-port is".into());
    }
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("Failed to load certificate: {cert}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "Failed to load certificate: {cert}: no certificate"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("Failed to load private key: {key}: {e}"))?;
    Ok((certs, key))
}

/// A socket fd as rustls's reader and writer.
struct Fd(RawFd);

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::net::write(self.0, buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        crate::net::writev(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One client connection's TLS state.
pub struct Session {
    tls: rustls::ServerConnection,
}

impl Session {
    pub fn new(config: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            tls: rustls::ServerConnection::new(config)?,
        })
    }

    /// Reads the ciphertext available on `fd` (one read, at most [`CIPHER_CHUNK`]), decrypts
    /// it and appends all the plaintext to `buf`. Ok(0): the peer closed (EOF or
    /// close_notify). WouldBlock also when only handshake bytes came. A protocol error (not
    /// TLS, a bad certificate) is logged, the alert sent, and returned as an error.
    pub fn read_into(&mut self, fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
        CIPHER.with(|cipher| {
            let mut cipher = cipher.borrow_mut();
            match crate::net::read(fd, &mut cipher)? {
                0 => Ok(0),
                n => self.absorb(fd, &cipher[..n], buf),
            }
        })
    }

    /// Feeds ciphertext to rustls and appends all the plaintext it yields to `buf` (see
    /// [`Session::read_into`]).
    fn absorb(&mut self, fd: RawFd, cipher: &[u8], buf: &mut Vec<u8>) -> io::Result<usize> {
        let before = buf.len();
        let mut rest = cipher;
        let mut closed = false;
        while !rest.is_empty() && !closed {
            if self.tls.read_tls(&mut rest)? == 0 {
                // Nothing more is taken (a close_notify came): the rest is ignored.
                break;
            }
            let state = match self.tls.process_new_packets() {
                Ok(s) => s,
                Err(e) => return Err(self.fail(fd, e)),
            };
            let avail = state.plaintext_bytes_to_read();
            if avail > 0 {
                let start = buf.len();
                buf.resize(start + avail, 0);
                self.tls.reader().read_exact(&mut buf[start..])?;
            }
            closed = state.peer_has_closed();
        }
        match buf.len() - before {
            0 if closed => Ok(0),
            0 => Err(io::ErrorKind::WouldBlock.into()),
            got => Ok(got),
        }
    }

    /// Logs a TLS error, sends rustls's alert (best effort) and turns it into an I/O error.
    fn fail(&mut self, fd: RawFd, e: rustls::Error) -> io::Error {
        if self.tls.is_handshaking() {
            crate::log!("Error accepting a client connection: {e}");
        } else {
            crate::log!("TLS error on a client connection: {e}");
        }
        let _ = self.flush(fd);
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// Hands plaintext to rustls and writes the ciphertext. Returns how much of `data` was
    /// taken; WouldBlock when none could be (socket full, or the handshake is not done).
    pub fn write(&mut self, fd: RawFd, data: &[u8]) -> io::Result<usize> {
        self.flush(fd)?;
        if self.tls.is_handshaking() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tls.writer().write(data)?;
        self.flush(fd)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Writes pending ciphertext (handshake bytes, records, alerts) until done or the socket
    /// is full. Ok(true): some is left (wait for EPOLLOUT).
    pub fn flush(&mut self, fd: RawFd) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Fd(fd)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Whether the connection needs EPOLLOUT: ciphertext is left, or plaintext waits
    /// (`output`) that rustls can take (not before the handshake is done: until then only
    /// reading moves it on).
    pub fn want_write(&self, output: bool) -> bool {
        self.tls.wants_write() || (output && !self.tls.is_handshaking())
    }

    /// The rustls connection, for a thread that takes the socket over (a replica's).
    pub fn into_inner(self) -> rustls::ServerConnection {
        self.tls
    }

    /// Before the socket closes: a close_notify, if it can go out at once.
    pub fn close(&mut self, fd: RawFd) {
        self.tls.send_close_notify();
        let _ = self.flush(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_like_redis() {
        assert_eq!(protocols("").unwrap().len(), 2);
        assert_eq!(protocols("TLSv1.2").unwrap(), vec![&rustls::version::TLS12]);
        assert_eq!(protocols("tlsv1.1 TLSv1.3").unwrap().len(), 1);
        assert!(protocols("TLSv1.1").is_err());
        assert!(protocols("foo").is_err());
    }

    #[test]
    fn cipher_lists_skip_what_rustls_lacks() {
        let s = pick_suites("TLS_AES_128_GCM_SHA256", TLS13_SUITES, "x").unwrap();
        assert_eq!(s.len(), 1);
        let s = pick_suites(
            "ECDHE-RSA-AES256-GCM-SHA384:AES256-SHA:!aNULL",
            TLS12_SUITES,
            "x",
        );
        assert_eq!(s.unwrap().len(), 1);
        assert_eq!(
            pick_suites("HIGH:!MD5", TLS12_SUITES, "x").unwrap().len(),
            6
        );
        assert!(pick_suites("BOGUS", TLS13_SUITES, "x").is_err());
        assert_eq!(pick_suites("", TLS13_SUITES, "x").unwrap().len(), 3);
    }
}
