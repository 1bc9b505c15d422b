//! Keyspace commands (Redis's `db.c`, `expire.c` and `object.c`'s OBJECT): deleting, renaming,
//! copying and moving keys, expiry deadlines, key listing (KEYS, SCAN, RANDOMKEY) and
//! introspection (TYPE, OBJECT).
//!
//! Every command here works on the one shard it runs on. Commands whose keys may live on
//! several shards are routed so that this holds: DEL, UNLINK, EXISTS and TOUCH run per shard
//! and their counts are summed; RENAME, RENAMENX and COPY run on a shard that has been handed
//! copies of every involved key; KEYS and RANDOMKEY run on every shard; SCAN runs on the shard
//! its cursor names (see [`scan_shard_of`]).

use super::spec::{
    acl, flag, kflag, Arg, ArgType, CommandSpec, Group, KeySpec, Merge, Route, Split,
};
use super::Call;
use crate::keyspace::Item;
use crate::limits::DATABASES;
use crate::notify::class;
use crate::resp::Reply;
use crate::types::Value;
use crate::util::{eq_ic, parse_i64};
use crate::{glob, Error, Result, Shard};

const KEYSPACE: CommandSpec = CommandSpec {
    group: Group::Generic,
    acl: acl::KEYSPACE,
    ..CommandSpec::DEFAULT
};

/// The optional NX | XX | GT | LT of the EXPIRE family.
const EXPIRE_CONDITION: Arg = Arg::oneof(
    "condition",
    &[
        Arg::token("nx", "NX"),
        Arg::token("xx", "XX"),
        Arg::token("gt", "GT"),
        Arg::token("lt", "LT"),
    ],
)
.since("7.0.0")
.optional();

const EXPIRE_HISTORY: &[(&str, &str)] = &[("7.0.0", "Added options: `NX`, `XX`, `GT` and `LT`.")];

/// A deadline-setting command's key: read and updated.
const EXPIRE_KEYS: &[KeySpec] = &[KeySpec::one(1, kflag::RW | kflag::UPDATE)];

/// A deadline-reading command's key.
const TTL_KEYS: &[KeySpec] = &[KeySpec::one(1, kflag::RO | kflag::ACCESS)];

/// The one key argument most commands take.
const KEY_ARG: &[Arg] = &[Arg::key("key", 0)];

const EXPIRE_BASE: CommandSpec = CommandSpec {
    arity: -3,
    flags: flag::WRITE | flag::FAST,
    keys: EXPIRE_KEYS,
    history: EXPIRE_HISTORY,
    ..KEYSPACE
};

const TTL_BASE: CommandSpec = CommandSpec {
    arity: 2,
    flags: flag::READONLY | flag::FAST,
    keys: TTL_KEYS,
    args: KEY_ARG,
    ..KEYSPACE
};

/// RENAME and RENAMENX: the source is read and deleted; the destination written.
const RENAME_ARGS: &[Arg] = &[Arg::key("key", 0), Arg::key("newkey", 1)];

/// An OBJECT subcommand that inspects the key in argument 2.
const OBJECT_SUB: CommandSpec = CommandSpec {
    arity: 3,
    flags: flag::READONLY,
    keys: &[KeySpec::one(2, kflag::RO)],
    since: "2.2.3",
    tips: &["nondeterministic_output"],
    args: KEY_ARG,
    ..KEYSPACE
};

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "del",
        arity: -2,
        flags: flag::WRITE,
        keys: &[KeySpec::range(1, -1, 1, kflag::RM | kflag::DELETE)],
        route: Route::Keys(Split::PerKey(Merge::Sum)),
        run: Some(del),
        summary: "Deletes one or more keys.",
        complexity: "O(N) where N is the number of keys that will be removed. When a key to remove holds a value other than a string, the individual complexity for this key is O(M) where M is the number of elements in the list, set, sorted set or hash. Removing a single key that holds a string value is O(1).",
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        args: &[Arg::key("key", 0).multiple()],
        ..KEYSPACE
    },
    CommandSpec {
        name: "unlink",
        arity: -2,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::range(1, -1, 1, kflag::RM | kflag::DELETE)],
        route: Route::Keys(Split::PerKey(Merge::Sum)),
        run: Some(del),
        summary: "Deletes one or more keys, leaving the memory to be reclaimed off the request path.",
        since: "4.0.0",
        complexity: "O(1) for each key removed regardless of its size. Then the command does O(N) work in a different thread in order to reclaim memory, where N is the number of allocations the deleted objects where composed of.",
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        args: &[Arg::key("key", 0).multiple()],
        ..KEYSPACE
    },
    CommandSpec {
        name: "exists",
        arity: -2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::range(1, -1, 1, kflag::RO)],
        route: Route::Keys(Split::PerKey(Merge::Sum)),
        run: Some(exists),
        summary: "Counts how many of the given keys exist.",
        since: "1.0.0",
        complexity: "O(N) where N is the number of keys to check.",
        history: &[("3.0.3", "Accepts multiple `key` arguments.")],
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        args: &[Arg::key("key", 0).multiple()],
        ..KEYSPACE
    },
    CommandSpec {
        name: "touch",
        arity: -2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::range(1, -1, 1, kflag::RO)],
        route: Route::Keys(Split::PerKey(Merge::Sum)),
        run: Some(exists),
        summary: "Marks keys as just accessed and counts how many of them exist.",
        since: "3.2.1",
        complexity: "O(N) where N is the number of keys that will be touched.",
        tips: &["request_policy:multi_shard", "response_policy:agg_sum"],
        args: &[Arg::key("key", 0).multiple()],
        ..KEYSPACE
    },
    CommandSpec {
        name: "type",
        arity: 2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO)],
        run: Some(type_of),
        summary: "Names the data type of the value under a key, or none.",
        args: KEY_ARG,
        ..KEYSPACE
    },
    CommandSpec {
        name: "expire",
        run: Some(expire),
        summary: "Gives a key a time to live, counted in seconds from now.",
        args: &[Arg::key("key", 0), Arg::new("seconds", ArgType::Integer), EXPIRE_CONDITION],
        ..EXPIRE_BASE
    },
    CommandSpec {
        name: "pexpire",
        run: Some(pexpire),
        summary: "Gives a key a time to live, counted in milliseconds from now.",
        since: "2.6.0",
        args: &[Arg::key("key", 0), Arg::new("milliseconds", ArgType::Integer), EXPIRE_CONDITION],
        ..EXPIRE_BASE
    },
    CommandSpec {
        name: "expireat",
        run: Some(expireat),
        summary: "Makes a key expire at a given Unix time in seconds.",
        since: "1.2.0",
        args: &[Arg::key("key", 0), Arg::new("unix-time-seconds", ArgType::UnixTime), EXPIRE_CONDITION],
        ..EXPIRE_BASE
    },
    CommandSpec {
        name: "pexpireat",
        run: Some(pexpireat),
        summary: "Makes a key expire at a given Unix time in milliseconds.",
        since: "2.6.0",
        args: &[Arg::key("key", 0), Arg::new("unix-time-milliseconds", ArgType::UnixTime), EXPIRE_CONDITION],
        ..EXPIRE_BASE
    },
    CommandSpec {
        name: "ttl",
        run: Some(ttl),
        summary: "Tells how many seconds a key has left to live.",
        history: &[("2.8.0", "Added the -2 reply.")],
        tips: &["nondeterministic_output"],
        ..TTL_BASE
    },
    CommandSpec {
        name: "pttl",
        run: Some(pttl),
        summary: "Tells how many milliseconds a key has left to live.",
        since: "2.6.0",
        history: &[("2.8.0", "Added the -2 reply.")],
        tips: &["nondeterministic_output"],
        ..TTL_BASE
    },
    CommandSpec {
        name: "expiretime",
        run: Some(expiretime),
        summary: "Tells the Unix time, in seconds, at which a key will expire.",
        since: "7.0.0",
        ..TTL_BASE
    },
    CommandSpec {
        name: "pexpiretime",
        run: Some(pexpiretime),
        summary: "Tells the Unix time, in milliseconds, at which a key will expire.",
        since: "7.0.0",
        ..TTL_BASE
    },
    CommandSpec {
        name: "persist",
        arity: 2,
        flags: flag::WRITE | flag::FAST,
        keys: EXPIRE_KEYS,
        run: Some(persist),
        summary: "Clears a key's expiry so that it lives until deleted.",
        since: "2.2.0",
        args: KEY_ARG,
        ..KEYSPACE
    },
    CommandSpec {
        name: "rename",
        arity: 3,
        flags: flag::WRITE,
        keys: &[
            KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::DELETE),
            KeySpec::one(2, kflag::OW | kflag::UPDATE),
        ],
        route: Route::Keys(Split::Gather),
        run: Some(rename),
        summary: "Gives a key a new name, replacing any key that had that name.",
        args: RENAME_ARGS,
        ..KEYSPACE
    },
    CommandSpec {
        name: "renamenx",
        arity: 3,
        flags: flag::WRITE | flag::FAST,
        keys: &[
            KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::DELETE),
            KeySpec::one(2, kflag::OW | kflag::INSERT),
        ],
        route: Route::Keys(Split::Gather),
        run: Some(renamenx),
        summary: "Gives a key a new name, unless a key with that name exists.",
        history: &[(
            "3.2.0",
            "The command no longer returns an error when source and destination names are the same.",
        )],
        args: RENAME_ARGS,
        ..KEYSPACE
    },
    CommandSpec {
        name: "copy",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS), KeySpec::one(2, kflag::OW | kflag::UPDATE)],
        route: Route::Keys(Split::Gather),
        run: Some(copy),
        summary: "Duplicates a key's value and expiry under another name, optionally in another database.",
        since: "6.2.0",
        complexity: "O(N) worst case for collections, where N is the number of nested items. O(1) for string values.",
        args: &[
            Arg::key("source", 0),
            Arg::key("destination", 1),
            Arg::new("destination-db", ArgType::Integer).with_token("DB").optional(),
            Arg::token("replace", "REPLACE").optional(),
        ],
        ..KEYSPACE
    },
    CommandSpec {
        name: "move",
        arity: 3,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::ACCESS | kflag::UPDATE)],
        run: Some(move_key),
        summary: "Transfers a key to another database of the server.",
        args: &[Arg::key("key", 0), Arg::new("db", ArgType::Integer)],
        ..KEYSPACE
    },
    CommandSpec {
        name: "keys",
        arity: 2,
        flags: flag::READONLY,
        acl: acl::KEYSPACE | acl::DANGEROUS,
        route: Route::AllShards(Merge::Concat),
        run: Some(keys),
        summary: "Lists every key whose name matches a glob-style pattern.",
        complexity: "O(N) with N being the number of keys in the database, under the assumption that the key names in the database and the given pattern have limited length.",
        tips: &["request_policy:all_shards", "nondeterministic_output_order"],
        args: &[Arg::new("pattern", ArgType::Pattern)],
        ..KEYSPACE
    },
    CommandSpec {
        name: "scan",
        arity: -2,
        flags: flag::READONLY,
        route: Route::ScanCursor,
        run: Some(scan),
        summary: "Walks the keyspace a few keys at a time, resuming from a cursor.",
        since: "2.8.0",
        complexity: "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection.",
        history: &[("6.0.0", "Added the `TYPE` subcommand.")],
        tips: &["nondeterministic_output", "request_policy:special"],
        args: &[
            Arg::new("cursor", ArgType::Integer),
            Arg::new("pattern", ArgType::Pattern).with_token("MATCH").optional(),
            Arg::new("count", ArgType::Integer).with_token("COUNT").optional(),
            Arg::new("type", ArgType::String).with_token("TYPE").since("6.0.0").optional(),
        ],
        ..KEYSPACE
    },
    CommandSpec {
        name: "randomkey",
        arity: 1,
        flags: flag::READONLY,
        route: Route::AllShards(Merge::AnyNonNull),
        run: Some(randomkey),
        summary: "Picks a key of the selected database at random.",
        tips: &["request_policy:all_shards", "nondeterministic_output"],
        ..KEYSPACE
    },
    CommandSpec {
        name: "object",
        arity: -2,
        group: Group::Generic,
        summary: "Groups the subcommands that inspect how a key's value is stored.",
        since: "2.2.3",
        complexity: "Depends on subcommand.",
        subcommands: &[
            CommandSpec {
                name: "encoding",
                run: Some(object_encoding),
                summary: "Names the internal representation of a key's value.",
                ..OBJECT_SUB
            },
            CommandSpec {
                name: "freq",
                run: Some(object_freq),
                summary: "Reports a key's logarithmic access-frequency counter (LFU policies only).",
                since: "4.0.0",
                ..OBJECT_SUB
            },
            CommandSpec {
                name: "help",
                arity: 2,
                flags: flag::LOADING | flag::STALE,
                keys: &[],
                run: Some(object_help),
                summary: "Lists the OBJECT subcommands.",
                since: "6.2.0",
                tips: &[],
                args: &[],
                ..OBJECT_SUB
            },
            CommandSpec {
                name: "idletime",
                run: Some(object_idletime),
                summary: "Reports how many seconds ago a key was last read or written.",
                ..OBJECT_SUB
            },
            CommandSpec {
                name: "refcount",
                run: Some(object_refcount),
                summary: "Reports how many references point at a key's value object.",
                ..OBJECT_SUB
            },
        ],
        ..CommandSpec::DEFAULT
    },
];

/// The live entry under `key`, counting a keyspace hit or miss as Redis's read lookups do.
fn lookup_read<'s>(sh: &'s mut Shard, db: usize, key: &[u8], now_ms: u64) -> Option<&'s Item> {
    let found = sh.stats.count_lookup(sh.dbs[db].get_read(key, now_ms));
    found
}

/// [`lookup_read`] without recording an access in the key's clock, as TYPE, EXISTS and the TTL
/// family look keys up (Redis's `LOOKUP_NOTOUCH`).
fn lookup_untouched<'s>(sh: &'s mut Shard, db: usize, key: &[u8], now_ms: u64) -> Option<&'s Item> {
    let found = sh
        .stats
        .count_lookup(sh.dbs[db].get_untouched(key, now_ms, true));
    found
}

/// The live entry under `key` for OBJECT: counted like a read, but a miss fires no `keymiss`
/// (Redis looks up with `LOOKUP_NONOTIFY` there), and the access is not recorded.
fn lookup_object<'s>(sh: &'s mut Shard, db: usize, key: &[u8], now_ms: u64) -> Option<&'s Item> {
    let found = sh
        .stats
        .count_lookup(sh.dbs[db].get_untouched(key, now_ms, false));
    found
}

/// Unix milliseconds as a signed number, as Redis keeps them. Deadlines are stored only from
/// non-negative `i64` values, and clocks are far below `i64::MAX`, so this never saturates.
fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// DEL key [key ...] and UNLINK key [key ...]. Memory is freed at once in both.
fn del(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let mut n = 0;
    for key in &c.argv[1..] {
        let db = &mut sh.dbs[c.db];
        if db.contains(key, c.now_ms) {
            db.remove(key);
            n += 1;
            sh.notify(class::GENERIC, "del", c.db, key);
        }
    }
    sh.stats.dirty += n as u64;
    c.out.int(n);
    Ok(())
}

/// EXISTS key [key ...] and TOUCH key [key ...]: both count the live keys, a key named twice
/// counting twice. TOUCH records the access in the keys' clocks; EXISTS does not.
fn exists(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let touch = eq_ic(c.argv[0], "touch");
    let n = c.argv[1..]
        .iter()
        .filter(|k| match touch {
            true => lookup_read(sh, c.db, k, c.now_ms).is_some(),
            false => lookup_untouched(sh, c.db, k, c.now_ms).is_some(),
        })
        .count();
    c.out.int(n as i64);
    Ok(())
}

/// TYPE key
fn type_of(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let name =
        lookup_untouched(sh, c.db, c.argv[1], c.now_ms).map_or("none", |e| e.value.type_name());
    c.out.simple(name);
    Ok(())
}

/// The NX | XX | GT | LT condition of the EXPIRE family.
#[derive(Debug, Default, Clone, Copy)]
struct ExpireCond {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl ExpireCond {
    /// Parses the options after the time argument, with Redis's errors and their precedence:
    /// an unknown option first, then incompatible pairs.
    fn parse(opts: &[&[u8]]) -> Result<ExpireCond> {
        let mut f = ExpireCond::default();
        for opt in opts {
            if eq_ic(opt, "nx") {
                f.nx = true;
            } else if eq_ic(opt, "xx") {
                f.xx = true;
            } else if eq_ic(opt, "gt") {
                f.gt = true;
            } else if eq_ic(opt, "lt") {
                f.lt = true;
            } else {
                // Redis prints the option as a C string: it ends at the first NUL.
                let shown = opt.split(|&b| b == 0).next().unwrap_or_default();
                return Err(Error::err(format!(
                    "Unsupported option {}",
                    String::from_utf8_lossy(shown)
                )));
            }
        }
        if f.nx && (f.xx || f.gt || f.lt) {
            return Err(Error::err(
                "NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if f.gt && f.lt {
            return Err(Error::err(
                "GT and LT options at the same time are not compatible",
            ));
        }
        Ok(f)
    }

    /// Whether a key whose deadline is `current` (`None`: it has none) may get deadline `when`.
    /// A key without a deadline counts as living forever: GT never beats it, LT always does.
    fn allows(self, current: Option<i64>, when: i64) -> bool {
        !((self.nx && current.is_some())
            || (self.xx && current.is_none())
            || (self.gt && current.is_none_or(|cur| when <= cur))
            || (self.lt && current.is_some_and(|cur| when >= cur)))
    }
}

/// The deadline, in Unix milliseconds, that an EXPIRE-family time argument names: `arg` in
/// units of `unit_ms`, added to `base_ms` (now, or 0 for absolute times). Negative results are
/// allowed (they delete the key); overflow is Redis's "invalid expire time" error.
fn expire_deadline(arg: &[u8], unit_ms: i64, base_ms: i64, cmd: &str) -> Result<i64> {
    let n = parse_i64(arg).ok_or(Error::NotInteger)?;
    let invalid = || Error::err(format!("invalid expire time in '{cmd}' command"));
    let ms = n.checked_mul(unit_ms).ok_or_else(invalid)?;
    ms.checked_add(base_ms).ok_or_else(invalid)
}

/// The shared body of EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT: `key time [NX | XX | GT | LT]`.
/// `cmd` is the name errors use; a deadline not after now deletes the key (and still answers 1).
fn expire_generic(
    sh: &mut Shard,
    c: &mut Call,
    cmd: &str,
    unit_ms: i64,
    absolute: bool,
) -> Result<()> {
    let cond = ExpireCond::parse(c.argv.get(3..).unwrap_or_default())?;
    let now_ms = ms_i64(c.now_ms);
    let when = expire_deadline(c.argv[2], unit_ms, if absolute { 0 } else { now_ms }, cmd)?;
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    if db.get(key, c.now_ms).is_none() {
        c.out.int(0);
        return Ok(());
    }
    if !cond.allows(db.expire_at(key).map(ms_i64), when) {
        c.out.int(0);
        return Ok(());
    }
    // The effect is logged as an absolute deadline, or as the deletion, whatever the form and
    // condition of the command (Redis logs PEXPIREAT, or DEL for a deadline already past).
    if when <= now_ms {
        db.remove(key);
        sh.notify(class::GENERIC, "del", c.db, key);
        sh.rewrite(c.db, &[b"DEL", key]);
    } else {
        // `when` is above `now_ms`, which is not negative, so the conversion is exact.
        db.set_expire(key, Some(when.unsigned_abs()));
        sh.notify(class::GENERIC, "expire", c.db, key);
        if sh.propagating() {
            let mut at = itoa::Buffer::new();
            sh.rewrite(c.db, &[b"PEXPIREAT", key, at.format(when).as_bytes()]);
        }
    }
    sh.stats.dirty += 1;
    c.out.int(1);
    Ok(())
}

/// EXPIRE key seconds [NX | XX | GT | LT]
fn expire(sh: &mut Shard, c: &mut Call) -> Result<()> {
    expire_generic(sh, c, "expire", 1000, false)
}

/// PEXPIRE key milliseconds [NX | XX | GT | LT]
fn pexpire(sh: &mut Shard, c: &mut Call) -> Result<()> {
    expire_generic(sh, c, "pexpire", 1, false)
}

/// EXPIREAT key unix-time-seconds [NX | XX | GT | LT]
fn expireat(sh: &mut Shard, c: &mut Call) -> Result<()> {
    expire_generic(sh, c, "expireat", 1000, true)
}

/// PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]
fn pexpireat(sh: &mut Shard, c: &mut Call) -> Result<()> {
    expire_generic(sh, c, "pexpireat", 1, true)
}

/// The shared body of TTL, PTTL, EXPIRETIME and PEXPIRETIME: -2 for a missing key, -1 for a
/// key without a deadline, else the time left (or the deadline), in ms or rounded to seconds.
fn ttl_generic(sh: &mut Shard, c: &mut Call, in_ms: bool, absolute: bool) -> Result<()> {
    let now_ms = c.now_ms;
    if lookup_untouched(sh, c.db, c.argv[1], now_ms).is_none() {
        c.out.int(-2);
        return Ok(());
    }
    let Some(at_ms) = sh.dbs[c.db].expire_at(c.argv[1]) else {
        c.out.int(-1);
        return Ok(());
    };
    let ms = if absolute {
        at_ms
    } else {
        at_ms.saturating_sub(now_ms)
    };
    // Deadlines fit in i64, so adding 500 cannot overflow u64.
    let n = if in_ms {
        ms
    } else {
        ms.saturating_add(500) / 1000
    };
    c.out.int(ms_i64(n));
    Ok(())
}

/// TTL key
fn ttl(sh: &mut Shard, c: &mut Call) -> Result<()> {
    ttl_generic(sh, c, false, false)
}

/// PTTL key
fn pttl(sh: &mut Shard, c: &mut Call) -> Result<()> {
    ttl_generic(sh, c, true, false)
}

/// EXPIRETIME key
fn expiretime(sh: &mut Shard, c: &mut Call) -> Result<()> {
    ttl_generic(sh, c, false, true)
}

/// PEXPIRETIME key
fn pexpiretime(sh: &mut Shard, c: &mut Call) -> Result<()> {
    ttl_generic(sh, c, true, true)
}

/// PERSIST key
fn persist(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    let had_deadline = db.get(key, c.now_ms).is_some() && db.expire_at(key).is_some();
    if had_deadline {
        db.set_expire(key, None);
        sh.stats.dirty += 1;
        sh.notify(class::GENERIC, "persist", c.db, key);
    }
    c.out.int(had_deadline as i64);
    Ok(())
}

/// The shared body of RENAME and RENAMENX. The value keeps its deadline under the new name.
fn rename_generic(sh: &mut Shard, c: &mut Call, nx: bool) -> Result<()> {
    let (src, dst) = (c.argv[1], c.argv[2]);
    let db = &mut sh.dbs[c.db];
    if !db.contains(src, c.now_ms) {
        return Err(Error::NoSuchKey);
    }
    let renamed = if src == dst {
        // Renaming a key to itself changes nothing; RENAMENX reports that nothing was renamed.
        !nx
    } else if nx && db.contains(dst, c.now_ms) {
        false
    } else {
        let entry = db.remove(src).ok_or(Error::NoSuchKey)?;
        // The old destination goes first, so the key is created anew (Redis's dbAdd).
        db.remove(dst);
        db.insert(dst, entry);
        sh.stats.dirty += 1;
        sh.notify(class::GENERIC, "rename_from", c.db, src);
        sh.notify(class::GENERIC, "rename_to", c.db, dst);
        true
    };
    if nx {
        c.out.int(renamed as i64);
    } else {
        c.out.ok();
    }
    Ok(())
}

/// RENAME key newkey
fn rename(sh: &mut Shard, c: &mut Call) -> Result<()> {
    rename_generic(sh, c, false)
}

/// RENAMENX key newkey
fn renamenx(sh: &mut Shard, c: &mut Call) -> Result<()> {
    rename_generic(sh, c, true)
}

/// A database index argument of COPY and MOVE, read as Redis's `getIntFromObjectOrReply`
/// then checked against the number of databases.
fn db_index(arg: &[u8]) -> Result<usize> {
    let n = parse_i64(arg).ok_or(Error::NotInteger)?;
    if i32::try_from(n).is_err() {
        return Err(Error::err(
            "value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    usize::try_from(n)
        .ok()
        .filter(|&i| i < DATABASES)
        .ok_or(Error::DbIndexOutOfRange)
}

/// COPY source destination [DB destination-db] [REPLACE]
fn copy(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let mut a = c.args(3);
    let (mut dst_db, mut replace) = (c.db, false);
    while let Some(word) = a.next() {
        if eq_ic(word, "replace") {
            replace = true;
        } else if eq_ic(word, "db") && a.remaining() >= 1 {
            dst_db = db_index(a.next_bytes()?)?;
        } else {
            return Err(Error::Syntax);
        }
    }
    if crate::keyspace::cluster_mode() && (c.db != 0 || dst_db != 0) {
        return Err(Error::err(
            "Copying to another database is not allowed in cluster mode",
        ));
    }
    let (src, dst) = (c.argv[1], c.argv[2]);
    if dst_db == c.db && src == dst {
        return Err(Error::SameObject);
    }
    if lookup_read(sh, c.db, src, c.now_ms).is_none() {
        c.out.int(0);
        return Ok(());
    }
    let Some(entry) = sh.dbs[c.db].get_entry(src, c.now_ms) else {
        c.out.int(0);
        return Ok(());
    };
    let target = &mut sh.dbs[dst_db];
    if !replace && target.contains(dst, c.now_ms) {
        c.out.int(0);
        return Ok(());
    }
    target.remove(dst);
    target.insert(dst, entry);
    sh.stats.dirty += 1;
    sh.notify(class::GENERIC, "copy_to", dst_db, dst);
    c.out.int(1);
    Ok(())
}

/// MOVE key db
fn move_key(sh: &mut Shard, c: &mut Call) -> Result<()> {
    if crate::keyspace::cluster_mode() {
        return Err(Error::err("MOVE is not allowed in cluster mode"));
    }
    let dst_db = db_index(c.argv[2])?;
    if dst_db == c.db {
        return Err(Error::SameObject);
    }
    let key = c.argv[1];
    let movable = sh.dbs[c.db].contains(key, c.now_ms) && !sh.dbs[dst_db].contains(key, c.now_ms);
    let entry = if movable {
        sh.dbs[c.db].remove(key)
    } else {
        None
    };
    let Some(entry) = entry else {
        c.out.int(0);
        return Ok(());
    };
    sh.dbs[dst_db].insert(key, entry);
    sh.stats.dirty += 1;
    sh.notify(class::GENERIC, "move_from", c.db, key);
    sh.notify(class::GENERIC, "move_to", dst_db, key);
    c.out.int(1);
    Ok(())
}

/// Whether a key passes a MATCH pattern. `*` alone matches every key, the empty one included,
/// as in Redis (the glob matcher itself does not match `*` against the empty string).
pub(crate) fn pattern_allows(pattern: &[u8], key: &[u8]) -> bool {
    pattern == b"*" || glob::matches(pattern, key, false)
}

/// KEYS pattern — this shard's matching keys; the server concatenates the shards' replies.
fn keys(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let pattern = c.argv[1];
    let mut body = Vec::new();
    let mut out = Reply::new(&mut body, c.out.proto);
    let mut n = 0;
    sh.dbs[c.db].for_each_key(c.now_ms, |k, _, _| {
        if pattern_allows(pattern, k) {
            out.bulk(k);
            n += 1;
        }
    });
    c.out.array(n);
    c.out.raw(&body);
    Ok(())
}

/// Low bits of a SCAN cursor that name the shard; the bits above are the shard-local position.
const SCAN_SHARD_BITS: u32 = 10;
/// The shard-local position that means "from the top": above any database's size.
const SCAN_START: u64 = 1 << 50;

/// Parses a SCAN cursor as Redis does with `strtoul`: an optional sign (a `-` negates modulo
/// 2^64), decimal digits, nothing after them; no leading space; the empty string is 0; values
/// past `u64::MAX` are invalid. Redis reads the argument as a C string, so a NUL ends it.
pub(crate) fn parse_cursor(arg: &[u8]) -> Option<u64> {
    let s = arg.split(|&b| b == 0).next().unwrap_or_default();
    let Some((&first, rest)) = s.split_first() else {
        return Some(0);
    };
    let (negative, digits) = match first {
        b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => return None,
        b'-' => (true, rest),
        b'+' => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { v.wrapping_neg() } else { v })
}

/// The shard a SCAN with this cursor argument must run on, or `None` for an invalid cursor (the
/// server then runs it on any shard, which replies with the error).
///
/// A cursor is `(position << 10) | shard`: `position` counts the entries of that shard's
/// database still to visit, and cursor 0 starts at shard 0. A client may send any number; the
/// server is to map a shard id at or above its shard count onto an existing shard (e.g. modulo
/// the count). The shard that runs the scan continues with its own id whatever the low bits say.
pub fn scan_shard_of(cursor_arg: &[u8]) -> Option<usize> {
    parse_cursor(cursor_arg).map(|c| (c & ((1 << SCAN_SHARD_BITS) - 1)) as usize)
}

/// SCAN's options.
struct ScanOpts<'a> {
    count: usize,
    /// `None` when there is no MATCH.
    pattern: Option<&'a [u8]>,
    type_name: Option<&'a [u8]>,
}

/// Parses `[MATCH pattern] [COUNT count] [TYPE type]`, in any order, later ones winning.
fn parse_scan_opts<'a>(c: &Call<'a>) -> Result<ScanOpts<'a>> {
    let mut o = ScanOpts {
        count: 10,
        pattern: None,
        type_name: None,
    };
    let mut a = c.args(2);
    while let Some(word) = a.next() {
        let value = a.next_bytes()?;
        if eq_ic(word, "count") {
            let n = parse_i64(value).ok_or(Error::NotInteger)?;
            if n < 1 {
                return Err(Error::Syntax);
            }
            o.count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if eq_ic(word, "match") {
            o.pattern = Some(value);
        } else if eq_ic(word, "type") {
            o.type_name = Some(value);
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(o)
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type] — one step over this shard's keys.
fn scan(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let cursor = parse_cursor(c.argv[1]).ok_or_else(|| Error::err("invalid cursor"))?;
    let o = parse_scan_opts(c)?;
    debug_assert!(
        sh.nshards <= 1 << SCAN_SHARD_BITS,
        "shard ids must fit the cursor"
    );
    let pos = if cursor == 0 {
        SCAN_START
    } else {
        cursor >> SCAN_SHARD_BITS
    };
    let mut body = Vec::new();
    let mut out = Reply::new(&mut body, c.out.proto);
    let (mut n, mut type_checks) = (0, 0);
    let next_pos = sh.dbs[c.db].scan(pos, o.count, c.now_ms, |k, e| {
        if o.pattern.is_some_and(|p| !pattern_allows(p, k)) {
            return;
        }
        if let Some(t) = o.type_name {
            // Redis looks each candidate up to read its type, counting a keyspace hit.
            type_checks += 1;
            if !e.value.type_name().as_bytes().eq_ignore_ascii_case(t) {
                return;
            }
        }
        out.bulk(k);
        n += 1;
    });
    sh.stats.keyspace_hits += type_checks;
    let next = if next_pos > 0 {
        (next_pos << SCAN_SHARD_BITS) | sh.id as u64
    } else if sh.id + 1 < sh.nshards {
        (SCAN_START << SCAN_SHARD_BITS) | (sh.id + 1) as u64
    } else {
        0
    };
    c.out.array(2);
    c.out.bulk(itoa::Buffer::new().format(next).as_bytes());
    c.out.array(n);
    c.out.raw(&body);
    Ok(())
}

/// RANDOMKEY — a random key of this shard, or null; the server keeps any non-null reply.
fn randomkey(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match sh.dbs[c.db].random_key(&mut sh.rng, c.now_ms) {
        Some(k) => c.out.bulk(&k),
        None => c.out.null(),
    }
    Ok(())
}

/// OBJECT ENCODING key
fn object_encoding(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match lookup_object(sh, c.db, c.argv[2], c.now_ms) {
        Some(e) => c.out.bulk(e.value.encoding().as_bytes()),
        None => c.out.null(),
    }
    Ok(())
}

/// The reference count Redis would report for a value: only strings are ever shared.
pub fn refcount(value: &Value) -> i64 {
    #[allow(unreachable_patterns)]
    match value {
        Value::Str(s) => s.refcount(),
        _ => 1,
    }
}

/// OBJECT REFCOUNT key
fn object_refcount(sh: &mut Shard, c: &mut Call) -> Result<()> {
    match lookup_object(sh, c.db, c.argv[2], c.now_ms) {
        Some(e) => c.out.int(refcount(&e.value)),
        None => c.out.null(),
    }
    Ok(())
}

/// OBJECT FREQ key — the logarithmic access counter, tracked only under an LFU policy.
fn object_freq(sh: &mut Shard, c: &mut Call) -> Result<()> {
    if lookup_object(sh, c.db, c.argv[2], c.now_ms).is_none() {
        c.out.null();
        return Ok(());
    }
    if !sh.config.memory.policy.lfu() {
        return Err(Error::err(
            "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ));
    }
    let freq = match sh.dbs[c.db].clock_of(c.argv[2]) {
        Some((clocks, id)) => clocks.freq(id),
        None => crate::evict::LFU_INIT_VAL,
    };
    c.out.int(freq as i64);
    Ok(())
}

/// OBJECT IDLETIME key — seconds since the key was last used. Tracked while an LRU policy is
/// selected; under the others (which keep no clocks, see [`crate::evict`]) every key reads as
/// just used (0). An error under LFU policies, as in Redis.
fn object_idletime(sh: &mut Shard, c: &mut Call) -> Result<()> {
    if lookup_object(sh, c.db, c.argv[2], c.now_ms).is_none() {
        c.out.null();
        return Ok(());
    }
    if sh.config.memory.policy.lfu() {
        return Err(Error::err(
            "An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ));
    }
    let idle_ms = match sh.dbs[c.db].clock_of(c.argv[2]) {
        Some((clocks, id)) => clocks.idle_ms(id, c.now_ms),
        None => 0,
    };
    c.out.int((idle_ms / 1000) as i64);
    Ok(())
}

/// OBJECT HELP
fn object_help(_: &mut Shard, c: &mut Call) -> Result<()> {
    let lines = [
        "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ENCODING <key>",
        "    Return the kind of internal representation used in order to store the value",
        "    associated with a <key>.",
        "FREQ <key>",
        "    Return the access frequency index of the <key>. The returned integer is",
        "    proportional to the logarithm of the recent access frequency of the key.",
        "IDLETIME <key>",
        "    Return the idle time of the <key>, that is the approximated number of",
        "    seconds elapsed since the last access to the key.",
        "REFCOUNT <key>",
        "    Return the number of references of the value associated with the specified",
        "    <key>.",
        "HELP",
        "    Prints this help.",
    ];
    c.out.simples(&lines);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_cursor, scan_shard_of, SCAN_START};
    use crate::shard::testing::TestShard;
    use std::collections::HashSet;

    /// Splits a SCAN reply into its cursor and keys.
    fn scan_reply(reply: &str) -> (u64, Vec<String>) {
        let lines: Vec<&str> = reply.split("\r\n").collect();
        assert_eq!(lines[0], "*2", "{reply}");
        let cursor = lines[2].parse().unwrap();
        let n: usize = lines[3][1..].parse().unwrap();
        let keys = (0..n).map(|i| lines[5 + 2 * i].to_string()).collect();
        (cursor, keys)
    }

    /// The elements of an array-of-bulks reply, sorted.
    fn sorted_bulks(reply: &str) -> Vec<String> {
        let mut v: Vec<String> = reply
            .split("\r\n")
            .skip(2)
            .step_by(2)
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    /// Runs SCAN from cursor 0 until it returns 0; returns every key seen.
    fn scan_all(t: &mut TestShard, opts: &str) -> Vec<String> {
        let (mut cursor, mut all) = (0, Vec::new());
        for _ in 0..10_000 {
            let (next, keys) = scan_reply(&t.run(&format!("SCAN {cursor}{opts}")));
            all.extend(keys);
            cursor = next;
            if cursor == 0 {
                return all;
            }
        }
        panic!("SCAN did not finish");
    }

    #[test]
    fn del_exists_unlink_touch() {
        let mut t = TestShard::new();
        t.run("SET a 1");
        t.run("SET b 2");
        assert_eq!(t.run("EXISTS a b c a"), ":3\r\n");
        assert_eq!(t.run("TOUCH a a c"), ":2\r\n");
        assert_eq!(t.run("DEL a c"), ":1\r\n");
        assert_eq!(t.run("EXISTS a"), ":0\r\n");
        t.run("SET a 1");
        assert_eq!(t.run("UNLINK a nokey a b"), ":2\r\n");
        assert_eq!(t.run("EXISTS a b"), ":0\r\n");
        assert_eq!(
            t.run("UNLINK"),
            "-ERR wrong number of arguments for 'unlink' command\r\n"
        );
        t.run("SET v 1 PX 10");
        t.now_ms += 10;
        assert_eq!(t.run("TOUCH v"), ":0\r\n");
    }

    #[test]
    fn read_lookups_count_hits_and_misses() {
        let mut t = TestShard::new();
        t.run("SET a 1");
        t.run("EXISTS a nokey");
        t.run("TYPE a");
        t.run("TTL nokey");
        t.run("OBJECT ENCODING a");
        t.run("PERSIST a");
        assert_eq!(
            (t.shard.stats.keyspace_hits, t.shard.stats.keyspace_misses),
            (3, 2)
        );
    }

    #[test]
    fn type_of() {
        let mut t = TestShard::new();
        assert_eq!(t.run("TYPE k"), "+none\r\n");
        t.run("SET k v");
        assert_eq!(t.run("TYPE k"), "+string\r\n");
        assert_eq!(t.run_args(&[b"SET", b"", b"x"]), "+OK\r\n");
        assert_eq!(t.run_args(&[b"TYPE", b""]), "+string\r\n");
        t.run("PEXPIRE k 5");
        t.now_ms += 5;
        assert_eq!(t.run("TYPE k"), "+none\r\n");
    }

    #[test]
    fn expire_family_sets_deadlines() {
        let mut t = TestShard::new();
        let now = t.now_ms;
        assert_eq!(t.run("EXPIRE k 10"), ":0\r\n");
        t.run("SET k v");
        assert_eq!(t.run("EXPIRE k 10"), ":1\r\n");
        assert_eq!(t.run("PTTL k"), ":10000\r\n");
        assert_eq!(t.run("PEXPIRE k 1500"), ":1\r\n");
        assert_eq!(t.run("PTTL k"), ":1500\r\n");
        assert_eq!(t.run("TTL k"), ":2\r\n");
        t.now_ms += 1;
        assert_eq!(t.run("TTL k"), ":1\r\n");
        assert_eq!(t.run(&format!("EXPIREAT k {}", now / 1000 + 100)), ":1\r\n");
        assert_eq!(t.run("EXPIRETIME k"), format!(":{}\r\n", now / 1000 + 100));
        assert_eq!(t.run(&format!("PEXPIREAT k {}", now + 1234)), ":1\r\n");
        assert_eq!(t.run("PEXPIRETIME k"), format!(":{}\r\n", now + 1234));
        assert_eq!(
            t.run("EXPIRETIME k"),
            format!(":{}\r\n", (now + 1234 + 500) / 1000)
        );
        t.now_ms = now + 1234;
        assert_eq!(t.run("EXISTS k"), ":0\r\n");
        assert_eq!(t.shard.dbs[0].volatile_len(), 0);
    }

    #[test]
    fn expire_in_the_past_deletes() {
        let mut t = TestShard::new();
        for cmd in [
            "EXPIRE k 0",
            "EXPIRE k -1",
            "PEXPIRE k 0",
            "EXPIREAT k 1",
            "PEXPIREAT k -5",
        ] {
            t.run("SET k v");
            assert_eq!(t.run(cmd), ":1\r\n", "{cmd}");
            assert_eq!(t.run("EXISTS k"), ":0\r\n", "{cmd}");
        }
        t.run("SET k v");
        assert_eq!(t.run(&format!("PEXPIREAT k {}", t.now_ms)), ":1\r\n");
        assert_eq!(t.run("EXISTS k"), ":0\r\n");
        assert_eq!(t.shard.stats.dirty, 12);
    }

    #[test]
    fn expire_conditions() {
        let mut t = TestShard::new();
        t.run("SET k v");
        // A key without a deadline: XX and GT fail, NX and LT succeed.
        assert_eq!(t.run("EXPIRE k 100 XX"), ":0\r\n");
        assert_eq!(t.run("EXPIRE k 100 GT"), ":0\r\n");
        assert_eq!(t.run("EXPIRE k -5 GT"), ":0\r\n");
        assert_eq!(t.run("EXPIRE k 100 LT"), ":1\r\n");
        assert_eq!(t.run("EXPIRE k 100 nx"), ":0\r\n");
        assert_eq!(t.run("EXPIRE k 50 XX GT"), ":0\r\n");
        assert_eq!(t.run("EXPIRE k 100 GT"), ":0\r\n");
        assert_eq!(t.run("EXPIRE k 200 xx gt"), ":1\r\n");
        assert_eq!(t.run("TTL k"), ":200\r\n");
        assert_eq!(t.run("EXPIRE k 300 LT"), ":0\r\n");
        assert_eq!(t.run("EXPIRE k 200 LT"), ":0\r\n");
        assert_eq!(t.run("EXPIRE k 100 LT"), ":1\r\n");
        assert_eq!(t.run("EXPIRE k 10 XX XX"), ":1\r\n");
        assert_eq!(t.run("PERSIST k"), ":1\r\n");
        assert_eq!(t.run("EXPIRE k 10 NX NX"), ":1\r\n");
        assert_eq!(t.run("PERSIST k"), ":1\r\n");
        assert_eq!(t.run("EXPIRE k -5 LT"), ":1\r\n");
        assert_eq!(t.run("EXISTS k"), ":0\r\n");
    }

    #[test]
    fn expire_errors() {
        let mut t = TestShard::new();
        t.run("SET k v");
        let nx = "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n";
        assert_eq!(t.run("EXPIRE k 10 NX XX"), nx);
        assert_eq!(t.run("EXPIRE k 10 gt nx"), nx);
        assert_eq!(t.run("PEXPIRE nokey abc NX LT"), nx);
        assert_eq!(
            t.run("EXPIRE k 10 GT LT"),
            "-ERR GT and LT options at the same time are not compatible\r\n"
        );
        assert_eq!(
            t.run("EXPIRE k 10 NX foo"),
            "-ERR Unsupported option foo\r\n"
        );
        assert_eq!(
            t.run("EXPIRE k abc"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t.run("EXPIRE nokey 1.5"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t.run("EXPIRE k"),
            "-ERR wrong number of arguments for 'expire' command\r\n"
        );
        let bad = |cmd: &str| format!("-ERR invalid expire time in '{cmd}' command\r\n");
        assert_eq!(t.run("EXPIRE k 9223372036854776"), bad("expire"));
        // Fits after ×1000 but not once now is added.
        assert_eq!(t.run("expire k 9223372036854775"), bad("expire"));
        assert_eq!(t.run("EXPIRE k -9223372036854776"), bad("expire"));
        assert_eq!(t.run("PEXPIRE k 9223372036854775807"), bad("pexpire"));
        assert_eq!(t.run("EXPIREAT k 9223372036854776"), bad("expireat"));
        assert_eq!(t.run("TTL k"), ":-1\r\n");
        assert_eq!(t.run("EXPIREAT k 9223372036854775"), ":1\r\n");
        assert_eq!(t.run("PEXPIRETIME k"), ":9223372036854775000\r\n");
        assert_eq!(t.run("PEXPIREAT k 9223372036854775807"), ":1\r\n");
        assert_eq!(t.run("EXPIRETIME k"), ":9223372036854776\r\n");
        assert_eq!(
            t.run("PTTL k"),
            format!(":{}\r\n", i64::MAX as u64 - t.now_ms)
        );
        // The smallest seconds value that fits is allowed, and deletes.
        assert_eq!(t.run("EXPIRE k -9223372036854775"), ":1\r\n");
    }

    #[test]
    fn ttl_family_and_persist() {
        let mut t = TestShard::new();
        for cmd in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
            assert_eq!(t.run(&format!("{cmd} k")), ":-2\r\n");
        }
        t.run("SET k v");
        for cmd in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
            assert_eq!(t.run(&format!("{cmd} k")), ":-1\r\n");
        }
        assert_eq!(t.run("PERSIST k"), ":0\r\n");
        assert_eq!(t.run("PERSIST nokey"), ":0\r\n");
        t.run("PEXPIRE k 499");
        assert_eq!(t.run("TTL k"), ":0\r\n");
        t.run("PEXPIRE k 500");
        assert_eq!(t.run("TTL k"), ":1\r\n");
        assert_eq!(t.run("PERSIST k"), ":1\r\n");
        assert_eq!(t.run("TTL k"), ":-1\r\n");
        assert_eq!(t.shard.dbs[0].volatile_len(), 0);
        t.now_ms += 1_000_000;
        assert_eq!(t.run("EXISTS k"), ":1\r\n");
    }

    #[test]
    fn rename_and_renamenx() {
        let mut t = TestShard::new();
        assert_eq!(t.run("RENAME nokey x"), "-ERR no such key\r\n");
        assert_eq!(t.run("RENAME nokey nokey"), "-ERR no such key\r\n");
        assert_eq!(t.run("RENAMENX nokey nokey"), "-ERR no such key\r\n");
        t.run("SET a 1");
        assert_eq!(t.run("RENAME a a"), "+OK\r\n");
        assert_eq!(t.run("RENAMENX a a"), ":0\r\n");
        t.run("SET b 2");
        assert_eq!(t.run("RENAMENX a b"), ":0\r\n");
        t.run("PEXPIRE a 100000");
        assert_eq!(t.run("RENAME a b"), "+OK\r\n");
        assert_eq!(t.run("EXISTS a"), ":0\r\n");
        assert_eq!(t.run("GET b"), "$1\r\n1\r\n");
        assert_eq!(t.run("PTTL b"), ":100000\r\n");
        assert_eq!(t.run("RENAMENX b c"), ":1\r\n");
        assert_eq!(t.run("PTTL c"), ":100000\r\n");
        // Renaming over a key with a deadline takes the source's (absent) deadline.
        t.run("SET d 4");
        assert_eq!(t.run("RENAME d c"), "+OK\r\n");
        assert_eq!(t.run("TTL c"), ":-1\r\n");
        assert_eq!(t.shard.dbs[0].volatile_len(), 0);
        t.run("PEXPIRE c 5");
        t.now_ms += 5;
        assert_eq!(t.run("RENAME c e"), "-ERR no such key\r\n");
    }

    #[test]
    fn copy() {
        let mut t = TestShard::new();
        t.run("SET b 2");
        t.run("PEXPIRE b 100000");
        let same = "-ERR source and destination objects are the same\r\n";
        assert_eq!(t.run("COPY b b"), same);
        assert_eq!(t.run("COPY b b DB 0"), same);
        assert_eq!(t.run("COPY nokey nokey"), same);
        assert_eq!(t.run("COPY nokey x"), ":0\r\n");
        assert_eq!(t.run("COPY b c DB"), "-ERR syntax error\r\n");
        assert_eq!(t.run("COPY b c foo"), "-ERR syntax error\r\n");
        assert_eq!(
            t.run("COPY b c DB x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("COPY b c DB 16"), "-ERR DB index is out of range\r\n");
        assert_eq!(t.run("COPY b c DB -1"), "-ERR DB index is out of range\r\n");
        let range = "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n";
        assert_eq!(t.run("COPY b c DB 2147483648"), range);
        assert_eq!(t.run("COPY b c REPLACE replace"), ":1\r\n");
        assert_eq!(t.run("PTTL c"), ":100000\r\n");
        assert_eq!(t.run("COPY b c"), ":0\r\n");
        t.run("SET b 3");
        assert_eq!(t.run("COPY b c REPLACE"), ":1\r\n");
        assert_eq!(t.run("GET c"), "$1\r\n3\r\n");
        assert_eq!(t.run("TTL c"), ":-1\r\n");
        assert_eq!(t.run("COPY b b DB 1"), ":1\r\n");
        assert_eq!(t.run("COPY b c DB 1 DB 0"), ":0\r\n");
        t.db = 1;
        assert_eq!(t.run("GET b"), "$1\r\n3\r\n");
        assert_eq!(t.run("EXISTS c"), ":0\r\n");
    }

    #[test]
    fn move_key() {
        let mut t = TestShard::new();
        t.run("SET a 1");
        t.run("PEXPIRE a 5000");
        let same = "-ERR source and destination objects are the same\r\n";
        assert_eq!(t.run("MOVE a 0"), same);
        assert_eq!(t.run("MOVE nokey 0"), same);
        assert_eq!(t.run("MOVE a 16"), "-ERR DB index is out of range\r\n");
        assert_eq!(t.run("MOVE a -1"), "-ERR DB index is out of range\r\n");
        assert_eq!(
            t.run("MOVE a x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t.run("MOVE a 4294967296"),
            "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n"
        );
        assert_eq!(t.run("MOVE nokey 1"), ":0\r\n");
        assert_eq!(t.run("MOVE a 3"), ":1\r\n");
        assert_eq!(t.run("EXISTS a"), ":0\r\n");
        t.run("SET a 2");
        assert_eq!(t.run("MOVE a 3"), ":0\r\n");
        t.db = 3;
        assert_eq!(t.run("GET a"), "$1\r\n1\r\n");
        assert_eq!(t.run("PTTL a"), ":5000\r\n");
    }

    #[test]
    fn keys() {
        let mut t = TestShard::new();
        assert_eq!(t.run("KEYS *"), "*0\r\n");
        t.run_args(&[b"SET", b"", b"x"]);
        for k in ["a", "ab", "b"] {
            t.run(&format!("SET {k} 1"));
        }
        t.run("SET gone 1 PX 1");
        t.now_ms += 1;
        assert_eq!(sorted_bulks(&t.run("KEYS *")), ["", "a", "ab", "b"]);
        assert_eq!(sorted_bulks(&t.run("KEYS ?")), ["a", "b"]);
        assert_eq!(sorted_bulks(&t.run("KEYS a*")), ["a", "ab"]);
        assert_eq!(t.run("KEYS [b]"), "*1\r\n$1\r\nb\r\n");
        assert_eq!(t.run("KEYS nomatch"), "*0\r\n");
    }

    #[test]
    fn cursor_parsing_follows_strtoul() {
        assert_eq!(parse_cursor(b"0"), Some(0));
        assert_eq!(parse_cursor(b""), Some(0));
        assert_eq!(parse_cursor(b"-0"), Some(0));
        assert_eq!(parse_cursor(b"+7"), Some(7));
        assert_eq!(parse_cursor(b"007"), Some(7));
        assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_cursor(b"5\0junk"), Some(5));
        for bad in [
            &b" 0"[..],
            b"0 ",
            b"-",
            b"+",
            b"x",
            b"0x10",
            b"18446744073709551616",
            b"\t1",
            b"- 1",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
        assert_eq!(scan_shard_of(b"0"), Some(0));
        assert_eq!(scan_shard_of(b"x"), None);
        assert_eq!(
            scan_shard_of(format!("{}", (5u64 << 10) | 3).as_bytes()),
            Some(3)
        );
    }

    #[test]
    fn scan_visits_every_key() {
        let mut t = TestShard::new();
        assert_eq!(t.run("SCAN 0"), "*2\r\n$1\r\n0\r\n*0\r\n");
        for i in 0..1000 {
            t.run(&format!("SET k{i} {i}"));
        }
        let seen: HashSet<String> = scan_all(&mut t, " COUNT 7").into_iter().collect();
        assert_eq!(seen.len(), 1000);
        assert_eq!(scan_all(&mut t, "").len(), 1000);
        let (next, keys) = scan_reply(&t.run("SCAN 0 COUNT 10"));
        assert_eq!(keys.len(), 10);
        assert_eq!(next, (990 << 10) as u64);
        let (next, keys) = scan_reply(&t.run("SCAN 0 COUNT 9223372036854775807"));
        assert_eq!((next, keys.len()), (0, 1000));
    }

    #[test]
    fn scan_filters() {
        let mut t = TestShard::new();
        t.run_args(&[b"SET", b"", b"x"]);
        for k in ["a1", "a2", "b1"] {
            t.run(&format!("SET {k} v"));
        }
        t.run("SET gone v PX 1");
        t.now_ms += 1;
        let mut all = scan_all(&mut t, " MATCH *");
        all.sort();
        assert_eq!(all, ["", "a1", "a2", "b1"]);
        let mut a = scan_all(&mut t, " MATCH a* COUNT 1");
        a.sort();
        assert_eq!(a, ["a1", "a2"]);
        assert_eq!(scan_all(&mut t, " TYPE STRING").len(), 4);
        assert_eq!(scan_all(&mut t, " TYPE list"), Vec::<String>::new());
        assert_eq!(scan_all(&mut t, " TYPE nosuchtype"), Vec::<String>::new());
        assert_eq!(scan_all(&mut t, " MATCH b* TYPE string MATCH a*").len(), 2);
    }

    #[test]
    fn scan_errors() {
        let mut t = TestShard::new();
        let syntax = "-ERR syntax error\r\n";
        assert_eq!(t.run("SCAN x"), "-ERR invalid cursor\r\n");
        assert_eq!(t.run("SCAN x COUNT 0"), "-ERR invalid cursor\r\n");
        assert_eq!(
            t.run("SCAN 18446744073709551616"),
            "-ERR invalid cursor\r\n"
        );
        assert_eq!(t.run("SCAN 0 COUNT 0"), syntax);
        assert_eq!(t.run("SCAN 0 COUNT -1"), syntax);
        assert_eq!(
            t.run("SCAN 0 COUNT x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("SCAN 0 COUNT"), syntax);
        assert_eq!(t.run("SCAN 0 MATCH"), syntax);
        assert_eq!(t.run("SCAN 0 foo bar"), syntax);
        assert_eq!(
            t.run("SCAN"),
            "-ERR wrong number of arguments for 'scan' command\r\n"
        );
        assert_eq!(t.run_args(&[b"SCAN", b""]), "*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(t.run("SCAN -1"), "*2\r\n$1\r\n0\r\n*0\r\n");
    }

    #[test]
    fn scan_cursor_moves_across_shards() {
        let mut t = TestShard::new();
        t.shard.nshards = 3;
        t.run("SET a 1");
        // Shard 0 finishes and hands over to shard 1 from the top.
        let (next, keys) = scan_reply(&t.run("SCAN 0"));
        assert_eq!(
            (next, keys),
            ((SCAN_START << 10) | 1, vec!["a".to_string()])
        );
        assert_eq!(scan_shard_of(next.to_string().as_bytes()), Some(1));
        t.shard.id = 1;
        let (next, _) = scan_reply(&t.run(&format!("SCAN {}", (SCAN_START << 10) | 1)));
        assert_eq!(next, (SCAN_START << 10) | 2);
        t.shard.id = 2;
        let (next, keys) = scan_reply(&t.run(&format!("SCAN {next}")));
        assert_eq!((next, keys.len()), (0, 1));
        // A mid-walk cursor keeps the shard's id.
        for i in 0..30 {
            t.run(&format!("SET k{i} v"));
        }
        let (next, _) = scan_reply(&t.run(&format!("SCAN {} COUNT 5", (SCAN_START << 10) | 2)));
        assert_eq!(next, (26 << 10) | 2);
    }

    #[test]
    fn randomkey() {
        let mut t = TestShard::new();
        assert_eq!(t.run("RANDOMKEY"), "$-1\r\n");
        t.run("SET only 1");
        assert_eq!(t.run("RANDOMKEY"), "$4\r\nonly\r\n");
        t.run("PEXPIRE only 1");
        t.now_ms += 1;
        assert_eq!(t.run("RANDOMKEY"), "$-1\r\n");
        t.proto = crate::resp::Proto::Resp3;
        assert_eq!(t.run("RANDOMKEY"), "_\r\n");
    }

    #[test]
    fn object() {
        let mut t = TestShard::new();
        t.run("SET i 5");
        t.run("SET big 123456");
        t.run("SET s hello");
        for sub in ["ENCODING", "REFCOUNT", "FREQ", "IDLETIME"] {
            assert_eq!(t.run(&format!("OBJECT {sub} nokey")), "$-1\r\n", "{sub}");
        }
        assert_eq!(t.run("OBJECT ENCODING i"), "$3\r\nint\r\n");
        assert_eq!(t.run("object encoding s"), "$6\r\nembstr\r\n");
        assert_eq!(t.run("OBJECT REFCOUNT i"), ":2147483647\r\n");
        assert_eq!(t.run("OBJECT REFCOUNT big"), ":1\r\n");
        assert_eq!(t.run("OBJECT REFCOUNT s"), ":1\r\n");
        assert_eq!(t.run("OBJECT IDLETIME s"), ":0\r\n");
        assert!(t
            .run("OBJECT FREQ s")
            .starts_with("-ERR An LFU maxmemory policy is not selected,"));
        assert_eq!(
            t.run("OBJECT ENCODING"),
            "-ERR wrong number of arguments for 'object|encoding' command\r\n"
        );
        assert_eq!(
            t.run("OBJECT HELP x"),
            "-ERR wrong number of arguments for 'object|help' command\r\n"
        );
        assert_eq!(
            t.run("OBJECT foo"),
            "-ERR unknown subcommand 'foo'. Try OBJECT HELP.\r\n"
        );
        assert_eq!(
            t.run("OBJECT"),
            "-ERR wrong number of arguments for 'object' command\r\n"
        );
        let help = t.run("OBJECT HELP");
        assert!(help.starts_with(
            "*15\r\n+OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n"
        ));
        assert!(help.ends_with("+HELP\r\n+    Prints this help.\r\n"));
        t.proto = crate::resp::Proto::Resp3;
        assert_eq!(t.run("OBJECT ENCODING nokey"), "_\r\n");
    }
}
