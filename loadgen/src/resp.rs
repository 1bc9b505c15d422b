//! RESP2 on the wire, both ways: commands encoded as arrays of bulk strings, and replies
//! parsed from a buffer that may hold part of one. The parser never panics on what a server
//! sends: a malformed reply is an error, an incomplete one is `None`.

use std::fmt;

/// How deeply arrays may nest in a reply we accept (our commands' replies are flat or one deep).
const DEPTH_MAX: usize = 8;
/// The longest bulk string or array we accept, so a corrupt length cannot make us allocate wildly.
const LEN_MAX: i64 = 512 * 1024 * 1024;

/// One parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The error text, when this is an error reply.
    pub fn error(&self) -> Option<&[u8]> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(s) => write!(f, "+{}", String::from_utf8_lossy(s)),
            Reply::Error(s) => write!(f, "-{}", String::from_utf8_lossy(s)),
            Reply::Int(i) => write!(f, ":{i}"),
            Reply::Bulk(None) | Reply::Array(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Array(Some(items)) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
        }
    }
}

/// A reply that is not valid RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// Appends `args` as one RESP command (an array of bulk strings) to `out`.
pub fn encode<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.push(b'$');
        push_decimal(out, arg.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in decimal, without the formatting machinery (this is on every request's path).
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Parses one reply from the start of `buf`: the reply and the bytes it took, `None` when the
/// buffer holds only part of it.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    if depth > DEPTH_MAX {
        return Err(ProtocolError("reply nested too deeply".into()));
    }
    let Some((line, next)) = line_at(buf, pos) else {
        return Ok(None);
    };
    let Some((&kind, rest)) = line.split_first() else {
        return Err(ProtocolError("empty reply line".into()));
    };
    match kind {
        b'+' => Ok(Some((Reply::Simple(rest.to_vec()), next))),
        b'-' => Ok(Some((Reply::Error(rest.to_vec()), next))),
        b':' => Ok(Some((Reply::Int(int(rest)?), next))),
        b'_' => Ok(Some((Reply::Bulk(None), next))),
        b'$' => {
            let len = int(rest)?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            let len = checked_len(len)?;
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string not followed by CRLF".into()));
            }
            Ok(Some((
                Reply::Bulk(Some(buf[next..next + len].to_vec())),
                next + len + 2,
            )))
        }
        b'*' => {
            let len = int(rest)?;
            if len < 0 {
                return Ok(Some((Reply::Array(None), next)));
            }
            let len = checked_len(len)?;
            let mut items = Vec::with_capacity(len.min(1024));
            let mut at = next;
            for _ in 0..len {
                match parse_at(buf, at, depth + 1)? {
                    Some((item, end)) => {
                        items.push(item);
                        at = end;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        other => Err(ProtocolError(format!(
            "unexpected reply type byte {:?}",
            other as char
        ))),
    }
}

/// The line starting at `pos` (without its CRLF) and where the next one starts.
fn line_at(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], pos + end + 2))
}

fn int(bytes: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(bytes))))
}

fn checked_len(len: i64) -> Result<usize, ProtocolError> {
    if len > LEN_MAX {
        return Err(ProtocolError(format!("length {len} too large")));
    }
    usize::try_from(len).map_err(|_| ProtocolError(format!("bad length {len}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_and_waits_for_more() {
        let all = b"+OK\r\n-ERR x\r\n:12\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\na\r\n*-1\r\n";
        let mut pos = 0;
        let mut got = Vec::new();
        while let Some((reply, used)) = parse(&all[pos..]).unwrap() {
            got.push(reply);
            pos += used;
        }
        assert_eq!(pos, all.len());
        assert_eq!(got.len(), 6);
        assert_eq!(got[3], Reply::Bulk(Some(b"abc".to_vec())));
        assert_eq!(
            got[5],
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"a".to_vec())),
                Reply::Array(None)
            ]))
        );
        // Every proper prefix of one reply is incomplete, never an error.
        let one = b"*2\r\n$1\r\na\r\n:-5\r\n";
        for cut in 0..one.len() {
            assert_eq!(parse(&one[..cut]).unwrap(), None, "{cut}");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":abc\r\n").is_err());
        assert!(parse(b"$3\r\nabcd\r\n").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
    }

    #[test]
    fn encodes_bulk_arrays() {
        let mut out = Vec::new();
        encode(&["SET", "k", ""], &mut out);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let mut out = Vec::new();
        for n in [0, 7, 10, 12345, u64::MAX] {
            push_decimal(&mut out, n);
            out.push(b' ');
        }
        assert_eq!(out, format!("0 7 10 12345 {} ", u64::MAX).as_bytes());
    }
}
