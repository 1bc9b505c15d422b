//! Bitmap commands (Redis's `bitops.c`): SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD and
//! BITFIELD_RO over string values, with Redis 7.0's replies, errors and statistics.
//!
//! Bit offsets are bounded like Redis's (`offset / 8` below the 512 MiB string limit); a write
//! grows the string with zero bytes to cover the highest bit it touches, and the string is
//! `raw` afterwards. Reads that Redis does with `lookupKeyRead` count a keyspace hit or miss;
//! writes count in `dirty` only when they change something (a new key, a longer string or a
//! different bit), as Redis 7.0 does. BITOP gathers its keys from every shard
//! (`Split::Gather`), so everything here runs against one shard.

use super::spec::{acl, flag, kflag, Arg, ArgType, CommandSpec, Group, KeySpec, Route, Split};
use super::string::lookup_read;
use super::Call;
use crate::keyspace::{Db, Entry};
use crate::limits::STRING_LEN_MAX;
use crate::notify::class;
use crate::types::bitmap::{self, BitOp, FieldType, Overflow};
use crate::types::{SmallBytes, Str, Value};
use crate::util::{eq_ic, parse_i64};
use crate::{Error, Result, Shard};
use std::borrow::Cow;

const BITMAP: CommandSpec = CommandSpec {
    group: Group::Bitmap,
    acl: acl::BITMAP,
    ..CommandSpec::DEFAULT
};

const KEY: Arg = Arg::key("key", 0);
const OFFSET: Arg = Arg::new("offset", ArgType::Integer);
const ENCODING: Arg = Arg::new("encoding", ArgType::String);
const INDEX_UNIT: Arg = Arg::oneof(
    "index_unit",
    &[Arg::token("byte", "BYTE"), Arg::token("bit", "BIT")],
)
.since("7.0.0")
.optional();
const BYTE_BIT_HISTORY: &[(&str, &str)] = &[("7.0.0", "Added the `BYTE|BIT` option.")];
const GET_FIELD: Arg = Arg::block("encoding_offset", &[ENCODING, OFFSET]).with_token("GET");

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "setbit",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::UPDATE)],
        run: Some(setbit),
        summary: "Sets or clears one bit of a key's string, growing it with zero bytes as needed, and answers with the bit's old value.",
        since: "2.2.0",
        args: &[KEY, OFFSET, Arg::new("value", ArgType::Integer)],
        ..BITMAP
    },
    CommandSpec {
        name: "getbit",
        arity: 3,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(getbit),
        summary: "Answers with one bit of a key's string (0 past its end).",
        since: "2.2.0",
        args: &[KEY, OFFSET],
        ..BITMAP
    },
    CommandSpec {
        name: "bitcount",
        arity: -2,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(bitcount),
        summary: "Counts the set bits of a key's string, optionally within a range of bytes or bits.",
        since: "2.6.0",
        complexity: "O(N)",
        history: BYTE_BIT_HISTORY,
        args: &[
            KEY,
            Arg::block(
                "index",
                &[
                    Arg::new("start", ArgType::Integer),
                    Arg::new("end", ArgType::Integer),
                    INDEX_UNIT,
                ],
            )
            .optional(),
        ],
        ..BITMAP
    },
    CommandSpec {
        name: "bitpos",
        arity: -3,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(bitpos),
        summary: "Finds the first bit set to 1, or to 0, in a key's string, optionally within a range.",
        since: "2.8.7",
        complexity: "O(N)",
        history: BYTE_BIT_HISTORY,
        args: &[
            KEY,
            Arg::new("bit", ArgType::Integer),
            Arg::block(
                "index",
                &[
                    Arg::new("start", ArgType::Integer),
                    Arg::block("end_index", &[Arg::new("end", ArgType::Integer), INDEX_UNIT])
                        .optional(),
                ],
            )
            .optional(),
        ],
        ..BITMAP
    },
    CommandSpec {
        name: "bitop",
        arity: -4,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[
            KeySpec::one(2, kflag::OW | kflag::UPDATE),
            KeySpec::range(3, -1, 1, kflag::RO | kflag::ACCESS),
        ],
        route: Route::Keys(Split::Gather),
        run: Some(bitop),
        summary: "Combines the strings of several keys bit by bit (AND, OR, XOR, or NOT of one) and stores the result.",
        since: "2.6.0",
        complexity: "O(N)",
        args: &[
            Arg::new("operation", ArgType::String),
            Arg::key("destkey", 0),
            Arg::key("key", 1).multiple(),
        ],
        ..BITMAP
    },
    CommandSpec {
        name: "bitfield",
        arity: -2,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec {
            notes: Some("This command allows both access and modification of the key"),
            flags: kflag::RW | kflag::ACCESS | kflag::UPDATE | kflag::VARIABLE_FLAGS,
            ..KeySpec::one(1, 0)
        }],
        key_flags: Some(bitfield_key_flags),
        run: Some(bitfield),
        summary: "Reads, writes and increments integers of any width from 1 to 64 bits stored at bit offsets of a key's string.",
        since: "3.2.0",
        complexity: "O(1) for each subcommand specified",
        args: &[
            KEY,
            Arg::oneof(
                "operation",
                &[
                    GET_FIELD,
                    Arg::block(
                        "write",
                        &[
                            Arg::oneof(
                                "wrap_sat_fail",
                                &[
                                    Arg::token("wrap", "WRAP"),
                                    Arg::token("sat", "SAT"),
                                    Arg::token("fail", "FAIL"),
                                ],
                            )
                            .with_token("OVERFLOW")
                            .optional(),
                            Arg::oneof(
                                "write_operation",
                                &[
                                    Arg::block(
                                        "encoding_offset_value",
                                        &[ENCODING, OFFSET, Arg::new("value", ArgType::Integer)],
                                    )
                                    .with_token("SET"),
                                    Arg::block(
                                        "encoding_offset_increment",
                                        &[
                                            ENCODING,
                                            OFFSET,
                                            Arg::new("increment", ArgType::Integer),
                                        ],
                                    )
                                    .with_token("INCRBY"),
                                ],
                            ),
                        ],
                    ),
                ],
            )
            .optional()
            .multiple(),
        ],
        ..BITMAP
    },
    CommandSpec {
        name: "bitfield_ro",
        arity: -2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(bitfield_ro),
        summary: "Reads integers stored at bit offsets of a key's string (BITFIELD limited to GET).",
        since: "6.0.0",
        complexity: "O(1) for each subcommand specified",
        args: &[KEY, GET_FIELD.optional().multiple().multiple_token()],
        ..BITMAP
    },
];

// ---------------------------------------------------------------------------------------------
// Shared helpers.

/// Parses a bit offset as Redis does: a non-negative integer whose byte (`offset / 8`) stays
/// below the string size limit; with `field_bits`, `#n` means `n * field_bits` (BITFIELD).
fn bit_offset(arg: &[u8], field_bits: Option<u32>) -> Result<u64> {
    let err = || Error::err("bit offset is not an integer or out of range");
    let (digits, scale) = match (arg.split_first(), field_bits) {
        (Some((b'#', rest)), Some(bits)) => (rest, bits as i64),
        _ => (arg, 1),
    };
    // Redis multiplies in C's wrapping arithmetic; a wrapped result is checked like any other.
    let n = parse_i64(digits).ok_or_else(err)?.wrapping_mul(scale);
    if n < 0 || (n >> 3) as u64 >= STRING_LEN_MAX as u64 {
        return Err(err());
    }
    Ok(n as u64)
}

/// The string under `key` made ready for a bit write up to bit `max_bit`: created (zero bytes)
/// when absent, grown with zero bytes when shorter. Also says whether that changed the key
/// (created or grown), which makes the write count even if no bit flips.
fn string_for_write<'s>(
    db: &'s mut Db,
    key: &[u8],
    max_bit: u64,
    now_ms: u64,
) -> Result<(&'s mut Vec<u8>, bool)> {
    let need = (max_bit >> 3) as usize + 1;
    let created = match db.get_mut(key, now_ms) {
        Some(e) => {
            e.value.as_str()?;
            false
        }
        None => {
            let fresh = Str::Bytes {
                data: SmallBytes::Heap(vec![0; need]),
                raw: true,
            };
            db.insert(key, Entry::new(Value::Str(fresh)));
            true
        }
    };
    let Some(e) = db.get_mut(key, now_ms) else {
        return Err(Error::NoSuchKey);
    };
    let bytes = e.value.as_str_mut()?.bytes_mut();
    let grown = bytes.len() < need;
    if grown {
        bytes.resize(need, 0);
    }
    Ok((bytes, created || grown))
}

/// Start and end indexes (bytes, or bits with `bits`) resolved against a string of `len`
/// bytes as BITCOUNT and BITPOS do: negative counts from the end, clamped to the string.
/// Returns the inclusive bit range, or `None` when it is empty.
fn resolve_range(len: usize, start: i64, end: i64, bits: bool) -> Option<(u64, u64)> {
    let total = if bits { len as i64 * 8 } else { len as i64 };
    let start = if start < 0 { start + total } else { start }.max(0);
    let end = if end < 0 { end + total } else { end }
        .max(0)
        .min(total - 1);
    if start > end {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(if bits {
        (start, end)
    } else {
        (start * 8, end * 8 + 7)
    })
}

/// Parses BYTE or BIT.
fn index_unit(arg: &[u8]) -> Result<bool> {
    if eq_ic(arg, "bit") {
        Ok(true)
    } else if eq_ic(arg, "byte") {
        Ok(false)
    } else {
        Err(Error::Syntax)
    }
}

/// The bytes of the string under `key`, counting a keyspace hit or miss (`None`: no key).
fn read_bytes<'s>(sh: &'s mut Shard, c: &Call, key: &[u8]) -> Result<Option<Cow<'s, [u8]>>> {
    match lookup_read(sh, c.db, key, c.now_ms) {
        Some(v) => Ok(Some(v.as_str()?.as_bytes())),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// SETBIT, GETBIT, BITCOUNT, BITPOS.

/// SETBIT key offset value
fn setbit(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let offset = bit_offset(c.argv[2], None)?;
    let bad_bit = || Error::err("bit is not an integer or out of range");
    let on = match parse_i64(c.argv[3]).ok_or_else(bad_bit)? {
        0 => false,
        1 => true,
        _ => return Err(bad_bit()),
    };
    let (bytes, changed) = string_for_write(&mut sh.dbs[c.db], c.argv[1], offset, c.now_ms)?;
    let old = bitmap::set_bit(bytes, offset, on);
    if changed || old != on {
        sh.stats.dirty += 1;
        sh.notify(class::STRING, "setbit", c.db, c.argv[1]);
    }
    c.out.int(old as i64);
    Ok(())
}

/// GETBIT key offset
fn getbit(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let offset = bit_offset(c.argv[2], None)?;
    let bit = read_bytes(sh, c, c.argv[1])?.is_some_and(|b| bitmap::get_bit(&b, offset));
    c.out.int(bit as i64);
    Ok(())
}

/// BITCOUNT key [start end [BYTE | BIT]]
fn bitcount(sh: &mut Shard, c: &mut Call) -> Result<()> {
    // Redis looks the key up first: a missing key answers 0 whatever the arguments.
    let Some(bytes) = read_bytes(sh, c, c.argv[1])? else {
        c.out.int(0);
        return Ok(());
    };
    let range = match c.argv.len() {
        2 => resolve_range(bytes.len(), 0, -1, false),
        4 | 5 => {
            let start = parse_i64(c.argv[2]).ok_or(Error::NotInteger)?;
            let end = parse_i64(c.argv[3]).ok_or(Error::NotInteger)?;
            // Both negative and crossed: empty, before the unit is even looked at.
            if start < 0 && end < 0 && start > end {
                c.out.int(0);
                return Ok(());
            }
            let bits = match c.argv.get(4) {
                Some(unit) => index_unit(unit)?,
                None => false,
            };
            resolve_range(bytes.len(), start, end, bits)
        }
        _ => return Err(Error::Syntax),
    };
    let n = range.map_or(0, |(first, last)| bitmap::count_bits(&bytes, first, last));
    c.out.int(n as i64);
    Ok(())
}

/// BITPOS key bit [start [end [BYTE | BIT]]]
fn bitpos(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let bit = match parse_i64(c.argv[2]).ok_or(Error::NotInteger)? {
        0 => false,
        1 => true,
        _ => return Err(Error::err("The bit argument must be 1 or 0.")),
    };
    // A missing key is an endless run of zeros.
    let Some(bytes) = read_bytes(sh, c, c.argv[1])? else {
        c.out.int(if bit { -1 } else { 0 });
        return Ok(());
    };
    let len = bytes.len();
    let (range, end_given) = match c.argv.len() {
        3 => (resolve_range(len, 0, -1, false), false),
        4..=6 => {
            let start = parse_i64(c.argv[3]).ok_or(Error::NotInteger)?;
            let bits = match c.argv.get(5) {
                Some(unit) => index_unit(unit)?,
                None => false,
            };
            let end = match c.argv.get(4) {
                Some(e) => Some(parse_i64(e).ok_or(Error::NotInteger)?),
                None => None,
            };
            let last = if bits {
                len as i64 * 8 - 1
            } else {
                len as i64 - 1
            };
            (
                resolve_range(len, start, end.unwrap_or(last), bits),
                end.is_some(),
            )
        }
        _ => return Err(Error::Syntax),
    };
    let pos = match range {
        None => -1,
        Some((first, last)) => match bitmap::find_bit(&bytes, first, last, bit) {
            Some(p) => p as i64,
            // Without an explicit end the string is seen as followed by zeros.
            None if !bit && !end_given => last as i64 + 1,
            None => -1,
        },
    };
    c.out.int(pos);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// BITOP.

/// BITOP AND | OR | XOR | NOT destkey key [key ...]
fn bitop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let op = [
        ("and", BitOp::And),
        ("or", BitOp::Or),
        ("xor", BitOp::Xor),
        ("not", BitOp::Not),
    ]
    .into_iter()
    .find(|(name, _)| eq_ic(c.argv[1], name))
    .map(|(_, op)| op)
    .ok_or(Error::Syntax)?;
    if op == BitOp::Not && c.argv.len() != 4 {
        return Err(Error::err(
            "BITOP NOT must be called with a single source key.",
        ));
    }
    let (dest, sources) = (c.argv[2], &c.argv[3..]);
    // Look every source up first (expiring, counting, type-checking), then read them all at
    // once without copying.
    for key in sources {
        if let Some(v) = lookup_read(sh, c.db, key, c.now_ms) {
            v.as_str()?;
        }
    }
    let db = &mut sh.dbs[c.db];
    let result = {
        let values: Vec<Cow<[u8]>> = sources
            .iter()
            .map(|k| match db.peek(k, c.now_ms).map(|e| e.value.as_str()) {
                Some(Ok(s)) => s.as_bytes(),
                _ => Cow::Borrowed(&[][..]),
            })
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_ref()).collect();
        bitmap::bitop(op, &refs)
    };
    let len = result.len();
    if len > 0 {
        db.insert(dest, Entry::new(Value::Str(Str::raw(result))));
        sh.stats.dirty += 1;
        sh.notify(class::STRING, "set", c.db, dest);
    } else if db.remove(dest).is_some() {
        sh.stats.dirty += 1;
        sh.notify(class::GENERIC, "del", c.db, dest);
    }
    c.out.int(len as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// BITFIELD.

/// One BITFIELD operation.
#[derive(Debug, Clone, Copy)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

/// A parsed BITFIELD operation with the overflow policy in force for it.
#[derive(Debug, Clone, Copy)]
struct Field {
    op: FieldOp,
    ty: FieldType,
    offset: u64,
    overflow: Overflow,
}

/// Parses BITFIELD's operations; also returns the highest bit a write touches, if any.
fn parse_fields(argv: &[&[u8]]) -> Result<(Vec<Field>, Option<u64>)> {
    let type_err = || {
        Error::err("Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.")
    };
    let (mut fields, mut highest) = (Vec::new(), None::<u64>);
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < argv.len() {
        let (word, left) = (argv[j], argv.len() - j - 1);
        let write = if eq_ic(word, "get") && left >= 2 {
            false
        } else if (eq_ic(word, "set") || eq_ic(word, "incrby")) && left >= 3 {
            true
        } else if eq_ic(word, "overflow") && left >= 1 {
            overflow = match argv[j + 1] {
                w if eq_ic(w, "wrap") => Overflow::Wrap,
                w if eq_ic(w, "sat") => Overflow::Sat,
                w if eq_ic(w, "fail") => Overflow::Fail,
                _ => return Err(Error::err("Invalid OVERFLOW type specified")),
            };
            j += 2;
            continue;
        } else {
            return Err(Error::Syntax);
        };
        let ty = FieldType::parse(argv[j + 1]).ok_or_else(type_err)?;
        let offset = bit_offset(argv[j + 2], Some(ty.bits))?;
        let op = if write {
            let last = offset + ty.bits as u64 - 1;
            highest = Some(highest.map_or(last, |h| h.max(last)));
            let n = parse_i64(argv[j + 3]).ok_or(Error::NotInteger)?;
            if eq_ic(word, "set") {
                FieldOp::Set(n)
            } else {
                FieldOp::IncrBy(n)
            }
        } else {
            FieldOp::Get
        };
        fields.push(Field {
            op,
            ty,
            offset,
            overflow,
        });
        j += if write { 4 } else { 3 };
    }
    Ok((fields, highest))
}

/// BITFIELD's key is only read when every operation is a GET (as Redis's key-flags hook).
fn bitfield_key_flags(argv: &[&[u8]]) -> u32 {
    let mut i = 2;
    while i < argv.len() {
        let (word, left) = (argv[i], argv.len() - i - 1);
        if eq_ic(word, "get") && left >= 2 {
            i += 3;
        } else if eq_ic(word, "overflow") && left >= 1 {
            i += 2;
        } else {
            return kflag::RW | kflag::ACCESS | kflag::UPDATE;
        }
    }
    kflag::RO | kflag::ACCESS
}

/// BITFIELD key [GET encoding offset | [OVERFLOW WRAP | SAT | FAIL] SET encoding offset value
/// | INCRBY encoding offset increment] ...
fn bitfield(sh: &mut Shard, c: &mut Call) -> Result<()> {
    bitfield_generic(sh, c, false)
}

/// BITFIELD_RO key [GET encoding offset ...]
fn bitfield_ro(sh: &mut Shard, c: &mut Call) -> Result<()> {
    bitfield_generic(sh, c, true)
}

fn bitfield_generic(sh: &mut Shard, c: &mut Call, read_only: bool) -> Result<()> {
    let (fields, highest) = parse_fields(c.argv)?;
    let Some(highest) = highest else {
        // Only GETs: a plain read.
        let bytes = read_bytes(sh, c, c.argv[1])?.unwrap_or_default();
        c.out.array(fields.len());
        for f in &fields {
            c.out.int(bitmap::get_field(&bytes, f.offset, f.ty) as i64);
        }
        return Ok(());
    };
    if read_only {
        return Err(Error::err("BITFIELD_RO only supports the GET subcommand"));
    }
    let (bytes, grown) = string_for_write(&mut sh.dbs[c.db], c.argv[1], highest, c.now_ms)?;
    c.out.array(fields.len());
    let mut changes = 0;
    for f in &fields {
        let old = bitmap::get_field(bytes, f.offset, f.ty);
        let (target, answer_new) = match f.op {
            FieldOp::Get => {
                c.out.int(old as i64);
                continue;
            }
            // An unsigned SET of a negative number is checked as the huge unsigned number
            // with the same bits, as Redis does.
            FieldOp::Set(v) if !f.ty.signed => (v as u64 as i128, false),
            FieldOp::Set(v) => (v as i128, false),
            FieldOp::IncrBy(by) => (old + by as i128, true),
        };
        match bitmap::fit(f.ty, target, f.overflow) {
            None => c.out.null(),
            Some(new) => {
                c.out.int(if answer_new { new } else { old } as i64);
                bitmap::set_field(bytes, f.offset, f.ty, new);
                if grown || new != old {
                    changes += 1;
                }
            }
        }
    }
    sh.stats.dirty += changes;
    if changes > 0 {
        sh.notify(class::STRING, "setbit", c.db, c.argv[1]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::resp::Proto;
    use crate::shard::testing::TestShard;

    fn bulk(s: &[u8]) -> String {
        format!("${}\r\n{}\r\n", s.len(), String::from_utf8_lossy(s))
    }

    fn encoding(t: &mut TestShard, key: &str) -> &'static str {
        t.shard.dbs[0]
            .get(key.as_bytes(), t.now_ms)
            .map_or("none", |e| e.value.encoding())
    }

    const OFFSET_ERR: &str = "-ERR bit offset is not an integer or out of range\r\n";
    const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";
    const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    #[test]
    fn setbit_getbit() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SETBIT k 7 1"), ":0\r\n");
        assert_eq!(t.run("GET k"), bulk(b"\x01"));
        assert_eq!(encoding(&mut t, "k"), "raw");
        assert_eq!(t.run("SETBIT k 7 0"), ":1\r\n");
        assert_eq!(t.run("SETBIT k 16 1"), ":0\r\n");
        assert_eq!(t.run("GET k"), bulk(b"\x00\x00\x80"));
        assert_eq!(t.run("GETBIT k 16"), ":1\r\n");
        assert_eq!(t.run("GETBIT k 17"), ":0\r\n");
        assert_eq!(t.run("GETBIT k 1000000"), ":0\r\n");
        assert_eq!(t.run("GETBIT none 0"), ":0\r\n");
        // An integer is read and changed as its decimal digits.
        t.run("SET n 1");
        assert_eq!(encoding(&mut t, "n"), "int");
        assert_eq!(t.run("GETBIT n 2"), ":1\r\n");
        assert_eq!(t.run("SETBIT n 6 1"), ":0\r\n");
        assert_eq!(t.run("GET n"), bulk(b"3"));
        assert_eq!(encoding(&mut t, "n"), "raw");
        let bad_bit = "-ERR bit is not an integer or out of range\r\n";
        assert_eq!(t.run("SETBIT k 0 2"), bad_bit);
        assert_eq!(t.run("SETBIT k 0 -1"), bad_bit);
        assert_eq!(t.run("SETBIT k 0 x"), bad_bit);
        assert_eq!(t.run("SETBIT k -1 1"), OFFSET_ERR);
        assert_eq!(t.run("SETBIT k x 1"), OFFSET_ERR);
        assert_eq!(t.run("SETBIT k #1 1"), OFFSET_ERR);
        assert_eq!(t.run("SETBIT k 4294967296 1"), OFFSET_ERR);
        assert_eq!(t.run("GETBIT k 4294967296"), OFFSET_ERR);
        // The offset is checked before the value.
        assert_eq!(t.run("SETBIT k -1 2"), OFFSET_ERR);
        t.run("LPUSH l a");
        assert_eq!(t.run("SETBIT l 0 1"), WRONGTYPE);
        assert_eq!(t.run("GETBIT l 0"), WRONGTYPE);
        assert_eq!(t.run("GETBIT l x"), OFFSET_ERR);
    }

    #[test]
    fn setbit_at_the_largest_offset() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SETBIT big 4294967295 1"), ":0\r\n");
        assert_eq!(t.run("STRLEN big"), ":536870912\r\n");
        assert_eq!(t.run("GETBIT big 4294967295"), ":1\r\n");
        // (Whole-string scans of 512 MiB are left to the integration tests: slow in debug.)
        assert_eq!(t.run("BITCOUNT big -1 -1"), ":1\r\n");
        assert_eq!(t.run("BITPOS big 1 -2"), ":4294967295\r\n");
        assert_eq!(t.run("SETBIT big 4294967295 0"), ":1\r\n");
        t.run("DEL big");
    }

    #[test]
    fn setbit_dirty_only_on_change() {
        let mut t = TestShard::new();
        let d0 = t.shard.stats.dirty;
        t.run("SETBIT k 0 0"); // created
        t.run("SETBIT k 0 0"); // nothing changes
        t.run("SETBIT k 0 1"); // flips
        t.run("SETBIT k 20 0"); // grows
        assert_eq!(t.shard.stats.dirty, d0 + 3);
    }

    #[test]
    fn bitcount() {
        let mut t = TestShard::new();
        t.run("SET s foobar");
        let cases = [
            ("", 26),
            (" 0 0", 4),
            (" 1 1", 6),
            (" 0 -1", 26),
            (" -2 -1", 7),
            (" 5 30 BIT", 17),
            (" 5 30 bit", 17),
            (" 0 0 BYTE", 4),
            (" -1 -2", 0),
            (" -1 -2 FOO", 0),
            (" 2 1", 0),
            (" 100 200", 0),
            (" -100 100", 26),
            (" -9223372036854775808 9223372036854775807", 26),
            (" 0 -1 BIT", 26),
            (" 47 47 BIT", 0),
            (" 46 47 BIT", 1),
        ];
        for (args, want) in cases {
            assert_eq!(
                t.run(&format!("BITCOUNT s{args}")),
                format!(":{want}\r\n"),
                "{args}"
            );
        }
        assert_eq!(t.run("BITCOUNT s 0"), "-ERR syntax error\r\n");
        assert_eq!(t.run("BITCOUNT s 0 1 BIT x"), "-ERR syntax error\r\n");
        assert_eq!(t.run("BITCOUNT s 0 1 FOO"), "-ERR syntax error\r\n");
        assert_eq!(t.run("BITCOUNT s a 1"), NOT_INT);
        // A missing key answers 0 before the arguments are looked at.
        assert_eq!(t.run("BITCOUNT none 0"), ":0\r\n");
        assert_eq!(t.run("BITCOUNT none a b FOO"), ":0\r\n");
        t.run("SET n 12345");
        assert_eq!(t.run("BITCOUNT n"), format!(":{}\r\n", 3 + 3 + 4 + 3 + 4));
        t.run_args(&[b"SET", b"e", b""]);
        assert_eq!(t.run("BITCOUNT e"), ":0\r\n");
        assert_eq!(t.run("BITCOUNT e 0 -1 BIT"), ":0\r\n");
        t.run("LPUSH l a");
        assert_eq!(t.run("BITCOUNT l"), WRONGTYPE);
    }

    #[test]
    fn bitpos() {
        let mut t = TestShard::new();
        t.run_args(&[b"SET", b"k", b"\xff\xf0\x00"]);
        let cases = [
            ("0", 12),
            ("1", 0),
            ("0 2", 16),
            ("1 2", -1),
            ("1 1", 8),
            ("0 0 0", -1),
            ("0 0 1", 12),
            ("1 1 -1", 8),
            ("0 3", -1),
            ("0 7 15 BIT", 12),
            ("1 12 23 BIT", -1),
            ("0 0 3 BIT", -1),
            ("1 -100 -1 bit", 0),
            ("0 5 1", -1),
        ];
        for (args, want) in cases {
            assert_eq!(
                t.run(&format!("BITPOS k {args}")),
                format!(":{want}\r\n"),
                "{args}"
            );
        }
        t.run_args(&[b"SET", b"ones", b"\xff\xff"]);
        // Without an end the string counts as followed by zeros; with one, it does not.
        assert_eq!(t.run("BITPOS ones 0"), ":16\r\n");
        assert_eq!(t.run("BITPOS ones 0 1"), ":16\r\n");
        assert_eq!(t.run("BITPOS ones 0 0 -1"), ":-1\r\n");
        // A unit needs an end.
        assert_eq!(t.run("BITPOS ones 0 3 BIT"), NOT_INT);
        assert_eq!(t.run("BITPOS none 0"), ":0\r\n");
        assert_eq!(t.run("BITPOS none 1"), ":-1\r\n");
        assert_eq!(t.run("BITPOS none 1 x"), ":-1\r\n");
        t.run_args(&[b"SET", b"e", b""]);
        assert_eq!(t.run("BITPOS e 0"), ":-1\r\n");
        assert_eq!(t.run("BITPOS e 1"), ":-1\r\n");
        assert_eq!(
            t.run("BITPOS k 2"),
            "-ERR The bit argument must be 1 or 0.\r\n"
        );
        assert_eq!(t.run("BITPOS k x"), NOT_INT);
        assert_eq!(t.run("BITPOS k 1 x"), NOT_INT);
        assert_eq!(t.run("BITPOS k 1 0 x"), NOT_INT);
        assert_eq!(t.run("BITPOS k 1 0 1 FOO"), "-ERR syntax error\r\n");
        // The unit is checked before the end.
        assert_eq!(t.run("BITPOS k 1 0 x FOO"), "-ERR syntax error\r\n");
        assert_eq!(t.run("BITPOS k 1 0 1 BIT x"), "-ERR syntax error\r\n");
    }

    #[test]
    fn bitop() {
        let mut t = TestShard::new();
        t.run_args(&[b"SET", b"a", b"\xff\x0f\x01"]);
        t.run_args(&[b"SET", b"b", b"\x0f"]);
        assert_eq!(t.run("BITOP AND d a b"), ":3\r\n");
        assert_eq!(t.run("GET d"), bulk(b"\x0f\x00\x00"));
        assert_eq!(encoding(&mut t, "d"), "raw");
        assert_eq!(t.run("BITOP or d a b none"), ":3\r\n");
        assert_eq!(t.run("GET d"), bulk(b"\xff\x0f\x01"));
        assert_eq!(t.run("BITOP XOR d a b"), ":3\r\n");
        assert_eq!(t.run("GET d"), bulk(b"\xf0\x0f\x01"));
        assert_eq!(t.run("BITOP NOT d b"), ":1\r\n");
        assert_eq!(t.run("GET d"), bulk(b"\xf0"));
        assert_eq!(
            t.run("BITOP NOT d a b"),
            "-ERR BITOP NOT must be called with a single source key.\r\n"
        );
        assert_eq!(t.run("BITOP NAND d a b"), "-ERR syntax error\r\n");
        // An empty result deletes the destination (and drops its TTL on a write).
        t.run("SET d x PX 10");
        assert_eq!(t.run("BITOP AND d none none2"), ":0\r\n");
        assert_eq!(t.run("EXISTS d"), ":0\r\n");
        t.run("SET d x PX 10");
        assert_eq!(t.run("BITOP OR d b"), ":1\r\n");
        t.now_ms += 10;
        assert_eq!(t.run("GET d"), bulk(b"\x0f"));
        // A destination of another type is replaced; a source of another type is an error.
        t.run("LPUSH l x");
        assert_eq!(t.run("BITOP OR l a"), ":3\r\n");
        assert_eq!(t.run("TYPE l"), "+string\r\n");
        t.run("LPUSH l2 x");
        assert_eq!(t.run("BITOP OR d a l2"), WRONGTYPE);
        // The destination may be a source.
        assert_eq!(t.run("BITOP NOT a a"), ":3\r\n");
        assert_eq!(t.run("GET a"), bulk(b"\x00\xf0\xfe"));
        t.run("SET n 12");
        assert_eq!(t.run("BITOP AND d n n"), ":2\r\n");
        assert_eq!(t.run("GET d"), bulk(b"12"));
    }

    #[test]
    fn bitfield() {
        let mut t = TestShard::new();
        assert_eq!(
            t.run("BITFIELD k SET i8 0 -100 GET u8 0 GET i8 0"),
            "*3\r\n:0\r\n:156\r\n:-100\r\n"
        );
        assert_eq!(
            t.run("BITFIELD k INCRBY u2 100 1 OVERFLOW SAT INCRBY u2 102 1"),
            "*2\r\n:1\r\n:1\r\n"
        );
        assert_eq!(t.run("STRLEN k"), ":13\r\n");
        // #n offsets are multiples of the width.
        assert_eq!(
            t.run("BITFIELD h SET u8 #1 255 GET u8 8 GET u4 #3"),
            "*3\r\n:0\r\n:255\r\n:15\r\n"
        );
        // Overflow policies.
        let cases = [
            ("INCRBY u8 0 300", ":44"),
            ("OVERFLOW SAT INCRBY u8 0 300", ":255"),
            ("OVERFLOW FAIL INCRBY u8 0 300", "_"),
            ("OVERFLOW WRAP INCRBY i8 0 200", ":-57"),
            ("OVERFLOW SAT INCRBY i8 0 -200", ":-128"),
            ("OVERFLOW SAT SET u8 0 -1", ":128"),
            ("GET u8 0", ":255"),
            ("OVERFLOW WRAP SET u8 0 -1", ":255"),
            ("OVERFLOW FAIL SET i8 0 128", "_"),
            ("SET i64 0 -1", ":-72057594037927936"),
            ("INCRBY i64 0 -9223372036854775808", ":9223372036854775807"),
            ("OVERFLOW FAIL INCRBY i64 0 1", "_"),
            ("OVERFLOW SAT INCRBY i64 0 1", ":9223372036854775807"),
            ("SET u63 0 0", ":4611686018427387903"),
        ];
        for (args, want) in cases {
            let want = if want == "_" {
                "*1\r\n$-1\r\n".to_string()
            } else {
                format!("*1\r\n{want}\r\n")
            };
            assert_eq!(t.run(&format!("BITFIELD f {args}")), want, "{args}");
        }
        let type_err = "-ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.\r\n";
        assert_eq!(t.run("BITFIELD f GET u64 0"), type_err);
        assert_eq!(t.run("BITFIELD f GET i65 0"), type_err);
        assert_eq!(t.run("BITFIELD f GET x8 0"), type_err);
        assert_eq!(t.run("BITFIELD f GET i0 0"), type_err);
        assert_eq!(t.run("BITFIELD f GET i8 -1"), OFFSET_ERR);
        assert_eq!(t.run("BITFIELD f GET i8 #-1"), OFFSET_ERR);
        assert_eq!(t.run("BITFIELD f GET i8 4294967296"), OFFSET_ERR);
        // Redis's multiplication wraps: this one lands on bit 8.
        assert_eq!(
            t.run("BITFIELD h GET u8 #2305843009213693953"),
            "*1\r\n:255\r\n"
        );
        assert_eq!(t.run("BITFIELD f SET i8 0 x"), NOT_INT);
        assert_eq!(t.run("BITFIELD f GET i8"), "-ERR syntax error\r\n");
        assert_eq!(t.run("BITFIELD f FOO"), "-ERR syntax error\r\n");
        assert_eq!(t.run("BITFIELD f OVERFLOW"), "-ERR syntax error\r\n");
        assert_eq!(
            t.run("BITFIELD f OVERFLOW X GET i8 0"),
            "-ERR Invalid OVERFLOW type specified\r\n"
        );
        assert_eq!(t.run("BITFIELD f"), "*0\r\n");
        assert_eq!(t.run("BITFIELD none GET u8 0"), "*1\r\n:0\r\n");
        assert_eq!(t.run("EXISTS none"), ":0\r\n");
        // A write that fails still creates the key, zero-filled.
        assert_eq!(
            t.run("BITFIELD z OVERFLOW FAIL INCRBY u8 8 -1"),
            "*1\r\n$-1\r\n"
        );
        assert_eq!(t.run("GET z"), bulk(b"\0\0"));
        t.run("LPUSH l a");
        assert_eq!(t.run("BITFIELD l GET u8 0"), WRONGTYPE);
        assert_eq!(t.run("BITFIELD l SET u8 0 1"), WRONGTYPE);
        t.proto = Proto::Resp3;
        assert_eq!(
            t.run("BITFIELD r OVERFLOW FAIL INCRBY u8 0 -1"),
            "*1\r\n_\r\n"
        );
    }

    #[test]
    fn bitfield_ro() {
        let mut t = TestShard::new();
        t.run("SET k foo");
        assert_eq!(
            t.run("BITFIELD_RO k GET u8 0 GET i4 4"),
            "*2\r\n:102\r\n:6\r\n"
        );
        assert_eq!(
            t.run("BITFIELD_RO k GET u8 0 SET u8 0 1"),
            "-ERR BITFIELD_RO only supports the GET subcommand\r\n"
        );
        // Parse errors come first.
        assert_eq!(t.run("BITFIELD_RO k SET u8 0 x"), NOT_INT);
        assert_eq!(t.run("BITFIELD_RO k OVERFLOW SAT"), "*0\r\n");
        assert_eq!(t.run("GET k"), bulk(b"foo"));
    }

    #[test]
    fn stats() {
        let mut t = TestShard::new();
        t.run("SET a x");
        let (h, m) = (t.shard.stats.keyspace_hits, t.shard.stats.keyspace_misses);
        t.run("GETBIT a 0");
        t.run("GETBIT b 0");
        t.run("BITCOUNT a");
        t.run("BITPOS b 1");
        t.run("BITOP OR d a b");
        t.run("BITFIELD a GET u8 0");
        t.run("BITFIELD_RO b GET u8 0");
        // Writes look their key up for writing: no hit or miss.
        t.run("BITFIELD a SET u8 0 1");
        t.run("SETBIT c 0 1");
        assert_eq!(t.shard.stats.keyspace_hits, h + 4);
        assert_eq!(t.shard.stats.keyspace_misses, m + 4);
        let d = t.shard.stats.dirty;
        t.run("BITFIELD a SET u8 0 1 SET u8 0 2 GET u8 0");
        t.run("BITFIELD a SET u8 0 2");
        t.run("BITFIELD a INCRBY u8 0 0");
        t.run("BITFIELD n OVERFLOW FAIL INCRBY u8 0 -1");
        assert_eq!(t.shard.stats.dirty, d + 1);
    }

    /// The integer reply of `line`.
    fn int(t: &mut TestShard, line: &str) -> i64 {
        let r = t.run(line);
        r.strip_prefix(':')
            .and_then(|n| n.trim_end().parse().ok())
            .unwrap_or_else(|| panic!("{line}: {r}"))
    }

    /// A start/end argument pair resolved as Redis does against `len` units: the inclusive
    /// range, or `None` when it is empty.
    fn model_range(len: i64, start: i64, end: i64) -> Option<(i64, i64)> {
        let fix = |i: i64| if i < 0 { (len + i).max(0) } else { i };
        let (s, e) = (fix(start), fix(end).min(len - 1));
        (s <= e).then_some((s, e))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

        /// SETBIT, GETBIT, BITCOUNT and BITPOS against a `Vec<bool>` of the bits.
        #[test]
        fn bits_match_a_bool_model(
            writes in proptest::collection::vec((0u64..600, proptest::bool::ANY), 1..60),
            ranges in proptest::collection::vec((-90i64..90, -90i64..90, proptest::bool::ANY), 1..20),
        ) {
            let mut t = TestShard::new();
            let mut model: Vec<bool> = Vec::new();
            for &(offset, on) in &writes {
                let want_len = (offset as usize / 8 + 1) * 8;
                if model.len() < want_len {
                    model.resize(want_len, false);
                }
                let old = std::mem::replace(&mut model[offset as usize], on);
                proptest::prop_assert_eq!(int(&mut t, &format!("SETBIT k {offset} {}", on as u8)), old as i64);
            }
            for i in 0..model.len() + 16 {
                let want = model.get(i).copied().unwrap_or(false) as i64;
                proptest::prop_assert_eq!(int(&mut t, &format!("GETBIT k {i}")), want);
            }
            let ones = model.iter().filter(|&&b| b).count() as i64;
            proptest::prop_assert_eq!(int(&mut t, "BITCOUNT k"), ones);
            let first = |bit: bool, from: i64, to: i64| (from..=to).find(|&i| model[i as usize] == bit);
            for &(start, end, bits) in &ranges {
                // In bits the range is over bits; in bytes over bytes, widened to their bits.
                let (unit_len, scale) = if bits { (model.len() as i64, 1) } else { (model.len() as i64 / 8, 8) };
                let range = model_range(unit_len, start, end).map(|(s, e)| (s * scale, e * scale + scale - 1));
                let unit = if bits { "BIT" } else { "BYTE" };
                let want = range.map_or(0, |(s, e)| (s..=e).filter(|&i| model[i as usize]).count() as i64);
                let crossed = start < 0 && end < 0 && start > end;
                proptest::prop_assert_eq!(
                    int(&mut t, &format!("BITCOUNT k {start} {end} {unit}")),
                    if crossed { 0 } else { want }
                );
                for bit in [false, true] {
                    let want = range.and_then(|(s, e)| first(bit, s, e)).unwrap_or(-1);
                    proptest::prop_assert_eq!(
                        int(&mut t, &format!("BITPOS k {} {start} {end} {unit}", bit as u8)),
                        want
                    );
                }
                // Without an end, a missing zero is found just past the string.
                let from = model_range(model.len() as i64 / 8, start, -1).map(|(s, _)| s * 8);
                let want = match from {
                    None => -1,
                    Some(s) => first(false, s, model.len() as i64 - 1).unwrap_or(model.len() as i64),
                };
                proptest::prop_assert_eq!(int(&mut t, &format!("BITPOS k 0 {start}")), want);
            }
        }

        /// A BITFIELD counter against plain integer arithmetic: wrap-around, saturation, or
        /// refusal at the type's bounds.
        #[test]
        fn bitfield_counter_matches_integer_model(
            signed in proptest::bool::ANY,
            bits in 1u32..=63,
            offset in 0u64..100,
            steps in proptest::collection::vec((-300i64..300, 0usize..3, 0usize..4), 1..40),
        ) {
            let mut t = TestShard::new();
            let ty = format!("{}{bits}", if signed { "i" } else { "u" });
            let (min, max) = if signed {
                (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
            } else {
                (0, (1i128 << bits) - 1)
            };
            let mut value: i128 = 0;
            for &(by, policy, scale) in &steps {
                let by = by as i128 * [1, 1_000, 1_000_000_000, 1_000_000_000_000_000][scale];
                let sum = value + by;
                let (name, next) = match policy {
                    0 => ("WRAP", Some((sum - min).rem_euclid(max - min + 1) + min)),
                    1 => ("SAT", Some(sum.clamp(min, max))),
                    _ => ("FAIL", (min..=max).contains(&sum).then_some(sum)),
                };
                let reply = t.run(&format!("BITFIELD k OVERFLOW {name} INCRBY {ty} {offset} {by}"));
                match next {
                    Some(v) => {
                        proptest::prop_assert_eq!(reply, format!("*1\r\n:{v}\r\n"));
                        value = v;
                    }
                    None => proptest::prop_assert_eq!(reply, "*1\r\n$-1\r\n"),
                }
                let got = t.run(&format!("BITFIELD_RO k GET {ty} {offset}"));
                proptest::prop_assert_eq!(got, format!("*1\r\n:{value}\r\n"));
            }
            // Nothing outside the field was touched.
            let before = int(&mut t, &format!("BITCOUNT k 0 {} BIT", offset as i64 - 1));
            proptest::prop_assert_eq!(if offset == 0 { 0 } else { before }, 0);
        }
    }

    #[test]
    fn key_flags() {
        use super::bitfield_key_flags as f;
        use crate::cmd::kflag;
        let ro = kflag::RO | kflag::ACCESS;
        let rw = kflag::RW | kflag::ACCESS | kflag::UPDATE;
        assert_eq!(f(&[b"bitfield", b"k", b"get", b"u8", b"0"]), ro);
        assert_eq!(
            f(&[b"bitfield", b"k", b"overflow", b"sat", b"get", b"u8", b"0"]),
            ro
        );
        assert_eq!(
            f(&[
                b"bitfield",
                b"k",
                b"get",
                b"u8",
                b"0",
                b"set",
                b"u8",
                b"0",
                b"1"
            ]),
            rw
        );
        assert_eq!(f(&[b"bitfield", b"k", b"foo"]), rw);
    }
}
