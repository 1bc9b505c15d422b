//! RDB files (Redis 7.0, RDB version 10): a streaming writer and a reader over a file held in
//! memory.
//!
//! A file is the magic `REDIS0010`, auxiliary fields, then per database a `SELECTDB` (and a
//! `RESIZEDB` hint) followed by its keys, then `EOF` and the CRC64 of everything before the
//! checksum. A key is an optional `EXPIRETIME_MS`, the object's type byte, the key string and
//! the object's body (the object codec of [`crate::rdb`]).
//!
//! Writing is split in two so that a snapshot can write keys in any order and in pieces:
//! - a [`Section`] collects the key records of one database; every piece it hands out starts
//!   with its own `SELECTDB`, so pieces of different databases may be interleaved in the file
//!   in any order (Redis's loader accepts a database selected again later);
//! - a [`FileWriter`] frames the pieces: header and aux fields first, the `EOF` and checksum
//!   last, keeping a running CRC so that its bytes can be handed out (and written) as they come.
//!
//! Reading ([`FileReader`]) yields one [`RawEntry`] per key: its database, key, deadline and
//! the raw extent of its object, so a caller that keeps only some keys (those whose slot its
//! shard owns) steps over the others without building them. Input comes from disk: every
//! length is checked against the bytes left before anything is allocated, and malformed input
//! is an [`RdbError`] naming the byte offset, never a panic.

use super::{decode_body, encode_body, object_kind, put_len, put_string, skip_body, Reader};
use crate::keyspace::Db;
use crate::limits::DATABASES;
use crate::shard::ShardConfig;
use crate::types::Value;

/// The file's first bytes, before the 4-digit version.
pub const MAGIC: &[u8; 5] = b"REDIS";

/// The `redis-ver` aux field written (the Redis release whose format this is).
pub const REDIS_VER: &str = "7.0.15";

/// Opcodes: the bytes that stand where a type byte would, announcing something else.
pub mod opcode {
    /// A function library (Redis 7.0): its code as one string.
    pub const FUNCTION2: u8 = 245;
    /// A function library in the Redis 7.0 release candidates' format.
    pub const FUNCTION_PRE_GA: u8 = 246;
    /// Module auxiliary data.
    pub const MODULE_AUX: u8 = 247;
    /// The key's LRU idle time (a length), before its type byte.
    pub const IDLE: u8 = 248;
    /// The key's LFU counter (one byte), before its type byte.
    pub const FREQ: u8 = 249;
    /// An aux field: two strings.
    pub const AUX: u8 = 250;
    /// Hash table sizes for the selected database: two lengths.
    pub const RESIZEDB: u8 = 251;
    /// The next key's deadline, Unix ms, 8 bytes LE.
    pub const EXPIRETIME_MS: u8 = 252;
    /// The next key's deadline, Unix seconds, 4 bytes LE (old files).
    pub const EXPIRETIME: u8 = 253;
    /// Selects a database: a length.
    pub const SELECTDB: u8 = 254;
    /// End of the keys; the checksum follows.
    pub const EOF: u8 = 255;
}

/// Malformed or unsupported RDB file contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbError {
    /// Byte offset in the file of what could not be read.
    pub offset: usize,
    pub msg: String,
}

impl std::fmt::Display for RdbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad RDB at offset {}: {}", self.offset, self.msg)
    }
}

impl std::error::Error for RdbError {}

fn err<T>(offset: usize, msg: impl Into<String>) -> Result<T, RdbError> {
    Err(RdbError {
        offset,
        msg: msg.into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// The aux fields a file starts with besides `redis-ver` and `redis-bits`.
#[derive(Debug, Clone, Default)]
pub struct Aux {
    /// `ctime`: when the snapshot was taken, Unix seconds.
    pub ctime_s: u64,
    /// `used-mem`: the memory the dataset used, bytes.
    pub used_mem: u64,
    /// `aof-base`: whether the file is the base of an AOF.
    pub aof_base: bool,
    /// `shardis-search`: the search index definitions (their FT.CREATE commands, see
    /// `search::Indexes::encode`); not written when empty. Redis skips aux fields it does not
    /// know.
    pub search: Vec<u8>,
}

/// What a file records of a key's access clock, as Redis writes it under an LRU policy
/// (`IDLE`, seconds) or an LFU one (`FREQ`, the logarithmic counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClock {
    Idle(u64),
    Freq(u8),
}

/// Appends one key record: the deadline if any, the clock if any, the type byte, the key and
/// the object body.
fn put_entry(
    out: &mut Vec<u8>,
    key: &[u8],
    value: &Value,
    expire_ms: Option<u64>,
    clock: Option<KeyClock>,
) {
    if let Some(t) = expire_ms {
        out.push(opcode::EXPIRETIME_MS);
        out.extend_from_slice(&t.to_le_bytes());
    }
    match clock {
        Some(KeyClock::Idle(secs)) => {
            out.push(opcode::IDLE);
            put_len(out, secs);
        }
        Some(KeyClock::Freq(f)) => out.extend_from_slice(&[opcode::FREQ, f]),
        None => {}
    }
    out.push(object_kind(value));
    put_string(out, key);
    encode_body(value, out);
}

/// The key records of one database, handed out in self-contained pieces (each starts with
/// `SELECTDB`; the first also carries the `RESIZEDB` hint).
#[derive(Debug)]
pub struct Section {
    db_index: usize,
    keys: u64,
    expires: u64,
    resize_written: bool,
    buf: Vec<u8>,
}

impl Section {
    /// A section for database `db_index`, whose `RESIZEDB` hint says `keys` keys of which
    /// `expires` have a deadline.
    pub fn new(db_index: usize, keys: usize, expires: usize) -> Section {
        Section {
            db_index,
            keys: keys as u64,
            expires: expires as u64,
            resize_written: false,
            buf: Vec::new(),
        }
    }

    pub fn db_index(&self) -> usize {
        self.db_index
    }

    /// Adds the record of `key`.
    pub fn entry(
        &mut self,
        key: &[u8],
        value: &Value,
        expire_ms: Option<u64>,
        clock: Option<KeyClock>,
    ) {
        if self.buf.is_empty() {
            self.buf.push(opcode::SELECTDB);
            put_len(&mut self.buf, self.db_index as u64);
            if !self.resize_written {
                self.buf.push(opcode::RESIZEDB);
                put_len(&mut self.buf, self.keys);
                put_len(&mut self.buf, self.expires);
                self.resize_written = true;
            }
        }
        put_entry(&mut self.buf, key, value, expire_ms, clock);
    }

    /// Bytes collected and not yet taken.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes collected since the last call (empty, or a piece starting with `SELECTDB`),
    /// for [`FileWriter::append`].
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// The aux field that carries the search index definitions.
pub const SEARCH_AUX: &str = "shardis-search";

/// Frames an RDB file: header and aux fields, the pieces appended, `EOF` and the checksum.
/// Its bytes are handed out as they are produced ([`FileWriter::take_pending`]); the CRC runs
/// over them as they go.
#[derive(Debug)]
pub struct FileWriter {
    pending: Vec<u8>,
    /// CRC64 of every byte handed out so far.
    crc: u64,
    finished: bool,
}

impl FileWriter {
    /// A writer whose pending bytes start with the header and aux fields.
    pub fn new(aux: &Aux) -> FileWriter {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(format!("{:04}", super::RDB_VERSION).as_bytes());
        let mut field = |name: &str, value: &[u8]| {
            out.push(opcode::AUX);
            put_string(&mut out, name.as_bytes());
            put_string(&mut out, value);
        };
        field("redis-ver", REDIS_VER.as_bytes());
        field("redis-bits", b"64");
        field("ctime", aux.ctime_s.to_string().as_bytes());
        field("used-mem", aux.used_mem.to_string().as_bytes());
        field("aof-base", if aux.aof_base { b"1" } else { b"0" });
        if !aux.search.is_empty() {
            field(SEARCH_AUX, &aux.search);
        }
        FileWriter {
            pending: out,
            crc: 0,
            finished: false,
        }
    }

    /// Appends a function library (its code), before any database piece, as Redis writes them
    /// after the aux fields.
    pub fn function(&mut self, code: &[u8]) {
        self.pending.push(opcode::FUNCTION2);
        put_string(&mut self.pending, code);
    }

    /// Appends a piece from [`Section::take`] (or `Db::snapshot_take`).
    pub fn append(&mut self, piece: &[u8]) {
        assert!(!self.finished, "append after finish");
        self.pending.extend_from_slice(piece);
    }

    /// Appends every live key of `db` as database `db_index` (keys expired at `now_ms` are
    /// left out).
    pub fn write_db(&mut self, db: &Db, db_index: usize, now_ms: u64) {
        let mut section = Section::new(db_index, db.len(), db.volatile_len());
        db.for_each_key_clocked(now_ms, |k, item, t, clock| {
            section.entry(k, &item.value, t, clock)
        });
        self.append(&section.take());
    }

    /// Ends the file: `EOF` and the checksum. Nothing may be appended after.
    pub fn finish(&mut self) {
        assert!(!self.finished, "finish twice");
        self.pending.push(opcode::EOF);
        self.crc = super::crc64(self.crc, &self.pending);
        let crc = self.crc;
        self.pending.extend_from_slice(&crc.to_le_bytes());
        self.finished = true;
    }

    /// Bytes produced and not yet taken.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The bytes produced since the last call, to be written to the file in order.
    pub fn take_pending(&mut self) -> Vec<u8> {
        if !self.finished {
            self.crc = super::crc64(self.crc, &self.pending);
        }
        std::mem::take(&mut self.pending)
    }
}

/// Writes a whole file holding the function libraries `functions` (their code) and `dbs`
/// (database `i` is `dbs[i]`; empty ones are left out, and keys expired at `now_ms`) to `w`, a
/// database at a time.
pub fn save_to<F: AsRef<[u8]>>(
    w: &mut impl std::io::Write,
    functions: &[F],
    dbs: &[Db],
    now_ms: u64,
    aux: &Aux,
) -> std::io::Result<()> {
    let mut file = FileWriter::new(aux);
    for code in functions {
        file.function(code.as_ref());
    }
    for (i, db) in dbs.iter().enumerate() {
        if db.is_empty() {
            continue;
        }
        file.write_db(db, i, now_ms);
        w.write_all(&file.take_pending())?;
    }
    file.finish();
    w.write_all(&file.take_pending())
}

/// A whole file holding `dbs`, as [`save_to`] writes it.
pub fn save<F: AsRef<[u8]>>(functions: &[F], dbs: &[Db], now_ms: u64, aux: &Aux) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = save_to(&mut out, functions, dbs, now_ms, aux);
    out
}

// ---------------------------------------------------------------------------------------------
// Reading.

/// One key read from a file: where it goes, and its object still encoded.
#[derive(Debug, Clone)]
pub struct RawEntry<'a> {
    pub db: usize,
    pub key: Vec<u8>,
    /// The deadline, Unix ms (already past, possibly: the caller decides).
    pub expire_ms: Option<u64>,
    /// The access clock the file recorded (`IDLE` / `FREQ`), if any.
    pub clock: Option<KeyClock>,
    /// Offset in the file of the record (its type byte).
    pub offset: usize,
    /// The object's type byte.
    pub kind: u8,
    /// The object's body (what follows the key).
    pub body: &'a [u8],
}

impl RawEntry<'_> {
    /// Builds the value, in the encoding Redis would give it under `cfg`.
    pub fn decode(&self, cfg: &ShardConfig) -> Result<Value, RdbError> {
        let mut r = Reader {
            buf: self.body,
            pos: 0,
        };
        match decode_body(self.kind, &mut r, cfg) {
            Ok(v) if r.pos == self.body.len() => Ok(v),
            _ => err(
                self.offset,
                format!(
                    "invalid value of type {} for key {}",
                    self.kind,
                    String::from_utf8_lossy(&self.key)
                ),
            ),
        }
    }

    /// The object as a DUMP payload holds it: type byte and body.
    pub fn object(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.body.len());
        out.push(self.kind);
        out.extend_from_slice(self.body);
        out
    }
}

/// Reads a file held in memory, key by key. Aux fields and function libraries met on the way
/// are collected ([`FileReader::aux`], [`FileReader::functions`]). The checksum is checked
/// when `EOF` is reached, so a caller must treat what it loaded as void unless
/// [`FileReader::next_entry`] ends with `Ok(None)`. Bytes after the checksum are ignored, as
/// Redis ignores them.
#[derive(Debug)]
pub struct FileReader<'a> {
    r: Reader<'a>,
    version: u16,
    db: usize,
    aux: Vec<(Vec<u8>, Vec<u8>)>,
    functions: Vec<Vec<u8>>,
    done: bool,
}

impl<'a> FileReader<'a> {
    /// Checks the magic and the version (1 to 10) of `data`.
    pub fn new(data: &'a [u8]) -> Result<FileReader<'a>, RdbError> {
        let Some(head) = data.get(..9) else {
            return err(0, "file too short for the RDB header");
        };
        if &head[..5] != MAGIC {
            return err(0, "wrong signature (not an RDB file)");
        }
        let version = std::str::from_utf8(&head[5..])
            .ok()
            .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u16>().ok());
        let version = match version {
            Some(v @ 1..=super::RDB_VERSION) => v,
            _ => {
                return err(
                    5,
                    format!(
                        "can't handle RDB format version {}",
                        String::from_utf8_lossy(&head[5..])
                    ),
                )
            }
        };
        Ok(FileReader {
            r: Reader { buf: data, pos: 9 },
            version,
            db: 0,
            aux: Vec::new(),
            functions: Vec::new(),
            done: false,
        })
    }

    /// The file's RDB version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The aux fields read so far, in file order.
    pub fn aux(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.aux
    }

    /// The value of aux field `name`, if read so far.
    pub fn aux_get(&self, name: &str) -> Option<&[u8]> {
        self.aux
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The code of the function libraries read so far.
    pub fn functions(&self) -> &[Vec<u8>] {
        &self.functions
    }

    /// The next key, or `None` once `EOF` and a matching checksum have been read.
    pub fn next_entry(&mut self) -> Result<Option<RawEntry<'a>>, RdbError> {
        if self.done {
            return Ok(None);
        }
        let mut expire_ms = None;
        let mut clock = None;
        loop {
            let at = self.r.pos;
            let Ok(op) = self.r.byte() else {
                return err(at, "unexpected end of file (no EOF opcode)");
            };
            match op {
                opcode::EOF => {
                    self.check_checksum()?;
                    self.done = true;
                    return Ok(None);
                }
                opcode::SELECTDB => {
                    let n = self.field(at, "SELECTDB", |r| r.len())?;
                    if n >= DATABASES as u64 {
                        return err(at, format!("database {n} out of range (0-15)"));
                    }
                    self.db = n as usize;
                }
                opcode::RESIZEDB => {
                    self.field(at, "RESIZEDB", |r| r.len().and_then(|_| r.len()))?;
                }
                opcode::AUX => {
                    let pair = self.field(at, "aux field", |r| Ok((r.string()?, r.string()?)))?;
                    self.aux.push(pair);
                }
                opcode::EXPIRETIME_MS => {
                    let t = self.field(at, "EXPIRETIME_MS", |r| r.array())?;
                    expire_ms = Some(u64::from_le_bytes(t));
                }
                opcode::EXPIRETIME => {
                    let t = self.field(at, "EXPIRETIME", |r| r.array())?;
                    expire_ms = Some(u32::from_le_bytes(t) as u64 * 1000);
                }
                opcode::IDLE => {
                    clock = Some(KeyClock::Idle(self.field(at, "IDLE", |r| r.len())?));
                }
                opcode::FREQ => {
                    clock = Some(KeyClock::Freq(self.field(at, "FREQ", |r| r.byte())?));
                }
                opcode::FUNCTION2 => {
                    let code = self.field(at, "function library", |r| r.string())?;
                    self.functions.push(code);
                }
                opcode::FUNCTION_PRE_GA => {
                    return err(at, "unsupported: pre-release function library format");
                }
                opcode::MODULE_AUX => {
                    return err(
                        at,
                        "unsupported: module aux data (modules are not supported)",
                    );
                }
                kind => return self.entry(at, kind, expire_ms, clock).map(Some),
            }
        }
    }

    /// Reads one field of an opcode, naming it in the error.
    fn field<T>(
        &mut self,
        at: usize,
        what: &str,
        f: impl FnOnce(&mut Reader<'a>) -> super::Res<T>,
    ) -> Result<T, RdbError> {
        f(&mut self.r).or_else(|_| err(at, format!("truncated or malformed {what}")))
    }

    /// Reads the key and steps over the object of type `kind` starting at `at`.
    fn entry(
        &mut self,
        at: usize,
        kind: u8,
        expire_ms: Option<u64>,
        clock: Option<KeyClock>,
    ) -> Result<RawEntry<'a>, RdbError> {
        match kind {
            0..=5 | 10..=19 | 21 => {}
            6 | 7 => return err(at, "unsupported: module value (modules are not supported)"),
            9 => {
                return err(
                    at,
                    "unsupported: zipmap-encoded hash (RDB before Redis 2.6)",
                )
            }
            _ => return err(at, format!("unknown object type {kind}")),
        }
        let key = self.field(at, "key", |r| r.string())?;
        let body = self.r.pos;
        if skip_body(&mut self.r, kind).is_err() {
            return err(
                at,
                format!(
                    "truncated or malformed value of type {kind} for key {}",
                    String::from_utf8_lossy(&key)
                ),
            );
        }
        Ok(RawEntry {
            db: self.db,
            key,
            expire_ms,
            clock,
            offset: at,
            kind,
            body: &self.r.buf[body..self.r.pos],
        })
    }

    /// Checks the checksum after `EOF` (files before version 5 have none; a zero checksum
    /// means the writer did not compute one).
    fn check_checksum(&mut self) -> Result<(), RdbError> {
        if self.version < 5 {
            return Ok(());
        }
        let end = self.r.pos;
        let Ok(stored) = self.r.array::<8>() else {
            return err(end, "truncated checksum after EOF");
        };
        let stored = u64::from_le_bytes(stored);
        let actual = super::crc64(0, &self.r.buf[..end]);
        if stored != 0 && stored != actual {
            return err(
                end,
                format!("wrong checksum: file says {stored:016x}, contents give {actual:016x}"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::Entry;
    use crate::types::list::{End, Fill};
    use crate::types::{hash, Hash, List, Set, Str, ZSet};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    type Model = BTreeMap<(usize, Vec<u8>), (Value, Option<u64>)>;

    fn cfg() -> ShardConfig {
        ShardConfig::default()
    }

    fn str_value(s: &[u8]) -> Value {
        Value::Str(Str::from_bytes(s))
    }

    /// One value of each type and encoding, big ones included.
    fn sample_values() -> Vec<Value> {
        let c = cfg();
        let mut out = vec![
            str_value(b"hello"),
            str_value(b"12345"),
            str_value(b""),
            str_value(&[b'x'; 300]),
        ];
        for n in [5usize, 1000] {
            let mut l = List::new();
            for i in 0..n {
                l.push(End::Tail, format!("item{i}").as_bytes(), Fill::new(-2));
            }
            out.push(Value::List(l));
            let mut s = Set::for_member(b"1");
            let mut t = Set::for_member(b"a");
            for i in 0..n {
                s.add(i.to_string().as_bytes(), c.set_max_intset_entries);
                t.add(format!("m{i}").as_bytes(), c.set_max_intset_entries);
            }
            out.push(Value::Set(s));
            out.push(Value::Set(t));
            let mut h = Hash::new();
            let lim = hash::Limits {
                max_entries: c.hash_max_listpack_entries,
                max_value: c.hash_max_listpack_value,
            };
            for i in 0..n {
                h.set(format!("f{i}").as_bytes(), format!("v{i}").as_bytes(), lim);
            }
            out.push(Value::Hash(h));
            let zlim = crate::types::zset::Limits {
                max_entries: c.zset_max_listpack_entries,
                max_value: c.zset_max_listpack_value,
            };
            let mut z = ZSet::for_first_member(2, zlim);
            for i in 0..n {
                z.add(format!("z{i}").as_bytes(), i as f64 / 3.0, zlim);
            }
            out.push(Value::ZSet(z));
        }
        out
    }

    /// Databases 0, 3 and 15 holding every sample value, some with deadlines.
    fn sample_dbs() -> (Vec<Db>, Model) {
        let mut dbs: Vec<Db> = (0..DATABASES).map(|_| Db::default()).collect();
        let mut model = Model::new();
        for db in [0usize, 3, 15] {
            for (i, v) in sample_values().into_iter().enumerate() {
                let key = format!("k{db}:{i}").into_bytes();
                let t = (i % 3 == 0).then_some(10_000 + i as u64);
                dbs[db].insert(&key, Entry::with_expiry(v.clone(), t));
                model.insert((db, key), (v, t));
            }
        }
        (dbs, model)
    }

    fn read_all(file: &[u8]) -> Result<Model, RdbError> {
        let mut r = FileReader::new(file)?;
        let mut out = Model::new();
        while let Some(e) = r.next_entry()? {
            let v = e.decode(&cfg())?;
            out.insert((e.db, e.key), (v, e.expire_ms));
        }
        Ok(out)
    }

    #[test]
    fn round_trip_every_type() {
        let (dbs, model) = sample_dbs();
        let aux = Aux {
            ctime_s: 1_700_000_000,
            used_mem: 123_456,
            aof_base: true,
            search: b"*2\r\n$9\r\nFT.CREATE\r\n$1\r\ni\r\n".to_vec(),
        };
        let file = save::<&[u8]>(&[], &dbs, 0, &aux);
        assert_eq!(&file[..9], b"REDIS0010");
        assert_eq!(read_all(&file).unwrap(), model);
        let mut r = FileReader::new(&file).unwrap();
        while r.next_entry().unwrap().is_some() {}
        assert_eq!(r.aux_get(SEARCH_AUX), Some(&aux.search[..]));
        assert_eq!(r.aux_get("redis-ver"), Some(&b"7.0.15"[..]));
        assert_eq!(r.aux_get("redis-bits"), Some(&b"64"[..]));
        assert_eq!(r.aux_get("ctime"), Some(&b"1700000000"[..]));
        assert_eq!(r.aux_get("used-mem"), Some(&b"123456"[..]));
        assert_eq!(r.aux_get("aof-base"), Some(&b"1"[..]));
        assert_eq!(r.version(), 10);
        // Keys expired at save time are left out.
        let later = save::<&[u8]>(&[], &dbs, 10_005, &aux);
        let n = model
            .values()
            .filter(|(_, t)| t.is_none_or(|t| t > 10_005))
            .count();
        assert_eq!(read_all(&later).unwrap().len(), n);
        // The streaming writer's pieces make the same file.
        let mut w = FileWriter::new(&aux);
        let mut pieces = w.take_pending();
        for (i, db) in dbs.iter().enumerate().filter(|(_, d)| !d.is_empty()) {
            w.write_db(db, i, 0);
            pieces.extend(w.take_pending());
        }
        w.finish();
        pieces.extend(w.take_pending());
        assert_eq!(pieces, file);
    }

    #[test]
    fn sections_interleave() {
        let mut a = Section::new(2, 3, 1);
        let mut b = Section::new(5, 1, 0);
        let mut w = FileWriter::new(&Aux::default());
        a.entry(b"a1", &str_value(b"1"), Some(77), None);
        w.append(&a.take());
        b.entry(b"b1", &str_value(b"2"), None, None);
        w.append(&b.take());
        assert!(a.take().is_empty());
        a.entry(b"a2", &str_value(b"3"), None, None);
        a.entry(b"a3", &str_value(b"4"), None, None);
        w.append(&a.take());
        w.finish();
        let got = read_all(&w.take_pending()).unwrap();
        let keys: Vec<_> = got
            .iter()
            .map(|((d, k), (_, t))| (*d, k.clone(), *t))
            .collect();
        assert_eq!(
            keys,
            vec![
                (2, b"a1".to_vec(), Some(77)),
                (2, b"a2".to_vec(), None),
                (2, b"a3".to_vec(), None),
                (5, b"b1".to_vec(), None)
            ]
        );
    }

    /// A file made by hand: header, then `body`, `EOF` and the checksum.
    fn handmade(version: &str, body: &[u8]) -> Vec<u8> {
        let mut f = b"REDIS".to_vec();
        f.extend_from_slice(version.as_bytes());
        f.extend_from_slice(body);
        f.push(opcode::EOF);
        let crc = super::super::crc64(0, &f);
        f.extend_from_slice(&crc.to_le_bytes());
        f
    }

    #[test]
    fn reads_old_opcodes_and_functions() {
        let mut body = vec![opcode::AUX];
        put_string(&mut body, b"redis-ver");
        put_string(&mut body, b"7.0.0");
        body.push(opcode::FUNCTION2);
        put_string(
            &mut body,
            b"#!lua name=mylib\nredis.register_function('f', function() end)",
        );
        body.extend_from_slice(&[opcode::SELECTDB, 1]);
        // Seconds deadline, LRU and LFU data before the type byte.
        body.push(opcode::EXPIRETIME);
        body.extend_from_slice(&1_000u32.to_le_bytes());
        body.extend_from_slice(&[opcode::IDLE, 5, opcode::FREQ, 9]);
        body.push(0);
        put_string(&mut body, b"key");
        put_string(&mut body, b"val");
        body.push(0);
        put_string(&mut body, b"k2");
        put_string(&mut body, b"v2");
        let file = handmade("0009", &body);
        let mut r = FileReader::new(&file).unwrap();
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(
            (e.db, e.key.as_slice(), e.expire_ms),
            (1, &b"key"[..], Some(1_000_000))
        );
        assert_eq!(e.decode(&cfg()).unwrap(), str_value(b"val"));
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.key.as_slice(), e.expire_ms), (&b"k2"[..], None));
        assert!(r.next_entry().unwrap().is_none());
        assert!(r.next_entry().unwrap().is_none());
        assert_eq!(r.functions().len(), 1);
        assert_eq!(r.aux_get("redis-ver"), Some(&b"7.0.0"[..]));
        // Before version 5 there is no checksum.
        let mut old = handmade("0004", &[opcode::SELECTDB, 0]);
        old.truncate(old.len() - 8);
        assert!(read_all(&old).unwrap().is_empty());
    }

    fn error_of(file: &[u8]) -> RdbError {
        read_all(file).unwrap_err()
    }

    #[test]
    fn errors_name_the_offset() {
        let e = error_of(b"REDIX0010");
        assert_eq!(
            e.to_string(),
            "bad RDB at offset 0: wrong signature (not an RDB file)"
        );
        assert_eq!(error_of(b"REDIS0011\xff").offset, 5);
        assert_eq!(error_of(b"RED").offset, 0);
        let e = error_of(&handmade("0010", &[42, 1, b'k', 0]));
        assert_eq!(e.offset, 9);
        assert!(e.msg.contains("unknown object type 42"), "{e}");
        let e = error_of(&handmade("0010", &[19, 1, b'k', 0]));
        assert!(e.to_string().contains("type 19"), "{e}");
        let e = error_of(&handmade("0010", &[opcode::SELECTDB, 0, 7]));
        assert!(e.msg.contains("module"), "{e}");
        let e = error_of(&handmade("0010", &[opcode::MODULE_AUX]));
        assert!(e.msg.contains("module"), "{e}");
        let e = error_of(&handmade("0010", &[opcode::SELECTDB, 16]));
        assert!(e.msg.contains("database 16"), "{e}");
        // A checksum that does not match, and zero (not computed).
        let mut f = handmade("0010", &[0, 1, b'k', 1, b'v']);
        let n = f.len();
        f[n - 1] ^= 1;
        let e = error_of(&f);
        assert_eq!(e.offset, n - 8);
        assert!(e.msg.contains("wrong checksum"), "{e}");
        f[n - 8..].fill(0);
        assert_eq!(read_all(&f).unwrap().len(), 1);
        assert!(error_of(&f[..n - 3]).msg.contains("truncated checksum"));
        assert!(error_of(&f[..n - 9]).msg.contains("no EOF"));
        // A value whose extent is fine but whose contents are not.
        let e = error_of(&handmade("0010", &[11, 1, b'k', 3, 1, 2, 3]));
        assert!(e.msg.contains("invalid value of type 11 for key k"), "{e}");
        // A length far past the end of the file is refused before anything is allocated.
        let mut huge = vec![0, 1, b'k', 0x81];
        huge.extend_from_slice(&(u64::MAX / 2).to_be_bytes());
        assert!(error_of(&handmade("0010", &huge))
            .msg
            .contains("truncated or malformed value"));
        let mut huge = vec![opcode::AUX, 0x80];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(error_of(&handmade("0010", &huge)).msg.contains("aux field"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Truncated and bit-flipped files give an error or some entries, never a panic.
        #[test]
        fn damaged_files_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            let mut file = FILE.get_or_init(|| save::<&[u8]>(&[], &sample_dbs().0[..4], 0, &Aux::default())).clone();
            for (at, x) in &flips {
                let i = at % file.len();
                file[i] ^= x.max(&1);
            }
            let cut = if flips.is_empty() { cut % file.len() } else { file.len() };
            let result = read_all(&file[..cut]);
            if flips.is_empty() {
                prop_assert!(result.is_err());
            }
        }
    }
}
