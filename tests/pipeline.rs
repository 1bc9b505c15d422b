//! Pipelining over raw sockets: long pipelines of mixed commands over keys of both shards,
//! written in one go, must answer in exactly the order sent with exactly the values a simple
//! model predicts; concurrent pipelining clients each see their own ordered replies; a client
//! that vanishes mid-pipeline disturbs no one; a 10 MB value written in ragged pieces
//! round-trips.
//!
//! Known server bug: under CPU load, now and then every pipelining client stops getting replies
//! (one shard stays parked in io_uring while the other spins, until some other event wakes
//! it). It shows here as a reply read timing out after `REPLY_TIMEOUT` with nothing
//! buffered, mostly in the concurrent and the mid-pipeline-disconnect tests.

mod common;

use common::{encode, escape, shard_of, use_redis_for_shardis, RawConn, Server};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::HashMap;
use std::io::Write;
use std::thread;

/// Sends `payload` from a second thread while this one reads, so that neither side can stall
/// on a full socket buffer, and returns `n` replies.
fn pipeline(conn: &mut RawConn, payload: Vec<u8>, n: usize) -> Vec<Vec<u8>> {
    let mut writer = conn.stream().try_clone().unwrap();
    let handle = thread::spawn(move || writer.write_all(&payload));
    let replies = conn.read_replies(n);
    handle.join().unwrap().unwrap();
    replies
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

const NULL: &[u8] = b"$-1\r\n";

/// The keyspace a pipeline works on, and the replies it predicts.
struct Model {
    prefix: String,
    data: HashMap<String, Vec<u8>>,
    rng: StdRng,
}

/// How many plain keys and counters one model uses; small, so commands hit existing keys.
const KEYS: usize = 150;
const COUNTERS: usize = 16;

impl Model {
    fn new(prefix: &str, seed: u64) -> Model {
        Model {
            prefix: prefix.to_string(),
            data: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn key(&mut self) -> String {
        format!("{}:k{}", self.prefix, self.rng.gen_range(0..KEYS))
    }

    fn counter(&mut self) -> String {
        format!("{}:c{}", self.prefix, self.rng.gen_range(0..COUNTERS))
    }

    fn any_key(&mut self) -> String {
        if self.rng.gen_bool(0.7) {
            self.key()
        } else {
            self.counter()
        }
    }

    /// One random command: its encoding and the reply the model predicts, applied.
    fn step(&mut self) -> (Vec<u8>, Vec<u8>) {
        match self.rng.gen_range(0..100) {
            0..=29 => {
                let k = self.key();
                let len = self.rng.gen_range(0..40);
                let v: Vec<u8> = (0..len).map(|_| self.rng.gen()).collect();
                let cmd = encode(&[&b"SET"[..], k.as_bytes(), &v]);
                self.data.insert(k, v);
                (cmd, b"+OK\r\n".to_vec())
            }
            30..=49 => {
                let k = self.counter();
                let n = match self.data.get(&k) {
                    Some(v) => std::str::from_utf8(v).unwrap().parse::<i64>().unwrap() + 1,
                    None => 1,
                };
                self.data.insert(k.clone(), n.to_string().into_bytes());
                (encode(&["INCR", &k]), int(n))
            }
            50..=74 => {
                let k = self.any_key();
                let reply = self.data.get(&k).map_or(NULL.to_vec(), |v| bulk(v));
                (encode(&["GET", &k]), reply)
            }
            75..=84 => {
                let n = self.rng.gen_range(1..=4);
                let keys: Vec<String> = (0..n).map(|_| self.any_key()).collect();
                let mut deleted = 0;
                for k in &keys {
                    if self.data.remove(k).is_some() {
                        deleted += 1;
                    }
                }
                let mut args = vec!["DEL"];
                args.extend(keys.iter().map(String::as_str));
                (encode(&args), int(deleted))
            }
            _ => {
                let n = self.rng.gen_range(2..=8);
                let keys: Vec<String> = (0..n).map(|_| self.any_key()).collect();
                let mut reply = format!("*{n}\r\n").into_bytes();
                for k in &keys {
                    reply.extend(self.data.get(k).map_or(NULL.to_vec(), |v| bulk(v)));
                }
                let mut args = vec!["MGET"];
                args.extend(keys.iter().map(String::as_str));
                (encode(&args), reply)
            }
        }
    }

    /// `n` commands as one payload and their predicted replies.
    fn pipeline(&mut self, n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut payload = Vec::new();
        let mut want = Vec::with_capacity(n);
        for _ in 0..n {
            let (cmd, reply) = self.step();
            payload.extend(cmd);
            want.push(reply);
        }
        (payload, want)
    }

    /// Checks the server holds exactly the model's keys and values.
    fn check_state(&self, conn: &mut RawConn) {
        let names: Vec<String> = (0..KEYS)
            .map(|i| format!("{}:k{i}", self.prefix))
            .chain((0..COUNTERS).map(|i| format!("{}:c{i}", self.prefix)))
            .collect();
        let mut args = vec!["MGET"];
        args.extend(names.iter().map(String::as_str));
        let mut want = format!("*{}\r\n", names.len()).into_bytes();
        for k in &names {
            want.extend(self.data.get(k).map_or(NULL.to_vec(), |v| bulk(v)));
        }
        let got = conn.cmd(&args);
        assert!(got == want, "{} state differs from the model", self.prefix);
    }
}

/// Asserts replies equal predictions one by one, naming the first difference.
fn assert_replies(who: &str, got: &[Vec<u8>], want: &[Vec<u8>]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w,
            "{who}: reply {i} is {} but the model says {}",
            escape(g),
            escape(w)
        );
    }
}

/// Against shardis, asserts every shard holds some keys (so the work crossed shards).
fn assert_both_shards_have_keys(conn: &mut RawConn) {
    if use_redis_for_shardis() {
        return;
    }
    let info = String::from_utf8_lossy(&conn.cmd(&["INFO", "shards"])).into_owned();
    let per_shard: Vec<&str> = info.lines().filter(|l| l.starts_with("shard")).collect();
    assert_eq!(per_shard.len(), 2, "{info}");
    for l in per_shard {
        assert!(!l.contains("keys=0,"), "a shard holds no keys: {info}");
    }
}

#[test]
fn five_thousand_mixed_commands_in_one_write_answer_in_order() {
    let server = Server::start(&[]);
    let mut conn = server.raw();
    let mut model = Model::new("p", 1);
    let (payload, want) = model.pipeline(5000);
    let got = pipeline(&mut conn, payload, want.len());
    assert_replies("pipeline", &got, &want);
    model.check_state(&mut conn);
    assert_both_shards_have_keys(&mut conn);
    // Another connection sees the same state.
    model.check_state(&mut server.raw());
}

#[test]
fn concurrent_pipelining_clients_each_see_their_own_ordered_replies() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            thread::spawn(move || {
                let mut conn = RawConn::connect(addr);
                let mut model = Model::new(&format!("t{t}"), 100 + t);
                // Two pipelines of 1000, the second sent only after the first is answered.
                for round in 0..2 {
                    let (payload, want) = model.pipeline(1000);
                    let got = pipeline(&mut conn, payload, want.len());
                    assert_replies(&format!("client {t} round {round}"), &got, &want);
                }
                model
            })
        })
        .collect();
    let models: Vec<Model> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut conn = server.raw();
    for m in &models {
        m.check_state(&mut conn);
    }
    assert_both_shards_have_keys(&mut conn);
}

#[test]
fn a_client_leaving_mid_pipeline_disturbs_no_one() {
    let server = Server::start(&[]);
    let addr = server.addr();
    // A well-behaved client pipelines while the others misbehave.
    let good = thread::spawn(move || {
        let mut conn = RawConn::connect(addr);
        let mut model = Model::new("good", 7);
        for round in 0..2 {
            let (payload, want) = model.pipeline(1000);
            let got = pipeline(&mut conn, payload, want.len());
            assert_replies(&format!("good client round {round}"), &got, &want);
        }
        model
    });
    // One writes half a long pipeline, cut inside a command, and hangs up unread.
    const SENT: usize = 8_000;
    let mut quitter_payload = Vec::new();
    for i in 0..SENT {
        quitter_payload.extend(encode(&["SET", &format!("q:k{i}"), &i.to_string()]));
        quitter_payload.extend(encode(&["INCR", "q:count"]));
    }
    let cut = quitter_payload.len() / 2 + 3;
    let mut quitter = RawConn::connect(addr);
    quitter.send(&quitter_payload[..cut]);
    drop(quitter);
    // Another reads only a few replies of a long pipeline, then hangs up.
    let mut reader = RawConn::connect(addr);
    let mut model = Model::new("reader", 9);
    let (payload, _) = model.pipeline(5_000);
    let mut w = reader.stream().try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&payload);
    });
    let _ = reader.read_replies(10);
    let _ = reader.stream().shutdown(std::net::Shutdown::Both);
    drop(reader);
    let _ = writer.join();

    let good_model = good.join().unwrap();
    let mut conn = server.raw();
    good_model.check_state(&mut conn);
    for _ in 0..6 {
        let mut c = server.raw();
        assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
    }
    // What the quitter managed to do is a prefix of what it sent.
    let count: i64 = match conn.cmd(&["GET", "q:count"]).as_slice() {
        b"$-1\r\n" => 0,
        r => String::from_utf8_lossy(r)
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap(),
    };
    assert!(count as usize <= SENT / 2, "q:count is {count}");
    let names: Vec<String> = (0..SENT / 2 + 1).map(|i| format!("q:k{i}")).collect();
    let mut args = vec!["MGET"];
    args.extend(names.iter().map(String::as_str));
    let got = conn.cmd(&args);
    let (_, values) = common::split_aggregate(&got);
    let present = values.iter().take_while(|v| v.as_slice() != NULL).count();
    for (i, v) in values.iter().enumerate() {
        if i < present {
            assert_eq!(v, &bulk(i.to_string().as_bytes()), "q:k{i}");
        } else {
            assert_eq!(v, NULL, "q:k{i} is set but q:k{} is not", present);
        }
    }
    let count = count as usize;
    assert!(
        count == present || count + 1 == present,
        "q:count {count} does not match {present} keys set"
    );
}

#[test]
fn ten_megabyte_value_in_ragged_writes_round_trips() {
    let server = Server::start(&[]);
    let mut rng = StdRng::seed_from_u64(42);
    // Random bytes, cheaply: a random 64 KiB block repeated, each copy marked with its number.
    let mut block = vec![0u8; 64 * 1024];
    rng.fill_bytes(&mut block);
    let mut value = Vec::with_capacity(10 << 20);
    for n in 0..160u64 {
        value.extend_from_slice(&n.to_be_bytes());
        value.extend_from_slice(&block[8..]);
    }
    // One key per shard: for one of them the value crosses to the other shard.
    let keys: Vec<String> = (0..2)
        .map(|s| {
            (0..)
                .map(|i| format!("big:{i}"))
                .find(|k| shard_of(k.as_bytes(), 2) == s)
                .unwrap()
        })
        .collect();
    let mut conn = server.raw();
    for k in &keys {
        let request = encode(&[&b"SET"[..], k.as_bytes(), &value]);
        let mut pos = 0;
        let mut writes = 0;
        while pos < request.len() {
            let n = rng.gen_range(1..=64 * 1024).min(request.len() - pos);
            conn.send(&request[pos..pos + n]);
            pos += n;
            writes += 1;
        }
        assert!(writes > 100, "only {writes} writes");
        assert_eq!(conn.read_reply(), b"+OK\r\n", "SET {k}");
        assert_eq!(
            conn.cmd(&["STRLEN", k]),
            format!(":{}\r\n", value.len()).into_bytes()
        );
        let got = conn.cmd(&["GET", k]);
        assert!(got == bulk(&value), "GET {k}: {} bytes back", got.len());
    }
    // Both in one reply, and the connection still works for small commands.
    let got = conn.cmd(&["MGET", &keys[0], &keys[1]]);
    let mut want = b"*2\r\n".to_vec();
    want.extend(bulk(&value));
    want.extend(bulk(&value));
    assert!(got == want, "MGET of both values differs");
    assert_eq!(conn.cmd(&["PING"]), b"+PONG\r\n");
}
