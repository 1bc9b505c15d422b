//! Stream commands (Redis's `t_stream.c`): XADD, XTRIM, XDEL, XLEN, XRANGE, XREVRANGE, XSETID,
//! XREAD and XREADGROUP, with Redis 7.0's replies, errors, keyspace events and propagation.
//! Consumer-group management lives in [`group`]; the data structure in `types::stream`.
//!
//! The id parsing and entry replies here are shared by both files.
//!
//! What is logged (see `crate::prop`) is each call's deterministic effect, as Redis 7.0
//! propagates it:
//!
//! | command | logged as |
//! |---|---|
//! | XADD with `*` or `ms-*` | the same arguments with the generated id |
//! | XADD / XTRIM with `~` | `=` and the exact outcome: the length left (MAXLEN) or the first id left (MINID; `18446744073709551615-18446744073709551615` when empty); a LIMIT stays (a replay ignores it, as Redis's AOF client does) |
//! | XREADGROUP delivering entries | `XCLAIM key group consumer 0 id TIME ms RETRYCOUNT n FORCE JUSTID LASTID id` per entry, then `XGROUP SETID key group id ENTRIESREAD n` |
//! | XREADGROUP … NOACK | `XGROUP CREATECONSUMER key group consumer` for a new consumer, `XGROUP SETID key group id ENTRIESREAD n` when the group moved |
//! | XREADGROUP reading history | `XGROUP CREATECONSUMER …` for a new consumer, an XCLAIM (count and time of the new delivery) per entry still there |
//!
//! Redis 7.0 propagates a history read as nothing and, without NOACK, not the group's
//! entries-read counter, so its replicas lose delivery counts, consumers and the counter;
//! the last two rows keep this log's rule that a replay rebuilds the same data (Redis 7.2
//! propagates the group's position after every read too).
//!
//! XREAD and XREADGROUP with BLOCK return [`Error::Blocked`] when nothing can be served; XREAD
//! with `$` leaves the command to run again in [`Shard::block_args`] (`$` replaced by the last
//! id at the time it blocked). When the server runs a parked command again ([`Shard::rerun`]),
//! at most one stream is served (Redis serves the key that became ready), COUNT defaults to
//! 1000 (Redis's `XREAD_BLOCKED_DEFAULT_COUNT`), XREAD keeps waiting on a missing key or one of
//! another type, and XREADGROUP fails as Redis's woken client does when its key or group is gone.

pub mod group;

use super::spec::{
    acl, flag, kflag, Arg, ArgType, BeginSearch, CommandSpec, FindKeys, Group as DocGroup, KeySpec,
    Route, Split,
};
use super::Call;
use crate::keyspace::Entry;
use crate::notify::class;
use crate::resp::Reply;
use crate::types::stream::{Group, Stream, StreamId, Trim, TrimBy};
use crate::types::Value;
use crate::util::{eq_ic, parse_i64};
use crate::{Error, Result, Shard};

const STREAM: CommandSpec = CommandSpec {
    group: DocGroup::Stream,
    acl: acl::STREAM,
    since: "5.0.0",
    ..CommandSpec::DEFAULT
};

const KEY: Arg = Arg::key("key", 0);
const TRIM_ARGS: &[Arg] = &[
    Arg::oneof(
        "strategy",
        &[
            Arg::token("maxlen", "MAXLEN"),
            Arg::token("minid", "MINID").since("6.2.0"),
        ],
    ),
    Arg::oneof(
        "operator",
        &[Arg::token("equal", "="), Arg::token("approximately", "~")],
    )
    .optional(),
    Arg::new("threshold", ArgType::String),
    Arg::new("count", ArgType::Integer)
        .with_token("LIMIT")
        .since("6.2.0")
        .optional(),
];
const COUNT: Arg = Arg::new("count", ArgType::Integer)
    .with_token("COUNT")
    .optional();
const BLOCK: Arg = Arg::new("milliseconds", ArgType::Integer)
    .with_token("BLOCK")
    .optional();
const STREAMS: Arg = Arg::block(
    "streams",
    &[KEY.multiple(), Arg::new("id", ArgType::String).multiple()],
)
.with_token("STREAMS");
const RANGE_HISTORY: &[(&str, &str)] = &[("6.2.0", "Added exclusive ranges.")];

/// The keys of XREAD and XREADGROUP: the first half of what follows STREAMS.
const fn read_keys(startfrom: i32) -> KeySpec {
    KeySpec {
        notes: None,
        flags: kflag::RO | kflag::ACCESS,
        begin: BeginSearch::Keyword {
            keyword: "STREAMS",
            startfrom,
        },
        find: FindKeys::Range {
            lastkey: -1,
            step: 1,
            limit: 2,
        },
    }
}

/// The stream commands that do not involve consumer groups' management.
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "xadd",
        arity: -5,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec {
            notes: Some("UPDATE instead of INSERT because of the optional trimming feature"),
            ..KeySpec::one(1, kflag::RW | kflag::UPDATE)
        }],
        run: Some(xadd),
        summary: "Appends an entry to a stream, creating the stream if needed.",
        complexity: "O(1) when adding a new entry, O(N) when trimming where N being the number of entries evicted.",
        tips: &["nondeterministic_output"],
        history: &[
            (
                "6.2.0",
                "Added the `NOMKSTREAM` option, `MINID` trimming strategy and the `LIMIT` option.",
            ),
            ("7.0.0", "Added support for the `<ms>-*` explicit ID form."),
        ],
        args: &[
            KEY,
            Arg::token("nomkstream", "NOMKSTREAM")
                .since("6.2.0")
                .optional(),
            Arg::block("trim", TRIM_ARGS).optional(),
            Arg::oneof(
                "id_or_auto",
                &[
                    Arg::token("auto_id", "*"),
                    Arg::new("id", ArgType::String),
                ],
            ),
            Arg::block(
                "field_value",
                &[
                    Arg::new("field", ArgType::String),
                    Arg::new("value", ArgType::String),
                ],
            )
            .multiple(),
        ],
        ..STREAM
    },
    CommandSpec {
        name: "xtrim",
        arity: -4,
        flags: flag::WRITE,
        keys: &[KeySpec::one(1, kflag::RW | kflag::DELETE)],
        run: Some(xtrim),
        summary: "Removes the oldest entries of a stream, down to a length or up to an id.",
        complexity: "O(N), with N being the number of evicted entries. Constant times are very small however, since entries are organized in macro nodes containing multiple entries that can be released with a single deallocation.",
        tips: &["nondeterministic_output"],
        history: &[(
            "6.2.0",
            "Added the `MINID` trimming strategy and the `LIMIT` option.",
        )],
        args: &[KEY, Arg::block("trim", TRIM_ARGS)],
        ..STREAM
    },
    CommandSpec {
        name: "xdel",
        arity: -3,
        flags: flag::WRITE | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::DELETE)],
        run: Some(xdel),
        summary: "Deletes entries of a stream by id and answers with how many existed.",
        complexity: "O(1) for each single item to delete in the stream, regardless of the stream size.",
        args: &[KEY, Arg::new("id", ArgType::String).multiple()],
        ..STREAM
    },
    CommandSpec {
        name: "xlen",
        arity: 2,
        flags: flag::READONLY | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RO)],
        run: Some(xlen),
        summary: "Answers with the number of entries in a stream.",
        args: &[KEY],
        ..STREAM
    },
    CommandSpec {
        name: "xrange",
        arity: -4,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(xrange),
        summary: "Answers with the entries of a stream whose ids fall in an interval, oldest first.",
        complexity: "O(N) with N being the number of elements being returned. If N is constant (e.g. always asking for the first 10 elements with COUNT), you can consider it O(1).",
        history: RANGE_HISTORY,
        args: &[
            KEY,
            Arg::new("start", ArgType::String),
            Arg::new("end", ArgType::String),
            COUNT,
        ],
        ..STREAM
    },
    CommandSpec {
        name: "xrevrange",
        arity: -4,
        flags: flag::READONLY,
        keys: &[KeySpec::one(1, kflag::RO | kflag::ACCESS)],
        run: Some(xrevrange),
        summary: "Answers with the entries of a stream whose ids fall in an interval, newest first.",
        complexity: "O(N) with N being the number of elements returned. If N is constant (e.g. always asking for the first 10 elements with COUNT), you can consider it O(1).",
        history: RANGE_HISTORY,
        args: &[
            KEY,
            Arg::new("end", ArgType::String),
            Arg::new("start", ArgType::String),
            COUNT,
        ],
        ..STREAM
    },
    CommandSpec {
        name: "xsetid",
        arity: -3,
        flags: flag::WRITE | flag::DENYOOM | flag::FAST,
        keys: &[KeySpec::one(1, kflag::RW | kflag::UPDATE)],
        run: Some(xsetid),
        summary: "Sets a stream's last id and bookkeeping (used to replicate streams).",
        history: &[(
            "7.0.0",
            "Added the `entries_added` and `max_deleted_entry_id` arguments.",
        )],
        args: &[
            KEY,
            Arg::new("last-id", ArgType::String),
            Arg::new("entries_added", ArgType::Integer)
                .with_token("ENTRIESADDED")
                .since("7.0.0")
                .optional(),
            Arg::new("max_deleted_entry_id", ArgType::String)
                .with_token("MAXDELETEDID")
                .since("7.0.0")
                .optional(),
        ],
        ..STREAM
    },
    CommandSpec {
        name: "xread",
        arity: -4,
        flags: flag::READONLY | flag::BLOCKING,
        keys: &[read_keys(1)],
        route: Route::Keys(Split::Gather),
        run: Some(xread),
        summary: "Answers with the entries of streams after given ids, waiting for some if asked to.",
        complexity: "For each stream mentioned: O(N) with N being the number of elements being returned, it means that XREAD-ing with a fixed COUNT is O(1). Note that when the BLOCK option is used, XADD will pay O(M) time in order to serve the M clients blocked on the stream getting new data.",
        args: &[COUNT, BLOCK, STREAMS],
        ..STREAM
    },
    CommandSpec {
        name: "xreadgroup",
        arity: -7,
        flags: flag::WRITE | flag::BLOCKING,
        keys: &[read_keys(4)],
        route: Route::Keys(Split::Gather),
        run: Some(xreadgroup),
        summary: "Delivers new entries of streams to a consumer of a group, or answers with its pending history.",
        complexity: "For each stream mentioned: O(M) with M being the number of elements returned. If M is constant (e.g. always asking for the first 10 elements with COUNT), you can consider it O(1). On the other side when XREADGROUP blocks, XADD will pay the O(N) time in order to serve the N clients blocked on the stream getting new data.",
        args: &[
            Arg::block(
                "group_consumer",
                &[
                    Arg::new("group", ArgType::String),
                    Arg::new("consumer", ArgType::String),
                ],
            )
            .with_token("GROUP"),
            COUNT,
            BLOCK,
            Arg::token("noack", "NOACK").optional(),
            STREAMS,
        ],
        ..STREAM
    },
];

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
    // Redis reads the id as a C string: it ends at a NUL byte.
    let arg = &arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())];
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

/// The stream at `key` for reading (a missing key is `None`, another type `WRONGTYPE`),
/// counting a keyspace hit or miss as Redis's `lookupKeyRead` does.
pub fn read_stream<'s>(
    sh: &'s mut Shard,
    db: usize,
    key: &[u8],
    now_ms: u64,
) -> Result<Option<&'s Stream>> {
    let Shard { dbs, stats, .. } = sh;
    stats
        .count_lookup(dbs[db].get_read(key, now_ms))
        .map(|e| e.value.as_stream())
        .transpose()
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

// ---------------------------------------------------------------------------------------------
// XADD and XTRIM.

/// The id XADD was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddId {
    /// `*`: generated from the clock.
    Auto,
    /// `ms-*`: the sequence is generated.
    Partial(u64),
    /// `ms-seq` (or `ms`, sequence 0).
    Explicit(StreamId),
}

/// The options XADD and XTRIM share (Redis's `streamAddTrimArgs`), with where they were
/// found, for rewriting the command's log form.
#[derive(Debug, Clone, Copy)]
struct AddTrim {
    trim: Option<Trim>,
    /// The index of the MAXLEN/MINID threshold, and of its `~`/`=` if given.
    threshold_at: usize,
    operator_at: Option<usize>,
    /// The index of the LIMIT keyword, if given.
    limit_at: Option<usize>,
    nomkstream: bool,
    /// XADD's id and its index (XTRIM: `Auto` and the argument count).
    id: AddId,
    id_at: usize,
}

/// Whether the call replays the log (the replay runs at time 0): like Redis's AOF client
/// (`mustObeyClient`), it may carry a LIMIT after `=`, which it ignores.
fn replaying(c: &Call) -> bool {
    c.now_ms == 0
}

/// The LIMIT `~` trimming gets when none is given: 100 nodes, at most 10000 entries.
fn default_trim_limit(node_max_entries: usize) -> u64 {
    match (node_max_entries as u64).checked_mul(100) {
        Some(n) if n > 0 && n <= 10_000 => n,
        _ => 10_000,
    }
}

/// XADD's id: an id in the strict form, or `ms-*` (Redis's `streamParseStrictIDOrReply` with
/// `seq_given`).
fn parse_add_id(arg: &[u8]) -> Result<AddId> {
    let text = &arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())];
    if arg.len() <= 127 {
        if let Some(ms) = text.strip_suffix(b"-*") {
            // Only the first dash separates: `1-2-*` is no id.
            if !ms.contains(&b'-') {
                return string2ull(ms)
                    .map(AddId::Partial)
                    .ok_or_else(|| Error::Other(INVALID_ID.into()));
            }
        }
    }
    parse_id(arg).map(AddId::Explicit)
}

/// A MAXLEN/MINID/LIMIT number: an integer, at least 0, else `ERR The <what> argument must
/// be >= 0.`.
fn parse_non_negative(arg: &[u8], what: &str) -> Result<u64> {
    let n = parse_i64(arg).ok_or(Error::NotInteger)?;
    u64::try_from(n).map_err(|_| Error::err(format!("The {what} argument must be >= 0.")))
}

impl AddTrim {
    /// Parses from argument 2 on as Redis's `streamParseAddOrTrimArgsOrReply` does, with its
    /// errors in its order. For XADD, parsing stops at the id.
    fn parse(
        argv: &[&[u8]],
        xadd: bool,
        node_max_entries: usize,
        replaying: bool,
    ) -> Result<AddTrim> {
        let mut a = AddTrim {
            trim: None,
            threshold_at: 0,
            operator_at: None,
            limit_at: None,
            nomkstream: false,
            id: AddId::Auto,
            id_at: argv.len(),
        };
        let (mut approx, mut limit) = (false, 0u64);
        let mut i = 2;
        while i < argv.len() {
            let (opt, more) = (argv[i], argv.len() - 1 - i);
            if xadd && opt == b"*" {
                a.id_at = i;
                break;
            }
            let maxlen = eq_ic(opt, "maxlen");
            if (maxlen || eq_ic(opt, "minid")) && more > 0 {
                if a.trim.is_some() {
                    return Err(Error::err("syntax error, MAXLEN and MINID options at the same time are not compatible"));
                }
                approx = false;
                if more >= 2 && (argv[i + 1] == b"~" || argv[i + 1] == b"=") {
                    approx = argv[i + 1] == b"~";
                    a.operator_at = Some(i + 1);
                    i += 1;
                }
                let by = if maxlen {
                    TrimBy::MaxLen(parse_non_negative(argv[i + 1], "MAXLEN")?)
                } else {
                    TrimBy::MinId(parse_id(argv[i + 1])?)
                };
                i += 1;
                a.threshold_at = i;
                a.trim = Some(Trim {
                    by,
                    approx,
                    limit: 0,
                });
            } else if eq_ic(opt, "limit") && more > 0 {
                limit = parse_non_negative(argv[i + 1], "LIMIT")?;
                a.limit_at = Some(i);
                i += 1;
            } else if xadd && eq_ic(opt, "nomkstream") {
                a.nomkstream = true;
            } else if xadd {
                a.id = parse_add_id(opt)?;
                a.id_at = i;
                break;
            } else {
                return Err(Error::Syntax);
            }
            i += 1;
        }
        a.finish((xadd, replaying), approx, limit, node_max_entries)
    }

    /// The checks after the options are read, and the LIMIT `~` trimming gets.
    fn finish(
        mut self,
        (xadd, replaying): (bool, bool),
        approx: bool,
        limit: u64,
        node_max_entries: usize,
    ) -> Result<AddTrim> {
        if limit != 0 && self.trim.is_none() {
            return Err(Error::err(
                "syntax error, LIMIT cannot be used without specifying a trimming strategy",
            ));
        }
        if !xadd && self.trim.is_none() {
            return Err(Error::err(
                "syntax error, XTRIM must be called with a trimming strategy",
            ));
        }
        if self.limit_at.is_some() && !approx && !replaying {
            return Err(Error::err(
                "syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
        if let Some(t) = &mut self.trim {
            // Exact trimming is never limited, nor is a replayed one (its threshold is the
            // outcome, as Redis logs it with the LIMIT left in).
            t.limit = match (approx && !replaying, self.limit_at) {
                (false, _) => 0,
                (true, Some(_)) => limit,
                (true, None) => default_trim_limit(node_max_entries),
            };
        }
        Ok(self)
    }

    /// The command as logged: the generated id in place of `*`/`ms-*` and, after `~`
    /// trimming, the exact outcome (`=`, the length or first id left; LIMIT stays, as Redis
    /// logs it, and is ignored on replay). `None` when the arguments themselves are the
    /// effect.
    fn rewrite(&self, argv: &[&[u8]], s: &Stream, id: Option<StreamId>) -> Option<Vec<Vec<u8>>> {
        let approx = self.trim.is_some_and(|t| t.approx);
        let new_id = id.filter(|_| !matches!(self.id, AddId::Explicit(_)));
        if !approx && new_id.is_none() {
            return None;
        }
        let mut out = Vec::with_capacity(argv.len());
        for (i, &arg) in argv.iter().enumerate() {
            let rewritten = if approx && Some(i) == self.operator_at {
                b"=".to_vec()
            } else if approx && i == self.threshold_at {
                threshold_now(s, self.trim)
            } else if i == self.id_at {
                new_id.map_or_else(|| arg.to_vec(), StreamId::to_bytes)
            } else {
                arg.to_vec()
            };
            out.push(rewritten);
        }
        Some(out)
    }
}

/// What an exact trim must be given to leave `s` as it is: its length (MAXLEN) or its first
/// id (MINID; the greatest id when empty, as Redis's `streamGetEdgeID` answers).
fn threshold_now(s: &Stream, trim: Option<Trim>) -> Vec<u8> {
    match trim.map(|t| t.by) {
        Some(TrimBy::MinId(_)) => s.edge_id(false).unwrap_or(StreamId::MAX).to_bytes(),
        _ => {
            let mut b = itoa::Buffer::new();
            b.format(s.len()).as_bytes().to_vec()
        }
    }
}

/// Records `argv` (owned) as the call's logged effect.
fn rewrite_owned(sh: &mut Shard, db: usize, argv: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
    sh.rewrite(db, &refs);
}

/// The id XADD adds after `last`, or Redis's error.
fn next_add_id(id: AddId, last: StreamId, now_ms: u64) -> Result<StreamId> {
    let too_small = || {
        Error::err("The ID specified in XADD is equal or smaller than the target stream top item")
    };
    let new = match id {
        AddId::Auto if now_ms > last.ms => StreamId::new(now_ms, 0),
        // The exhausted stream was refused before; the clock never moves an id backwards.
        AddId::Auto => last.next().ok_or_else(too_small)?,
        AddId::Partial(ms) if ms == last.ms => {
            // Redis 7.0 answers this (a sequence that would overflow) with another error.
            let full = || Error::err("Elements are too large to be stored");
            last.next().filter(|n| n.ms == ms).ok_or_else(full)?
        }
        AddId::Partial(ms) => StreamId::new(ms, 0),
        AddId::Explicit(id) => id,
    };
    if new <= last {
        return Err(too_small());
    }
    Ok(new)
}

/// XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] *|id field value
/// [field value ...]
fn xadd(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let lim = sh.config.stream;
    let a = AddTrim::parse(c.argv, true, lim.node_max_entries, replaying(c))?;
    let fields = c.argv.get(a.id_at + 1..).unwrap_or(&[]);
    if fields.len() < 2 || fields.len() % 2 == 1 {
        return Err(Error::WrongArity("xadd".into()));
    }
    if a.id == AddId::Explicit(StreamId::MIN) {
        return Err(Error::err(
            "The ID specified in XADD must be greater than 0-0",
        ));
    }
    let key = c.argv[1];
    let db = &mut sh.dbs[c.db];
    if db.get_mut(key, c.now_ms).is_none() {
        if a.nomkstream {
            c.out.null();
            return Ok(());
        }
        db.insert(key, Entry::new(new_stream()));
    }
    let s = write_stream(sh, c.db, key, c.now_ms)?.ok_or(Error::NoSuchKey)?;
    if s.last_id == StreamId::MAX {
        return Err(Error::err(
            "The stream has exhausted the last possible ID, unable to add more items",
        ));
    }
    let id = next_add_id(a.id, s.last_id, c.now_ms)?;
    s.append(id, fields, lim);
    let trimmed = a.trim.map_or(0, |t| s.trim(t, lim));
    let logged = a.rewrite(c.argv, s, Some(id));
    reply_id(&mut c.out, id);
    sh.stats.dirty += 1;
    sh.notify(class::STREAM, "xadd", c.db, key);
    if trimmed > 0 {
        sh.notify(class::STREAM, "xtrim", c.db, key);
    }
    if let Some(argv) = logged {
        rewrite_owned(sh, c.db, &argv);
    }
    Ok(())
}

/// XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]
fn xtrim(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let lim = sh.config.stream;
    let a = AddTrim::parse(c.argv, false, lim.node_max_entries, replaying(c))?;
    let key = c.argv[1];
    let Some(s) = write_stream(sh, c.db, key, c.now_ms)? else {
        c.out.int(0);
        return Ok(());
    };
    let trimmed = a.trim.map_or(0, |t| s.trim(t, lim));
    c.out.int(trimmed as i64);
    if trimmed == 0 {
        return Ok(());
    }
    let logged = a.rewrite(c.argv, s, None);
    sh.stats.dirty += trimmed;
    sh.notify(class::STREAM, "xtrim", c.db, key);
    if let Some(argv) = logged {
        rewrite_owned(sh, c.db, &argv);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// XDEL, XLEN, XRANGE, XREVRANGE, XSETID.

/// XDEL key id [id ...]
fn xdel(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let key = c.argv[1];
    // Redis looks the key up before it checks the ids.
    let Some(s) = write_stream(sh, c.db, key, c.now_ms)? else {
        c.out.int(0);
        return Ok(());
    };
    let ids = c.argv[2..]
        .iter()
        .map(|a| parse_id(a))
        .collect::<Result<Vec<StreamId>>>()?;
    let mut deleted = 0u64;
    for id in ids {
        if s.delete(id) {
            // The greatest id deleted tells consumer groups their counters may be off.
            s.max_deleted_id = s.max_deleted_id.max(id);
            deleted += 1;
        }
    }
    c.out.int(deleted as i64);
    if deleted > 0 {
        sh.stats.dirty += deleted;
        sh.notify(class::STREAM, "xdel", c.db, key);
    }
    Ok(())
}

/// XLEN key
fn xlen(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let len = read_stream(sh, c.db, c.argv[1], c.now_ms)?.map_or(0, Stream::len);
    c.out.int(len as i64);
    Ok(())
}

/// XRANGE key start end [COUNT count]
fn xrange(sh: &mut Shard, c: &mut Call) -> Result<()> {
    range(sh, c, false)
}

/// XREVRANGE key end start [COUNT count]
fn xrevrange(sh: &mut Shard, c: &mut Call) -> Result<()> {
    range(sh, c, true)
}

/// XRANGE and XREVRANGE, checking their arguments in Redis's order (start, end, COUNT, then
/// the key). A COUNT of 0 or less answers with a null array.
fn range(sh: &mut Shard, c: &mut Call, rev: bool) -> Result<()> {
    let (start_arg, end_arg) = if rev {
        (c.argv[3], c.argv[2])
    } else {
        (c.argv[2], c.argv[3])
    };
    let start = parse_range_id(start_arg, 0, true)?;
    let end = parse_range_id(end_arg, u64::MAX, false)?;
    let mut count: Option<i64> = None;
    let mut a = c.args(4);
    while let Some(word) = a.next() {
        if eq_ic(word, "count") && !a.is_empty() {
            count = Some(a.next_i64()?.max(0));
        } else {
            return Err(Error::Syntax);
        }
    }
    let Some(s) = read_stream(sh, c.db, c.argv[1], c.now_ms)? else {
        c.out.array(0);
        return Ok(());
    };
    match count {
        Some(0) => c.out.null_array(),
        n => {
            let n = n.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
            reply_range(&mut c.out, s, start, end, rev, n);
        }
    }
    Ok(())
}

/// XSETID key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]
fn xsetid(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let id = parse_id(c.argv[2])?;
    let mut entries_added: Option<u64> = None;
    let mut max_deleted = StreamId::MIN;
    let mut a = c.args(3);
    while let Some(word) = a.next() {
        if eq_ic(word, "entriesadded") && !a.is_empty() {
            let n = a.next_i64()?;
            let n = u64::try_from(n).map_err(|_| Error::err("entries_added must be positive"))?;
            entries_added = Some(n);
        } else if eq_ic(word, "maxdeletedid") && !a.is_empty() {
            max_deleted = parse_id(a.next_bytes()?)?;
            if id < max_deleted {
                return Err(Error::err(
                    "The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
        } else {
            return Err(Error::Syntax);
        }
    }
    let key = c.argv[1];
    let s = write_stream(sh, c.db, key, c.now_ms)?.ok_or(Error::NoSuchKey)?;
    if let Some(top) = s.edge_id(true) {
        if id < top {
            return Err(Error::err(
                "The ID specified in XSETID is smaller than the target stream top item",
            ));
        }
        if entries_added.is_some_and(|n| n < s.len()) {
            return Err(Error::err(
                "The entries_added specified in XSETID is smaller than the target stream length",
            ));
        }
    }
    s.last_id = id;
    if let Some(n) = entries_added {
        s.entries_added = n;
    }
    if max_deleted != StreamId::MIN {
        s.max_deleted_id = max_deleted;
    }
    c.out.ok();
    sh.stats.dirty += 1;
    sh.notify(class::STREAM, "xsetid", c.db, key);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// XREAD and XREADGROUP.

/// How many entries a command run again after blocking serves when it has no COUNT (Redis's
/// `XREAD_BLOCKED_DEFAULT_COUNT`).
const BLOCKED_COUNT_DEFAULT: usize = 1000;

/// The parsed options of XREAD and XREADGROUP.
#[derive(Debug, Clone, Copy)]
struct ReadArgs<'a> {
    /// The most entries per stream (0: all).
    count: usize,
    /// BLOCK's milliseconds (0: no limit).
    timeout_ms: Option<u64>,
    /// XREADGROUP's group and consumer.
    group: Option<(&'a [u8], &'a [u8])>,
    noack: bool,
    /// The index of the first key, and how many streams there are.
    streams_at: usize,
    n: usize,
}

/// BLOCK's milliseconds, as Redis's `getTimeoutFromObjectOrReply` reads them.
fn parse_block_ms(arg: &[u8]) -> Result<u64> {
    let ms =
        parse_i64(arg).ok_or_else(|| Error::err("timeout is not an integer or out of range"))?;
    u64::try_from(ms).map_err(|_| Error::err("timeout is negative"))
}

impl<'a> ReadArgs<'a> {
    /// Parses the options up to STREAMS as Redis's `xreadCommand` does, errors in its order.
    fn parse(argv: &'a [&'a [u8]], xreadgroup: bool) -> Result<ReadArgs<'a>> {
        let mut r = ReadArgs {
            count: 0,
            timeout_ms: None,
            group: None,
            noack: false,
            streams_at: 0,
            n: 0,
        };
        let only_readgroup = |what: &str| {
            Error::err(format!(
                "The {what} option is only supported by XREADGROUP. You called XREAD instead."
            ))
        };
        let mut i = 1;
        while i < argv.len() {
            let (o, more) = (argv[i], argv.len() - 1 - i);
            if eq_ic(o, "block") && more > 0 {
                i += 1;
                r.timeout_ms = Some(parse_block_ms(argv[i])?);
            } else if eq_ic(o, "count") && more > 0 {
                i += 1;
                let n = parse_i64(argv[i]).ok_or(Error::NotInteger)?.max(0);
                r.count = usize::try_from(n).unwrap_or(usize::MAX);
            } else if eq_ic(o, "streams") && more > 0 {
                r.streams_at = i + 1;
                if more % 2 != 0 {
                    // Redis 7.0 says XREAD and `$` for XREADGROUP too.
                    return Err(Error::err("Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."));
                }
                r.n = more / 2;
                break;
            } else if eq_ic(o, "group") && more >= 2 {
                if !xreadgroup {
                    return Err(only_readgroup("GROUP"));
                }
                r.group = Some((argv[i + 1], argv[i + 2]));
                i += 2;
            } else if eq_ic(o, "noack") {
                if !xreadgroup {
                    return Err(only_readgroup("NOACK"));
                }
                r.noack = true;
            } else {
                return Err(Error::Syntax);
            }
            i += 1;
        }
        if r.streams_at == 0 {
            return Err(Error::Syntax);
        }
        if xreadgroup && r.group.is_none() {
            return Err(Error::err("Missing GROUP option for XREADGROUP"));
        }
        Ok(r)
    }

    fn key(&self, argv: &[&'a [u8]], i: usize) -> &'a [u8] {
        argv[self.streams_at + i]
    }

    fn id_arg(&self, argv: &[&'a [u8]], i: usize) -> &'a [u8] {
        argv[self.streams_at + self.n + i]
    }

    /// The COUNT of this run: a run after blocking is bounded as Redis bounds it.
    fn count_now(&self, rerun: bool) -> usize {
        if rerun && self.count == 0 {
            BLOCKED_COUNT_DEFAULT
        } else {
            self.count
        }
    }
}

/// Text for an error reply, as Redis's `%s` formats it: up to a NUL, line breaks as spaces.
fn error_text(name: &[u8]) -> String {
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    String::from_utf8_lossy(name).replace(['\r', '\n'], " ")
}

/// The error of a re-run XREADGROUP whose stream was deleted or replaced.
fn unblocked_error() -> Error {
    Error::Other("UNBLOCKED the stream key no longer exists".into())
}

/// Looks up every stream in argument order, checking types, groups and ids as Redis does;
/// returns for each the id reading starts after (`StreamId::MAX` for `>`). During a re-run,
/// XREAD skips a key that is missing or of another type and XREADGROUP fails as Redis's
/// woken client does.
fn resolve_ids(sh: &mut Shard, c: &Call, r: &ReadArgs) -> Result<Vec<StreamId>> {
    let xreadgroup = r.group.is_some();
    let rerun = sh.rerun;
    let mut after = Vec::with_capacity(r.n);
    for i in 0..r.n {
        let (key, arg) = (r.key(c.argv, i), r.id_arg(c.argv, i));
        let s = match read_stream(sh, c.db, key, c.now_ms) {
            Ok(s) => s,
            Err(_) if rerun && xreadgroup => return Err(unblocked_error()),
            Err(_) if rerun => None,
            Err(e) => return Err(e),
        };
        if let Some((group, _)) = r.group {
            match s {
                Some(s) if s.groups.contains_key(group) => {}
                None if rerun => return Err(unblocked_error()),
                _ if rerun => return Err(Error::Other("NOGROUP the consumer group this client was blocked on no longer exists".into())),
                _ => return Err(Error::Other(format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    error_text(key),
                    error_text(group)
                ))),
            }
        }
        let id = if arg == b"$" {
            if xreadgroup {
                return Err(Error::err("The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set."));
            }
            s.map_or(StreamId::MIN, |s| s.last_id)
        } else if arg == b">" {
            if !xreadgroup {
                return Err(Error::err("The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option."));
            }
            StreamId::MAX
        } else {
            parse_id(arg)?
        };
        after.push(id);
    }
    Ok(after)
}

/// Writes the header of the served streams (RESP2: an array of pairs; RESP3: a map) and
/// their replies.
fn reply_served(out: &mut Reply, served: usize, body: &[u8]) {
    match out.proto {
        crate::resp::Proto::Resp2 => out.array(served),
        crate::resp::Proto::Resp3 => out.map(served),
    }
    out.raw(body);
}

/// Writes the head of one served stream: in RESP2 a pair `[key, entries]`, in RESP3 the key
/// of a map entry.
fn stream_head(out: &mut Reply, key: &[u8]) {
    if !out.resp3() {
        out.array(2);
    }
    out.bulk(key);
}

/// XREAD [COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]
fn xread(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let r = ReadArgs::parse(c.argv, false)?;
    let after = resolve_ids(sh, c, &r)?;
    let rerun = sh.rerun;
    let count = r.count_now(rerun);
    let mut body = Vec::new();
    let mut served = 0;
    for (i, &gt) in after.iter().enumerate() {
        let key = r.key(c.argv, i);
        let Ok(Some(s)) = read_stream(sh, c.db, key, c.now_ms) else {
            continue;
        };
        let Some(start) = s.edge_id(true).filter(|&top| top > gt).and(gt.next()) else {
            continue;
        };
        let mut out = Reply::new(&mut body, c.out.proto);
        stream_head(&mut out, key);
        reply_range(&mut out, s, start, StreamId::MAX, false, count);
        served += 1;
        if rerun {
            // Redis serves a woken client from the one key that became ready.
            break;
        }
    }
    if served > 0 {
        reply_served(&mut c.out, served, &body);
        return Ok(());
    }
    let Some(timeout_ms) = r.timeout_ms else {
        c.out.null_array();
        return Ok(());
    };
    if !rerun && (0..r.n).any(|i| r.id_arg(c.argv, i) == b"$") {
        // Run again later with the ids `$` stood for now.
        let mut argv: Vec<Vec<u8>> = c.argv.iter().map(|a| a.to_vec()).collect();
        for (i, id) in after.iter().enumerate() {
            if r.id_arg(c.argv, i) == b"$" {
                argv[r.streams_at + r.n + i] = id.to_bytes();
            }
        }
        sh.block_args = Some(argv);
    }
    Err(Error::Blocked(timeout_ms))
}

/// What serving one stream to a group's consumer changed, for the log, the events and
/// `dirty`.
#[derive(Debug, Default)]
struct Delivered {
    /// The consumer was created.
    created: bool,
    /// The consumer's history was read (no new entries).
    history: bool,
    /// Entries (newly or again) delivered to the consumer: each with its delivery count and
    /// the group's last id right after it.
    claimed: Vec<(StreamId, u64, StreamId)>,
    /// The group's last id and entries-read counter, if they moved.
    moved: Option<(StreamId, Option<u64>)>,
}

/// Replies with the entries after `start` (at most `count`, 0: all) and hands them to the
/// consumer: the group's last id and entries-read counter advance as Redis 7.0 advances
/// them, and unless `noack` each entry becomes pending for the consumer (delivered now,
/// once).
fn deliver_new(
    out: &mut Reply,
    s: &Stream,
    g: &mut Group,
    consumer: &[u8],
    start: StreamId,
    (count, noack, now_ms): (usize, bool, u64),
    d: &mut Delivered,
) {
    let mut ids = Vec::new();
    let mut body = Vec::new();
    {
        let mut entries = Reply::new(&mut body, out.proto);
        s.scan(start, StreamId::MAX, false, &mut |id, fields| {
            reply_entry(&mut entries, id, fields);
            ids.push(id);
            count == 0 || ids.len() < count
        });
    }
    for &id in &ids {
        if id > g.last_id {
            g.entries_read = match g.entries_read {
                // A valid counter with no deletions ahead simply counts on.
                // Redis's counters wrap (a RESTOREd value may sit at the top).
                Some(n) if !s.range_has_tombstones(id, StreamId::MAX) => Some(n.wrapping_add(1)),
                _ if s.entries_added > 0 => s.estimate_entries_read(id),
                kept => kept,
            };
            g.last_id = id;
            d.moved = Some((id, g.entries_read));
        }
        if !noack {
            g.assign(id, consumer, now_ms, 1, now_ms);
            d.claimed.push((id, 1, g.last_id));
        }
    }
    out.array(ids.len());
    out.raw(&body);
}

/// Replies with the consumer's own pending entries after `start` (at most `count`): a
/// deleted entry as `[id, nil]`; each one still there counts as delivered again now.
fn deliver_history(
    out: &mut Reply,
    s: &Stream,
    g: &mut Group,
    consumer: &[u8],
    start: StreamId,
    (count, now_ms): (usize, u64),
    d: &mut Delivered,
) {
    d.history = true;
    let take = if count == 0 { usize::MAX } else { count };
    let ids: Vec<StreamId> = g
        .consumers
        .get(consumer)
        .map(|cons| cons.pending.range(start..).take(take).copied().collect())
        .unwrap_or_default();
    out.array(ids.len());
    for id in ids {
        let mut found = false;
        s.scan(id, id, false, &mut |id, fields| {
            reply_entry(out, id, fields);
            found = true;
            false
        });
        if !found {
            out.array(2);
            reply_id(out, id);
            out.null_array();
        } else if let Some(nack) = g.pel.get_mut(&id) {
            nack.delivery_time_ms = now_ms;
            nack.delivery_count = nack.delivery_count.wrapping_add(1);
            d.claimed.push((id, nack.delivery_count, g.last_id));
        }
    }
}

/// Serves stream `i` to the group's consumer if there is something to serve: its history
/// when an id was given, else the entries after the group's last id. Writes `[key, entries]`
/// into `out`; returns what changed, or `None` when nothing was served.
fn serve_group(
    sh: &mut Shard,
    c: &Call,
    r: &ReadArgs,
    (i, gt): (usize, StreamId),
    out: &mut Reply,
) -> Result<Option<Delivered>> {
    let (key, (gname, cname)) = (r.key(c.argv, i), r.group.unwrap_or_default());
    let count = r.count_now(sh.rerun);
    // The time recorded as seen and delivery time (a log replay records its load time).
    let now_ms = sh.stamp_ms(c.now_ms);
    let Some(s) = write_stream(sh, c.db, key, c.now_ms)? else {
        return Ok(None);
    };
    let Some(mut g) = s.groups.remove(gname) else {
        return Ok(None);
    };
    let history = gt != StreamId::MAX;
    let fresh = s.edge_id(true).is_some_and(|top| top > g.last_id);
    let mut d = Delivered::default();
    if history || fresh {
        let (consumer, created) = g.consumer(cname, now_ms);
        consumer.seen_time_ms = now_ms;
        d.created = created;
        stream_head(out, key);
        if history {
            // The start is past the id given; the greatest id stands for `>`, so it has a next.
            let start = gt.next().unwrap_or(StreamId::MAX);
            deliver_history(out, s, &mut g, cname, start, (count, now_ms), &mut d);
        } else {
            let start = g.last_id.next().unwrap_or(StreamId::MAX);
            deliver_new(
                out,
                s,
                &mut g,
                cname,
                start,
                (count, r.noack, now_ms),
                &mut d,
            );
        }
    }
    s.groups.insert(Box::from(gname), g);
    Ok((history || fresh).then_some(d))
}

/// Accounts for one stream served to a group: `dirty`, the consumer's creation event, and
/// the log form: Redis's `streamPropagateXCLAIM` per entry delivered, `streamPropagateGroupID`
/// when the group moved and `streamPropagateConsumerCreation` for a consumer no XCLAIM
/// creates. Redis 7.0 logs neither a history read's deliveries nor, without NOACK, the
/// group's counter, so its replicas lose them; they are logged here so that a replay
/// rebuilds the same group (Redis 7.2 logs the group's position the same way).
fn after_group_serve(sh: &mut Shard, c: &Call, r: &ReadArgs, key: &[u8], d: &Delivered) {
    let (gname, cname) = r.group.unwrap_or_default();
    sh.stats.dirty += 1;
    if d.created {
        sh.stats.dirty += 1;
        sh.notify(class::STREAM, "xgroup-createconsumer", c.db, key);
        // A new consumer's history is empty, so nothing else would create it on replay.
        if r.noack || d.history {
            sh.rewrite(c.db, &[b"XGROUP", b"CREATECONSUMER", key, gname, cname]);
        }
    }
    if !sh.propagating() {
        return;
    }
    let mut n = itoa::Buffer::new();
    let now = n.format(sh.stamp_ms(c.now_ms)).as_bytes().to_vec();
    for &(id, times, last) in &d.claimed {
        let (id, last) = (id.to_bytes(), last.to_bytes());
        let mut t = itoa::Buffer::new();
        sh.rewrite(
            c.db,
            &[
                b"XCLAIM",
                key,
                gname,
                cname,
                b"0",
                &id,
                b"TIME",
                &now,
                b"RETRYCOUNT",
                t.format(times).as_bytes(),
                b"FORCE",
                b"JUSTID",
                b"LASTID",
                &last,
            ],
        );
    }
    // The XCLAIMs carry the last id but not the entries-read counter.
    if let Some((last, read)) = d.moved {
        let read = read.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut b = itoa::Buffer::new();
        sh.rewrite(
            c.db,
            &[
                b"XGROUP",
                b"SETID",
                key,
                gname,
                &last.to_bytes(),
                b"ENTRIESREAD",
                b.format(read).as_bytes(),
            ],
        );
    }
}

/// XREADGROUP GROUP group consumer [COUNT count] [BLOCK milliseconds] [NOACK] STREAMS key
/// [key ...] id [id ...]
fn xreadgroup(sh: &mut Shard, c: &mut Call) -> Result<()> {
    let r = ReadArgs::parse(c.argv, true)?;
    let after = resolve_ids(sh, c, &r)?;
    // Only the effects recorded below are logged, never the command itself (Redis's
    // `preventCommandPropagation`).
    sh.prevent_propagation();
    // Group bookkeeping: not a modification of the key for WATCH, as in Redis.
    sh.keep_watches();
    let mut body = Vec::new();
    let mut served = 0;
    for (i, &gt) in after.iter().enumerate() {
        // Redis looks each key up again (a keyspace hit) before serving it.
        sh.stats.keyspace_hits += 1;
        let mut out = Reply::new(&mut body, c.out.proto);
        let Some(d) = serve_group(sh, c, &r, (i, gt), &mut out)? else {
            continue;
        };
        after_group_serve(sh, c, &r, r.key(c.argv, i), &d);
        served += 1;
        if sh.rerun {
            break;
        }
    }
    if served > 0 {
        reply_served(&mut c.out, served, &body);
        return Ok(());
    }
    match r.timeout_ms {
        Some(ms) => Err(Error::Blocked(ms)),
        None => {
            c.out.null_array();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prop::Propagate;
    use crate::resp::Proto;
    use crate::shard::testing::TestShard;

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    /// An entry reply `[id, [field, value, …]]`.
    fn entry(id: &str, fields: &[&str]) -> String {
        let mut out = format!("*2\r\n{}*{}\r\n", bulk(id), fields.len());
        fields.iter().for_each(|f| out.push_str(&bulk(f)));
        out
    }

    /// An array of entries.
    fn entries(items: &[(&str, &[&str])]) -> String {
        let mut out = format!("*{}\r\n", items.len());
        items.iter().for_each(|(id, f)| out.push_str(&entry(id, f)));
        out
    }

    fn err(text: &str) -> String {
        format!("-{text}\r\n")
    }

    /// Turns logging on.
    fn log_on(t: &mut TestShard) {
        t.shard.prop = Some(Propagate::default());
    }

    /// The commands logged since the last call, as space-separated words (SELECT dropped).
    fn logged(t: &mut TestShard) -> Vec<String> {
        let p = t.shard.prop.as_mut().expect("logging is on");
        let text = String::from_utf8_lossy(&p.buf).into_owned();
        p.buf.clear();
        let mut cmds = Vec::new();
        let mut lines = text.split("\r\n").filter(|l| !l.is_empty()).peekable();
        while let Some(head) = lines.next() {
            let n: usize = head[1..].parse().unwrap();
            let words: Vec<&str> = (0..n).map(|_| lines.nth(1).unwrap()).collect();
            if words[0] != "SELECT" {
                cmds.push(words.join(" "));
            }
        }
        cmds
    }

    const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

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
        assert_eq!(parse_id(b"5\x00-7").unwrap(), StreamId::new(5, 0));
        assert!(parse_id(b"1-").is_err());
        assert!(parse_id(b"1-2-3").is_err());
        assert!(parse_id(b"-").is_err());
        assert_eq!(parse_add_id(b"7-*").unwrap(), AddId::Partial(7));
        assert!(parse_add_id(b"1-2-*").is_err());
        assert!(parse_add_id(b"*").is_err());
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

    #[test]
    fn xadd_ids_and_errors() {
        let mut t = TestShard::new();
        let now = t.now_ms;
        assert_eq!(t.run("XADD s 1-1 a 1"), bulk("1-1"));
        assert_eq!(t.run("XADD s 1-* b 2"), bulk("1-2"));
        assert_eq!(
            t.run("XADD s 1 b 2"),
            err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
        );
        assert_eq!(
            t.run("XADD s 0-* b 2"),
            err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
        );
        assert_eq!(t.run("XADD s 3 c 3"), bulk("3-0"));
        assert_eq!(t.run("XADD s * d 4"), bulk(&format!("{now}-0")));
        assert_eq!(t.run("XADD s * d 4"), bulk(&format!("{now}-1")));
        assert_eq!(t.run("XADD n 0-* a b"), bulk("0-1"));
        assert_eq!(
            t.run("XADD n 0-0 a b"),
            err("ERR The ID specified in XADD must be greater than 0-0")
        );
        assert_eq!(
            t.run("XADD z 0 a b"),
            err("ERR The ID specified in XADD must be greater than 0-0")
        );
        assert_eq!(t.run("EXISTS z"), ":0\r\n");
        let arity = err("ERR wrong number of arguments for 'xadd' command");
        assert_eq!(t.run("XADD s * a"), arity);
        assert_eq!(t.run("XADD s * a b c"), arity);
        assert_eq!(t.run("XADD s MAXLEN 5 a"), err(INVALID_ID));
        assert_eq!(t.run("XADD s - a b"), err(INVALID_ID));
        assert_eq!(t.run("XADD nokey NOMKSTREAM * a b"), "$-1\r\n");
        assert_eq!(t.run("EXISTS nokey"), ":0\r\n");
        assert_eq!(
            t.run("XADD s MAXLEN -1 * a b"),
            err("ERR The MAXLEN argument must be >= 0.")
        );
        assert_eq!(
            t.run("XADD s MAXLEN x * a b"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(
            t.run("XADD s MAXLEN ~ 1 LIMIT -1 * a b"),
            err("ERR The LIMIT argument must be >= 0.")
        );
        assert_eq!(
            t.run("XADD s MAXLEN 1 MINID 1 * a b"),
            err("ERR syntax error, MAXLEN and MINID options at the same time are not compatible")
        );
        assert_eq!(
            t.run("XADD s LIMIT 5 * a b"),
            err("ERR syntax error, LIMIT cannot be used without specifying a trimming strategy")
        );
        assert_eq!(
            t.run("XADD s LIMIT 0 * a b"),
            err("ERR syntax error, LIMIT cannot be used without the special ~ option")
        );
        assert_eq!(
            t.run("XADD s MAXLEN = 1 LIMIT 5 * a b"),
            err("ERR syntax error, LIMIT cannot be used without the special ~ option")
        );
        t.run("SET str x");
        assert_eq!(t.run("XADD str * a b"), WRONGTYPE);
        assert_eq!(t.run("XADD str NOMKSTREAM * a b"), WRONGTYPE);
        t.run("XADD x 18446744073709551615-18446744073709551615 a b");
        assert_eq!(
            t.run("XADD x * a b"),
            err("ERR The stream has exhausted the last possible ID, unable to add more items")
        );
        t.run("XADD y 5-18446744073709551615 a b");
        assert_eq!(
            t.run("XADD y 5-* a b"),
            err("ERR Elements are too large to be stored")
        );
        assert_eq!(t.run("XADD y 6-* a b"), bulk("6-0"));
        assert_eq!(t.run("TYPE s"), "+stream\r\n");
    }

    #[test]
    fn trimming_and_length() {
        let mut t = TestShard::new();
        for i in 1..=10 {
            t.run(&format!("XADD s {i} f {i}"));
        }
        assert_eq!(t.run("XLEN s"), ":10\r\n");
        assert_eq!(t.run("XLEN nokey"), ":0\r\n");
        assert_eq!(t.run("XADD s MAXLEN 5 11 f 11"), bulk("11-0"));
        assert_eq!(t.run("XLEN s"), ":5\r\n");
        assert_eq!(t.run("XTRIM s MINID 9"), ":2\r\n");
        assert_eq!(t.run("XTRIM s MINID = 9"), ":0\r\n");
        assert_eq!(t.run("XTRIM s MAXLEN 0"), ":3\r\n");
        assert_eq!(t.run("XLEN s"), ":0\r\n");
        assert_eq!(t.run("EXISTS s"), ":1\r\n");
        assert_eq!(t.run("XTRIM nokey MAXLEN 0"), ":0\r\n");
        assert_eq!(
            t.run("XTRIM s LIMIT 0"),
            err("ERR syntax error, XTRIM must be called with a trimming strategy")
        );
        assert_eq!(t.run("XTRIM s MAXLEN 1 FOO"), err("ERR syntax error"));
        assert_eq!(t.run("XTRIM s * 1"), err("ERR syntax error"));
        assert_eq!(
            t.run("XTRIM s MAXLEN ~"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(t.run("XTRIM s MINID ~"), err(INVALID_ID));
        assert_eq!(
            t.run("XTRIM s MAXLEN 1 LIMIT 10"),
            err("ERR syntax error, LIMIT cannot be used without the special ~ option")
        );
        t.run("SET str x");
        assert_eq!(t.run("XTRIM str MAXLEN 1"), WRONGTYPE);
        assert_eq!(t.run("XLEN str"), WRONGTYPE);
        assert_eq!(default_trim_limit(100), 10_000);
        assert_eq!(default_trim_limit(7), 700);
        assert_eq!(default_trim_limit(0), 10_000);
        assert_eq!(default_trim_limit(1000), 10_000);
    }

    #[test]
    fn ranges() {
        let mut t = TestShard::new();
        assert_eq!(t.run("XRANGE nokey - +"), "*0\r\n");
        assert_eq!(t.run("XRANGE nokey - + COUNT 0"), "*0\r\n");
        t.run("XADD s 1-1 a 1");
        t.run("XADD s 2-1 b 2");
        t.run("XADD s 2-2 c 3");
        let all = [
            ("1-1", &["a", "1"][..]),
            ("2-1", &["b", "2"]),
            ("2-2", &["c", "3"]),
        ];
        assert_eq!(t.run("XRANGE s - +"), entries(&all));
        assert_eq!(t.run("XRANGE s 2 2"), entries(&all[1..]));
        assert_eq!(t.run("XRANGE s (1-1 +"), entries(&all[1..]));
        assert_eq!(t.run("XRANGE s - (2-2"), entries(&all[..2]));
        assert_eq!(t.run("XRANGE s - + COUNT 1"), entries(&all[..1]));
        assert_eq!(t.run("XRANGE s - + COUNT 0"), "*-1\r\n");
        assert_eq!(t.run("XRANGE s - + COUNT -3"), "*-1\r\n");
        assert_eq!(t.run("XRANGE s - + COUNT 1 COUNT 2"), entries(&all[..2]));
        assert_eq!(t.run("XREVRANGE s + - COUNT 2"), entries(&[all[2], all[1]]));
        assert_eq!(t.run("XREVRANGE s (2-2 -"), entries(&[all[1], all[0]]));
        assert_eq!(t.run("XRANGE s + -"), "*0\r\n");
        assert_eq!(t.run("XRANGE s - + COUNT"), err("ERR syntax error"));
        assert_eq!(
            t.run("XRANGE s - + COUNT x"),
            err("ERR value is not an integer or out of range")
        );
        assert_eq!(t.run("XRANGE s x +"), err(INVALID_ID));
        assert_eq!(t.run("XRANGE s ( +"), err(INVALID_ID));
        assert_eq!(t.run("XRANGE s (- +"), err(INVALID_ID));
        assert_eq!(
            t.run("XREVRANGE s (0-0 -"),
            err("ERR invalid end ID for the interval")
        );
        t.proto = Proto::Resp3;
        assert_eq!(t.run("XRANGE s - + COUNT 0"), "_\r\n");
        t.run("SET str x");
        assert_eq!(t.run("XRANGE str - +"), WRONGTYPE);
        assert_eq!(t.run("XRANGE str x +"), err(INVALID_ID));
    }

    #[test]
    fn xdel_and_xsetid() {
        let mut t = TestShard::new();
        assert_eq!(t.run("XDEL nokey x"), ":0\r\n");
        for i in 1..=4 {
            t.run(&format!("XADD s {i} f {i}"));
        }
        assert_eq!(t.run("XDEL s 1 x"), err(INVALID_ID));
        assert_eq!(t.run("XLEN s"), ":4\r\n");
        assert_eq!(t.run("XDEL s 3 1 9"), ":2\r\n");
        assert_eq!(t.run("XDEL s 3"), ":0\r\n");
        let s = read_stream(&mut t.shard, 0, b"s", 0).unwrap().unwrap();
        assert_eq!(s.max_deleted_id, StreamId::new(3, 0));
        assert_eq!(s.first_id, StreamId::new(2, 0));
        assert_eq!(
            t.run("XSETID s 3"),
            err("ERR The ID specified in XSETID is smaller than the target stream top item")
        );
        assert_eq!(t.run("XSETID s 9 ENTRIESADDED 1"), err("ERR The entries_added specified in XSETID is smaller than the target stream length"));
        assert_eq!(
            t.run("XSETID s 9 ENTRIESADDED -1"),
            err("ERR entries_added must be positive")
        );
        assert_eq!(
            t.run("XSETID s 9 MAXDELETEDID 10"),
            err("ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id")
        );
        assert_eq!(t.run("XSETID s 9 FOO 1"), err("ERR syntax error"));
        assert_eq!(t.run("XSETID nokey 9"), err("ERR no such key"));
        assert_eq!(
            t.run("XSETID s 9 ENTRIESADDED 10 MAXDELETEDID 8"),
            "+OK\r\n"
        );
        assert_eq!(
            t.run("XADD s 9 a b"),
            err("ERR The ID specified in XADD is equal or smaller than the target stream top item")
        );
        // Redis 7.0 lets the last id fall below the greatest deleted one.
        assert_eq!(t.run("XSETID s 9 MAXDELETEDID 9"), "+OK\r\n");
        assert_eq!(t.run("XSETID s 8"), "+OK\r\n");
        assert_eq!(t.run("XSETID s 9"), "+OK\r\n");
        let s = read_stream(&mut t.shard, 0, b"s", 0).unwrap().unwrap();
        assert_eq!(
            (s.last_id, s.entries_added, s.max_deleted_id),
            (StreamId::new(9, 0), 10, StreamId::new(9, 0))
        );
        t.run("SET str x");
        assert_eq!(t.run("XDEL str x"), WRONGTYPE);
        assert_eq!(t.run("XSETID str 1"), WRONGTYPE);
        assert_eq!(t.run("XSETID str x"), err(INVALID_ID));
    }

    #[test]
    fn xread_serves_or_blocks() {
        let mut t = TestShard::new();
        t.run("XADD a 1 f 1");
        t.run("XADD a 2 f 2");
        t.run("XADD b 5 g 5");
        let a_both = format!(
            "*2\r\n{}{}",
            bulk("a"),
            entries(&[("1-0", &["f", "1"]), ("2-0", &["f", "2"])])
        );
        let b_one = format!("*2\r\n{}{}", bulk("b"), entries(&[("5-0", &["g", "5"])]));
        assert_eq!(
            t.run("XREAD STREAMS a b 0 0"),
            format!("*2\r\n{a_both}{b_one}")
        );
        assert_eq!(
            t.run("XREAD COUNT 1 STREAMS a 1"),
            format!(
                "*1\r\n*2\r\n{}{}",
                bulk("a"),
                entries(&[("2-0", &["f", "2"])])
            )
        );
        assert_eq!(t.run("XREAD STREAMS a b $ $"), "*-1\r\n");
        assert_eq!(t.run("XREAD STREAMS a nokey 2 0"), "*-1\r\n");
        assert_eq!(
            t.run("XREAD BLOCK 0 STREAMS a 1"),
            format!(
                "*1\r\n*2\r\n{}{}",
                bulk("a"),
                entries(&[("2-0", &["f", "2"])])
            )
        );
        // Nothing to serve: blocked; `$` is run again as the ids it stood for.
        assert_eq!(t.run("XREAD BLOCK 1500 STREAMS a nokey $ $"), "(blocked)");
        let argv: Vec<String> = t
            .shard
            .block_args
            .take()
            .unwrap()
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(argv.join(" "), "XREAD BLOCK 1500 STREAMS a nokey 2-0 0-0");
        assert_eq!(t.run("XREAD BLOCK 0 STREAMS a 2"), "(blocked)");
        assert!(t.shard.block_args.is_none());
        // Run again: a key of another type waits on; one served stream, 1000 at most.
        t.shard.rerun = true;
        t.run("SET str x");
        assert_eq!(t.run("XREAD BLOCK 0 STREAMS str nokey 0 0"), "(blocked)");
        for i in 3..1200 {
            t.run(&format!("XADD a {i} f {i}"));
        }
        t.run("XADD b 6 g 6");
        let reply = t.run("XREAD BLOCK 0 STREAMS a b 2 5");
        assert!(
            reply.starts_with(&format!("*1\r\n*2\r\n{}*1000\r\n", bulk("a"))),
            "{}",
            &reply[..40]
        );
        t.shard.rerun = false;
        let errs = [
            ("XREAD COUNT 1 STREAMS a", "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."),
            ("XREAD STREAMS a b 0", "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."),
            ("XREAD GROUP g c STREAMS a 0", "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."),
            ("XREAD NOACK STREAMS a 0", "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."),
            ("XREAD COUNT 1 a 0", "ERR syntax error"),
            ("XREAD COUNT x STREAMS a 0", "ERR value is not an integer or out of range"),
            ("XREAD BLOCK x STREAMS a 0", "ERR timeout is not an integer or out of range"),
            ("XREAD BLOCK -1 STREAMS a 0", "ERR timeout is negative"),
            ("XREAD STREAMS a >", "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option."),
            ("XREAD STREAMS a x", INVALID_ID),
            ("XREAD STREAMS str 0", "WRONGTYPE Operation against a key holding the wrong kind of value"),
            ("XREAD STREAMS a str x 0", INVALID_ID),
        ];
        for (cmd, want) in errs {
            assert_eq!(t.run(cmd), err(want), "{cmd}");
        }
        t.proto = Proto::Resp3;
        assert_eq!(
            t.run("XREAD COUNT 1 STREAMS a b 1 0"),
            format!(
                "%2\r\n{}{}{}{}",
                bulk("a"),
                entries(&[("2-0", &["f", "2"])]),
                bulk("b"),
                entries(&[("5-0", &["g", "5"])])
            )
        );
        assert_eq!(t.run("XREAD STREAMS a $"), "_\r\n");
    }

    /// A shard with stream `s` (entries 1..=3) and group `g` at 0.
    fn with_group() -> TestShard {
        let mut t = TestShard::new();
        for i in 1..=3 {
            t.run(&format!("XADD s {i} f {i}"));
        }
        let s = write_stream(&mut t.shard, 0, b"s", 0).unwrap().unwrap();
        s.groups
            .insert(Box::from(&b"g"[..]), Group::new(StreamId::MIN, Some(0)));
        t
    }

    fn group(t: &mut TestShard) -> Group {
        let s = read_stream(&mut t.shard, 0, b"s", 0).unwrap().unwrap();
        s.groups.get(&b"g"[..]).unwrap().clone()
    }

    #[test]
    fn xreadgroup_delivers_and_logs_claims() {
        let mut t = with_group();
        log_on(&mut t);
        let now = t.now_ms;
        assert_eq!(
            t.run("XREADGROUP GROUP g alice COUNT 2 STREAMS s >"),
            format!(
                "*1\r\n*2\r\n{}{}",
                bulk("s"),
                entries(&[("1-0", &["f", "1"]), ("2-0", &["f", "2"])])
            )
        );
        assert_eq!(
            logged(&mut t),
            [
                format!("XCLAIM s g alice 0 1-0 TIME {now} RETRYCOUNT 1 FORCE JUSTID LASTID 1-0"),
                format!("XCLAIM s g alice 0 2-0 TIME {now} RETRYCOUNT 1 FORCE JUSTID LASTID 2-0"),
                "XGROUP SETID s g 2-0 ENTRIESREAD 2".to_string(),
            ]
        );
        let g = group(&mut t);
        assert_eq!(
            (g.last_id, g.entries_read, g.pel.len()),
            (StreamId::new(2, 0), Some(2), 2)
        );
        assert!(g.consistent());
        // History: the consumer's own PEL; a deleted entry is [id, nil]; the entries still
        // there are delivered again (logged as claims).
        t.run("XDEL s 1");
        logged(&mut t);
        t.now_ms += 10;
        assert_eq!(
            t.run("XREADGROUP GROUP g alice STREAMS s 0"),
            format!(
                "*1\r\n*2\r\n{}*2\r\n*2\r\n{}*-1\r\n{}",
                bulk("s"),
                bulk("1-0"),
                entry("2-0", &["f", "2"])
            )
        );
        assert_eq!(
            logged(&mut t),
            [format!(
                "XCLAIM s g alice 0 2-0 TIME {} RETRYCOUNT 2 FORCE JUSTID LASTID 2-0",
                now + 10
            )]
        );
        let g = group(&mut t);
        let nack = g.pel.get(&StreamId::new(2, 0)).unwrap();
        assert_eq!((nack.delivery_count, nack.delivery_time_ms), (2, now + 10));
        assert_eq!(g.pel.get(&StreamId::new(1, 0)).unwrap().delivery_count, 1);
        // Another consumer with history asks nothing of the group; it is created.
        let dirty = t.shard.stats.dirty;
        assert_eq!(
            t.run("XREADGROUP GROUP g bob STREAMS s 0"),
            format!("*1\r\n*2\r\n{}*0\r\n", bulk("s"))
        );
        assert_eq!(t.shard.stats.dirty, dirty + 2);
        assert_eq!(logged(&mut t), ["XGROUP CREATECONSUMER s g bob"]);
        // A history read with nothing to deliver again logs nothing.
        assert_eq!(
            t.run("XREADGROUP GROUP g bob STREAMS s 0"),
            format!("*1\r\n*2\r\n{}*0\r\n", bulk("s"))
        );
        assert_eq!(logged(&mut t), Vec::<String>::new());
        // NOACK: no PEL, the group's position logged; a new consumer logged too.
        assert_eq!(
            t.run("XREADGROUP GROUP g carol NOACK STREAMS s >"),
            format!(
                "*1\r\n*2\r\n{}{}",
                bulk("s"),
                entries(&[("3-0", &["f", "3"])])
            )
        );
        assert_eq!(
            logged(&mut t),
            [
                "XGROUP CREATECONSUMER s g carol",
                "XGROUP SETID s g 3-0 ENTRIESREAD 3"
            ]
        );
        let g = group(&mut t);
        assert_eq!((g.pel.len(), g.consumers.len()), (2, 3));
        // Nothing new: null, or blocked with BLOCK; the consumer is not created.
        assert_eq!(t.run("XREADGROUP GROUP g dave STREAMS s >"), "*-1\r\n");
        assert_eq!(
            t.run("XREADGROUP GROUP g dave BLOCK 10 STREAMS s >"),
            "(blocked)"
        );
        assert_eq!(group(&mut t).consumers.len(), 3);
        assert_eq!(logged(&mut t), Vec::<String>::new());
    }

    #[test]
    fn xreadgroup_counter_after_deletions() {
        let mut t = with_group();
        t.run("XDEL s 2");
        // A deletion ahead makes the counter unreliable: it is estimated (unknown here).
        t.run("XREADGROUP GROUP g c COUNT 1 STREAMS s >");
        assert_eq!(group(&mut t).entries_read, None);
        t.run("XREADGROUP GROUP g c STREAMS s >");
        let g = group(&mut t);
        assert_eq!((g.last_id, g.entries_read), (StreamId::new(3, 0), Some(3)));
    }

    #[test]
    fn xreadgroup_errors_and_reruns() {
        let mut t = with_group();
        t.run("SET str x");
        let errs = [
            ("XREADGROUP GROUP g c COUNT 1 STREAMS s", "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."),
            ("XREADGROUP COUNT 1 NOACK STREAMS s >", "ERR Missing GROUP option for XREADGROUP"),
            ("XREADGROUP GROUP g c STREAMS s $", "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set."),
            ("XREADGROUP GROUP nog c STREAMS s >", "NOGROUP No such key 's' or consumer group 'nog' in XREADGROUP with GROUP option"),
            ("XREADGROUP GROUP g c STREAMS nokey >", "NOGROUP No such key 'nokey' or consumer group 'g' in XREADGROUP with GROUP option"),
            ("XREADGROUP GROUP g c STREAMS str >", "WRONGTYPE Operation against a key holding the wrong kind of value"),
            ("XREADGROUP GROUP g c STREAMS s x", INVALID_ID),
            ("XREADGROUP GROUP g c FOO STREAMS s >", "ERR syntax error"),
            ("XREADGROUP GROUP g c BLOCK -5 STREAMS s >", "ERR timeout is negative"),
        ];
        for (cmd, want) in errs {
            assert_eq!(t.run(cmd), err(want), "{cmd}");
        }
        t.run("XREADGROUP GROUP g c STREAMS s >");
        t.shard.rerun = true;
        assert_eq!(
            t.run("XREADGROUP GROUP g c BLOCK 0 STREAMS s >"),
            "(blocked)"
        );
        assert_eq!(
            t.run("XREADGROUP GROUP g c BLOCK 0 STREAMS str >"),
            err("UNBLOCKED the stream key no longer exists")
        );
        assert_eq!(
            t.run("XREADGROUP GROUP g c BLOCK 0 STREAMS nokey >"),
            err("UNBLOCKED the stream key no longer exists")
        );
        assert_eq!(
            t.run("XREADGROUP GROUP nog c BLOCK 0 STREAMS s >"),
            err("NOGROUP the consumer group this client was blocked on no longer exists")
        );
        t.run("XADD s 4 f 4");
        assert_eq!(
            t.run("XREADGROUP GROUP g c BLOCK 0 STREAMS s >"),
            format!(
                "*1\r\n*2\r\n{}{}",
                bulk("s"),
                entries(&[("4-0", &["f", "4"])])
            )
        );
        t.shard.rerun = false;
        t.proto = Proto::Resp3;
        assert_eq!(
            t.run("XREADGROUP GROUP g c STREAMS s 3"),
            format!("%1\r\n{}{}", bulk("s"), entries(&[("4-0", &["f", "4"])]))
        );
        t.run("XDEL s 4");
        assert_eq!(
            t.run("XREADGROUP GROUP g c STREAMS s 3"),
            format!("%1\r\n{}*1\r\n*2\r\n{}_\r\n", bulk("s"), bulk("4-0"))
        );
    }

    #[test]
    fn propagation_of_generated_ids_and_approximate_trims() {
        let mut t = TestShard::new();
        log_on(&mut t);
        let now = t.now_ms;
        t.run("XADD s 5-* a 1");
        t.run("XADD s 7 a 3");
        t.run("XADD s * a 2");
        t.run("XADD s MAXLEN ~ 1 LIMIT 50 * a 4");
        // The outcome of `~` depends on the nodes; the log says what it was.
        let len = t.run("XLEN s");
        let len = len.trim_start_matches(':').trim_end();
        t.run("XADD s MINID 6 * a 5");
        t.run("XTRIM s MAXLEN 100");
        t.run("XTRIM s MINID ~ 99999999999999");
        let want = vec![
            "XADD s 5-0 a 1".to_string(),
            "XADD s 7 a 3".to_string(),
            format!("XADD s {now}-0 a 2"),
            format!("XADD s MAXLEN = {len} LIMIT 50 {now}-1 a 4"),
            format!("XADD s MINID 6 {now}-2 a 5"),
        ];
        let mut got = logged(&mut t);
        let last = got.pop().unwrap();
        assert_eq!(got, want);
        assert!(last.starts_with("XTRIM s MINID = "), "{last}");
        // Small nodes: `~` removes whole ones; an emptied stream's first id is the greatest.
        t.shard.config.stream.node_max_entries = 3;
        for i in 1..=10 {
            t.run(&format!("XADD m {i} f {i}"));
        }
        logged(&mut t);
        assert_eq!(t.run("XTRIM m MAXLEN ~ 5 LIMIT 100"), ":3\r\n");
        assert_eq!(t.run("XTRIM m MAXLEN ~ 0 LIMIT 1"), ":0\r\n");
        assert_eq!(t.run("XTRIM m MINID ~ 100"), ":7\r\n");
        assert_eq!(
            logged(&mut t),
            [
                "XTRIM m MAXLEN = 7 LIMIT 100",
                "XTRIM m MINID = 18446744073709551615-18446744073709551615"
            ]
        );
        // A replay (at time 0) takes Redis's log form, LIMIT after `=` included.
        t.run("XADD m 11 f 11");
        t.run("XADD m 12 f 12");
        t.now_ms = 0;
        assert_eq!(t.run("XTRIM m MAXLEN = 1 LIMIT 10"), ":1\r\n");
        assert_eq!(t.run("XADD m MAXLEN = 0 LIMIT 1 13 f 13"), bulk("13-0"));
        assert_eq!(t.run("XLEN m"), ":0\r\n");
    }

    #[test]
    fn events_and_dirty() {
        let mut t = TestShard::new();
        t.shard.notify_flags = crate::notify::class::ALL | crate::notify::class::KEYEVENT;
        t.run("XADD s MAXLEN 1 1 a 1");
        t.run("XADD s MAXLEN 1 2 a 1");
        t.run("XDEL s 2");
        t.run("XSETID s 5");
        t.run("XTRIM s MAXLEN 0");
        let events: Vec<&str> = t.shard.events.iter().map(|e| e.event).collect();
        assert_eq!(events, ["xadd", "xadd", "xtrim", "xdel", "xsetid"]);
        assert_eq!(t.shard.stats.dirty, 4);
        t.run("XLEN s");
        t.run("XRANGE nokey - +");
        assert_eq!(
            (t.shard.stats.keyspace_hits, t.shard.stats.keyspace_misses),
            (1, 1)
        );
    }
}
