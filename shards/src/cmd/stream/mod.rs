//! Stream commands (Redis's `t_stream.c`): XADD, XRANGE, XREAD, … with Redis 7.0's replies,
//! errors and keyspace events. Consumer-group commands live in [`group`]. The data structure
//! lives in `types::stream`.
//!
//! The id parsing and entry replies here are shared by both files.

pub mod group;

use super::spec::CommandSpec;
use crate::resp::Reply;
use crate::types::stream::{Stream, StreamId};
use crate::types::Value;
use crate::{Error, Result, Shard};

/// The stream commands that do not involve consumer groups' management.
pub const COMMANDS: &[CommandSpec] = &[];

/// Redis's error for an id that does not parse.
pub const INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";

/// Redis's `string2ull`: a canonical integer (rejected when negative), else what C's
/// `strtoull` accepts in full (leading white space, a sign, digits; a `-` wraps around).
/// The text ends at a NUL byte, as Redis reads it as a C string.
pub fn string2ull(s: &[u8]) -> Option<u64> {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    if let Some(n) = crate::util::parse_i64(s) {
        return u64::try_from(n).ok();
    }
    let mut i = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))?;
    let negative = match s[i] {
        b'-' => {
            i += 1;
            true
        }
        b'+' => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = &s[i..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { n.wrapping_neg() } else { n })
}

/// Parses `ms[-seq]` as Redis's `streamGenericParseIDOrReply` does: a missing sequence is
/// `missing_seq`; unless `strict`, `-` and `+` stand for the smallest and greatest ids.
/// Returns the id and whether the sequence was given.
pub fn parse_id_full(arg: &[u8], missing_seq: u64, strict: bool) -> Result<(StreamId, bool)> {
    let invalid = || Error::Other(INVALID_ID.into());
    if arg.len() > 127 {
        return Err(invalid());
    }
    if !strict && arg == b"-" {
        return Ok((StreamId::MIN, true));
    }
    if !strict && arg == b"+" {
        return Ok((StreamId::MAX, true));
    }
    match arg.iter().position(|&b| b == b'-') {
        Some(dash) => {
            let ms = string2ull(&arg[..dash]).ok_or_else(invalid)?;
            let seq = string2ull(&arg[dash + 1..]).ok_or_else(invalid)?;
            Ok((StreamId::new(ms, seq), true))
        }
        None => {
            let ms = string2ull(arg).ok_or_else(invalid)?;
            Ok((StreamId::new(ms, missing_seq), false))
        }
    }
}

/// An id argument where `-` and `+` are not allowed (XADD, XDEL, XACK, XCLAIM, …): a missing
/// sequence is 0.
pub fn parse_id(arg: &[u8]) -> Result<StreamId> {
    parse_id_full(arg, 0, true).map(|(id, _)| id)
}

/// One end of a range (XRANGE, XREVRANGE, XPENDING, XAUTOCLAIM): `-`, `+`, an id whose
/// missing sequence is `missing_seq`, or `(id` for an exclusive bound, which is turned into
/// the inclusive one next to it (`start`: the bound is a start). Redis's
/// `streamParseIntervalIDOrReply` plus the exclusive-bound step of XRANGE.
pub fn parse_range_id(arg: &[u8], missing_seq: u64, start: bool) -> Result<StreamId> {
    let Some(rest) = arg.strip_prefix(b"(") else {
        return parse_id_full(arg, missing_seq, false).map(|(id, _)| id);
    };
    let (id, _) = parse_id_full(rest, missing_seq, true)?;
    let stepped = if start { id.next() } else { id.prev() };
    stepped.ok_or_else(|| {
        let which = if start { "start" } else { "end" };
        Error::err(format!("invalid {which} ID for the interval"))
    })
}

/// Writes one entry as Redis replies it: `[id, [field, value, …]]`.
pub fn reply_entry(out: &mut Reply, id: StreamId, fields: &[&[u8]]) {
    out.array(2);
    let mut buf = Vec::with_capacity(24);
    id.write(&mut buf);
    out.bulk(&buf);
    out.array(fields.len());
    for f in fields {
        out.bulk(f);
    }
}

/// Writes an id as a bulk string.
pub fn reply_id(out: &mut Reply, id: StreamId) {
    let mut buf = Vec::with_capacity(24);
    id.write(&mut buf);
    out.bulk(&buf);
}

/// The entries in `start..=end` (descending when `rev`), at most `count` (0: all), as an
/// array of entries; returns how many were written.
pub fn reply_range(
    out: &mut Reply,
    s: &Stream,
    start: StreamId,
    end: StreamId,
    rev: bool,
    count: usize,
) -> usize {
    let mut entries: Vec<u8> = Vec::new();
    let mut n = 0;
    {
        let mut body = Reply::new(&mut entries, out.proto);
        s.scan(start, end, rev, &mut |id, fields| {
            reply_entry(&mut body, id, fields);
            n += 1;
            count == 0 || n < count
        });
    }
    out.array(n);
    out.raw(&entries);
    n
}

/// The stream at `key` for reading (a missing key is `None`, another type `WRONGTYPE`).
pub fn read_stream<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s Stream>> {
    match sh.dbs[db].get_read(key, now_ms) {
        Some(e) => e.value.as_stream().map(Some),
        None => Ok(None),
    }
}

/// The stream at `key` for changing it (a missing key is `None`, another type `WRONGTYPE`).
pub fn write_stream<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s mut Stream>> {
    match sh.dbs[db].get_mut(key, now_ms) {
        Some(e) => e.value.as_stream_mut().map(Some),
        None => Ok(None),
    }
}

/// A new, empty stream value.
pub fn new_stream() -> Value {
    Value::Stream(Box::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_redis_reads_them() {
        assert_eq!(string2ull(b"1"), Some(1));
        assert_eq!(string2ull(b"+1"), Some(1));
        assert_eq!(string2ull(b" 1"), Some(1));
        assert_eq!(string2ull(b"01"), Some(1));
        assert_eq!(string2ull(b"-1"), None);
        assert_eq!(string2ull(b"1 "), None);
        assert_eq!(string2ull(b""), None);
        assert_eq!(string2ull(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(string2ull(b"18446744073709551616"), None);
        assert_eq!(parse_id(b"5").unwrap(), StreamId::new(5, 0));
        assert_eq!(parse_id(b"5-7").unwrap(), StreamId::new(5, 7));
        assert!(parse_id(b"1-").is_err());
        assert!(parse_id(b"1-2-3").is_err());
        assert!(parse_id(b"-").is_err());
        assert_eq!(
            parse_range_id(b"5", u64::MAX, false).unwrap(),
            StreamId::new(5, u64::MAX)
        );
        assert_eq!(
            parse_range_id(b"(5-1", 0, true).unwrap(),
            StreamId::new(5, 2)
        );
        assert_eq!(
            parse_range_id(b"(5-0", 0, false).unwrap(),
            StreamId::new(4, u64::MAX)
        );
        assert!(parse_range_id(b"(-", 0, true).is_err());
        assert_eq!(
            parse_range_id(b"(18446744073709551615-18446744073709551615", 0, true)
                .unwrap_err()
                .text(),
            "ERR invalid start ID for the interval"
        );
        assert_eq!(
            parse_range_id(b"(0-0", 0, false).unwrap_err().text(),
            "ERR invalid end ID for the interval"
        );
    }
}
