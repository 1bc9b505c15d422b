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

fn same(mode: Mode, a: &[u8], b: &[u8]) -> bool {
    match mode {
        Mode::Exact => a == b,
        Mode::TypeOnly => shape(a) == shape(b),
        Mode::Sorted => sorted(a, false) == sorted(b, false),
        Mode::DeepSorted => sorted(a, true) == sorted(b, true),
        Mode::Docs => sorted(&mask_summaries(a), true) == sorted(&mask_summaries(b), true),
    }
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

/// Runs a script and returns its mismatches as readable paragraphs.
fn run_script(path: &Path) -> Vec<String> {
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
        match ours_reply {
            Err(e) => {
                mismatches.push(format!(
                    "{name}:{line}: {text}\n    {ours_label}: no reply ({e}); script aborted\n    redis:   {}",
                    escape(&theirs_reply)
                ));
                break;
            }
            Ok(r) if !same(*mode, &r, &theirs_reply) => mismatches.push(format!(
                "{name}:{line}: {text}{}\n    {ours_label}: {}\n    redis:   {}",
                match mode {
                    Mode::Exact => "",
                    Mode::TypeOnly => "  (type only)",
                    Mode::Sorted => "  (sorted)",
                    Mode::DeepSorted => "  (deep-sorted)",
                    Mode::Docs => "  (summaries masked, deep-sorted)",
                },
                escape(&r),
                escape(&theirs_reply)
            )),
            Ok(_) => {}
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
    let mismatches = run_script(&path);
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

/// Random sorted-set workloads, in RESP2 and RESP3, against Redis (seeded: a failure names
/// its seed; `ZSET_FUZZ_SEEDS=n` runs n seeds instead of 2).
#[test]
fn zsets_random() {
    let seeds: u64 = std::env::var("ZSET_FUZZ_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let dir = std::env::temp_dir().join(format!("shardis-zset-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for seed in 0..seeds {
        let proto = if seed % 2 == 0 { "" } else { "@resp3\n" };
        let path = dir.join(format!("zsets-random-{seed}.redis"));
        std::fs::write(&path, format!("{proto}{}", random_zset_script(seed, 1500))).unwrap();
        let mismatches = run_script(&path);
        if !mismatches.is_empty() {
            failures.push(format!("seed {seed}:\n{}", mismatches.join("\n")));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn geo() {
    check("geo.redis");
}
