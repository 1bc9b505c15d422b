//! Set commands (Redis's `t_set.c`): membership, random members, moves between sets, the
//! intersection/union/difference family and SSCAN, with Redis 7.0's replies, errors, encodings
//! (see [`crate::types::set`]) and keyspace statistics.
//!
//! Reads that Redis does with `lookupKeyRead` count a keyspace hit or miss: SMEMBERS, SISMEMBER,
//! SMISMEMBER, SCARD, SRANDMEMBER, SSCAN and every source key of SINTER/SUNION/SDIFF (their
//! STORE forms and SINTERCARD included). Writes count in `dirty` as Redis counts them. The
//! multi-key commands run on one shard (`Split::Gather`), so everything here is local.

use super::keys::{parse_cursor, pattern_allows};
use super::spec::{
    acl, flag, kflag, Arg, ArgType, BeginSearch, CommandSpec, FindKeys, Group, KeySpec, Route,
    Split,
};
use super::Call;
use crate::keyspace::{Db, Entry};
use crate::notify::class;
use crate::resp::Reply;
use crate::shard::Stats;
use crate::types::set::{Member, Set};
use crate::types::{SmallBytes, Value};
use crate::util::{eq_ic, parse_i64};
use crate::{Error, Result, Shard};

const SET: CommandSpec = CommandSpec {
    group: Group::Set,
    acl: acl::SET,
    ..CommandSpec::DEFAULT
};

const KEY: Arg = Arg::key("key", 0);
const MEMBER: Arg = Arg::new("member", ArgType::String);
const KEY_MEMBERS: &[Arg] = &[KEY, MEMBER.multiple()];
const KEYS: &[Arg] = &[KEY.multiple()];
const STORE_ARGS: &[Arg] = &[Arg::key("destination", 0), Arg::key("key", 1).multiple()];
const MULTIPLE_MEMBERS: &[(&str, &str)] = &[("2.4.0", "Accepts multiple `member` arguments.")];
const INTER_COMPLEXITY: &str =
    "O(N*M) worst case where N is the cardinality of the smallest set and M is the number of sets.";
const UNION_COMPLEXITY: &str = "O(N) where N is the total number of elements in all given sets.";
const SOURCES: KeySpec = KeySpec::range(1, -1, 1, kflag::RO | kflag::ACCESS);
/// The key specs of the STORE commands: the destination, then the sources.
const fn store_keys(dst_flags: u32) -> [KeySpec; 2] {
    [
        KeySpec::one(1, dst_flags),
        KeySpec::range(2, -1, 1, kflag::RO | kflag::ACCESS),
    ]
}
const SINTERSTORE_KEYS: &[KeySpec] = &store_keys(kflag::RW | kflag::UPDATE);
const OW_STORE_KEYS: &[KeySpec] = &store_keys(kflag::OW | kflag::UPDATE);

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "sadd",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::INSERT)],
        run: Some(sadd),
        summary: "Adds members to a set, creating the set if needed.",
        complexity: "O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments.",
        history: MULTIPLE_MEMBERS,
        args: KEY_MEMBERS,
        ..SET
    },
    CommandSpec {
        name: "srem",
        arity: -3,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::DELETE)],
        run: Some(srem),
        summary: "Removes members from a set, deleting the set when it empties.",
        complexity: "O(N) where N is the number of members to be removed.",
        history: MULTIPLE_MEMBERS,
        args: KEY_MEMBERS,
        ..SET
    },
    CommandSpec {
        name: "smembers",
        arity: 2,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(smembers),
        summary: "Answers with every member of a set.",
        complexity: "O(N) where N is the set cardinality.",
        tips: &["nondeterministic_output_order"],
        args: &[KEY],
        ..SET
    },
    CommandSpec {
        name: "sismember",
        arity: 3,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO)],
        run: Some(sismember),
        summary: "Tells whether a string is a member of a set.",
        args: &[KEY, MEMBER],
        ..SET
    },
    CommandSpec {
        name: "smismember",
        arity: -3,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(smismember),
        summary: "Tells, for each of several strings, whether it is a member of a set.",
        since: "6.2.0",
        complexity: "O(N) where N is the number of elements being checked for membership",
        args: KEY_MEMBERS,
        ..SET
    },
    CommandSpec {
        name: "scard",
        arity: 2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO)],
        run: Some(scard),
        summary: "Answers with the number of members of a set.",
        args: &[KEY],
        ..SET
    },
    CommandSpec {
        name: "spop",
        arity: -2,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::DELETE)],
        run: Some(spop),
        summary: "Removes random members from a set and answers with them.",
        complexity: "Without the count argument O(1), otherwise O(N) where N is the value of the passed count.",
        tips: &["nondeterministic_output"],
        history: &[("3.2.0", "Added the `count` argument.")],
        args: &[KEY, Arg::new("count", ArgType::Integer).since("3.2.0").optional()],
        ..SET
    },
    CommandSpec {
        name: "srandmember",
        arity: -2,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(srandmember),
        summary: "Answers with random members of a set, distinct ones or, for a negative count, with repeats.",
        complexity: "Without the count argument O(1), otherwise O(N) where N is the absolute value of the passed count.",
        tips: &["nondeterministic_output"],
        history: &[("2.6.0", "Added the optional `count` argument.")],
        args: &[KEY, Arg::new("count", ArgType::Integer).since("2.6.0").optional()],
        ..SET
    },
    CommandSpec {
        name: "smove",
        arity: 4,
        flags: flag::WRITE | flag::FAST,
        keys: &[
            KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::DELETE),
            KeySpec::one(2, kflag::RW | kflag::INSERT),
        ],
        route: Route::Keys(Split::Gather),
        run: Some(smove),
        summary: "Moves a member from one set to another.",
        args: &[Arg::key("source", 0), Arg::key("destination", 1), MEMBER],
        ..SET
    },
    CommandSpec {
        name: "sinter",
        arity: -2,
        flags: flag::READONLY,
        keys: &[SOURCES],
        route: Route::Keys(Split::Gather),
        run: Some(sinter),
        summary: "Answers with the members common to every given set.",
        complexity: INTER_COMPLEXITY,
        tips: &["nondeterministic_output_order"],
        args: KEYS,
        ..SET
    },
    CommandSpec {
        name: "sintercard",
        arity: -3,
        flags: flag::READONLY,
        keys: &[KeySpec {
            notes: None,
            flags: kflag::RO | kflag::ACCESS,
            begin: BeginSearch::Index(1),
            find: FindKeys::Keynum {
                keynumidx: 0,
                firstkey: 1,
                step: 1,
            },
        }],
        route: Route::Keys(Split::Gather),
        run: Some(sintercard),
        summary: "Counts the members common to every given set, optionally stopping at a limit.",
        since: "7.0.0",
        complexity: INTER_COMPLEXITY,
        args: &[
            Arg::new("numkeys", ArgType::Integer),
            KEY.multiple(),
            Arg::new("limit", ArgType::Integer).with_token("LIMIT").optional(),
        ],
        ..SET
    },
    CommandSpec {
        name: "sinterstore",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM,
        keys: SINTERSTORE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(sinterstore),
        summary: "Stores the members common to every given set under a key.",
        complexity: INTER_COMPLEXITY,
        args: STORE_ARGS,
        ..SET
    },
    CommandSpec {
        name: "sunion",
        arity: -2,
        flags: flag::READONLY,
        keys: &[SOURCES],
        route: Route::Keys(Split::Gather),
        run: Some(sunion),
        summary: "Answers with the members found in any of the given sets.",
        complexity: UNION_COMPLEXITY,
        tips: &["nondeterministic_output_order"],
        args: KEYS,
        ..SET
    },
    CommandSpec {
        name: "sunionstore",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM,
        keys: OW_STORE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(sunionstore),
        summary: "Stores the members found in any of the given sets under a key.",
        complexity: UNION_COMPLEXITY,
        args: STORE_ARGS,
        ..SET
    },
    CommandSpec {
        name: "sdiff",
        arity: -2,
        flags: flag::READONLY,
        keys: &[SOURCES],
        route: Route::Keys(Split::Gather),
        run: Some(sdiff),
        summary: "Answers with the members of the first set that no other given set has.",
        complexity: UNION_COMPLEXITY,
        tips: &["nondeterministic_output_order"],
        args: KEYS,
        ..SET
    },
    CommandSpec {
        name: "sdiffstore",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM,
        keys: OW_STORE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(sdiffstore),
        summary: "Stores the members of the first given set that no other one has under a key.",
        complexity: UNION_COMPLEXITY,
        args: STORE_ARGS,
        ..SET
    },
    CommandSpec {
        name: "sscan",
        arity: -3,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(sscan),
        summary: "Walks the members of a set a few at a time with a cursor.",
        since: "2.8.0",
        complexity: "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection..",
        tips: &["nondeterministic_output"],
        args: &[
            KEY,
            Arg::new("cursor", ArgType::Integer),
            Arg::new("pattern", ArgType::Pattern).with_token("MATCH").optional(),
            Arg::new("count", ArgType::Integer).with_token("COUNT").optional(),
        ],
        ..SET
    },
];

// ---------------------------------------------------------------------------------------------
// Lookups and type checks.

/// The set under `key` for reading, counting a keyspace hit or miss as Redis's `lookupKeyRead`
/// does (a key of another type is a hit, then `WRONGTYPE`).
fn read_set<'s>(
    db: &'s mut Db,
    stats: &mut Stats,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s Set>> {
    let found = stats.count_lookup(db.get_read(key, now_ms));
    found.map(|e| e.value.as_set()).transpose()
}

/// The set under `key` for changing it (Redis's `lookupKeyWrite`: no statistics).
fn write_set<'s>(db: &'s mut Db, key: &[u8], now_ms: u64) -> Result<Option<&'s mut Set>> {
    db.get_mut(key, now_ms)
        .map(|e| e.value.as_set_mut())
        .transpose()
}

/// The set under `key`, created empty with the encoding `first` calls for when absent.
fn write_or_create<'s>(
    db: &'s mut Db,
    key: &[u8],
    first: &[u8],
    now_ms: u64,
) -> Result<&'s mut Set> {
    if db.get(key, now_ms).is_none() {
        db.insert(key, Entry::new(Value::Set(Set::for_member(first))));
    }
    write_set(db, key, now_ms)?.ok_or(Error::NoSuchKey)
}

fn reply_member(out: &mut Reply, m: Member) {
    match m {
        Member::Int(n) => out.bulk_int(n),
        Member::Bytes(b) => out.bulk(b),
    }
}

/// A whole set: a RESP3 set, a RESP2 array.
fn reply_set(out: &mut Reply, s: &Set) {
    out.set(s.len());
    s.iter().for_each(|m| reply_member(out, m));
}

/// A count argument as an unsigned size (it cannot exceed `usize` on the platforms we run on).
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------------------------
// Single-set commands.

/// SADD key member [member ...]
fn sadd(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let (key, members) = (c.argv[1], &c.argv[2..]);
    let max = sh.config.set_max_intset_entries;
    let set = write_or_create(&mut sh.dbs[c.db], key, members[0], c.now_ms)?;
    let added = members.iter().filter(|m| set.add(m, max)).count();
    sh.stats.dirty += added as u64;
    if added > 0 {
        sh.notify(class::SET, "sadd", c.db, key);
    }
    c.out.int(added as i64);
    Ok(())
}

/// SREM key member [member ...]
fn srem(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    let Some(set) = write_set(db, key, c.now_ms)? else {
        c.out.int(0);
        return Ok(());
    };
    let mut deleted = 0;
    for m in &c.argv[2..] {
        if set.remove(m) {
            deleted += 1;
            if set.is_empty() {
                break;
            }
        }
    }
    let empty = set.is_empty();
    if empty {
        db.remove(key);
    }
    sh.stats.dirty += deleted;
    if deleted > 0 {
        sh.notify(class::SET, "srem", c.db, key);
        if empty {
            sh.notify(class::GENERIC, "del", c.db, key);
        }
    }
    c.out.int(deleted as i64);
    Ok(())
}

/// SMEMBERS key — Redis runs it as a one-key SINTER.
fn smembers(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    inter_generic(sh, c, &argv[1..2], InterTo::Reply)
}

/// SISMEMBER key member
fn sismember(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let set = read_set(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    c.out.int(set.is_some_and(|s| s.contains(c.argv[2])) as i64);
    Ok(())
}

/// SMISMEMBER key member [member ...] — a missing key is an empty set.
fn smismember(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let set = read_set(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    let members = &c.argv[2..];
    c.out.array(members.len());
    for m in members {
        c.out.int(set.is_some_and(|s| s.contains(m)) as i64);
    }
    Ok(())
}

/// SCARD key
fn scard(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let set = read_set(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    c.out.int(set.map_or(0, Set::len) as i64);
    Ok(())
}

/// SPOP key [count]
fn spop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match c.argv.len() {
        2 => spop_one(sh, c),
        3 => spop_count(sh, c),
        _ => Err(Error::Syntax),
    }
}

fn spop_one(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let key = c.argv[1];
    let Shard { dbs, rng, .. } = sh;
    let db = &mut dbs[c.db];
    let Some(set) = write_set(db, key, c.now_ms)? else {
        c.out.null();
        return Ok(());
    };
    let popped = set.pop_random(rng);
    match &popped {
        Some(m) => c.out.bulk(m),
        None => c.out.null(),
    }
    let empty = set.is_empty();
    if empty {
        db.remove(key);
    }
    sh.stats.dirty += 1;
    if popped.is_some() {
        sh.notify(class::SET, "spop", c.db, key);
        if empty {
            sh.notify(class::GENERIC, "del", c.db, key);
        }
    }
    // The member drawn is logged, not the draw (Redis logs SREM).
    if let Some(m) = popped {
        sh.rewrite(c.db, &[b"SREM", key, &m]);
    }
    Ok(())
}

/// Logs the members SPOP removed as SREMs of at most `PROPAGATE_BATCH_ARGS` members each.
fn log_srem(sh: &mut Shard, db: usize, key: &[u8], members: &[SmallBytes]) {
    for batch in members.chunks(crate::limits::PROPAGATE_BATCH_ARGS) {
        let mut argv: Vec<&[u8]> = Vec::with_capacity(batch.len() + 2);
        argv.extend_from_slice(&[b"SREM", key]);
        argv.extend(batch.iter().map(|m| m.as_slice()));
        sh.rewrite(db, &argv);
    }
}

/// SPOP with a count. Like Redis, a count covering the whole set answers with the set (as
/// SUNION of the key would, a keyspace hit included) and deletes it; a count close to the
/// size keeps a new set of the few remaining members, which may start over as an intset.
fn spop_count(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let count = parse_i64(c.argv[2])
        .and_then(|n| u64::try_from(n).ok())
        .map(to_usize)
        .ok_or_else(|| Error::err("value is out of range, must be positive"))?;
    let key = c.argv[1];
    let max = sh.config.set_max_intset_entries;
    let prop_on = sh.propagating();
    let Shard {
        dbs, rng, stats, ..
    } = sh;
    let db = &mut dbs[c.db];
    let Some(set) = write_set(db, key, c.now_ms)? else {
        c.out.set(0);
        return Ok(());
    };
    if count == 0 {
        c.out.set(0);
        return Ok(());
    }
    let size = set.len();
    stats.dirty += count.min(size) as u64;
    if count >= size {
        stats.keyspace_hits += 1;
        reply_set(&mut c.out, &union(&[Some(&*set)], max));
        db.remove(key);
        sh.notify(class::SET, "spop", c.db, key);
        sh.notify(class::GENERIC, "del", c.db, key);
        // The whole set went: logged as its deletion, as Redis does.
        sh.rewrite(c.db, &[b"DEL", key]);
        return Ok(());
    }
    c.out.set(count);
    let remaining = size - count;
    // The members drawn, kept only while logging.
    let mut popped: Option<Vec<SmallBytes>> = prop_on.then(Vec::new);
    if remaining * 5 > count {
        for _ in 0..count {
            if let Some(m) = set.pop_random(rng) {
                c.out.bulk(&m);
                if let Some(p) = &mut popped {
                    p.push(m);
                }
            }
        }
    } else {
        let mut kept: Option<Set> = None;
        for _ in 0..remaining {
            if let Some(m) = set.pop_random(rng) {
                kept.get_or_insert_with(|| Set::for_member(&m)).add(&m, max);
            }
        }
        set.iter().for_each(|m| reply_member(&mut c.out, m));
        if let Some(p) = &mut popped {
            p.extend(set.iter().map(Member::to_bytes));
        }
        if let Some(kept) = kept {
            *set = kept;
        }
    }
    sh.notify(class::SET, "spop", c.db, key);
    if let Some(p) = popped {
        log_srem(sh, c.db, key, &p);
    }
    Ok(())
}

/// SRANDMEMBER key [count]
fn srandmember(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match c.argv.len() {
        2 => {
            let Shard {
                dbs, rng, stats, ..
            } = sh;
            match read_set(&mut dbs[c.db], stats, c.argv[1], c.now_ms)?.and_then(|s| s.random(rng))
            {
                Some(m) => reply_member(&mut c.out, m),
                None => c.out.null(),
            }
            Ok(())
        }
        3 => srandmember_count(sh, c),
        _ => Err(Error::Syntax),
    }
}

/// SRANDMEMBER with a count: distinct members for a positive count, independent draws (as
/// many as asked, repeats allowed) for a negative one. The reply is streamed: nothing is
/// allocated in proportion to the count beyond the set's own size.
fn srandmember_count(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let n = parse_i64(c.argv[2]).ok_or(Error::NotInteger)?;
    if n == i64::MIN {
        return Err(Error::err(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    let count = to_usize(n.unsigned_abs());
    let Shard {
        dbs, rng, stats, ..
    } = sh;
    let Some(set) = read_set(&mut dbs[c.db], stats, c.argv[1], c.now_ms)? else {
        c.out.array(0);
        return Ok(());
    };
    if count == 0 {
        c.out.array(0);
    } else if n < 0 || count == 1 {
        c.out.array(count);
        for _ in 0..count {
            if let Some(m) = set.random(rng) {
                reply_member(&mut c.out, m);
            }
        }
    } else if count >= set.len() {
        c.out.array(set.len());
        set.iter().for_each(|m| reply_member(&mut c.out, m));
    } else {
        c.out.array(count);
        for i in rng.distinct_positions(set.len(), count) {
            if let Some(m) = set.get(i) {
                reply_member(&mut c.out, m);
            }
        }
    }
    Ok(())
}

/// SMOVE source destination member
fn smove(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let (src, dst, member) = (c.argv[1], c.argv[2], c.argv[3]);
    let max = sh.config.set_max_intset_entries;
    let db = &mut sh.dbs[c.db];
    let Some(entry) = db.get(src, c.now_ms) else {
        c.out.int(0);
        return Ok(());
    };
    let is_member = entry.value.as_set()?.contains(member);
    if let Some(e) = db.get(dst, c.now_ms) {
        e.value.as_set()?;
    }
    if src == dst || !is_member {
        c.out.int(is_member as i64);
        return Ok(());
    }
    let mut emptied = false;
    if let Some(set) = write_set(db, src, c.now_ms)? {
        set.remove(member);
        emptied = set.is_empty();
    }
    if emptied {
        db.remove(src);
    }
    sh.notify(class::SET, "srem", c.db, src);
    if emptied {
        sh.notify(class::GENERIC, "del", c.db, src);
    }
    let added = write_or_create(&mut sh.dbs[c.db], dst, member, c.now_ms)?.add(member, max);
    sh.stats.dirty += 1 + added as u64;
    if added {
        sh.notify(class::SET, "sadd", c.db, dst);
    }
    c.out.int(1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Intersection, union, difference.

/// Looks up `keys` as SINTER, SUNION and SDIFF do: a counted read of each in order, failing
/// with `WRONGTYPE` at the first key of another type. Returns whether any key is missing.
fn lookup_sets(sh: &mut Shard, db: usize, keys: &[&[u8]], now_ms: u64) -> Result<bool> {
    let mut missing = false;
    for key in keys {
        missing |= read_set(&mut sh.dbs[db], &mut sh.stats, key, now_ms)?.is_none();
    }
    Ok(missing)
}

/// The sets under `keys` (after [`lookup_sets`]), `None` where a key is missing. A key given
/// twice yields the same set twice, which the algorithms below recognise by address.
fn peek_sets<'s>(db: &'s Db, keys: &[&[u8]], now_ms: u64) -> Vec<Option<&'s Set>> {
    keys.iter()
        .map(|k| db.peek(k, now_ms).and_then(|e| e.value.as_set().ok()))
        .collect()
}

/// Where SINTER's result goes.
#[derive(Clone, Copy)]
enum InterTo<'a> {
    /// Answered as a set (SINTER, SMEMBERS).
    Reply,
    /// Only counted, stopping at the limit if non-zero (SINTERCARD).
    Count(u64),
    /// Stored under the key (SINTERSTORE).
    Store(&'a [u8]),
}

/// Calls `f` with each member of the intersection of `sets` (all present) in Redis's order:
/// the smallest set is walked and each member checked against the others. Stops when `f`
/// returns false.
fn intersect(mut sets: Vec<&Set>, mut f: impl FnMut(Member) -> bool) {
    sets.sort_by_key(|s| s.len());
    let Some((&first, rest)) = sets.split_first() else {
        return;
    };
    for m in first.iter() {
        let everywhere = rest
            .iter()
            .all(|s| std::ptr::eq(*s, first) || s.contains_member(m));
        if everywhere && !f(m) {
            return;
        }
    }
}

/// The shared body of SMEMBERS, SINTER, SINTERCARD and SINTERSTORE.
fn inter_generic(sh: &mut Shard, c: &mut Call, keys: &[&[u8]], to: InterTo) -> Result<()> {
    let max = sh.config.set_max_intset_entries;
    let missing = lookup_sets(sh, c.db, keys, c.now_ms)?;
    let sets: Vec<&Set> = if missing {
        Vec::new()
    } else {
        peek_sets(&sh.dbs[c.db], keys, c.now_ms)
            .into_iter()
            .flatten()
            .collect()
    };
    match to {
        InterTo::Reply => {
            let mut body = Vec::new();
            let mut out = Reply::new(&mut body, c.out.proto);
            let mut n = 0;
            intersect(sets, |m| {
                reply_member(&mut out, m);
                n += 1;
                true
            });
            c.out.set(n);
            c.out.raw(&body);
        }
        InterTo::Count(limit) => {
            let mut n = 0u64;
            intersect(sets, |_| {
                n += 1;
                limit == 0 || n < limit
            });
            c.out.int(n as i64);
        }
        InterTo::Store(dst) => {
            let mut result = Set::default();
            intersect(sets, |m| {
                result.add_member(m, max);
                true
            });
            store(sh, c, dst, result, "sinterstore");
        }
    }
    Ok(())
}

/// SINTER key [key ...]
fn sinter(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    inter_generic(sh, c, &argv[1..], InterTo::Reply)
}

/// SINTERSTORE destination key [key ...]
fn sinterstore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    inter_generic(sh, c, &argv[2..], InterTo::Store(argv[1]))
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
fn sintercard(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    let numkeys = parse_i64(argv[1])
        .filter(|&n| n >= 1)
        .ok_or_else(|| Error::err("numkeys should be greater than 0"))?;
    let numkeys = usize::try_from(numkeys)
        .ok()
        .filter(|&n| n <= argv.len() - 2)
        .ok_or_else(|| Error::err("Number of keys can't be greater than number of args"))?;
    let mut limit = 0;
    let mut a = c.args(2 + numkeys);
    while let Some(word) = a.next() {
        if !eq_ic(word, "limit") || a.is_empty() {
            return Err(Error::Syntax);
        }
        limit = parse_i64(a.next_bytes()?)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| Error::err("LIMIT can't be negative"))?;
    }
    inter_generic(sh, c, &argv[2..2 + numkeys], InterTo::Count(limit))
}

/// The union of `sets`, built as Redis builds it: an intset that converts as members come.
fn union(sets: &[Option<&Set>], intset_max: usize) -> Set {
    let mut out = Set::default();
    for s in sets.iter().flatten() {
        s.iter().for_each(|m| {
            out.add_member(m, intset_max);
        });
    }
    out
}

/// The members of the first set that no other set has, computed with the algorithm Redis
/// would pick. The choice matters beyond speed: the second algorithm adds the whole first set
/// before removing, so the result's encoding follows the first set's members, not only the
/// result's.
fn diff(sets: &[Option<&Set>], intset_max: usize) -> Set {
    let mut out = Set::default();
    let Some((Some(first), rest)) = sets.split_first() else {
        return out;
    };
    if rest.iter().flatten().any(|s| std::ptr::eq(*s, *first)) {
        return out;
    }
    let present = sets.iter().flatten().count();
    let work_one = first.len().saturating_mul(present) / 2;
    let work_two: usize = sets.iter().flatten().map(|s| s.len()).sum();
    if work_one <= work_two {
        for m in first.iter() {
            if !rest.iter().flatten().any(|s| s.contains_member(m)) {
                out.add_member(m, intset_max);
            }
        }
    } else {
        first.iter().for_each(|m| {
            out.add_member(m, intset_max);
        });
        for s in rest.iter().flatten() {
            if out.is_empty() {
                break;
            }
            s.iter().for_each(|m| {
                out.remove_member(m);
            });
        }
    }
    out
}

/// Stores a computed set under `dst` (replacing any value and deadline), or deletes `dst` when
/// the set is empty; answers with the set's size.
/// `event` is the command's (Redis fires `del` instead when it deletes `dst`).
fn store(sh: &mut Shard, c: &mut Call, dst: &[u8], result: Set, event: &'static str) {
    let db = &mut sh.dbs[c.db];
    let n = result.len();
    if n == 0 {
        if db.remove(dst).is_some() {
            sh.stats.dirty += 1;
            sh.notify(class::GENERIC, "del", c.db, dst);
        }
    } else {
        db.insert(dst, Entry::new(Value::Set(result)));
        sh.stats.dirty += 1;
        sh.notify(class::SET, event, c.db, dst);
    }
    c.out.int(n as i64);
}

/// The shared body of SUNION, SDIFF and their STORE forms.
fn union_diff(
    sh: &mut Shard,
    c: &mut Call,
    keys: &[&[u8]],
    is_diff: bool,
    dst: Option<&[u8]>,
) -> Result<()> {
    lookup_sets(sh, c.db, keys, c.now_ms)?;
    let max = sh.config.set_max_intset_entries;
    let sets = peek_sets(&sh.dbs[c.db], keys, c.now_ms);
    let result = if is_diff {
        diff(&sets, max)
    } else {
        union(&sets, max)
    };
    match dst {
        Some(dst) => {
            let event = if is_diff { "sdiffstore" } else { "sunionstore" };
            store(sh, c, dst, result, event)
        }
        None => reply_set(&mut c.out, &result),
    }
    Ok(())
}

/// SUNION key [key ...]
fn sunion(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    union_diff(sh, c, &argv[1..], false, None)
}

/// SUNIONSTORE destination key [key ...]
fn sunionstore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    union_diff(sh, c, &argv[2..], false, Some(argv[1]))
}

/// SDIFF key [key ...]
fn sdiff(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    union_diff(sh, c, &argv[1..], true, None)
}

/// SDIFFSTORE destination key [key ...]
fn sdiffstore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    union_diff(sh, c, &argv[2..], true, Some(argv[1]))
}

// ---------------------------------------------------------------------------------------------
// SSCAN.

/// SSCAN key cursor [MATCH pattern] [COUNT count] — as Redis, the cursor is checked first,
/// then the key (a missing one answers an empty scan whatever the options), then the options.
fn sscan(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let cursor = parse_cursor(c.argv[2]).ok_or_else(|| Error::err("invalid cursor"))?;
    let Some(set) = read_set(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)? else {
        c.out.array(2);
        c.out.bulk(b"0");
        c.out.array(0);
        return Ok(());
    };
    let (mut count, mut pattern) = (10, None);
    let mut a = c.args(3);
    while let Some(word) = a.next() {
        let value = a.next_bytes()?;
        if eq_ic(word, "count") {
            let n = parse_i64(value).ok_or(Error::NotInteger)?;
            count = usize::try_from(n)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or(Error::Syntax)?;
        } else if eq_ic(word, "match") {
            pattern = Some(value);
        } else {
            return Err(Error::Syntax);
        }
    }
    let mut body = Vec::new();
    let mut out = Reply::new(&mut body, c.out.proto);
    let mut n = 0;
    let next = set.scan(cursor, count, |m| {
        let keep = match (pattern, m) {
            (None, _) => true,
            (Some(p), Member::Bytes(b)) => pattern_allows(p, b),
            (Some(p), Member::Int(i)) => {
                pattern_allows(p, itoa::Buffer::new().format(i).as_bytes())
            }
        };
        if keep {
            reply_member(&mut out, m);
            n += 1;
        }
    });
    c.out.array(2);
    c.out.bulk(itoa::Buffer::new().format(next).as_bytes());
    c.out.array(n);
    c.out.raw(&body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::resp::Proto;
    use crate::shard::testing::TestShard;

    /// A bulk string reply.
    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    /// An array (or, with `head` `~`, a set) of bulk strings.
    fn bulks(head: char, items: &[&str]) -> String {
        let mut out = format!("{head}{}\r\n", items.len());
        items.iter().for_each(|i| out.push_str(&bulk(i)));
        out
    }

    /// The elements of a flat aggregate reply of bulk strings, sorted.
    fn sorted_elems(reply: &str) -> Vec<String> {
        let mut v: Vec<String> = reply
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.starts_with('$') && !l.is_empty())
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    fn strings(items: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    /// OBJECT ENCODING of `key` in the test shard.
    fn encoding(t: &mut TestShard, key: &str) -> &'static str {
        t.shard.dbs[0]
            .get(key.as_bytes(), t.now_ms)
            .map_or("none", |e| e.value.encoding())
    }

    const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    #[test]
    fn sadd_srem_scard_sismember() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SADD s a b a c"), ":3\r\n");
        assert_eq!(t.run("SADD s a d"), ":1\r\n");
        assert_eq!(t.shard.stats.dirty, 4);
        assert_eq!(t.run("SCARD s"), ":4\r\n");
        assert_eq!(t.run("SCARD nosuch"), ":0\r\n");
        assert_eq!(t.run("SISMEMBER s a"), ":1\r\n");
        assert_eq!(t.run("SISMEMBER s z"), ":0\r\n");
        assert_eq!(t.run("SISMEMBER nosuch a"), ":0\r\n");
        assert_eq!(t.run("SMISMEMBER s a z d"), "*3\r\n:1\r\n:0\r\n:1\r\n");
        assert_eq!(t.run("SMISMEMBER nosuch a b"), "*2\r\n:0\r\n:0\r\n");
        assert_eq!(t.run("SREM s a z a"), ":1\r\n");
        assert_eq!(t.run("SREM nosuch a"), ":0\r\n");
        assert_eq!(t.run("SREM s b c d"), ":3\r\n");
        assert_eq!(t.run("EXISTS s"), ":0\r\n", "an emptied set is deleted");
        assert_eq!(t.shard.stats.dirty, 8);
        t.run("SET str v");
        for cmd in [
            "SADD str a",
            "SREM str a",
            "SCARD str",
            "SISMEMBER str a",
            "SMISMEMBER str a",
            "SMEMBERS str",
            "SRANDMEMBER str",
            "SRANDMEMBER str 0",
            "SPOP str",
            "SPOP str 0",
            "SSCAN str 0",
        ] {
            assert_eq!(t.run(cmd), WRONGTYPE, "{cmd}");
        }
        assert_eq!(
            t.run("SADD"),
            "-ERR wrong number of arguments for 'sadd' command\r\n"
        );
        assert_eq!(
            t.run("SADD s"),
            "-ERR wrong number of arguments for 'sadd' command\r\n"
        );
        assert_eq!(t.run("TYPE str"), "+string\r\n");
        t.run("SADD s 1");
        assert_eq!(t.run("TYPE s"), "+set\r\n");
    }

    #[test]
    fn read_lookups_count_hits_and_misses() {
        let mut t = TestShard::new();
        t.run("SADD s a");
        t.run("SADD t a");
        for cmd in [
            "SCARD s",
            "SISMEMBER s a",
            "SMEMBERS s",
            "SSCAN s 0",
            "SRANDMEMBER s",
        ] {
            t.run(cmd);
        }
        assert_eq!(t.shard.stats.keyspace_hits, 5);
        t.run("SCARD nosuch");
        assert_eq!(t.shard.stats.keyspace_misses, 1);
        // Writes look keys up without counting; SINTER & co. count every source key.
        t.run("SADD s b");
        t.run("SREM s b");
        t.run("SMOVE s t a");
        assert_eq!(t.shard.stats.keyspace_hits, 5);
        t.run("SINTER t nosuch t");
        t.run("SUNIONSTORE d t nosuch");
        assert_eq!(t.shard.stats.keyspace_hits, 8);
        assert_eq!(t.shard.stats.keyspace_misses, 3);
        // SPOP of the whole set answers through a union, which reads the key once more.
        t.run("SPOP t 10");
        assert_eq!(t.shard.stats.keyspace_hits, 9);
    }

    #[test]
    fn encodings_follow_redis() {
        let mut t = TestShard::new();
        t.shard.config.set_max_intset_entries = 4;
        t.run("SADD s 1 2 3 4");
        assert_eq!(encoding(&mut t, "s"), "intset");
        t.run("SADD s 5");
        assert_eq!(encoding(&mut t, "s"), "hashtable");
        t.run("SREM s 5 4 3");
        assert_eq!(
            encoding(&mut t, "s"),
            "hashtable",
            "conversions are one-way"
        );
        t.run("SADD i 3 1 2");
        assert_eq!(encoding(&mut t, "i"), "intset");
        t.run("SADD i x");
        assert_eq!(encoding(&mut t, "i"), "hashtable");
        for (member, enc) in [
            ("7", "intset"),
            ("-0", "hashtable"),
            ("01", "hashtable"),
            ("+1", "hashtable"),
            ("9223372036854775807", "intset"),
            ("9223372036854775808", "hashtable"),
            ("abc", "hashtable"),
        ] {
            t.run("DEL n");
            t.run(&format!("SADD n {member}"));
            assert_eq!(encoding(&mut t, "n"), enc, "{member}");
        }
        // A set emptied and recreated starts over.
        t.run("SADD c x");
        t.run("SREM c x");
        t.run("SADD c 1");
        assert_eq!(encoding(&mut t, "c"), "intset");
        // An intset answers in ascending order.
        t.run("SADD o 10 -5 3 9223372036854775807 -9223372036854775808");
        assert_eq!(
            t.run("SMEMBERS o"),
            bulks(
                '*',
                &[
                    "-9223372036854775808",
                    "-5",
                    "3",
                    "10",
                    "9223372036854775807"
                ]
            )
        );
        // The default limit is 512 entries.
        let mut t = TestShard::new();
        let many: Vec<String> = (0..512).map(|i| i.to_string()).collect();
        t.run(&format!("SADD big {}", many.join(" ")));
        assert_eq!(encoding(&mut t, "big"), "intset");
        t.run("SADD big 512");
        assert_eq!(encoding(&mut t, "big"), "hashtable");
    }

    #[test]
    fn smembers_and_resp3_shapes() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SMEMBERS nosuch"), "*0\r\n");
        t.run("SADD s b a c");
        assert_eq!(
            sorted_elems(&t.run("SMEMBERS s")),
            strings(&["a", "b", "c"])
        );
        t.proto = Proto::Resp3;
        assert_eq!(t.run("SMEMBERS nosuch"), "~0\r\n");
        assert!(t.run("SMEMBERS s").starts_with("~3\r\n"));
        assert!(t.run("SUNION s").starts_with("~3\r\n"));
        assert!(t.run("SINTER s s").starts_with("~3\r\n"));
        assert_eq!(t.run("SDIFF s s"), "~0\r\n");
        assert_eq!(t.run("SPOP nosuch 2"), "~0\r\n");
        assert_eq!(t.run("SPOP s 0"), "~0\r\n");
        assert!(t.run("SPOP s 1").starts_with("~1\r\n"));
        assert_eq!(t.run("SRANDMEMBER nosuch 2"), "*0\r\n");
        assert!(t.run("SRANDMEMBER s 2").starts_with("*2\r\n"));
        assert!(t.run("SRANDMEMBER s -5").starts_with("*5\r\n"));
        assert_eq!(t.run("SRANDMEMBER nosuch"), "_\r\n");
        assert_eq!(t.run("SPOP nosuch"), "_\r\n");
        assert_eq!(t.run("SSCAN nosuch 0"), "*2\r\n$1\r\n0\r\n*0\r\n");
    }

    #[test]
    fn spop() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SPOP nosuch"), "$-1\r\n");
        assert_eq!(t.run("SPOP nosuch 3"), "*0\r\n");
        t.run("SADD s a b c");
        let popped = t.run("SPOP s");
        assert!(
            ["a", "b", "c"].iter().any(|m| popped == bulk(m)),
            "{popped}"
        );
        assert_eq!(t.run("SCARD s"), ":2\r\n");
        assert_eq!(t.run("SPOP s 0"), "*0\r\n");
        let dirty = t.shard.stats.dirty;
        assert_eq!(t.run("SPOP s 10").lines().next(), Some("*2"));
        assert_eq!(t.shard.stats.dirty, dirty + 2, "counts what was popped");
        assert_eq!(t.run("EXISTS s"), ":0\r\n");
        t.run("SADD one x");
        assert_eq!(t.run("SPOP one"), bulk("x"));
        assert_eq!(t.run("EXISTS one"), ":0\r\n");
        let range = "-ERR value is out of range, must be positive\r\n";
        assert_eq!(t.run("SPOP s -1"), range);
        assert_eq!(t.run("SPOP s x"), range);
        assert_eq!(t.run("SPOP nosuch -1"), range);
        t.run("SET str v");
        assert_eq!(
            t.run("SPOP str -1"),
            range,
            "the count is checked before the key"
        );
        assert_eq!(t.run("SPOP s 1 2"), "-ERR syntax error\r\n");
        // An intset popped whole answers in order.
        t.run("SADD i 3 1 2");
        assert_eq!(t.run("SPOP i 3"), bulks('*', &["1", "2", "3"]));
    }

    #[test]
    fn spop_strategies_and_reencoding() {
        let mut t = TestShard::new();
        t.shard.config.set_max_intset_entries = 4;
        let members: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        // Few popped: members are taken out one by one; the set keeps its encoding and TTL.
        t.run(&format!("SADD h {}", members.join(" ")));
        t.run("EXPIRE h 100");
        let reply = t.run("SPOP h 3");
        assert_eq!(reply.lines().next(), Some("*3"));
        assert_eq!(t.run("SCARD h"), ":17\r\n");
        assert_eq!(encoding(&mut t, "h"), "hashtable");
        // Most popped: the few left are moved into a new set, which may be an intset again.
        let reply = t.run("SPOP h 15");
        assert_eq!(reply.lines().next(), Some("*15"));
        assert_eq!(t.run("SCARD h"), ":2\r\n");
        assert_eq!(encoding(&mut t, "h"), "intset");
        assert_eq!(t.run("TTL h"), ":100\r\n");
        // Everything popped exactly once.
        let mut t = TestShard::new();
        t.run(&format!("SADD h {}", members.join(" ")));
        let mut seen: Vec<String> = Vec::new();
        for n in [1, 2, 15, 10] {
            seen.extend(sorted_elems(&t.run(&format!("SPOP h {n}"))));
        }
        seen.sort_by_key(|s| s.parse::<i64>().unwrap_or_default());
        assert_eq!(seen, members);
        assert_eq!(t.run("EXISTS h"), ":0\r\n");
    }

    #[test]
    fn srandmember() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SRANDMEMBER nosuch"), "$-1\r\n");
        assert_eq!(t.run("SRANDMEMBER nosuch 5"), "*0\r\n");
        assert_eq!(t.run("SRANDMEMBER nosuch -5"), "*0\r\n");
        t.run("SADD s a b c d e f g h i j");
        let one = t.run("SRANDMEMBER s");
        assert!(one.starts_with("$1\r\n"));
        assert_eq!(t.run("SRANDMEMBER s 0"), "*0\r\n");
        for n in [1, 2, 3, 4, 5, 9] {
            let got = sorted_elems(&t.run(&format!("SRANDMEMBER s {n}")));
            let mut distinct = got.clone();
            distinct.dedup();
            assert_eq!((got.len(), distinct.len()), (n, n), "count {n}");
        }
        assert_eq!(
            sorted_elems(&t.run("SRANDMEMBER s 100")),
            strings(&["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])
        );
        let repeated = sorted_elems(&t.run("SRANDMEMBER s -30"));
        assert_eq!(repeated.len(), 30);
        t.run("SADD one x");
        assert_eq!(t.run("SRANDMEMBER one -3"), bulks('*', &["x", "x", "x"]));
        assert_eq!(t.run("SCARD s"), ":10\r\n", "nothing removed");
        assert_eq!(
            t.run("SRANDMEMBER s -9223372036854775808"),
            "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"
        );
        assert_eq!(
            t.run("SRANDMEMBER s x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("SRANDMEMBER s 1 2"), "-ERR syntax error\r\n");
        // An intset asked for all of itself answers in order.
        t.run("SADD i 3 1 2");
        assert_eq!(t.run("SRANDMEMBER i 3"), bulks('*', &["1", "2", "3"]));
    }

    #[test]
    fn smove() {
        let mut t = TestShard::new();
        t.run("SADD src a b 1");
        assert_eq!(t.run("SMOVE nosuch src a"), ":0\r\n");
        assert_eq!(t.run("SMOVE src dst z"), ":0\r\n");
        assert_eq!(t.run("EXISTS dst"), ":0\r\n");
        let dirty = t.shard.stats.dirty;
        assert_eq!(t.run("SMOVE src dst a"), ":1\r\n");
        assert_eq!(t.shard.stats.dirty, dirty + 2);
        assert_eq!(t.run("SMEMBERS dst"), bulks('*', &["a"]));
        assert_eq!(encoding(&mut t, "dst"), "hashtable");
        // Moving to a set that already has the member only removes it from the source.
        t.run("SADD dst b");
        assert_eq!(t.run("SMOVE src dst b"), ":1\r\n");
        assert_eq!(t.shard.stats.dirty, dirty + 4);
        assert_eq!(t.run("SMOVE src num 1"), ":1\r\n");
        assert_eq!(
            t.run("EXISTS src"),
            ":0\r\n",
            "the emptied source is deleted"
        );
        assert_eq!(encoding(&mut t, "num"), "intset");
        // Same source and destination: a membership test.
        assert_eq!(t.run("SMOVE dst dst a"), ":1\r\n");
        assert_eq!(t.run("SMOVE dst dst z"), ":0\r\n");
        t.run("SET str v");
        assert_eq!(t.run("SMOVE nosuch str a"), ":0\r\n");
        assert_eq!(t.run("SMOVE dst str a"), WRONGTYPE);
        assert_eq!(t.run("SMOVE str dst a"), WRONGTYPE);
        assert_eq!(t.run("SMOVE dst str z"), WRONGTYPE);
        assert_eq!(t.run("SCARD dst"), ":2\r\n");
    }

    #[test]
    fn sinter_family() {
        let mut t = TestShard::new();
        t.run("SADD a 1 2 3 4 x");
        t.run("SADD b 2 3 4 5");
        t.run("SADD c 3 4 6");
        assert_eq!(t.run("SINTER b c"), bulks('*', &["3", "4"]));
        assert_eq!(sorted_elems(&t.run("SINTER a b c")), strings(&["3", "4"]));
        assert_eq!(
            sorted_elems(&t.run("SINTER a a")),
            strings(&["1", "2", "3", "4", "x"])
        );
        assert_eq!(t.run("SINTER a nosuch"), "*0\r\n");
        t.run("SET str v");
        assert_eq!(
            t.run("SINTER nosuch str"),
            WRONGTYPE,
            "every key is type checked"
        );
        assert_eq!(t.run("SINTERSTORE d a b c"), ":2\r\n");
        assert_eq!(encoding(&mut t, "d"), "intset");
        assert_eq!(t.run("SMEMBERS d"), bulks('*', &["3", "4"]));
        t.run("EXPIRE d 100");
        assert_eq!(t.run("SINTERSTORE d b c"), ":2\r\n");
        assert_eq!(
            t.run("TTL d"),
            ":-1\r\n",
            "the stored set replaces value and TTL"
        );
        let dirty = t.shard.stats.dirty;
        assert_eq!(t.run("SINTERSTORE d a nosuch"), ":0\r\n");
        assert_eq!(t.run("EXISTS d"), ":0\r\n");
        assert_eq!(t.run("SINTERSTORE d a nosuch"), ":0\r\n");
        assert_eq!(
            t.shard.stats.dirty,
            dirty + 1,
            "only a real delete is a change"
        );
        assert_eq!(
            t.run("SINTERSTORE str a b"),
            ":3\r\n",
            "the destination may be of any type"
        );
        assert_eq!(t.run("TYPE str"), "+set\r\n");
        t.run("SET str v");
        assert_eq!(t.run("SINTERSTORE d a str"), WRONGTYPE);
    }

    #[test]
    fn sintercard() {
        let mut t = TestShard::new();
        t.run("SADD a 1 2 3 4 x");
        t.run("SADD b 2 3 4 x y");
        assert_eq!(t.run("SINTERCARD 2 a b"), ":4\r\n");
        assert_eq!(t.run("SINTERCARD 1 a"), ":5\r\n");
        assert_eq!(t.run("SINTERCARD 2 a b LIMIT 2"), ":2\r\n");
        assert_eq!(t.run("SINTERCARD 2 a b LIMIT 0"), ":4\r\n");
        assert_eq!(t.run("SINTERCARD 2 a b limit 1 LIMIT 3"), ":3\r\n");
        assert_eq!(t.run("SINTERCARD 2 a nosuch"), ":0\r\n");
        let numkeys = "-ERR numkeys should be greater than 0\r\n";
        assert_eq!(t.run("SINTERCARD 0 a"), numkeys);
        assert_eq!(t.run("SINTERCARD -1 a"), numkeys);
        assert_eq!(t.run("SINTERCARD x a"), numkeys);
        let too_many = "-ERR Number of keys can't be greater than number of args\r\n";
        assert_eq!(t.run("SINTERCARD 2 a"), too_many);
        assert_eq!(t.run("SINTERCARD 9223372036854775807 a"), too_many);
        let limit = "-ERR LIMIT can't be negative\r\n";
        assert_eq!(t.run("SINTERCARD 1 a LIMIT -1"), limit);
        assert_eq!(t.run("SINTERCARD 1 a LIMIT x"), limit);
        assert_eq!(t.run("SINTERCARD 1 a LIMIT"), "-ERR syntax error\r\n");
        assert_eq!(t.run("SINTERCARD 1 a b"), "-ERR syntax error\r\n");
        t.run("SET str v");
        assert_eq!(t.run("SINTERCARD 2 nosuch str"), WRONGTYPE);
    }

    #[test]
    fn sunion_sdiff() {
        let mut t = TestShard::new();
        t.run("SADD a 1 2 3 x");
        t.run("SADD b 3 4");
        t.run("SADD c x y");
        assert_eq!(
            sorted_elems(&t.run("SUNION a b c nosuch")),
            strings(&["1", "2", "3", "4", "x", "y"])
        );
        assert_eq!(t.run("SUNION nosuch"), "*0\r\n");
        assert_eq!(t.run("SUNION b nosuch b"), bulks('*', &["3", "4"]));
        assert_eq!(sorted_elems(&t.run("SDIFF a b c")), strings(&["1", "2"]));
        assert_eq!(
            sorted_elems(&t.run("SDIFF a nosuch")),
            strings(&["1", "2", "3", "x"])
        );
        assert_eq!(t.run("SDIFF nosuch a"), "*0\r\n");
        assert_eq!(t.run("SDIFF a b a"), "*0\r\n");
        t.run("SET str v");
        assert_eq!(t.run("SUNION a str"), WRONGTYPE);
        assert_eq!(t.run("SDIFF nosuch str"), WRONGTYPE);
        assert_eq!(t.run("SUNIONSTORE d a b"), ":5\r\n");
        assert_eq!(encoding(&mut t, "d"), "hashtable");
        assert_eq!(t.run("SUNIONSTORE d b"), ":2\r\n");
        assert_eq!(encoding(&mut t, "d"), "intset");
        assert_eq!(t.run("SDIFFSTORE d a b c"), ":2\r\n");
        assert_eq!(encoding(&mut t, "d"), "intset");
        assert_eq!(t.run("SDIFFSTORE d b b"), ":0\r\n");
        assert_eq!(t.run("EXISTS d"), ":0\r\n");
        assert_eq!(t.run("SUNIONSTORE d nosuch"), ":0\r\n");
        assert_eq!(t.run("SUNIONSTORE str a"), ":4\r\n");
        assert_eq!(t.run("TYPE str"), "+set\r\n");
    }

    #[test]
    fn sdiff_algorithm_decides_the_encoding() {
        let mut t = TestShard::new();
        t.shard.config.set_max_intset_entries = 4;
        t.run("SADD f 1 2 3 4 5 6");
        t.run("SADD r1 1");
        t.run("SADD r2 2");
        // Much bigger first set: Redis adds it whole, then removes, passing the limit.
        assert_eq!(t.run("SDIFFSTORE d f r1 r2"), ":4\r\n");
        assert_eq!(encoding(&mut t, "d"), "hashtable");
        t.shard.config.set_max_intset_entries = 10;
        t.run("SADD g 1 2 3 4 5 6 x");
        t.run("SADD q1 x");
        t.run("SADD q2 6");
        assert_eq!(t.run("SDIFFSTORE e g q1 q2"), ":5\r\n");
        assert_eq!(encoding(&mut t, "e"), "hashtable");
        // Otherwise only the result's members are added.
        assert_eq!(t.run("SDIFFSTORE e g q1"), ":6\r\n");
        assert_eq!(encoding(&mut t, "e"), "intset");
    }

    #[test]
    fn sscan() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SSCAN nosuch 0"), "*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(t.run("SSCAN nosuch 0 COUNT 0"), "*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(t.run("SSCAN nosuch x"), "-ERR invalid cursor\r\n");
        t.run("SADD i 3 1 2 10");
        assert_eq!(
            t.run("SSCAN i 0 COUNT 1"),
            "*2\r\n$1\r\n0\r\n".to_string() + &bulks('*', &["1", "2", "3", "10"])
        );
        assert_eq!(
            t.run("SSCAN i 77 MATCH 1*"),
            "*2\r\n$1\r\n0\r\n".to_string() + &bulks('*', &["1", "10"])
        );
        for (cmd, err) in [
            ("SSCAN i 0 COUNT 0", "-ERR syntax error\r\n"),
            (
                "SSCAN i 0 COUNT x",
                "-ERR value is not an integer or out of range\r\n",
            ),
            ("SSCAN i 0 COUNT", "-ERR syntax error\r\n"),
            ("SSCAN i 0 MATCH", "-ERR syntax error\r\n"),
            ("SSCAN i 0 TYPE string", "-ERR syntax error\r\n"),
            ("SSCAN i -x", "-ERR invalid cursor\r\n"),
        ] {
            assert_eq!(t.run(cmd), err, "{cmd}");
        }
        let members: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
        t.run(&format!("SADD h {}", members.join(" ")));
        let mut seen = Vec::new();
        let mut cursor = "0".to_string();
        for round in 0.. {
            assert!(round < 100, "SSCAN did not finish");
            let reply = t.run(&format!("SSCAN h {cursor} COUNT 7"));
            let mut lines = reply.split("\r\n").skip(2);
            cursor = lines.next().unwrap_or_default().to_string();
            seen.extend(sorted_elems(&lines.collect::<Vec<_>>().join("\r\n")));
            if cursor == "0" {
                break;
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 100);
        let reply = t.run("SSCAN h 0 MATCH m1? COUNT 1000");
        assert_eq!(
            sorted_elems(reply.split_once("*10\r\n").map_or("", |p| p.1)).len(),
            10
        );
    }
}
