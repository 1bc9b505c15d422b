//! Consumer-group commands: XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM and XINFO, with Redis
//! 7.0's replies, errors and keyspace events.
//!
//! Arguments are checked in Redis's order, so the same bad call fails with the same error.
//! Writes count in `dirty` as Redis counts them (one per group created, set, destroyed,
//! consumer created or deleted, entry acknowledged or claimed).
//!
//! Propagation (the AOF's record of effects, see `crate::prop`): XGROUP and XACK are logged as
//! their own arguments (their effect depends only on the data). XCLAIM and XAUTOCLAIM are
//! logged, as Redis's `streamPropagateXCLAIM` does, one command per pending entry they
//! touched: `XCLAIM key group consumer 0 id TIME <ms> RETRYCOUNT <n> FORCE JUSTID LASTID
//! <group last id>`, with the absolute delivery time; an entry that was deleted from the
//! stream is logged the same way with its old owner, which drops it from the PEL on replay.
//! An XCLAIM whose LASTID only moved the group's last id is logged as Redis's
//! `streamPropagateGroupID`: `XGROUP SETID key group id ENTRIESREAD n`.
//!
//! Consumers' seen time follows Redis 7.0: set when a consumer is created and when XCLAIM or
//! XAUTOCLAIM claims an entry for it; XPENDING, XINFO and XGROUP DELCONSUMER leave it alone.

use super::{parse_id, parse_id_full, parse_range_id, reply_entry, reply_id, reply_range};
use crate::cmd::spec::{acl, flag, kflag, Arg, ArgType, CommandSpec, Group as CmdGroup, KeySpec};
use crate::cmd::Call;
use crate::keyspace::Entry;
use crate::notify::class;
use crate::resp::Reply;
use crate::types::stream::{Group, Stream, StreamId};
use crate::util::{eq_ic, parse_i64};
use crate::{Error, Result, Shard};

const STREAM: CommandSpec = CommandSpec {
    group: CmdGroup::Stream,
    acl: acl::STREAM,
    since: "5.0.0",
    ..CommandSpec::DEFAULT
};

const KEY: Arg = Arg::key("key", 0);
const GROUPNAME: Arg = Arg::new("groupname", ArgType::String);
const RW_UPDATE: KeySpec = KeySpec::one(1, kflag::RW | kflag::UPDATE);
const NONDET: &[&str] = &["nondeterministic_output"];

/// An XGROUP subcommand writing the stream in argument 2.
const XGROUP_SUB: CommandSpec = CommandSpec {
    flags: flag::WRITE,
    ..STREAM
};

/// An XINFO subcommand reading the stream in argument 2.
const XINFO_SUB: CommandSpec = CommandSpec {
    flags: flag::READONLY,
    keys: &[KeySpec::one(2, kflag::RO | kflag::ACCESS)],
    ..STREAM
};

/// The HELP subcommand of a container.
const HELP_SUB: CommandSpec = CommandSpec {
    name: "help",
    arity: 2,
    flags: flag::LOADING | flag::STALE,
    summary: "Lists the subcommands and what they do.",
    ..STREAM
};

/// `<id | $>` of XGROUP CREATE and SETID.
const GROUP_ID: Arg = Arg::oneof(
    "id",
    &[Arg::new("id", ArgType::String), Arg::token("new_id", "$")],
);
const ENTRIES_READ: Arg = Arg::new("entries_read", ArgType::Integer)
    .with_token("ENTRIESREAD")
    .optional();

/// The consumer-group commands (and XINFO).
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "xgroup",
        arity: -2,
        group: CmdGroup::Stream,
        since: "5.0.0",
        summary: "Groups the subcommands that manage consumer groups and their consumers.",
        complexity: "Depends on subcommand.",
        subcommands: XGROUP_SUBCOMMANDS,
        ..CommandSpec::DEFAULT
    },
    CommandSpec {
        name: "xack",
        arity: -4,
        flags: flag::WRITE | flag::FAST,
        keys: &[RW_UPDATE],
        run: Some(xack),
        summary: "Acknowledges entries of a consumer group, removing them from its pending list.",
        complexity: "O(1) for each message ID processed.",
        args: &[KEY, Arg::new("group", ArgType::String), Arg::new("id", ArgType::String).multiple()],
        ..STREAM
    },
    CommandSpec {
        name: "xpending",
        arity: -3,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(xpending),
        summary: "Answers with a summary of a group's pending entries, or the entries themselves.",
        complexity: "O(N) with N being the number of elements returned, so asking for a small fixed number of entries per call is O(1). O(M), where M is the total number of entries scanned when used with the IDLE filter. When the command returns just the summary and the list of consumers is small, it runs in O(1) time; otherwise, an additional O(N) time for iterating every consumer.",
        history: &[("6.2.0", "Added the `IDLE` option and exclusive range intervals.")],
        tips: NONDET,
        args: &[
            KEY,
            Arg::new("group", ArgType::String),
            Arg::block(
                "filters",
                &[
                    Arg::new("min-idle-time", ArgType::Integer)
                        .with_token("IDLE")
                        .since("6.2.0")
                        .optional(),
                    Arg::new("start", ArgType::String),
                    Arg::new("end", ArgType::String),
                    Arg::new("count", ArgType::Integer),
                    Arg::new("consumer", ArgType::String).optional(),
                ],
            )
            .optional(),
        ],
        ..STREAM
    },
    CommandSpec {
        name: "xclaim",
        arity: -6,
        flags: flag::WRITE | flag::FAST,
        keys: &[RW_UPDATE],
        run: Some(xclaim),
        summary: "Moves pending entries of a consumer group to another consumer, as if delivered to it.",
        complexity: "O(log N) with N being the number of messages in the PEL of the consumer group.",
        tips: NONDET,
        args: &[
            KEY,
            Arg::new("group", ArgType::String),
            Arg::new("consumer", ArgType::String),
            Arg::new("min-idle-time", ArgType::String),
            Arg::new("id", ArgType::String).multiple(),
            Arg::new("ms", ArgType::Integer).with_token("IDLE").optional(),
            Arg::new("unix-time-milliseconds", ArgType::UnixTime)
                .with_token("TIME")
                .optional(),
            Arg::new("count", ArgType::Integer)
                .with_token("RETRYCOUNT")
                .optional(),
            Arg::token("force", "FORCE").optional(),
            Arg::token("justid", "JUSTID").optional(),
            Arg::new("id", ArgType::String).with_token("LASTID").optional(),
        ],
        ..STREAM
    },
    CommandSpec {
        name: "xautoclaim",
        arity: -6,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::DELETE)],
        run: Some(xautoclaim),
        summary: "Moves the pending entries idle long enough, from a start id on, to another consumer.",
        since: "6.2.0",
        complexity: "O(1) if COUNT is small.",
        history: &[(
            "7.0.0",
            "Added an element to the reply array, containing deleted entries the command cleared from the PEL",
        )],
        tips: NONDET,
        args: &[
            KEY,
            Arg::new("group", ArgType::String),
            Arg::new("consumer", ArgType::String),
            Arg::new("min-idle-time", ArgType::String),
            Arg::new("start", ArgType::String),
            Arg::new("count", ArgType::Integer).with_token("COUNT").optional(),
            Arg::token("justid", "JUSTID").optional(),
        ],
        ..STREAM
    },
    CommandSpec {
        name: "xinfo",
        arity: -2,
        group: CmdGroup::Stream,
        since: "5.0.0",
        summary: "Groups the subcommands that describe a stream, its groups and their consumers.",
        complexity: "Depends on subcommand.",
        subcommands: XINFO_SUBCOMMANDS,
        ..CommandSpec::DEFAULT
    },
];

const XGROUP_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "create",
        arity: -5,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(2, kflag::RW | kflag::INSERT)],
        run: Some(xgroup_create),
        summary: "Creates a consumer group, optionally with an empty stream.",
        history: &[("7.0.0", "Added the `entries_read` named argument.")],
        args: &[
            KEY,
            GROUPNAME,
            GROUP_ID,
            Arg::token("mkstream", "MKSTREAM").optional(),
            ENTRIES_READ,
        ],
        ..XGROUP_SUB
    },
    CommandSpec {
        name: "createconsumer",
        arity: 5,
        flags: flag::WRITE | flag::DENYOOM,
        keys: &[KeySpec::one(2, kflag::RW | kflag::INSERT)],
        run: Some(xgroup_createconsumer),
        summary: "Adds a consumer to a consumer group.",
        since: "6.2.0",
        args: &[KEY, GROUPNAME, Arg::new("consumername", ArgType::String)],
        ..XGROUP_SUB
    },
    CommandSpec {
        name: "delconsumer",
        arity: 5,
        keys: &[KeySpec::one(2, kflag::RW | kflag::DELETE)],
        run: Some(xgroup_delconsumer),
        summary: "Removes a consumer from a consumer group, with its pending entries.",
        args: &[KEY, GROUPNAME, Arg::new("consumername", ArgType::String)],
        ..XGROUP_SUB
    },
    CommandSpec {
        name: "destroy",
        arity: 4,
        keys: &[KeySpec::one(2, kflag::RW | kflag::DELETE)],
        run: Some(xgroup_destroy),
        summary: "Removes a consumer group.",
        complexity:
            "O(N) where N is the number of entries in the group's pending entries list (PEL).",
        args: &[KEY, GROUPNAME],
        ..XGROUP_SUB
    },
    CommandSpec {
        run: Some(xgroup_help),
        ..HELP_SUB
    },
    CommandSpec {
        name: "setid",
        arity: -5,
        keys: &[KeySpec::one(2, kflag::RW | kflag::UPDATE)],
        run: Some(xgroup_setid),
        summary: "Moves a consumer group's last delivered id (and its entries-read counter).",
        history: &[("7.0.0", "Added the optional `entries_read` argument.")],
        args: &[KEY, GROUPNAME, GROUP_ID, ENTRIES_READ],
        ..XGROUP_SUB
    },
];

const XINFO_SUBCOMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "consumers",
        arity: 4,
        run: Some(xinfo_consumers),
        summary: "Lists the consumers of a consumer group.",
        tips: NONDET,
        args: &[KEY, GROUPNAME],
        ..XINFO_SUB
    },
    CommandSpec {
        name: "groups",
        arity: 3,
        run: Some(xinfo_groups),
        summary: "Lists the consumer groups of a stream.",
        history: &[("7.0.0", "Added the `entries-read` and `lag` fields")],
        args: &[KEY],
        ..XINFO_SUB
    },
    CommandSpec {
        run: Some(xinfo_help),
        ..HELP_SUB
    },
    CommandSpec {
        name: "stream",
        arity: -3,
        run: Some(xinfo_stream),
        summary: "Describes a stream, or with FULL, its entries, groups and consumers too.",
        history: &[
            ("6.0.0", "Added the `FULL` modifier."),
            (
                "7.0.0",
                "Added the `max-deleted-entry-id`, `entries-added`, `recorded-first-entry-id`, `entries-read` and `lag` fields",
            ),
        ],
        args: &[
            KEY,
            Arg::block(
                "full",
                &[Arg::new("count", ArgType::Integer).with_token("COUNT").optional()],
            )
            .with_token("FULL")
            .optional(),
        ],
        ..XINFO_SUB
    },
];

// ---------------------------------------------------------------------------------------------
// Errors and lookups.

/// Text of a client's argument for an error message.
fn text(arg: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(arg)
}

/// XCLAIM, XAUTOCLAIM and XPENDING's error for a missing key or group.
fn no_key_or_group(key: &[u8], group: &[u8]) -> Error {
    Error::Other(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        text(key),
        text(group)
    ))
}

/// XGROUP and XINFO's error for a missing group of an existing stream.
fn no_group(key: &[u8], group: &[u8]) -> Error {
    Error::Other(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        text(group),
        text(key)
    ))
}

/// Redis's `addReplySubcommandSyntaxError`: the subcommand as typed, the command upper-cased.
fn subcommand_syntax(c: &Call, parent: &str) -> Error {
    Error::err(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try {parent} HELP.",
        text(c.argv.get(1).copied().unwrap_or_default())
    ))
}

/// The stream at `key` for a command Redis looks up with `lookupKeyRead` (counting a keyspace
/// hit or miss) that may then change it (XACK, XCLAIM, XAUTOCLAIM).
fn lookup_read_mut<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s mut Stream>> {
    let Shard { dbs, stats, .. } = sh;
    let found = stats.count_lookup(dbs[db].get_read_mut(key, now_ms));
    found.map(|e| e.value.as_stream_mut()).transpose()
}

/// The stream at `key` for reading, counting a keyspace hit or miss (XPENDING, XINFO).
fn lookup_read<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s Stream>> {
    let Shard { dbs, stats, .. } = sh;
    let found = stats.count_lookup(dbs[db].get_read(key, now_ms));
    found.map(|e| e.value.as_stream()).transpose()
}

/// A 64-bit counter or time as Redis replies with it: cast to a signed integer (so a value
/// past `i64::MAX`, reachable through XSETID, RETRYCOUNT or RESTORE, shows negative there
/// too).
fn ms_i64(ms: u64) -> i64 {
    ms as i64
}

/// How long ago `delivery_ms` was, in Redis's signed arithmetic (negative for a future time).
fn idle_ms(now_ms: u64, delivery_ms: u64) -> i64 {
    ms_i64(now_ms).wrapping_sub(ms_i64(delivery_ms))
}

/// An id as bytes, for rewrites.
fn id_bytes(id: StreamId) -> Vec<u8> {
    id.to_bytes()
}

/// The decimal form of a number, for rewrites.
fn num(n: i64) -> Vec<u8> {
    itoa::Buffer::new().format(n).as_bytes().to_vec()
}

/// Writes one entry of the stream (Redis's raw-entry reply), or a null if it is gone.
fn reply_one_entry(out: &mut Reply, s: &Stream, id: StreamId) {
    let mut found = false;
    s.scan(id, id, false, &mut |id, fields| {
        reply_entry(out, id, fields);
        found = true;
        false
    });
    if !found {
        out.null();
    }
}

/// Writes the first (or, with `last`, the last) entry of the stream, or a null.
fn reply_edge_entry(out: &mut Reply, s: &Stream, last: bool) {
    match s.edge_id(last) {
        Some(id) => reply_one_entry(out, s, id),
        None => out.null(),
    }
}

/// The lag XINFO reports for a group, as Redis 7.0's `streamReplyWithCGLag` computes it:
/// signed, as a group's entries-read set by ENTRIESREAD may exceed the entries added.
fn group_lag(s: &Stream, g: &Group) -> Option<i64> {
    let added = ms_i64(s.entries_added);
    if added == 0 {
        return Some(0);
    }
    if let Some(read) = g.entries_read {
        if !s.range_has_tombstones(g.last_id, StreamId::MAX) {
            return Some(added.wrapping_sub(ms_i64(read)));
        }
    }
    s.estimate_entries_read(g.last_id)
        .map(|read| added.wrapping_sub(ms_i64(read)))
}

/// Writes a group's entries-read counter (null when unknown).
fn reply_entries_read(out: &mut Reply, g: &Group) {
    match g.entries_read {
        Some(n) => out.int(ms_i64(n)),
        None => out.null(),
    }
}

/// Redis's `radix-tree-keys` and `radix-tree-nodes`: the number of listpack nodes and of
/// nodes of the radix tree that indexes them by their master ids (the storage keeps the same
/// nodes Redis does, so both are exact).
fn radix_tree_sizes(s: &Stream) -> (u64, u64) {
    let masters: Vec<[u8; 16]> = s.nodes().map(|(id, _)| id.to_be_bytes()).collect();
    (masters.len() as u64, rax_node_count(&masters))
}

/// The number of nodes of a Redis radix tree (rax) holding `keys` (sorted, distinct, all 16
/// bytes long, so none is a prefix of another). A rax node starts at the root, at every key,
/// at every prefix where keys branch, and at each child of such a branching; single-child
/// runs between them are compressed into the node above.
fn rax_node_count(keys: &[[u8; 16]]) -> u64 {
    let mut starts: std::collections::BTreeSet<&[u8]> = std::collections::BTreeSet::new();
    starts.insert(&[]);
    for k in keys {
        starts.insert(k);
    }
    for pair in keys.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let common = a.iter().zip(b).take_while(|(x, y)| x == y).count().min(15);
        starts.insert(&a[..common]);
        starts.insert(&a[..=common]);
        starts.insert(&b[..=common]);
    }
    starts.len() as u64
}

// ---------------------------------------------------------------------------------------------
// XGROUP.

/// What the XGROUP subcommands (but HELP) parse and check first, in Redis's order: the
/// options, the key's type, then that the key (and, for some, the group) exists.
struct GroupCall {
    mkstream: bool,
    /// ENTRIESREAD (`None`: -1 or not given).
    entries_read: Option<u64>,
}

/// Parses `[MKSTREAM] [ENTRIESREAD n]` (CREATE; SETID takes only ENTRIESREAD) and checks the
/// key and group as Redis's `xgroupCommand` does before dispatching.
fn xgroup_prelude(sh: &mut Shard, c: &Call, sub: &str) -> Result<GroupCall> {
    let (create, setid) = (sub == "create", sub == "setid");
    let mut call = GroupCall {
        mkstream: false,
        entries_read: None,
    };
    let mut i = 5;
    while let Some(opt) = c.argv.get(i) {
        if create && eq_ic(opt, "mkstream") {
            call.mkstream = true;
            i += 1;
        } else if (create || setid) && eq_ic(opt, "entriesread") && i + 1 < c.argv.len() {
            let n = parse_i64(c.argv[i + 1]).ok_or(Error::NotInteger)?;
            if n < -1 {
                return Err(Error::err("value for ENTRIESREAD must be positive or -1"));
            }
            call.entries_read = u64::try_from(n).ok();
            i += 2;
        } else {
            return Err(subcommand_syntax(c, "XGROUP"));
        }
    }
    let (key, name) = (c.argv[2], c.argv[3]);
    let s = super::write_stream(sh, c.db, key, c.now_ms)?;
    if !call.mkstream {
        let Some(s) = s else {
            return Err(Error::err(
                "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            ));
        };
        let needs_group = matches!(sub, "setid" | "createconsumer" | "delconsumer");
        if needs_group && !s.groups.contains_key(name) {
            return Err(no_group(key, name));
        }
    }
    Ok(call)
}

/// The `<id | $>` of CREATE and SETID: `$` is the stream's last id (0-0 for a stream not
/// created yet); CREATE reads ids strictly, SETID also takes `-` and `+`.
fn group_start_id(arg: &[u8], s: Option<&Stream>, strict: bool) -> Result<StreamId> {
    if arg == b"$" {
        return Ok(s.map_or(StreamId::MIN, |s| s.last_id));
    }
    parse_id_full(arg, 0, strict).map(|(id, _)| id)
}

/// XGROUP CREATE key group <id | $> [MKSTREAM] [ENTRIESREAD entries_read]
fn xgroup_create(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let call = xgroup_prelude(sh, c, "create")?;
    if c.argv.len() > 8 {
        return Err(subcommand_syntax(c, "XGROUP"));
    }
    let (key, name) = (c.argv[2], c.argv[3]);
    let existing = super::write_stream(sh, c.db, key, c.now_ms)?;
    let id = group_start_id(c.argv[4], existing.as_deref(), true)?;
    if existing.is_some() {
        // Only a stream made by MKSTREAM counts as a modification for WATCH, as in Redis.
        sh.keep_watches();
    } else {
        // MKSTREAM (the prelude let a missing key through only with it): every argument has
        // been checked, so the new key cannot stay behind empty because of an error.
        sh.dbs[c.db].insert(key, Entry::new(super::new_stream()));
    }
    let Some(s) = super::write_stream(sh, c.db, key, c.now_ms)? else {
        return Err(Error::err("stream vanished while being written"));
    };
    if s.groups.contains_key(name) {
        return Err(Error::Other(
            "BUSYGROUP Consumer Group name already exists".into(),
        ));
    }
    s.groups
        .insert(Box::from(name), Group::new(id, call.entries_read));
    sh.stats.dirty += 1;
    sh.notify(class::STREAM, "xgroup-create", c.db, key);
    c.out.ok();
    Ok(())
}

/// XGROUP SETID key group <id | $> [ENTRIESREAD entries_read]
fn xgroup_setid(sh: &mut Shard, c: &mut Call) -> Result<()> {
    // Group bookkeeping: not a modification of the key for WATCH, as in Redis.
    sh.keep_watches();
    let call = xgroup_prelude(sh, c, "setid")?;
    if c.argv.len() != 5 && c.argv.len() != 7 {
        return Err(subcommand_syntax(c, "XGROUP"));
    }
    let (key, name) = (c.argv[2], c.argv[3]);
    let s = super::write_stream(sh, c.db, key, c.now_ms)?;
    let id = group_start_id(c.argv[4], s.as_deref(), false)?;
    let Some(g) = s.and_then(|s| s.groups.get_mut(name)) else {
        return Err(no_group(key, name));
    };
    g.last_id = id;
    g.entries_read = call.entries_read;
    sh.stats.dirty += 1;
    sh.notify(class::STREAM, "xgroup-setid", c.db, key);
    c.out.ok();
    Ok(())
}

/// XGROUP DESTROY key group
fn xgroup_destroy(sh: &mut Shard, c: &mut Call) -> Result<()> {
    // Group bookkeeping: not a modification of the key for WATCH, as in Redis.
    sh.keep_watches();
    xgroup_prelude(sh, c, "destroy")?;
    let (key, name) = (c.argv[2], c.argv[3]);
    let s = super::write_stream(sh, c.db, key, c.now_ms)?;
    let removed = s.and_then(|s| s.groups.remove(name)).is_some();
    if removed {
        // Blocked XREADGROUP callers are woken by the key being touched, and then fail
        // with NOGROUP.
        sh.stats.dirty += 1;
        sh.notify(class::STREAM, "xgroup-destroy", c.db, key);
    }
    c.out.int(i64::from(removed));
    Ok(())
}

/// XGROUP CREATECONSUMER key group consumer
fn xgroup_createconsumer(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let stamp = sh.stamp_ms(c.now_ms);
    let created = consumer_change(
        sh,
        c,
        ("createconsumer", "xgroup-createconsumer"),
        |g, name| g.consumer(name, stamp).1.then_some(0),
    )?;
    c.out.int(i64::from(created.is_some()));
    Ok(())
}

/// XGROUP DELCONSUMER key group consumer — answers how many entries it had pending (they
/// leave the group's PEL with it).
fn xgroup_delconsumer(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let sub = ("delconsumer", "xgroup-delconsumer");
    let pending = consumer_change(sh, c, sub, |g, name| g.delete_consumer(name))?;
    c.out.int(pending.map_or(0, |n| n as i64));
    Ok(())
}

/// What CREATECONSUMER and DELCONSUMER share: the checks, the group, and when `change` did
/// something (`Some`), the dirty count and the event (`sub`: the subcommand and its event).
fn consumer_change(
    sh: &mut Shard,
    c: &Call,
    (sub, event): (&str, &'static str),
    change: impl FnOnce(&mut Group, &[u8]) -> Option<usize>,
) -> Result<Option<usize>> {
    // Group bookkeeping: not a modification of the key for WATCH, as in Redis.
    sh.keep_watches();
    xgroup_prelude(sh, c, sub)?;
    let (key, name) = (c.argv[2], c.argv[3]);
    let s = super::write_stream(sh, c.db, key, c.now_ms)?;
    let Some(g) = s.and_then(|s| s.groups.get_mut(name)) else {
        return Err(no_group(key, name));
    };
    let done = change(g, c.argv[4]);
    if done.is_some() {
        sh.stats.dirty += 1;
        sh.notify(class::STREAM, event, c.db, key);
    }
    Ok(done)
}

/// Writes a help text as Redis's `addReplyHelp` does.
fn reply_help(out: &mut Reply, lines: &[&str]) {
    out.array(lines.len());
    for l in lines {
        out.simple(l);
    }
}

/// XGROUP HELP
fn xgroup_help(_: &mut Shard, c: &mut Call) -> Result<()> {
    reply_help(
        &mut c.out,
        &[
            "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CREATE <key> <groupname> <id|$> [option]",
            "    Create a new consumer group. Options are:",
            "    * MKSTREAM",
            "      Create the empty stream if it does not exist.",
            "    * ENTRIESREAD entries_read",
            "      Set the group's entries_read counter (internal use).",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Create a new consumer in the specified group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove the specified consumer.",
            "DESTROY <key> <groupname>",
            "    Remove the specified group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Set the current group ID and entries_read counter.",
            "HELP",
            "    Prints this help.",
        ],
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// XACK.

/// XACK key group id [id ...]
fn xack(sh: &mut Shard, c: &mut Call) -> Result<()> {
    // Group bookkeeping: not a modification of the key for WATCH, as in Redis.
    sh.keep_watches();
    let (key, name) = (c.argv[1], c.argv[2]);
    let Some(g) = lookup_read_mut(sh, c.db, key, c.now_ms)?.and_then(|s| s.groups.get_mut(name))
    else {
        c.out.int(0);
        return Ok(());
    };
    // Every id is checked before any is acknowledged: all or nothing.
    let ids = c.argv[3..]
        .iter()
        .map(|a| parse_id(a))
        .collect::<Result<Vec<_>>>()?;
    let acked = ids.into_iter().filter(|&id| g.ack(id)).count();
    sh.stats.dirty += acked as u64;
    c.out.int(acked as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// XPENDING.

/// The extended form's `[IDLE min-idle-time] start end count [consumer]`.
struct PendingRange<'a> {
    min_idle: i64,
    start: StreamId,
    end: StreamId,
    count: u64,
    consumer: Option<&'a [u8]>,
}

/// Parses XPENDING's range arguments in Redis's order: IDLE, count, start, end.
fn parse_pending_range<'a>(argv: &[&'a [u8]]) -> Result<PendingRange<'a>> {
    let mut at = 3;
    let mut min_idle = 0;
    if eq_ic(argv[3], "idle") {
        min_idle = parse_i64(argv[4]).ok_or(Error::NotInteger)?;
        if argv.len() < 8 {
            return Err(Error::Syntax);
        }
        at += 2;
    }
    let arg = |i: usize| argv.get(i).copied().ok_or(Error::Syntax);
    let count = parse_i64(arg(at + 2)?).ok_or(Error::NotInteger)?;
    let start = parse_range_id(arg(at)?, 0, true)?;
    let end = parse_range_id(arg(at + 1)?, u64::MAX, false)?;
    Ok(PendingRange {
        min_idle,
        start,
        end,
        count: u64::try_from(count).unwrap_or(0),
        consumer: argv.get(at + 3).copied(),
    })
}

/// XPENDING key group [[IDLE min-idle-time] start end count [consumer]]
fn xpending(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let argc = c.argv.len();
    if argc != 3 && !(6..=9).contains(&argc) {
        return Err(Error::Syntax);
    }
    let range = if argc >= 6 {
        Some(parse_pending_range(c.argv)?)
    } else {
        None
    };
    let (key, name) = (c.argv[1], c.argv[2]);
    let Some(g) = lookup_read(sh, c.db, key, c.now_ms)?.and_then(|s| s.groups.get(name)) else {
        return Err(no_key_or_group(key, name));
    };
    match range {
        None => pending_summary(&mut c.out, g),
        Some(r) => pending_entries(&mut c.out, g, &r, c.now_ms),
    }
    Ok(())
}

/// XPENDING's summary: the count, the smallest and greatest ids, and each consumer with
/// entries pending and how many (as a bulk string, as Redis sends it).
fn pending_summary(out: &mut Reply, g: &Group) {
    out.array(4);
    out.int(g.pel.len() as i64);
    let (Some((first, _)), Some((last, _))) = (g.pel.first_key_value(), g.pel.last_key_value())
    else {
        out.null();
        out.null();
        out.null_array();
        return;
    };
    reply_id(out, *first);
    reply_id(out, *last);
    let owners = g.consumers.iter().filter(|(_, c)| !c.pending.is_empty());
    out.array(owners.clone().count());
    for (name, consumer) in owners {
        out.array(2);
        out.bulk(name);
        out.bulk_int(consumer.pending.len() as i64);
    }
}

/// XPENDING's extended form: `[id, consumer, idle ms, deliveries]` for each pending entry in
/// the range (of one consumer, if named) idle at least `min_idle`, at most `count`.
fn pending_entries(out: &mut Reply, g: &Group, r: &PendingRange, now_ms: u64) {
    let ids: Box<dyn Iterator<Item = &StreamId>> = match r.consumer {
        None if r.start <= r.end => Box::new(g.pel.range(r.start..=r.end).map(|(id, _)| id)),
        Some(name) if r.start <= r.end => match g.consumers.get(name) {
            Some(consumer) => Box::new(consumer.pending.range(r.start..=r.end)),
            None => Box::new(std::iter::empty()),
        },
        _ => Box::new(std::iter::empty()),
    };
    let mut body = Vec::new();
    let mut w = Reply::new(&mut body, out.proto);
    let mut n = 0u64;
    for id in ids {
        if n >= r.count {
            break;
        }
        let Some(nack) = g.pel.get(id) else {
            continue;
        };
        let idle = idle_ms(now_ms, nack.delivery_time_ms);
        if r.min_idle != 0 && idle < r.min_idle {
            continue;
        }
        n += 1;
        w.array(4);
        reply_id(&mut w, *id);
        w.bulk(&nack.consumer);
        w.int(idle.max(0));
        w.int(ms_i64(nack.delivery_count));
    }
    out.array(n as usize);
    out.raw(&body);
}

// ---------------------------------------------------------------------------------------------
// XCLAIM and XAUTOCLAIM.

/// XCLAIM's options after the ids.
struct ClaimOpts {
    /// IDLE or TIME as an absolute delivery time (unchecked), if given.
    delivery_ms: Option<i64>,
    /// RETRYCOUNT (negative: not given).
    retry_count: i64,
    force: bool,
    justid: bool,
    /// LASTID (0-0: not given).
    last_id: StreamId,
}

/// Parses XCLAIM's options from `argv[from..]` with Redis's errors.
fn parse_claim_opts(argv: &[&[u8]], from: usize, now_ms: u64) -> Result<ClaimOpts> {
    let mut o = ClaimOpts {
        delivery_ms: None,
        retry_count: -1,
        force: false,
        justid: false,
        last_id: StreamId::MIN,
    };
    let mut i = from;
    while let Some(&opt) = argv.get(i) {
        let value = argv.get(i + 1).copied();
        let int = |what: &str| {
            value
                .and_then(parse_i64)
                .ok_or_else(|| Error::err(format!("Invalid {what} option argument for XCLAIM")))
        };
        match value {
            _ if eq_ic(opt, "force") => o.force = true,
            _ if eq_ic(opt, "justid") => o.justid = true,
            Some(_) if eq_ic(opt, "idle") => {
                o.delivery_ms = Some(ms_i64(now_ms).wrapping_sub(int("IDLE")?));
                i += 1;
            }
            Some(_) if eq_ic(opt, "time") => {
                o.delivery_ms = Some(int("TIME")?);
                i += 1;
            }
            Some(_) if eq_ic(opt, "retrycount") => {
                o.retry_count = int("RETRYCOUNT")?;
                i += 1;
            }
            Some(v) if eq_ic(opt, "lastid") => {
                o.last_id = parse_id(v)?;
                i += 1;
            }
            _ => {
                return Err(Error::err(format!(
                    "Unrecognized XCLAIM option '{}'",
                    text(opt)
                )))
            }
        }
        i += 1;
    }
    Ok(o)
}

/// What one XCLAIM or XAUTOCLAIM did, gathered while the stream is borrowed and handed to
/// the shard (dirty count, event, log) afterwards.
struct Claims<'a> {
    key: &'a [u8],
    group: &'a [u8],
    consumer: &'a [u8],
    now_ms: u64,
    /// The commands to log, in order.
    log: Vec<Vec<Vec<u8>>>,
    dirty: u64,
    /// Whether the consumer has been looked up (it is, once, on the first claim).
    looked_up: bool,
    consumer_created: bool,
    /// The ids claimed and the ids dropped (deleted from the stream), in order.
    claimed: Vec<StreamId>,
    dropped: Vec<StreamId>,
}

impl<'a> Claims<'a> {
    /// `now_ms`: the time recorded as seen and delivery time ([`Shard::stamp_ms`]).
    fn new(c: &Call<'a>, now_ms: u64) -> Claims<'a> {
        Claims {
            key: c.argv[1],
            group: c.argv[2],
            consumer: c.argv[3],
            now_ms,
            log: Vec::new(),
            dirty: 0,
            looked_up: false,
            consumer_created: false,
            claimed: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// Moves `id`'s pending entry (made pending if it was not) to the consumer with this
    /// delivery time and count. The first claim looks the consumer up, creating it and
    /// refreshing its seen time, as Redis 7.0 does.
    fn claim(&mut self, g: &mut Group, id: StreamId, id_arg: &[u8], time_ms: u64, count: u64) {
        if !self.looked_up {
            let (consumer, created) = g.consumer(self.consumer, self.now_ms);
            consumer.seen_time_ms = self.now_ms;
            self.consumer_created = created;
            self.dirty += u64::from(created);
            self.looked_up = true;
        }
        g.assign(id, self.consumer, time_ms, count, self.now_ms);
        self.log_claim(g, id_arg, self.consumer, time_ms, count);
        self.claimed.push(id);
    }

    /// Drops the pending entry `id` of an entry no longer in the stream, logging it (with its
    /// old owner) so that a replay drops it too. False if it was not pending.
    fn drop_deleted(&mut self, g: &mut Group, id: StreamId, id_arg: &[u8]) -> bool {
        let Some(nack) = g.pel.get(&id).cloned() else {
            return false;
        };
        self.log_claim(
            g,
            id_arg,
            &nack.consumer,
            nack.delivery_time_ms,
            nack.delivery_count,
        );
        g.ack(id);
        self.dropped.push(id);
        true
    }

    /// Logs `XCLAIM key group <owner> 0 <id> TIME <ms> RETRYCOUNT <n> FORCE JUSTID LASTID
    /// <last id>` (Redis's `streamPropagateXCLAIM`): replayed, it recreates the pending entry
    /// exactly (or, for an entry gone from the stream, drops it).
    fn log_claim(&mut self, g: &Group, id_arg: &[u8], owner: &[u8], time_ms: u64, count: u64) {
        self.log.push(vec![
            b"XCLAIM".to_vec(),
            self.key.to_vec(),
            self.group.to_vec(),
            owner.to_vec(),
            b"0".to_vec(),
            id_arg.to_vec(),
            b"TIME".to_vec(),
            num(ms_i64(time_ms)),
            b"RETRYCOUNT".to_vec(),
            num(ms_i64(count)),
            b"FORCE".to_vec(),
            b"JUSTID".to_vec(),
            b"LASTID".to_vec(),
            id_bytes(g.last_id),
        ]);
        self.dirty += 1;
    }

    /// Logs `XGROUP SETID key group <last id> ENTRIESREAD <n>` (Redis's
    /// `streamPropagateGroupID`), for a LASTID that no logged claim carries.
    fn log_group_id(&mut self, g: &Group) {
        self.log.push(vec![
            b"XGROUP".to_vec(),
            b"SETID".to_vec(),
            self.key.to_vec(),
            self.group.to_vec(),
            id_bytes(g.last_id),
            b"ENTRIESREAD".to_vec(),
            num(g.entries_read.map_or(-1, ms_i64)),
        ]);
        self.dirty += 1;
    }

    /// Counts the changes, fires the consumer's creation event and logs the effect: only
    /// the recorded commands, never the call itself (its IDLE is relative), as Redis does.
    fn finish(self, sh: &mut Shard, db: usize) {
        sh.prevent_propagation();
        sh.stats.dirty += self.dirty;
        if self.consumer_created {
            sh.notify(class::STREAM, "xgroup-createconsumer", db, self.key);
        }
        for cmd in &self.log {
            let argv: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            sh.rewrite(db, &argv);
        }
    }
}

/// Writes the claimed entries (or their ids, with JUSTID) as an array.
fn reply_claimed(out: &mut Reply, s: &Stream, ids: &[StreamId], justid: bool) {
    out.array(ids.len());
    for &id in ids {
        if justid {
            reply_id(out, id);
        } else {
            reply_one_entry(out, s, id);
        }
    }
}

/// The delivery time XCLAIM sets: IDLE's or TIME's, or now.
fn claim_time(given: Option<i64>, now_ms: u64) -> u64 {
    match given {
        Some(t) if (0..=ms_i64(now_ms)).contains(&t) => t as u64,
        // A replay of the log runs without a clock (at 0): the logged absolute time stands.
        Some(t) if now_ms == 0 && t > 0 => t as u64,
        // Redis's guard against clients' clock skew: a time in the future (or before the
        // epoch) is now.
        _ => now_ms,
    }
}

/// XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME ms] [RETRYCOUNT count]
/// [FORCE] [JUSTID] [LASTID id]
fn xclaim(sh: &mut Shard, c: &mut Call) -> Result<()> {
    // Group bookkeeping: not a modification of the key for WATCH, as in Redis.
    sh.keep_watches();
    let (key, name) = (c.argv[1], c.argv[2]);
    let now = c.now_ms;
    let stamp = sh.stamp_ms(now);
    let Some(s) = lookup_read_mut(sh, c.db, key, now)?.filter(|s| s.groups.contains_key(name))
    else {
        return Err(no_key_or_group(key, name));
    };
    let min_idle = parse_i64(c.argv[4])
        .ok_or_else(|| Error::err("Invalid min-idle-time argument for XCLAIM"))?
        .max(0);
    // The ids run up to the first argument that is not one; options follow.
    let ids: Vec<(StreamId, &[u8])> = c.argv[5..]
        .iter()
        .map_while(|a| parse_id(a).ok().map(|id| (id, *a)))
        .collect();
    let o = parse_claim_opts(c.argv, 5 + ids.len(), stamp)?;
    let time_ms = claim_time(o.delivery_ms, stamp);
    let exists: Vec<bool> = ids.iter().map(|&(id, _)| s.contains(id)).collect();
    let Some(g) = s.groups.get_mut(name) else {
        return Err(no_key_or_group(key, name));
    };
    let moved_last_id = o.last_id > g.last_id;
    if moved_last_id {
        g.last_id = o.last_id;
    }
    let mut claims = Claims::new(c, stamp);
    for (&(id, id_arg), &live) in ids.iter().zip(&exists) {
        if !live {
            claims.drop_deleted(g, id, id_arg);
            continue;
        }
        let old_count = match g.pel.get(&id) {
            Some(nack) if min_idle != 0 && idle_ms(now, nack.delivery_time_ms) < min_idle => {
                continue
            }
            Some(nack) => nack.delivery_count,
            // FORCE makes an entry pending that was not (whatever its idle time); Redis
            // starts its count at 1.
            None if o.force => 1,
            None => continue,
        };
        let count = match o.retry_count {
            n if n >= 0 => n as u64,
            _ if o.justid => old_count,
            _ => old_count.saturating_add(1),
        };
        claims.claim(g, id, id_arg, time_ms, count);
    }
    if moved_last_id && claims.log.is_empty() {
        claims.log_group_id(g);
    }
    reply_claimed(&mut c.out, s, &claims.claimed, o.justid);
    claims.finish(sh, c.db);
    Ok(())
}

/// The most entries one XAUTOCLAIM may be asked for (Redis's bound, so that its scan limit,
/// ten times the count, fits a signed 64-bit integer with room to spare).
const AUTOCLAIM_COUNT_MAX: i64 = i64::MAX / 16;

/// The largest COUNT XAUTOCLAIM serves. Redis allocates 16 bytes per COUNT up front for the
/// ids of deleted entries and answers "Insufficient memory" when that allocation fails, which
/// on 64-bit Linux happens beyond the 128 TiB of user address space; we allocate nothing by
/// COUNT but draw the same line, so the same call gets the same answer.
const AUTOCLAIM_COUNT_SERVED_MAX: u64 = (1 << 47) / 16;

/// How many pending entries XAUTOCLAIM looks at per entry it may claim.
const AUTOCLAIM_ATTEMPTS_FACTOR: u64 = 10;

/// What XAUTOCLAIM does to each pending entry it looks at.
enum AutoStep {
    Claim(StreamId),
    Drop(StreamId),
}

/// XAUTOCLAIM's walk of the PEL from `start`: which entries it claims (idle at least
/// `min_idle`) and drops (deleted from the stream), at most `count` of them together, looking
/// at no more than ten times `count`; and the id to resume from (0-0 at the end).
fn autoclaim_plan(
    s: &Stream,
    g: &Group,
    start: StreamId,
    min_idle: i64,
    count: u64,
    now_ms: u64,
) -> (Vec<AutoStep>, StreamId) {
    let mut attempts = count.saturating_mul(AUTOCLAIM_ATTEMPTS_FACTOR);
    let mut left = count;
    let mut steps = Vec::new();
    let mut pel = g.pel.range(start..);
    while attempts > 0 && left > 0 {
        attempts -= 1;
        let Some((&id, nack)) = pel.next() else {
            break;
        };
        if !s.contains(id) {
            steps.push(AutoStep::Drop(id));
            left -= 1;
            continue;
        }
        if min_idle != 0 && idle_ms(now_ms, nack.delivery_time_ms) < min_idle {
            continue;
        }
        steps.push(AutoStep::Claim(id));
        left -= 1;
    }
    let cursor = pel.next().map_or(StreamId::MIN, |(&id, _)| id);
    (steps, cursor)
}

/// XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]
fn xautoclaim(sh: &mut Shard, c: &mut Call) -> Result<()> {
    // Group bookkeeping: not a modification of the key for WATCH, as in Redis.
    sh.keep_watches();
    let (key, name) = (c.argv[1], c.argv[2]);
    let now = c.now_ms;
    let stamp = sh.stamp_ms(now);
    let min_idle = parse_i64(c.argv[4])
        .ok_or_else(|| Error::err("Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0);
    let start = parse_range_id(c.argv[5], 0, true)?;
    let (mut count, mut justid) = (100u64, false);
    let mut a = c.args(6);
    while let Some(opt) = a.next() {
        if eq_ic(opt, "count") && !a.is_empty() {
            let n = a.next_bytes().ok().and_then(parse_i64);
            match n {
                Some(n) if (1..=AUTOCLAIM_COUNT_MAX).contains(&n) => count = n as u64,
                _ => return Err(Error::err("COUNT must be > 0")),
            }
        } else if eq_ic(opt, "justid") {
            justid = true;
        } else {
            return Err(Error::Syntax);
        }
    }
    let Some(s) = lookup_read_mut(sh, c.db, key, now)?.filter(|s| s.groups.contains_key(name))
    else {
        return Err(no_key_or_group(key, name));
    };
    if count > AUTOCLAIM_COUNT_SERVED_MAX {
        return Err(Error::err(
            "Insufficient memory, failed allocating transient memory, COUNT too high.",
        ));
    }
    let (steps, cursor) = match s.groups.get(name) {
        Some(g) => autoclaim_plan(s, g, start, min_idle, count, now),
        None => (Vec::new(), StreamId::MIN),
    };
    let Some(g) = s.groups.get_mut(name) else {
        return Err(no_key_or_group(key, name));
    };
    let mut claims = Claims::new(c, stamp);
    for step in steps {
        match step {
            AutoStep::Drop(id) => {
                claims.drop_deleted(g, id, &id_bytes(id));
            }
            AutoStep::Claim(id) => {
                let old = g.pel.get(&id).map_or(0, |n| n.delivery_count);
                let count = if justid { old } else { old.saturating_add(1) };
                claims.claim(g, id, &id_bytes(id), now, count);
            }
        }
    }
    c.out.array(3);
    reply_id(&mut c.out, cursor);
    reply_claimed(&mut c.out, s, &claims.claimed, justid);
    c.out.array(claims.dropped.len());
    for &id in &claims.dropped {
        reply_id(&mut c.out, id);
    }
    claims.finish(sh, c.db);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// XINFO.

/// The stream XINFO describes: a missing key is "no such key".
fn xinfo_stream_of<'s>(sh: &'s mut Shard, c: &Call) -> Result<&'s Stream> {
    lookup_read(sh, c.db, c.argv[2], c.now_ms)?.ok_or(Error::NoSuchKey)
}

/// XINFO CONSUMERS key group
fn xinfo_consumers(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let (key, name) = (c.argv[2], c.argv[3]);
    let now = c.now_ms;
    let s = xinfo_stream_of(sh, c)?;
    let g = s.groups.get(name).ok_or_else(|| no_group(key, name))?;
    c.out.array(g.consumers.len());
    for (cname, consumer) in &g.consumers {
        c.out.map(3);
        c.out.bulk(b"name");
        c.out.bulk(cname);
        c.out.bulk(b"pending");
        c.out.int(consumer.pending.len() as i64);
        c.out.bulk(b"idle");
        c.out.int(idle_ms(now, consumer.seen_time_ms).max(0));
    }
    Ok(())
}

/// XINFO GROUPS key
fn xinfo_groups(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let s = xinfo_stream_of(sh, c)?;
    c.out.array(s.groups.len());
    for (name, g) in &s.groups {
        c.out.map(6);
        c.out.bulk(b"name");
        c.out.bulk(name);
        c.out.bulk(b"consumers");
        c.out.int(g.consumers.len() as i64);
        c.out.bulk(b"pending");
        c.out.int(g.pel.len() as i64);
        c.out.bulk(b"last-delivered-id");
        reply_id(&mut c.out, g.last_id);
        c.out.bulk(b"entries-read");
        reply_entries_read(&mut c.out, g);
        c.out.bulk(b"lag");
        reply_lag(&mut c.out, s, g);
    }
    Ok(())
}

/// Writes a group's lag (null when it cannot be known).
fn reply_lag(out: &mut Reply, s: &Stream, g: &Group) {
    match group_lag(s, g) {
        Some(lag) => out.int(lag),
        None => out.null(),
    }
}

/// XINFO HELP
fn xinfo_help(_: &mut Shard, c: &mut Call) -> Result<()> {
    reply_help(
        &mut c.out,
        &[
            "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CONSUMERS <key> <groupname>",
            "    Show consumers of <groupname>.",
            "GROUPS <key>",
            "    Show the stream consumer groups.",
            "STREAM <key> [FULL [COUNT <count>]",
            "    Show information about the stream.",
            "HELP",
            "    Prints this help.",
        ],
    );
    Ok(())
}

/// XINFO STREAM key [FULL [COUNT count]] — COUNT (default 10, 0 for all) bounds the entries
/// and each PEL listed.
fn xinfo_stream(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let s = xinfo_stream_of(sh, c)?;
    let full = match c.argv.len() {
        3 => None,
        _ if !eq_ic(c.argv[3], "full") => return Err(subcommand_syntax(c, "XINFO")),
        4 => Some(10),
        6 if eq_ic(c.argv[4], "count") => {
            let n = parse_i64(c.argv[5]).ok_or(Error::NotInteger)?;
            Some(if n < 0 { 10 } else { n as u64 })
        }
        _ => return Err(subcommand_syntax(c, "XINFO")),
    };
    let (keys, nodes) = radix_tree_sizes(s);
    let out = &mut c.out;
    out.map(if full.is_some() { 9 } else { 10 });
    out.bulk(b"length");
    out.int(ms_i64(s.len()));
    out.bulk(b"radix-tree-keys");
    out.int(ms_i64(keys));
    out.bulk(b"radix-tree-nodes");
    out.int(ms_i64(nodes));
    out.bulk(b"last-generated-id");
    reply_id(out, s.last_id);
    out.bulk(b"max-deleted-entry-id");
    reply_id(out, s.max_deleted_id);
    out.bulk(b"entries-added");
    out.int(ms_i64(s.entries_added));
    out.bulk(b"recorded-first-entry-id");
    reply_id(out, s.first_id);
    match full {
        None => {
            out.bulk(b"groups");
            out.int(s.groups.len() as i64);
            out.bulk(b"first-entry");
            reply_edge_entry(out, s, false);
            out.bulk(b"last-entry");
            reply_edge_entry(out, s, true);
        }
        Some(count) => {
            out.bulk(b"entries");
            let entries = if count == 0 { 0 } else { listing_limit(count) };
            reply_range(out, s, StreamId::MIN, StreamId::MAX, false, entries);
            out.bulk(b"groups");
            out.array(s.groups.len());
            for (name, g) in &s.groups {
                reply_full_group(out, s, name, g, count);
            }
        }
    }
    Ok(())
}

/// How many items a listing under COUNT `count` shows at most (0: no bound).
fn listing_limit(count: u64) -> usize {
    match count {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

/// One group of XINFO STREAM FULL: its counters, its PEL and its consumers with theirs.
fn reply_full_group(out: &mut Reply, s: &Stream, name: &[u8], g: &Group, count: u64) {
    out.map(7);
    out.bulk(b"name");
    out.bulk(name);
    out.bulk(b"last-delivered-id");
    reply_id(out, g.last_id);
    out.bulk(b"entries-read");
    reply_entries_read(out, g);
    out.bulk(b"lag");
    reply_lag(out, s, g);
    out.bulk(b"pel-count");
    out.int(g.pel.len() as i64);
    out.bulk(b"pending");
    let limit = listing_limit(count);
    let shown = g.pel.iter().take(limit);
    out.array(g.pel.len().min(limit));
    for (id, nack) in shown {
        out.array(4);
        reply_id(out, *id);
        out.bulk(&nack.consumer);
        out.int(ms_i64(nack.delivery_time_ms));
        out.int(ms_i64(nack.delivery_count));
    }
    out.bulk(b"consumers");
    out.array(g.consumers.len());
    for (cname, consumer) in &g.consumers {
        out.map(4);
        out.bulk(b"name");
        out.bulk(cname);
        out.bulk(b"seen-time");
        out.int(ms_i64(consumer.seen_time_ms));
        out.bulk(b"pel-count");
        out.int(consumer.pending.len() as i64);
        out.bulk(b"pending");
        out.array(consumer.pending.len().min(limit));
        for id in consumer.pending.iter().take(limit) {
            let (time, deliveries) = g
                .pel
                .get(id)
                .map_or((0, 0), |n| (n.delivery_time_ms, n.delivery_count));
            out.array(3);
            reply_id(out, *id);
            out.int(ms_i64(time));
            out.int(ms_i64(deliveries));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::keyspace::Entry;
    use crate::prop::Propagate;
    use crate::resp::Proto;
    use crate::shard::testing::TestShard;
    use crate::types::stream::{Limits, Stream, StreamId};
    use crate::types::Value;

    /// Stores a stream at `key` holding entries `ms-0` for each `ms`, field `f`, value `v`.
    fn stream(t: &mut TestShard, key: &str, ms: &[u64]) {
        let mut s = Stream::new();
        for &m in ms {
            s.append(StreamId::new(m, 0), &[b"f", b"v"], Limits::default());
        }
        t.shard.dbs[0].insert(key.as_bytes(), Entry::new(Value::Stream(Box::new(s))));
    }

    /// The stream at `key`, mutably.
    fn get<'t>(t: &'t mut TestShard, key: &str) -> &'t mut Stream {
        let now = t.now_ms;
        match t.shard.dbs[0].get_mut(key.as_bytes(), now) {
            Some(e) => e.value.as_stream_mut().unwrap(),
            None => panic!("no stream {key}"),
        }
    }

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    fn bulks(items: &[&str]) -> String {
        let mut out = format!("*{}\r\n", items.len());
        for i in items {
            out.push_str(&bulk(i));
        }
        out
    }

    /// The propagation log so far, as text with CRLFs shown as spaces.
    fn log(t: &mut TestShard) -> String {
        let p = t.shard.prop.get_or_insert_with(Propagate::default);
        let text = String::from_utf8_lossy(&p.buf).replace("\r\n", " ");
        p.buf.clear();
        text
    }

    const NO_KEY: &str = "-ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.\r\n";

    #[test]
    fn xgroup_create_and_its_errors() {
        let mut t = TestShard::new();
        assert_eq!(t.run("XGROUP CREATE s g $"), NO_KEY);
        assert_eq!(
            t.run("XGROUP CREATE s g x MKSTREAM"),
            "-ERR Invalid stream ID specified as stream command argument\r\n"
        );
        assert!(t.shard.dbs[0].get(b"s", t.now_ms).is_none());
        assert_eq!(t.run("XGROUP CREATE s g $ MKSTREAM"), "+OK\r\n");
        assert_eq!(
            t.run("XGROUP CREATE s g $ MKSTREAM"),
            "-BUSYGROUP Consumer Group name already exists\r\n"
        );
        let unknown = "-ERR unknown subcommand or wrong number of arguments for 'CREATE'. Try XGROUP HELP.\r\n";
        assert_eq!(t.run("XGROUP CREATE s g2 0 FOO"), unknown);
        assert_eq!(t.run("XGROUP CREATE s g2 0 ENTRIESREAD"), unknown);
        assert_eq!(
            t.run("XGROUP CREATE s g2 0 MKSTREAM MKSTREAM MKSTREAM MKSTREAM"),
            unknown
        );
        assert_eq!(
            t.run("XGROUP CREATE s g2 0 ENTRIESREAD -2"),
            "-ERR value for ENTRIESREAD must be positive or -1\r\n"
        );
        assert_eq!(
            t.run("XGROUP CREATE s g2 0 ENTRIESREAD x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            t.run("XGROUP CREATE s g2 -"),
            "-ERR Invalid stream ID specified as stream command argument\r\n"
        );
        assert_eq!(
            t.run("XGROUP SETID s nog 0"),
            "-NOGROUP No such consumer group 'nog' for key name 's'\r\n"
        );
        assert_eq!(t.run("XGROUP SETID s g 0 MKSTREAM"), "-ERR unknown subcommand or wrong number of arguments for 'SETID'. Try XGROUP HELP.\r\n");
        assert_eq!(t.run("XGROUP SETID s g +"), "+OK\r\n");
        assert_eq!(get(&mut t, "s").groups[&b"g"[..]].last_id, StreamId::MAX);
        assert_eq!(t.run("XGROUP DESTROY s nog"), ":0\r\n");
        assert_eq!(t.run("XGROUP DESTROY nokey g"), NO_KEY);
        assert_eq!(t.run("XGROUP DESTROY s g"), ":1\r\n");
        t.run("SET str x");
        assert!(t.run("XGROUP CREATE str g 0").starts_with("-WRONGTYPE"));
        assert_eq!(
            t.run("XGROUP FOO s g"),
            "-ERR unknown subcommand 'FOO'. Try XGROUP HELP.\r\n"
        );
        assert!(t
            .run("XGROUP HELP")
            .starts_with("*17\r\n+XGROUP <subcommand>"));
    }

    #[test]
    fn xgroup_consumers_dirty_and_events() {
        let mut t = TestShard::new();
        stream(&mut t, "s", &[1, 2, 3]);
        t.shard.notify_flags = crate::notify::class::ALL | crate::notify::class::KEYEVENT;
        let dirty = t.shard.stats.dirty;
        t.run("XGROUP CREATE s g 0 ENTRIESREAD 1");
        assert_eq!(t.run("XGROUP CREATECONSUMER s g c1"), ":1\r\n");
        assert_eq!(t.run("XGROUP CREATECONSUMER s g c1"), ":0\r\n");
        assert_eq!(
            t.run("XCLAIM s g c1 0 1 2 FORCE JUSTID"),
            bulks(&["1-0", "2-0"])
        );
        assert_eq!(t.run("XGROUP DELCONSUMER s g c1"), ":2\r\n");
        assert_eq!(t.run("XGROUP DELCONSUMER s g c1"), ":0\r\n");
        assert_eq!(t.run("XGROUP SETID s g 3 ENTRIESREAD 3"), "+OK\r\n");
        assert_eq!(t.run("XGROUP DESTROY s g"), ":1\r\n");
        // create, createconsumer, two claims, delconsumer, setid, destroy.
        assert_eq!(t.shard.stats.dirty, dirty + 7);
        let events: Vec<&str> = t.shard.events.iter().map(|e| e.event).collect();
        assert_eq!(
            events,
            [
                "xgroup-create",
                "xgroup-createconsumer",
                "xgroup-delconsumer",
                "xgroup-setid",
                "xgroup-destroy"
            ]
        );
    }

    #[test]
    fn xack_and_xpending() {
        let mut t = TestShard::new();
        stream(&mut t, "s", &[1, 2, 3, 4]);
        t.run("XGROUP CREATE s g 0");
        assert_eq!(t.run("XPENDING s g"), "*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n");
        t.run("XCLAIM s g bob 0 1 2 FORCE JUSTID TIME 1000");
        t.run("XCLAIM s g al 0 3 FORCE JUSTID");
        assert_eq!(
            t.run("XPENDING s g"),
            "*4\r\n:3\r\n$3\r\n1-0\r\n$3\r\n3-0\r\n*2\r\n*2\r\n$2\r\nal\r\n$1\r\n1\r\n*2\r\n$3\r\nbob\r\n$1\r\n2\r\n"
        );
        let idle = t.now_ms - 1000;
        assert_eq!(
            t.run("XPENDING s g IDLE 10 - + 10"),
            format!("*2\r\n*4\r\n$3\r\n1-0\r\n$3\r\nbob\r\n:{idle}\r\n:1\r\n*4\r\n$3\r\n2-0\r\n$3\r\nbob\r\n:{idle}\r\n:1\r\n")
        );
        assert!(t
            .run("XPENDING s g (1 + 10 al")
            .starts_with("*1\r\n*4\r\n$3\r\n3-0\r\n$2\r\nal\r\n:0\r\n"));
        assert_eq!(t.run("XPENDING s g - + 10 nobody"), "*0\r\n");
        assert_eq!(t.run("XPENDING s g - + -1"), "*0\r\n");
        assert_eq!(t.run("XPENDING s g - +"), "-ERR syntax error\r\n");
        assert_eq!(t.run("XPENDING s g IDLE 1 - +"), "-ERR syntax error\r\n");
        assert_eq!(
            t.run("XPENDING s g - (0-0 1"),
            "-ERR invalid end ID for the interval\r\n"
        );
        assert_eq!(
            t.run("XPENDING nokey g x + 1"),
            "-ERR Invalid stream ID specified as stream command argument\r\n"
        );
        assert_eq!(
            t.run("XPENDING nokey g"),
            "-NOGROUP No such key 'nokey' or consumer group 'g'\r\n"
        );
        assert_eq!(t.run("XACK nokey g x"), ":0\r\n");
        assert_eq!(
            t.run("XACK s g 1 x"),
            "-ERR Invalid stream ID specified as stream command argument\r\n"
        );
        assert_eq!(t.run("XACK s g 1 1 9"), ":1\r\n");
        t.proto = Proto::Resp3;
        t.run("XACK s g 2 3");
        assert_eq!(t.run("XPENDING s g"), "*4\r\n:0\r\n_\r\n_\r\n_\r\n");
        assert!(get(&mut t, "s").groups[&b"g"[..]].consistent());
    }

    #[test]
    fn xclaim_options_and_propagation() {
        let mut t = TestShard::new();
        stream(&mut t, "s", &[1, 2, 3]);
        t.run("XGROUP CREATE s g 0");
        log(&mut t);
        // FORCE starts a count at 1, and a claim without JUSTID counts a delivery.
        assert_eq!(
            t.run("XCLAIM s g a 0 1 FORCE TIME 1000"),
            "*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
        );
        assert_eq!(
            log(&mut t),
            "*2 $6 SELECT $1 0 *14 $6 XCLAIM $1 s $1 g $1 a $1 0 $1 1 $4 TIME $4 1000 $10 RETRYCOUNT $1 2 $5 FORCE $6 JUSTID $6 LASTID $3 0-0 "
        );
        // Not idle long enough: nothing, and nothing logged.
        assert_eq!(t.run("XCLAIM s g b 99999999999999 1"), "*0\r\n");
        assert_eq!(log(&mut t), "");
        // A future TIME is now; RETRYCOUNT sets the count.
        let now = t.now_ms;
        assert_eq!(
            t.run("XCLAIM s g b 0 1-0 TIME 99999999999999 RETRYCOUNT 7 JUSTID"),
            bulks(&["1-0"])
        );
        assert_eq!(
            log(&mut t),
            format!("*14 $6 XCLAIM $1 s $1 g $1 b $1 0 $3 1-0 $4 TIME $13 {now} $10 RETRYCOUNT $1 7 $5 FORCE $6 JUSTID $6 LASTID $3 0-0 ")
        );
        // LASTID alone is logged as XGROUP SETID.
        assert_eq!(t.run("XCLAIM s g b 0 9 LASTID 5"), "*0\r\n");
        assert_eq!(
            log(&mut t),
            "*7 $6 XGROUP $5 SETID $1 s $1 g $3 5-0 $11 ENTRIESREAD $2 -1 "
        );
        // A deleted entry leaves the PEL, logged with its old owner.
        get(&mut t, "s").delete(StreamId::new(1, 0));
        assert_eq!(t.run("XCLAIM s g c 0 1 IDLE 5"), "*0\r\n");
        assert_eq!(
            log(&mut t),
            format!("*14 $6 XCLAIM $1 s $1 g $1 b $1 0 $1 1 $4 TIME $13 {now} $10 RETRYCOUNT $1 7 $5 FORCE $6 JUSTID $6 LASTID $3 5-0 ")
        );
        let g = &get(&mut t, "s").groups[&b"g"[..]];
        assert!(g.pel.is_empty() && g.consistent());
        // The consumer is created only by a claim.
        assert!(!g.consumers.contains_key(&b"c"[..]));
        let errors = [
            (
                "XCLAIM nokey g c 0 1",
                "-NOGROUP No such key 'nokey' or consumer group 'g'\r\n",
            ),
            (
                "XCLAIM s g c x 1",
                "-ERR Invalid min-idle-time argument for XCLAIM\r\n",
            ),
            (
                "XCLAIM s g c 0 x",
                "-ERR Unrecognized XCLAIM option 'x'\r\n",
            ),
            (
                "XCLAIM s g c 0 1 IDLE",
                "-ERR Unrecognized XCLAIM option 'IDLE'\r\n",
            ),
            (
                "XCLAIM s g c 0 1 IDLE x",
                "-ERR Invalid IDLE option argument for XCLAIM\r\n",
            ),
            (
                "XCLAIM s g c 0 1 TIME x",
                "-ERR Invalid TIME option argument for XCLAIM\r\n",
            ),
            (
                "XCLAIM s g c 0 1 RETRYCOUNT x",
                "-ERR Invalid RETRYCOUNT option argument for XCLAIM\r\n",
            ),
            (
                "XCLAIM s g c 0 1 LASTID x",
                "-ERR Invalid stream ID specified as stream command argument\r\n",
            ),
            (
                "XCLAIM s g c 0 1 JUSTID 2",
                "-ERR Unrecognized XCLAIM option '2'\r\n",
            ),
        ];
        for (cmd, err) in errors {
            assert_eq!(t.run(cmd), err, "{cmd}");
        }
    }

    #[test]
    fn xautoclaim_cursor_and_deleted_entries() {
        let mut t = TestShard::new();
        stream(&mut t, "s", &[1, 2, 3, 4, 5]);
        t.run("XGROUP CREATE s g 0");
        t.run("XCLAIM s g a 0 1 2 3 4 5 FORCE JUSTID TIME 1000");
        get(&mut t, "s").delete(StreamId::new(2, 0));
        get(&mut t, "s").delete(StreamId::new(3, 0));
        let big = "99999999999999";
        assert_eq!(
            t.run(&format!("XAUTOCLAIM s g b {big} 0 COUNT 1")),
            "*3\r\n$3\r\n3-0\r\n*0\r\n*1\r\n$3\r\n2-0\r\n"
        );
        assert_eq!(
            t.run(&format!("XAUTOCLAIM s g b {big} 0 COUNT 2")),
            "*3\r\n$3\r\n0-0\r\n*0\r\n*1\r\n$3\r\n3-0\r\n"
        );
        assert_eq!(
            t.run("XAUTOCLAIM s g b 0 0 COUNT 1 JUSTID"),
            "*3\r\n$3\r\n4-0\r\n*1\r\n$3\r\n1-0\r\n*0\r\n"
        );
        assert_eq!(
            t.run("XAUTOCLAIM s g b 0 (1 COUNT 1"),
            "*3\r\n$3\r\n5-0\r\n*1\r\n*2\r\n$3\r\n4-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*0\r\n"
        );
        let g = &get(&mut t, "s").groups[&b"g"[..]];
        assert_eq!(g.pel[&StreamId::new(4, 0)].delivery_count, 2);
        assert_eq!(g.pel[&StreamId::new(1, 0)].delivery_count, 1);
        assert!(g.consistent());
        let count = "-ERR COUNT must be > 0\r\n";
        assert_eq!(t.run("XAUTOCLAIM s g b 0 0 COUNT 0"), count);
        assert_eq!(t.run("XAUTOCLAIM s g b 0 0 COUNT x"), count);
        assert_eq!(
            t.run("XAUTOCLAIM s g b 0 0 COUNT 576460752303423488"),
            count
        );
        assert_eq!(t.run("XAUTOCLAIM s g b 0 0 COUNT"), "-ERR syntax error\r\n");
        assert_eq!(
            t.run("XAUTOCLAIM s g b x 0"),
            "-ERR Invalid min-idle-time argument for XAUTOCLAIM\r\n"
        );
        assert_eq!(
            t.run("XAUTOCLAIM s nog b 0 x"),
            "-ERR Invalid stream ID specified as stream command argument\r\n"
        );
        assert_eq!(
            t.run("XAUTOCLAIM s nog b 0 0"),
            "-NOGROUP No such key 's' or consumer group 'nog'\r\n"
        );
    }

    #[test]
    fn xinfo_replies() {
        let mut t = TestShard::new();
        assert_eq!(t.run("XINFO STREAM s"), "-ERR no such key\r\n");
        t.run("XGROUP CREATE e g $ MKSTREAM");
        assert_eq!(
            t.run("XINFO STREAM e"),
            "*20\r\n$6\r\nlength\r\n:0\r\n$15\r\nradix-tree-keys\r\n:0\r\n$16\r\nradix-tree-nodes\r\n:1\r\n\
             $17\r\nlast-generated-id\r\n$3\r\n0-0\r\n$20\r\nmax-deleted-entry-id\r\n$3\r\n0-0\r\n\
             $13\r\nentries-added\r\n:0\r\n$23\r\nrecorded-first-entry-id\r\n$3\r\n0-0\r\n\
             $6\r\ngroups\r\n:1\r\n$11\r\nfirst-entry\r\n$-1\r\n$10\r\nlast-entry\r\n$-1\r\n"
        );
        stream(&mut t, "s", &[1, 2, 3]);
        t.run("XGROUP CREATE s g 0 ENTRIESREAD 100");
        assert!(t
            .run("XINFO GROUPS s")
            .ends_with("$12\r\nentries-read\r\n:100\r\n$3\r\nlag\r\n:-97\r\n"));
        t.run("XCLAIM s g a 0 1 2 FORCE TIME 1000");
        let full = t.run("XINFO STREAM s FULL COUNT 1");
        assert!(full.starts_with("*18\r\n"), "{full}");
        assert!(
            full.contains("$7\r\nentries\r\n*1\r\n*2\r\n$3\r\n1-0\r\n"),
            "{full}"
        );
        assert!(
            full.contains("$7\r\npending\r\n*1\r\n*4\r\n$3\r\n1-0\r\n$1\r\na\r\n:1000\r\n:2\r\n"),
            "{full}"
        );
        assert!(full.contains("$9\r\npel-count\r\n:2\r\n$7\r\npending\r\n*1\r\n*3\r\n$3\r\n1-0\r\n:1000\r\n:2\r\n"), "{full}");
        let syntax = "-ERR unknown subcommand or wrong number of arguments for 'STREAM'. Try XINFO HELP.\r\n";
        assert_eq!(t.run("XINFO STREAM s FOO"), syntax);
        assert_eq!(t.run("XINFO STREAM s FULL COUNT"), syntax);
        assert_eq!(
            t.run("XINFO STREAM s FULL COUNT x"),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(t.run("XINFO STREAM nokey FOO"), "-ERR no such key\r\n");
        assert_eq!(
            t.run("XINFO CONSUMERS s nog"),
            "-NOGROUP No such consumer group 'nog' for key name 's'\r\n"
        );
        t.now_ms += 5;
        assert_eq!(
            t.run("XINFO CONSUMERS s g"),
            "*1\r\n*6\r\n$4\r\nname\r\n$1\r\na\r\n$7\r\npending\r\n:2\r\n$4\r\nidle\r\n:5\r\n"
        );
        t.proto = Proto::Resp3;
        assert!(t.run("XINFO CONSUMERS s g").starts_with("*1\r\n%3\r\n"));
        assert!(t.run("XINFO STREAM s FULL").starts_with("%9\r\n"));
        assert!(t
            .run("XINFO STREAM e")
            .ends_with("$11\r\nfirst-entry\r\n_\r\n$10\r\nlast-entry\r\n_\r\n"));
        assert!(t.run("XINFO HELP").starts_with("*9\r\n+XINFO <subcommand>"));
    }

    /// The groups of stream `key`, without the consumers' seen times (a replay runs later).
    fn groups_of(sh: &mut crate::Shard, key: &str) -> String {
        let Some(e) = sh.dbs[0].get(key.as_bytes(), 0) else {
            return "none".into();
        };
        let s = e.value.as_stream().unwrap();
        let mut out = String::new();
        for (name, g) in &s.groups {
            let consumers: Vec<_> = g.consumers.iter().map(|(n, c)| (n, &c.pending)).collect();
            out += &format!(
                "{name:?} {} {:?} {:?} {consumers:?}\n",
                g.last_id, g.entries_read, g.pel
            );
        }
        out
    }

    #[test]
    fn claims_replay_to_the_same_groups() {
        let mut t = TestShard::new();
        let script = [
            "XGROUP CREATE s g 0",
            "XCLAIM s g a 0 1 2 3 4 5 FORCE TIME 1000",
            "XCLAIM s g b 100 1-0 2 RETRYCOUNT 9",
            "XCLAIM s g b 0 3 IDLE 50 JUSTID LASTID 4",
            "XCLAIM s g c 0 9 LASTID 6",
            "@del 2",
            "XAUTOCLAIM s g d 10 0 COUNT 2",
            "@del 5",
            "XCLAIM s g e 0 5 4",
            "XACK s g 1",
            "XAUTOCLAIM s g d 0 0 JUSTID",
            "XGROUP CREATECONSUMER s g f",
            "XGROUP DELCONSUMER s g b",
        ];
        stream(&mut t, "s", &[1, 2, 3, 4, 5, 6]);
        t.shard.prop = Some(Propagate::default());
        for line in script {
            t.now_ms += 7;
            match line.strip_prefix("@del ") {
                Some(ms) => {
                    get(&mut t, "s").delete(StreamId::new(ms.parse().unwrap(), 0));
                }
                None => assert!(!t.run(line).starts_with('-'), "{line}"),
            }
        }
        let log = t.shard.prop.take().unwrap().buf;
        let mut r = TestShard::new();
        stream(&mut r, "s", &[1, 3, 4, 6]);
        r.now_ms += 1_000_000;
        let replay = crate::aof::replay(&mut r.shard, &log, |_| true).unwrap();
        assert!(replay.failed.is_empty(), "{replay:?}");
        assert_eq!(groups_of(&mut r.shard, "s"), groups_of(&mut t.shard, "s"));
        assert!(get(&mut t, "s").groups[&b"g"[..]].consistent());
    }

    #[test]
    fn rax_node_counts_match_redis() {
        use super::rax_node_count;
        let keys = |ms: &[u64]| -> Vec<[u8; 16]> {
            ms.iter()
                .map(|&m| StreamId::new(m, 0).to_be_bytes())
                .collect()
        };
        // Figures from redis-server 7.0.15: 1 key, 250 and 1000 entries of 100 per node.
        assert_eq!(rax_node_count(&[]), 1);
        assert_eq!(rax_node_count(&keys(&[1])), 2);
        assert_eq!(rax_node_count(&keys(&[1, 101, 201])), 8);
        let thousand: Vec<u64> = (0..10).map(|i| 1 + 100 * i).collect();
        assert_eq!(rax_node_count(&keys(&thousand)), 26);
    }

    #[test]
    fn keyspace_statistics_and_claim_events() {
        let mut t = TestShard::new();
        stream(&mut t, "s", &[1, 2]);
        t.run("XGROUP CREATE s g 0");
        t.run("XGROUP CREATE nokey g 0");
        let (hits, misses) = (t.shard.stats.keyspace_hits, t.shard.stats.keyspace_misses);
        assert_eq!((hits, misses), (0, 0), "XGROUP looks up for writing");
        for cmd in [
            "XINFO STREAM s",
            "XINFO STREAM nokey",
            "XACK nokey g 1",
            "XPENDING s g",
        ] {
            t.run(cmd);
        }
        t.run("XCLAIM s g c 0 1");
        t.run("XAUTOCLAIM nokey g c 0 0");
        t.run("XINFO HELP");
        assert_eq!(t.shard.stats.keyspace_hits, 3);
        assert_eq!(t.shard.stats.keyspace_misses, 3);
        t.shard.notify_flags = crate::notify::class::ALL | crate::notify::class::KEYEVENT;
        t.run("XCLAIM s g alice 0 1 2 FORCE JUSTID");
        t.run("XAUTOCLAIM s g bob 0 0");
        t.run("XAUTOCLAIM s g bob 0 0");
        let events: Vec<&str> = t.shard.events.iter().map(|e| e.event).collect();
        assert_eq!(events, ["xgroup-createconsumer", "xgroup-createconsumer"]);
        // Seen time: set by a claim, left alone by XPENDING and XINFO.
        t.now_ms += 100;
        t.run("XPENDING s g - + 10 bob");
        t.run("XINFO CONSUMERS s g");
        let seen =
            |t: &mut TestShard, c: &[u8]| get(t, "s").groups[&b"g"[..]].consumers[c].seen_time_ms;
        assert_eq!(seen(&mut t, b"bob"), t.now_ms - 100);
        t.run("XAUTOCLAIM s g bob 0 0 JUSTID");
        assert_eq!(seen(&mut t, b"bob"), t.now_ms);
        assert_eq!(seen(&mut t, b"alice"), t.now_ms - 100);
    }
}
