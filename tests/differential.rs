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
    "zsets.redis",
    "geo.redis",
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
fn strings() {
    check("strings.redis");
}

#[test]
fn keys() {
    check("keys.redis");
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
fn zsets() {
    check("zsets.redis");
}

#[test]
fn geo() {
    check("geo.redis");
}
