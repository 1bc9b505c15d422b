//! The command line of `shardis-bench`, without a server: help, and options refused with exit
//! status 2 before anything connects. (Runs against servers are in the workspace's
//! `tests/loadgen.rs`; this test also makes `cargo test --workspace` build the binary they use.)

use std::process::Command;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shardis-bench"))
        .args(args)
        .output()
        .expect("running shardis-bench")
}

#[test]
fn help_lists_the_options() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--host",
        "--port",
        "--clients",
        "--pipeline",
        "--requests",
        "--duration",
        "--threads",
        "--keyspace",
        "--key-pattern",
        "--data-size",
        "--mix",
        "--warmup",
        "--json",
        "--seed",
        "--verify",
        "--cluster",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn bad_options_are_refused() {
    for args in [
        &["--mix", "get:x"][..],
        &["--mix", "flushall:1"],
        &["--mix", "get:0"],
        &["--key-pattern", "zipf:-1"],
        &["--key-pattern", "gauss"],
        &["-d", "9-3"],
        &["-c", "0"],
        &["--threads", "0"],
        &["-P", "0"],
        &["--keyspace", "0"],
        &["-n", "5", "--duration", "1"],
        &["--duration", "-1"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn an_unreachable_server_fails_the_run() {
    // Port 1 on the loopback: nothing listens there.
    let out = bench(&["-p", "1", "-c", "2", "-n", "10", "-q"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection error"));
}
