//! The RDB object codec (Redis 7.0, RDB version 10) and the DUMP payload around it.
//!
//! An object is a type byte followed by the type's body. [`encode`] writes the encodings Redis
//! 7.0 itself writes for each of our representations (strings with the integer encodings,
//! lists as quicklist-2 of listpack nodes, intsets, listpack hashes and sorted sets, and the
//! plain hashtable / skiplist forms, streams as their listpack nodes with the stream's and its
//! groups' bookkeeping). [`decode`] reads everything Redis 7.0 DUMPs for the types shardis has,
//! plus the older forms Redis 7.0 still loads (plain lists, text-score sorted sets, ziplists
//! and quicklists of ziplists, Redis 5/6 streams) and Redis 7.2's streams, and builds the value
//! in the encoding Redis would give it under the shard's current thresholds.
//!
//! Payload bytes come from clients: every read is bounds-checked, every length is checked
//! against what is left, and anything malformed is a [`Corrupt`] error, never a panic.

use crate::shard::ShardConfig;
use crate::types::list::{End, Fill};
use crate::types::redis_listpack::{
    self as lp, sign_extend, Entry as LpEntry, Writer as ListpackWriter,
};
use crate::types::stream::{Consumer, Group, Nack, StreamId};
use crate::types::{
    hash, set::Member, zset, Hash, List, Set, SmallBytes, Str, Stream, Value, ZSet,
};
use crate::util::{fmt_d2string, parse_f64_lenient, parse_i64};

/// The RDB version this codec writes (Redis 7.0).
pub const RDB_VERSION: u16 = 10;

/// Object type bytes.
pub mod kind {
    pub const STRING: u8 = 0;
    pub const LIST: u8 = 1;
    pub const SET: u8 = 2;
    pub const ZSET: u8 = 3;
    pub const HASH: u8 = 4;
    pub const ZSET_2: u8 = 5;
    pub const LIST_ZIPLIST: u8 = 10;
    pub const SET_INTSET: u8 = 11;
    pub const ZSET_ZIPLIST: u8 = 12;
    pub const HASH_ZIPLIST: u8 = 13;
    pub const LIST_QUICKLIST: u8 = 14;
    pub const STREAM_LISTPACKS: u8 = 15;
    pub const HASH_LISTPACK: u8 = 16;
    pub const ZSET_LISTPACK: u8 = 17;
    pub const LIST_QUICKLIST_2: u8 = 18;
    pub const STREAM_LISTPACKS_2: u8 = 19;
    pub const STREAM_LISTPACKS_3: u8 = 21;
}

/// Malformed or unsupported serialized data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt;

type Res<T> = std::result::Result<T, Corrupt>;

// ---------------------------------------------------------------------------------------------
// CRC64 (Jones polynomial, reflected, as Redis's crc64.c computes it).

const CRC64_POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

const fn crc64_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC64_POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC64_TABLE: [u64; 256] = crc64_table();

/// Continues the CRC64 `crc` over `data` (start with 0).
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        crc = CRC64_TABLE[((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

// ---------------------------------------------------------------------------------------------
// DUMP payloads.

/// The DUMP payload of `value`: the object, the RDB version (2 bytes LE) and the CRC64 of all
/// that (8 bytes LE).
pub fn dump(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(value, &mut out);
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a payload's footer as Redis's `verifyDumpPayload` does (a version above ours or a
/// wrong checksum fails) and returns the object bytes.
pub fn verify_payload(payload: &[u8]) -> Res<&[u8]> {
    let body_len = payload.len().checked_sub(10).ok_or(Corrupt)?;
    let (body, footer) = payload.split_at(body_len);
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    if version > RDB_VERSION {
        return Err(Corrupt);
    }
    let mut crc = [0u8; 8];
    crc.copy_from_slice(&footer[2..]);
    if crc64(0, &payload[..body_len + 2]) != u64::from_le_bytes(crc) {
        return Err(Corrupt);
    }
    Ok(body)
}

/// FUNCTION DUMP's payload: each library's code as a `FUNCTION2` record, then the version and
/// checksum footer DUMP uses.
pub fn dump_functions<'a>(codes: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for code in codes {
        out.push(file::opcode::FUNCTION2);
        put_string(&mut out, code);
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The library codes of a FUNCTION RESTORE payload (footer checked); None if it is malformed.
pub fn parse_functions(payload: &[u8]) -> Option<Vec<Vec<u8>>> {
    let body = verify_payload(payload).ok()?;
    let mut r = Reader { buf: body, pos: 0 };
    let mut codes = Vec::new();
    while r.remaining() > 0 {
        if r.byte().ok()? != file::opcode::FUNCTION2 {
            return None;
        }
        codes.push(r.string().ok()?);
    }
    Some(codes)
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// Appends an RDB length.
fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u32::MAX as u64 {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends `n` in the smallest integer string encoding, if one holds it.
fn put_int_encoded(out: &mut Vec<u8>, n: i64) -> bool {
    if let Ok(v) = i8::try_from(n) {
        out.extend_from_slice(&[0xc0, v as u8]);
    } else if let Ok(v) = i16::try_from(n) {
        out.push(0xc1);
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = i32::try_from(n) {
        out.push(0xc2);
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        return false;
    }
    true
}

/// Appends an RDB string: integer-encoded when it is a short canonical integer that fits 32
/// bits (as Redis does), LZF-compressed when that saves room on a string over 20 bytes,
/// else plain.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 11 {
        if let Some(n) = parse_i64(s) {
            if put_int_encoded(out, n) {
                return;
            }
        }
    }
    if s.len() > 20 {
        if let Some(packed) = lzf_compress(s) {
            out.push(0xc3);
            put_len(out, packed.len() as u64);
            put_len(out, s.len() as u64);
            out.extend_from_slice(&packed);
            return;
        }
    }
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn put_int_string(out: &mut Vec<u8>, n: i64) {
    if !put_int_encoded(out, n) {
        put_string(out, itoa::Buffer::new().format(n).as_bytes());
    }
}

/// Appends the type byte and body of `value`.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    out.push(object_kind(value));
    encode_body(value, out);
}

/// The type byte [`encode`] writes for `value`.
pub fn object_kind(value: &Value) -> u8 {
    match value {
        Value::Str(_) => kind::STRING,
        Value::List(_) => kind::LIST_QUICKLIST_2,
        Value::Set(Set::Intset(_)) => kind::SET_INTSET,
        Value::Set(_) => kind::SET,
        Value::Hash(Hash::Listpack(_)) => kind::HASH_LISTPACK,
        Value::Hash(Hash::Table(_)) => kind::HASH,
        Value::ZSet(ZSet::Listpack(_)) => kind::ZSET_LISTPACK,
        Value::ZSet(ZSet::Tree(_)) => kind::ZSET_2,
        Value::Stream(_) => kind::STREAM_LISTPACKS_2,
    }
}

/// Appends the body of `value` (what follows the type byte, and in a file the key).
pub fn encode_body(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Stream(s) => encode_stream(s, out),
        Value::Str(s) => match s {
            Str::Int(n) => put_int_string(out, *n),
            Str::Bytes { data, .. } => put_string(out, data.as_slice()),
        },
        Value::List(l) => {
            let mut nodes: Vec<Vec<u8>> = Vec::new();
            let mut pack = ListpackWriter::default();
            for item in l.iter() {
                if pack.count() > 0 && pack.would_exceed(item.len(), LIST_NODE_BYTES) {
                    nodes.push(std::mem::take(&mut pack).finish());
                }
                pack.push(item);
            }
            if pack.count() > 0 {
                nodes.push(pack.finish());
            }
            put_len(out, nodes.len() as u64);
            for node in &nodes {
                put_len(out, QUICKLIST_PACKED);
                put_string(out, node);
            }
        }
        Value::Set(Set::Intset(s)) => {
            put_string(out, &intset_bytes(&s.iter().collect::<Vec<_>>()));
        }
        Value::Set(s) => {
            put_len(out, s.len() as u64);
            for m in s.iter() {
                match m {
                    Member::Bytes(b) => put_string(out, b),
                    Member::Int(n) => put_int_string(out, n),
                }
            }
        }
        Value::Hash(h) => match h {
            Hash::Listpack(_) => {
                let mut pack = ListpackWriter::default();
                for (f, v) in h.iter() {
                    pack.push(f);
                    pack.push(v);
                }
                put_string(out, &pack.finish());
            }
            Hash::Table(_) => {
                put_len(out, h.len() as u64);
                for (f, v) in h.iter() {
                    put_string(out, f);
                    put_string(out, v);
                }
            }
        },
        Value::ZSet(z) => match z {
            ZSet::Listpack(_) => {
                let mut pack = ListpackWriter::default();
                for (m, s) in z.iter() {
                    pack.push(m);
                    pack.push(fmt_d2string(s).as_bytes());
                }
                put_string(out, &pack.finish());
            }
            ZSet::Tree(_) => {
                put_len(out, z.len() as u64);
                // Highest first, as Redis writes them (so its loader appends at the head).
                let items: Vec<(&[u8], f64)> = z.iter().collect();
                for (m, s) in items.into_iter().rev() {
                    put_string(out, m);
                    out.extend_from_slice(&s.to_le_bytes());
                }
            }
        },
    }
}

/// Appends a stream's body as Redis 7.0 writes it (`RDB_TYPE_STREAM_LISTPACKS_2`): the nodes
/// (master id as a 16-byte big-endian string, listpack as it is), the length, the last, first
/// and greatest deleted ids, the count of entries ever added, then the groups.
fn encode_stream(s: &Stream, out: &mut Vec<u8>) {
    put_len(out, s.nodes().len() as u64);
    for (master_id, node) in s.nodes() {
        put_string(out, &master_id.to_be_bytes());
        put_string(out, node);
    }
    put_len(out, s.len());
    for id in [s.last_id, s.first_id, s.max_deleted_id] {
        put_len(out, id.ms);
        put_len(out, id.seq);
    }
    put_len(out, s.entries_added);
    put_len(out, s.groups.len() as u64);
    for (name, g) in &s.groups {
        put_string(out, name);
        put_len(out, g.last_id.ms);
        put_len(out, g.last_id.seq);
        // Redis's invalid counter, -1, goes through its unsigned length writer.
        put_len(out, g.entries_read.unwrap_or(u64::MAX));
        put_len(out, g.pel.len() as u64);
        for (id, nack) in &g.pel {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&nack.delivery_time_ms.to_le_bytes());
            put_len(out, nack.delivery_count);
        }
        put_len(out, g.consumers.len() as u64);
        for (cname, c) in &g.consumers {
            put_string(out, cname);
            out.extend_from_slice(&c.seen_time_ms.to_le_bytes());
            put_len(out, c.pending.len() as u64);
            for id in &c.pending {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
}

/// The most bytes a list node gets when written (Redis's default 8 KiB node size).
const LIST_NODE_BYTES: usize = 8192;

/// Quicklist node containers.
const QUICKLIST_PLAIN: u64 = 1;
const QUICKLIST_PACKED: u64 = 2;

fn intset_bytes(items: &[i64]) -> Vec<u8> {
    let (lo, hi) = items
        .iter()
        .fold((0i64, 0i64), |(lo, hi), &n| (lo.min(n), hi.max(n)));
    let width: usize = if lo >= i16::MIN as i64 && hi <= i16::MAX as i64 {
        2
    } else if lo >= i32::MIN as i64 && hi <= i32::MAX as i64 {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + width * items.len());
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for n in items {
        out.extend_from_slice(&n.to_le_bytes()[..width]);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// LZF.

/// Decompresses LZF data into exactly `out_len` bytes.
pub fn lzf_decompress(input: &[u8], out_len: usize) -> Res<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(out_len.min(1 << 20));
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let lit = input.get(i..i + run).ok_or(Corrupt)?;
            if out.len() + run > out_len {
                return Err(Corrupt);
            }
            out.extend_from_slice(lit);
            i += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or(Corrupt)? as usize;
                i += 1;
            }
            let low = *input.get(i).ok_or(Corrupt)? as usize;
            i += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            let len = len + 2;
            let from = out.len().checked_sub(back).ok_or(Corrupt)?;
            if out.len() + len > out_len {
                return Err(Corrupt);
            }
            for k in 0..len {
                let b = out[from + k];
                out.push(b);
            }
        }
    }
    if out.len() != out_len {
        return Err(Corrupt);
    }
    Ok(out)
}

/// Compresses with LZF; `None` when the result would be longer than the input less 4 bytes
/// (Redis stores a string compressed only then). The match finder works as liblzf's default
/// build in Redis (a 2^16-slot table indexed by a rolling hash of the next three bytes, two
/// positions re-indexed after each match), so payloads come out as Redis writes them.
pub fn lzf_compress(input: &[u8]) -> Option<Vec<u8>> {
    let n = input.len();
    let limit = n.checked_sub(4).filter(|&l| l > 0)?;
    if n < 3 {
        return None;
    }
    LZF_TABLE.with(|t| {
        let mut t = t.borrow_mut();
        // A new epoch empties the table without touching its 512 KiB (a fresh zeroed table per
        // call cost more than the compression itself).
        t.epoch = t.epoch.wrapping_add(1);
        if t.epoch == 0 {
            t.slots.iter_mut().for_each(|e| *e = (0, 0));
            t.epoch = 1;
        }
        let LzfTable { epoch, slots } = &mut *t;
        lzf_compress_with(input, limit, *epoch, slots)
    })
}

/// The hash table of [`lzf_compress`]: (epoch, position) per slot; an entry of another epoch
/// is empty.
struct LzfTable {
    epoch: u32,
    slots: Vec<(u32, u32)>,
}

thread_local! {
    static LZF_TABLE: std::cell::RefCell<LzfTable> = std::cell::RefCell::new(LzfTable {
        epoch: 0,
        slots: vec![(0, 0); 1 << 16],
    });
}

fn lzf_compress_with(
    input: &[u8],
    limit: usize,
    epoch: u32,
    slots: &mut [(u32, u32)],
) -> Option<Vec<u8>> {
    const MAX_OFF: usize = 1 << 13;
    const MAX_REF: usize = (1 << 8) + (1 << 3);
    const MAX_LIT: usize = 32;
    let n = input.len();
    let slot = |h: u32| ((h >> 8).wrapping_sub(h.wrapping_mul(5)) & 0xffff) as usize;
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let mut lit_start = 0;
    out.push(0); // the first literal run's control byte
    let mut lit = 0usize;
    let mut hval: u32 = (input[0] as u32) << 8 | input[1] as u32;
    let mut i = 0;
    while i + 2 < n {
        hval = hval << 8 | input[i + 2] as u32;
        let h = slot(hval);
        // Position 0 doubles as "empty": a match may never start at the first byte.
        let cand = match slots[h] {
            (e, pos) if e == epoch => pos as usize,
            _ => 0,
        };
        slots[h] = (epoch, i as u32);
        if cand > 0 && i - cand - 1 < MAX_OFF && input[cand..cand + 3] == input[i..i + 3] {
            // Room for the reference, counted as liblzf counts it (so that a string close to
            // the limit is compressed exactly when Redis compresses it).
            if out.len() + 4 >= limit && out.len() - usize::from(lit == 0) + 4 >= limit {
                return None;
            }
            let off = i - cand - 1;
            let max_len = (n - i - 2).min(MAX_REF);
            let mut len = 3;
            while len < max_len && input[cand + len] == input[i + len] {
                len += 1;
            }
            // Close the literal run (or drop its unused control byte).
            if lit == 0 {
                out.pop();
            } else {
                out[lit_start] = (lit - 1) as u8;
            }
            let l = len - 2;
            if l < 7 {
                out.push(((l << 5) | (off >> 8)) as u8);
            } else {
                out.push(((7 << 5) | (off >> 8)) as u8);
                out.push((l - 7) as u8);
            }
            out.push(off as u8);
            lit_start = out.len();
            out.push(0);
            lit = 0;
            i += len;
            if i + 2 >= n {
                break;
            }
            // Index the last two positions the match covered.
            let p = i - 2;
            hval = (input[p] as u32) << 16 | (input[p + 1] as u32) << 8 | input[p + 2] as u32;
            slots[slot(hval)] = (epoch, p as u32);
            hval = hval << 8 | input[p + 3] as u32;
            slots[slot(hval)] = (epoch, p as u32 + 1);
        } else {
            if out.len() >= limit {
                return None;
            }
            out.push(input[i]);
            lit += 1;
            i += 1;
            if lit == MAX_LIT {
                out[lit_start] = (MAX_LIT - 1) as u8;
                lit_start = out.len();
                out.push(0);
                lit = 0;
            }
        }
    }
    if out.len() + 3 > limit {
        return None;
    }
    while i < n {
        out.push(input[i]);
        lit += 1;
        i += 1;
        if lit == MAX_LIT {
            out[lit_start] = (MAX_LIT - 1) as u8;
            lit_start = out.len();
            out.push(0);
            lit = 0;
        }
    }
    if lit == 0 {
        out.pop();
    } else {
        out[lit_start] = (lit - 1) as u8;
    }
    (out.len() <= limit).then_some(out)
}

// ---------------------------------------------------------------------------------------------
// Reading.

#[derive(Debug)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// An RDB length, or the special string encoding a length byte may announce instead.
enum Len {
    Plain(u64),
    Special(u8),
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Res<u8> {
        let b = *self.buf.get(self.pos).ok_or(Corrupt)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Res<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| Corrupt)?;
        let end = self.pos.checked_add(n).ok_or(Corrupt)?;
        let s = self.buf.get(self.pos..end).ok_or(Corrupt)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Ok(a)
    }

    fn len_or_special(&mut self) -> Res<Len> {
        let b = self.byte()?;
        Ok(match b >> 6 {
            0 => Len::Plain((b & 0x3f) as u64),
            1 => Len::Plain((((b & 0x3f) as u64) << 8) | self.byte()? as u64),
            2 => match b {
                0x80 => Len::Plain(u32::from_be_bytes(self.array()?) as u64),
                0x81 => Len::Plain(u64::from_be_bytes(self.array()?)),
                _ => return Err(Corrupt),
            },
            _ => Len::Special(b & 0x3f),
        })
    }

    fn len(&mut self) -> Res<u64> {
        match self.len_or_special()? {
            Len::Plain(n) => Ok(n),
            Len::Special(_) => Err(Corrupt),
        }
    }

    /// A count of items each taking at least one byte: more than the bytes left is corrupt.
    fn count(&mut self) -> Res<usize> {
        let n = self.len()?;
        if n > self.remaining() as u64 {
            return Err(Corrupt);
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Res<Vec<u8>> {
        match self.len_or_special()? {
            Len::Plain(n) => Ok(self.take(n)?.to_vec()),
            Len::Special(enc) => {
                let n: i64 = match enc {
                    0 => self.byte()? as i8 as i64,
                    1 => i16::from_le_bytes(self.array()?) as i64,
                    2 => i32::from_le_bytes(self.array()?) as i64,
                    3 => {
                        let clen = self.len()?;
                        let len = self.len()?;
                        let data = self.take(clen)?;
                        let len = usize::try_from(len).map_err(|_| Corrupt)?;
                        return lzf_decompress(data, len);
                    }
                    _ => return Err(Corrupt),
                };
                Ok(itoa::Buffer::new().format(n).as_bytes().to_vec())
            }
        }
    }

    /// Steps over a string in any of its encodings without decompressing it.
    fn skip_string(&mut self) -> Res<()> {
        let n = match self.len_or_special()? {
            Len::Plain(n) => n,
            Len::Special(0) => 1,
            Len::Special(1) => 2,
            Len::Special(2) => 4,
            Len::Special(3) => {
                let packed = self.len()?;
                self.len()?;
                packed
            }
            Len::Special(_) => return Err(Corrupt),
        };
        self.take(n).map(|_| ())
    }

    fn binary_double(&mut self) -> Res<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A score in the old text form: a length byte (253 NaN, 254 +inf, 255 -inf), then text.
    fn text_double(&mut self) -> Res<f64> {
        match self.byte()? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let text = self.take(n as u64)?;
                parse_f64_lenient(text).ok_or(Corrupt)
            }
        }
    }
}

/// Parses and validates a Redis listpack (see [`lp::parse`]).
fn listpack(data: &[u8]) -> Res<Vec<LpEntry<'_>>> {
    lp::parse(data).ok_or(Corrupt)
}

/// Parses and validates a ziplist (the small encoding before Redis 7.0, still loaded by it):
/// header sizes, each entry's previous-entry length, the tail offset, the end byte and the
/// count (unless it is the "unknown" 65535).
fn ziplist(zl: &[u8]) -> Res<Vec<LpEntry<'_>>> {
    let mut r = Reader { buf: zl, pos: 0 };
    let total = u32::from_le_bytes(r.array()?) as usize;
    let tail = u32::from_le_bytes(r.array()?) as usize;
    let count = u16::from_le_bytes(r.array()?) as usize;
    if total != zl.len() {
        return Err(Corrupt);
    }
    let mut out = Vec::new();
    let (mut prev_len, mut last_start) = (0usize, r.pos);
    loop {
        let start = r.pos;
        let first = r.byte()?;
        if first == 0xff {
            break;
        }
        let prev = if first < 254 {
            first as usize
        } else if first == 254 {
            u32::from_le_bytes(r.array()?) as usize
        } else {
            return Err(Corrupt);
        };
        if prev != prev_len {
            return Err(Corrupt);
        }
        let b = r.byte()?;
        let entry = match b >> 6 {
            0 => LpEntry::Str(r.take((b & 0x3f) as u64)?),
            1 => {
                let n = (((b & 0x3f) as u64) << 8) | r.byte()? as u64;
                LpEntry::Str(r.take(n)?)
            }
            2 if b == 0x80 => {
                let n = u32::from_be_bytes(r.array()?);
                LpEntry::Str(r.take(n as u64)?)
            }
            2 => return Err(Corrupt),
            _ => match b {
                0xc0 => LpEntry::Int(i16::from_le_bytes(r.array()?) as i64),
                0xd0 => LpEntry::Int(i32::from_le_bytes(r.array()?) as i64),
                0xe0 => LpEntry::Int(i64::from_le_bytes(r.array()?)),
                0xf0 => {
                    let [x, y, z] = r.array()?;
                    LpEntry::Int(sign_extend(u32::from_le_bytes([x, y, z, 0]) as u64, 24))
                }
                0xfe => LpEntry::Int(r.byte()? as i8 as i64),
                0xf1..=0xfd => LpEntry::Int((b & 0x0f) as i64 - 1),
                _ => return Err(Corrupt),
            },
        };
        prev_len = r.pos - start;
        last_start = start;
        out.push(entry);
    }
    let tail_ok = if out.is_empty() {
        tail == 10
    } else {
        tail == last_start
    };
    if r.pos != zl.len() || !tail_ok || (count != 65535 && count != out.len()) {
        return Err(Corrupt);
    }
    Ok(out)
}

/// Parses and validates a Redis intset: width 2, 4 or 8, a length that matches the size, and
/// strictly ascending members.
fn intset(data: &[u8]) -> Res<Vec<i64>> {
    let mut r = Reader { buf: data, pos: 0 };
    let width = u32::from_le_bytes(r.array()?) as usize;
    let len = u32::from_le_bytes(r.array()?) as usize;
    if !matches!(width, 2 | 4 | 8) || len.checked_mul(width) != Some(r.remaining()) {
        return Err(Corrupt);
    }
    let mut out = Vec::with_capacity(len);
    for chunk in data[8..].chunks_exact(width) {
        let n = match width {
            2 => i16::from_le_bytes([chunk[0], chunk[1]]) as i64,
            4 => i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as i64,
            _ => {
                let mut a = [0u8; 8];
                a.copy_from_slice(chunk);
                i64::from_le_bytes(a)
            }
        };
        if out.last().is_some_and(|&last| last >= n) {
            return Err(Corrupt);
        }
        out.push(n);
    }
    Ok(out)
}

/// Reads one object (type byte and body) from the start of `data`, and builds it in the
/// encoding Redis would give it under `cfg`. Bytes after the object are ignored, as RESTORE
/// reads the object from the whole payload, footer included (a string whose length runs into
/// the footer loads in Redis, and so here). Empty collections are corrupt, as Redis's loader
/// refuses them.
pub fn decode(data: &[u8], cfg: &ShardConfig) -> Res<Value> {
    decode_from(&mut Reader { buf: data, pos: 0 }, cfg)
}

/// Reads one object at `r`'s position, as [`decode`] does, leaving `r` just past it.
fn decode_from(r: &mut Reader<'_>, cfg: &ShardConfig) -> Res<Value> {
    let kind = r.byte()?;
    decode_body(kind, r, cfg)
}

/// Reads the body of an object of type `kind` at `r`'s position, leaving `r` just past it.
fn decode_body(kind: u8, r: &mut Reader<'_>, cfg: &ShardConfig) -> Res<Value> {
    let value = match kind {
        kind::STRING => Value::Str(Str::from_bytes(&r.string()?)),
        kind::LIST => {
            let n = r.count()?;
            let fill = Fill::new(cfg.list_max_listpack_size);
            let mut l = List::new();
            for _ in 0..n {
                l.push(End::Tail, &r.string()?, fill);
            }
            Value::List(l)
        }
        kind::LIST_ZIPLIST => {
            let blob = r.string()?;
            let fill = Fill::new(cfg.list_max_listpack_size);
            let mut l = List::new();
            for e in ziplist(&blob)? {
                l.push(End::Tail, &e.to_bytes(), fill);
            }
            Value::List(l)
        }
        kind::LIST_QUICKLIST => {
            let nodes = r.count()?;
            let fill = Fill::new(cfg.list_max_listpack_size);
            let mut l = List::new();
            for _ in 0..nodes {
                for e in ziplist(&r.string()?)? {
                    l.push(End::Tail, &e.to_bytes(), fill);
                }
            }
            Value::List(l)
        }
        kind::LIST_QUICKLIST_2 => {
            let nodes = r.count()?;
            let fill = Fill::new(cfg.list_max_listpack_size);
            let mut l = List::new();
            for _ in 0..nodes {
                let container = r.len()?;
                let blob = r.string()?;
                match container {
                    QUICKLIST_PLAIN => l.push(End::Tail, &blob, fill),
                    QUICKLIST_PACKED => {
                        for e in listpack(&blob)? {
                            l.push(End::Tail, &e.to_bytes(), fill);
                        }
                    }
                    _ => return Err(Corrupt),
                }
            }
            Value::List(l)
        }
        kind::SET => {
            let n = r.count()?;
            let mut s = Set::default();
            for _ in 0..n {
                if !s.add(&r.string()?, cfg.set_max_intset_entries) {
                    return Err(Corrupt);
                }
            }
            Value::Set(s)
        }
        kind::SET_INTSET => {
            let blob = r.string()?;
            let mut s = Set::default();
            for n in intset(&blob)? {
                s.add_member(Member::Int(n), cfg.set_max_intset_entries);
            }
            Value::Set(s)
        }
        kind::HASH => {
            let n = r.count()?;
            let lim = hash_limits(cfg);
            // Redis starts a hash of more fields than the limit in the big encoding.
            let mut h = Hash::new();
            if n > lim.max_entries {
                h.convert();
            }
            for _ in 0..n {
                let f = r.string()?;
                let v = r.string()?;
                if !h.set(&f, &v, lim) {
                    return Err(Corrupt);
                }
            }
            Value::Hash(h)
        }
        kind::HASH_LISTPACK | kind::HASH_ZIPLIST => {
            let blob = r.string()?;
            let entries = if kind == kind::HASH_LISTPACK {
                listpack(&blob)?
            } else {
                ziplist(&blob)?
            };
            if entries.len() % 2 != 0 {
                return Err(Corrupt);
            }
            let lim = hash_limits(cfg);
            let mut h = Hash::new();
            if entries.len() / 2 > lim.max_entries {
                h.convert();
            }
            // Redis keeps a listpack it loads as it is, whatever the lengths in it.
            let loose = hash::Limits {
                max_entries: usize::MAX,
                max_value: usize::MAX,
            };
            for pair in entries.chunks_exact(2) {
                if !h.set(&pair[0].to_bytes(), &pair[1].to_bytes(), loose) {
                    return Err(Corrupt);
                }
            }
            Value::Hash(h)
        }
        kind::ZSET | kind::ZSET_2 => {
            let n = r.count()?;
            let mut pairs = Vec::with_capacity(n);
            for _ in 0..n {
                let m = r.string()?;
                let s = if kind == kind::ZSET_2 {
                    r.binary_double()?
                } else {
                    r.text_double()?
                };
                pairs.push((SmallBytes::from(m.as_slice()), s));
            }
            Value::ZSet(zset_from(pairs, cfg, false)?)
        }
        kind::ZSET_LISTPACK | kind::ZSET_ZIPLIST => {
            let blob = r.string()?;
            let entries = if kind == kind::ZSET_LISTPACK {
                listpack(&blob)?
            } else {
                ziplist(&blob)?
            };
            if entries.len() % 2 != 0 {
                return Err(Corrupt);
            }
            let mut pairs = Vec::with_capacity(entries.len() / 2);
            for pair in entries.chunks_exact(2) {
                let score = match &pair[1] {
                    LpEntry::Int(n) => *n as f64,
                    LpEntry::Str(s) => parse_f64_lenient(s).ok_or(Corrupt)?,
                };
                pairs.push((pair[0].to_bytes(), score));
            }
            Value::ZSet(zset_from(pairs, cfg, true)?)
        }
        kind::STREAM_LISTPACKS | kind::STREAM_LISTPACKS_2 | kind::STREAM_LISTPACKS_3 => {
            Value::Stream(Box::new(decode_stream(kind, r)?))
        }
        _ => return Err(Corrupt),
    };
    if collection_is_empty(&value) {
        return Err(Corrupt);
    }
    Ok(value)
}

/// Steps over the body of an object of type `kind` without building it (the extent only: the
/// contents are checked when the object is decoded).
fn skip_body(r: &mut Reader<'_>, kind: u8) -> Res<()> {
    match kind {
        kind::STRING
        | kind::LIST_ZIPLIST
        | kind::SET_INTSET
        | kind::HASH_ZIPLIST
        | kind::HASH_LISTPACK
        | kind::ZSET_ZIPLIST
        | kind::ZSET_LISTPACK => r.skip_string(),
        kind::LIST | kind::SET | kind::LIST_QUICKLIST => {
            for _ in 0..r.count()? {
                r.skip_string()?;
            }
            Ok(())
        }
        kind::HASH => {
            for _ in 0..r.count()? {
                r.skip_string()?;
                r.skip_string()?;
            }
            Ok(())
        }
        kind::ZSET | kind::ZSET_2 => {
            for _ in 0..r.count()? {
                r.skip_string()?;
                if kind == kind::ZSET_2 {
                    r.take(8)?;
                } else {
                    // A text score: a length byte (253..=255 stand for NaN and the infinities).
                    let n = r.byte()?;
                    if n < 253 {
                        r.take(n as u64)?;
                    }
                }
            }
            Ok(())
        }
        kind::LIST_QUICKLIST_2 => {
            for _ in 0..r.count()? {
                r.len()?;
                r.skip_string()?;
            }
            Ok(())
        }
        kind::STREAM_LISTPACKS | kind::STREAM_LISTPACKS_2 | kind::STREAM_LISTPACKS_3 => {
            skip_stream(r, kind)
        }
        _ => Err(Corrupt),
    }
}

/// Reads a stream id written as two RDB lengths (ms, seq).
fn stream_id(r: &mut Reader<'_>) -> Res<StreamId> {
    Ok(StreamId::new(r.len()?, r.len()?))
}

/// Reads a stream id written raw (16 bytes, big-endian).
fn raw_stream_id(r: &mut Reader<'_>) -> Res<StreamId> {
    Ok(StreamId::from_be_bytes(r.array()?))
}

/// Reads a stream body of type `kind` (15: Redis 5/6, 19: 7.0, 21: 7.2). Every node is
/// checked entry by entry ([`Stream::from_nodes`]); the stored length must match the live
/// entries, no live entry may pass the last id, entries-added may not be below the length,
/// and each group's PEL and its consumers' lists must name the same ids, each exactly once.
fn decode_stream(kind: u8, r: &mut Reader<'_>) -> Res<Stream> {
    let count = r.count()?;
    let mut nodes = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let key = r.string()?;
        let key: [u8; 16] = key.as_slice().try_into().map_err(|_| Corrupt)?;
        nodes.push((StreamId::from_be_bytes(key), r.string()?));
    }
    let mut s = Stream::from_nodes(nodes).ok_or(Corrupt)?;
    let length = r.len()?;
    s.last_id = stream_id(r)?;
    if kind == kind::STREAM_LISTPACKS {
        // Redis 5/6 kept none of these; Redis 7 derives them so on load.
        s.first_id = s.edge_id(false).unwrap_or(StreamId::MIN);
        s.entries_added = length;
    } else {
        s.first_id = stream_id(r)?;
        s.max_deleted_id = stream_id(r)?;
        s.entries_added = r.len()?;
    }
    let past_last = s.edge_id(true).is_some_and(|id| id > s.last_id);
    if length != s.len() || s.entries_added < length || past_last {
        return Err(Corrupt);
    }
    for _ in 0..r.count()? {
        let name = r.string()?;
        let g = decode_group(kind, r, &s)?;
        if s.groups.insert(name.into(), g).is_some() {
            return Err(Corrupt);
        }
    }
    Ok(s)
}

/// Reads one consumer group (after its name).
fn decode_group(kind: u8, r: &mut Reader<'_>, s: &Stream) -> Res<Group> {
    let last_id = stream_id(r)?;
    let entries_read = if kind == kind::STREAM_LISTPACKS {
        s.estimate_entries_read(last_id)
    } else {
        // Redis writes its invalid counter (-1) as the largest length.
        Some(r.len()?).filter(|&n| n != u64::MAX)
    };
    let mut g = Group::new(last_id, entries_read);
    for _ in 0..r.count()? {
        let id = raw_stream_id(r)?;
        let nack = Nack {
            delivery_time_ms: u64::from_le_bytes(r.array()?),
            delivery_count: r.len()?,
            consumer: Box::default(),
        };
        if g.pel.insert(id, nack).is_some() {
            return Err(Corrupt);
        }
    }
    let mut owned = 0;
    for _ in 0..r.count()? {
        let name: Box<[u8]> = r.string()?.into();
        let mut c = Consumer {
            seen_time_ms: u64::from_le_bytes(r.array()?),
            ..Consumer::default()
        };
        if kind == kind::STREAM_LISTPACKS_3 {
            // Redis 7.2's active time: shardis keeps only the seen time.
            r.array::<8>()?;
        }
        for _ in 0..r.count()? {
            let id = raw_stream_id(r)?;
            let nack = g.pel.get_mut(&id).ok_or(Corrupt)?;
            if !c.pending.insert(id) || !nack.consumer.is_empty() {
                return Err(Corrupt);
            }
            nack.consumer = name.clone();
            owned += 1;
        }
        if g.consumers.insert(name, c).is_some() {
            return Err(Corrupt);
        }
    }
    // Every PEL entry has an owner (an empty consumer name aside, checked by count).
    if owned != g.pel.len() || !g.consistent() {
        return Err(Corrupt);
    }
    Ok(g)
}

/// Steps over a stream body of type `kind` (see [`decode_stream`]).
fn skip_stream(r: &mut Reader<'_>, kind: u8) -> Res<()> {
    for _ in 0..r.count()? {
        r.skip_string()?;
        r.skip_string()?;
    }
    // Length and last id; then first id, greatest deleted id and entries added.
    let lens = if kind == kind::STREAM_LISTPACKS { 3 } else { 8 };
    for _ in 0..lens {
        r.len()?;
    }
    for _ in 0..r.count()? {
        r.skip_string()?;
        let group_lens = if kind == kind::STREAM_LISTPACKS { 2 } else { 3 };
        for _ in 0..group_lens {
            r.len()?;
        }
        for _ in 0..r.count()? {
            r.take(16 + 8)?;
            r.len()?;
        }
        let times = if kind == kind::STREAM_LISTPACKS_3 {
            16
        } else {
            8
        };
        for _ in 0..r.count()? {
            r.skip_string()?;
            r.take(times)?;
            for _ in 0..r.count()? {
                r.take(16)?;
            }
        }
    }
    Ok(())
}

fn collection_is_empty(v: &Value) -> bool {
    match v {
        Value::Str(_) => false,
        Value::List(l) => l.is_empty(),
        Value::Set(s) => s.is_empty(),
        Value::Hash(h) => h.is_empty(),
        Value::ZSet(z) => z.is_empty(),
        // An empty stream is a valid value (XADD NOMKSTREAM aside, groups keep it alive).
        Value::Stream(_) => false,
    }
}

fn hash_limits(cfg: &ShardConfig) -> hash::Limits {
    hash::Limits {
        max_entries: cfg.hash_max_listpack_entries,
        max_value: cfg.hash_max_listpack_value,
    }
}

/// A sorted set from `pairs` (any order; no NaN, no repeated member). A set read from a
/// listpack stays small unless it has too many members; one read from the plain form is
/// small only within both limits (as Redis converts them).
fn zset_from(mut pairs: Vec<(SmallBytes, f64)>, cfg: &ShardConfig, packed: bool) -> Res<ZSet> {
    if pairs.iter().any(|(_, s)| s.is_nan()) {
        return Err(Corrupt);
    }
    // Scores of -0.0 and 0.0 compare equal in sorted sets; order members among them by name.
    pairs.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.as_slice().cmp(b.0.as_slice()))
    });
    let mut names: Vec<&[u8]> = pairs.iter().map(|(m, _)| m.as_slice()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(Corrupt);
    }
    let lim = zset::Limits {
        max_entries: cfg.zset_max_listpack_entries,
        max_value: if packed {
            usize::MAX
        } else {
            cfg.zset_max_listpack_value
        },
    };
    Ok(ZSet::from_sorted(&pairs, lim))
}

pub mod file;

#[cfg(test)]
mod tests;
