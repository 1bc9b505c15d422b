//! What a client sends: the command mix, the requests built from it, and — in `--verify`
//! mode — the model of the client's own keys that says which reply each request must get.
//!
//! Each command family uses its own key prefix (`key:`, `counter:`, `hash:`, `list:`, `zset:`),
//! so that an INCR never meets a string value and a GET never meets a list. With `--verify`,
//! every key also names the client (`key:<i>:c<client>`), so no other client touches it and the
//! model is exact; requests are generated in the order the server executes them (one
//! connection per node, and a key always lives on one node), so the model is updated when a
//! request is built.

use crate::keys::{KeyGen, Pattern};
use crate::resp::{encode, push_decimal, Reply};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// The hash fields a client uses: few, so HSET both adds and overwrites.
const HASH_FIELDS: u64 = 8;
/// How many elements ZRANGE asks for.
const ZRANGE_COUNT: usize = 10;
/// Publish goes to one of this many channels.
const CHANNELS: u64 = 16;
/// The most keys one MGET or MSET may name.
pub const MULTI_KEYS_MAX: usize = 1000;

/// A command the generator can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Get,
    Set,
    Incr,
    Hset,
    Hget,
    Lpush,
    Rpop,
    Zadd,
    Zrange,
    Mget(usize),
    Mset(usize),
    Publish,
}

impl Command {
    /// The name used in `--mix` and in reports (`mget:10` for an MGET of 10 keys).
    pub fn name(self) -> String {
        match self {
            Command::Get => "get".into(),
            Command::Set => "set".into(),
            Command::Incr => "incr".into(),
            Command::Hset => "hset".into(),
            Command::Hget => "hget".into(),
            Command::Lpush => "lpush".into(),
            Command::Rpop => "rpop".into(),
            Command::Zadd => "zadd".into(),
            Command::Zrange => "zrange".into(),
            Command::Mget(k) => format!("mget:{k}"),
            Command::Mset(k) => format!("mset:{k}"),
            Command::Publish => "publish".into(),
        }
    }
}

/// The command mix: commands with integer weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix(pub Vec<(Command, u32)>);

impl std::str::FromStr for Mix {
    type Err = String;
    /// `get:9,set:1`; MGET and MSET take their key count first: `mget:10:1` is an MGET of 10
    /// keys with weight 1 (`mget:1` alone means 10 keys, weight 1).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut mix = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let fields: Vec<&str> = part.split(':').collect();
            let num = |f: &str| -> Result<u32, String> {
                f.parse()
                    .map_err(|_| format!("bad number {f:?} in mix entry {part:?}"))
            };
            let (name, keys, weight) = match fields[..] {
                [name] => (name, 10, 1),
                [name, w] => (name, 10, num(w)?),
                [name, k, w] if name == "mget" || name == "mset" => (name, num(k)?, num(w)?),
                _ => return Err(format!("bad mix entry {part:?} (want name:weight)")),
            };
            if keys == 0 || keys as usize > MULTI_KEYS_MAX {
                return Err(format!("{name} takes 1 to {MULTI_KEYS_MAX} keys"));
            }
            let cmd = match name.to_ascii_lowercase().as_str() {
                "get" => Command::Get,
                "set" => Command::Set,
                "incr" => Command::Incr,
                "hset" => Command::Hset,
                "hget" => Command::Hget,
                "lpush" => Command::Lpush,
                "rpop" => Command::Rpop,
                "zadd" => Command::Zadd,
                "zrange" => Command::Zrange,
                "mget" => Command::Mget(keys as usize),
                "mset" => Command::Mset(keys as usize),
                "publish" => Command::Publish,
                other => return Err(format!("unknown command {other:?} in mix")),
            };
            if mix.iter().any(|&(c, _)| c == cmd) {
                return Err(format!("{} appears twice in the mix", cmd.name()));
            }
            mix.push((cmd, weight));
        }
        if mix.iter().all(|&(_, w)| w == 0) {
            return Err("the mix needs at least one command with a weight above 0".into());
        }
        Ok(Mix(mix))
    }
}

/// The reply a request must get (in `--verify` mode; otherwise only errors are counted).
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Ok,
    Int(i64),
    AnyInt,
    Bulk(Option<Vec<u8>>),
    Bulks(Vec<Option<Vec<u8>>>),
    /// Anything but an error.
    NoError,
}

impl Expect {
    /// Whether `reply` is what was expected.
    pub fn matches(&self, reply: &Reply) -> bool {
        match (self, reply) {
            (_, Reply::Error(_)) => false,
            (Expect::NoError, _) => true,
            (Expect::Ok, Reply::Simple(s)) => s == b"OK",
            (Expect::Int(want), Reply::Int(got)) => want == got,
            (Expect::AnyInt, Reply::Int(_)) => true,
            (Expect::Bulk(want), Reply::Bulk(got)) => want == got,
            (Expect::Bulks(want), Reply::Array(Some(items))) => {
                want.len() == items.len()
                    && want
                        .iter()
                        .zip(items)
                        .all(|(w, got)| matches!(got, Reply::Bulk(g) if g == w))
            }
            _ => false,
        }
    }
}

/// One request: its encoded bytes, the key that routes it and the reply it must get.
pub struct Request {
    /// Index of its command in the mix.
    pub command: usize,
    pub bytes: Vec<u8>,
    /// A key of the request (all its keys share one slot in cluster mode), or PUBLISH's channel.
    pub route_key: Vec<u8>,
    pub expect: Expect,
}

/// A request before encoding: its arguments, its routing key and the reply it must get.
type Built = (Vec<Vec<u8>>, Vec<u8>, Expect);

/// Options shared by every client's generator.
pub struct Settings {
    pub mix: Mix,
    pub pattern: Pattern,
    pub data_size: (usize, usize),
    pub verify: bool,
    /// MGET/MSET keys share a hashtag, so each request stays within one slot.
    pub cluster: bool,
}

/// One client's request generator and, with `--verify`, the model of its keys (without it
/// the model stays empty: clients share keys, and memory must not grow with the key space).
pub struct Generator {
    client: usize,
    keys: KeyGen,
    rng: StdRng,
    weight_total: u32,
    seq: u64,
    strings: HashMap<u64, Vec<u8>>,
    counters: HashMap<u64, i64>,
    hashes: HashMap<(u64, u64), Vec<u8>>,
    lists: HashMap<u64, VecDeque<Vec<u8>>>,
    /// Members of each sorted set; member `m<n>` has score `n`, so ZRANGE's order is `n`'s.
    zsets: HashMap<u64, BTreeSet<u64>>,
}

impl Generator {
    pub fn new(settings: &Settings, client: usize, keys: KeyGen, rng: StdRng) -> Generator {
        Generator {
            client,
            keys,
            rng,
            weight_total: settings.mix.0.iter().map(|&(_, w)| w).sum(),
            seq: 0,
            strings: HashMap::new(),
            counters: HashMap::new(),
            hashes: HashMap::new(),
            lists: HashMap::new(),
            zsets: HashMap::new(),
        }
    }

    /// The key named `prefix:<index>`, with the client's id in `--verify` mode.
    fn key(&self, s: &Settings, prefix: &str, index: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(prefix.len() + 24);
        key.extend_from_slice(prefix.as_bytes());
        key.push(b':');
        push_decimal(&mut key, index);
        if s.verify {
            key.extend_from_slice(b":c");
            push_decimal(&mut key, self.client as u64);
        }
        key
    }

    /// A value this client can recognise: `<client>:<sequence>:` padded with `x` to a size
    /// drawn from `--data-size`.
    fn value(&mut self, s: &Settings) -> Vec<u8> {
        self.seq += 1;
        let (lo, hi) = s.data_size;
        let size = if lo == hi {
            lo
        } else {
            self.rng.gen_range(lo..=hi)
        };
        let mut v = Vec::with_capacity(size.max(24));
        push_decimal(&mut v, self.client as u64);
        v.push(b':');
        push_decimal(&mut v, self.seq);
        v.push(b':');
        v.resize(size.max(v.len()), b'x');
        v
    }

    /// The next request, chosen by the mix.
    pub fn next(&mut self, s: &Settings) -> Request {
        let mut pick = self.rng.gen_range(0..self.weight_total);
        let mut command = 0;
        for (i, &(_, w)) in s.mix.0.iter().enumerate() {
            if pick < w {
                command = i;
                break;
            }
            pick -= w;
        }
        let cmd = s.mix.0[command].0;
        let index = self.keys.next(&s.pattern, &mut self.rng);
        let (args, route_key, expect) = self.build(s, cmd, index);
        let mut bytes = Vec::with_capacity(args.iter().map(|a| a.len() + 16).sum::<usize>() + 16);
        encode(&args, &mut bytes);
        Request {
            command,
            bytes,
            route_key,
            expect: if s.verify { expect } else { Expect::NoError },
        }
    }

    /// The arguments, routing key and expected reply of `cmd` on key index `i`.
    fn build(&mut self, s: &Settings, cmd: Command, i: u64) -> Built {
        let b = |x: &str| x.as_bytes().to_vec();
        match cmd {
            Command::Get => {
                let key = self.key(s, "key", i);
                let want = self.strings.get(&i).cloned();
                (vec![b("GET"), key.clone()], key, Expect::Bulk(want))
            }
            Command::Set => {
                let key = self.key(s, "key", i);
                let value = self.value(s);
                if s.verify {
                    self.strings.insert(i, value.clone());
                }
                (vec![b("SET"), key.clone(), value], key, Expect::Ok)
            }
            Command::Incr => {
                let key = self.key(s, "counter", i);
                let want = if s.verify {
                    let n = self.counters.entry(i).or_insert(0);
                    *n += 1;
                    Expect::Int(*n)
                } else {
                    Expect::NoError
                };
                (vec![b("INCR"), key.clone()], key, want)
            }
            Command::Hset | Command::Hget => self.build_hash(s, cmd, i),
            Command::Lpush | Command::Rpop => self.build_list(s, cmd, i),
            Command::Zadd | Command::Zrange => self.build_zset(s, cmd, i),
            Command::Mget(k) | Command::Mset(k) => self.build_multi(s, cmd, i, k),
            Command::Publish => {
                // The channel routes it: any node accepts PUBLISH, and this spreads them.
                let channel = format!("channel:{}", i % CHANNELS).into_bytes();
                let value = self.value(s);
                let args = vec![b("PUBLISH"), channel.clone(), value];
                (args, channel, Expect::AnyInt)
            }
        }
    }

    /// HSET or HGET of one of `HASH_FIELDS` fields of hash `i`.
    fn build_hash(&mut self, s: &Settings, cmd: Command, i: u64) -> Built {
        let b = |x: &str| x.as_bytes().to_vec();
        let key = self.key(s, "hash", i);
        let field = self.rng.gen_range(0..HASH_FIELDS);
        let fname = format!("f{field}").into_bytes();
        if cmd == Command::Hget {
            let want = self.hashes.get(&(i, field)).cloned();
            return (vec![b("HGET"), key.clone(), fname], key, Expect::Bulk(want));
        }
        let value = self.value(s);
        let added = s.verify && self.hashes.insert((i, field), value.clone()).is_none();
        let args = vec![b("HSET"), key.clone(), fname, value];
        (args, key, Expect::Int(added as i64))
    }

    /// LPUSH or RPOP on list `i`: a queue, so RPOP returns the oldest push.
    fn build_list(&mut self, s: &Settings, cmd: Command, i: u64) -> Built {
        let b = |x: &str| x.as_bytes().to_vec();
        let key = self.key(s, "list", i);
        if cmd == Command::Rpop {
            let want = self.lists.get_mut(&i).and_then(|l| l.pop_back());
            return (vec![b("RPOP"), key.clone()], key, Expect::Bulk(want));
        }
        let value = self.value(s);
        let want = if s.verify {
            let list = self.lists.entry(i).or_default();
            list.push_front(value.clone());
            Expect::Int(list.len() as i64)
        } else {
            Expect::NoError
        };
        (vec![b("LPUSH"), key.clone(), value], key, want)
    }

    /// ZADD of a member `m<n>` with score `n`, or ZRANGE of the first `ZRANGE_COUNT`.
    fn build_zset(&mut self, s: &Settings, cmd: Command, i: u64) -> Built {
        let b = |x: &str| x.as_bytes().to_vec();
        let key = self.key(s, "zset", i);
        if cmd == Command::Zrange {
            let want = self.zsets.get(&i).map_or(Vec::new(), |members| {
                let first = members.iter().take(ZRANGE_COUNT);
                first.map(|m| Some(format!("m{m}").into_bytes())).collect()
            });
            let stop = (ZRANGE_COUNT - 1).to_string().into_bytes();
            let args = vec![b("ZRANGE"), key.clone(), b("0"), stop];
            return (args, key, Expect::Bulks(want));
        }
        let member = self.rng.gen_range(0..1000u64);
        let added = s.verify && self.zsets.entry(i).or_default().insert(member);
        let args = vec![
            b("ZADD"),
            key.clone(),
            member.to_string().into_bytes(),
            format!("m{member}").into_bytes(),
        ];
        (args, key, Expect::Int(added as i64))
    }

    /// MGET or MSET of `k` string keys starting from index `first`. In cluster mode the keys
    /// are `key:{<first>}:<i>` (hashtag = the first index), so one request names one slot.
    fn build_multi(&mut self, s: &Settings, cmd: Command, first: u64, k: usize) -> Built {
        let mut indices = vec![first];
        while indices.len() < k {
            indices.push(self.keys.next(&s.pattern, &mut self.rng));
        }
        let name = |g: &Self, i: u64| -> Vec<u8> {
            if s.cluster {
                g.key(s, &format!("key:{{{first}}}"), i)
            } else {
                g.key(s, "key", i)
            }
        };
        // Multi-key strings live in their own model space in cluster mode (their names differ).
        let model_id = |i: u64| {
            if s.cluster {
                (first << 32) ^ i ^ (1 << 63)
            } else {
                i
            }
        };
        let route_key = name(self, first);
        if let Command::Mget(_) = cmd {
            let mut args = vec![b"MGET".to_vec()];
            let mut want = Vec::new();
            for &i in &indices {
                args.push(name(self, i));
                want.push(self.strings.get(&model_id(i)).cloned());
            }
            return (args, route_key, Expect::Bulks(want));
        }
        let mut args = vec![b"MSET".to_vec()];
        for &i in &indices {
            args.push(name(self, i));
            let value = self.value(s);
            if s.verify {
                self.strings.insert(model_id(i), value.clone());
            }
            args.push(value);
        }
        (args, route_key, Expect::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn settings(mix: &str) -> Settings {
        Settings {
            mix: mix.parse().unwrap(),
            pattern: Pattern::Uniform,
            data_size: (3, 3),
            verify: true,
            cluster: false,
        }
    }

    #[test]
    fn parses_mixes() {
        let mix: Mix = "get:9,set:1,mget:5:2,mset:1".parse().unwrap();
        assert_eq!(
            mix.0,
            vec![
                (Command::Get, 9),
                (Command::Set, 1),
                (Command::Mget(5), 2),
                (Command::Mset(10), 1)
            ]
        );
        assert!("get:x".parse::<Mix>().is_err());
        assert!("foo:1".parse::<Mix>().is_err());
        assert!("get:0".parse::<Mix>().is_err());
        assert!("get:1,get:2".parse::<Mix>().is_err());
    }

    #[test]
    fn get_expects_the_last_set() {
        let s = settings("get:1,set:1");
        let mut g = Generator::new(&s, 7, KeyGen::new(1, None, 0), StdRng::seed_from_u64(3));
        let mut last = None;
        for _ in 0..50 {
            let r = g.next(&s);
            assert_eq!(r.route_key, b"key:0:c7");
            match s.mix.0[r.command].0 {
                Command::Set => {
                    assert_eq!(r.expect, Expect::Ok);
                    let text = String::from_utf8_lossy(&r.bytes).to_string();
                    let value = text.split("\r\n").nth(6).unwrap().as_bytes().to_vec();
                    assert!(value.starts_with(b"7:"));
                    last = Some(value);
                }
                _ => assert_eq!(r.expect, Expect::Bulk(last.clone())),
            }
        }
    }

    #[test]
    fn cluster_multi_keys_share_a_slot() {
        let mut s = settings("mset:4:1");
        s.cluster = true;
        let mut g = Generator::new(&s, 0, KeyGen::new(100, None, 0), StdRng::seed_from_u64(3));
        let r = g.next(&s);
        let text = String::from_utf8_lossy(&r.bytes).to_string();
        let keys: Vec<&str> = text
            .split("\r\n")
            .filter(|l| l.starts_with("key:"))
            .collect();
        assert_eq!(keys.len(), 4);
        let slot = crate::keys::key_slot(keys[0].as_bytes());
        assert!(keys
            .iter()
            .all(|k| crate::keys::key_slot(k.as_bytes()) == slot));
    }
}
