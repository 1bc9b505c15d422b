//! Reading an append-only file: the RESP commands a shard's propagation log
//! ([`crate::prop`]) wrote, and replaying them on a shard.
//!
//! [`Reader`] walks a byte slice of commands (arrays of bulk strings, nothing else) and yields
//! each with its byte offset, grouping `MULTI … EXEC` blocks so that a caller applies a block
//! only when its `EXEC` was written. It tells a torn tail (the bytes end inside a command or
//! inside a `MULTI` block: the file was cut while being written, and the valid prefix ends at
//! a known offset) from corruption (bytes present that are not a command). It never panics and
//! borrows every argument from the input.
//!
//! [`replay`] applies what a reader yields to a shard through the engine's ordinary command
//! path. Like Redis while loading, it expires nothing: commands run at time 0, so a key whose
//! deadline passed is deleted only by the `DEL` the log holds for it, at the point the original
//! shard deleted it. The log holds absolute deadlines only, so nothing else reads the clock.

use crate::cmd::lookup;
use crate::limits::{BULK_LEN_MAX_DEFAULT, DATABASES};
use crate::resp::Proto;
use crate::util::{eq_ic, parse_i64};
use crate::{Error, Shard};

/// One command read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    /// Where the command starts in the input.
    pub offset: usize,
    /// Its arguments, the name first.
    pub argv: Vec<&'a [u8]>,
}

/// What the reader yields: a command, or a whole transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    Command(Command<'a>),
    /// A `MULTI … EXEC` block whose `EXEC` was read.
    Transaction {
        /// Where its `MULTI` starts.
        offset: usize,
        /// The commands between `MULTI` and `EXEC` (`SELECT`s included).
        commands: Vec<Command<'a>>,
        /// The `EXEC` (its arguments after the name: a cross-shard transaction's
        /// `<txid> <participants>`).
        exec: Command<'a>,
    },
}

/// Why reading stopped before the end of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AofError {
    /// The input ends inside a command or inside a `MULTI` block (a torn write): everything
    /// before `offset` is whole, and the file may be truncated there.
    Torn { offset: usize },
    /// Bytes at `offset` that are not what a log holds.
    Corrupt { offset: usize, message: String },
}

impl std::fmt::Display for AofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AofError::Torn { offset } => write!(f, "torn tail after offset {offset}"),
            AofError::Corrupt { offset, message } => write!(f, "at offset {offset}: {message}"),
        }
    }
}

impl std::error::Error for AofError {}

/// The longest number line (`*count` or `$len`) a log holds.
const NUMBER_LINE_MAX: usize = 20;

/// Reads entries from a byte slice; stops after the first error.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            failed: false,
        }
    }

    /// Where the next entry starts (after the last one read whole).
    pub fn offset(&self) -> usize {
        self.pos
    }

    fn corrupt<T>(offset: usize, message: impl Into<String>) -> Result<T, AofError> {
        Err(AofError::Corrupt {
            offset,
            message: message.into(),
        })
    }

    /// Reads a line `<tag><digits>\r\n` at `at`; returns the number and where the line ends.
    /// Running out of bytes on a valid prefix is a torn tail at `start`.
    fn number(&self, at: usize, tag: u8, start: usize) -> Result<(i64, usize), AofError> {
        let b = self.bytes;
        let torn = Err(AofError::Torn { offset: start });
        match b.get(at) {
            None => return torn,
            Some(&c) if c != tag => {
                return Self::corrupt(at, format!("expected '{}'", tag as char));
            }
            Some(_) => {}
        }
        let digits_at = at + 1;
        let mut i = digits_at;
        while i < b.len() && b[i].is_ascii_digit() && i - digits_at < NUMBER_LINE_MAX {
            i += 1;
        }
        if i == b.len() {
            return torn;
        }
        if b[i] != b'\r' {
            return Self::corrupt(i, "bad number line");
        }
        match b.get(i + 1) {
            None => return torn,
            Some(&b'\n') => {}
            Some(_) => return Self::corrupt(i + 1, "expected LF"),
        }
        match parse_i64(&b[digits_at..i]) {
            Some(n) => Ok((n, i + 2)),
            None => Self::corrupt(digits_at, "bad number"),
        }
    }

    /// Reads one command at the current position; `None` at the end of the input.
    fn command(&mut self) -> Result<Option<Command<'a>>, AofError> {
        let start = self.pos;
        if start == self.bytes.len() {
            return Ok(None);
        }
        let (count, mut p) = self.number(start, b'*', start)?;
        if count < 1 {
            return Self::corrupt(start, "empty command");
        }
        let mut argv = Vec::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
            let (len, data) = self.number(p, b'$', start)?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= BULK_LEN_MAX_DEFAULT)
                .map_or_else(|| Self::corrupt(p, "bad bulk length"), Ok)?;
            let end = data + len;
            if self.bytes.len() < end + 2 {
                // Whatever is there of the CRLF must be right.
                let tail = &self.bytes[end.min(self.bytes.len())..];
                if !b"\r\n".starts_with(tail) {
                    return Self::corrupt(end, "expected CRLF after bulk");
                }
                return Err(AofError::Torn { offset: start });
            }
            if &self.bytes[end..end + 2] != b"\r\n" {
                return Self::corrupt(end, "expected CRLF after bulk");
            }
            argv.push(&self.bytes[data..end]);
            p = end + 2;
        }
        self.pos = p;
        Ok(Some(Command {
            offset: start,
            argv,
        }))
    }

    /// Reads the commands of a block after its `MULTI` (at `offset`), through its `EXEC`.
    fn transaction(&mut self, offset: usize) -> Result<Entry<'a>, AofError> {
        let mut commands = Vec::new();
        loop {
            let cmd = match self.command() {
                Ok(Some(cmd)) => cmd,
                // A block cut short, by the end or a torn command, was never committed.
                Ok(None) | Err(AofError::Torn { .. }) => return Err(AofError::Torn { offset }),
                Err(e) => return Err(e),
            };
            if is(&cmd, "exec") {
                return Ok(Entry::Transaction {
                    offset,
                    commands,
                    exec: cmd,
                });
            }
            if is(&cmd, "multi") {
                return Self::corrupt(cmd.offset, "MULTI inside MULTI");
            }
            commands.push(cmd);
        }
    }

    fn entry(&mut self) -> Result<Option<Entry<'a>>, AofError> {
        let Some(cmd) = self.command()? else {
            return Ok(None);
        };
        if is(&cmd, "exec") {
            return Self::corrupt(cmd.offset, "EXEC without MULTI");
        }
        if is(&cmd, "multi") {
            if cmd.argv.len() != 1 {
                return Self::corrupt(cmd.offset, "MULTI with arguments");
            }
            let start = self.pos;
            return self.transaction(cmd.offset).map(Some).inspect_err(|_| {
                // Leave the position at the block's start: it is where the valid prefix ends.
                self.pos = start;
            });
        }
        Ok(Some(Entry::Command(cmd)))
    }
}

/// Whether `cmd` is the command `name`.
fn is(cmd: &Command, name: &str) -> bool {
    eq_ic(cmd.argv[0], name)
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Entry<'a>, AofError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = self.entry().transpose();
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

/// A command of the log that the shard refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub offset: usize,
    /// The error reply's text.
    pub error: String,
}

/// What [`replay`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Commands applied (not counting SELECT, MULTI and EXEC).
    pub commands: u64,
    /// Transactions applied.
    pub transactions: u64,
    /// Transactions skipped because `accept` refused their EXEC.
    pub skipped: u64,
    /// Where the input ends, or where its valid prefix ends when its tail is torn.
    pub end: usize,
    /// Whether the tail is torn (a cut command or a MULTI without EXEC after `end`).
    pub torn: bool,
    /// Commands that failed, in order (none, for a log this engine wrote).
    pub failed: Vec<Failure>,
    /// The database selected at the end.
    pub db: usize,
}

/// Applies a log to `shard`, from database 0: every command through the engine, `SELECT`
/// switching the database, a transaction only if its `EXEC` is present and `accept` takes the
/// `EXEC`'s arguments (after the name; the SELECTs of a refused block still apply). Nothing is expired and nothing is logged meanwhile
/// (`shard.prop` is set aside), and no statistics are counted. A torn tail is reported, not an
/// error; corruption is an error, with the commands before it applied (the caller discards the
/// shard or truncates the file). A command the engine refuses does not stop the replay: it is
/// reported in [`Replayed::failed`] with its offset.
pub fn replay(
    shard: &mut Shard,
    bytes: &[u8],
    mut accept: impl FnMut(&[&[u8]]) -> bool,
) -> Result<Replayed, AofError> {
    let prop = shard.prop.take();
    let (counting, dirty) = (shard.counting, shard.stats.dirty);
    shard.counting = false;
    let mut r = Replayed::default();
    let result = replay_entries(shard, bytes, &mut accept, &mut r);
    shard.prop = prop;
    shard.counting = counting;
    shard.stats.dirty = dirty;
    result.map(|()| r)
}

fn replay_entries(
    shard: &mut Shard,
    bytes: &[u8],
    accept: &mut impl FnMut(&[&[u8]]) -> bool,
    r: &mut Replayed,
) -> Result<(), AofError> {
    let mut reader = Reader::new(bytes);
    let mut out = Vec::new();
    for entry in reader.by_ref() {
        let entry = match entry {
            Ok(e) => e,
            Err(AofError::Torn { offset }) => {
                r.end = offset;
                r.torn = true;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        match entry {
            Entry::Command(cmd) => apply(shard, &cmd, r, &mut out)?,
            Entry::Transaction { commands, exec, .. } => {
                if !accept(&exec.argv[1..]) {
                    // Its commands are skipped, not its SELECTs: the commands after it were
                    // logged in the database it left selected.
                    for cmd in commands.iter().filter(|c| is(c, "select")) {
                        apply(shard, cmd, r, &mut out)?;
                    }
                    r.skipped += 1;
                    continue;
                }
                for cmd in &commands {
                    apply(shard, cmd, r, &mut out)?;
                }
                r.transactions += 1;
            }
        }
    }
    r.end = reader.offset();
    Ok(())
}

/// Applies one command (or a SELECT) at time 0.
fn apply(
    shard: &mut Shard,
    cmd: &Command,
    r: &mut Replayed,
    out: &mut Vec<u8>,
) -> Result<(), AofError> {
    if is(cmd, "select") {
        let db = match cmd.argv[..] {
            [_, n] => parse_i64(n).and_then(|n| usize::try_from(n).ok()),
            _ => None,
        };
        return match db.filter(|&d| d < DATABASES) {
            Some(d) => {
                r.db = d;
                Ok(())
            }
            None => Reader::corrupt(cmd.offset, "bad SELECT"),
        };
    }
    let fail = |r: &mut Replayed, e: Error| {
        r.failed.push(Failure {
            offset: cmd.offset,
            error: e.text(),
        })
    };
    let l = match lookup(&cmd.argv) {
        Ok(l) => l,
        Err(e) => {
            fail(r, e);
            return Ok(());
        }
    };
    out.clear();
    match shard.execute(l, &cmd.argv, r.db, 0, Proto::Resp2, out) {
        Ok(()) => r.commands += 1,
        Err(Error::Blocked(_)) => fail(r, Error::err("blocking command in the log")),
        Err(e) => fail(r, e),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::encode_command;

    fn cmd(argv: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        encode_command(&argv, &mut out);
        out
    }

    /// A sample log: commands, a transaction with EXEC arguments, more commands.
    fn sample() -> (Vec<u8>, Vec<usize>) {
        let parts = [
            cmd(&["SELECT", "0"]),
            cmd(&["SET", "a", "1"]),
            cmd(&["MULTI"]),
            cmd(&["RPUSH", "l", "x", "y"]),
            cmd(&["SELECT", "2"]),
            cmd(&["SET", "b", "line\r\nbreak"]),
            cmd(&["EXEC", "17", "0,3"]),
            cmd(&["SELECT", "0"]),
            cmd(&["DEL", "a"]),
            cmd(&["SET", "c", ""]),
        ];
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for p in &parts {
            starts.push(bytes.len());
            bytes.extend_from_slice(p);
        }
        (bytes, starts)
    }

    fn read_all(bytes: &[u8]) -> (Vec<Entry<'_>>, Option<AofError>) {
        let mut entries = Vec::new();
        for e in Reader::new(bytes) {
            match e {
                Ok(e) => entries.push(e),
                Err(e) => return (entries, Some(e)),
            }
        }
        (entries, None)
    }

    #[test]
    fn reads_commands_and_transactions_with_offsets() {
        let (bytes, starts) = sample();
        let (entries, err) = read_all(&bytes);
        assert_eq!(err, None);
        assert_eq!(entries.len(), 6);
        let Entry::Transaction {
            offset,
            commands,
            exec,
        } = &entries[2]
        else {
            panic!("not a transaction: {:?}", entries[2]);
        };
        assert_eq!(*offset, starts[2]);
        assert_eq!(commands.len(), 3);
        assert_eq!(commands[2].argv[2], b"line\r\nbreak");
        assert_eq!(commands[1].offset, starts[4]);
        assert_eq!(exec.argv[1..], [b"17".as_slice(), b"0,3"]);
        assert_eq!(exec.offset, starts[6]);
        let Entry::Command(last) = &entries[5] else {
            panic!()
        };
        assert_eq!(last.argv, [b"SET".as_slice(), b"c", b""]);
        assert_eq!(last.offset, starts[9]);
    }

    /// Cutting the sample anywhere gives a torn tail at the last whole entry (at the MULTI for
    /// a cut inside the block), and never corruption.
    #[test]
    fn torn_tail_at_every_byte() {
        let (bytes, starts) = sample();
        let (multi, after_exec) = (starts[2], starts[7]);
        for cut in 0..bytes.len() {
            let (entries, err) = read_all(&bytes[..cut]);
            let whole = starts
                .iter()
                .filter(|&&s| s <= cut)
                .max()
                .copied()
                .unwrap_or(0);
            let expected = if (multi..after_exec).contains(&whole) && cut < after_exec {
                multi
            } else {
                whole
            };
            if starts.contains(&cut) && !(multi < cut && cut < after_exec) {
                assert_eq!(err, None, "cut at {cut}");
            } else {
                assert_eq!(
                    err,
                    Some(AofError::Torn { offset: expected }),
                    "cut at {cut}"
                );
            }
            let read_to = entries.last().map_or(0, |e| match e {
                Entry::Command(c) => c.offset,
                Entry::Transaction { exec, .. } => exec.offset,
            });
            assert!(read_to <= cut);
        }
    }

    #[test]
    fn multi_without_exec_at_the_tail_is_torn() {
        let mut bytes = cmd(&["SET", "a", "1"]);
        let multi = bytes.len();
        bytes.extend(cmd(&["MULTI"]));
        bytes.extend(cmd(&["SET", "b", "2"]));
        let (entries, err) = read_all(&bytes);
        assert_eq!(entries.len(), 1);
        assert_eq!(err, Some(AofError::Torn { offset: multi }));
        let mut t = Shard::new(0, 1, 1);
        let r = replay(&mut t, &bytes, |_| true).unwrap();
        assert_eq!((r.commands, r.end, r.torn), (1, multi, true));
        assert!(t.dbs[0].peek(b"b", 0).is_none());
    }

    #[test]
    fn garbage_in_the_middle_is_corruption() {
        let good = cmd(&["SET", "a", "1"]);
        let cases: &[(&[u8], usize)] = &[
            (b"+OK\r\n", 0),
            (b"*2\r\n$3\r\nDEL\r\n:1\r\n", 13),
            (b"*1\r\n$3\r\nDELxx", 11),
            (b"*x\r\n", 1),
            (b"*0\r\n", 0),
            (b"*1\r\n$-1\r\n", 5),
            (b"*1\r\n$4\r\nEXEC\r\n", 0),
            (b"*1\r\n$1\r\nX\n", 9),
        ];
        for (garbage, at) in cases {
            let mut bytes = good.clone();
            bytes.extend_from_slice(garbage);
            bytes.extend_from_slice(&good);
            let (entries, err) = read_all(&bytes);
            assert_eq!(entries.len(), 1, "{garbage:?}");
            match err {
                Some(AofError::Corrupt { offset, .. }) => {
                    assert_eq!(offset, good.len() + at, "{garbage:?}")
                }
                other => panic!("{garbage:?}: {other:?}"),
            }
        }
        let mut nested = cmd(&["MULTI"]);
        nested.extend(cmd(&["MULTI"]));
        let (_, err) = read_all(&nested);
        assert!(matches!(err, Some(AofError::Corrupt { offset: 15, .. })));
        let mut t = Shard::new(0, 1, 1);
        let mut bytes = good.clone();
        bytes.extend_from_slice(b"garbage");
        assert!(matches!(
            replay(&mut t, &bytes, |_| true),
            Err(AofError::Corrupt { .. })
        ));
        assert!(t.dbs[0].peek(b"a", 0).is_some());
    }

    #[test]
    fn replay_applies_selects_and_accepted_transactions() {
        let (bytes, starts) = sample();
        let mut t = Shard::new(0, 1, 1);
        let r = replay(&mut t, &bytes, |args| args == [b"17".as_slice(), b"0,3"]).unwrap();
        assert_eq!(
            r,
            Replayed {
                commands: 5,
                transactions: 1,
                skipped: 0,
                end: bytes.len(),
                torn: false,
                failed: vec![],
                db: 0,
            }
        );
        assert!(t.dbs[0].peek(b"a", 0).is_none() && t.dbs[0].peek(b"l", 0).is_some());
        assert!(t.dbs[2].peek(b"b", 0).is_some() && t.dbs[0].peek(b"c", 0).is_some());
        assert_eq!(t.stats.commands, 0);
        // A refused EXEC skips its block; a refused command is reported, not skipped silently.
        let mut t = Shard::new(0, 1, 1);
        let mut bad = bytes.clone();
        let nosuch = bad.len();
        bad.extend(cmd(&["NOSUCH", "x"]));
        bad.extend(cmd(&["LPUSH", "c", "x"]));
        let r = replay(&mut t, &bad, |_| false).unwrap();
        assert_eq!((r.commands, r.skipped), (3, 1));
        assert!(t.dbs[0].peek(b"l", 0).is_none());
        assert!(t.dbs[0].peek(b"c", 0).is_some());
        assert_eq!(r.failed.len(), 2);
        assert_eq!(r.failed[0].offset, nosuch);
        assert!(r.failed[1].error.starts_with("WRONGTYPE"), "{:?}", r.failed);
        assert!(starts.len() > 1);
    }
}
