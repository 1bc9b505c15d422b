//! The load generator (`shardis-bench`, the `loadgen` crate) driven as a binary: `--verify`
//! runs of mixed workloads against shardis end with no error or mismatch and a JSON report
//! that adds up; a wrong value and an error reply are caught; in `--cluster` mode against a 3-node redis-server
//! cluster every request reaches its slot's node, also while slots move (MOVED and ASK).
//!
//! `cargo test --workspace` (scripts/test.sh) builds the binary (for `loadgen/tests/cli.rs`);
//! it sits next to `shardis`.

mod common;

use common::{free_port, fresh_dir, RawConn, Server};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
    // --cluster against a server without cluster mode uses the one address.
    assert_eq!(
        RawConn::connect(server.addr()).cmd(&["FLUSHALL"]),
        b"+OK\r\n"
    );
    let out = bench(&[&common_args[..], &["--cluster", "-c", "4", "-n", "2000"]].concat());
    assert_clean(&out, Some(2000), FULL_MIX);
}

#[test]
fn progress_line_and_json_file() {
    let server = Server::start(&[]);
    let port = server.port().to_string();
    let path = fresh_dir("loadgen-json").join("report.json");
    let out = Command::new(bench_bin())
        .args([
            "-p",
            &port,
            "-c",
            "2",
            "--duration",
            "1.5",
            "--mix",
            "get:1,set:1",
        ])
        .arg("--json")
        .arg(&path)
        .output()
        .expect("shardis-bench");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Once a second on standard error; the chosen seed is printed to rerun the same requests.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("1s: ") && stderr.contains(" req/s, 0 errors"),
        "{stderr}"
    );
    assert!(stderr.starts_with("seed "), "{stderr}");
    let json = std::fs::read_to_string(&path).expect("the JSON report");
    let total = json_line(&json, "total");
    assert!(number(total, "requests") > 0.0, "{json}");
    assert!(json.trim_end().ends_with('}'));
    // The table went to standard output.
    assert!(
        text(&out.stdout).starts_with("command "),
        "{}",
        text(&out.stdout)
    );
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
    // The warm-up is checked too, though not measured.
    let out = bench(&[
        "-p",
        &port,
        "-c",
        "1",
        "--keyspace",
        "1",
        "--mix",
        "get:1",
        "--verify",
        "--warmup",
        "0.3",
        "--duration",
        "0.1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
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

/// How long the cluster may take to form.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// A 3-node redis-server cluster (no replicas) on free ports, stopped on drop.
struct RedisCluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    dir: PathBuf,
}

impl RedisCluster {
    fn start() -> RedisCluster {
        let dir = fresh_dir("loadgen-cluster");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            ports: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let (port, bus) = (free_port(), free_port());
            let conf = cluster.dir.join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--cluster-port",
                    &bus.to_string(),
                ])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(&conf)
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                ])
                .arg(&cluster.dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (install it with scripts/install-deps.sh)");
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            cluster.wait_for(port, &["PING"], "PONG");
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create: {}",
            text(&out.stdout)
        );
        for &port in &cluster.ports {
            cluster.wait_for(port, &["CLUSTER", "INFO"], "cluster_state:ok");
        }
        cluster
    }

    /// Waits until `args` sent to `port` gets a reply containing `want`.
    fn wait_for(&self, port: u16, args: &[&str], want: &str) {
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        loop {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            // RawConn panics when it cannot connect: try a plain connection first.
            let reply = std::net::TcpStream::connect(addr)
                .ok()
                .map(|_| text(&RawConn::connect(addr).cmd(args)));
            if reply.as_deref().is_some_and(|r| r.contains(want)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{port}: {args:?} never gave {want}: {reply:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn cmd(&self, node: usize, args: &[&str]) -> String {
        let addr = format!("127.0.0.1:{}", self.ports[node]).parse().unwrap();
        text(&RawConn::connect(addr).cmd(args))
    }

    fn port(&self, node: usize) -> String {
        self.ports[node].to_string()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn cluster_mode_sends_each_command_to_its_node() {
    let cluster = RedisCluster::start();
    let port = cluster.port(1);
    let out = bench(&[
        "-p",
        &port,
        "--cluster",
        "--verify",
        "--mix",
        FULL_MIX,
        "--json",
        "-",
        "-c",
        "6",
        "--threads",
        "2",
        "-P",
        "8",
        "-n",
        "20000",
        "--keyspace",
        "300",
    ]);
    let json = assert_clean(&out, Some(20_000), FULL_MIX);
    // The map read at the start was right: nothing was redirected.
    let redirections = json_line_starting(&json, "\"redirections\"");
    assert_eq!(
        number(redirections, "moved") + number(redirections, "ask"),
        0.0,
        "{json}"
    );
    for node in 0..3 {
        let keys = cluster.cmd(node, &["DBSIZE"]);
        assert!(
            keys.trim_start_matches(':').trim() != "0",
            "node {node} got no keys"
        );
    }
}

#[test]
fn cluster_mode_follows_moved_and_ask_while_slots_move() {
    let cluster = RedisCluster::start();
    let from = cluster.cmd(0, &["CLUSTER", "MYID"]);
    let to = cluster.cmd(1, &["CLUSTER", "MYID"]);
    let id = |reply: &str| reply.lines().nth(1).unwrap_or_default().to_string();
    let (from, to) = (id(&from), id(&to));
    // MGET/MSET whose keys a migration has split get -TRYAGAIN and are sent again.
    let mix = FULL_MIX;
    let port = cluster.port(0);
    let args = [
        "-q",
        "--seed",
        "3",
        "-p",
        &port,
        "--cluster",
        "--verify",
        "--mix",
        mix,
        "--json",
        "-",
        "-c",
        "6",
        "--threads",
        "2",
        "-P",
        "4",
        "--duration",
        "3",
        "--keyspace",
        "2000",
    ];
    let run = Command::new(bench_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shardis-bench");
    std::thread::sleep(Duration::from_millis(500));
    // Moves 300 slots, key by key, while the load runs: clients meet -ASK during each slot's
    // migration and -MOVED after it.
    let out = Command::new("redis-cli")
        .args(["--cluster", "reshard", &format!("127.0.0.1:{port}")])
        .args([
            "--cluster-from",
            &from,
            "--cluster-to",
            &to,
            "--cluster-slots",
            "300",
        ])
        .arg("--cluster-yes")
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "reshard: {}", text(&out.stdout));
    let out = run.wait_with_output().expect("shardis-bench");
    let json = assert_clean(&out, None, mix);
    let redirections = json_line_starting(&json, "\"redirections\"");
    assert!(number(redirections, "moved") > 0.0, "{json}");
}

/// The line of `json` starting with `prefix`.
fn json_line_starting<'a>(json: &'a str, prefix: &str) -> &'a str {
    json.lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{json}"))
}
