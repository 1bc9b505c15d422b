//! Sorted-set commands (Redis's `t_zset.c`): adds with their NX/XX/GT/LT/CH/INCR rules, scores
//! and ranks, ranges by rank, score and lex (read, stored, removed), pops (plain, multi-key and
//! blocking), random members, union/intersection/difference and ZSCAN, with Redis 7.0's
//! replies (RESP2 and RESP3 shapes), errors, encodings (see [`crate::types::zset`]) and
//! statistics.
//!
//! Reads that Redis does with `lookupKeyRead` count a keyspace hit or miss: ZCARD, ZCOUNT,
//! ZLEXCOUNT, ZSCORE, ZMSCORE, ZRANK, ZREVRANK, the ZRANGE family (ZRANGESTORE's source too),
//! ZRANDMEMBER, ZSCAN and every source of ZUNION/ZINTER/ZDIFF (their STORE forms and ZINTERCARD
//! included). Writes count in `dirty` as Redis counts them: one per member added, updated,
//! removed or popped, one per stored or deleted destination. A sorted set left empty is
//! deleted. The multi-key commands run on one shard (`Split::Gather`), so everything here is
//! local; the blocking pops return [`Error::Blocked`] when there is nothing to serve, as the
//! list ones do.

use super::keys::{parse_cursor, pattern_allows};
use super::list::parse_timeout;
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
use crate::types::zset::{Added, LexBound, LexRange, Limits, ScoreRange, ZSet};
use crate::types::{SmallBytes, Value};
use crate::util::{eq_ic, fmt_d2string, parse_f64, parse_f64_lenient, parse_i64};
use crate::{Error, Result, Shard};
use std::cmp::Ordering;

const ZSET: CommandSpec = CommandSpec {
    group: Group::SortedSet,
    acl: acl::SORTEDSET,
    ..CommandSpec::DEFAULT
};

const KEY: Arg = Arg::key("key", 0);
const MEMBER: Arg = Arg::new("member", ArgType::String);
const TIMEOUT: Arg = Arg::new("timeout", ArgType::Double);
const LIMIT_ARG: Arg = Arg::block(
    "offset_count",
    &[
        Arg::new("offset", ArgType::Integer),
        Arg::new("count", ArgType::Integer),
    ],
)
.with_token("LIMIT")
.optional();
const WITHSCORES: Arg = Arg::token("withscores", "WITHSCORES").optional();
const MINMAX: &[Arg] = &[Arg::token("min", "MIN"), Arg::token("max", "MAX")];
const SORTBY: &[Arg] = &[
    Arg::token("byscore", "BYSCORE"),
    Arg::token("bylex", "BYLEX"),
];
const AGGREGATE: Arg = Arg::oneof(
    "aggregate",
    &[
        Arg::token("sum", "SUM"),
        Arg::token("min", "MIN"),
        Arg::token("max", "MAX"),
    ],
)
.with_token("AGGREGATE")
.optional();
const WEIGHTS: Arg = Arg::new("weight", ArgType::Integer)
    .with_token("WEIGHTS")
    .optional()
    .multiple();
const NUMKEYS: Arg = Arg::new("numkeys", ArgType::Integer);

const RANGE_COMPLEXITY: &str = "O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements being returned. If M is constant (e.g. always asking for the first 10 elements with LIMIT), you can consider it O(log(N)).";
const REMRANGE_COMPLEXITY: &str = "O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements removed by the operation.";
const POP_COMPLEXITY: &str = "O(log(N)*M) with N being the number of elements in the sorted set, and M being the number of elements popped.";
const MPOP_COMPLEXITY: &str = "O(K) + O(M*log(N)) where K is the number of provided keys, N being the number of elements in the sorted set, and M being the number of elements popped.";
const UNION_COMPLEXITY: &str = "O(N)+O(M*log(M)) with N being the sum of the sizes of the input sorted sets, and M being the number of elements in the resulting sorted set.";
const INTER_COMPLEXITY: &str = "O(N*K)+O(M*log(M)) worst case with N being the smallest input sorted set, K being the number of input sorted sets and M being the number of elements in the resulting sorted set.";
const DIFF_COMPLEXITY: &str = "O(L + (N-K)log(N)) worst case where L is the total number of elements in all the sets, N is the size of the first set, and K is the size of the result set.";
const TIMEOUT_HISTORY: &[(&str, &str)] = &[(
    "6.0.0",
    "`timeout` is interpreted as a double instead of an integer.",
)];

/// Key flags of a read that returns values, and of pops.
const READ: u32 = kflag::RO | kflag::ACCESS;
const POPPED: u32 = kflag::RW | kflag::ACCESS | kflag::DELETE;

/// Keys counted by a numkeys argument at `at` (ZUNION, ZMPOP, …).
const fn keynum(at: i32, flags: u32) -> KeySpec {
    KeySpec {
        notes: None,
        flags,
        begin: BeginSearch::Index(at),
        find: FindKeys::Keynum {
            keynumidx: 0,
            firstkey: 1,
            step: 1,
        },
    }
}

/// The key specs of the STORE forms: the destination, then the numkeys-counted sources.
const STORE_KEYS: &[KeySpec] = &[KeySpec::one(1, kflag::OW | kflag::UPDATE), keynum(2, READ)];

const READ_KEY: &[KeySpec] = &[KeySpec::one(1, READ)];
const REMOVE_KEY: &[KeySpec] = &[KeySpec::one(1, kflag::RW | kflag::DELETE)];

const fn read_cmd(name: &'static str, arity: i32, summary: &'static str) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags: flag::READONLY,
        keys: READ_KEY,
        summary,
        ..ZSET
    }
}

/// A deprecated range command (ZRANGEBYSCORE & co.).
const fn range_cmd(
    name: &'static str,
    since: &'static str,
    replaced_by: &'static str,
    args: &'static [Arg],
) -> CommandSpec {
    CommandSpec {
        since,
        complexity: RANGE_COMPLEXITY,
        deprecated: Some(("6.2.0", replaced_by)),
        args,
        ..read_cmd(name, -4, "")
    }
}

const fn remrange_cmd(
    name: &'static str,
    since: &'static str,
    args: &'static [Arg],
) -> CommandSpec {
    CommandSpec {
        name,
        arity: 4,
        flags: flag::WRITE,
        keys: REMOVE_KEY,
        since,
        complexity: REMRANGE_COMPLEXITY,
        args,
        ..ZSET
    }
}

const MINMAX_DOUBLE: &[Arg] = &[
    KEY,
    Arg::new("min", ArgType::Double),
    Arg::new("max", ArgType::Double),
];
const MINMAX_STRING: &[Arg] = &[
    KEY,
    Arg::new("min", ArgType::String),
    Arg::new("max", ArgType::String),
];

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "zadd",
        arity: -4,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::UPDATE)],
        run: Some(zadd),
        summary: "Adds members with scores to a sorted set, or changes the scores of members already there, creating the set if needed.",
        since: "1.2.0",
        complexity: "O(log(N)) for each item added, where N is the number of elements in the sorted set.",
        history: &[
            ("2.4.0", "Accepts multiple elements."),
            ("3.0.2", "Added the `XX`, `NX`, `CH` and `INCR` options."),
            ("6.2.0", "Added the `GT` and `LT` options."),
        ],
        args: &[
            KEY,
            Arg::oneof("condition", &[Arg::token("nx", "NX"), Arg::token("xx", "XX")])
                .since("3.0.2")
                .optional(),
            Arg::oneof("comparison", &[Arg::token("gt", "GT"), Arg::token("lt", "LT")])
                .since("6.2.0")
                .optional(),
            Arg::token("change", "CH").since("3.0.2").optional(),
            Arg::token("increment", "INCR").since("3.0.2").optional(),
            Arg::block(
                "score_member",
                &[Arg::new("score", ArgType::Double), MEMBER],
            )
            .multiple(),
        ],
        ..ZSET
    },
    CommandSpec {
        name: "zincrby",
        arity: 4,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::UPDATE)],
        run: Some(zincrby),
        summary: "Adds an increment to a member's score in a sorted set (a new member starts at 0) and answers with the new score.",
        since: "1.2.0",
        complexity: "O(log(N)) where N is the number of elements in the sorted set.",
        args: &[KEY, Arg::new("increment", ArgType::Integer), MEMBER],
        ..ZSET
    },
    CommandSpec {
        name: "zrem",
        arity: -3,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::DELETE)],
        run: Some(zrem),
        summary: "Removes members from a sorted set, deleting the set when it empties.",
        since: "1.2.0",
        complexity: "O(M*log(N)) with N being the number of elements in the sorted set and M the number of elements to be removed.",
        history: &[("2.4.0", "Accepts multiple elements.")],
        args: &[KEY, MEMBER.multiple()],
        ..ZSET
    },
    CommandSpec {
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO)],
        run: Some(zcard),
        since: "1.2.0",
        args: &[KEY],
        ..read_cmd("zcard", 2, "Answers with the number of members of a sorted set.")
    },
    CommandSpec {
        flags: flag::READONLY | flag::FAST,
        run: Some(zcount),
        since: "2.0.0",
        complexity: "O(log(N)) with N being the number of elements in the sorted set.",
        args: MINMAX_DOUBLE,
        ..read_cmd("zcount", 4, "Counts the members of a sorted set whose scores fall within a range.")
    },
    CommandSpec {
        flags: flag::READONLY | flag::FAST,
        run: Some(zlexcount),
        since: "2.8.9",
        complexity: "O(log(N)) with N being the number of elements in the sorted set.",
        args: MINMAX_STRING,
        ..read_cmd("zlexcount", 4, "Counts the members of a sorted set that fall within a range of strings (for sets whose scores are all equal).")
    },
    CommandSpec {
        flags: flag::READONLY | flag::FAST,
        run: Some(zscore),
        since: "1.2.0",
        args: &[KEY, MEMBER],
        ..read_cmd("zscore", 3, "Answers with the score of a member of a sorted set.")
    },
    CommandSpec {
        flags: flag::READONLY | flag::FAST,
        run: Some(zmscore),
        since: "6.2.0",
        complexity: "O(N) where N is the number of members being requested.",
        args: &[KEY, MEMBER.multiple()],
        ..read_cmd("zmscore", -3, "Answers with the scores of several members of a sorted set.")
    },
    CommandSpec {
        flags: flag::READONLY | flag::FAST,
        run: Some(zrank),
        since: "2.0.0",
        complexity: "O(log(N))",
        args: &[KEY, MEMBER],
        ..read_cmd("zrank", 3, "Answers with the position of a member in a sorted set, counting from the lowest score.")
    },
    CommandSpec {
        flags: flag::READONLY | flag::FAST,
        run: Some(zrevrank),
        since: "2.0.0",
        complexity: "O(log(N))",
        args: &[KEY, MEMBER],
        ..read_cmd("zrevrank", 3, "Answers with the position of a member in a sorted set, counting from the highest score.")
    },
    CommandSpec {
        run: Some(zrange),
        since: "1.2.0",
        complexity: "O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements returned.",
        history: &[("6.2.0", "Added the `REV`, `BYSCORE`, `BYLEX` and `LIMIT` options.")],
        args: &[
            KEY,
            Arg::new("start", ArgType::String),
            Arg::new("stop", ArgType::String),
            Arg::oneof("sortby", SORTBY).since("6.2.0").optional(),
            Arg::token("rev", "REV").since("6.2.0").optional(),
            LIMIT_ARG.since("6.2.0"),
            WITHSCORES,
        ],
        ..read_cmd("zrange", -4, "Answers with the members of a sorted set within a range of positions, scores or strings, in either order.")
    },
    CommandSpec {
        name: "zrangestore",
        arity: -5,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[
            KeySpec::one(1, kflag::OW | kflag::UPDATE),
            KeySpec::one(2, READ),
        ],
        route: Route::Keys(Split::Gather),
        run: Some(zrangestore),
        summary: "Stores the members of a sorted set within a range of positions, scores or strings as another sorted set.",
        since: "6.2.0",
        complexity: "O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements stored into the destination key.",
        args: &[
            Arg::key("dst", 0),
            Arg::key("src", 1),
            Arg::new("min", ArgType::String),
            Arg::new("max", ArgType::String),
            Arg::oneof("sortby", SORTBY).optional(),
            Arg::token("rev", "REV").optional(),
            LIMIT_ARG,
        ],
        ..ZSET
    },
    CommandSpec {
        run: Some(zrangebyscore),
        summary: "Answers with the members of a sorted set whose scores fall within a range, lowest first.",
        history: &[("2.0.0", "Added the `WITHSCORES` modifier.")],
        ..range_cmd(
            "zrangebyscore",
            "1.0.5",
            "`ZRANGE` with the `BYSCORE` argument",
            &[
                KEY,
                Arg::new("min", ArgType::Double),
                Arg::new("max", ArgType::Double),
                WITHSCORES.since("2.0.0"),
                LIMIT_ARG,
            ],
        )
    },
    CommandSpec {
        run: Some(zrevrangebyscore),
        summary: "Answers with the members of a sorted set whose scores fall within a range, highest first.",
        history: &[("2.1.6", "`min` and `max` can be exclusive.")],
        ..range_cmd(
            "zrevrangebyscore",
            "2.2.0",
            "`ZRANGE` with the `REV` and `BYSCORE` arguments",
            &[
                KEY,
                Arg::new("max", ArgType::Double),
                Arg::new("min", ArgType::Double),
                WITHSCORES,
                LIMIT_ARG,
            ],
        )
    },
    CommandSpec {
        run: Some(zrangebylex),
        summary: "Answers with the members of a sorted set within a range of strings, in ascending order (for sets whose scores are all equal).",
        ..range_cmd(
            "zrangebylex",
            "2.8.9",
            "`ZRANGE` with the `BYLEX` argument",
            &[
                KEY,
                Arg::new("min", ArgType::String),
                Arg::new("max", ArgType::String),
                LIMIT_ARG,
            ],
        )
    },
    CommandSpec {
        run: Some(zrevrangebylex),
        summary: "Answers with the members of a sorted set within a range of strings, in descending order (for sets whose scores are all equal).",
        ..range_cmd(
            "zrevrangebylex",
            "2.8.9",
            "`ZRANGE` with the `REV` and `BYLEX` arguments",
            &[
                KEY,
                Arg::new("max", ArgType::String),
                Arg::new("min", ArgType::String),
                LIMIT_ARG,
            ],
        )
    },
    CommandSpec {
        run: Some(zrevrange),
        summary: "Answers with the members of a sorted set within a range of positions, counting from the highest score.",
        complexity: "O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements returned.",
        ..range_cmd(
            "zrevrange",
            "1.2.0",
            "`ZRANGE` with the `REV` argument",
            &[
                KEY,
                Arg::new("start", ArgType::Integer),
                Arg::new("stop", ArgType::Integer),
                WITHSCORES,
            ],
        )
    },
    CommandSpec {
        run: Some(zremrangebyrank),
        summary: "Removes the members of a sorted set within a range of positions.",
        ..remrange_cmd(
            "zremrangebyrank",
            "2.0.0",
            &[
                KEY,
                Arg::new("start", ArgType::Integer),
                Arg::new("stop", ArgType::Integer),
            ],
        )
    },
    CommandSpec {
        run: Some(zremrangebyscore),
        summary: "Removes the members of a sorted set whose scores fall within a range.",
        ..remrange_cmd("zremrangebyscore", "1.2.0", MINMAX_DOUBLE)
    },
    CommandSpec {
        run: Some(zremrangebylex),
        summary: "Removes the members of a sorted set within a range of strings (for sets whose scores are all equal).",
        ..remrange_cmd("zremrangebylex", "2.8.9", MINMAX_STRING)
    },
    CommandSpec {
        name: "zpopmin",
        arity: -2,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, POPPED)],
        run: Some(zpopmin),
        summary: "Removes and answers with the members of a sorted set with the lowest scores.",
        since: "5.0.0",
        complexity: POP_COMPLEXITY,
        args: &[KEY, Arg::new("count", ArgType::Integer).optional()],
        ..ZSET
    },
    CommandSpec {
        name: "zpopmax",
        arity: -2,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, POPPED)],
        run: Some(zpopmax),
        summary: "Removes and answers with the members of a sorted set with the highest scores.",
        since: "5.0.0",
        complexity: POP_COMPLEXITY,
        args: &[KEY, Arg::new("count", ArgType::Integer).optional()],
        ..ZSET
    },
    CommandSpec {
        name: "bzpopmin",
        arity: -3,
        flags: flag::WRITE | flag::NOSCRIPT | flag::BLOCKING | flag::FAST,
        keys: &[KeySpec::range(1, -2, 1, POPPED)],
        route: Route::Keys(Split::Gather),
        run: Some(bzpopmin),
        summary: "Removes and answers with the lowest-scored member of the first non-empty sorted set among several keys, waiting for one if they are all empty.",
        since: "5.0.0",
        complexity: "O(log(N)) with N being the number of elements in the sorted set.",
        history: TIMEOUT_HISTORY,
        args: &[KEY.multiple(), TIMEOUT],
        ..ZSET
    },
    CommandSpec {
        name: "bzpopmax",
        arity: -3,
        flags: flag::WRITE | flag::NOSCRIPT | flag::BLOCKING | flag::FAST,
        keys: &[KeySpec::range(1, -2, 1, POPPED)],
        route: Route::Keys(Split::Gather),
        run: Some(bzpopmax),
        summary: "Removes and answers with the highest-scored member of the first non-empty sorted set among several keys, waiting for one if they are all empty.",
        since: "5.0.0",
        complexity: "O(log(N)) with N being the number of elements in the sorted set.",
        history: TIMEOUT_HISTORY,
        args: &[KEY.multiple(), TIMEOUT],
        ..ZSET
    },
    CommandSpec {
        name: "zmpop",
        arity: -4,
        flags: flag::WRITE,
        keys: &[keynum(1, POPPED)],
        route: Route::Keys(Split::Gather),
        run: Some(zmpop),
        summary: "Removes and answers with the lowest- or highest-scored members of the first non-empty sorted set among several keys.",
        since: "7.0.0",
        complexity: MPOP_COMPLEXITY,
        args: &[
            NUMKEYS,
            KEY.multiple(),
            Arg::oneof("where", MINMAX),
            Arg::new("count", ArgType::Integer)
                .with_token("COUNT")
                .optional(),
        ],
        ..ZSET
    },
    CommandSpec {
        name: "bzmpop",
        arity: -5,
        flags: flag::WRITE | flag::BLOCKING,
        keys: &[keynum(2, POPPED)],
        route: Route::Keys(Split::Gather),
        run: Some(bzmpop),
        summary: "Removes and answers with the lowest- or highest-scored members of the first non-empty sorted set among several keys, waiting for one if they are all empty.",
        since: "7.0.0",
        complexity: MPOP_COMPLEXITY,
        args: &[
            TIMEOUT,
            NUMKEYS,
            KEY.multiple(),
            Arg::oneof("where", MINMAX),
            Arg::new("count", ArgType::Integer)
                .with_token("COUNT")
                .optional(),
        ],
        ..ZSET
    },
    CommandSpec {
        run: Some(zrandmember),
        since: "6.2.0",
        complexity: "O(N) where N is the number of elements returned",
        tips: &["nondeterministic_output"],
        args: &[
            KEY,
            Arg::block(
                "options",
                &[Arg::new("count", ArgType::Integer), WITHSCORES],
            )
            .optional(),
        ],
        ..read_cmd("zrandmember", -2, "Answers with random members of a sorted set: distinct ones or, for a negative count, with repeats.")
    },
    CommandSpec {
        name: "zunion",
        arity: -3,
        flags: flag::READONLY,
        keys: &[keynum(1, READ)],
        route: Route::Keys(Split::Gather),
        run: Some(zunion),
        summary: "Answers with the union of sorted sets (and sets), scores combined by weight and aggregate.",
        since: "6.2.0",
        complexity: UNION_COMPLEXITY,
        args: &[NUMKEYS, KEY.multiple(), WEIGHTS, AGGREGATE, WITHSCORES],
        ..ZSET
    },
    CommandSpec {
        name: "zinter",
        arity: -3,
        flags: flag::READONLY,
        keys: &[keynum(1, READ)],
        route: Route::Keys(Split::Gather),
        run: Some(zinter),
        summary: "Answers with the members common to every given sorted set (or set), scores combined by weight and aggregate.",
        since: "6.2.0",
        complexity: INTER_COMPLEXITY,
        args: &[NUMKEYS, KEY.multiple(), WEIGHTS, AGGREGATE, WITHSCORES],
        ..ZSET
    },
    CommandSpec {
        name: "zdiff",
        arity: -3,
        flags: flag::READONLY,
        keys: &[keynum(1, READ)],
        route: Route::Keys(Split::Gather),
        run: Some(zdiff),
        summary: "Answers with the members of the first sorted set that no other given sorted set (or set) has.",
        since: "6.2.0",
        complexity: DIFF_COMPLEXITY,
        args: &[NUMKEYS, KEY.multiple(), WITHSCORES],
        ..ZSET
    },
    CommandSpec {
        name: "zunionstore",
        arity: -4,
        flags: flag::WRITE | flag::DENYOOM,
        keys: STORE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(zunionstore),
        summary: "Stores the union of sorted sets (and sets) under a key, scores combined by weight and aggregate.",
        since: "2.0.0",
        complexity: UNION_COMPLEXITY,
        args: &[
            Arg::key("destination", 0),
            NUMKEYS,
            Arg::key("key", 1).multiple(),
            WEIGHTS,
            AGGREGATE,
        ],
        ..ZSET
    },
    CommandSpec {
        name: "zinterstore",
        arity: -4,
        flags: flag::WRITE | flag::DENYOOM,
        keys: STORE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(zinterstore),
        summary: "Stores the members common to every given sorted set (or set) under a key, scores combined by weight and aggregate.",
        since: "2.0.0",
        complexity: INTER_COMPLEXITY,
        args: &[
            Arg::key("destination", 0),
            NUMKEYS,
            Arg::key("key", 1).multiple(),
            WEIGHTS,
            AGGREGATE,
        ],
        ..ZSET
    },
    CommandSpec {
        name: "zdiffstore",
        arity: -4,
        flags: flag::WRITE | flag::DENYOOM,
        keys: STORE_KEYS,
        route: Route::Keys(Split::Gather),
        run: Some(zdiffstore),
        summary: "Stores the members of the first sorted set that no other given sorted set (or set) has under a key.",
        since: "6.2.0",
        complexity: DIFF_COMPLEXITY,
        args: &[
            Arg::key("destination", 0),
            NUMKEYS,
            Arg::key("key", 1).multiple(),
        ],
        ..ZSET
    },
    CommandSpec {
        name: "zintercard",
        arity: -3,
        flags: flag::READONLY,
        keys: &[keynum(1, READ)],
        route: Route::Keys(Split::Gather),
        run: Some(zintercard),
        summary: "Counts the members common to every given sorted set (or set), optionally stopping at a limit.",
        since: "7.0.0",
        complexity: "O(N*K) worst case with N being the smallest input sorted set, K being the number of input sorted sets.",
        args: &[
            NUMKEYS,
            KEY.multiple(),
            Arg::new("limit", ArgType::Integer)
                .with_token("LIMIT")
                .optional(),
        ],
        ..ZSET
    },
    CommandSpec {
        run: Some(zscan),
        since: "2.8.0",
        complexity: "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection..",
        tips: &["nondeterministic_output"],
        args: &[
            KEY,
            Arg::new("cursor", ArgType::Integer),
            Arg::new("pattern", ArgType::Pattern)
                .with_token("MATCH")
                .optional(),
            Arg::new("count", ArgType::Integer)
                .with_token("COUNT")
                .optional(),
        ],
        ..read_cmd("zscan", -3, "Walks the members and scores of a sorted set a few at a time with a cursor.")
    },
];

// ---------------------------------------------------------------------------------------------
// Lookups, parsing and reply helpers.

pub(super) fn limits(sh: &Shard) -> Limits {
    Limits {
        max_entries: sh.config.zset_max_listpack_entries,
        max_value: sh.config.zset_max_listpack_value,
    }
}

/// The sorted set under `key` for reading, counting a keyspace hit or miss as Redis's
/// `lookupKeyRead` does (a key of another type is a hit, then `WRONGTYPE`).
pub(super) fn read_zset<'s>(
    db: &'s mut Db,
    stats: &mut Stats,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s ZSet>> {
    let found = stats.count_lookup(db.get_read(key, now_ms));
    found.map(|e| e.value.as_zset()).transpose()
}

/// The sorted set under `key` for changing it (Redis's `lookupKeyWrite`: no statistics).
fn write_zset<'s>(db: &'s mut Db, key: &[u8], now_ms: u64) -> Result<Option<&'s mut ZSet>> {
    db.get_mut(key, now_ms)
        .map(|e| e.value.as_zset_mut())
        .transpose()
}

/// A score, increment or weight (Redis's `getDoubleFromObject`).
fn parse_score(arg: &[u8]) -> Result<f64> {
    parse_f64(arg).ok_or(Error::NotFloat)
}

/// An integer argument (`getLongFromObject`).
fn parse_int(arg: &[u8]) -> Result<i64> {
    parse_i64(arg).ok_or(Error::NotInteger)
}

/// One end of a score range: `(` makes it exclusive.
fn parse_score_end(arg: &[u8]) -> Option<(f64, bool)> {
    match arg.split_first() {
        Some((b'(', rest)) => parse_f64_lenient(rest).map(|v| (v, true)),
        _ => parse_f64_lenient(arg).map(|v| (v, false)),
    }
}

/// A score range as Redis's `zslParseRange` reads it.
fn parse_score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange> {
    match (parse_score_end(min), parse_score_end(max)) {
        (Some((min, min_ex)), Some((max, max_ex))) => Ok(ScoreRange {
            min,
            min_ex,
            max,
            max_ex,
        }),
        _ => Err(Error::err("min or max is not a float")),
    }
}

/// One end of a lex range: `-`, `+`, `[member` or `(member` (a NUL ends the argument, as in
/// Redis's C string test).
fn parse_lex_end(arg: &[u8]) -> Option<LexBound> {
    let alone = |rest: &[u8]| rest.first().is_none_or(|&b| b == 0);
    match arg.split_first()? {
        (b'+', rest) if alone(rest) => Some(LexBound::Max),
        (b'-', rest) if alone(rest) => Some(LexBound::Min),
        (b'(', rest) => Some(LexBound::Exclusive(rest.to_vec())),
        (b'[', rest) => Some(LexBound::Inclusive(rest.to_vec())),
        _ => None,
    }
}

fn parse_lex_range(min: &[u8], max: &[u8]) -> Result<LexRange> {
    match (parse_lex_end(min), parse_lex_end(max)) {
        (Some(min), Some(max)) => Ok(LexRange { min, max }),
        _ => Err(Error::err("min or max not valid string range item")),
    }
}

/// A count that must be positive ("value is out of range, must be positive").
fn parse_positive(arg: &[u8]) -> Result<usize> {
    parse_i64(arg)
        .filter(|&n| n >= 0)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .ok_or_else(|| Error::err("value is out of range, must be positive"))
}

/// The header of `n` members, with their scores when `withscores`: a flat array in RESP2, an
/// array of `[member, score]` pairs in RESP3.
fn begin_members(out: &mut Reply, n: usize, withscores: bool) {
    if withscores && !out.resp3() {
        out.array(2 * n);
    } else {
        out.array(n);
    }
}

/// One member of a [`begin_members`] reply.
fn reply_member(out: &mut Reply, m: &[u8], s: f64, withscores: bool) {
    if withscores && out.resp3() {
        out.array(2);
    }
    out.bulk(m);
    if withscores {
        out.double(s);
    }
}

/// A score as ZSCAN shows it: as the encoding stores it, so a listpack gives an integral score
/// as an integer (below 2^62) and the big encoding uses Redis's `d2string`.
fn scan_score_text(s: f64, packed: bool) -> String {
    const LL_HALF: f64 = (i64::MAX / 2) as f64;
    if packed && (-LL_HALF..=LL_HALF).contains(&s) && s.fract() == 0.0 {
        itoa::Buffer::new().format(s as i64).to_string()
    } else {
        fmt_d2string(s)
    }
}

// ---------------------------------------------------------------------------------------------
// ZADD and ZINCRBY.

/// ZADD's options.
#[derive(Default, Clone, Copy)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// What one ZADD did.
#[derive(Default)]
struct AddCounts {
    added: u64,
    updated: u64,
    /// Members that were not skipped by NX, XX, GT or LT.
    processed: u64,
    /// The score of the last processed member (the reply of INCR).
    last: f64,
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
pub(super) fn zadd(sh: &mut Shard, c: &mut Call) -> Result<()> {
    zadd_generic(sh, c, AddFlags::default())
}

/// ZINCRBY key increment member — ZADD INCR, as Redis runs it (so an option word in the
/// increment's place is read as an option, which then leaves an odd argument count).
fn zincrby(sh: &mut Shard, c: &mut Call) -> Result<()> {
    zadd_generic(
        sh,
        c,
        AddFlags {
            incr: true,
            ..AddFlags::default()
        },
    )
}

/// Reads ZADD's options from argument 2 on; returns them and where the pairs start.
fn parse_add_flags(argv: &[&[u8]], mut f: AddFlags) -> Result<(AddFlags, usize)> {
    let mut i = 2;
    while let Some(&a) = argv.get(i) {
        let flag = match a.len() {
            2 if eq_ic(a, "nx") => &mut f.nx,
            2 if eq_ic(a, "xx") => &mut f.xx,
            2 if eq_ic(a, "gt") => &mut f.gt,
            2 if eq_ic(a, "lt") => &mut f.lt,
            2 if eq_ic(a, "ch") => &mut f.ch,
            4 if eq_ic(a, "incr") => &mut f.incr,
            _ => break,
        };
        *flag = true;
        i += 1;
    }
    let pairs = argv.len() - i;
    if pairs == 0 || !pairs.is_multiple_of(2) {
        return Err(Error::Syntax);
    }
    if f.nx && f.xx {
        return Err(Error::err(
            "XX and NX options at the same time are not compatible",
        ));
    }
    if ((f.gt || f.lt) && f.nx) || (f.gt && f.lt) {
        return Err(Error::err(
            "GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if f.incr && pairs > 2 {
        return Err(Error::err(
            "INCR option supports a single increment-element pair",
        ));
    }
    Ok((f, i))
}

fn zadd_generic(sh: &mut Shard, c: &mut Call, flags: AddFlags) -> Result<()> {
    let (f, first) = parse_add_flags(c.argv, flags)?;
    let pairs = &c.argv[first..];
    let scores = pairs
        .chunks(2)
        .map(|p| parse_score(p[0]))
        .collect::<Result<Vec<f64>>>()?;
    let lim = limits(sh);
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    let mut counts = AddCounts::default();
    if write_zset(db, key, c.now_ms)?.is_none() && !f.xx {
        let z = ZSet::for_first_member(pairs[1].len(), lim);
        db.insert(key, Entry::new(Value::ZSet(z)));
    }
    if let Some(z) = write_zset(db, key, c.now_ms)? {
        let mut failed = Ok(());
        for (pair, &score) in pairs.chunks(2).zip(&scores) {
            failed = add_one(z, pair[1], score, f, lim, &mut counts);
            if failed.is_err() {
                break;
            }
        }
        z.shrink();
        if z.is_empty() {
            db.remove(key);
        }
        if counts.added + counts.updated > 0 {
            let event = if f.incr { "zincr" } else { "zadd" };
            sh.notify(class::ZSET, event, c.db, key);
        }
        failed?;
    }
    sh.stats.dirty += counts.added + counts.updated;
    if f.incr {
        if counts.processed > 0 {
            c.out.double(counts.last);
        } else {
            c.out.null();
        }
    } else {
        let n = counts.added + if f.ch { counts.updated } else { 0 };
        c.out.int(n as i64);
    }
    Ok(())
}

/// Adds or updates one member under ZADD's rules (Redis's `zsetAdd`), with one lookup.
fn add_one(
    z: &mut ZSet,
    member: &[u8],
    score: f64,
    f: AddFlags,
    lim: Limits,
    counts: &mut AddCounts,
) -> Result<()> {
    let mut chosen = score;
    let done = z.upsert(member, lim, |cur| {
        let Some(cur) = cur else {
            return Ok((!f.xx).then_some(score));
        };
        if f.nx {
            return Ok(None);
        }
        let mut s = score;
        if f.incr {
            s += cur;
            if s.is_nan() {
                return Err(Error::err("resulting score is not a number (NaN)"));
            }
        }
        if (f.lt && s >= cur) || (f.gt && s <= cur) {
            return Ok(None);
        }
        chosen = s;
        Ok(Some(s))
    })?;
    match done {
        None => return Ok(()),
        Some(Added::New) => counts.added += 1,
        Some(Added::Updated) => counts.updated += 1,
        Some(Added::Same) => {}
    }
    counts.processed += 1;
    counts.last = chosen;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Single-member reads and ZREM.

/// ZREM key member [member ...]
fn zrem(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    let Some(z) = write_zset(db, key, c.now_ms)? else {
        c.out.int(0);
        return Ok(());
    };
    let mut deleted = 0;
    for m in &c.argv[2..] {
        if z.remove(m).is_some() {
            deleted += 1;
            if z.is_empty() {
                break;
            }
        }
    }
    let empty = z.is_empty();
    if empty {
        db.remove(key);
    }
    sh.stats.dirty += deleted;
    if deleted > 0 {
        sh.notify(class::ZSET, "zrem", c.db, key);
        if empty {
            sh.notify(class::GENERIC, "del", c.db, key);
        }
    }
    c.out.int(deleted as i64);
    Ok(())
}

/// ZCARD key
fn zcard(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    c.out.int(z.map_or(0, ZSet::len) as i64);
    Ok(())
}

/// ZCOUNT key min max — the range is checked before the key.
fn zcount(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let range = parse_score_range(c.argv[2], c.argv[3])?;
    let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    c.out
        .int(z.map_or(0, |z| z.score_range(&range).len()) as i64);
    Ok(())
}

/// ZLEXCOUNT key min max
fn zlexcount(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let range = parse_lex_range(c.argv[2], c.argv[3])?;
    let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    c.out.int(z.map_or(0, |z| z.lex_range(&range).len()) as i64);
    Ok(())
}

/// ZSCORE key member
fn zscore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    match z.and_then(|z| z.score(c.argv[2])) {
        Some(s) => c.out.double(s),
        None => c.out.null(),
    }
    Ok(())
}

/// ZMSCORE key member [member ...]
fn zmscore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    let members = &c.argv[2..];
    c.out.array(members.len());
    for m in members {
        match z.and_then(|z| z.score(m)) {
            Some(s) => c.out.double(s),
            None => c.out.null(),
        }
    }
    Ok(())
}

/// ZRANK key member
fn zrank(sh: &mut Shard, c: &mut Call) -> Result<()> {
    rank_generic(sh, c, false)
}

/// ZREVRANK key member
fn zrevrank(sh: &mut Shard, c: &mut Call) -> Result<()> {
    rank_generic(sh, c, true)
}

fn rank_generic(sh: &mut Shard, c: &mut Call, rev: bool) -> Result<()> {
    let z = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)?;
    let rank = z.and_then(|z| {
        let (r, _) = z.rank(c.argv[2])?;
        Some(if rev { z.len() - 1 - r } else { r })
    });
    match rank {
        Some(r) => c.out.int(r as i64),
        None => c.out.null(),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The ZRANGE family.

/// What a range is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// A parsed range request (Redis's `zrangeGenericCommand`, steps 1 and 2).
struct RangeRequest {
    by: By,
    rev: bool,
    withscores: bool,
    /// LIMIT offset and count (count < 0: no limit).
    offset: i64,
    count: i64,
    bounds: Bounds,
}

enum Bounds {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// Parses the options after `key min max` (the key at `at`), then the range. `by` and `rev`
/// are fixed by the older commands (ZRANGEBYSCORE, ZREVRANGE, …) and `None` for ZRANGE and
/// ZRANGESTORE, whose options choose them.
fn parse_range(
    argv: &[&[u8]],
    at: usize,
    store: bool,
    by: Option<By>,
    rev: Option<bool>,
) -> Result<RangeRequest> {
    // `None` until an option sets it; the older commands fix both from the start.
    let (mut by_opt, mut rev_opt) = (by, rev);
    let (mut withscores, mut offset, mut count) = (false, 0, -1);
    let mut j = at + 3;
    while j < argv.len() {
        let a = argv[j];
        let left = argv.len() - j - 1;
        if !store && eq_ic(a, "withscores") {
            withscores = true;
        } else if eq_ic(a, "limit") && left >= 2 {
            offset = parse_int(argv[j + 1])?;
            count = parse_int(argv[j + 2])?;
            j += 2;
        } else if rev_opt.is_none() && eq_ic(a, "rev") {
            rev_opt = Some(true);
        } else if by_opt.is_none() && eq_ic(a, "bylex") {
            by_opt = Some(By::Lex);
        } else if by_opt.is_none() && eq_ic(a, "byscore") {
            by_opt = Some(By::Score);
        } else {
            return Err(Error::Syntax);
        }
        j += 1;
    }
    let (by, rev) = (by_opt.unwrap_or(By::Rank), rev_opt.unwrap_or(false));
    if count != -1 && by == By::Rank {
        return Err(Error::err(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == By::Lex {
        return Err(Error::err(
            "syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut lo, mut hi) = (argv[at + 1], argv[at + 2]);
    if rev && by != By::Rank {
        std::mem::swap(&mut lo, &mut hi);
    }
    let bounds = match by {
        By::Rank => Bounds::Rank(parse_int(lo)?, parse_int(hi)?),
        By::Score => Bounds::Score(parse_score_range(lo, hi)?),
        By::Lex => Bounds::Lex(parse_lex_range(lo, hi)?),
    };
    Ok(RangeRequest {
        by,
        rev,
        withscores: withscores || store,
        offset,
        count,
        bounds,
    })
}

/// Where a range starts (a rank, in ascending order), which way it goes and how many members
/// it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    from: usize,
    rev: bool,
    len: usize,
}

/// Clips an inclusive rank range (negative ranks count from the end) to a set of `len`, as
/// Redis does for ZRANGE and ZREMRANGEBYRANK.
fn clip_ranks(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let llen = len as i64;
    let start = if start < 0 { llen + start } else { start }.max(0);
    let end = if end < 0 { llen + end } else { end };
    if start > end || start >= llen {
        return None;
    }
    Some((start as usize, end.min(llen - 1) as usize))
}

/// The members a request selects from `z`.
fn span_of(z: &ZSet, r: &RangeRequest) -> Span {
    let empty = Span {
        from: 0,
        rev: r.rev,
        len: 0,
    };
    let ranks = match &r.bounds {
        Bounds::Rank(start, end) => {
            let Some((start, end)) = clip_ranks(*start, *end, z.len()) else {
                return empty;
            };
            let from = if r.rev { z.len() - 1 - start } else { start };
            return Span {
                from,
                rev: r.rev,
                len: end - start + 1,
            };
        }
        Bounds::Score(range) => z.score_range(range),
        Bounds::Lex(range) => z.lex_range(range),
    };
    // LIMIT: a negative offset selects nothing; a negative count means no limit.
    let Ok(offset) = usize::try_from(r.offset) else {
        return empty;
    };
    if offset >= ranks.len() {
        return empty;
    }
    let avail = ranks.len() - offset;
    let len = usize::try_from(r.count).map_or(avail, |n| n.min(avail));
    let from = if r.rev {
        ranks.end - 1 - offset
    } else {
        ranks.start + offset
    };
    Span {
        from,
        rev: r.rev,
        len,
    }
}

/// Calls `f` with each member of `span`, in its order.
fn walk_span(z: &ZSet, span: Span, mut f: impl FnMut(&[u8], f64)) {
    if span.len == 0 {
        return;
    }
    let mut left = span.len;
    z.walk(span.from, span.rev, |m, s| {
        f(m, s);
        left -= 1;
        left > 0
    });
}

/// The shared body of ZRANGE, ZRANGEBYSCORE, ZRANGEBYLEX and their REV forms.
fn range_generic(sh: &mut Shard, c: &mut Call, by: Option<By>, rev: Option<bool>) -> Result<()> {
    let r = parse_range(c.argv, 1, false, by, rev)?;
    let Some(z) = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)? else {
        c.out.array(0);
        return Ok(());
    };
    let span = span_of(z, &r);
    let out = &mut c.out;
    begin_members(out, span.len, r.withscores);
    walk_span(z, span, |m, s| reply_member(out, m, s, r.withscores));
    Ok(())
}

/// ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]
fn zrange(sh: &mut Shard, c: &mut Call) -> Result<()> {
    range_generic(sh, c, None, None)
}

/// ZREVRANGE key start stop [WITHSCORES]
fn zrevrange(sh: &mut Shard, c: &mut Call) -> Result<()> {
    range_generic(sh, c, Some(By::Rank), Some(true))
}

/// ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]
fn zrangebyscore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    range_generic(sh, c, Some(By::Score), Some(false))
}

/// ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]
fn zrevrangebyscore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    range_generic(sh, c, Some(By::Score), Some(true))
}

/// ZRANGEBYLEX key min max [LIMIT offset count]
fn zrangebylex(sh: &mut Shard, c: &mut Call) -> Result<()> {
    range_generic(sh, c, Some(By::Lex), Some(false))
}

/// ZREVRANGEBYLEX key max min [LIMIT offset count]
fn zrevrangebylex(sh: &mut Shard, c: &mut Call) -> Result<()> {
    range_generic(sh, c, Some(By::Lex), Some(true))
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count] — the result is
/// built as Redis builds it: in the big encoding from the start when a rank range is known to
/// pass the entry limit, otherwise in a listpack that converts as members come.
fn zrangestore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let r = parse_range(c.argv, 2, true, None, None)?;
    let lim = limits(sh);
    let (dst, src) = (c.argv[1], c.argv[2]);
    let result = match read_zset(&mut sh.dbs[c.db], &mut sh.stats, src, c.now_ms)? {
        None => ZSet::new(),
        Some(z) => {
            let span = span_of(z, &r);
            let hint = if r.by == By::Rank { span.len } else { 0 };
            let mut out = ZSet::for_size(hint, lim);
            walk_span(z, span, |m, s| {
                out.add(m, s, lim);
            });
            out
        }
    };
    store_result(sh, c, dst, result, "zrangestore");
    Ok(())
}

/// Stores a computed sorted set under `dst` (replacing any value and deadline), or deletes
/// `dst` when it is empty; answers with the set's size. `event` is the command's (Redis fires
/// `del` instead when it deletes `dst`).
fn store_result(sh: &mut Shard, c: &mut Call, dst: &[u8], mut result: ZSet, event: &'static str) {
    let db = &mut sh.dbs[c.db];
    let n = result.len();
    if n == 0 {
        if db.remove(dst).is_some() {
            sh.stats.dirty += 1;
            sh.notify(class::GENERIC, "del", c.db, dst);
        }
    } else {
        result.shrink();
        db.insert(dst, Entry::new(Value::ZSet(result)));
        sh.stats.dirty += 1;
        sh.notify(class::ZSET, event, c.db, dst);
    }
    c.out.int(n as i64);
}

// ---------------------------------------------------------------------------------------------
// ZREMRANGEBY*.

/// ZREMRANGEBYRANK key start stop
fn zremrangebyrank(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let (start, end) = (parse_int(c.argv[2])?, parse_int(c.argv[3])?);
    remrange_generic(sh, c, "zremrangebyrank", |z| {
        clip_ranks(start, end, z.len()).map_or(0..0, |(a, b)| a..b + 1)
    })
}

/// ZREMRANGEBYSCORE key min max
fn zremrangebyscore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let range = parse_score_range(c.argv[2], c.argv[3])?;
    remrange_generic(sh, c, "zremrangebyscore", |z| z.score_range(&range))
}

/// ZREMRANGEBYLEX key min max
fn zremrangebylex(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let range = parse_lex_range(c.argv[2], c.argv[3])?;
    remrange_generic(sh, c, "zremrangebylex", |z| z.lex_range(&range))
}

/// Removes the members at the ranks `ranks` picks; deletes the key when it empties.
fn remrange_generic(
    sh: &mut Shard,
    c: &mut Call,
    event: &'static str,
    ranks: impl FnOnce(&ZSet) -> std::ops::Range<usize>,
) -> Result<()> {
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    let Some(z) = write_zset(db, key, c.now_ms)? else {
        c.out.int(0);
        return Ok(());
    };
    let r = ranks(z);
    let mut doomed: Vec<SmallBytes> = Vec::with_capacity(r.len());
    walk_span(
        z,
        Span {
            from: r.start,
            rev: false,
            len: r.len(),
        },
        |m, _| doomed.push(SmallBytes::from(m)),
    );
    for m in &doomed {
        z.remove(m);
    }
    let empty = z.is_empty();
    if empty {
        db.remove(key);
    }
    sh.stats.dirty += doomed.len() as u64;
    if !doomed.is_empty() {
        sh.notify(class::ZSET, event, c.db, key);
        if empty {
            sh.notify(class::GENERIC, "del", c.db, key);
        }
    }
    c.out.int(doomed.len() as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pops.

/// The reply shapes of the pop commands (Redis's `genericZpopCommand`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PopShape {
    /// `[member, score, …]`: ZPOPMIN/ZPOPMAX in RESP2, or without a count.
    Flat,
    /// `[[member, score], …]`: ZPOPMIN/ZPOPMAX with a count in RESP3.
    Nested,
    /// `[key, member, score]`: BZPOPMIN/BZPOPMAX.
    KeyFlat,
    /// `[key, [[member, score], …]]`: ZMPOP/BZMPOP.
    KeyNested,
}

/// Pops up to `count` members from the first existing key of `keys` (a key of another type met
/// first is an error). With none, answers a null array if `nil_when_empty`, else an empty one.
fn pop_generic(
    sh: &mut Shard,
    c: &mut Call,
    keys: &[&[u8]],
    max: bool,
    shape: PopShape,
    count: usize,
    nil_when_empty: bool,
) -> Result<()> {
    let db = &mut sh.dbs[c.db];
    let mut found = None;
    for &key in keys {
        if write_zset(db, key, c.now_ms)?.is_some() {
            found = Some(key);
            break;
        }
    }
    let Some(key) = found else {
        if nil_when_empty {
            c.out.null_array();
        } else {
            c.out.array(0);
        }
        return Ok(());
    };
    if count == 0 {
        c.out.array(0);
        return Ok(());
    }
    let Some(z) = write_zset(db, key, c.now_ms)? else {
        return Ok(());
    };
    let n = count.min(z.len());
    let out = &mut c.out;
    match shape {
        PopShape::Flat => out.array(2 * n),
        PopShape::Nested => out.array(n),
        PopShape::KeyFlat => {
            out.array(2 * n + 1);
            out.bulk(key);
        }
        PopShape::KeyNested => {
            out.array(2);
            out.bulk(key);
            out.array(n);
        }
    }
    let nested = matches!(shape, PopShape::Nested | PopShape::KeyNested);
    for _ in 0..n {
        if let Some((m, s)) = z.pop(max) {
            if nested {
                out.array(2);
            }
            out.bulk(&m);
            out.double(s);
        }
    }
    let empty = z.is_empty();
    if empty {
        db.remove(key);
    }
    sh.stats.dirty += n as u64;
    if n > 0 {
        let event = if max { "zpopmax" } else { "zpopmin" };
        sh.notify(class::ZSET, event, c.db, key);
    }
    if empty {
        sh.notify(class::GENERIC, "del", c.db, key);
    }
    // Whichever command popped (ZMPOP, or a blocking one served), the effect is a pop of the
    // one sorted set served, as Redis logs it.
    if n > 0 && sh.propagating() {
        let name: &[u8] = if max { b"ZPOPMAX" } else { b"ZPOPMIN" };
        let mut num = itoa::Buffer::new();
        sh.rewrite(c.db, &[name, key, num.format(n).as_bytes()]);
    }
    Ok(())
}

/// ZPOPMIN key [count]
fn zpopmin(sh: &mut Shard, c: &mut Call) -> Result<()> {
    zpop(sh, c, false)
}

/// ZPOPMAX key [count]
fn zpopmax(sh: &mut Shard, c: &mut Call) -> Result<()> {
    zpop(sh, c, true)
}

fn zpop(sh: &mut Shard, c: &mut Call, max: bool) -> Result<()> {
    if c.argv.len() > 3 {
        return Err(Error::Syntax);
    }
    let count = c.argv.get(2).map(|a| parse_positive(a)).transpose()?;
    let shape = if count.is_some() && c.out.resp3() {
        PopShape::Nested
    } else {
        PopShape::Flat
    };
    let argv = c.argv;
    pop_generic(sh, c, &argv[1..2], max, shape, count.unwrap_or(1), false)
}

/// BZPOPMIN key [key ...] timeout
fn bzpopmin(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    let timeout_ms = parse_timeout(argv[argv.len() - 1])?;
    bpop(
        sh,
        c,
        &argv[1..argv.len() - 1],
        false,
        PopShape::KeyFlat,
        1,
        timeout_ms,
    )
}

/// BZPOPMAX key [key ...] timeout
fn bzpopmax(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    let timeout_ms = parse_timeout(argv[argv.len() - 1])?;
    bpop(
        sh,
        c,
        &argv[1..argv.len() - 1],
        true,
        PopShape::KeyFlat,
        1,
        timeout_ms,
    )
}

/// Pops from the first non-empty sorted set among `keys` (a key of another type met first is
/// an error), or blocks.
fn bpop(
    sh: &mut Shard,
    c: &mut Call,
    keys: &[&[u8]],
    max: bool,
    shape: PopShape,
    count: usize,
    timeout_ms: u64,
) -> Result<()> {
    for &key in keys {
        if write_zset(&mut sh.dbs[c.db], key, c.now_ms)?.is_some_and(|z| !z.is_empty()) {
            return pop_generic(sh, c, &[key], max, shape, count, false);
        }
    }
    Err(Error::Blocked(timeout_ms))
}

/// The parsed arguments of ZMPOP and BZMPOP.
struct MpopArgs<'a> {
    keys: &'a [&'a [u8]],
    max: bool,
    count: usize,
}

/// Parses from the numkeys argument at `at` on, in Redis's order and with its errors.
fn parse_mpop<'a>(argv: &'a [&'a [u8]], at: usize) -> Result<MpopArgs<'a>> {
    let numkeys = parse_i64(argv[at])
        .filter(|&n| n >= 1)
        .ok_or_else(|| Error::err("numkeys should be greater than 0"))?;
    let where_at = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(at + 1))
        .filter(|&w| w < argv.len())
        .ok_or(Error::Syntax)?;
    let max = match argv[where_at] {
        w if eq_ic(w, "min") => false,
        w if eq_ic(w, "max") => true,
        _ => return Err(Error::Syntax),
    };
    let mut count = None;
    let mut j = where_at + 1;
    while j < argv.len() {
        if count.is_none() && eq_ic(argv[j], "count") && j + 1 < argv.len() {
            let n = parse_i64(argv[j + 1])
                .filter(|&n| n >= 1)
                .ok_or_else(|| Error::err("count should be greater than 0"))?;
            count = Some(usize::try_from(n).unwrap_or(usize::MAX));
            j += 2;
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(MpopArgs {
        keys: &argv[at + 1..where_at],
        max,
        count: count.unwrap_or(1),
    })
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]
fn zmpop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    let a = parse_mpop(argv, 1)?;
    pop_generic(sh, c, a.keys, a.max, PopShape::KeyNested, a.count, true)
}

/// BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]
fn bzmpop(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argv = c.argv;
    let a = parse_mpop(argv, 2)?;
    let timeout_ms = parse_timeout(argv[1])?;
    bpop(
        sh,
        c,
        a.keys,
        a.max,
        PopShape::KeyNested,
        a.count,
        timeout_ms,
    )
}

// ---------------------------------------------------------------------------------------------
// ZRANDMEMBER.

/// ZRANDMEMBER key [count [WITHSCORES]]
fn zrandmember(sh: &mut Shard, c: &mut Call) -> Result<()> {
    if c.argv.len() >= 3 {
        return zrandmember_count(sh, c);
    }
    let Shard {
        dbs, rng, stats, ..
    } = sh;
    let z = read_zset(&mut dbs[c.db], stats, c.argv[1], c.now_ms)?;
    match z
        .filter(|z| !z.is_empty())
        .and_then(|z| z.get(rng.below(z.len())))
    {
        Some((m, _)) => c.out.bulk(m),
        None => c.out.null(),
    }
    Ok(())
}

/// ZRANDMEMBER with a count: distinct members for a positive count, independent draws (as
/// many as asked, repeats allowed) for a negative one. As in Redis 7.0 the count and options
/// are read before the key is looked up, a count covering the whole set answers with all of it
/// from the highest score down, and the reply is streamed.
fn zrandmember_count(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let n = parse_int(c.argv[2])?;
    if n == i64::MIN {
        return Err(Error::err(
            "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    let withscores = match c.argv.len() {
        3 => false,
        4 if eq_ic(c.argv[3], "withscores") => {
            if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&n) {
                return Err(Error::err("value is out of range"));
            }
            true
        }
        _ => return Err(Error::Syntax),
    };
    let Shard {
        dbs, rng, stats, ..
    } = sh;
    let Some(z) = read_zset(&mut dbs[c.db], stats, c.argv[1], c.now_ms)? else {
        c.out.array(0);
        return Ok(());
    };
    let count = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
    let size = z.len();
    let out = &mut c.out;
    // A listpack is read once, so each pick is O(1).
    let packed: Vec<(&[u8], f64)> = match z {
        ZSet::Listpack(_) => z.iter().collect(),
        ZSet::Tree(_) => Vec::new(),
    };
    let pick = |i: usize| match packed.get(i) {
        Some(&e) => Some(e),
        None => z.get(i),
    };
    if count == 0 || size == 0 {
        out.array(0);
    } else if n < 0 || count == 1 {
        begin_members(out, count, withscores);
        for _ in 0..count {
            if let Some((m, s)) = pick(rng.below(size)) {
                reply_member(out, m, s, withscores);
            }
        }
    } else if count >= size {
        begin_members(out, size, withscores);
        walk_span(
            z,
            Span {
                from: size - 1,
                rev: true,
                len: size,
            },
            |m, s| reply_member(out, m, s, withscores),
        );
    } else {
        begin_members(out, count, withscores);
        for i in rng.distinct_positions(size, count) {
            if let Some((m, s)) = pick(i) {
                reply_member(out, m, s, withscores);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Union, intersection, difference.

/// A source of ZUNION & co.: a sorted set, or a set whose members all score 1.
#[derive(Clone, Copy)]
enum Source<'a> {
    Sorted(&'a ZSet),
    Plain(&'a Set),
}

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::Sorted(z) => z.len(),
            Source::Plain(s) => s.len(),
        }
    }

    /// The score of `m` (1 for a set member).
    fn find(&self, m: &[u8]) -> Option<f64> {
        match self {
            Source::Sorted(z) => z.score(m),
            Source::Plain(s) => s.contains(m).then_some(1.0),
        }
    }

    fn for_each(&self, mut f: impl FnMut(&[u8], f64)) {
        match self {
            Source::Sorted(z) => {
                z.walk(0, false, |m, s| {
                    f(m, s);
                    true
                });
            }
            Source::Plain(s) => s.iter().for_each(|m| match m {
                Member::Bytes(b) => f(b, 1.0),
                Member::Int(n) => f(itoa::Buffer::new().format(n).as_bytes(), 1.0),
            }),
        }
    }

    fn same(&self, other: &Source) -> bool {
        match (self, other) {
            (Source::Sorted(a), Source::Sorted(b)) => std::ptr::eq(*a, *b),
            (Source::Plain(a), Source::Plain(b)) => std::ptr::eq(*a, *b),
            _ => false,
        }
    }
}

/// How scores of one member from several sources combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    /// Redis's `zunionInterAggregate`: a sum of opposite infinities is 0.
    fn apply(self, target: &mut f64, value: f64) {
        match self {
            Aggregate::Sum => {
                *target += value;
                if target.is_nan() {
                    *target = 0.0;
                }
            }
            Aggregate::Min => {
                if value < *target {
                    *target = value;
                }
            }
            Aggregate::Max => {
                if value > *target {
                    *target = value;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

/// What to do with the result.
#[derive(Clone, Copy)]
enum OpTo<'a> {
    Reply,
    Store(&'a [u8]),
    /// Only count, stopping at the limit if non-zero (ZINTERCARD).
    Count,
}

/// The options after the keys.
struct OpOptions {
    weights: Vec<f64>,
    aggregate: Aggregate,
    withscores: bool,
    limit: u64,
}

/// Parses numkeys (at `at`) and checks the count against the arguments; returns the keys.
fn parse_numkeys<'a>(argv: &'a [&'a [u8]], at: usize, name: &str) -> Result<&'a [&'a [u8]]> {
    let n = parse_int(argv[at])?;
    if n < 1 {
        return Err(Error::err(format!(
            "at least 1 input key is needed for '{name}' command"
        )));
    }
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n <= argv.len() - (at + 1))
        .ok_or(Error::Syntax)?;
    Ok(&argv[at + 1..at + 1 + n])
}

/// Parses WEIGHTS, AGGREGATE, WITHSCORES and LIMIT as each command allows them.
fn parse_op_options(rest: &[&[u8]], n: usize, op: SetOp, to: OpTo) -> Result<OpOptions> {
    let mut o = OpOptions {
        weights: vec![1.0; n],
        aggregate: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let scored = op != SetOp::Diff && !matches!(to, OpTo::Count);
    let mut j = 0;
    while j < rest.len() {
        let (word, remaining) = (rest[j], rest.len() - j);
        if scored && remaining > n && eq_ic(word, "weights") {
            for (i, w) in rest[j + 1..=j + n].iter().enumerate() {
                o.weights[i] =
                    parse_f64(w).ok_or_else(|| Error::err("weight value is not a float"))?;
            }
            j += 1 + n;
        } else if scored && remaining >= 2 && eq_ic(word, "aggregate") {
            o.aggregate = match rest[j + 1] {
                a if eq_ic(a, "sum") => Aggregate::Sum,
                a if eq_ic(a, "min") => Aggregate::Min,
                a if eq_ic(a, "max") => Aggregate::Max,
                _ => return Err(Error::Syntax),
            };
            j += 2;
        } else if matches!(to, OpTo::Reply) && eq_ic(word, "withscores") {
            o.withscores = true;
            j += 1;
        } else if matches!(to, OpTo::Count) && remaining >= 2 && eq_ic(word, "limit") {
            o.limit = parse_i64(rest[j + 1])
                .and_then(|l| u64::try_from(l).ok())
                .ok_or_else(|| Error::err("LIMIT can't be negative"))?;
            j += 2;
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(o)
}

/// Looks up the sources as Redis does: a counted read of each in order, failing with
/// `WRONGTYPE` at the first key that is neither a sorted set nor a set.
fn lookup_sources(sh: &mut Shard, db: usize, keys: &[&[u8]], now_ms: u64) -> Result<()> {
    for key in keys {
        let found = sh.stats.count_lookup(sh.dbs[db].get_read(key, now_ms));
        if let Some(e) = found {
            if !matches!(e.value, Value::ZSet(_) | Value::Set(_)) {
                return Err(Error::WrongType);
            }
        }
    }
    Ok(())
}

/// The sources under `keys` (after [`lookup_sources`]), `None` where a key is missing.
fn peek_sources<'s>(db: &'s Db, keys: &[&[u8]], now_ms: u64) -> Vec<Option<Source<'s>>> {
    keys.iter()
        .map(|k| match db.peek(k, now_ms).map(|e| &e.value) {
            Some(Value::ZSet(z)) => Some(Source::Sorted(z)),
            Some(Value::Set(s)) => Some(Source::Plain(s)),
            _ => None,
        })
        .collect()
}

/// The union of weighted sources; pairs in no particular order.
fn union(srcs: &[(Option<Source>, f64)], agg: Aggregate) -> Vec<(SmallBytes, f64)> {
    let biggest = srcs.iter().map(|(s, _)| s.map_or(0, |s| s.len())).max();
    let mut acc: hashbrown::HashMap<SmallBytes, f64, ahash::RandomState> =
        hashbrown::HashMap::with_capacity_and_hasher(biggest.unwrap_or(0), Default::default());
    for (src, w) in srcs {
        let Some(src) = src else { continue };
        src.for_each(|m, s| {
            let mut score = w * s;
            if score.is_nan() {
                score = 0.0;
            }
            match acc.get_mut(m) {
                Some(t) => agg.apply(t, score),
                None => {
                    acc.insert(SmallBytes::from(m), score);
                }
            }
        });
    }
    acc.into_iter().collect()
}

/// Calls `f` with each member of the intersection and its combined score, walking the first
/// (smallest) source; stops when `f` returns false.
fn intersect(
    srcs: &[(Option<Source>, f64)],
    agg: Aggregate,
    mut f: impl FnMut(&[u8], f64) -> bool,
) {
    let Some(((Some(first), w0), rest)) = srcs.split_first() else {
        return;
    };
    if first.len() == 0 || rest.iter().any(|(s, _)| s.is_none()) {
        return;
    }
    let mut go = true;
    first.for_each(|m, s| {
        if !go {
            return;
        }
        let mut score = w0 * s;
        if score.is_nan() {
            score = 0.0;
        }
        for (src, w) in rest {
            let Some(src) = src else { return };
            let value = if src.same(first) {
                s * w
            } else {
                match src.find(m) {
                    Some(v) => v * w,
                    None => return,
                }
            };
            agg.apply(&mut score, value);
        }
        go = f(m, score);
    });
}

/// The members of the first source that no other has, with their scores.
fn difference(srcs: &[Option<Source>]) -> Vec<(SmallBytes, f64)> {
    let mut out = Vec::new();
    let Some((Some(first), rest)) = srcs.split_first() else {
        return out;
    };
    first.for_each(|m, s| {
        if !rest.iter().flatten().any(|r| r.find(m).is_some()) {
            out.push((SmallBytes::from(m), s));
        }
    });
    out
}

/// The shared body of ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD (Redis's
/// `zunionInterDiffGenericCommand`): numkeys, then the keys' types, then the options.
fn setop_generic(
    sh: &mut Shard,
    c: &mut Call,
    at: usize,
    op: SetOp,
    to: OpTo,
    name: &'static str,
) -> Result<()> {
    let argv = c.argv;
    let keys = parse_numkeys(argv, at, name)?;
    lookup_sources(sh, c.db, keys, c.now_ms)?;
    let o = parse_op_options(&argv[at + 1 + keys.len()..], keys.len(), op, to)?;
    let lim = limits(sh);
    let sources = peek_sources(&sh.dbs[c.db], keys, c.now_ms);
    let mut weighted: Vec<(Option<Source>, f64)> = sources.iter().copied().zip(o.weights).collect();
    if op != SetOp::Diff {
        // Smallest first, keeping the given order among equals (as Redis's qsort does here),
        // so that scores are combined in the same order.
        weighted.sort_by_key(|(s, _)| s.map_or(0, |s| s.len()));
    }
    let mut result = match op {
        SetOp::Union => union(&weighted, o.aggregate),
        SetOp::Diff => difference(&sources),
        SetOp::Inter if matches!(to, OpTo::Count) => {
            let mut n = 0u64;
            intersect(&weighted, o.aggregate, |_, _| {
                n += 1;
                o.limit == 0 || n < o.limit
            });
            c.out.int(n as i64);
            return Ok(());
        }
        SetOp::Inter => {
            let mut v = Vec::new();
            intersect(&weighted, o.aggregate, |m, s| {
                v.push((SmallBytes::from(m), s));
                true
            });
            v
        }
    };
    result.sort_by(|a, b| cmp_pair(a.1, &a.0, b.1, &b.0));
    match to {
        OpTo::Store(dst) => store_result(sh, c, dst, ZSet::from_sorted(&result, lim), name),
        _ => {
            let out = &mut c.out;
            begin_members(out, result.len(), o.withscores);
            for (m, s) in &result {
                reply_member(out, m, *s, o.withscores);
            }
        }
    }
    Ok(())
}

/// Orders (score, member) pairs as a sorted set does.
fn cmp_pair(a: f64, am: &[u8], b: f64, bm: &[u8]) -> Ordering {
    a.partial_cmp(&b)
        .unwrap_or(Ordering::Equal)
        .then_with(|| am.cmp(bm))
}

/// ZUNION numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
fn zunion(sh: &mut Shard, c: &mut Call) -> Result<()> {
    setop_generic(sh, c, 1, SetOp::Union, OpTo::Reply, "zunion")
}

/// ZINTER numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]
fn zinter(sh: &mut Shard, c: &mut Call) -> Result<()> {
    setop_generic(sh, c, 1, SetOp::Inter, OpTo::Reply, "zinter")
}

/// ZDIFF numkeys key [key ...] [WITHSCORES]
fn zdiff(sh: &mut Shard, c: &mut Call) -> Result<()> {
    setop_generic(sh, c, 1, SetOp::Diff, OpTo::Reply, "zdiff")
}

/// ZUNIONSTORE destination numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE …]
fn zunionstore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let dst = c.argv[1];
    setop_generic(sh, c, 2, SetOp::Union, OpTo::Store(dst), "zunionstore")
}

/// ZINTERSTORE destination numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE …]
fn zinterstore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let dst = c.argv[1];
    setop_generic(sh, c, 2, SetOp::Inter, OpTo::Store(dst), "zinterstore")
}

/// ZDIFFSTORE destination numkeys key [key ...]
fn zdiffstore(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let dst = c.argv[1];
    setop_generic(sh, c, 2, SetOp::Diff, OpTo::Store(dst), "zdiffstore")
}

/// ZINTERCARD numkeys key [key ...] [LIMIT limit]
fn zintercard(sh: &mut Shard, c: &mut Call) -> Result<()> {
    setop_generic(sh, c, 1, SetOp::Inter, OpTo::Count, "zintercard")
}

// ---------------------------------------------------------------------------------------------
// ZSCAN.

/// ZSCAN key cursor [MATCH pattern] [COUNT count] — as Redis, the cursor is checked first,
/// then the key (a missing one answers an empty scan whatever the options), then the options.
/// Scores are shown as the encoding stores them (see [`scan_score_text`]).
fn zscan(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let cursor = parse_cursor(c.argv[2]).ok_or_else(|| Error::err("invalid cursor"))?;
    let Some(z) = read_zset(&mut sh.dbs[c.db], &mut sh.stats, c.argv[1], c.now_ms)? else {
        c.out.array(2);
        c.out.bulk(b"0");
        c.out.array(0);
        return Ok(());
    };
    let (mut count, mut pattern) = (10, None);
    let mut j = 3;
    while j < c.argv.len() {
        let word = c.argv[j];
        let value = *c.argv.get(j + 1).ok_or(Error::Syntax)?;
        if eq_ic(word, "count") {
            count = usize::try_from(parse_int(value)?)
                .ok()
                .filter(|&n| n >= 1)
                .ok_or(Error::Syntax)?;
        } else if eq_ic(word, "match") {
            pattern = Some(value);
        } else {
            return Err(Error::Syntax);
        }
        j += 2;
    }
    let packed = matches!(z, ZSet::Listpack(_));
    let mut body = Vec::new();
    let mut out = Reply::new(&mut body, c.out.proto);
    let mut n = 0;
    let next = z.scan(cursor, count, |m, s| {
        if pattern.is_none_or(|p| pattern_allows(p, m)) {
            out.bulk(m);
            out.bulk(scan_score_text(s, packed).as_bytes());
            n += 2;
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

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    /// An array reply of bulk strings.
    fn bulks(items: &[&str]) -> String {
        let mut out = format!("*{}\r\n", items.len());
        items.iter().for_each(|s| out.push_str(&bulk(s)));
        out
    }

    fn encoding(t: &mut TestShard, key: &str) -> &'static str {
        t.shard.dbs[0]
            .get(key.as_bytes(), t.now_ms)
            .map_or("none", |e| e.value.encoding())
    }

    const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    #[test]
    fn dirty_counts_follow_redis() {
        // Each command with the change count Redis 7.0.15 reports for it
        // (rdb_changes_since_last_save).
        let mut t = TestShard::new();
        for (cmd, dirty) in [
            ("ZADD z 1 a 2 b", 2),
            ("ZADD z 1 a 3 b 4 c", 2),
            ("ZADD z NX INCR 1 a", 0),
            ("ZINCRBY z 1 a", 1),
            ("ZINCRBY z 0 a", 0),
            ("ZREM z a x", 1),
            ("ZADD z 1 a 5 d 6 e", 3),
            ("ZREMRANGEBYRANK z 0 1", 2),
            ("ZPOPMIN z 2", 2),
            ("ZADD z 1 a 2 b 3 c", 3),
            ("ZMPOP 1 z MAX COUNT 2", 2),
            ("BZPOPMIN z 0", 1),
            ("ZADD z 1 a 2 b", 1),
            ("ZUNIONSTORE d 1 z", 1),
            ("ZUNIONSTORE d 1 nosuch", 1),
            ("ZUNIONSTORE d 1 nosuch", 0),
            ("ZRANGESTORE d z 0 -1", 1),
            ("ZRANGESTORE d z 5 6", 1),
            ("ZRANGESTORE d z 5 6", 0),
            ("ZADD z GT CH 0 a 9 b", 1),
            ("ZPOPMIN z 0", 0),
        ] {
            let before = t.shard.stats.dirty;
            t.run(cmd);
            assert_eq!(t.shard.stats.dirty - before, dirty, "{cmd}");
        }
    }

    #[test]
    fn reads_count_hits_and_misses() {
        let mut t = TestShard::new();
        t.run("ZADD z 1 a");
        for cmd in [
            "ZCARD z",
            "ZCOUNT z 0 1",
            "ZLEXCOUNT z - +",
            "ZSCORE z a",
            "ZMSCORE z a",
            "ZRANK z a",
            "ZREVRANK z a",
            "ZRANGE z 0 -1",
            "ZRANGEBYSCORE z 0 1",
            "ZRANDMEMBER z",
            "ZSCAN z 0",
        ] {
            t.run(cmd);
        }
        assert_eq!(t.shard.stats.keyspace_hits, 11);
        // Writes look keys up without counting; the STORE forms count their sources.
        t.run("ZADD z 2 b");
        t.run("ZREM z b");
        t.run("ZPOPMIN nosuch");
        t.run("ZREMRANGEBYRANK z 5 6");
        assert_eq!(t.shard.stats.keyspace_hits, 11);
        assert_eq!(t.shard.stats.keyspace_misses, 0);
        t.run("ZUNIONSTORE d 2 z nosuch");
        t.run("ZRANGESTORE d2 nosuch 0 -1");
        t.run("ZINTERCARD 2 z z");
        assert_eq!(t.shard.stats.keyspace_hits, 14);
        assert_eq!(t.shard.stats.keyspace_misses, 2);
        // Argument errors are found before the lookup.
        t.run("ZCOUNT nosuch x 1");
        assert_eq!(t.shard.stats.keyspace_misses, 2);
    }

    #[test]
    fn wrong_type_everywhere() {
        let mut t = TestShard::new();
        t.run("SET s v");
        for cmd in [
            "ZADD s 1 a",
            "ZINCRBY s 1 a",
            "ZREM s a",
            "ZCARD s",
            "ZSCORE s a",
            "ZRANGE s 0 -1",
            "ZRANGESTORE d s 0 -1",
            "ZPOPMIN s",
            "BZPOPMAX s 0",
            "ZMPOP 1 s MIN",
            "ZRANDMEMBER s 3",
            "ZUNION 1 s",
            "ZSCAN s 0",
        ] {
            assert_eq!(t.run(cmd), WRONGTYPE, "{cmd}");
        }
        assert_eq!(t.run("TYPE s"), "+string\r\n");
        t.run("ZADD z 1 a");
        assert_eq!(t.run("TYPE z"), "+zset\r\n");
    }

    #[test]
    fn blocking_pops_serve_or_block() {
        let mut t = TestShard::new();
        assert_eq!(t.run("BZPOPMIN a b 0"), "(blocked)");
        assert_eq!(t.run("BZMPOP 1.5 2 a b MAX"), "(blocked)");
        t.run("ZADD b 1 x 2 y");
        assert_eq!(
            t.run("BZPOPMAX a b 0"),
            "*3\r\n$1\r\nb\r\n$1\r\ny\r\n$1\r\n2\r\n"
        );
        assert_eq!(
            t.run("BZMPOP 0 2 a b MIN COUNT 5"),
            "*2\r\n$1\r\nb\r\n*1\r\n*2\r\n$1\r\nx\r\n$1\r\n1\r\n"
        );
        assert_eq!(t.run("EXISTS b"), ":0\r\n");
        assert_eq!(t.run("BZPOPMIN a -1"), "-ERR timeout is negative\r\n");
        assert_eq!(
            t.run("BZMPOP x 1 a MIN"),
            "-ERR timeout is not a float or out of range\r\n"
        );
        // Arguments are checked before the timeout, as in Redis.
        assert_eq!(
            t.run("BZMPOP x 0 a MIN"),
            "-ERR numkeys should be greater than 0\r\n"
        );
        t.run("SET s v");
        assert_eq!(t.run("BZPOPMIN a s 0"), WRONGTYPE);
    }

    #[test]
    fn encodings_convert_one_way() {
        let mut t = TestShard::new();
        t.shard.config.zset_max_listpack_entries = 3;
        t.shard.config.zset_max_listpack_value = 5;
        t.run("ZADD z 1 a 2 b 3 c");
        assert_eq!(encoding(&mut t, "z"), "listpack");
        t.run("ZADD z 4 d");
        assert_eq!(encoding(&mut t, "z"), "skiplist");
        t.run("ZREM z a b c");
        assert_eq!(encoding(&mut t, "z"), "skiplist");
        t.run("ZADD long 1 abcdef");
        assert_eq!(encoding(&mut t, "long"), "skiplist");
        t.run("ZADD short 1 abcde");
        assert_eq!(encoding(&mut t, "short"), "listpack");
        // A stored result picks its encoding from its size.
        t.run("ZUNIONSTORE u 1 z");
        assert_eq!(encoding(&mut t, "u"), "listpack");
        t.shard.config.zset_max_listpack_entries = 0;
        t.run("ZADD none 1 a");
        assert_eq!(encoding(&mut t, "none"), "skiplist");
        // SORT converts a listpack, as Redis does.
        t.shard.config.zset_max_listpack_entries = 128;
        t.run("ZADD s 1 2 3 4");
        assert_eq!(encoding(&mut t, "s"), "listpack");
        assert_eq!(t.run("SORT s"), bulks(&["2", "4"]));
        assert_eq!(encoding(&mut t, "s"), "skiplist");
    }

    #[test]
    fn zscan_walks_the_big_encoding() {
        let mut t = TestShard::new();
        let members: Vec<String> = (0..300).map(|i| format!("{i} m{i}")).collect();
        t.run(&format!("ZADD z {}", members.join(" ")));
        assert_eq!(encoding(&mut t, "z"), "skiplist");
        let mut seen = std::collections::HashSet::new();
        let mut cursor = "0".to_string();
        for round in 0.. {
            assert!(round < 200, "ZSCAN did not finish");
            let reply = t.run(&format!("ZSCAN z {cursor} COUNT 7"));
            let lines: Vec<&str> = reply.split("\r\n").collect();
            cursor = lines[2].to_string();
            // Members and scores alternate after the inner array header.
            let items: Vec<&str> = lines[4..].iter().skip(1).step_by(2).copied().collect();
            for pair in items.chunks(2) {
                if let [m, s] = pair {
                    assert_eq!(format!("m{s}"), *m);
                    seen.insert(m.to_string());
                }
            }
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 300);
        let reply = t.run("ZSCAN z 0 MATCH m1?? COUNT 1000");
        assert!(reply.starts_with("*2\r\n$1\r\n0\r\n*200\r\n"), "{reply}");
    }

    #[test]
    fn resp3_shapes() {
        let mut t = TestShard::new();
        t.proto = Proto::Resp3;
        t.run("ZADD z 1 a 2.5 b");
        assert_eq!(
            t.run("ZRANGE z 0 -1 WITHSCORES"),
            "*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n"
        );
        assert_eq!(t.run("ZSCORE z b"), ",2.5\r\n");
        assert_eq!(t.run("ZSCORE z x"), "_\r\n");
        assert_eq!(t.run("ZPOPMIN z"), "*2\r\n$1\r\na\r\n,1\r\n");
        assert_eq!(t.run("ZPOPMIN z 1"), "*1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n");
        assert_eq!(t.run("ZMPOP 1 z MIN"), "_\r\n");
        assert_eq!(t.run("ZADD z NX INCR 1 a"), ",1\r\n");
        assert_eq!(t.run("ZADD z NX INCR 1 a"), "_\r\n");
    }

    #[test]
    fn scores_and_ranges_parse_as_redis() {
        let mut t = TestShard::new();
        assert_eq!(t.run("ZADD z 0x10 a"), ":1\r\n");
        assert_eq!(t.run("ZSCORE z a"), bulk("16"));
        assert_eq!(
            t.run("ZADD z 1e400 b"),
            "-ERR value is not a valid float\r\n"
        );
        assert_eq!(t.run("ZCOUNT z ( +inf"), ":1\r\n");
        assert_eq!(t.run("ZCOUNT z [1 2"), "-ERR min or max is not a float\r\n");
        assert_eq!(
            t.run("ZLEXCOUNT z a +"),
            "-ERR min or max not valid string range item\r\n"
        );
        assert_eq!(
            t.run("ZADD z INCR -inf a"),
            ",-inf\r\n".replace(",-inf", "$4\r\n-inf")
        );
        assert_eq!(
            t.run("ZADD z INCR inf a"),
            "-ERR resulting score is not a number (NaN)\r\n"
        );
    }
}
