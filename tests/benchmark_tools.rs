//! The standard tools work against shardis: redis-benchmark's default tests produce the data
//! they should, and redis-cli prints what it prints for Redis. Results are checked, not exit
//! codes: redis-benchmark exits 0 even when some of its setup queries (CONFIG GET) fail.

mod common;

use common::Server;
use std::process::{Command, Output};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); install it with scripts/install-deps.sh")
        })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn redis_benchmark_default_tests_leave_the_right_data() {
    let server = Server::start(&[]);
    let port = server.port().to_string();
    let requests = 20_000;
    let started = std::time::Instant::now();
    let out = run(
        "redis-benchmark",
        &[
            "-p",
            &port,
            "-q",
            "-n",
            &requests.to_string(),
            "-P",
            "16",
            "-t",
            "ping,set,get,incr,mset",
        ],
    );
    let text = stdout(&out).replace('\r', "\n");
    eprintln!(
        "redis-benchmark took {:?}:\n{text}\nstderr: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each test prints a final "<NAME>: <n> requests per second" line once all replies arrived.
    for name in [
        "PING_INLINE",
        "PING_MBULK",
        "SET",
        "GET",
        "INCR",
        "MSET (10 keys)",
    ] {
        let done = text.lines().any(|l| {
            l.trim_start().starts_with(&format!("{name}: ")) && l.contains("requests per second")
        });
        assert!(
            done,
            "redis-benchmark did not finish {name}; output:\n{text}\nserver log:\n{}",
            server.log()
        );
    }
    // Without -r, `__rand_int__` is not substituted: every command hits the same literal key.
    let mut conn = server.raw();
    let value = conn.cmd(&["GET", "key:__rand_int__"]);
    assert!(
        value.starts_with(b"$3\r\n") && value.len() == 9,
        "GET key:__rand_int__ gave {}",
        common::escape(&value)
    );
    // 20000 is a multiple of the pipeline depth (16), so exactly `requests` INCRs were sent.
    assert_eq!(
        conn.cmd(&["GET", "counter:__rand_int__"]),
        format!("${}\r\n{requests}\r\n", requests.to_string().len()).into_bytes()
    );
    assert_eq!(conn.cmd(&["DBSIZE"]), b":2\r\n");
}

#[test]
fn redis_cli_prints_replies_like_for_redis() {
    let server = Server::start(&[]);
    let port = server.port().to_string();
    let cli = |args: &[&str]| {
        let mut all = vec!["-p", port.as_str()];
        all.extend_from_slice(args);
        let out = run("redis-cli", &all);
        assert!(
            out.status.success(),
            "redis-cli {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    assert_eq!(cli(&["SET", "a", "b"]), "OK\n");
    assert_eq!(cli(&["GET", "a"]), "b\n");
    // Output is raw when stdout is not a terminal: nil prints as an empty line.
    assert_eq!(cli(&["GET", "missing"]), "\n");
    assert_eq!(cli(&["--no-raw", "GET", "missing"]), "(nil)\n");
    assert_eq!(cli(&["--no-raw", "GET", "a"]), "\"b\"\n");
    assert_eq!(cli(&["SET", "{tag}x", "1"]), "OK\n");
    assert_eq!(cli(&["--no-raw", "DBSIZE"]), "(integer) 2\n");
    assert_eq!(cli(&["DBSIZE"]), "2\n");
    assert_eq!(cli(&["PING"]), "PONG\n");
    assert_eq!(
        cli(&["--no-raw", "DEL", "a", "{tag}x", "missing"]),
        "(integer) 2\n"
    );
    assert_eq!(cli(&["-3", "--no-raw", "GET", "missing"]), "(nil)\n");
    assert_eq!(
        cli(&["--no-raw", "NOSUCHCOMMAND"]),
        "(error) ERR unknown command 'NOSUCHCOMMAND', with args beginning with: \n"
    );
}
