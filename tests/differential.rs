//! Differential tests: each script in `tests/diff/*.redis` runs against shardis (2 shards) and
//! against redis-server, and the raw reply bytes of every command must be equal.
//!
//! Script format (one command per line, redis-cli syntax with quotes and `\xHH` escapes):
//! - blank lines and lines starting with `#` are ignored;
//! - `~ CMD …` compares only the RESP type of the replies (and the length of an aggregate);
//! - `sort CMD …` sorts the top-level elements of both replies before comparing;
//! - `deepsort CMD …` sorts the elements of every aggregate at every depth (for replies that
//!   nest unordered collections, e.g. COMMAND INFO of a command with subcommands);
//! - `docs CMD …` is for COMMAND DOCS: summaries are written in shardis's own words, so every
//!   `summary` value is masked on both sides; the rest is compared deep-sorted;
//! - `clock CMD …` masks the integers a reply takes from the wall clock (XPENDING's idle,
//!   XINFO CONSUMERS' idle, XINFO STREAM FULL's seen and delivery times) and compares the rest
//!   exactly; OBJECT IDLETIME's seconds may differ by two;
//! - `@resp3` / `@resp2` switch both connections' protocol with HELLO (replies not compared).
//!
//! Every script starts and ends with FLUSHALL on both sides, so scripts are independent.
//! All mismatches of a script are collected and reported together (file:line, command, both
//! replies escaped).
//!
//! `DIFF_TRANSCRIPT=<dir>` writes `<dir>/<script>.out` with every command and the reference
//! reply, for reviewing a corpus. `DIFF_AGAINST_REDIS=1` puts a second redis-server on the "shardis" side, to check that the
//! corpus itself is deterministic.

mod common;

use common::{escape, split_aggregate, split_args, RawConn, RedisServer, Server};
use std::path::{Path, PathBuf};

/// How a line's replies are compared.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Exact,
    TypeOnly,
    Sorted,
    DeepSorted,
    Docs,
    Clock,
}

/// One directive of a script.
enum Step {
    Command {
        line: usize,
        text: String,
        mode: Mode,
        args: Vec<Vec<u8>>,
    },
    Protocol {
        line: usize,
        version: u8,
    },
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diff")
}

fn parse_script(path: &Path) -> Vec<Step> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut steps = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed {
            "@resp3" => {
                steps.push(Step::Protocol { line, version: 3 });
                continue;
            }
            "@resp2" => {
                steps.push(Step::Protocol { line, version: 2 });
                continue;
            }
            _ => {}
        }
        let (mode, rest) = if let Some(rest) = trimmed.strip_prefix("~ ") {
            (Mode::TypeOnly, rest)
        } else if let Some(rest) = trimmed.strip_prefix("sort ") {
            (Mode::Sorted, rest)
        } else if let Some(rest) = trimmed.strip_prefix("deepsort ") {
            (Mode::DeepSorted, rest)
        } else if let Some(rest) = trimmed.strip_prefix("docs ") {
            (Mode::Docs, rest)
        } else if let Some(rest) = trimmed.strip_prefix("clock ") {
            (Mode::Clock, rest)
        } else {
            (Mode::Exact, trimmed)
        };
        let args = split_args(rest)
            .unwrap_or_else(|e| panic!("{}:{line}: cannot split {rest:?}: {e}", path.display()));
        assert!(!args.is_empty(), "{}:{line}: empty command", path.display());
        steps.push(Step::Command {
            line,
            text: rest.to_string(),
            mode,
            args,
        });
    }
    steps
}

/// The type byte and, for aggregates, the element count: what `~` compares.
fn shape(reply: &[u8]) -> String {
    let (header, _) = split_aggregate(reply);
    match reply[0] {
        b'*' | b'~' | b'%' | b'>' | b'|' => escape(&header),
        t => (t as char).to_string(),
    }
}

/// The reply with its top-level elements sorted (map entries sorted as pairs); with `deep`,
/// every nested aggregate is sorted first.
fn sorted(reply: &[u8], deep: bool) -> Vec<u8> {
    let (header, elems) = split_aggregate(reply);
    let elems: Vec<Vec<u8>> = if deep {
        elems.iter().map(|e| sorted(e, true)).collect()
    } else {
        elems
    };
    let mut out = header;
    if reply[0] == b'%' {
        let mut pairs: Vec<Vec<u8>> = elems.chunks(2).map(|p| p.concat()).collect();
        pairs.sort();
        out.extend(pairs.concat());
    } else {
        let mut elems = elems;
        elems.sort();
        out.extend(elems.concat());
    }
    out
}

fn same(mode: Mode, args: &[Vec<u8>], a: &[u8], b: &[u8]) -> bool {
    match mode {
        Mode::Exact => a == b,
        Mode::TypeOnly => shape(a) == shape(b),
        Mode::Sorted => sorted(a, false) == sorted(b, false),
        Mode::DeepSorted => sorted(a, true) == sorted(b, true),
        Mode::Docs => sorted(&mask_summaries(a), true) == sorted(&mask_summaries(b), true),
        Mode::Clock => match (idle_seconds(args, a), idle_seconds(args, b)) {
            (Some(x), Some(y)) => x.abs_diff(y) <= 2,
            _ => mask_clock(args, a) == mask_clock(args, b),
        },
    }
}

/// OBJECT IDLETIME's integer reply: it counts seconds on a clock that ticks on its own, so a
/// `clock` line accepts two seconds of drift between the servers rather than masking it.
fn idle_seconds(args: &[Vec<u8>], reply: &[u8]) -> Option<u64> {
    let is = |i: usize, w: &[u8]| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(w));
    if !(is(0, b"OBJECT") && is(1, b"IDLETIME")) {
        return None;
    }
    std::str::from_utf8(reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?)
        .ok()?
        .parse()
        .ok()
}

/// The reply with the integers that come from the wall clock replaced by 0, by command:
/// XPENDING's extended form (each entry's idle, its third element), XINFO CONSUMERS (`idle`,
/// `inactive`) and XINFO STREAM FULL (the delivery times in each group's `pending` list, each
/// consumer's `seen-time`/`active-time` and its own `pending` entries' delivery times). Any other reply is
/// returned as is.
fn mask_clock(args: &[Vec<u8>], reply: &[u8]) -> Vec<u8> {
    let word = |i: usize| {
        args.get(i)
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default()
    };
    let is_full = args.iter().any(|a| a.eq_ignore_ascii_case(b"FULL"));
    match (&word(0)[..], &word(1)[..]) {
        (b"XPENDING", _) if args.len() > 3 => map_elems(reply, |e| mask_at(e, 2)),
        (b"XINFO", b"CONSUMERS") => map_elems(reply, |c| {
            mask_fields(c, &[b"idle", b"inactive"], |_| b":0\r\n".to_vec())
        }),
        (b"XINFO", b"STREAM") if is_full => mask_fields(reply, &[b"groups"], |groups| {
            map_elems(groups, |group| {
                let group = mask_fields(group, &[b"pending", b"pel"], |pel| {
                    map_elems(pel, |e| mask_at(e, 2))
                });
                mask_fields(&group, &[b"consumers"], |consumers| {
                    map_elems(consumers, |c| {
                        let c =
                            mask_fields(c, &[b"seen-time", b"active-time"], |_| b":0\r\n".to_vec());
                        mask_fields(&c, &[b"pending"], |p| map_elems(p, |e| mask_at(e, 1)))
                    })
                })
            })
        }),
        _ => reply.to_vec(),
    }
}

#[test]
fn clock_mask_hides_only_clock_times() {
    let args = |line: &str| split_args(line).unwrap();
    let full = |t: u64, count: u64| {
        format!(
            "%2\r\n$6\r\nlength\r\n:1\r\n$6\r\ngroups\r\n*1\r\n%3\r\n$4\r\nname\r\n$1\r\ng\r\n\
             $7\r\npending\r\n*1\r\n*4\r\n$3\r\n1-0\r\n$2\r\nc0\r\n:{t}\r\n:{count}\r\n\
             $9\r\nconsumers\r\n*1\r\n%3\r\n$4\r\nname\r\n$2\r\nc0\r\n$9\r\nseen-time\r\n:{t}\r\n\
             $7\r\npending\r\n*1\r\n*3\r\n$3\r\n1-0\r\n:{t}\r\n:{count}\r\n"
        )
        .into_bytes()
    };
    let xinfo = args("XINFO STREAM k FULL");
    assert!(same(Mode::Clock, &xinfo, &full(100, 1), &full(200, 1)));
    assert!(!same(Mode::Clock, &xinfo, &full(100, 1), &full(100, 2)));
    let consumers = |idle: u64, pending: u64| {
        format!("*1\r\n*6\r\n$4\r\nname\r\n$2\r\nc0\r\n$7\r\npending\r\n:{pending}\r\n$4\r\nidle\r\n:{idle}\r\n").into_bytes()
    };
    let xinfo = args("XINFO CONSUMERS k g");
    assert!(same(
        Mode::Clock,
        &xinfo,
        &consumers(5, 1),
        &consumers(9, 1)
    ));
    assert!(!same(
        Mode::Clock,
        &xinfo,
        &consumers(5, 1),
        &consumers(5, 2)
    ));
    let pending = |idle: u64, count: u64| {
        format!("*1\r\n*4\r\n$3\r\n1-0\r\n$2\r\nc0\r\n:{idle}\r\n:{count}\r\n").into_bytes()
    };
    let xpending = args("XPENDING k g - + 10");
    assert!(same(Mode::Clock, &xpending, &pending(5, 1), &pending(9, 1)));
    assert!(!same(
        Mode::Clock,
        &xpending,
        &pending(5, 1),
        &pending(5, 2)
    ));
}

/// An aggregate rebuilt with `f` applied to each element; anything else unchanged.
fn map_elems(reply: &[u8], f: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    if !matches!(reply.first(), Some(b'*' | b'%' | b'~')) {
        return reply.to_vec();
    }
    let (header, elems) = split_aggregate(reply);
    let mut out = header;
    for e in elems {
        out.extend(f(&e));
    }
    out
}

/// An aggregate whose element `i`, when an integer, is replaced by 0.
fn mask_at(reply: &[u8], i: usize) -> Vec<u8> {
    if !matches!(reply.first(), Some(b'*')) {
        return reply.to_vec();
    }
    let (header, mut elems) = split_aggregate(reply);
    if elems.get(i).is_some_and(|e| e.starts_with(b":")) {
        elems[i] = b":0\r\n".to_vec();
    }
    let mut out = header;
    out.extend(elems.concat());
    out
}

/// The payload of a bulk or simple string reply.
fn string_value(reply: &[u8]) -> Option<&[u8]> {
    let body = reply.strip_suffix(b"\r\n")?;
    match body.first()? {
        b'+' => Some(&body[1..]),
        b'$' => Some(&body[body.iter().position(|&b| b == b'\n')? + 1..]),
        _ => None,
    }
}

/// A map (RESP3) or a flat key/value array (RESP2) with `f` applied to the values of `keys`.
fn mask_fields(reply: &[u8], keys: &[&[u8]], f: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    if !matches!(reply.first(), Some(b'*' | b'%')) {
        return reply.to_vec();
    }
    let (header, mut elems) = split_aggregate(reply);
    for i in (0..elems.len().saturating_sub(1)).step_by(2) {
        if string_value(&elems[i]).is_some_and(|n| keys.contains(&n)) {
            elems[i + 1] = f(&elems[i + 1]);
        }
    }
    let mut out = header;
    out.extend(elems.concat());
    out
}

/// Replaces the value of every `summary` field with `?`.
fn mask_summaries(reply: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"$7\r\nsummary\r\n";
    let mut out = Vec::with_capacity(reply.len());
    let mut i = 0;
    while i < reply.len() {
        if reply[i..].starts_with(KEY) {
            out.extend_from_slice(KEY);
            i += KEY.len();
            let Some(nl) = reply[i..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let len: usize = std::str::from_utf8(&reply[i + 1..i + nl])
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            out.extend_from_slice(b"$1\r\n?\r\n");
            i += nl + 2 + len + 2;
        } else {
            out.push(reply[i]);
            i += 1;
        }
    }
    out
}

/// Runs one command on both sides; `Err` means a side stopped answering (the script aborts).
fn both(
    ours: &mut RawConn,
    theirs: &mut RawConn,
    args: &[Vec<u8>],
) -> (Result<Vec<u8>, String>, Vec<u8>) {
    let req = common::encode(args);
    let ours_reply = ours
        .send_checked(&req)
        .map_err(|e| e.to_string())
        .and_then(|_| ours.try_read_reply());
    theirs.send(&req);
    (ours_reply, theirs.read_reply())
}

/// How a run reports mismatches.
#[derive(Clone, Copy)]
struct Report {
    /// How many of the commands before a mismatch to list with it (a generated script's
    /// line numbers alone say little once the file is gone).
    context: usize,
    /// After this many mismatches the script stops: in a random workload the first one
    /// usually leaves the two sides' data apart, and everything after it differs too.
    max_mismatches: usize,
}

/// Corpus scripts: every mismatch, located by its line.
const CORPUS_REPORT: Report = Report {
    context: 0,
    max_mismatches: usize::MAX,
};

/// Generated scripts: the first few mismatches, each with the 20 commands before it.
const FUZZ_REPORT: Report = Report {
    context: 20,
    max_mismatches: 3,
};

/// Runs a script and returns its mismatches as readable paragraphs.
fn run_script(path: &Path, report: Report) -> Vec<String> {
    let steps = parse_script(path);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let (ours_server, ours_label) = if std::env::var("DIFF_AGAINST_REDIS").is_ok_and(|v| v == "1") {
        (RedisServer::start().0, "redis-b")
    } else {
        (Server::start(&[]), "shardis")
    };
    let reference = RedisServer::start();
    let mut ours = ours_server.raw();
    let mut theirs = reference.raw();
    ours.set_read_timeout(std::time::Duration::from_secs(10));

    let mut mismatches = Vec::new();
    let mut transcript = String::new();
    let mut recent: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let flush = Step::Command {
        line: 0,
        text: "FLUSHALL".into(),
        mode: Mode::Exact,
        args: vec![b"FLUSHALL".to_vec()],
    };
    let end = steps.last().map_or(0, |s| match s {
        Step::Command { line, .. } | Step::Protocol { line, .. } => line + 1,
    });
    let flush_end = Step::Command {
        line: end,
        text: "FLUSHALL".into(),
        mode: Mode::Exact,
        args: vec![b"FLUSHALL".to_vec()],
    };
    let all = std::iter::once(&flush)
        .chain(steps.iter())
        .chain(std::iter::once(&flush_end));
    for step in all {
        let (line, text, mode, args) = match step {
            Step::Protocol { line, version } => {
                let args = vec![b"HELLO".to_vec(), version.to_string().into_bytes()];
                let (ours_reply, _) = both(&mut ours, &mut theirs, &args);
                if let Err(e) = ours_reply {
                    mismatches.push(format!("{name}:{line}: HELLO {version}: {ours_label} gave no reply ({e}); script aborted"));
                    break;
                }
                continue;
            }
            Step::Command {
                line,
                text,
                mode,
                args,
            } => (line, text, mode, args),
        };
        let (ours_reply, theirs_reply) = both(&mut ours, &mut theirs, args);
        transcript.push_str(&format!("{line}: {text}\n    {}\n", escape(&theirs_reply)));
        let before: String = recent.iter().map(|c| format!("\n      {c}")).collect();
        let before = if before.is_empty() {
            before
        } else {
            format!("\n    after:{before}")
        };
        if report.context > 0 {
            if recent.len() == report.context {
                recent.pop_front();
            }
            recent.push_back(format!("{line}: {text}"));
        }
        match ours_reply {
            Err(e) => {
                mismatches.push(format!(
                    "{name}:{line}: {text}\n    {ours_label}: no reply ({e}); script aborted\n    redis:   {}{before}",
                    escape(&theirs_reply)
                ));
                break;
            }
            Ok(r) if !same(*mode, args, &r, &theirs_reply) => mismatches.push(format!(
                "{name}:{line}: {text}{}\n    {ours_label}: {}\n    redis:   {}{before}",
                match mode {
                    Mode::Exact => "",
                    Mode::TypeOnly => "  (type only)",
                    Mode::Sorted => "  (sorted)",
                    Mode::DeepSorted => "  (deep-sorted)",
                    Mode::Docs => "  (summaries masked, deep-sorted)",
                    Mode::Clock => "  (clock times masked)",
                },
                escape(&r),
                escape(&theirs_reply)
            )),
            Ok(_) => {}
        }
        if mismatches.len() >= report.max_mismatches {
            mismatches.push(format!(
                "{name}: stopped after {} mismatches",
                mismatches.len()
            ));
            break;
        }
    }
    if let Ok(dir) = std::env::var("DIFF_TRANSCRIPT") {
        std::fs::write(Path::new(&dir).join(format!("{name}.out")), transcript).unwrap();
    }
    mismatches
}

fn check(file: &str) {
    let path = corpus_dir().join(file);
    let started = std::time::Instant::now();
    let mismatches = run_script(&path, CORPUS_REPORT);
    eprintln!(
        "{file}: {} mismatches in {:?}",
        mismatches.len(),
        started.elapsed()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches in {file}:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// The corpus files that have a test below; a new file must be added here and get a test.
const CORPUS: &[&str] = &[
    "strings.redis",
    "keys.redis",
    "server.redis",
    "lists.redis",
    "sets.redis",
    "hash.redis",
    "sort.redis",
    "multi.redis",
    "bitmaps.redis",
    "hll.redis",
    "zsets.redis",
    "geo.redis",
    "dump.redis",
    "persistence.redis",
    "pubsub.redis",
    "stream_groups.redis",
    "streams.redis",
    "streams_readgroup.redis",
    "scripting.redis",
    "functions.redis",
    "acl.redis",
    "eviction.redis",
];

#[test]
fn every_corpus_file_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".redis"))
        .collect();
    files.sort();
    let mut known: Vec<String> = CORPUS.iter().map(|s| s.to_string()).collect();
    known.sort();
    assert_eq!(
        files, known,
        "tests/diff/*.redis and CORPUS in tests/differential.rs differ"
    );
    for f in CORPUS {
        parse_script(&corpus_dir().join(f));
    }
}

#[test]
fn acl() {
    check("acl.redis");
}

#[test]
fn eviction() {
    check("eviction.redis");
}

#[test]
fn functions() {
    check("functions.redis");
}

#[test]
fn scripting() {
    check("scripting.redis");
}

#[test]
fn stream_groups() {
    check("stream_groups.redis");
}

#[test]
fn strings() {
    check("strings.redis");
}

#[test]
fn keys() {
    check("keys.redis");
}

#[test]
fn dump() {
    check("dump.redis");
}

#[test]
fn streams() {
    check("streams.redis");
}

#[test]
fn streams_readgroup() {
    check("streams_readgroup.redis");
}

#[test]
fn pubsub() {
    check("pubsub.redis");
}

#[test]
fn persistence() {
    check("persistence.redis");
}

#[test]
fn server() {
    check("server.redis");
}

#[test]
fn lists() {
    check("lists.redis");
}

#[test]
fn sets() {
    check("sets.redis");
}

#[test]
fn hash() {
    check("hash.redis");
}

#[test]
fn sort() {
    check("sort.redis");
}

#[test]
fn multi() {
    check("multi.redis");
}

#[test]
fn bitmaps() {
    check("bitmaps.redis");
}

#[test]
fn hll() {
    check("hll.redis");
}

#[test]
fn zsets() {
    check("zsets.redis");
}

/// A random script of sorted-set commands (deterministic ones: no ZRANDMEMBER, no ZSCAN of the
/// big encoding) over four keys on both shards, with small encoding thresholds so that both
/// encodings and the conversions between them are crossed; lex ranges only on sets whose
/// scores are all equal (Redis leaves them undefined otherwise).
fn random_zset_script(seed: u64, n: usize) -> String {
    use rand::{seq::SliceRandom, Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys = ["k0", "k1", "k2", "k3"];
    let members = [
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
        "h",
        "1",
        "2",
        "10",
        "longmember-xxxxxxxx",
    ];
    let scores = [
        "0", "1", "-1", "2.5", "-0.0", "1e17", "0.1", "3", "inf", "-inf", "100", "7.25", "-3.5",
    ];
    let bounds = [
        "-inf", "+inf", "0", "1", "2.5", "3", "-1", "100", "(1", "(2.5", "(0", "(-inf", "(100",
    ];
    let lex = [
        "-", "+", "[a", "(a", "[c", "(c", "[f", "(h", "[h", "[", "(1", "[10",
    ];
    let pick = |rng: &mut rand::rngs::StdRng, from: &[&'static str]| -> &'static str {
        from.choose(rng).copied().unwrap_or_default()
    };
    let mut out = String::new();
    let entries = [3, 5, 128][rng.gen_range(0..3)];
    out += &format!("CONFIG SET zset-max-listpack-entries {entries}\n");
    out += &format!(
        "CONFIG SET zset-max-listpack-value {}\n",
        [5, 64][rng.gen_range(0..2)]
    );
    for _ in 0..n {
        let k = pick(&mut rng, &keys);
        let (m1, m2) = (pick(&mut rng, &members), pick(&mut rng, &members));
        let (s1, s2) = (pick(&mut rng, &scores), pick(&mut rng, &scores));
        let (b1, b2) = (pick(&mut rng, &bounds), pick(&mut rng, &bounds));
        let (i1, i2) = (rng.gen_range(-6..=6), rng.gen_range(-6..=6));
        let other = pick(&mut rng, &keys);
        let line = match rng.gen_range(0..100) {
            0..=24 => {
                let opts = pick(&mut rng, &["", "NX", "XX", "GT", "LT", "CH", "GT CH", "XX LT"]);
                if rng.gen_bool(0.15) {
                    format!("ZADD {k} {opts} INCR {s1} {m1}")
                } else {
                    format!("ZADD {k} {opts} {s1} {m1} {s2} {m2}")
                }
            }
            25..=29 => format!("ZINCRBY {k} {s1} {m1}"),
            30..=34 => format!("ZREM {k} {m1} {m2}"),
            35..=39 => format!("ZRANGE {k} {i1} {i2} {}", pick(&mut rng, &["", "WITHSCORES", "REV WITHSCORES"])),
            40..=46 => {
                let limit = format!("LIMIT {} {}", rng.gen_range(-1..=3), rng.gen_range(-1..=4));
                format!("ZRANGE {k} {b1} {b2} BYSCORE {} WITHSCORES {limit}", pick(&mut rng, &["", "REV"]))
            }
            47..=49 => format!("ZCOUNT {k} {b1} {b2}"),
            50..=52 => format!("ZRANK {k} {m1}\nZREVRANK {k} {m2}"),
            53..=55 => format!("ZSCORE {k} {m1}\nZMSCORE {k} {m1} {m2}"),
            56..=58 => format!("ZREMRANGEBYRANK {k} {i1} {i2}"),
            59..=61 => format!("ZREMRANGEBYSCORE {k} {b1} {b2}"),
            62..=65 => match rng.gen_range(0..4) {
                0 => format!("ZPOPMIN {k}"),
                1 => format!("ZPOPMAX {k} {}", rng.gen_range(0..4)),
                2 => format!("ZMPOP 2 {k} {other} MIN COUNT 2"),
                _ => format!("BZPOPMAX {k} {other} 0.01"),
            },
            66..=71 => {
                let op = pick(&mut rng, &["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]);
                let extra = if op == "ZDIFFSTORE" {
                    String::new()
                } else {
                    pick(&mut rng, &["", "AGGREGATE MIN", "AGGREGATE MAX", "WEIGHTS 2 -1 AGGREGATE MAX"]).to_string()
                };
                format!("{op} {} 2 {k} {other} {extra}", pick(&mut rng, &keys))
            }
            72..=75 => {
                let op = pick(&mut rng, &["ZUNION", "ZINTER", "ZDIFF"]);
                let extra = if op == "ZDIFF" { "" } else { pick(&mut rng, &["", "WEIGHTS 1 0.5", "AGGREGATE MAX"]) };
                format!("{op} 2 {k} {other} {extra} WITHSCORES")
            }
            76..=77 => format!("ZINTERCARD 2 {k} {other} LIMIT {}", rng.gen_range(0..4)),
            78..=81 => format!("ZRANGESTORE {other} {k} {b1} {b2} BYSCORE LIMIT 1 2\nZRANGESTORE {k} {other} {i1} {i2}"),
            82..=91 => {
                let x = pick(&mut rng, &["x0", "x1"]);
                let (l1, l2) = (pick(&mut rng, &lex), pick(&mut rng, &lex));
                match rng.gen_range(0..6) {
                    0 | 1 => format!("ZADD {x} 0 {m1} 0 {m2}"),
                    2 => format!("ZRANGEBYLEX {x} {l1} {l2} LIMIT {} {}", rng.gen_range(0..3), rng.gen_range(-1..4)),
                    3 => format!("ZREVRANGEBYLEX {x} {l1} {l2}\nZLEXCOUNT {x} {l1} {l2}"),
                    4 => format!("ZREMRANGEBYLEX {x} {l1} {l2}"),
                    _ => format!("ZRANGE {x} {l1} {l2} BYLEX REV"),
                }
            }
            _ => format!("ZRANGE {k} 0 -1 WITHSCORES\nOBJECT ENCODING {k}"),
        };
        out += &line;
        out.push('\n');
    }
    for k in keys.iter().chain(&["x0", "x1"]) {
        out += &format!("ZRANGE {k} 0 -1 WITHSCORES\n");
    }
    out
}

/// Runs `SEEDS` (the value of the environment variable `seeds_var`, default 2) generated
/// scripts of a random workload against Redis; a failure names its seed, the command, both
/// replies and the commands before it, and keeps the failing script in a temporary folder.
fn fuzz(what: &str, seeds_var: &str, script: impl Fn(u64) -> String) {
    let seeds: u64 = std::env::var(seeds_var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let dir = std::env::temp_dir().join(format!("shardis-{what}-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for seed in 0..seeds {
        let path = dir.join(format!("{what}-random-{seed}.redis"));
        std::fs::write(&path, script(seed)).unwrap();
        let mismatches = run_script(&path, FUZZ_REPORT);
        if mismatches.is_empty() {
            std::fs::remove_file(&path).unwrap();
        } else {
            failures.push(format!(
                "seed {seed} ({}):\n{}",
                path.display(),
                mismatches.join("\n")
            ));
        }
    }
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Random sorted-set workloads, in RESP2 and RESP3, against Redis (seeded: a failure names
/// its seed; `ZSET_FUZZ_SEEDS=n` runs n seeds instead of 2).
#[test]
fn zsets_random() {
    fuzz("zsets", "ZSET_FUZZ_SEEDS", |seed| {
        let proto = if seed % 2 == 0 { "" } else { "@resp3\n" };
        format!("{proto}{}", random_zset_script(seed, 1500))
    });
}

/// The random choices of a stream workload: keys, groups, consumers, and the ids handed out so
/// far (every XADD takes a larger explicit id than the last, so that replies never depend on
/// the clock; the ids stay around to be deleted, acknowledged, claimed and used as bounds).
struct StreamGen {
    rng: rand::rngs::StdRng,
    /// The millisecond part of the next id.
    ms: u64,
    /// Ids given to XADD per key (the last `IDS_KEPT`, whether or not XADD took them).
    ids: Vec<Vec<String>>,
}

/// How many of a stream's XADD ids the generator remembers.
const IDS_KEPT: usize = 40;

/// Stream keys: two on each shard (checked by `streams_random`).
const STREAM_KEYS: [&str; 4] = ["s0", "s1", "s2", "s3"];

impl StreamGen {
    fn pick(&mut self, from: &[&'static str]) -> &'static str {
        use rand::seq::SliceRandom;
        from.choose(&mut self.rng).copied().unwrap_or_default()
    }

    fn chance(&mut self, p: f64) -> bool {
        use rand::Rng;
        self.rng.gen_bool(p)
    }

    fn int(&mut self, range: std::ops::RangeInclusive<i64>) -> i64 {
        use rand::Rng;
        self.rng.gen_range(range)
    }

    /// A stream key, now and then the string key (WRONGTYPE) or a missing one.
    fn key(&mut self) -> (usize, &'static str) {
        match self.int(0..=40) {
            0 => (0, "str"),
            1 => (0, "nokey"),
            _ => {
                let i = self.int(0..=3) as usize;
                (i, STREAM_KEYS[i])
            }
        }
    }

    /// An id that was given to `key` (when there is one), else one around the current ms.
    fn known_id(&mut self, key: usize) -> String {
        let n = self.ids[key].len();
        if n > 0 && self.chance(0.8) {
            let i = self.int(0..=n as i64 - 1) as usize;
            return self.ids[key][i].clone();
        }
        let ms = self.int(0..=self.ms as i64 + 2);
        format!("{ms}-{}", self.int(0..=2))
    }

    /// A range bound: `-`/`+`, a full or partial id, exclusive or not, sometimes invalid.
    fn bound(&mut self, key: usize) -> String {
        let id = self.known_id(key);
        match self.int(0..=19) {
            0..=2 => "-".into(),
            3..=5 => "+".into(),
            6..=7 => id.split('-').next().unwrap_or_default().to_string(),
            8..=10 => format!("({id}"),
            11 => format!("({}", id.split('-').next().unwrap_or_default()),
            12 => self
                .pick(&[
                    "(-",
                    "(+",
                    "x",
                    "0",
                    "18446744073709551615-18446744073709551615",
                    "(0-0",
                ])
                .into(),
            _ => id,
        }
    }

    /// An id for XREAD and XREADGROUP's history: given ones, partial ones, 0, `$` (XREAD).
    fn read_id(&mut self, key: usize) -> String {
        match self.int(0..=9) {
            0 => "0".into(),
            1 => "$".into(),
            2 => self
                .known_id(key)
                .split('-')
                .next()
                .unwrap_or_default()
                .into(),
            3 => "0-0".into(),
            _ => self.known_id(key),
        }
    }

    /// The next XADD id: explicit and increasing, sometimes `ms-*`, sometimes too small or bad.
    fn new_id(&mut self, key: usize) -> String {
        self.ms += self.int(0..=2) as u64;
        let (id, given) = match self.int(0..=29) {
            0 => {
                let bad = self.pick(&["0-0", "1-1", "x", "-1", "0-*", "*-1", "1-"]);
                return bad.into();
            }
            1 => return self.known_id(key),
            // The sequence is the stream's next one: 0 when the ms is new to the stream.
            2..=5 => (format!("{}-*", self.ms), format!("{}-0", self.ms)),
            6 => (self.ms.to_string(), format!("{}-0", self.ms)),
            _ => {
                let seq = self.int(0..=3);
                let id = format!("{}-{seq}", self.ms);
                (id.clone(), id)
            }
        };
        if self.ids[key].len() >= IDS_KEPT {
            self.ids[key].remove(0);
        }
        self.ids[key].push(given);
        id
    }

    /// A trimming clause: MAXLEN or MINID, exact or `~`, sometimes LIMIT (an error when exact).
    fn trim(&mut self, key: usize) -> String {
        let how = self.pick(&["", "=", "~", "~"]);
        // Lengths up to 12 keep a stream within a few nodes; up to 60, over many.
        let len_max = [12, 60][self.int(0..=1) as usize];
        let threshold = if self.chance(0.5) {
            format!("MAXLEN {how} {}", self.int(0..=len_max))
        } else {
            format!("MINID {how} {}", self.known_id(key))
        };
        let limit = match self.int(0..=5) {
            0 => format!(" LIMIT {}", self.int(0..=4)),
            1 if how == "~" => format!(" LIMIT {}", self.int(1..=20)),
            _ => String::new(),
        };
        format!("{threshold}{limit}")
    }

    fn fields(&mut self) -> String {
        let n = [1, 1, 2, 3][self.int(0..=3) as usize];
        let names = ["f", "g", "h", "field-with-a-longer-name"];
        (0..n)
            .map(|i| {
                let value = match self.int(0..=4) {
                    0 => self.int(-1000..=100000).to_string(),
                    1 => "x".repeat(self.int(0..=60) as usize),
                    2 => "".into(),
                    _ => self.pick(&["v", "1", "abc", "-7"]).into(),
                };
                let value = if value.is_empty() { "''".into() } else { value };
                format!("{} {value}", names[(i + self.int(0..=1) as usize) % 4])
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn xadd(&mut self) -> String {
        let (k, key) = self.key();
        let nomk = if self.chance(0.1) { "NOMKSTREAM " } else { "" };
        let trim = if self.chance(0.25) {
            self.trim(k) + " "
        } else {
            String::new()
        };
        let id = self.new_id(k);
        let fields = self.fields();
        format!("XADD {key} {nomk}{trim}{id} {fields}")
    }

    fn group(&mut self) -> &'static str {
        self.pick(&["g0", "g0", "g0", "g1", "g1", "g1", "g1", "g1", "g1", "nog"])
    }

    fn consumer(&mut self) -> &'static str {
        self.pick(&["c0", "c1", "c2"])
    }

    fn xread(&mut self, group: bool) -> String {
        let n = [1, 1, 1, 2, 2, 3][self.int(0..=5) as usize];
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..n {
            let (k, key) = self.key();
            keys.push(key);
            ids.push(if group && self.chance(0.7) {
                ">".into()
            } else {
                self.read_id(k)
            });
        }
        let count = match self.int(0..=3) {
            0 => String::new(),
            1 => format!("COUNT {} ", self.int(-1..=2)),
            _ => format!("COUNT {} ", self.int(1..=5)),
        };
        let (keys, ids) = (keys.join(" "), ids.join(" "));
        if group {
            let (g, c) = (self.group(), self.consumer());
            let noack = if self.chance(0.15) { "NOACK " } else { "" };
            format!("XREADGROUP GROUP {g} {c} {count}{noack}STREAMS {keys} {ids}")
        } else {
            format!("XREAD {count}STREAMS {keys} {ids}")
        }
    }

    fn ids_of(&mut self, k: usize, most: i64) -> String {
        let n = self.int(1..=most);
        (0..n)
            .map(|_| self.known_id(k))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// XCLAIM: a min-idle-time of 0 or an hour (met only by entries given a past delivery
    /// time with TIME or IDLE), so whether an entry is claimed never depends on the clock.
    fn xclaim(&mut self) -> String {
        let (k, key) = self.key();
        let (g, c) = (self.group(), self.consumer());
        let min_idle = self.pick(&["0", "0", "3600000"]);
        let ids = self.ids_of(k, 3);
        let mut opts = String::new();
        match self.int(0..=3) {
            0 => opts += &format!(" TIME {}", self.int(1_000_000..=1_000_100)),
            1 => opts += " IDLE 7200000",
            _ => {}
        }
        if self.chance(0.3) {
            opts += &format!(" RETRYCOUNT {}", self.int(0..=5));
        }
        if self.chance(0.2) {
            opts += " FORCE";
        }
        if self.chance(0.3) {
            opts += " JUSTID";
        }
        if self.chance(0.2) {
            opts += &format!(" LASTID {}", self.known_id(k));
        }
        format!("XCLAIM {key} {g} {c} {min_idle} {ids}{opts}")
    }

    fn xgroup(&mut self) -> String {
        let (k, key) = self.key();
        let (g, c) = (self.group(), self.consumer());
        let entries_read = match self.int(0..=5) {
            0 => format!(" ENTRIESREAD {}", self.int(-2..=20)),
            1 => format!(" ENTRIESREAD {}", self.int(0..=5)),
            _ => String::new(),
        };
        let id = match self.int(0..=3) {
            0 => "$".into(),
            1 => "0".into(),
            _ => self.known_id(k),
        };
        match self.int(0..=9) {
            0..=3 => {
                let mk = if self.chance(0.3) { " MKSTREAM" } else { "" };
                format!("XGROUP CREATE {key} {g} {id}{mk}{entries_read}")
            }
            4..=5 => format!("XGROUP SETID {key} {g} {id}{entries_read}"),
            6..=7 => format!("XGROUP CREATECONSUMER {key} {g} {c}"),
            8 => format!("XGROUP DELCONSUMER {key} {g} {c}"),
            _ => format!("XGROUP DESTROY {key} {g}"),
        }
    }

    fn xsetid(&mut self) -> String {
        let (k, key) = self.key();
        let id = if self.chance(0.7) {
            // Mostly a little past the last id (valid), else anything (often too small).
            let ms = self.ms + self.int(0..=3) as u64;
            self.ms = ms;
            format!("{ms}-{}", self.int(0..=5))
        } else {
            self.known_id(k)
        };
        match self.int(0..=3) {
            0 => format!(
                "XSETID {key} {id} ENTRIESADDED {} MAXDELETEDID {}",
                self.int(0..=200),
                self.known_id(k)
            ),
            1 => format!("XSETID {key} {id} ENTRIESADDED {}", self.int(0..=200)),
            _ => format!("XSETID {key} {id}"),
        }
    }

    fn inspect(&mut self) -> String {
        let (k, key) = self.key();
        let g = self.group();
        match self.int(0..=9) {
            0..=1 => format!("XINFO STREAM {key}"),
            2 => format!("clock XINFO STREAM {key} FULL"),
            3 => format!("clock XINFO STREAM {key} FULL COUNT {}", self.int(0..=4)),
            4..=5 => format!("XINFO GROUPS {key}"),
            6 => format!("clock XINFO CONSUMERS {key} {g}"),
            7 => format!("XPENDING {key} {g}"),
            _ => {
                let idle = match self.int(0..=3) {
                    0 => "IDLE 0 ",
                    1 => "IDLE 3600000 ",
                    _ => "",
                };
                let (start, end) = (self.bound(k), self.bound(k));
                let consumer = if self.chance(0.3) {
                    self.consumer()
                } else {
                    ""
                };
                format!(
                    "clock XPENDING {key} {g} {idle}{start} {end} {} {consumer}",
                    self.int(-1..=6)
                )
            }
        }
    }

    fn command(&mut self) -> String {
        let (k, key) = self.key();
        match self.int(0..=99) {
            0..=24 => self.xadd(),
            25..=28 => format!("XDEL {key} {}", self.ids_of(k, 3)),
            29..=32 => format!("XTRIM {key} {}", self.trim(k)),
            33..=40 => {
                let cmd = self.pick(&["XRANGE", "XREVRANGE"]);
                let (a, b) = (self.bound(k), self.bound(k));
                let count = match self.int(0..=3) {
                    0 => format!(" COUNT {}", self.int(-1..=6)),
                    1 => format!(" COUNT {}", self.int(1..=3)),
                    _ => String::new(),
                };
                format!("{cmd} {key} {a} {b}{count}")
            }
            41..=42 => format!("XLEN {key}"),
            43..=47 => self.xread(false),
            48..=49 => self.xsetid(),
            50..=57 => self.xgroup(),
            58..=65 => self.xread(true),
            66..=70 => format!("XACK {key} {} {}", self.group(), self.ids_of(k, 3)),
            71..=75 => self.xclaim(),
            76..=79 => {
                let (g, c) = (self.group(), self.consumer());
                let min_idle = self.pick(&["0", "0", "3600000"]);
                let start = self.read_id(k);
                let count = if self.chance(0.5) {
                    format!(" COUNT {}", self.int(0..=4))
                } else {
                    String::new()
                };
                let justid = if self.chance(0.3) { " JUSTID" } else { "" };
                format!("XAUTOCLAIM {key} {g} {c} {min_idle} {start}{count}{justid}")
            }
            80..=93 => self.inspect(),
            94 => format!("DEL {key}\nXGROUP CREATE {key} g0 0 MKSTREAM"),
            95 => format!("TYPE {key}\nEXISTS {key}"),
            96 => format!("CONFIG SET stream-node-max-entries {}", self.int(2..=10)),
            _ => {
                let (_, other) = self.key();
                format!("XRANGE {key} - +\nXRANGE {other} - +")
            }
        }
    }
}

/// A random stream workload of `n` commands, the first half in RESP2 and the second in RESP3,
/// over four streams on both shards with small nodes (so that nodes split and approximate
/// trims cut at node boundaries), every entry's contents compared at the end.
fn random_stream_script(seed: u64, n: usize) -> String {
    use rand::SeedableRng;
    let mut gen = StreamGen {
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        ms: 1,
        ids: vec![Vec::new(); STREAM_KEYS.len()],
    };
    let mut out = format!(
        "CONFIG SET stream-node-max-entries {}\nSET str x\n",
        gen.int(3..=10)
    );
    for key in STREAM_KEYS {
        out += &format!("XGROUP CREATE {key} g0 0 MKSTREAM\nXGROUP CREATE {key} g1 $\n");
    }
    if gen.chance(0.3) {
        out += &format!("CONFIG SET stream-node-max-bytes {}\n", gen.int(40..=400));
    }
    for i in 0..n {
        if i == n / 2 {
            out += "@resp3\n";
        }
        out += &gen.command();
        out.push('\n');
    }
    for key in STREAM_KEYS {
        out += &format!("XRANGE {key} - +\nXINFO STREAM {key}\nXINFO GROUPS {key}\nclock XINFO STREAM {key} FULL\n");
    }
    out
}

/// Random stream workloads against Redis (seeded; `STREAM_FUZZ_SEEDS=n` runs n seeds instead
/// of 2): entries added with explicit ids, deleted, trimmed, read, read by groups, claimed
/// and acknowledged over keys on both shards, in RESP2 then RESP3.
#[test]
fn streams_random() {
    let shards: std::collections::BTreeSet<usize> = STREAM_KEYS
        .iter()
        .map(|k| common::shard_of(k.as_bytes(), 2))
        .collect();
    assert_eq!(shards.len(), 2, "STREAM_KEYS must be on both shards");
    fuzz("streams", "STREAM_FUZZ_SEEDS", |seed| {
        random_stream_script(seed, 1500)
    });
}

#[test]
fn geo() {
    check("geo.redis");
}
