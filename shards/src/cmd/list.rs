//! List commands (Redis's `t_list.c`): pushes and pops at both ends, index and range access,
//! search (LPOS), edits in the middle (LSET, LINSERT, LREM, LTRIM), moves between lists and the
//! blocking pops, with Redis 7.0's replies, errors and statistics.
//!
//! The blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) check their arguments and
//! timeout exactly as Redis does, then serve at once when one of their keys has data, with the
//! reply Redis gives a served call. Otherwise they write nothing and return
//! [`Error::Blocked`] with the timeout: the server parks the client on the keys of the command's
//! first key spec and runs the command again when one of them is written.
//!
//! Reads that Redis does with `lookupKeyRead` (LLEN, LRANGE, LINDEX, LPOS) count a keyspace hit
//! or miss; every change counts in `dirty`, one per element pushed, popped, set or removed. A
//! list left empty is deleted.

use super::spec::{
    acl, flag, kflag, Arg, ArgType, BeginSearch, CommandSpec, FindKeys, Group, KeySpec, Route,
    Split,
};
use super::{Args, Call};
use crate::keyspace::{Db, Entry};
use crate::notify::class;
use crate::resp::Reply;
use crate::types::list::{End, Fill};
use crate::types::{List, Value};
use crate::util::{eq_ic, parse_i64, LongDouble};
use crate::{Error, Result, Shard};

const LIST: CommandSpec = CommandSpec {
    group: Group::List,
    acl: acl::LIST,
    ..CommandSpec::DEFAULT
};

const KEY: Arg = Arg::key("key", 0);
const ELEMENT: Arg = Arg::new("element", ArgType::String);
const TIMEOUT: Arg = Arg::new("timeout", ArgType::Double);
const SIDES: &[Arg] = &[Arg::token("left", "LEFT"), Arg::token("right", "RIGHT")];
const MOVE_ARGS: &[Arg] = &[
    Arg::key("source", 0),
    Arg::key("destination", 1),
    Arg::oneof("wherefrom", SIDES),
    Arg::oneof("whereto", SIDES),
];
const PUSH_ARGS: &[Arg] = &[KEY, ELEMENT.multiple()];
const POP_ARGS: &[Arg] = &[
    KEY,
    Arg::new("count", ArgType::Integer)
        .since("6.2.0")
        .optional(),
];
const RANGE_ARGS: &[Arg] = &[
    KEY,
    Arg::new("start", ArgType::Integer),
    Arg::new("stop", ArgType::Integer),
];
const BPOP_ARGS: &[Arg] = &[KEY.multiple(), TIMEOUT];
const MPOP_ARGS: &[Arg] = &[
    Arg::new("numkeys", ArgType::Integer),
    KEY.multiple(),
    Arg::oneof("where", SIDES),
    Arg::new("count", ArgType::Integer)
        .with_token("COUNT")
        .optional(),
];

const PUSH_COMPLEXITY: &str = "O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments.";
const POP_COMPLEXITY: &str = "O(N) where N is the number of elements returned";
const MPOP_COMPLEXITY: &str =
    "O(N+M) where N is the number of provided keys and M is the number of elements returned.";
const TIMEOUT_HISTORY: &[(&str, &str)] = &[(
    "6.0.0",
    "`timeout` is interpreted as a double instead of an integer.",
)];

/// Key specs: a key read and shrunk (pops), one grown (pushes).
const POPPED: u32 = kflag::RW | kflag::ACCESS | kflag::DELETE;
const PUSHED: u32 = kflag::RW | kflag::INSERT;
const MOVE_KEYS: &[KeySpec] = &[KeySpec::one(1, POPPED), KeySpec::one(2, PUSHED)];

/// The keys of LMPOP (numkeys at argument 1) and BLMPOP (at argument 2).
const fn mpop_keys(numkeys_at: i32) -> KeySpec {
    KeySpec {
        notes: None,
        flags: POPPED,
        begin: BeginSearch::Index(numkeys_at),
        find: FindKeys::Keynum {
            keynumidx: 0,
            firstkey: 1,
            step: 1,
        },
    }
}

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "lpush",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, PUSHED)],
        run: Some(lpush),
        summary: "Adds elements at the head of a list, creating it if needed.",
        complexity: PUSH_COMPLEXITY,
        history: &[("2.4.0", "Accepts multiple `element` arguments.")],
        args: PUSH_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "rpush",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, PUSHED)],
        run: Some(rpush),
        summary: "Adds elements at the tail of a list, creating it if needed.",
        complexity: PUSH_COMPLEXITY,
        history: &[("2.4.0", "Accepts multiple `element` arguments.")],
        args: PUSH_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "lpushx",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, PUSHED)],
        run: Some(lpushx),
        summary: "Adds elements at the head of a list, only when the list already exists.",
        since: "2.2.0",
        complexity: PUSH_COMPLEXITY,
        history: &[("4.0.0", "Accepts multiple `element` arguments.")],
        args: PUSH_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "rpushx",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, PUSHED)],
        run: Some(rpushx),
        summary: "Adds elements at the tail of a list, only when the list already exists.",
        since: "2.2.0",
        complexity: PUSH_COMPLEXITY,
        history: &[("4.0.0", "Accepts multiple `element` arguments.")],
        args: PUSH_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "lpop",
        arity: -2,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, POPPED)],
        run: Some(lpop),
        summary: "Removes and answers with one or more elements from the head of a list.",
        complexity: POP_COMPLEXITY,
        history: &[("6.2.0", "Added the `count` argument.")],
        args: POP_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "rpop",
        arity: -2,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, POPPED)],
        run: Some(rpop),
        summary: "Removes and answers with one or more elements from the tail of a list.",
        complexity: POP_COMPLEXITY,
        history: &[("6.2.0", "Added the `count` argument.")],
        args: POP_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "llen",
        arity: 2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO)],
        run: Some(llen),
        summary: "Answers with the number of elements in a list.",
        args: &[KEY],
        ..LIST
    },
    CommandSpec {
        name: "lrange",
        arity: 4,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(lrange),
        summary: "Answers with the elements of a list between two indexes, both included.",
        complexity: "O(S+N) where S is the distance of start offset from HEAD for small lists, from nearest end (HEAD or TAIL) for large lists; and N is the number of elements in the specified range.",
        args: RANGE_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "lindex",
        arity: 3,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(lindex),
        summary: "Answers with the element at an index of a list (negative: from the tail).",
        complexity: "O(N) where N is the number of elements to traverse to get to the element at index. This makes asking for the first or the last element of the list O(1).",
        args: &[KEY, Arg::new("index", ArgType::Integer)],
        ..LIST
    },
    CommandSpec {
        name: "lset",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, kflag::RW | kflag::UPDATE)],
        run: Some(lset),
        summary: "Replaces the element at an index of a list.",
        complexity: "O(N) where N is the length of the list. Setting either the first or the last element of the list is O(1).",
        args: &[KEY, Arg::new("index", ArgType::Integer), ELEMENT],
        ..LIST
    },
    CommandSpec {
        name: "linsert",
        arity: 5,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, PUSHED)],
        run: Some(linsert),
        summary: "Inserts an element just before or just after the first occurrence of another.",
        since: "2.2.0",
        complexity: "O(N) where N is the number of elements to traverse before seeing the value pivot. This means that inserting somewhere on the left end on the list (head) can be considered O(1) and inserting somewhere on the right end (tail) is O(N).",
        args: &[
            KEY,
            Arg::oneof(
                "where",
                &[Arg::token("before", "BEFORE"), Arg::token("after", "AFTER")],
            ),
            Arg::new("pivot", ArgType::String),
            ELEMENT,
        ],
        ..LIST
    },
    CommandSpec {
        name: "lrem",
        arity: 4,
        flags: flag::WRITE,
        keys: &[KeySpec::one(1, kflag::RW | kflag::DELETE)],
        run: Some(lrem),
        summary: "Removes occurrences of an element from a list, from the head or from the tail.",
        complexity: "O(N+M) where N is the length of the list and M is the number of elements removed.",
        args: &[KEY, Arg::new("count", ArgType::Integer), ELEMENT],
        ..LIST
    },
    CommandSpec {
        name: "ltrim",
        arity: 4,
        flags: flag::WRITE,
        keys: &[KeySpec::one(1, kflag::RW | kflag::DELETE)],
        run: Some(ltrim),
        summary: "Keeps only the elements of a list between two indexes, both included.",
        complexity: "O(N) where N is the number of elements to be removed by the operation.",
        args: RANGE_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "lpos",
        arity: -3,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(lpos),
        summary: "Answers with the positions of the elements of a list equal to a given one.",
        since: "6.0.6",
        complexity: "O(N) where N is the number of elements in the list, for the average case. When searching for elements near the head or the tail of the list, or when the MAXLEN option is provided, the command may run in constant time.",
        args: &[
            KEY,
            ELEMENT,
            Arg::new("rank", ArgType::Integer).with_token("RANK").optional(),
            Arg::new("num-matches", ArgType::Integer)
                .with_token("COUNT")
                .optional(),
            Arg::new("len", ArgType::Integer).with_token("MAXLEN").optional(),
        ],
        ..LIST
    },
    CommandSpec {
        name: "lmove",
        arity: 5,
        flags: flag::WRITE | flag::DENYOOM,
        keys: MOVE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(lmove),
        summary: "Takes an element off one end of a list, puts it on an end of another and answers with it.",
        since: "6.2.0",
        args: MOVE_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "rpoplpush",
        arity: 3,
        flags: flag::WRITE | flag::DENYOOM,
        keys: MOVE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(rpoplpush),
        summary: "Takes the last element of a list, puts it at the head of another and answers with it.",
        since: "1.2.0",
        deprecated: Some(("6.2.0", "`LMOVE` with the `RIGHT` and `LEFT` arguments")),
        args: &[Arg::key("source", 0), Arg::key("destination", 1)],
        ..LIST
    },
    CommandSpec {
        name: "lmpop",
        arity: -4,
        flags: flag::WRITE,
        keys: &[mpop_keys(1)],
        route: Route::Keys(Split::Gather),
        run: Some(lmpop),
        summary: "Removes and answers with elements from an end of the first non-empty list among several keys.",
        since: "7.0.0",
        complexity: MPOP_COMPLEXITY,
        args: MPOP_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "blpop",
        arity: -3,
        flags: flag::WRITE | flag::NOSCRIPT | flag::BLOCKING,
        keys: &[KeySpec::range(1, -2, 1, POPPED)],
        route: Route::Keys(Split::Gather),
        run: Some(blpop),
        summary: "Removes and answers with the head of the first non-empty list among several keys, waiting for one if they are all empty.",
        since: "2.0.0",
        complexity: "O(N) where N is the number of provided keys.",
        history: TIMEOUT_HISTORY,
        args: BPOP_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "brpop",
        arity: -3,
        flags: flag::WRITE | flag::NOSCRIPT | flag::BLOCKING,
        keys: &[KeySpec::range(1, -2, 1, POPPED)],
        route: Route::Keys(Split::Gather),
        run: Some(brpop),
        summary: "Removes and answers with the tail of the first non-empty list among several keys, waiting for one if they are all empty.",
        since: "2.0.0",
        complexity: "O(N) where N is the number of provided keys.",
        history: TIMEOUT_HISTORY,
        args: BPOP_ARGS,
        ..LIST
    },
    CommandSpec {
        name: "blmove",
        arity: 6,
        flags: flag::WRITE | flag::DENYOOM | flag::NOSCRIPT | flag::BLOCKING,
        keys: MOVE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(blmove),
        summary: "Moves an element from an end of one list to an end of another and answers with it, waiting while the source is empty.",
        since: "6.2.0",
        args: &[
            Arg::key("source", 0),
            Arg::key("destination", 1),
            Arg::oneof("wherefrom", SIDES),
            Arg::oneof("whereto", SIDES),
            TIMEOUT,
        ],
        ..LIST
    },
    CommandSpec {
        name: "brpoplpush",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM | flag::NOSCRIPT | flag::BLOCKING,
        keys: MOVE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(brpoplpush),
        summary: "Moves the last element of a list to the head of another and answers with it, waiting while the source is empty.",
        since: "2.2.0",
        history: TIMEOUT_HISTORY,
        deprecated: Some(("6.2.0", "`BLMOVE` with the `RIGHT` and `LEFT` arguments")),
        args: &[Arg::key("source", 0), Arg::key("destination", 1), TIMEOUT],
        ..LIST
    },
    CommandSpec {
        name: "blmpop",
        arity: -5,
        flags: flag::WRITE | flag::BLOCKING,
        keys: &[mpop_keys(2)],
        route: Route::Keys(Split::Gather),
        run: Some(blmpop),
        summary: "Removes and answers with elements from an end of the first non-empty list among several keys, waiting for one if they are all empty.",
        since: "7.0.0",
        complexity: MPOP_COMPLEXITY,
        args: &[
            TIMEOUT,
            Arg::new("numkeys", ArgType::Integer),
            KEY.multiple(),
            Arg::oneof("where", SIDES),
            Arg::new("count", ArgType::Integer)
                .with_token("COUNT")
                .optional(),
        ],
        ..LIST
    },
];

// ---------------------------------------------------------------------------------------------
// Lookups, type checks and argument parsing.

/// The list under `key` for reading, counting a keyspace hit or miss as Redis's
/// `lookupKeyRead` does (a key of another type is a hit), or `WRONGTYPE`.
fn read_list<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s List>> {
    let Shard { dbs, stats, .. } = sh;
    let found = stats.count_lookup(dbs[db].get_read(key, now_ms));
    found.map(|e| e.value.as_list()).transpose()
}

/// The list under `key` for changing it (no statistics, as `lookupKeyWrite`), or `WRONGTYPE`.
fn write_list<'d>(db: &'d mut Db, key: &[u8], now_ms: u64) -> Result<Option<&'d mut List>> {
    db.get_mut(key, now_ms)
        .map(|e| e.value.as_list_mut())
        .transpose()
}

/// The node fill the shard's `list-max-listpack-size` sets.
fn fill(sh: &Shard) -> Fill {
    Fill::new(sh.config.list_max_listpack_size)
}

/// Pushes `items` at `end` of the list under `key`, creating it. Returns the new length.
fn push_or_create<'i>(
    db: &mut Db,
    key: &[u8],
    end: End,
    items: impl IntoIterator<Item = &'i [u8]>,
    fill: Fill,
    now_ms: u64,
) -> Result<usize> {
    if let Some(list) = write_list(db, key, now_ms)? {
        items.into_iter().for_each(|e| list.push(end, e, fill));
        return Ok(list.len());
    }
    let mut list = List::new();
    items.into_iter().for_each(|e| list.push(end, e, fill));
    let len = list.len();
    db.insert(key, Entry::new(Value::List(list)));
    Ok(len)
}

/// Pops up to `count` elements at `end` of `list`, replying with them as an array.
fn pop_into(out: &mut Reply, list: &mut List, end: End, count: usize) -> usize {
    out.array(count.min(list.len()));
    list.pop_many(end, count, |e| out.bulk(e))
}

/// Accounts for `popped` elements taken from the list under `key` (by the command that
/// fires `event`, if any were), deleting it when `empty`.
fn after_pop(
    sh: &mut Shard,
    db: usize,
    key: &[u8],
    popped: usize,
    empty: bool,
    event: &'static str,
) {
    if popped > 0 {
        sh.notify(class::LIST, event, db, key);
    }
    if empty {
        sh.dbs[db].remove(key);
        sh.notify(class::GENERIC, "del", db, key);
    }
    sh.stats.dirty += popped as u64;
}

/// The event of a pop at `end`.
fn pop_event(end: End) -> &'static str {
    match end {
        End::Head => "lpop",
        End::Tail => "rpop",
    }
}

/// The event of a push at `end`.
fn push_event(end: End) -> &'static str {
    match end {
        End::Head => "lpush",
        End::Tail => "rpush",
    }
}

/// The command that pops at `end`.
fn pop_name(end: End) -> &'static [u8] {
    match end {
        End::Head => b"LPOP",
        End::Tail => b"RPOP",
    }
}

/// LEFT or RIGHT.
fn parse_end(arg: &[u8]) -> Result<End> {
    if eq_ic(arg, "left") {
        Ok(End::Head)
    } else if eq_ic(arg, "right") {
        Ok(End::Tail)
    } else {
        Err(Error::Syntax)
    }
}

fn parse_int(arg: &[u8]) -> Result<i64> {
    parse_i64(arg).ok_or(Error::NotInteger)
}

/// An integer argument that must be at least `min`; otherwise (or when not an integer) the
/// error `msg`, as Redis's `getRangeLongFromObjectOrReply` with a message.
fn parse_at_least(arg: &[u8], min: i64, msg: &str) -> Result<i64> {
    parse_i64(arg)
        .filter(|&n| n >= min)
        .ok_or_else(|| Error::err(msg))
}

/// A list index, negative counting from the tail, if it falls inside a list of `len`.
fn resolve(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 { index + len } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// The inclusive range `start..=end` (negative indexes from the tail) clipped to a list of
/// `len`, or `None` when it holds nothing: Redis's rule for LRANGE and LTRIM.
fn clip_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let llen = len as i64;
    let start = if start < 0 { llen + start } else { start }.max(0);
    let end = if end < 0 { llen + end } else { end };
    if start > end || start >= llen {
        return None;
    }
    Some((start as usize, end.min(llen - 1) as usize))
}

/// A blocking command's timeout in milliseconds from now (0: no limit), read as Redis's
/// `getTimeoutFromObjectOrReply` reads seconds.
pub(crate) fn parse_timeout(arg: &[u8]) -> Result<u64> {
    let secs = LongDouble::parse(arg)
        .ok_or_else(|| Error::err("timeout is not a float or out of range"))?;
    u64::try_from(seconds_to_ms(secs)).map_err(|_| Error::err("timeout is negative"))
}

/// `(long long) ceill(seconds * 1000.0)` as Redis 7.0 computes it in x87 `long double`: the
/// product is rounded to a 64-bit mantissa (nearest, ties to even), then rounded up to a whole
/// number; what does not fit an `i64` (infinities included) becomes `i64::MIN`, as the x87
/// conversion gives. So `0.0001` is 1 ms, `-0.0001` is 0 (no limit) and `inf` is negative.
fn seconds_to_ms(secs: LongDouble) -> i64 {
    let LongDouble::Finite { neg, mant, exp } = secs else {
        return i64::MIN;
    };
    let (mut m, mut e) = (u128::from(mant) * 1000, exp);
    let bits = 128 - i64::from(m.leading_zeros());
    if bits > 64 {
        let shift = (bits - 64) as u32;
        let rest = m & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        m >>= shift;
        e += i64::from(shift);
        if rest > half || (rest == half && m & 1 == 1) {
            m += 1;
        }
    }
    // The whole part of m * 2^e, and whether a fraction is left over.
    let (whole, fraction) = if m == 0 {
        (0, false)
    } else if e <= -128 {
        (0, true)
    } else if e < 0 {
        (m >> -e, m & ((1u128 << -e) - 1) != 0)
    } else if 128 - i64::from(m.leading_zeros()) + e > 63 {
        return i64::MIN;
    } else {
        (m << e, false)
    };
    // Rounding up moves a positive value away from zero and a negative one toward it.
    let magnitude = whole + u128::from(fraction && !neg);
    match i64::try_from(magnitude) {
        Ok(v) if neg => -v,
        Ok(v) => v,
        Err(_) => i64::MIN,
    }
}

// ---------------------------------------------------------------------------------------------
// Pushes and pops.

/// LPUSH key element [element ...]
fn lpush(sh: &mut Shard, c: &mut Call) -> Result<()> {
    push(sh, c, End::Head, false)
}

/// RPUSH key element [element ...]
fn rpush(sh: &mut Shard, c: &mut Call) -> Result<()> {
    push(sh, c, End::Tail, false)
}

/// LPUSHX key element [element ...]
fn lpushx(sh: &mut Shard, c: &mut Call) -> Result<()> {
    push(sh, c, End::Head, true)
}

/// RPUSHX key element [element ...]
fn rpushx(sh: &mut Shard, c: &mut Call) -> Result<()> {
    push(sh, c, End::Tail, true)
}

fn push(sh: &mut Shard, c: &mut Call, end: End, only_existing: bool) -> Result<()> {
    let fill = fill(sh);
    let (key, items) = (c.argv[1], &c.argv[2..]);
    let db = &mut sh.dbs[c.db];
    if only_existing && write_list(db, key, c.now_ms)?.is_none() {
        c.out.int(0);
        return Ok(());
    }
    let len = push_or_create(db, key, end, items.iter().copied(), fill, c.now_ms)?;
    sh.stats.dirty += items.len() as u64;
    sh.notify(class::LIST, push_event(end), c.db, key);
    c.out.int(len as i64);
    Ok(())
}

/// LPOP key [count]
fn lpop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    pop(sh, c, End::Head, "lpop")
}

/// RPOP key [count]
fn rpop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    pop(sh, c, End::Tail, "rpop")
}

fn pop(sh: &mut Shard, c: &mut Call, end: End, name: &str) -> Result<()> {
    if c.argv.len() > 3 {
        return Err(Error::WrongArity(name.into()));
    }
    let count = match c.argv.get(2) {
        Some(arg) => Some(parse_at_least(
            arg,
            0,
            "value is out of range, must be positive",
        )?),
        None => None,
    };
    let key = c.argv[1];
    let Some(list) = write_list(&mut sh.dbs[c.db], key, c.now_ms)? else {
        match count {
            Some(_) => c.out.null_array(),
            None => c.out.null(),
        }
        return Ok(());
    };
    let popped = match count {
        None => match list.pop(end) {
            Some(item) => {
                c.out.bulk(&item);
                1
            }
            None => {
                c.out.null();
                0
            }
        },
        Some(n) => pop_into(
            &mut c.out,
            list,
            end,
            usize::try_from(n).unwrap_or(usize::MAX),
        ),
    };
    let empty = list.is_empty();
    after_pop(sh, c.db, key, popped, empty, pop_event(end));
    Ok(())
}

/// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]
fn lmpop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let args = MpopArgs::parse(c.argv, 1)?;
    if !mpop_serve(sh, c, &args)? {
        c.out.null_array();
    }
    Ok(())
}

/// The parsed arguments of LMPOP and BLMPOP.
struct MpopArgs<'a> {
    keys: &'a [&'a [u8]],
    end: End,
    count: usize,
}

impl<'a> MpopArgs<'a> {
    /// Parses from the numkeys argument at `numkeys_at` on, in Redis's order and with its
    /// errors.
    fn parse(argv: &'a [&'a [u8]], numkeys_at: usize) -> Result<MpopArgs<'a>> {
        let numkeys = parse_at_least(argv[numkeys_at], 1, "numkeys should be greater than 0")?;
        let first_key = numkeys_at + 1;
        // The LEFT|RIGHT argument must follow the keys.
        let room = argv.len().saturating_sub(first_key);
        let numkeys = usize::try_from(numkeys)
            .ok()
            .filter(|&n| n < room)
            .ok_or(Error::Syntax)?;
        let end = parse_end(argv[first_key + numkeys])?;
        let mut count = None;
        let mut rest = Args::new(argv, first_key + numkeys + 1);
        while let Some(word) = rest.next() {
            if count.is_none() && eq_ic(word, "count") && !rest.is_empty() {
                let n = parse_at_least(rest.next_bytes()?, 1, "count should be greater than 0")?;
                count = Some(usize::try_from(n).unwrap_or(usize::MAX));
            } else {
                return Err(Error::Syntax);
            }
        }
        Ok(MpopArgs {
            keys: &argv[first_key..first_key + numkeys],
            end,
            count: count.unwrap_or(1),
        })
    }
}

/// Pops from the first non-empty list among `args.keys`, replying `[key, [elements]]`.
/// Returns false (nothing written) when every key is missing.
fn mpop_serve(sh: &mut Shard, c: &mut Call, args: &MpopArgs) -> Result<bool> {
    for &key in args.keys {
        let Some(list) = write_list(&mut sh.dbs[c.db], key, c.now_ms)? else {
            continue;
        };
        if list.is_empty() {
            continue;
        }
        c.out.array(2);
        c.out.bulk(key);
        let popped = pop_into(&mut c.out, list, args.end, args.count);
        let empty = list.is_empty();
        after_pop(sh, c.db, key, popped, empty, pop_event(args.end));
        // Logged as a pop of the one list served, as Redis does.
        let mut n = itoa::Buffer::new();
        sh.rewrite(
            c.db,
            &[pop_name(args.end), key, n.format(popped).as_bytes()],
        );
        return Ok(true);
    }
    Ok(false)
}

// ---------------------------------------------------------------------------------------------
// Reads.

/// LLEN key
fn llen(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let len = read_list(sh, c.db, c.argv[1], c.now_ms)?.map_or(0, List::len);
    c.out.int(len as i64);
    Ok(())
}

/// LRANGE key start stop
fn lrange(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let start = parse_int(c.argv[2])?;
    let stop = parse_int(c.argv[3])?;
    let Some(list) = read_list(sh, c.db, c.argv[1], c.now_ms)? else {
        c.out.array(0);
        return Ok(());
    };
    match clip_range(start, stop, list.len()) {
        Some((first, last)) => {
            let n = last - first + 1;
            c.out.array(n);
            list.iter_from(first).take(n).for_each(|e| c.out.bulk(e));
        }
        None => c.out.array(0),
    }
    Ok(())
}

/// LINDEX key index
fn lindex(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let Some(list) = read_list(sh, c.db, c.argv[1], c.now_ms)? else {
        c.out.null();
        return Ok(());
    };
    let index = parse_int(c.argv[2])?;
    match resolve(index, list.len()).and_then(|i| list.get(i)) {
        Some(e) => c.out.bulk(e),
        None => c.out.null(),
    }
    Ok(())
}

/// The options of LPOS.
struct LposOpts {
    /// Which match to start from: 1 is the first; negative counts from the tail.
    rank: i64,
    /// How many matches to answer with (0: all); `None` answers with one, not an array.
    count: Option<u64>,
    /// How many elements to look at (0: all).
    maxlen: u64,
}

impl LposOpts {
    fn parse(c: &Call) -> Result<LposOpts> {
        let mut o = LposOpts {
            rank: 1,
            count: None,
            maxlen: 0,
        };
        let mut a = c.args(3);
        while let Some(word) = a.next() {
            let more = !a.is_empty();
            if eq_ic(word, "rank") && more {
                o.rank = a.next_i64()?;
                if o.rank == 0 {
                    return Err(Error::err("RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"));
                }
            } else if eq_ic(word, "count") && more {
                let n = parse_at_least(a.next_bytes()?, 0, "COUNT can't be negative")?;
                o.count = Some(n as u64);
            } else if eq_ic(word, "maxlen") && more {
                o.maxlen = parse_at_least(a.next_bytes()?, 0, "MAXLEN can't be negative")? as u64;
            } else {
                return Err(Error::Syntax);
            }
        }
        Ok(o)
    }
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
fn lpos(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let o = LposOpts::parse(c)?;
    let Some(list) = read_list(sh, c.db, c.argv[1], c.now_ms)? else {
        match o.count {
            Some(_) => c.out.array(0),
            None => c.out.null(),
        }
        return Ok(());
    };
    let hits = lpos_scan(list, c.argv[2], &o);
    match (o.count, hits.first()) {
        (Some(_), _) => {
            c.out.array(hits.len());
            hits.iter().for_each(|&i| c.out.int(i as i64));
        }
        (None, Some(&i)) => c.out.int(i as i64),
        (None, None) => c.out.null(),
    }
    Ok(())
}

/// The indexes LPOS answers with, as Redis's scan finds them.
fn lpos_scan(list: &List, item: &[u8], o: &LposOpts) -> Vec<usize> {
    // A negative rank scans from the tail. Redis negates it as a C long, so the smallest one
    // stays negative and then every match qualifies; wrapping_neg does the same.
    let (rank, from_tail) = if o.rank < 0 {
        (o.rank.wrapping_neg(), true)
    } else {
        (o.rank, false)
    };
    let elements: Box<dyn Iterator<Item = &[u8]>> = if from_tail {
        Box::new(list.iter_rev())
    } else {
        Box::new(list.iter())
    };
    let scanned = usize::try_from(o.maxlen)
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or(usize::MAX);
    let wanted = match o.count {
        None => 1,
        Some(0) => u64::MAX,
        Some(n) => n,
    };
    let len = list.len();
    let mut matches: i64 = 0;
    let mut hits = Vec::new();
    for (i, e) in elements.take(scanned).enumerate() {
        if e != item {
            continue;
        }
        matches += 1;
        if matches >= rank {
            hits.push(if from_tail { len - 1 - i } else { i });
            if hits.len() as u64 >= wanted {
                break;
            }
        }
    }
    hits
}

// ---------------------------------------------------------------------------------------------
// Edits.

/// LSET key index element
fn lset(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let fill = fill(sh);
    let list = write_list(&mut sh.dbs[c.db], c.argv[1], c.now_ms)?.ok_or(Error::NoSuchKey)?;
    let index = parse_int(c.argv[2])?;
    let set = resolve(index, list.len()).is_some_and(|i| list.set(i, c.argv[3], fill));
    if !set {
        return Err(Error::OutOfRange);
    }
    sh.stats.dirty += 1;
    sh.notify(class::LIST, "lset", c.db, c.argv[1]);
    c.out.ok();
    Ok(())
}

/// LINSERT key BEFORE|AFTER pivot element
fn linsert(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let after = if eq_ic(c.argv[2], "after") {
        true
    } else if eq_ic(c.argv[2], "before") {
        false
    } else {
        return Err(Error::Syntax);
    };
    let fill = fill(sh);
    let Some(list) = write_list(&mut sh.dbs[c.db], c.argv[1], c.now_ms)? else {
        c.out.int(0);
        return Ok(());
    };
    let Some(pivot) = list.position(c.argv[3]) else {
        c.out.int(-1);
        return Ok(());
    };
    list.insert(pivot + usize::from(after), c.argv[4], fill);
    let len = list.len();
    sh.stats.dirty += 1;
    sh.notify(class::LIST, "linsert", c.db, c.argv[1]);
    c.out.int(len as i64);
    Ok(())
}

/// LREM key count element
fn lrem(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let count = parse_int(c.argv[2])?;
    let fill = fill(sh);
    let key = c.argv[1];
    let Some(list) = write_list(&mut sh.dbs[c.db], key, c.now_ms)? else {
        c.out.int(0);
        return Ok(());
    };
    // 0 removes every match; a negative count removes from the tail.
    let limit = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
    let (limit, from) = match count {
        0 => (usize::MAX, End::Head),
        n if n > 0 => (limit, End::Head),
        _ => (limit, End::Tail),
    };
    let removed = list.remove_matching(c.argv[3], limit, from, fill);
    let empty = list.is_empty();
    after_pop(sh, c.db, key, removed, empty, "lrem");
    c.out.int(removed as i64);
    Ok(())
}

/// LTRIM key start stop
fn ltrim(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let start = parse_int(c.argv[2])?;
    let stop = parse_int(c.argv[3])?;
    let key = c.argv[1];
    let Some(list) = write_list(&mut sh.dbs[c.db], key, c.now_ms)? else {
        c.out.ok();
        return Ok(());
    };
    let len = list.len();
    let (front, back) = match clip_range(start, stop, len) {
        Some((first, last)) => (first, len - 1 - last),
        None => (len, 0),
    };
    list.trim(front, back);
    let empty = list.is_empty();
    // Redis fires `ltrim` even when nothing was trimmed.
    sh.notify(class::LIST, "ltrim", c.db, key);
    after_pop(sh, c.db, key, 0, empty, "ltrim");
    sh.stats.dirty += (front + back) as u64;
    c.out.ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Moves between lists.

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT
fn lmove(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let from = parse_end(c.argv[3])?;
    let to = parse_end(c.argv[4])?;
    match move_element(sh, c, from, to)? {
        Some(item) => c.out.bulk(&item),
        None => c.out.null(),
    }
    Ok(())
}

/// RPOPLPUSH source destination
fn rpoplpush(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match move_element(sh, c, End::Tail, End::Head)? {
        Some(item) => c.out.bulk(&item),
        None => c.out.null(),
    }
    Ok(())
}

/// Pops at `from` of the source list and pushes at `to` of the destination list (created if
/// needed), as Redis's `lmoveGenericCommand`: the source's type is checked first, then the
/// destination's, before anything changes. Returns the element moved, or `None` when the
/// source does not exist.
fn move_element(sh: &mut Shard, c: &Call, from: End, to: End) -> Result<Option<Vec<u8>>> {
    let fill = fill(sh);
    let (src, dst) = (c.argv[1], c.argv[2]);
    let db = &mut sh.dbs[c.db];
    let Some(list) = write_list(db, src, c.now_ms)? else {
        return Ok(None);
    };
    if src == dst {
        // One list: rotate it in place (it is never empty in between, so it keeps its TTL).
        let Some(item) = list.pop(from) else {
            return Ok(None);
        };
        list.push(to, &item, fill);
        sh.stats.dirty += 1;
        sh.notify(class::LIST, push_event(to), c.db, dst);
        sh.notify(class::LIST, pop_event(from), c.db, src);
        return Ok(Some(item));
    }
    if let Some(e) = db.get(dst, c.now_ms) {
        e.value.as_list()?;
    }
    let Some(list) = write_list(db, src, c.now_ms)? else {
        return Ok(None);
    };
    let Some(item) = list.pop(from) else {
        return Ok(None);
    };
    let empty = list.is_empty();
    if empty {
        db.remove(src);
    }
    push_or_create(db, dst, to, [item.as_slice()], fill, c.now_ms)?;
    sh.stats.dirty += 1;
    // Redis pushes first, then pops (and deletes an emptied source).
    sh.notify(class::LIST, push_event(to), c.db, dst);
    sh.notify(class::LIST, pop_event(from), c.db, src);
    if empty {
        sh.notify(class::GENERIC, "del", c.db, src);
    }
    Ok(Some(item))
}

// ---------------------------------------------------------------------------------------------
// Blocking commands.

/// BLPOP key [key ...] timeout
fn blpop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    bpop(sh, c, End::Head)
}

/// BRPOP key [key ...] timeout
fn brpop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    bpop(sh, c, End::Tail)
}

/// Pops one element at `end` of the first non-empty list, replying `[key, element]`; blocks
/// when there is none. A key of another type met before a served one is an error.
fn bpop(sh: &mut Shard, c: &mut Call, end: End) -> Result<()> {
    let last = c.argv.len() - 1;
    let timeout_ms = parse_timeout(c.argv[last])?;
    for &key in &c.argv[1..last] {
        let Some(list) = write_list(&mut sh.dbs[c.db], key, c.now_ms)? else {
            continue;
        };
        let Some(item) = list.pop(end) else {
            continue;
        };
        let empty = list.is_empty();
        c.out.array(2);
        c.out.bulk(key);
        c.out.bulk(&item);
        after_pop(sh, c.db, key, 1, empty, pop_event(end));
        // Served at once or after blocking, the effect is a plain pop (as Redis logs it).
        sh.rewrite(c.db, &[pop_name(end), key]);
        return Ok(());
    }
    Err(Error::Blocked(timeout_ms))
}

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout
fn blmove(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let from = parse_end(c.argv[3])?;
    let to = parse_end(c.argv[4])?;
    let timeout_ms = parse_timeout(c.argv[5])?;
    bmove(sh, c, from, to, timeout_ms)?;
    // Logged as the LMOVE it came to, as Redis does.
    sh.rewrite(
        c.db,
        &[b"LMOVE", c.argv[1], c.argv[2], c.argv[3], c.argv[4]],
    );
    Ok(())
}

/// BRPOPLPUSH source destination timeout
fn brpoplpush(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let timeout_ms = parse_timeout(c.argv[3])?;
    bmove(sh, c, End::Tail, End::Head, timeout_ms)?;
    sh.rewrite(c.db, &[b"RPOPLPUSH", c.argv[1], c.argv[2]]);
    Ok(())
}

/// Moves an element as LMOVE does, or blocks while the source is missing (whatever the
/// destination holds, as in Redis).
fn bmove(sh: &mut Shard, c: &mut Call, from: End, to: End, timeout_ms: u64) -> Result<()> {
    match move_element(sh, c, from, to)? {
        Some(item) => {
            c.out.bulk(&item);
            Ok(())
        }
        None => Err(Error::Blocked(timeout_ms)),
    }
}

/// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]
fn blmpop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let args = MpopArgs::parse(c.argv, 2)?;
    let timeout_ms = parse_timeout(c.argv[1])?;
    if mpop_serve(sh, c, &args)? {
        Ok(())
    } else {
        Err(Error::Blocked(timeout_ms))
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::lookup;
    use crate::resp::Proto;
    use crate::shard::testing::TestShard;
    use crate::types::Value;
    use crate::Error;

    /// A bulk string reply.
    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    /// An array reply of bulk strings.
    fn bulks(items: &[&str]) -> String {
        let mut out = format!("*{}\r\n", items.len());
        items.iter().for_each(|s| out.push_str(&bulk(s)));
        out
    }

    /// Runs a command and returns the error it fails with (replies are dropped).
    fn error_of(t: &mut TestShard, line: &str) -> Option<Error> {
        let argv: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
        let l = lookup(&argv).ok()?;
        let mut out = Vec::new();
        let r = t
            .shard
            .execute(l, &argv, t.db, t.now_ms * 1000, t.proto, &mut out);
        if r.is_err() {
            assert!(out.is_empty(), "{line}: wrote {out:?} and failed");
        }
        r.err()
    }

    /// Whether `key`'s list has outgrown one listpack.
    fn is_quicklist(t: &mut TestShard, key: &str) -> bool {
        match t.shard.dbs[0]
            .get(key.as_bytes(), t.now_ms)
            .map(|e| &e.value)
        {
            Some(Value::List(l)) => l.is_quicklist(),
            _ => panic!("{key} is not a list"),
        }
    }

    const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    #[test]
    fn push_and_range() {
        let mut t = TestShard::new();
        assert_eq!(t.run("RPUSH l b c"), ":2\r\n");
        assert_eq!(t.run("LPUSH l a z"), ":4\r\n");
        assert_eq!(t.run("LRANGE l 0 -1"), bulks(&["z", "a", "b", "c"]));
        assert_eq!(t.run("LRANGE l 1 2"), bulks(&["a", "b"]));
        assert_eq!(t.run("LRANGE l -2 100"), bulks(&["b", "c"]));
        assert_eq!(t.run("LRANGE l -100 0"), bulks(&["z"]));
        assert_eq!(t.run("LRANGE l 3 1"), "*0\r\n");
        assert_eq!(t.run("LRANGE l 4 10"), "*0\r\n");
        assert_eq!(
            t.run("LRANGE l -9223372036854775808 9223372036854775807"),
            bulks(&["z", "a", "b", "c"])
        );
        assert_eq!(t.run("LRANGE nokey 0 -1"), "*0\r\n");
        assert_eq!(
            t.run("LRANGE l a 1"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("LLEN l"), ":4\r\n");
        assert_eq!(t.run("LLEN nokey"), ":0\r\n");
        assert_eq!(t.run("LPUSHX nokey a"), ":0\r\n");
        assert_eq!(t.run("RPUSHX nokey a"), ":0\r\n");
        assert_eq!(t.run("EXISTS nokey"), ":0\r\n");
        assert_eq!(t.run("RPUSHX l d e"), ":6\r\n");
        assert_eq!(t.run("LPUSHX l y"), ":7\r\n");
        assert_eq!(t.run("TYPE l"), "+list\r\n");
        assert_eq!(t.run("OBJECT ENCODING l"), bulk("quicklist"));
        t.run("SET s x");
        for cmd in [
            "LPUSH s a",
            "RPUSHX s a",
            "LLEN s",
            "LRANGE s 0 1",
            "LPOP s",
        ] {
            assert_eq!(t.run(cmd), WRONGTYPE, "{cmd}");
        }
        assert_eq!(t.run("GET l"), WRONGTYPE);
        assert_eq!(
            t.run("LPUSH l"),
            "-ERR wrong number of arguments for 'lpush' command\r\n"
        );
    }

    #[test]
    fn pops_and_their_reply_shapes() {
        let mut t = TestShard::new();
        assert_eq!(t.run("LPOP l"), "$-1\r\n");
        assert_eq!(t.run("LPOP l 0"), "*-1\r\n");
        assert_eq!(t.run("RPOP l 3"), "*-1\r\n");
        let range_err = "-ERR value is out of range, must be positive\r\n";
        assert_eq!(t.run("LPOP l -1"), range_err);
        assert_eq!(t.run("LPOP l x"), range_err);
        assert_eq!(
            t.run("LPOP l 1 2"),
            "-ERR wrong number of arguments for 'lpop' command\r\n"
        );
        t.run("RPUSH l a b c d e");
        assert_eq!(t.run("LPOP l 0"), "*0\r\n");
        assert_eq!(t.run("LPOP l"), bulk("a"));
        assert_eq!(t.run("RPOP l"), bulk("e"));
        assert_eq!(t.run("RPOP l 2"), bulks(&["d", "c"]));
        assert_eq!(t.run("LPOP l 9223372036854775807"), bulks(&["b"]));
        assert_eq!(t.run("EXISTS l"), ":0\r\n");
        t.proto = Proto::Resp3;
        assert_eq!(t.run("LPOP l"), "_\r\n");
        assert_eq!(t.run("LPOP l 2"), "_\r\n");
        t.run("SET s x");
        assert_eq!(t.run("LPOP s x"), range_err);
        assert_eq!(t.run("LPOP s 1"), WRONGTYPE);
    }

    #[test]
    fn index_set_insert() {
        let mut t = TestShard::new();
        assert_eq!(t.run("LINDEX l 0"), "$-1\r\n");
        assert_eq!(t.run("LINDEX l x"), "$-1\r\n");
        assert_eq!(t.run("LSET l 0 x"), "-ERR no such key\r\n");
        assert_eq!(t.run("LINSERT l BEFORE a b"), ":0\r\n");
        assert_eq!(t.run("LINSERT l MIDDLE a b"), "-ERR syntax error\r\n");
        t.run("RPUSH l a b c");
        assert_eq!(t.run("LINDEX l -1"), bulk("c"));
        assert_eq!(t.run("LINDEX l 1"), bulk("b"));
        assert_eq!(t.run("LINDEX l 3"), "$-1\r\n");
        assert_eq!(t.run("LINDEX l -4"), "$-1\r\n");
        assert_eq!(t.run("LINDEX l -9223372036854775808"), "$-1\r\n");
        assert_eq!(
            t.run("LINDEX l x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("LSET l -1 z"), "+OK\r\n");
        assert_eq!(t.run("LSET l 3 z"), "-ERR index out of range\r\n");
        assert_eq!(
            t.run("LSET l -9223372036854775808 z"),
            "-ERR index out of range\r\n"
        );
        assert_eq!(
            t.run("LSET l x z"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("LINSERT l BEFORE a A"), ":4\r\n");
        assert_eq!(t.run("LINSERT l after z Z"), ":5\r\n");
        assert_eq!(t.run("LINSERT l after nope Z"), ":-1\r\n");
        assert_eq!(t.run("LRANGE l 0 -1"), bulks(&["A", "a", "b", "z", "Z"]));
        t.run("SET s x");
        assert_eq!(t.run("LINDEX s x"), WRONGTYPE);
        assert_eq!(t.run("LSET s x z"), WRONGTYPE);
        assert_eq!(t.run("LINSERT s before a b"), WRONGTYPE);
        assert_eq!(t.run("LINSERT s middle a b"), "-ERR syntax error\r\n");
    }

    #[test]
    fn rem_and_trim() {
        let mut t = TestShard::new();
        assert_eq!(t.run("LREM l 0 a"), ":0\r\n");
        assert_eq!(t.run("LTRIM l 0 1"), "+OK\r\n");
        t.run("RPUSH l a b a c a d a");
        assert_eq!(t.run("LREM l 2 a"), ":2\r\n");
        assert_eq!(t.run("LRANGE l 0 -1"), bulks(&["b", "c", "a", "d", "a"]));
        assert_eq!(t.run("LREM l -1 a"), ":1\r\n");
        assert_eq!(t.run("LRANGE l 0 -1"), bulks(&["b", "c", "a", "d"]));
        t.run("RPUSH l a a");
        assert_eq!(t.run("LREM l -9223372036854775808 a"), ":3\r\n");
        assert_eq!(t.run("LREM l 0 zz"), ":0\r\n");
        assert_eq!(t.run("LTRIM l 1 -1"), "+OK\r\n");
        assert_eq!(t.run("LRANGE l 0 -1"), bulks(&["c", "d"]));
        assert_eq!(t.run("LTRIM l 0 100"), "+OK\r\n");
        assert_eq!(t.run("LLEN l"), ":2\r\n");
        assert_eq!(t.run("LTRIM l 2 1"), "+OK\r\n");
        assert_eq!(t.run("EXISTS l"), ":0\r\n");
        t.run("RPUSH l a");
        assert_eq!(t.run("LREM l 0 a"), ":1\r\n");
        assert_eq!(t.run("EXISTS l"), ":0\r\n");
        t.run("SET s x");
        assert_eq!(
            t.run("LREM s x a"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("LREM s 1 a"), WRONGTYPE);
        assert_eq!(
            t.run("LTRIM s x 1"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("LTRIM s 0 1"), WRONGTYPE);
    }

    #[test]
    fn lpos() {
        let mut t = TestShard::new();
        t.run("RPUSH l a b c a b c a");
        assert_eq!(t.run("LPOS l a"), ":0\r\n");
        assert_eq!(t.run("LPOS l a RANK 2"), ":3\r\n");
        assert_eq!(t.run("LPOS l a RANK -1"), ":6\r\n");
        assert_eq!(t.run("LPOS l a RANK -2 COUNT 0"), "*2\r\n:3\r\n:0\r\n");
        assert_eq!(t.run("LPOS l a COUNT 0"), "*3\r\n:0\r\n:3\r\n:6\r\n");
        assert_eq!(t.run("LPOS l a COUNT 2 RANK 2"), "*2\r\n:3\r\n:6\r\n");
        assert_eq!(t.run("LPOS l a RANK -9223372036854775808"), ":6\r\n");
        assert_eq!(t.run("LPOS l a RANK 9223372036854775807"), "$-1\r\n");
        assert_eq!(t.run("LPOS l a MAXLEN 1 COUNT 0"), "*1\r\n:0\r\n");
        assert_eq!(t.run("LPOS l a MAXLEN 3 RANK -1 COUNT 0"), "*1\r\n:6\r\n");
        assert_eq!(
            t.run("LPOS l a COUNT 1 COUNT 0"),
            "*3\r\n:0\r\n:3\r\n:6\r\n"
        );
        assert_eq!(t.run("LPOS l z"), "$-1\r\n");
        assert_eq!(t.run("LPOS l z COUNT 1"), "*0\r\n");
        assert_eq!(t.run("LPOS nokey z"), "$-1\r\n");
        assert_eq!(t.run("LPOS nokey z COUNT 1"), "*0\r\n");
        let rank_zero = "-ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list\r\n";
        assert_eq!(t.run("LPOS nokey z RANK 0"), rank_zero);
        assert_eq!(
            t.run("LPOS l a RANK x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t.run("LPOS l a COUNT -1"),
            "-ERR COUNT can't be negative\r\n"
        );
        assert_eq!(
            t.run("LPOS l a COUNT x"),
            "-ERR COUNT can't be negative\r\n"
        );
        assert_eq!(
            t.run("LPOS l a MAXLEN x"),
            "-ERR MAXLEN can't be negative\r\n"
        );
        assert_eq!(t.run("LPOS l a COUNT"), "-ERR syntax error\r\n");
        assert_eq!(t.run("LPOS l a FOO 1"), "-ERR syntax error\r\n");
        t.run("SET s x");
        assert_eq!(t.run("LPOS s a"), WRONGTYPE);
        assert_eq!(t.run("LPOS s a RANK 0"), rank_zero);
    }

    #[test]
    fn moves() {
        let mut t = TestShard::new();
        assert_eq!(t.run("LMOVE src dst LEFT RIGHT"), "$-1\r\n");
        assert_eq!(t.run("RPOPLPUSH src dst"), "$-1\r\n");
        assert_eq!(t.run("LMOVE src dst LEFT MIDDLE"), "-ERR syntax error\r\n");
        t.run("RPUSH src a b c");
        assert_eq!(t.run("LMOVE src dst LEFT RIGHT"), bulk("a"));
        assert_eq!(t.run("LMOVE src dst right left"), bulk("c"));
        assert_eq!(t.run("RPOPLPUSH src dst"), bulk("b"));
        assert_eq!(t.run("EXISTS src"), ":0\r\n");
        assert_eq!(t.run("LRANGE dst 0 -1"), bulks(&["b", "c", "a"]));
        // The same list: a rotation that keeps the key (and its TTL) even with one element.
        assert_eq!(t.run("LMOVE dst dst LEFT RIGHT"), bulk("b"));
        assert_eq!(t.run("LRANGE dst 0 -1"), bulks(&["c", "a", "b"]));
        t.run("RPUSH one x");
        t.run("PEXPIRE one 100000");
        assert_eq!(t.run("RPOPLPUSH one one"), bulk("x"));
        assert_eq!(t.run("LRANGE one 0 -1"), bulks(&["x"]));
        assert_ne!(t.run("PTTL one"), ":-1\r\n");
        t.run("SET s x");
        assert_eq!(t.run("LMOVE s dst LEFT LEFT"), WRONGTYPE);
        assert_eq!(t.run("LMOVE dst s LEFT LEFT"), WRONGTYPE);
        assert_eq!(t.run("LRANGE dst 0 -1"), bulks(&["c", "a", "b"]));
        assert_eq!(t.run("LMOVE nokey s LEFT LEFT"), "$-1\r\n");
    }

    #[test]
    fn lmpop() {
        let mut t = TestShard::new();
        t.run("RPUSH l a b c d e");
        t.run("SET s x");
        let numkeys = "-ERR numkeys should be greater than 0\r\n";
        let count = "-ERR count should be greater than 0\r\n";
        let syntax = "-ERR syntax error\r\n";
        for (cmd, want) in [
            ("LMPOP 0 l LEFT", numkeys),
            ("LMPOP -1 l LEFT", numkeys),
            ("LMPOP x l LEFT", numkeys),
            ("LMPOP 2 l LEFT", syntax),
            ("LMPOP 9223372036854775807 l LEFT", syntax),
            ("LMPOP 1 l MIDDLE", syntax),
            ("LMPOP 1 l LEFT COUNT 0", count),
            ("LMPOP 1 l LEFT COUNT x", count),
            ("LMPOP 1 l LEFT COUNT", syntax),
            ("LMPOP 1 l LEFT COUNT 1 COUNT 1", syntax),
            ("LMPOP 1 l LEFT FOO", syntax),
            ("LMPOP 2 s l LEFT", WRONGTYPE),
            ("LMPOP 2 nokey s LEFT", WRONGTYPE),
        ] {
            assert_eq!(t.run(cmd), want, "{cmd}");
        }
        assert_eq!(
            t.run("LMPOP 1 l LEFT COUNT 2"),
            "*2\r\n$1\r\nl\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        assert_eq!(
            t.run("LMPOP 2 nokey l RIGHT"),
            "*2\r\n$1\r\nl\r\n*1\r\n$1\r\ne\r\n"
        );
        assert_eq!(
            t.run("LMPOP 2 nokey l right COUNT 10"),
            "*2\r\n$1\r\nl\r\n*2\r\n$1\r\nd\r\n$1\r\nc\r\n"
        );
        assert_eq!(t.run("EXISTS l"), ":0\r\n");
        assert_eq!(t.run("LMPOP 2 nokey l RIGHT"), "*-1\r\n");
        // The first key with data is served even if a later one has the wrong type.
        t.run("RPUSH l a");
        assert_eq!(
            t.run("LMPOP 2 l s LEFT"),
            "*2\r\n$1\r\nl\r\n*1\r\n$1\r\na\r\n"
        );
        t.proto = Proto::Resp3;
        assert_eq!(t.run("LMPOP 1 nokey LEFT"), "_\r\n");
    }

    #[test]
    fn blocking_commands_serve_or_block() {
        let mut t = TestShard::new();
        t.run("RPUSH l a b c d e f");
        t.run("SET s x");
        assert_eq!(t.run("BLPOP nokey l s 0"), bulks(&["l", "a"]));
        assert_eq!(t.run("BRPOP nokey l 0.5"), bulks(&["l", "f"]));
        assert_eq!(t.run("BLPOP nokey s l 0"), WRONGTYPE);
        assert_eq!(t.run("BLMOVE l m LEFT RIGHT 0"), bulk("b"));
        assert_eq!(t.run("BRPOPLPUSH l m 0"), bulk("e"));
        assert_eq!(t.run("LRANGE m 0 -1"), bulks(&["e", "b"]));
        assert_eq!(
            t.run("BLMPOP 0 2 nokey l RIGHT COUNT 5"),
            "*2\r\n$1\r\nl\r\n*2\r\n$1\r\nd\r\n$1\r\nc\r\n"
        );
        assert_eq!(t.run("EXISTS l"), ":0\r\n");
        assert_eq!(t.run("BLMOVE s m LEFT LEFT 0"), WRONGTYPE);
        assert_eq!(t.run("BLMOVE m s LEFT LEFT 0"), WRONGTYPE);
        assert_eq!(t.run("BLMPOP 0 2 s m LEFT"), WRONGTYPE);
        // Nothing to serve: blocked with the timeout in milliseconds, nothing written.
        for (cmd, ms) in [
            ("BLPOP nokey 0", 0),
            ("BRPOP a b 1.5", 1500),
            ("BLPOP a 0.001", 1),
            ("BLPOP a 0.0015", 2),
            ("BLPOP a 0.0001", 1),
            ("BLPOP a 1e-4940", 1),
            ("BLPOP a -0.0001", 0),
            ("BLPOP a -0.001", 0),
            ("BLPOP a 9223372036854775.807", 9_223_372_036_854_775_807),
            ("BLPOP a 0x10", 16000),
            ("BLPOP a 9223372036854775", 9_223_372_036_854_775_000),
            ("BLMOVE nokey m LEFT LEFT 2", 2000),
            ("BLMOVE nokey s LEFT LEFT 2", 2000),
            ("BRPOPLPUSH nokey m 3", 3000),
            ("BLMPOP 4 1 nokey LEFT", 4000),
        ] {
            assert_eq!(error_of(&mut t, cmd), Some(Error::Blocked(ms)), "{cmd}");
        }
        let not_float = "-ERR timeout is not a float or out of range\r\n";
        let negative = "-ERR timeout is negative\r\n";
        for (cmd, want) in [
            ("BLPOP l x", not_float),
            ("BLPOP l nan", not_float),
            ("BLPOP l 1e5000", not_float),
            ("BLPOP l 1e-5000", not_float),
            ("BLPOP l -1", negative),
            ("BLPOP l inf", negative),
            ("BLPOP l -inf", negative),
            ("BLPOP l 1e400", negative),
            ("BLPOP l 9223372036854775807", negative),
            ("BLPOP l -0.0011", negative),
            ("BLMOVE l m MIDDLE LEFT 0", "-ERR syntax error\r\n"),
            ("BLMOVE l m LEFT LEFT x", not_float),
            ("BRPOPLPUSH l m x", not_float),
            ("BLMPOP x 1 l LEFT", not_float),
            (
                "BLMPOP x 0 l LEFT",
                "-ERR numkeys should be greater than 0\r\n",
            ),
            (
                "BLMPOP 0 1 l LEFT COUNT 0",
                "-ERR count should be greater than 0\r\n",
            ),
            ("BLMPOP 0 5 l LEFT", "-ERR syntax error\r\n"),
            ("BLMPOP -1 1 l LEFT", negative),
        ] {
            assert_eq!(t.run(cmd), want, "{cmd}");
        }
        t.proto = Proto::Resp3;
        t.run("RPUSH l a");
        assert_eq!(t.run("BLPOP l 0"), bulks(&["l", "a"]));
    }

    #[test]
    fn conversion_to_quicklist_follows_list_max_listpack_size() {
        let mut t = TestShard::new();
        let item = "x".repeat(100);
        for _ in 0..81 {
            t.run(&format!("RPUSH l {item}"));
        }
        assert!(!is_quicklist(&mut t, "l"));
        assert_eq!(t.run("OBJECT ENCODING l"), bulk("quicklist"));
        t.run(&format!("RPUSH l {item}"));
        assert!(is_quicklist(&mut t, "l"));
        assert_eq!(t.run("OBJECT ENCODING l"), bulk("quicklist"));
        t.run("LTRIM l 0 0");
        assert!(is_quicklist(&mut t, "l"), "no conversion back");
        // A positive setting counts entries.
        t.shard.config.list_max_listpack_size = 3;
        t.run("RPUSH c a b c");
        assert!(!is_quicklist(&mut t, "c"));
        t.run("LINSERT c BEFORE b x");
        assert!(is_quicklist(&mut t, "c"));
        assert_eq!(t.run("LRANGE c 0 -1"), bulks(&["a", "x", "b", "c"]));
        t.run("RPUSH d a b c");
        t.run(&format!("LSET d 1 {}", "y".repeat(9000)));
        assert!(is_quicklist(&mut t, "d"));
        assert_eq!(t.run("LINDEX d 2"), bulk("c"));
    }

    #[test]
    fn long_lists_across_many_nodes() {
        let mut t = TestShard::new();
        t.shard.config.list_max_listpack_size = 4;
        for i in 0..100 {
            t.run(&format!("RPUSH l {i}"));
        }
        assert_eq!(t.run("LINDEX l 57"), bulk("57"));
        assert_eq!(t.run("LINDEX l -1"), bulk("99"));
        assert_eq!(t.run("LRANGE l 49 51"), bulks(&["49", "50", "51"]));
        assert_eq!(t.run("LSET l 50 fifty"), "+OK\r\n");
        assert_eq!(t.run("LINSERT l AFTER fifty 50.5"), ":101\r\n");
        assert_eq!(t.run("LPOS l 50.5"), ":51\r\n");
        assert_eq!(t.run("LPOS l 7 RANK -1"), ":7\r\n");
        assert_eq!(t.run("LREM l 0 fifty"), ":1\r\n");
        assert_eq!(t.run("LTRIM l 10 -11"), "+OK\r\n");
        assert_eq!(t.run("LLEN l"), ":80\r\n");
        assert_eq!(t.run("LPOP l 2"), bulks(&["10", "11"]));
        assert_eq!(t.run("RPOP l 2"), bulks(&["89", "88"]));
    }

    #[test]
    fn statistics() {
        let mut t = TestShard::new();
        t.run("RPUSH l a b c");
        assert_eq!(t.shard.stats.dirty, 3);
        t.run("LPOP l 2");
        assert_eq!(t.shard.stats.dirty, 5);
        t.run("LPUSH nokey");
        t.run("LREM l 0 nope");
        t.run("LTRIM l 0 -1");
        t.run("LSET l 5 x");
        assert_eq!(t.shard.stats.dirty, 5);
        t.run("LSET l 0 x");
        t.run("LINSERT l BEFORE x y");
        t.run("LMOVE l m LEFT LEFT");
        assert_eq!(t.shard.stats.dirty, 8);
        // Writes do not count hits or misses; LLEN, LRANGE, LINDEX and LPOS do.
        let s = &t.shard.stats;
        assert_eq!((s.keyspace_hits, s.keyspace_misses), (0, 0));
        for cmd in [
            "LLEN l",
            "LRANGE l 0 1",
            "LINDEX l 0",
            "LPOS l x",
            "LLEN nokey",
        ] {
            t.run(cmd);
        }
        let s = &t.shard.stats;
        assert_eq!((s.keyspace_hits, s.keyspace_misses), (4, 1));
    }

    #[test]
    fn small_lists_stay_compact() {
        let mut t = TestShard::new();
        for i in 0..100 {
            t.run(&format!("RPUSH l element{i:03}"));
        }
        let Some(Value::List(l)) = t.shard.dbs[0].get(b"l", t.now_ms).map(|e| &e.value) else {
            panic!("no list");
        };
        // 100 elements of 10 bytes pack into 1100 bytes, in one allocation.
        assert!(l.heap_bytes() <= 1100 + 1100 / 4 + 16, "{}", l.heap_bytes());
    }
}
