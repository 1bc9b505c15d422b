//! Reply encoding for RESP2 and RESP3. Commands call these methods and never write protocol
//! bytes by hand, so one command serves both protocol versions.

/// The protocol version a connection negotiated with HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

/// A reply writer appending to a connection's (or a forwarded batch's) output buffer.
pub struct Reply<'a> {
    pub buf: &'a mut Vec<u8>,
    pub proto: Proto,
}

impl<'a> Reply<'a> {
    pub fn new(buf: &'a mut Vec<u8>, proto: Proto) -> Self {
        Reply { buf, proto }
    }

    pub fn resp3(&self) -> bool {
        self.proto == Proto::Resp3
    }

    fn line(&mut self, prefix: u8, n: i64) {
        self.buf.push(prefix);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string (`+text`). The text must not contain CR or LF.
    pub fn simple(&mut self, text: &str) {
        self.buf.push(b'+');
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An error reply; `text` starts with its code (`ERR …`). CR/LF are replaced by spaces, as
    /// Redis does.
    pub fn error(&mut self, text: &str) {
        self.buf.push(b'-');
        self.buf.extend(
            text.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.line(b':', n);
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.line(b'$', data.len() as i64);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A bulk string holding the decimal form of `n`.
    pub fn bulk_int(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        let s = b.format(n);
        self.bulk(s.as_bytes());
    }

    /// The null bulk string (`$-1` / `_`).
    pub fn null(&mut self) {
        match self.proto {
            Proto::Resp2 => self.buf.extend_from_slice(b"$-1\r\n"),
            Proto::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    /// The null array (`*-1` / `_`).
    pub fn null_array(&mut self) {
        match self.proto {
            Proto::Resp2 => self.buf.extend_from_slice(b"*-1\r\n"),
            Proto::Resp3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, len: usize) {
        self.line(b'*', len as i64);
    }

    /// A map of `len` pairs (RESP2: a flat array of 2×len).
    pub fn map(&mut self, len: usize) {
        match self.proto {
            Proto::Resp2 => self.line(b'*', 2 * len as i64),
            Proto::Resp3 => self.line(b'%', len as i64),
        }
    }

    /// A set (RESP2: an array).
    pub fn set(&mut self, len: usize) {
        match self.proto {
            Proto::Resp2 => self.line(b'*', len as i64),
            Proto::Resp3 => self.line(b'~', len as i64),
        }
    }

    /// A push message header (RESP2: an array).
    pub fn push(&mut self, len: usize) {
        match self.proto {
            Proto::Resp2 => self.line(b'*', len as i64),
            Proto::Resp3 => self.line(b'>', len as i64),
        }
    }

    /// A double: RESP3 `,` or, in RESP2, a bulk string, both formatted as Redis 7.0 does.
    pub fn double(&mut self, d: f64) {
        self.double_text(&crate::util::fmt_double_reply(d));
    }

    /// A double already formatted (GEOPOS's long-double text, …): RESP3 `,`, RESP2 a bulk
    /// string.
    pub fn double_text(&mut self, text: &str) {
        match self.proto {
            Proto::Resp2 => self.bulk(text.as_bytes()),
            Proto::Resp3 => {
                self.buf.push(b',');
                self.buf.extend_from_slice(text.as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// A boolean: RESP3 `#t`/`#f`, RESP2 `:1`/`:0`.
    pub fn boolean(&mut self, b: bool) {
        match self.proto {
            Proto::Resp2 => self.int(b as i64),
            Proto::Resp3 => self
                .buf
                .extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" }),
        }
    }

    /// A verbatim string (RESP3 `=`, format `txt`), a bulk string in RESP2.
    pub fn verbatim(&mut self, data: &[u8]) {
        match self.proto {
            Proto::Resp2 => self.bulk(data),
            Proto::Resp3 => {
                self.line(b'=', data.len() as i64 + 4);
                self.buf.extend_from_slice(b"txt:");
                self.buf.extend_from_slice(data);
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// A big number (RESP3 `(`), a bulk string in RESP2.
    pub fn big_number(&mut self, digits: &str) {
        match self.proto {
            Proto::Resp2 => self.bulk(digits.as_bytes()),
            Proto::Resp3 => {
                self.buf.push(b'(');
                self.buf.extend_from_slice(digits.as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// An array of bulk strings.
    pub fn bulks<I, T>(&mut self, items: I)
    where
        I: ExactSizeIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.array(items.len());
        for item in items {
            self.bulk(item.as_ref());
        }
    }

    /// An array of simple strings (the HELP subcommands' replies).
    pub fn simples(&mut self, lines: &[&str]) {
        self.array(lines.len());
        for l in lines {
            self.simple(l);
        }
    }

    /// Raw, already encoded bytes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let mut b = Vec::new();
        let mut r = Reply::new(&mut b, Proto::Resp2);
        r.null();
        r.map(1);
        r.double(1.5);
        r.error("ERR a\nb");
        assert_eq!(b, b"$-1\r\n*2\r\n$3\r\n1.5\r\n-ERR a b\r\n");
        let mut b = Vec::new();
        let mut r = Reply::new(&mut b, Proto::Resp3);
        r.null();
        r.map(1);
        r.double(f64::INFINITY);
        r.boolean(true);
        assert_eq!(b, b"_\r\n%1\r\n,inf\r\n#t\r\n");
    }
}
