//! Request parsing. `parse_command` is given the unread part of a connection's query buffer and
//! either finds one whole command in it (returning the argument ranges and the bytes consumed),
//! reports that more bytes are needed, or reports a protocol error with Redis's text.
//!
//! It never panics and never allocates more than the argument index: arguments are ranges into
//! the caller's buffer, except for inline commands with quotes or escapes, whose unescaped
//! arguments are appended to `scratch` (ranges then point past the buffer, into scratch).

use crate::limits::{INLINE_LEN_MAX, MULTIBULK_LEN_MAX};
use std::ops::Range;

/// A protocol violation; the connection answers `-ERR Protocol error: <text>` and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl ProtocolError {
    /// The full error reply text, without `-` and CRLF.
    pub fn reply_text(&self) -> String {
        format!("ERR Protocol error: {}", self.0)
    }
}

/// Limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// `proto-max-bulk-len`.
    pub bulk_len_max: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            bulk_len_max: crate::limits::BULK_LEN_MAX_DEFAULT,
        }
    }
}

/// Where the argument bytes of a parsed command live.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole command yet.
    Incomplete,
    /// An empty command (`*0`, `*-1`, a blank inline line): skip `consumed` bytes.
    Empty { consumed: usize },
    /// A command whose argument ranges index the input buffer.
    Command { consumed: usize },
    /// An inline command whose argument ranges index the scratch buffer.
    Inline { consumed: usize },
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        match buf[i + 1..].iter().position(|&b| b == b'\n') {
            Some(p) => {
                let nl = i + 1 + p;
                if buf[nl - 1] == b'\r' {
                    return Some(nl - 1);
                }
                i = nl;
            }
            None => return None,
        }
    }
    None
}

/// Parses a decimal integer the way Redis's `string2ll` does (no `+`, no leading zeros except `0`).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    crate::util::parse_i64(s)
}

/// Parses one command from the front of `buf`.
///
/// On success `args` holds the argument ranges: into `buf` for [`Parsed::Command`], into
/// `scratch` for [`Parsed::Inline`].
pub fn parse_command(
    buf: &[u8],
    args: &mut Vec<Range<usize>>,
    scratch: &mut Vec<u8>,
    limits: ParseLimits,
) -> Result<Parsed, ProtocolError> {
    args.clear();
    if buf.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    if buf[0] == b'*' {
        parse_multibulk(buf, args, limits)
    } else {
        parse_inline(buf, args, scratch)
    }
}

fn parse_multibulk(
    buf: &[u8],
    args: &mut Vec<Range<usize>>,
    limits: ParseLimits,
) -> Result<Parsed, ProtocolError> {
    let Some(end) = find_crlf(buf, 0) else {
        if buf.len() > INLINE_LEN_MAX {
            return Err(ProtocolError("too big mbulk count string"));
        }
        return Ok(Parsed::Incomplete);
    };
    if end > INLINE_LEN_MAX {
        return Err(ProtocolError("too big mbulk count string"));
    }
    let count = match parse_i64(&buf[1..end]) {
        Some(n) if n <= MULTIBULK_LEN_MAX => n,
        _ => return Err(ProtocolError("invalid multibulk length")),
    };
    let mut pos = end + 2;
    if count <= 0 {
        return Ok(Parsed::Empty { consumed: pos });
    }
    // Reserve modestly: the count is client-controlled.
    args.reserve((count as usize).min(1024));
    for _ in 0..count {
        if pos >= buf.len() {
            return Ok(Parsed::Incomplete);
        }
        if buf[pos] != b'$' {
            return Err(ProtocolError(expected_dollar(buf[pos])));
        }
        let Some(end) = find_crlf(buf, pos) else {
            if buf.len() - pos > INLINE_LEN_MAX {
                return Err(ProtocolError("too big bulk count string"));
            }
            return Ok(Parsed::Incomplete);
        };
        if end - pos > INLINE_LEN_MAX {
            return Err(ProtocolError("too big bulk count string"));
        }
        let len = match parse_i64(&buf[pos + 1..end]) {
            Some(n) if n >= 0 && (n as u64) <= limits.bulk_len_max as u64 => n as usize,
            _ => return Err(ProtocolError("invalid bulk length")),
        };
        let start = end + 2;
        if buf.len() < start + len + 2 {
            return Ok(Parsed::Incomplete);
        }
        // Redis does not check the CRLF after a bulk; it skips two bytes.
        args.push(start..start + len);
        pos = start + len + 2;
    }
    Ok(Parsed::Command { consumed: pos })
}

/// Redis reports the offending byte as a character.
fn expected_dollar(got: u8) -> &'static str {
    // Protocol errors carry static text; build it once per byte value.
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..=255u8)
            .map(|b| format!("expected '$', got '{}'", b as char))
            .collect()
    });
    texts[got as usize].as_str()
}

fn parse_inline(
    buf: &[u8],
    args: &mut Vec<Range<usize>>,
    scratch: &mut Vec<u8>,
) -> Result<Parsed, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > INLINE_LEN_MAX {
            return Err(ProtocolError("too big inline request"));
        }
        return Ok(Parsed::Incomplete);
    };
    if nl > INLINE_LEN_MAX {
        return Err(ProtocolError("too big inline request"));
    }
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    scratch.clear();
    if !split_args(line, args, scratch) {
        return Err(ProtocolError("unbalanced quotes in request"));
    }
    if args.is_empty() {
        return Ok(Parsed::Empty { consumed: nl + 1 });
    }
    Ok(Parsed::Inline { consumed: nl + 1 })
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline line into arguments the way Redis's `sdssplitargs` does: whitespace
/// separated, with "double quotes" (and \n \r \t \b \a \\ \" \xHH escapes) and 'single quotes'
/// (only \' escaped). A closing quote must be followed by whitespace or the end. Returns false
/// on unbalanced quotes.
pub fn split_args(line: &[u8], args: &mut Vec<Range<usize>>, out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return true;
        }
        let start = out.len();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= line.len() {
                    return false;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && hex_val(line[i + 2]).is_some()
                    && hex_val(line[i + 3]).is_some()
                {
                    let v =
                        hex_val(line[i + 2]).unwrap_or(0) * 16 + hex_val(line[i + 3]).unwrap_or(0);
                    out.push(v);
                    i += 3;
                } else if c == b'\\' && i + 1 < line.len() {
                    i += 1;
                    out.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return false;
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                }
            } else if in_sq {
                if i >= line.len() {
                    return false;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < line.len() && line[i + 1] == b'\'' {
                    i += 1;
                    out.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return false;
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                }
            } else {
                if i >= line.len() {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => out.push(c),
                }
            }
            i += 1;
        }
        args.push(start..out.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(buf: &[u8]) -> Result<(Parsed, Vec<Vec<u8>>), ProtocolError> {
        let mut args = Vec::new();
        let mut scratch = Vec::new();
        let p = parse_command(buf, &mut args, &mut scratch, ParseLimits::default())?;
        let src: &[u8] = if matches!(p, Parsed::Inline { .. }) {
            &scratch
        } else {
            buf
        };
        Ok((p, args.iter().map(|r| src[r.clone()].to_vec()).collect()))
    }

    #[test]
    fn multibulk() {
        let (p, a) = parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest").unwrap();
        assert_eq!(p, Parsed::Command { consumed: 20 });
        assert_eq!(a, vec![b"GET".to_vec(), b"k".to_vec()]);
        assert_eq!(
            parse(b"*2\r\n$3\r\nGET\r\n$1\r\n").unwrap().0,
            Parsed::Incomplete
        );
        assert_eq!(parse(b"*0\r\n").unwrap().0, Parsed::Empty { consumed: 4 });
        assert_eq!(parse(b"*-1\r\n").unwrap().0, Parsed::Empty { consumed: 5 });
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"*x\r\n").unwrap_err().0, "invalid multibulk length");
        assert_eq!(
            parse(b"*1\r\n$-1\r\n").unwrap_err().0,
            "invalid bulk length"
        );
        assert_eq!(
            parse(b"*1\r\nfoo\r\n").unwrap_err().0,
            "expected '$', got 'f'"
        );
        assert_eq!(
            parse(b"set \"a b\r\n").unwrap_err().0,
            "unbalanced quotes in request"
        );
        let big = vec![b'a'; INLINE_LEN_MAX + 1];
        assert_eq!(parse(&big).unwrap_err().0, "too big inline request");
        let mut big = b"*1\r\n$".to_vec();
        big.extend(vec![b'1'; INLINE_LEN_MAX + 1]);
        assert_eq!(parse(&big).unwrap_err().0, "too big bulk count string");
        assert_eq!(
            parse(b"*1\r\n$536870913\r\n").unwrap_err().0,
            "invalid bulk length"
        );
    }

    #[test]
    fn inline() {
        let (p, a) = parse(b"set \"a\\x41\\n\" 'it\\'s'\r\n").unwrap();
        assert!(matches!(p, Parsed::Inline { consumed: 23 }));
        assert_eq!(a, vec![b"set".to_vec(), b"aA\n".to_vec(), b"it's".to_vec()]);
        assert_eq!(parse(b"\r\n").unwrap().0, Parsed::Empty { consumed: 2 });
        assert_eq!(parse(b"PING\n").unwrap().1, vec![b"PING".to_vec()]);
        assert_eq!(parse(b"PING").unwrap().0, Parsed::Incomplete);
        assert!(parse(b"get \"a\"b\n").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&data);
        }

        #[test]
        fn split_anywhere(cmds in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5), 1..6),
            cut in 0usize..1000) {
            // Encode commands, split the stream at an arbitrary point: feeding the prefix must
            // never yield a wrong command, and the whole stream yields exactly the commands.
            let mut stream = Vec::new();
            for c in &cmds {
                stream.extend(format!("*{}\r\n", c.len()).as_bytes());
                for a in c {
                    stream.extend(format!("${}\r\n", a.len()).as_bytes());
                    stream.extend(a);
                    stream.extend(b"\r\n");
                }
            }
            let cut = cut % (stream.len() + 1);
            let prefix = &stream[..cut];
            let mut pos = 0;
            let mut got = Vec::new();
            loop {
                match parse(&prefix[pos..]).unwrap() {
                    (Parsed::Command { consumed }, a) => { got.push(a); pos += consumed; }
                    (Parsed::Incomplete, _) => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            prop_assert_eq!(&got[..], &cmds[..got.len()]);
            let mut pos = 0;
            let mut all = Vec::new();
            while pos < stream.len() {
                match parse(&stream[pos..]).unwrap() {
                    (Parsed::Command { consumed }, a) => { all.push(a); pos += consumed; }
                    other => panic!("unexpected {other:?}"),
                }
            }
            prop_assert_eq!(all, cmds);
        }
    }
}
