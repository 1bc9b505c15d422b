//! A linearizability check: several clients run INCR, GET, SET, MSET and MGET concurrently on a
//! few keys spread over both shards, every operation's call and return times are recorded, and
//! a Wing & Gong style search (with memoized states, as in Lowe's WGL) looks for a single order
//! of all operations that respects real time and explains every reply with a sequential model.

mod common;

use common::{shard_of, RawConn, Server};
use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

const KEYS: usize = 3;
const CLIENTS: usize = 4;
const OPS_PER_CLIENT: usize = 25;
const ROUNDS: usize = 12;

/// The model's state: each key's value (all values are integers or absent).
type State = [Option<i64>; KEYS];

#[derive(Clone, Debug)]
enum Op {
    Incr(usize),
    Get(usize),
    Set(usize, i64),
    Mset(Vec<(usize, i64)>),
    Mget,
}

#[derive(Clone, Debug, PartialEq)]
enum Ret {
    Ok,
    Int(i64),
    Val(Option<i64>),
    Vals(Vec<Option<i64>>),
}

#[derive(Clone, Debug)]
struct Event {
    op: Op,
    ret: Ret,
    call: u128,
    done: u128,
}

/// Applies `op` to the model; returns the new state and the reply the model gives.
fn step(s: &State, op: &Op) -> Option<(State, Ret)> {
    let mut n = *s;
    let r = match op {
        Op::Incr(k) => {
            let v = n[*k].unwrap_or(0) + 1;
            n[*k] = Some(v);
            Ret::Int(v)
        }
        Op::Get(k) => Ret::Val(n[*k]),
        Op::Set(k, v) => {
            n[*k] = Some(*v);
            Ret::Ok
        }
        Op::Mset(pairs) => {
            for (k, v) in pairs {
                n[*k] = Some(*v);
            }
            Ret::Ok
        }
        Op::Mget => Ret::Vals(n.to_vec()),
    };
    Some((n, r))
}

/// Whether some order of `events` consistent with real time explains every reply.
fn linearizable(events: &[Event]) -> bool {
    assert!(events.len() <= 128);
    let mut seen: HashSet<(u128, State)> = HashSet::new();
    let mut stack: Vec<(u128, State)> = vec![(0, [None; KEYS])];
    let all: u128 = if events.len() == 128 {
        u128::MAX
    } else {
        (1u128 << events.len()) - 1
    };
    while let Some((done, state)) = stack.pop() {
        if done == all {
            return true;
        }
        if !seen.insert((done, state)) {
            continue;
        }
        // Operations that may go next: not yet placed, and called before every pending one
        // returned.
        let first_return = (0..events.len())
            .filter(|i| done & (1 << i) == 0)
            .map(|i| events[i].done)
            .min()
            .unwrap_or(u128::MAX);
        for (i, e) in events.iter().enumerate() {
            if done & (1 << i) != 0 || e.call > first_return {
                continue;
            }
            if let Some((next, ret)) = step(&state, &e.op) {
                if ret == e.ret {
                    stack.push((done | (1 << i), next));
                }
            }
        }
    }
    false
}

fn int_of(reply: &[u8]) -> i64 {
    let s = String::from_utf8_lossy(reply);
    s.trim_start_matches(':').trim().parse().unwrap_or(i64::MIN)
}

fn bulk_ints(reply: &[u8]) -> Vec<Option<i64>> {
    let text = String::from_utf8_lossy(reply).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    if first.starts_with('$') {
        return vec![if first == "$-1" {
            None
        } else {
            lines.next().and_then(|v| v.parse().ok())
        }];
    }
    let n: usize = first.trim_start_matches('*').parse().unwrap_or(0);
    (0..n)
        .map(|_| match lines.next() {
            Some("$-1") => None,
            _ => lines.next().and_then(|v| v.parse().ok()),
        })
        .collect()
}

#[test]
fn concurrent_history_is_linearizable() {
    let server = Server::start(&[]);
    // Keys on both shards.
    let mut keys: Vec<String> = Vec::new();
    for i in 0.. {
        let k = format!("lin{i}");
        let s = shard_of(k.as_bytes(), 2);
        let have = keys
            .iter()
            .filter(|x| shard_of(x.as_bytes(), 2) == s)
            .count();
        if have < 2 {
            keys.push(k);
        }
        if keys.len() == KEYS {
            break;
        }
    }
    let addr = server.addr();
    let keys = Arc::new(keys);
    let mut ctl = server.raw();
    // Several short histories: the search cost grows with a history's length, not their number.
    // More in scripts/soak.sh (LIN_ROUNDS).
    let rounds = std::env::var("LIN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    for _round in 0..rounds {
        assert_eq!(ctl.cmd(&["FLUSHALL"]), b"+OK\r\n");
        let events = one_round(addr, &keys);
        assert_eq!(events.len(), CLIENTS * OPS_PER_CLIENT);
        assert!(
            linearizable(&events),
            "history not linearizable: {events:#?}"
        );
    }
}

/// Runs one concurrent history and returns its events.
fn one_round(addr: std::net::SocketAddr, keys: &Arc<Vec<String>>) -> Vec<Event> {
    let epoch = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let keys = keys.clone();
            thread::spawn(move || {
                let mut conn = RawConn::connect(addr);
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (c as u64 + 1);
                let mut rnd = move |n: u64| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % n
                };
                let mut events = Vec::new();
                for i in 0..OPS_PER_CLIENT {
                    let k = rnd(KEYS as u64) as usize;
                    let v = (c * 1000 + i) as i64;
                    let op = match rnd(5) {
                        0 => Op::Incr(k),
                        1 => Op::Get(k),
                        2 => Op::Set(k, v),
                        3 => Op::Mset((0..KEYS).map(|j| (j, v + j as i64)).collect()),
                        _ => Op::Mget,
                    };
                    let call = epoch.elapsed().as_nanos();
                    let ret = match &op {
                        Op::Incr(k) => Ret::Int(int_of(&conn.cmd(&["INCR", &keys[*k]]))),
                        Op::Get(k) => Ret::Val(bulk_ints(&conn.cmd(&["GET", &keys[*k]]))[0]),
                        Op::Set(k, v) => {
                            assert_eq!(conn.cmd(&["SET", &keys[*k], &v.to_string()]), b"+OK\r\n");
                            Ret::Ok
                        }
                        Op::Mset(pairs) => {
                            let mut args = vec!["MSET".to_string()];
                            for (k, v) in pairs {
                                args.push(keys[*k].clone());
                                args.push(v.to_string());
                            }
                            let args: Vec<&str> = args.iter().map(String::as_str).collect();
                            assert_eq!(conn.cmd(&args), b"+OK\r\n");
                            Ret::Ok
                        }
                        Op::Mget => {
                            let mut args = vec!["MGET"];
                            args.extend(keys.iter().map(String::as_str));
                            Ret::Vals(bulk_ints(&conn.cmd(&args)))
                        }
                    };
                    let done = epoch.elapsed().as_nanos();
                    events.push(Event {
                        op,
                        ret,
                        call,
                        done,
                    });
                }
                events
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("client"))
        .collect()
}

/// The checker itself rejects a history that no order explains.
#[test]
fn checker_rejects_a_stale_read() {
    let ev = |op, ret, call, done| Event {
        op,
        ret,
        call,
        done,
    };
    // SET finished before GET began, yet GET saw nothing.
    let bad = vec![
        ev(Op::Set(0, 5), Ret::Ok, 0, 10),
        ev(Op::Get(0), Ret::Val(None), 20, 30),
    ];
    assert!(!linearizable(&bad));
    // Overlapping, either order is fine.
    let ok = vec![
        ev(Op::Set(0, 5), Ret::Ok, 0, 30),
        ev(Op::Get(0), Ret::Val(None), 10, 20),
    ];
    assert!(linearizable(&ok));
    // A torn MGET (one key from before an MSET, one from after) is caught.
    let torn = vec![
        ev(Op::Mset(vec![(0, 1), (1, 1), (2, 1)]), Ret::Ok, 0, 10),
        ev(Op::Mset(vec![(0, 2), (1, 2), (2, 2)]), Ret::Ok, 20, 60),
        ev(Op::Mget, Ret::Vals(vec![Some(2), Some(1), Some(1)]), 30, 50),
    ];
    assert!(!linearizable(&torn));
}
