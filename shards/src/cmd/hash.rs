//! Hash commands (Redis's `t_hash.c`): fields and values under one key, with Redis 7.0's
//! replies (RESP2 and RESP3), errors, encodings and keyspace statistics.
//!
//! Writes go through [`write_hash`] (Redis's `hashTypeLookupWriteOrCreate`), which creates an
//! empty hash only once every argument has been checked, so a failing command leaves no empty
//! key behind; a write that empties a hash deletes the key. Reads that Redis does with
//! `lookupKeyRead` count a keyspace hit or miss; every change counts in `dirty`. The data
//! structure and its encodings live in `types::hash`.

use super::spec::{acl, flag, kflag, Arg, ArgType, CommandSpec, Group, KeySpec};
use super::Call;
use crate::glob;
use crate::keyspace::Entry;
use crate::notify::class;
use crate::resp::Reply;
use crate::rng::Rng;
use crate::types::hash::Limits;
use crate::types::{Hash, Value};
use crate::util::{eq_ic, parse_i64, LongDouble};
use crate::{Error, Result, Shard};

/// The most fields one HRANDFIELD with a negative count (repeats allowed) may return. Redis
/// has no bound (the reply grows until memory runs out); a larger count gets Redis's "value is
/// out of range" error.
const HRANDFIELD_REPEATS_MAX: u64 = 1 << 24;

const HASH: CommandSpec = CommandSpec {
    group: Group::Hash,
    acl: acl::HASH,
    since: "2.0.0",
    ..CommandSpec::DEFAULT
};

const KEY: Arg = Arg::key("key", 0);
const FIELD: Arg = Arg::new("field", ArgType::String);
const FIELD_VALUE: &[Arg] = &[
    KEY,
    Arg::block("field_value", &[FIELD, Arg::new("value", ArgType::String)]).multiple(),
];
const KEY_FIELD: &[Arg] = &[KEY, FIELD];
const RO: KeySpec = KeySpec::one(1, kflag::RO);
const RO_ACCESS: KeySpec = KeySpec::one(1, kflag::RO | kflag::ACCESS);
const RW_ACCESS_UPDATE: KeySpec = KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::UPDATE);
const WHOLE_HASH: &str = "O(N) where N is the size of the hash.";

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "hset",
        arity: -4,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::UPDATE)],
        run: Some(hset),
        summary: "Stores one or more field-value pairs in a hash, answering how many fields are new.",
        complexity: "O(1) for each field/value pair added, so O(N) to add N field/value pairs when the command is called with multiple field/value pairs.",
        history: &[("4.0.0", "Accepts multiple `field` and `value` arguments.")],
        args: FIELD_VALUE,
        ..HASH
    },
    CommandSpec {
        name: "hsetnx",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::INSERT)],
        run: Some(hsetnx),
        summary: "Stores a field in a hash only when the field is not there yet.",
        args: &[KEY, FIELD, Arg::new("value", ArgType::String)],
        ..HASH
    },
    CommandSpec {
        name: "hmset",
        arity: -4,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::UPDATE)],
        run: Some(hmset),
        summary: "Stores one or more field-value pairs in a hash (the old form of HSET).",
        complexity: "O(N) where N is the number of fields being set.",
        deprecated: Some(("4.0.0", "`HSET` with multiple field-value pairs")),
        args: FIELD_VALUE,
        ..HASH
    },
    CommandSpec {
        name: "hget",
        arity: 3,
        flags: flag::READONLY | flag::FAST,
        keys: &[RO_ACCESS],
        run: Some(hget),
        summary: "Answers with the value of one field of a hash.",
        args: KEY_FIELD,
        ..HASH
    },
    CommandSpec {
        name: "hmget",
        arity: -3,
        flags: flag::READONLY | flag::FAST,
        keys: &[RO_ACCESS],
        run: Some(hmget),
        summary: "Answers with the values of several fields of a hash, nil for absent ones.",
        complexity: "O(N) where N is the number of fields being requested.",
        args: &[KEY, FIELD.multiple()],
        ..HASH
    },
    CommandSpec {
        name: "hgetall",
        arity: 2,
        flags: flag::READONLY,
        keys: &[RO_ACCESS],
        run: Some(hgetall),
        summary: "Answers with every field of a hash and its value.",
        complexity: WHOLE_HASH,
        tips: &["nondeterministic_output_order"],
        args: &[KEY],
        ..HASH
    },
    CommandSpec {
        name: "hdel",
        arity: -3,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::DELETE)],
        run: Some(hdel),
        summary: "Removes fields from a hash, and the key once no field is left.",
        complexity: "O(N) where N is the number of fields to be removed.",
        history: &[("2.4.0", "Accepts multiple `field` arguments.")],
        args: &[KEY, FIELD.multiple()],
        ..HASH
    },
    CommandSpec {
        name: "hlen",
        arity: 2,
        flags: flag::READONLY | flag::FAST,
        keys: &[RO],
        run: Some(hlen),
        summary: "Answers with the number of fields in a hash.",
        args: &[KEY],
        ..HASH
    },
    CommandSpec {
        name: "hstrlen",
        arity: 3,
        flags: flag::READONLY | flag::FAST,
        keys: &[RO],
        run: Some(hstrlen),
        summary: "Answers with the length in bytes of one field's value in a hash.",
        since: "3.2.0",
        args: KEY_FIELD,
        ..HASH
    },
    CommandSpec {
        name: "hexists",
        arity: 3,
        flags: flag::READONLY | flag::FAST,
        keys: &[RO],
        run: Some(hexists),
        summary: "Tells whether a hash has a given field.",
        args: KEY_FIELD,
        ..HASH
    },
    CommandSpec {
        name: "hkeys",
        arity: 2,
        flags: flag::READONLY,
        keys: &[RO_ACCESS],
        run: Some(hkeys),
        summary: "Answers with every field name of a hash.",
        complexity: WHOLE_HASH,
        tips: &["nondeterministic_output_order"],
        args: &[KEY],
        ..HASH
    },
    CommandSpec {
        name: "hvals",
        arity: 2,
        flags: flag::READONLY,
        keys: &[RO_ACCESS],
        run: Some(hvals),
        summary: "Answers with every value of a hash.",
        complexity: WHOLE_HASH,
        tips: &["nondeterministic_output_order"],
        args: &[KEY],
        ..HASH
    },
    CommandSpec {
        name: "hincrby",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[RW_ACCESS_UPDATE],
        run: Some(hincrby),
        summary: "Adds a whole number to the integer in a hash field, starting from zero.",
        args: &[KEY, FIELD, Arg::new("increment", ArgType::Integer)],
        ..HASH
    },
    CommandSpec {
        name: "hincrbyfloat",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[RW_ACCESS_UPDATE],
        run: Some(hincrbyfloat),
        summary: "Adds a floating point number to the number in a hash field, starting from zero.",
        since: "2.6.0",
        args: &[KEY, FIELD, Arg::new("increment", ArgType::Double)],
        ..HASH
    },
    CommandSpec {
        name: "hrandfield",
        arity: -2,
        flags: flag::READONLY,
        keys: &[RO_ACCESS],
        run: Some(hrandfield),
        summary: "Answers with random fields of a hash, optionally several, with repeats, or with their values.",
        since: "6.2.0",
        complexity: "O(N) where N is the number of fields returned",
        tips: &["nondeterministic_output"],
        args: &[
            KEY,
            Arg::block(
                "options",
                &[
                    Arg::new("count", ArgType::Integer),
                    Arg::token("withvalues", "WITHVALUES").optional(),
                ],
            )
            .optional(),
        ],
        ..HASH
    },
    CommandSpec {
        name: "hscan",
        arity: -3,
        flags: flag::READONLY,
        keys: &[RO_ACCESS],
        run: Some(hscan),
        summary: "Walks the fields and values of a hash a few at a time, resuming from a cursor.",
        since: "2.8.0",
        complexity: "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection..",
        tips: &["nondeterministic_output"],
        args: &[
            KEY,
            Arg::new("cursor", ArgType::Integer),
            Arg::new("pattern", ArgType::Pattern).with_token("MATCH").optional(),
            Arg::new("count", ArgType::Integer).with_token("COUNT").optional(),
        ],
        ..HASH
    },
];

// ---------------------------------------------------------------------------------------------
// Lookups and type checks.

/// The small-encoding thresholds currently configured.
fn limits(sh: &Shard) -> Limits {
    Limits {
        max_entries: sh.config.hash_max_listpack_entries,
        max_value: sh.config.hash_max_listpack_value,
    }
}

/// The hash under `key` for reading, counting a keyspace hit or miss as Redis's
/// `lookupKeyRead` does (a key of another type is a hit, then `WRONGTYPE`). Also hands out
/// the shard's random generator, for HRANDFIELD.
fn read_hash_rng<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Result<(Option<&'s Hash>, &'s mut Rng)> {
    let Shard {
        dbs, stats, rng, ..
    } = sh;
    let found = stats.count_lookup(dbs[db].get_read(key, now_ms));
    let hash = found.map(|e| e.value.as_hash()).transpose()?;
    Ok((hash, rng))
}

/// The hash under `key` for reading (counting a hit or miss), or `WRONGTYPE`.
fn read_hash<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s Hash>> {
    read_hash_rng(sh, db, key, now_ms).map(|(h, _)| h)
}

/// The hash under `key` for writing, created empty when absent (Redis's
/// `hashTypeLookupWriteOrCreate`), or `WRONGTYPE`. Callers check their arguments first and
/// always store a field afterwards, so an empty hash never stays behind.
fn write_hash<'s>(sh: &'s mut Shard, db: usize, key: &[u8], now_ms: u64) -> Result<&'s mut Hash> {
    let d = &mut sh.dbs[db];
    if !d.contains(key, now_ms) {
        d.insert(key, Entry::new(Value::Hash(Hash::new())));
    }
    match d.get_mut(key, now_ms) {
        Some(e) => e.value.as_hash_mut(),
        None => Err(Error::err("hash vanished while being written")),
    }
}

/// Writes one (field, value) pair of a reply: RESP3 nests it as a two-element array when
/// `nested`; otherwise the two are flat in the enclosing array.
fn reply_pair(out: &mut Reply, field: &[u8], value: Option<&[u8]>, nested: bool) {
    if nested {
        out.array(2);
    }
    out.bulk(field);
    if let Some(v) = value {
        out.bulk(v);
    }
}

// ---------------------------------------------------------------------------------------------
// Writes.

/// HSET key field value [field value ...]
fn hset(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let created = set_pairs(sh, c, "hset")?;
    c.out.int(created as i64);
    Ok(())
}

/// HMSET key field value [field value ...]
fn hmset(sh: &mut Shard, c: &mut Call) -> Result<()> {
    set_pairs(sh, c, "hmset")?;
    c.out.ok();
    Ok(())
}

/// Stores the field/value pairs of HSET and HMSET; returns how many fields were new. An
/// incomplete pair is an arity error, reported before the key's type is checked.
fn set_pairs(sh: &mut Shard, c: &Call, cmd: &str) -> Result<usize> {
    let pairs = &c.argv[2..];
    if pairs.len() % 2 == 1 {
        return Err(Error::WrongArity(cmd.into()));
    }
    let lim = limits(sh);
    let h = write_hash(sh, c.db, c.argv[1], c.now_ms)?;
    h.try_conversion(pairs.iter().copied(), lim);
    let created = pairs
        .chunks_exact(2)
        .filter(|p| h.set(p[0], p[1], lim))
        .count();
    h.shrink();
    sh.stats.dirty += (pairs.len() / 2) as u64;
    sh.notify(class::HASH, "hset", c.db, c.argv[1]);
    Ok(created)
}

/// HSETNX key field value
fn hsetnx(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let (field, value) = (c.argv[2], c.argv[3]);
    let lim = limits(sh);
    let h = write_hash(sh, c.db, c.argv[1], c.now_ms)?;
    if h.contains(field) {
        c.out.int(0);
        return Ok(());
    }
    // Only a write that happens can convert the hash.
    h.try_conversion([field, value], lim);
    h.set(field, value, lim);
    h.shrink();
    sh.stats.dirty += 1;
    sh.notify(class::HASH, "hset", c.db, c.argv[1]);
    c.out.int(1);
    Ok(())
}

/// HDEL key field [field ...]
fn hdel(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let key = c.argv[1];
    let d = &mut sh.dbs[c.db];
    let Some(e) = d.get_mut(key, c.now_ms) else {
        c.out.int(0);
        return Ok(());
    };
    let h = e.value.as_hash_mut()?;
    let mut deleted = 0;
    for field in &c.argv[2..] {
        if h.remove(field) {
            deleted += 1;
            if h.is_empty() {
                break;
            }
        }
    }
    let empty = h.is_empty();
    if empty {
        d.remove(key);
    } else {
        h.shrink();
    }
    sh.stats.dirty += deleted;
    if deleted > 0 {
        sh.notify(class::HASH, "hdel", c.db, key);
        if empty {
            sh.notify(class::GENERIC, "del", c.db, key);
        }
    }
    c.out.int(deleted as i64);
    Ok(())
}

/// HINCRBY key field increment
fn hincrby(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let by = parse_i64(c.argv[3]).ok_or(Error::NotInteger)?;
    let field = c.argv[2];
    let lim = limits(sh);
    let h = write_hash(sh, c.db, c.argv[1], c.now_ms)?;
    let old = match h.get(field) {
        Some(v) => parse_i64(v).ok_or_else(|| Error::err("hash value is not an integer"))?,
        None => 0,
    };
    let new = old.checked_add(by).ok_or(Error::Overflow)?;
    h.set(field, itoa::Buffer::new().format(new).as_bytes(), lim);
    h.shrink();
    sh.stats.dirty += 1;
    sh.notify(class::HASH, "hincrby", c.db, c.argv[1]);
    c.out.int(new);
    Ok(())
}

/// HINCRBYFLOAT key field increment
///
/// Redis adds in C's `long double` and stores the sum as `%.17Lf` text without trailing
/// zeros; [`LongDouble`] reproduces both. A long result converts the hash, as any long value.
fn hincrbyfloat(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let by = LongDouble::parse(c.argv[3]).ok_or(Error::NotFloat)?;
    if !by.is_finite() {
        return Err(Error::err("value is NaN or Infinity"));
    }
    let field = c.argv[2];
    let lim = limits(sh);
    let h = write_hash(sh, c.db, c.argv[1], c.now_ms)?;
    let old = match h.get(field) {
        Some(v) => LongDouble::parse(v).ok_or_else(|| Error::err("hash value is not a float"))?,
        None => LongDouble::from_i64(0),
    };
    let sum = old + by;
    if !sum.is_finite() {
        return Err(Error::err("increment would produce NaN or Infinity"));
    }
    let text = sum.to_human();
    h.set(field, text.as_bytes(), lim);
    h.shrink();
    sh.stats.dirty += 1;
    sh.notify(class::HASH, "hincrbyfloat", c.db, c.argv[1]);
    // The result is logged, not the increment, as Redis does.
    sh.rewrite(c.db, &[b"HSET", c.argv[1], field, text.as_bytes()]);
    c.out.bulk(text.as_bytes());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reads.

/// HGET key field
fn hget(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match read_hash(sh, c.db, c.argv[1], c.now_ms)?.and_then(|h| h.get(c.argv[2])) {
        Some(v) => c.out.bulk(v),
        None => c.out.null(),
    }
    Ok(())
}

/// HMGET key field [field ...]
fn hmget(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let h = read_hash(sh, c.db, c.argv[1], c.now_ms)?;
    let fields = &c.argv[2..];
    c.out.array(fields.len());
    for field in fields {
        match h.and_then(|h| h.get(field)) {
            Some(v) => c.out.bulk(v),
            None => c.out.null(),
        }
    }
    Ok(())
}

/// HLEN key
fn hlen(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let n = read_hash(sh, c.db, c.argv[1], c.now_ms)?.map_or(0, Hash::len);
    c.out.int(n as i64);
    Ok(())
}

/// HSTRLEN key field
fn hstrlen(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let h = read_hash(sh, c.db, c.argv[1], c.now_ms)?;
    let n = h.and_then(|h| h.get(c.argv[2])).map_or(0, <[u8]>::len);
    c.out.int(n as i64);
    Ok(())
}

/// HEXISTS key field
fn hexists(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let h = read_hash(sh, c.db, c.argv[1], c.now_ms)?;
    c.out.int(h.is_some_and(|h| h.contains(c.argv[2])) as i64);
    Ok(())
}

/// HGETALL key — a map in RESP3, a flat field, value array in RESP2.
fn hgetall(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let Some(h) = read_hash(sh, c.db, c.argv[1], c.now_ms)? else {
        c.out.map(0);
        return Ok(());
    };
    c.out.map(h.len());
    for (f, v) in h.iter() {
        c.out.bulk(f);
        c.out.bulk(v);
    }
    Ok(())
}

/// HKEYS key
fn hkeys(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let h = read_hash(sh, c.db, c.argv[1], c.now_ms)?;
    c.out.array(h.map_or(0, Hash::len));
    for (f, _) in h.into_iter().flat_map(Hash::iter) {
        c.out.bulk(f);
    }
    Ok(())
}

/// HVALS key
fn hvals(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let h = read_hash(sh, c.db, c.argv[1], c.now_ms)?;
    c.out.array(h.map_or(0, Hash::len));
    for (_, v) in h.into_iter().flat_map(Hash::iter) {
        c.out.bulk(v);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HRANDFIELD.

/// HRANDFIELD key [count [WITHVALUES]]
fn hrandfield(sh: &mut Shard, c: &mut Call) -> Result<()> {
    if c.argv.len() >= 3 {
        let count = parse_i64(c.argv[2]).ok_or(Error::NotInteger)?;
        if count == i64::MIN {
            return Err(Error::err(
                "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            ));
        }
        let withvalues = match c.argv.get(3) {
            None => false,
            Some(w) if c.argv.len() == 4 && eq_ic(w, "withvalues") => true,
            Some(_) => return Err(Error::Syntax),
        };
        // Redis's bound: the RESP2 reply's length (2 × count) must fit a long.
        if withvalues && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
            return Err(Error::err("value is out of range"));
        }
        return hrandfield_count(sh, c, count, withvalues);
    }
    let (h, rng) = read_hash_rng(sh, c.db, c.argv[1], c.now_ms)?;
    let picked = h
        .filter(|h| !h.is_empty())
        .and_then(|h| h.indexed().get(rng.below(h.len())).map(|(f, _)| f));
    match picked {
        Some(f) => c.out.bulk(f),
        None => c.out.null(),
    }
    Ok(())
}

/// HRANDFIELD with a count: distinct fields for a positive count (at most the whole hash),
/// `-count` independent picks for a negative one.
fn hrandfield_count(sh: &mut Shard, c: &mut Call, count: i64, withvalues: bool) -> Result<()> {
    let (h, rng) = read_hash_rng(sh, c.db, c.argv[1], c.now_ms)?;
    let Some(h) = h.filter(|h| !h.is_empty() && count != 0) else {
        c.out.array(0);
        return Ok(());
    };
    let n = count.unsigned_abs();
    if count < 0 && n > HRANDFIELD_REPEATS_MAX {
        return Err(Error::err("value is out of range"));
    }
    let nested = withvalues && c.out.resp3();
    let ix = h.indexed();
    if count < 0 || n == 1 {
        // Bounded by HRANDFIELD_REPEATS_MAX above (or 1).
        let n = n as usize;
        c.out.array(if withvalues && !nested { 2 * n } else { n });
        for _ in 0..n {
            if let Some((f, v)) = ix.get(rng.below(ix.len())) {
                reply_pair(&mut c.out, f, withvalues.then_some(v), nested);
            }
        }
        return Ok(());
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX).min(ix.len());
    let picks = rng.distinct_positions(ix.len(), n);
    c.out.array(if withvalues && !nested { 2 * n } else { n });
    for i in picks {
        if let Some((f, v)) = ix.get(i) {
            reply_pair(&mut c.out, f, withvalues.then_some(v), nested);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HSCAN.

/// HSCAN key cursor [MATCH pattern] [COUNT count]
///
/// As in Redis, the cursor is checked first, then the key (an absent key answers an empty
/// scan whatever the options say), then the options. A listpack hash comes back whole with
/// cursor 0; a table is walked from its last position downwards (see `Hash::scan`).
fn hscan(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let cursor =
        super::keys::parse_cursor(c.argv[2]).ok_or_else(|| Error::err("invalid cursor"))?;
    let Some(h) = read_hash(sh, c.db, c.argv[1], c.now_ms)? else {
        c.out.array(2);
        c.out.bulk(b"0");
        c.out.array(0);
        return Ok(());
    };
    let (count, pattern) = parse_hscan_opts(c)?;
    let mut body = Vec::new();
    let mut out = Reply::new(&mut body, c.out.proto);
    let mut n = 0;
    let next = h.scan(cursor, count, |f, v| {
        if pattern.is_none_or(|p| glob::matches(p, f, false)) {
            out.bulk(f);
            out.bulk(v);
            n += 2;
        }
    });
    c.out.array(2);
    c.out.bulk(itoa::Buffer::new().format(next).as_bytes());
    c.out.array(n);
    c.out.raw(&body);
    Ok(())
}

/// HSCAN's `[MATCH pattern] [COUNT count]`, in any order, later ones winning. Redis 7.0 knows
/// no other option for a hash (NOVALUES came in 7.4): anything else is a syntax error.
fn parse_hscan_opts<'a>(c: &Call<'a>) -> Result<(usize, Option<&'a [u8]>)> {
    let (mut count, mut pattern) = (10, None);
    let mut a = c.args(3);
    while let Some(word) = a.next() {
        if a.is_empty() {
            return Err(Error::Syntax);
        }
        if eq_ic(word, "count") {
            let n = a.next_i64()?;
            if n < 1 {
                return Err(Error::Syntax);
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if eq_ic(word, "match") {
            let p = a.next_bytes()?;
            // "*" matches everything: the same as no pattern.
            pattern = (p != b"*").then_some(p);
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok((count, pattern))
}

#[cfg(test)]
mod tests {
    use crate::resp::Proto;
    use crate::shard::testing::TestShard;
    use std::collections::HashSet;

    /// A bulk string reply.
    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    /// An array of bulk strings.
    fn bulks(items: &[&str]) -> String {
        let mut out = format!("*{}\r\n", items.len());
        for i in items {
            out.push_str(&bulk(i));
        }
        out
    }

    /// OBJECT ENCODING of `key` in the test shard.
    fn encoding(t: &mut TestShard, key: &str) -> &'static str {
        t.shard.dbs[0]
            .get(key.as_bytes(), t.now_ms)
            .map_or("none", |e| e.value.encoding())
    }

    /// The bulk strings of a reply, in order, whatever its nesting.
    fn strings(reply: &str) -> Vec<String> {
        let lines: Vec<&str> = reply.split("\r\n").collect();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with('$') && *l != "$-1" {
                out.push(lines[i + 1].to_string());
            }
        }
        out
    }

    const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";

    #[test]
    fn hset_hget_hmset() {
        let mut t = TestShard::new();
        assert_eq!(t.run("HSET h a 1 b 2"), ":2\r\n");
        assert_eq!(t.run("HSET h a 3 c 4 c 5"), ":1\r\n");
        assert_eq!(t.run("HGET h a"), bulk("3"));
        assert_eq!(t.run("HGET h c"), bulk("5"));
        assert_eq!(t.run("HGET h z"), "$-1\r\n");
        assert_eq!(t.run("HGET none a"), "$-1\r\n");
        assert_eq!(t.run("HMSET h d 6 a 7"), "+OK\r\n");
        assert_eq!(t.run("HGET h a"), bulk("7"));
        assert_eq!(t.run_args(&[b"HSET", b"h", b"", b""]), ":1\r\n");
        assert_eq!(t.run_args(&[b"HGET", b"h", b""]), bulk(""));
        for bad in ["HSET h", "HSET h a", "HSET h a 1 b"] {
            assert_eq!(
                t.run(bad),
                "-ERR wrong number of arguments for 'hset' command\r\n"
            );
        }
        assert_eq!(
            t.run("HMSET h a 1 b"),
            "-ERR wrong number of arguments for 'hmset' command\r\n"
        );
        t.run("SET s x");
        assert_eq!(t.run("HSET s a 1"), WRONGTYPE);
        assert_eq!(t.run("HGET s a"), WRONGTYPE);
        // The arity of the pairs is checked before the type.
        assert_eq!(
            t.run("HSET s a 1 b"),
            "-ERR wrong number of arguments for 'hset' command\r\n"
        );
        t.proto = Proto::Resp3;
        assert_eq!(t.run("HGET h z"), "_\r\n");
        assert_eq!(t.run("TYPE h"), "+hash\r\n");
    }

    #[test]
    fn hsetnx() {
        let mut t = TestShard::new();
        assert_eq!(t.run("HSETNX h a 1"), ":1\r\n");
        assert_eq!(t.run("HSETNX h a 2"), ":0\r\n");
        assert_eq!(t.run("HGET h a"), bulk("1"));
        t.run("SET s x");
        assert_eq!(t.run("HSETNX s a 1"), WRONGTYPE);
        assert_eq!(
            t.run("HSETNX h a"),
            "-ERR wrong number of arguments for 'hsetnx' command\r\n"
        );
    }

    #[test]
    fn hmget_hlen_hstrlen_hexists() {
        let mut t = TestShard::new();
        t.run("HSET h a 1 b hello");
        assert_eq!(
            t.run("HMGET h a z b"),
            "*3\r\n$1\r\n1\r\n$-1\r\n$5\r\nhello\r\n"
        );
        assert_eq!(t.run("HMGET none a b"), "*2\r\n$-1\r\n$-1\r\n");
        assert_eq!(t.run("HLEN h"), ":2\r\n");
        assert_eq!(t.run("HLEN none"), ":0\r\n");
        assert_eq!(t.run("HSTRLEN h b"), ":5\r\n");
        assert_eq!(t.run("HSTRLEN h z"), ":0\r\n");
        assert_eq!(t.run("HSTRLEN none z"), ":0\r\n");
        assert_eq!(t.run("HEXISTS h a"), ":1\r\n");
        assert_eq!(t.run("HEXISTS h 1"), ":0\r\n");
        assert_eq!(t.run("HEXISTS none a"), ":0\r\n");
        t.run("SET s x");
        for cmd in ["HMGET s a", "HLEN s", "HSTRLEN s a", "HEXISTS s a"] {
            assert_eq!(t.run(cmd), WRONGTYPE, "{cmd}");
        }
        t.proto = Proto::Resp3;
        assert_eq!(t.run("HMGET h z a"), "*2\r\n_\r\n$1\r\n1\r\n");
        // HEXISTS stays an integer in RESP3.
        assert_eq!(t.run("HEXISTS h a"), ":1\r\n");
    }

    #[test]
    fn hgetall_hkeys_hvals() {
        let mut t = TestShard::new();
        t.run("HSET h a 1 b 2");
        assert_eq!(t.run("HGETALL h"), bulks(&["a", "1", "b", "2"]));
        assert_eq!(t.run("HKEYS h"), bulks(&["a", "b"]));
        assert_eq!(t.run("HVALS h"), bulks(&["1", "2"]));
        for cmd in ["HGETALL none", "HKEYS none", "HVALS none"] {
            assert_eq!(t.run(cmd), "*0\r\n", "{cmd}");
        }
        t.run("SET s x");
        for cmd in ["HGETALL s", "HKEYS s", "HVALS s"] {
            assert_eq!(t.run(cmd), WRONGTYPE, "{cmd}");
        }
        t.proto = Proto::Resp3;
        assert_eq!(
            t.run("HGETALL h"),
            "%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"
        );
        assert_eq!(t.run("HGETALL none"), "%0\r\n");
        assert_eq!(t.run("HKEYS none"), "*0\r\n");
        assert_eq!(t.run("HKEYS h"), bulks(&["a", "b"]));
    }

    #[test]
    fn hdel_removes_empty_hashes() {
        let mut t = TestShard::new();
        t.run("HSET h a 1 b 2 c 3");
        assert_eq!(t.run("HDEL h a z a"), ":1\r\n");
        assert_eq!(t.run("HLEN h"), ":2\r\n");
        assert_eq!(t.run("HDEL none a"), ":0\r\n");
        assert_eq!(t.run("HDEL h b c d"), ":2\r\n");
        assert_eq!(t.run("EXISTS h"), ":0\r\n");
        t.run("SET s x");
        assert_eq!(t.run("HDEL s a"), WRONGTYPE);
        assert_eq!(
            t.run("HDEL h"),
            "-ERR wrong number of arguments for 'hdel' command\r\n"
        );
        // The same for the big encoding.
        t.shard.config.hash_max_listpack_entries = 128;
        for i in 0..200 {
            t.run(&format!("HSET big f{i} v"));
        }
        assert_eq!(encoding(&mut t, "big"), "hashtable");
        for i in 0..199 {
            t.run(&format!("HDEL big f{i}"));
        }
        assert_eq!(encoding(&mut t, "big"), "hashtable");
        assert_eq!(t.run("HDEL big f199"), ":1\r\n");
        assert_eq!(t.run("EXISTS big"), ":0\r\n");
    }

    #[test]
    fn hincrby() {
        let mut t = TestShard::new();
        assert_eq!(t.run("HINCRBY h n 5"), ":5\r\n");
        assert_eq!(t.run("HINCRBY h n -7"), ":-2\r\n");
        assert_eq!(t.run("HGET h n"), bulk("-2"));
        assert_eq!(t.run("HINCRBY h n x"), NOT_INT);
        assert_eq!(t.run("HINCRBY h n 1.5"), NOT_INT);
        assert_eq!(t.run("HINCRBY h n 9223372036854775808"), NOT_INT);
        let not_int = "-ERR hash value is not an integer\r\n";
        for v in ["abc", "1.0", " 1", "01", "+1", "-0", "", "0x10"] {
            t.run_args(&[b"HSET", b"h", b"s", v.as_bytes()]);
            assert_eq!(t.run("HINCRBY h s 1"), not_int, "{v:?}");
        }
        let overflow = "-ERR increment or decrement would overflow\r\n";
        t.run("HSET h big 9223372036854775807 small -9223372036854775808");
        assert_eq!(t.run("HINCRBY h big 1"), overflow);
        assert_eq!(t.run("HINCRBY h small -1"), overflow);
        assert_eq!(t.run("HINCRBY h big -1"), ":9223372036854775806\r\n");
        assert_eq!(
            t.run("HINCRBY h z -9223372036854775808"),
            ":-9223372036854775808\r\n"
        );
        // Argument errors come before the type check; a failed call creates nothing.
        t.run("SET s x");
        assert_eq!(t.run("HINCRBY s f x"), NOT_INT);
        assert_eq!(t.run("HINCRBY s f 1"), WRONGTYPE);
        assert_eq!(t.run("HINCRBY new f x"), NOT_INT);
        assert_eq!(t.run("EXISTS new"), ":0\r\n");
    }

    #[test]
    fn hincrbyfloat() {
        let mut t = TestShard::new();
        t.run("HSET h f 10.50 i 10");
        assert_eq!(t.run("HINCRBYFLOAT h f 0.1"), bulk("10.6"));
        assert_eq!(t.run("HINCRBYFLOAT h i 1.5"), bulk("11.5"));
        assert_eq!(t.run("HINCRBYFLOAT h i -1.5"), bulk("10"));
        assert_eq!(t.run("HINCRBYFLOAT h n 5.0e3"), bulk("5000"));
        t.run("HSET h f 0.1");
        assert_eq!(t.run("HINCRBYFLOAT h f 0.2"), bulk("0.3"));
        t.run("HSET h x 0x10");
        assert_eq!(t.run("HINCRBYFLOAT h x 1"), bulk("17"));
        assert_eq!(t.run("HINCRBY h x 1"), ":18\r\n");
        let not_float = "-ERR value is not a valid float\r\n";
        for bad in ["x", "nan", " 1", "1e", ""] {
            let reply = t.run_args(&[b"HINCRBYFLOAT", b"h", b"f", bad.as_bytes()]);
            assert_eq!(reply, not_float, "{bad:?}");
        }
        for inf in ["inf", "-inf", "+Infinity"] {
            let reply = t.run_args(&[b"HINCRBYFLOAT", b"h", b"f", inf.as_bytes()]);
            assert_eq!(reply, "-ERR value is NaN or Infinity\r\n", "{inf}");
        }
        let hash_not_float = "-ERR hash value is not a float\r\n";
        for v in ["abc", " 1", "1 ", ""] {
            t.run_args(&[b"HSET", b"h", b"s", v.as_bytes()]);
            assert_eq!(t.run("HINCRBYFLOAT h s 1"), hash_not_float, "{v:?}");
        }
        t.run("HSET h g 1.18e4932");
        assert_eq!(
            t.run("HINCRBYFLOAT h g 1.18e4932"),
            "-ERR increment would produce NaN or Infinity\r\n"
        );
        t.run("SET s x");
        assert_eq!(t.run("HINCRBYFLOAT s f x"), not_float);
        assert_eq!(t.run("HINCRBYFLOAT s f 1"), WRONGTYPE);
        assert_eq!(
            t.run("HINCRBYFLOAT new f inf"),
            "-ERR value is NaN or Infinity\r\n"
        );
        assert_eq!(t.run("EXISTS new"), ":0\r\n");
    }

    #[test]
    fn conversions_happen_when_redis_converts() {
        let mut t = TestShard::new();
        let v64 = "x".repeat(64);
        let v65 = "x".repeat(65);
        // Redis 7.0's built-in default: 512 entries.
        for i in 0..512 {
            t.run(&format!("HSET h f{i} {v64}"));
        }
        assert_eq!(encoding(&mut t, "h"), "listpack");
        t.run("HSET h f0 v");
        assert_eq!(encoding(&mut t, "h"), "listpack");
        t.run("HSET h f512 v");
        assert_eq!(encoding(&mut t, "h"), "hashtable");
        // A long value converts even when it only replaces one, and before any insert.
        t.run("HSET a f v");
        t.run(&format!("HSET a f {v65}"));
        assert_eq!(encoding(&mut t, "a"), "hashtable");
        t.run(&format!("HSET b {v65} v"));
        assert_eq!(encoding(&mut t, "b"), "hashtable");
        t.run(&format!("HMSET c f v g {v65}"));
        assert_eq!(encoding(&mut t, "c"), "hashtable");
        // HSETNX converts only when it writes.
        t.run("HSET d f v");
        assert_eq!(t.run(&format!("HSETNX d f {v65}")), ":0\r\n");
        assert_eq!(encoding(&mut t, "d"), "listpack");
        assert_eq!(t.run(&format!("HSETNX d g {v65}")), ":1\r\n");
        assert_eq!(encoding(&mut t, "d"), "hashtable");
        // HINCRBY with a long field name, HINCRBYFLOAT with a long result.
        t.run("HSET e f 1");
        t.run(&format!("HINCRBY e {v65} 1"));
        assert_eq!(encoding(&mut t, "e"), "hashtable");
        t.run("HSET g f 1");
        assert_eq!(
            t.run("HINCRBYFLOAT g f 1e70"),
            bulk("10000000000000000000222479489586148259025995410601157579323600873193472")
        );
        assert_eq!(encoding(&mut t, "g"), "hashtable");
        // Deleting back down keeps the big encoding.
        t.run(&format!("HDEL a {v65}"));
        t.run("HDEL a f");
        assert_eq!(t.run("HSET a f v"), ":1\r\n");
        assert_eq!(encoding(&mut t, "a"), "listpack");
        t.run("HSET d g short");
        assert_eq!(encoding(&mut t, "d"), "hashtable");
    }

    #[test]
    fn thresholds_follow_the_config() {
        let mut t = TestShard::new();
        t.shard.config.hash_max_listpack_entries = 2;
        t.shard.config.hash_max_listpack_value = 3;
        t.run("HSET h a 1 b 2");
        assert_eq!(encoding(&mut t, "h"), "listpack");
        t.run("HSET h c 3");
        assert_eq!(encoding(&mut t, "h"), "hashtable");
        t.run("HSET i abc 123");
        assert_eq!(encoding(&mut t, "i"), "listpack");
        t.run("HSET i abcd 1");
        assert_eq!(encoding(&mut t, "i"), "hashtable");
        t.shard.config.hash_max_listpack_entries = 0;
        t.run("HSET j a 1");
        assert_eq!(encoding(&mut t, "j"), "hashtable");
        assert_eq!(t.run("HGETALL j"), bulks(&["a", "1"]));
    }

    #[test]
    fn writes_keep_the_ttl() {
        let mut t = TestShard::new();
        t.run("HSET h a 1");
        t.run("PEXPIRE h 100");
        t.run("HSET h b 2");
        t.run("HINCRBY h a 1");
        t.run("HDEL h b");
        t.now_ms += 100;
        assert_eq!(t.run("HGET h a"), "$-1\r\n");
        assert_eq!(t.run("EXISTS h"), ":0\r\n");
    }

    #[test]
    fn hrandfield_single() {
        let mut t = TestShard::new();
        assert_eq!(t.run("HRANDFIELD none"), "$-1\r\n");
        t.run("HSET h a 1 b 2 c 3");
        let mut seen = HashSet::new();
        for _ in 0..200 {
            seen.insert(t.run("HRANDFIELD h"));
        }
        assert_eq!(seen.len(), 3);
        assert!(seen.contains(&bulk("b")));
        t.run("SET s x");
        assert_eq!(t.run("HRANDFIELD s"), WRONGTYPE);
        t.proto = Proto::Resp3;
        assert_eq!(t.run("HRANDFIELD none"), "_\r\n");
    }

    #[test]
    fn hrandfield_count_errors() {
        let mut t = TestShard::new();
        t.run("HSET h a 1 b 2 c 3");
        for bad in ["x", "1.5", "-0", ""] {
            let reply = t.run_args(&[b"HRANDFIELD", b"h", bad.as_bytes()]);
            assert_eq!(reply, NOT_INT, "{bad:?}");
        }
        assert_eq!(
            t.run("HRANDFIELD h -9223372036854775808"),
            "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"
        );
        assert_eq!(t.run("HRANDFIELD h 1 withvalue"), "-ERR syntax error\r\n");
        assert_eq!(
            t.run("HRANDFIELD h 1 withvalues x"),
            "-ERR syntax error\r\n"
        );
        assert_eq!(t.run("HRANDFIELD h x withvalues"), NOT_INT);
        let range = "-ERR value is out of range\r\n";
        assert_eq!(t.run("HRANDFIELD h -4611686018427387904 WITHVALUES"), range);
        assert_eq!(t.run("HRANDFIELD h 4611686018427387904 withvalues"), range);
        // Positive counts are bounded by the hash; repeats by a limit of our own.
        assert_eq!(
            t.run("HRANDFIELD h 4611686018427387903 withvalues").len(),
            46
        );
        assert_eq!(t.run("HRANDFIELD h 9223372036854775807").len(), 25);
        assert_eq!(t.run("HRANDFIELD h -4611686018427387903 withvalues"), range);
        assert_eq!(t.run("HRANDFIELD h -9223372036854775807"), range);
        assert_eq!(t.run("HRANDFIELD h -16777217"), range);
        // Checked before the key: syntax and range errors even for absent or wrong keys.
        t.run("SET s x");
        assert_eq!(t.run("HRANDFIELD s 1 foo"), "-ERR syntax error\r\n");
        assert_eq!(t.run("HRANDFIELD none x"), NOT_INT);
        assert_eq!(t.run("HRANDFIELD s 1"), WRONGTYPE);
        assert_eq!(t.run("HRANDFIELD none -9223372036854775807"), "*0\r\n");
    }

    #[test]
    fn hrandfield_count_shapes() {
        let mut t = TestShard::new();
        assert_eq!(t.run("HRANDFIELD none 5"), "*0\r\n");
        assert_eq!(t.run("HRANDFIELD none -5 WITHVALUES"), "*0\r\n");
        t.run("HSET h a 1 b 2 c 3");
        assert_eq!(t.run("HRANDFIELD h 0"), "*0\r\n");
        assert_eq!(t.run("HRANDFIELD h 0 withvalues"), "*0\r\n");
        // The whole hash for a count at least its size.
        assert_eq!(t.run("HRANDFIELD h 3"), bulks(&["a", "b", "c"]));
        assert_eq!(
            t.run("HRANDFIELD h 10 withvalues"),
            bulks(&["a", "1", "b", "2", "c", "3"])
        );
        // Distinct fields for a positive count.
        for _ in 0..50 {
            let got = strings(&t.run("HRANDFIELD h 2"));
            assert_eq!(got.len(), 2);
            assert_ne!(got[0], got[1]);
            let got = strings(&t.run("HRANDFIELD h 2 WITHVALUES"));
            assert_eq!(got.len(), 4);
            assert_eq!(
                got[1],
                if got[0] == "a" {
                    "1"
                } else if got[0] == "b" {
                    "2"
                } else {
                    "3"
                }
            );
        }
        // Repeats for a negative count.
        let got = strings(&t.run("HRANDFIELD h -100"));
        assert_eq!(got.len(), 100);
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), 3);
        let got = t.run("HRANDFIELD h -5 withvalues");
        assert!(got.starts_with("*10\r\n"));
        t.proto = Proto::Resp3;
        let got = t.run("HRANDFIELD h -5 withvalues");
        assert!(got.starts_with("*5\r\n*2\r\n$1\r\n"), "{got}");
        assert_eq!(got.matches("*2\r\n").count(), 5);
        assert!(t
            .run("HRANDFIELD h 1 withvalues")
            .starts_with("*1\r\n*2\r\n"));
        assert!(t
            .run("HRANDFIELD h -1 withvalues")
            .starts_with("*1\r\n*2\r\n"));
        assert_eq!(
            t.run("HRANDFIELD h 3 withvalues"),
            "*3\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n*2\r\n$1\r\nc\r\n$1\r\n3\r\n"
        );
        // Without values, RESP3 is flat too.
        assert_eq!(t.run("HRANDFIELD h 3"), bulks(&["a", "b", "c"]));
    }

    #[test]
    fn hrandfield_big_hash() {
        let mut t = TestShard::new();
        t.shard.config.hash_max_listpack_entries = 128;
        for i in 0..300 {
            t.run(&format!("HSET h f{i} v{i}"));
        }
        assert_eq!(encoding(&mut t, "h"), "hashtable");
        for count in [1, 5, 50, 150, 299, 300, 301] {
            let got = strings(&t.run(&format!("HRANDFIELD h {count}")));
            let distinct: HashSet<_> = got.iter().collect();
            assert_eq!(got.len(), count.min(300), "{count}");
            assert_eq!(distinct.len(), got.len(), "{count}");
        }
        let got = strings(&t.run("HRANDFIELD h 100 withvalues"));
        for pair in got.chunks(2) {
            assert_eq!(pair[1], format!("v{}", &pair[0][1..]));
        }
        assert_eq!(strings(&t.run("HRANDFIELD h -1000")).len(), 1000);
    }

    /// Splits an HSCAN reply into its cursor and elements.
    fn scan_reply(reply: &str) -> (u64, Vec<String>) {
        let lines: Vec<&str> = reply.split("\r\n").collect();
        let cursor = lines[2].parse().unwrap();
        (cursor, strings(&lines[3..].join("\r\n")))
    }

    #[test]
    fn hscan_listpack_returns_everything() {
        let mut t = TestShard::new();
        t.run("HSET h a 1 b 2 ab 3");
        let all = "*2\r\n$1\r\n0\r\n*6\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n$2\r\nab\r\n$1\r\n3\r\n";
        assert_eq!(t.run("HSCAN h 0"), all);
        assert_eq!(t.run("HSCAN h 5 COUNT 1"), all);
        assert_eq!(t.run("HSCAN h -1"), all);
        assert_eq!(t.run_args(&[b"HSCAN", b"h", b""]), all);
        assert_eq!(t.run("HSCAN h 0 MATCH *"), all);
        assert_eq!(
            t.run("HSCAN h 0 MATCH a* COUNT 100"),
            "*2\r\n$1\r\n0\r\n*4\r\n$1\r\na\r\n$1\r\n1\r\n$2\r\nab\r\n$1\r\n3\r\n"
        );
        assert_eq!(
            t.run("HSCAN h 0 MATCH a* MATCH b"),
            "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n"
        );
        t.proto = Proto::Resp3;
        assert_eq!(t.run("HSCAN h 0"), all);
    }

    #[test]
    fn hscan_errors() {
        let mut t = TestShard::new();
        t.run("HSET h a 1");
        let syntax = "-ERR syntax error\r\n";
        for bad in [
            "COUNT 0",
            "COUNT -1",
            "NOVALUES",
            "TYPE string",
            "MATCH",
            "COUNT",
            "FOO bar",
        ] {
            assert_eq!(t.run(&format!("HSCAN h 0 {bad}")), syntax, "{bad}");
        }
        assert_eq!(t.run("HSCAN h 0 COUNT x"), NOT_INT);
        assert_eq!(t.run("HSCAN h 0 COUNT 9223372036854775808"), NOT_INT);
        let invalid = "-ERR invalid cursor\r\n";
        for bad in ["x", "18446744073709551616", " 1", "1x"] {
            assert_eq!(
                t.run_args(&[b"HSCAN", b"h", bad.as_bytes()]),
                invalid,
                "{bad}"
            );
        }
        // The cursor first, then the key (absent: an empty scan, whatever the options),
        // then the options.
        assert_eq!(t.run("HSCAN none x"), invalid);
        assert_eq!(t.run("HSCAN none 0 FOO"), "*2\r\n$1\r\n0\r\n*0\r\n");
        t.run("SET s x");
        assert_eq!(t.run("HSCAN s 0 FOO"), WRONGTYPE);
        assert_eq!(t.run("HSCAN s x"), invalid);
    }

    #[test]
    fn hscan_table_walks_with_a_cursor() {
        let mut t = TestShard::new();
        t.shard.config.hash_max_listpack_entries = 128;
        for i in 0..500 {
            t.run(&format!("HSET h f{i} v{i}"));
        }
        let mut seen = std::collections::HashMap::new();
        let mut cursor = 0;
        let mut calls = 0;
        loop {
            let (next, items) = scan_reply(&t.run(&format!("HSCAN h {cursor} COUNT 20")));
            assert!(items.len() <= 40);
            for pair in items.chunks(2) {
                seen.insert(pair[0].clone(), pair[1].clone());
            }
            calls += 1;
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(calls, 25);
        assert_eq!(seen.len(), 500);
        assert_eq!(seen["f42"], "v42");
        // MATCH filters what the visited positions hold.
        let (mut cursor, mut matched) = (0, Vec::new());
        loop {
            let (next, items) = scan_reply(&t.run(&format!("HSCAN h {cursor} MATCH f1?")));
            matched.extend(items.into_iter().step_by(2));
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        matched.sort();
        assert_eq!(matched.len(), 10);
        assert_eq!(matched[0], "f10");
        // A cursor beyond the end starts from the end.
        let (next, items) = scan_reply(&t.run("HSCAN h 99999 COUNT 500"));
        assert_eq!((next, items.len()), (0, 1000));
    }

    #[test]
    fn stats() {
        let mut t = TestShard::new();
        t.run("HSET h a 1");
        let reads = [
            "HGET h a",
            "HGET none a",
            "HMGET h a",
            "HLEN h",
            "HSTRLEN none a",
            "HEXISTS h a",
            "HGETALL none",
            "HKEYS h",
            "HVALS h",
            "HRANDFIELD h",
            "HRANDFIELD none 2",
            "HSCAN h 0",
            "HSCAN none 0",
        ];
        for r in reads {
            t.run(r);
        }
        // Writes and argument errors count nothing.
        t.run("HINCRBY h a 1");
        t.run("HSCAN h x");
        t.run("HRANDFIELD h x");
        assert_eq!(t.shard.stats.keyspace_hits, 8);
        assert_eq!(t.shard.stats.keyspace_misses, 5);
        let dirty = t.shard.stats.dirty;
        t.run("HSET h a 1 b 2 c 3");
        t.run("HMSET h a 1");
        t.run("HSETNX h a 1");
        t.run("HSETNX h d 1");
        t.run("HDEL h a b z");
        t.run("HINCRBYFLOAT h c 1");
        t.run("HINCRBY h c x");
        assert_eq!(t.shard.stats.dirty, dirty + 3 + 1 + 1 + 2 + 1);
    }
}
