//! A small blocking RESP2 client: what a sentinel needs to talk to masters, replicas and other
//! sentinels. Every read and write has a timeout, every length read from the peer is bounded, and
//! nothing the peer sends can make it panic.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The longest bulk string accepted from an instance (an INFO reply is a few kilobytes).
const BULK_LEN_MAX: usize = 64 << 20;
/// The most elements accepted in one array reply.
const ARRAY_LEN_MAX: usize = 1 << 20;
/// The deepest nesting accepted (INFO-CACHE style replies are two or three levels deep).
const DEPTH_MAX: usize = 8;

/// One reply from an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    /// The reply as text (simple strings, bulk strings, errors and integers).
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) | Value::Error(s) => Some(s.clone()),
            Value::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Int(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            other => other.text().and_then(|t| t.parse().ok()),
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A connection to one instance.
pub struct Conn {
    reader: BufReader<TcpStream>,
    /// Whether the reply being read has started arriving: a timeout after that leaves the
    /// stream in the middle of a reply, which is fatal for the connection.
    started: bool,
}

impl Conn {
    /// Connects to `ip:port`, waiting at most `timeout` for the connection and for every later
    /// read or write.
    pub fn connect(ip: &str, port: u16, timeout: Duration) -> io::Result<Conn> {
        let addrs: Vec<SocketAddr> = (ip, port).to_socket_addrs()?.collect();
        let mut last = bad("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    let _ = s.set_nodelay(true);
                    return Ok(Conn {
                        reader: BufReader::new(s),
                        started: false,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn set_timeout(&self, timeout: Duration) {
        let _ = self.reader.get_ref().set_read_timeout(Some(timeout));
    }

    /// The local address of the connection (the IP a hello message announces).
    pub fn local_ip(&self) -> Option<String> {
        self.reader
            .get_ref()
            .local_addr()
            .ok()
            .map(|a| a.ip().to_string())
    }

    /// Sends one command without waiting for its reply.
    pub fn send(&mut self, argv: &[&[u8]]) -> io::Result<()> {
        let mut out = Vec::new();
        shards::resp::encode_command(argv, &mut out);
        self.reader.get_mut().write_all(&out)
    }

    /// Sends several commands in one write.
    pub fn send_many(&mut self, cmds: &[Vec<Vec<u8>>]) -> io::Result<()> {
        let mut out = Vec::new();
        for c in cmds {
            let argv: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
            shards::resp::encode_command(&argv, &mut out);
        }
        self.reader.get_mut().write_all(&out)
    }

    /// Sends a command and reads its reply.
    pub fn call(&mut self, argv: &[&str]) -> io::Result<Value> {
        let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        self.send(&argv)?;
        self.read()
    }

    /// Reads one reply.
    pub fn read(&mut self) -> io::Result<Value> {
        self.started = false;
        match self.read_depth(0) {
            Err(e) if is_timeout(&e) && self.started => Err(bad("timed out inside a reply")),
            r => r,
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(BULK_LEN_MAX as u64)
            .read_until(b'\n', &mut line);
        if !line.is_empty() {
            self.started = true;
        }
        let n = n?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(bad("line without CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn read_depth(&mut self, depth: usize) -> io::Result<Value> {
        if depth > DEPTH_MAX {
            return Err(bad("reply nested too deep"));
        }
        let line = self.line()?;
        let kind = match line.as_bytes().first() {
            Some(&k) if b"+-:$*".contains(&k) => k,
            _ => return Err(bad("unknown reply type")),
        };
        // The type byte is ASCII, so byte 1 starts a character.
        let rest = &line[1..];
        let len = || rest.parse::<i64>().map_err(|_| bad("bad length"));
        match kind {
            b'+' => Ok(Value::Simple(rest.to_string())),
            b'-' => Ok(Value::Error(rest.to_string())),
            b':' => Ok(Value::Int(len()?)),
            b'$' => {
                let n = len()?;
                if n < 0 {
                    return Ok(Value::Nil);
                }
                let n = n as usize;
                if n > BULK_LEN_MAX {
                    return Err(bad("bulk too long"));
                }
                let mut buf = vec![0u8; n + 2];
                self.reader.read_exact(&mut buf)?;
                buf.truncate(n);
                Ok(Value::Bulk(buf))
            }
            b'*' => {
                let n = len()?;
                if n < 0 {
                    return Ok(Value::Nil);
                }
                let n = n as usize;
                if n > ARRAY_LEN_MAX {
                    return Err(bad("array too long"));
                }
                let mut items = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    items.push(self.read_depth(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            _ => Err(bad("unknown reply type")),
        }
    }
}

/// Whether an I/O error is a read timeout (the instance did not answer in time).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
