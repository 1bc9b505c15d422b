//! The load generator (`shardis-bench`, the `loadgen` crate) driven as a binary: `--verify`
//! runs of mixed workloads against shardis end with no error or mismatch and a JSON report
//! that adds up; a wrong value is caught; in `--cluster` mode against a 3-node redis-server
//! cluster every request reaches its slot's node, also while slots move (MOVED and ASK).
//!
//! `cargo test --workspace` (scripts/test.sh) builds the binary; it sits next to `shardis`.

mod common;

use common::{RawConn, Server};
use std::path::PathBuf;
use std::process::{Command, Output};

/// Every command the generator knows, for mixed workloads.
const FULL_MIX: &str = "get:4,set:3,incr:1,hset:1,hget:1,lpush:1,rpop:1,zadd:1,zrange:1,\
                        mget:5:1,mset:5:1,publish:1";

fn bench_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_shardis")).with_file_name("shardis-bench");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --workspace` (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

fn bench(args: &[&str]) -> Output {
    Command::new(bench_bin())
        .args(["-q", "--seed", "7"])
        .args(args)
        .output()
        .expect("running shardis-bench")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The number after `"<key>": ` in `line`.
fn number(line: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\": ");
    let at = line
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + pat.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("bad {key} in {line}"))
}

/// The JSON report's line for `name` (`total` or a command), which holds all its figures.
fn json_line<'a>(json: &'a str, name: &str) -> &'a str {
    let pat = format!("\"{name}\": {{\"requests\"");
    json.lines()
        .find(|l| l.trim_start().starts_with(&pat))
        .unwrap_or_else(|| panic!("no {name} in the report:\n{json}"))
}

/// Asserts the run passed with `requests` answered requests (when given), none an error or a
/// mismatch, every command of the mix used, and ordered percentiles; returns the JSON.
fn assert_clean(out: &Output, requests: Option<u64>, mix: &str) -> String {
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "shardis-bench failed: {}\n{stdout}\n{}",
        out.status,
        text(&out.stderr)
    );
    let json = &stdout[stdout.find("{\n").expect("a JSON report")..];
    let total = json_line(json, "total");
    assert_eq!(number(total, "errors"), 0.0, "{stdout}");
    assert_eq!(number(total, "mismatches"), 0.0, "{stdout}");
    if let Some(n) = requests {
        assert_eq!(number(total, "requests"), n as f64, "{stdout}");
    }
    assert!(number(total, "requests_per_sec") > 0.0);
    let p = |k: &str| number(total, k);
    assert!(p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("p99.9"));
    assert!(
        p("p99.9") <= p("p99.99") && p("p99.99") <= p("max"),
        "{total}"
    );
    let mut sum = 0.0;
    for entry in mix.split(',') {
        let name = match entry.split(':').collect::<Vec<_>>()[..] {
            [name, k, _] => format!("{name}:{k}"),
            [name, ..] => name.to_string(),
            [] => unreachable!(),
        };
        let used = number(json_line(json, &name), "requests");
        assert!(used > 0.0, "{name} never ran:\n{stdout}");
        sum += used;
    }
    assert_eq!(sum, number(total, "requests"));
    assert!(json.contains("\"connection_errors\": []"), "{json}");
    json.to_string()
}

#[test]
fn verified_mixed_workload_against_shardis() {
    let server = Server::start(&[]);
    let port = server.port().to_string();
    let common_args = ["-p", &port, "--verify", "--mix", FULL_MIX, "--json", "-"];
    // Zipf keys, pipelines, two threads, values of several sizes; MGET/MSET span both shards.
    let out = bench(
        &[
            &common_args[..],
            &["-c", "8", "--threads", "2", "-P", "8", "-n", "20000"],
            &[
                "--keyspace",
                "300",
                "--key-pattern",
                "zipf:0.9",
                "-d",
                "1-300",
            ],
        ]
        .concat(),
    );
    let json = assert_clean(&out, Some(20_000), FULL_MIX);
    assert!(json.contains("\"key_pattern\": \"zipf:0.9\""), "{json}");
    // --verify expects its clients' keys to start empty.
    assert_eq!(
        RawConn::connect(server.addr()).cmd(&["FLUSHALL"]),
        b"+OK\r\n"
    );
    // A timed run with a warm-up, sequential keys, one request at a time.
    let out = bench(
        &[
            &common_args[..],
            &["-c", "4", "--duration", "1", "--warmup", "0.3"],
            &[
                "--keyspace",
                "50",
                "--key-pattern",
                "sequential",
                "-d",
                "100",
            ],
        ]
        .concat(),
    );
    assert_clean(&out, None, FULL_MIX);
}

#[test]
fn verify_reports_a_wrong_value() {
    let server = Server::start(&[]);
    let port = server.port().to_string();
    // Client 0's only string key holds a value it never wrote: its first GET must not pass.
    let mut conn = RawConn::connect(server.addr());
    assert_eq!(conn.cmd(&["SET", "key:0:c0", "bogus"]), b"+OK\r\n");
    let out = bench(&["-p", &port, "-c", "1", "-n", "5", "--keyspace", "1"]);
    assert!(out.status.success(), "without --verify only errors count");
    let out = bench(&[
        "-p",
        &port,
        "-c",
        "1",
        "-n",
        "5",
        "--keyspace",
        "1",
        "--mix",
        "get:1",
        "--verify",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("5 mismatches"), "{stderr}");
    assert!(stderr.contains("got \"bogus\", expected (nil)"), "{stderr}");
    // An error reply (INCR on a string) fails a verified run too.
    assert_eq!(conn.cmd(&["SET", "counter:0:c0", "x"]), b"+OK\r\n");
    let out = bench(&[
        "-p",
        &port,
        "-c",
        "1",
        "-n",
        "3",
        "--keyspace",
        "1",
        "--mix",
        "incr:1",
        "--verify",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("3 error replies"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_options_are_refused() {
    for args in [
        &["--mix", "get:x"][..],
        &["--key-pattern", "zipf:-1"],
        &["-d", "9-3"],
        &["-c", "0"],
        &["-n", "5", "--duration", "1"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
