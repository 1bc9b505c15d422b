//! The propagation log: the effects of write commands, in RESP, as Redis propagates them to its
//! AOF and replicas.
//!
//! What a shard logs is the *effect* of each command that changed data, never a command whose
//! result depends on the clock, the random generator or on having blocked: replaying the log on
//! an empty shard, at any later time and with any seed, rebuilds the same data. By default a
//! command's effect is its own arguments; a command whose effect is not a pure function of the
//! data and its arguments records its rewrite(s) while it runs ([`crate::Shard::rewrite`]), and
//! keys deleted because they expired are logged as `DEL key` before the command that found them.
//!
//! Logging costs one branch per command while it is off (`Shard::prop` is `None`).
//!
//! The rewrites, as Redis 7 propagates them:
//!
//! | command | logged as |
//! |---|---|
//! | EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (any NX/XX/GT/LT) | `PEXPIREAT key ms`, or `DEL key` for a deadline already past |
//! | SET with options, SETEX, PSETEX, GETSET | `SET key value [PXAT ms \| KEEPTTL]` (NX/XX/GET dropped) |
//! | GETEX | `PEXPIREAT key ms`, `DEL key` (past EXAT/PXAT), `PERSIST key` |
//! | GETDEL | `DEL key` |
//! | INCRBYFLOAT / HINCRBYFLOAT | `SET key result KEEPTTL` / `HSET key field result` |
//! | SPOP | `SREM key member…` (batches of `PROPAGATE_BATCH_ARGS`), `DEL key` when a count took all |
//! | BLPOP, BRPOP | `LPOP key` / `RPOP key` |
//! | LMPOP, BLMPOP | `LPOP key n` / `RPOP key n` (n: elements popped) |
//! | BLMOVE, BRPOPLPUSH | `LMOVE …` / `RPOPLPUSH src dst` |
//! | ZMPOP, BZMPOP, BZPOPMIN, BZPOPMAX, ZPOPMIN, ZPOPMAX | `ZPOPMIN key n` / `ZPOPMAX key n` |
//! | RESTORE with a relative TTL | the same arguments with the deadline, plus `ABSTTL`; `DEL key` when a past deadline deleted the old key |
//! | XCLAIM, XAUTOCLAIM | per pending entry claimed, or dropped because its entry was deleted: `XCLAIM key group owner 0 id TIME ms RETRYCOUNT n FORCE JUSTID LASTID last-id` (absolute time; replayed at clock 0, TIME stands); an XCLAIM whose LASTID alone moved the group: `XGROUP SETID key group id ENTRIESREAD n` |
//! | a key found expired (lazily, by RANDOMKEY, or by the active cycle) | `DEL key`, before the command that found it |
//!
//! Every other write is logged as its own arguments: its effect is a function of the data and
//! its arguments (SORT … STORE sorts a set it stores; PFCOUNT, which writes only its cached
//! count, is logged as itself as Redis does, and recomputes the same cache when replayed).

use crate::keyspace::Key;
use crate::resp::encode_command;

/// The effects of write commands, in RESP, for the AOF (and later replicas).
#[derive(Debug, Default)]
pub struct Propagate {
    /// RESP commands, `SELECT`s included where the database changes.
    pub buf: Vec<u8>,
    /// The database the commands in `buf` apply to so far (None: no SELECT written yet). A
    /// consumer that starts a new file sets it to None, so the file starts with a SELECT.
    pub db: Option<usize>,
}

impl Propagate {
    /// Appends one command for database `db` (writing `SELECT db` first when it differs from
    /// `self.db`).
    pub fn command(&mut self, db: usize, argv: &[&[u8]]) {
        self.select(db);
        encode_command(argv, &mut self.buf);
    }

    /// Writes `SELECT db` unless the commands so far already apply to `db`.
    fn select(&mut self, db: usize) {
        if self.db != Some(db) {
            let mut num = itoa::Buffer::new();
            encode_command(&[b"SELECT", num.format(db).as_bytes()], &mut self.buf);
            self.db = Some(db);
        }
    }

    /// Appends one command already encoded in RESP, for database `db`.
    fn encoded(&mut self, db: usize, resp: &[u8]) {
        self.select(db);
        self.buf.extend_from_slice(resp);
    }
}

/// The effects one call recorded itself, replacing its own arguments in the log (Redis's
/// `rewriteClientCommandVector` and `alsoPropagate`). Emptied before every call.
#[derive(Debug, Default)]
pub(crate) struct Rewrites {
    /// The recorded commands, encoded back to back.
    bytes: Vec<u8>,
    /// For each recorded command: its database and where its encoding ends in `bytes`.
    cmds: Vec<(usize, usize)>,
    /// The call is never logged as its own arguments, only as what it recorded (Redis's
    /// `preventCommandPropagation`: XREADGROUP logs only its XCLAIMs and XGROUPs).
    suppressed: bool,
}

impl Rewrites {
    /// Whether the call recorded nothing (it is then logged as its own arguments).
    pub(crate) fn is_empty(&self) -> bool {
        self.cmds.is_empty() && !self.suppressed
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.cmds.clear();
        self.suppressed = false;
    }

    /// Logs the call as what it records, possibly nothing, never as its own arguments.
    pub(crate) fn suppress(&mut self) {
        self.suppressed = true;
    }

    pub(crate) fn push(&mut self, db: usize, argv: &[&[u8]]) {
        encode_command(argv, &mut self.bytes);
        self.cmds.push((db, self.bytes.len()));
    }

    /// Appends the recorded commands to `p`.
    pub(crate) fn drain_into(&mut self, p: &mut Propagate) {
        let mut start = 0;
        for &(db, end) in &self.cmds {
            p.encoded(db, &self.bytes[start..end]);
            start = end;
        }
        self.clear();
    }
}

/// Appends `DEL key` for each key of database `db` that expired, and empties `keys`.
pub(crate) fn expired_into(p: &mut Propagate, db: usize, keys: &mut Vec<Key>) {
    for k in keys.drain(..) {
        p.command(db, &[b"DEL", k.as_slice()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_written_only_when_the_database_changes() {
        let mut p = Propagate::default();
        p.command(0, &[b"SET", b"k", b"v"]);
        p.command(0, &[b"DEL", b"k"]);
        p.command(3, &[b"DEL", b""]);
        assert_eq!(p.db, Some(3));
        assert_eq!(
            String::from_utf8_lossy(&p.buf),
            "*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n\
             *2\r\n$3\r\nDEL\r\n$1\r\nk\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*2\r\n$3\r\nDEL\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn rewrites_keep_their_databases() {
        let mut r = Rewrites::default();
        r.push(1, &[b"A"]);
        r.push(2, &[b"B"]);
        let mut p = Propagate {
            buf: Vec::new(),
            db: Some(1),
        };
        r.drain_into(&mut p);
        assert!(r.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&p.buf),
            "*1\r\n$1\r\nA\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n*1\r\n$1\r\nB\r\n"
        );
    }
}
