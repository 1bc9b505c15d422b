//! Hostile input through the real binary (2 shards): every command of the command table, with
//! random arguments (keys of every type, tokens of its syntax, numbers at the edges, garbage),
//! from a seeded generator. The test passes when every reply is one well-formed RESP frame, the
//! server stays up and serves a fresh connection, and the data survives DEBUG RELOAD unchanged
//! (DEBUG DIGEST).
//!
//! `HOSTILE_SEED=n` picks the seed (default 1), `HOSTILE_COMMANDS=n` how many commands run
//! (default 4000; `scripts/soak.sh` runs more).

mod common;

use common::{encode, Server};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shards::cmd::spec::{flag, Arg, CommandSpec, ConnCmd, Route};
use std::time::Duration;

/// Commands left out, and why: they end the connection or the server, block for as long as the
/// random arguments say, change the connection's protocol or mode, or reconfigure the server.
fn excluded(name: &str, spec: &CommandSpec) -> bool {
    spec.flags & flag::BLOCKING != 0
        || matches!(
            spec.route,
            Route::Server(ConnCmd::Shutdown | ConnCmd::Quit | ConnCmd::Hello | ConnCmd::Reset)
                | Route::Server(ConnCmd::PubSub)
                | Route::Server(ConnCmd::Debug)
                | Route::Server(ConnCmd::Persist)
                | Route::Server(ConnCmd::Auth)
        )
        || matches!(
            name,
            // PSYNC / SYNC hand the connection to replication (it receives a file and a
            // stream, not replies); REPLICAOF changes the server's role.
            "psync"
                | "sync"
                | "replicaof"
                | "slaveof"
                | "config|set"
                | "config|rewrite"
                | "client|kill"
                | "client|pause"
                | "client|reply"
                | "monitor"
                | "multi"
                | "exec"
                | "watch"
                | "script|kill"
                | "function|kill"
        )
}

/// Every (name, spec) a client can send: top-level commands and subcommands.
fn commands() -> Vec<(Vec<String>, &'static CommandSpec)> {
    let mut out = Vec::new();
    for c in shards::cmd::registry::all() {
        if c.subcommands.is_empty() {
            if !excluded(c.name, c) {
                out.push((vec![c.name.to_string()], c));
            }
        } else {
            for s in c.subcommands {
                let full = format!("{}|{}", c.name, s.name);
                if !excluded(&full, s) {
                    out.push((vec![c.name.to_string(), s.name.to_string()], s));
                }
            }
        }
    }
    out
}

/// Every keyword token in a command's argument docs.
fn tokens(args: &[Arg], out: &mut Vec<&'static str>) {
    for a in args {
        if let Some(t) = a.token {
            out.push(t);
        }
        tokens(a.args, out);
    }
}

const KEYS: &[&str] = &[
    "str", "int", "list", "hash", "set", "zset", "stream", "hll", "{t}a", "{t}b", "nokey", "k1",
    "k2",
];

fn random_arg(rng: &mut StdRng, toks: &[&'static str]) -> Vec<u8> {
    match rng.gen_range(0..12) {
        0..=2 => KEYS[rng.gen_range(0..KEYS.len())].as_bytes().to_vec(),
        3..=4 if !toks.is_empty() => toks[rng.gen_range(0..toks.len())].as_bytes().to_vec(),
        5 => {
            let edges = [
                "0",
                "1",
                "-1",
                "2",
                "-2",
                "100",
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "4294967296",
                "-4294967297",
                "1e308",
                "-1e308",
                "inf",
                "-inf",
                "+inf",
                "nan",
                "0.5",
                "-0.5",
                "(1",
                "[a",
                "-",
                "+",
                "*",
                "$",
                ">",
                "0-0",
                "1-1",
                "18446744073709551615",
                "-0",
            ];
            edges[rng.gen_range(0..edges.len())].as_bytes().to_vec()
        }
        6 => rng.gen_range(-1000i64..1000).to_string().into_bytes(),
        7 => Vec::new(),
        8 => {
            let n = rng.gen_range(1..64);
            (0..n).map(|_| rng.gen::<u8>()).collect()
        }
        9 => "return redis.call('get', KEYS[1])".as_bytes().to_vec(),
        _ => format!("m{}", rng.gen_range(0..20)).into_bytes(),
    }
}

fn setup(c: &mut common::RawConn) {
    for cmd in [
        vec!["SET", "str", "hello"],
        vec!["SET", "int", "42"],
        vec!["RPUSH", "list", "a", "b", "c", "1", "2"],
        vec!["HSET", "hash", "f", "v", "n", "3"],
        vec!["SADD", "set", "a", "b", "1"],
        vec!["ZADD", "zset", "1", "a", "2.5", "b", "-3", "c"],
        vec!["XADD", "stream", "1-1", "f", "v"],
        vec!["XGROUP", "CREATE", "stream", "g", "0"],
        vec!["PFADD", "hll", "a", "b"],
        vec!["SET", "{t}a", "1"],
    ] {
        c.cmd(&cmd);
    }
}

#[test]
fn random_arguments_to_every_command() {
    let seed: u64 = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let count: usize = std::env::var("HOSTILE_COMMANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    let dir = common::fresh_dir("hostile");
    let server = Server::start(&["--dir", dir.to_str().unwrap()]);
    let mut c = server.raw();
    c.set_read_timeout(Duration::from_secs(20));
    setup(&mut c);
    let cmds = commands();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut errors = 0;
    for i in 0..count {
        let (name, spec) = &cmds[rng.gen_range(0..cmds.len())];
        let mut toks = Vec::new();
        tokens(spec.args, &mut toks);
        let min = spec.arity.unsigned_abs() as usize;
        let n = if spec.arity > 0 {
            // Exact arity, sometimes one off.
            match rng.gen_range(0..10) {
                0 => min.saturating_sub(1),
                1 => min + 1,
                _ => min,
            }
        } else {
            min + rng.gen_range(0..6)
        };
        let mut argv: Vec<Vec<u8>> = name.iter().map(|s| s.as_bytes().to_vec()).collect();
        while argv.len() < n.max(name.len()) {
            argv.push(random_arg(&mut rng, &toks));
        }
        let refs: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
        if std::env::var("HOSTILE_TRACE").is_ok() {
            let shown: Vec<String> = argv.iter().map(|a| common::escape(a)).collect();
            eprintln!("{i}: {shown:?}");
        }
        c.send(&encode(&refs));
        match c.try_read_reply() {
            Ok(r) => errors += (r.first() == Some(&b'-')) as usize,
            Err(e) => {
                let shown: Vec<String> = argv.iter().map(|a| common::escape(a)).collect();
                panic!(
                    "seed {seed}, command {i}: {shown:?}: no well-formed reply: {e}\nserver log:\n{}",
                    server.log()
                )
            }
        }
        if i % 500 == 499 {
            // Some state resets, so later commands meet fresh data too.
            c.cmd(&["SELECT", "0"]);
            setup(&mut c);
        }
    }
    let mut fresh = server.raw();
    assert_eq!(
        fresh.cmd(&["PING"]),
        b"+PONG\r\n",
        "the server stopped serving"
    );
    let before = fresh.cmd(&["DEBUG", "DIGEST"]);
    assert_eq!(fresh.cmd(&["DEBUG", "RELOAD"]), b"+OK\r\n");
    assert_eq!(
        fresh.cmd(&["DEBUG", "DIGEST"]),
        before,
        "DEBUG RELOAD changed the data"
    );
    eprintln!("seed {seed}: {count} commands, {errors} error replies");
}
