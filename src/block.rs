//! Blocked clients (BLPOP, BLMOVE, BLMPOP, … and later BZPOPMIN, XREAD BLOCK): the owning shard
//! keeps a waiter per blocked command, queued per key in arrival order. Whenever a write touches
//! a waited-on key (the engine lists it in `Shard::ready`), the waiters of that key re-run their
//! command in order until one finds nothing to serve; each one served is answered, on whatever
//! shard its connection lives. Deadlines are kept here too, so the shard that pops is the shard
//! that decides a timeout, and no element is ever popped for a client that timed out.
//!
//! A blocked client never blocks its shard: the shard keeps serving everyone else.

use crate::msg::Token;
use shards::keyspace::Key;
use shards::resp::Proto;
use shards::shard::Waited;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// One blocked command.
pub struct Waiter {
    /// The shard whose connection is blocked.
    pub origin: usize,
    pub conn: Token,
    pub seq: u32,
    pub db: usize,
    pub proto: Proto,
    /// The command, RESP-encoded, re-run when a key is ready.
    pub frame: Vec<u8>,
    pub keys: Vec<Key>,
    pub deadline_ms: Option<u64>,
    /// The type of value the command pops (TYPE's name: "list", "zset"). As in Redis, a key
    /// written with a value of another type does not wake the waiter.
    pub pops: Option<&'static str>,
}

/// How a waiter leaves other than by being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unblock {
    /// Its connection went away: no reply.
    Drop,
    /// Timed out (or CLIENT UNBLOCK … TIMEOUT): the null reply.
    Timeout,
    /// CLIENT UNBLOCK … ERROR.
    Error,
}

/// A shard's blocked commands.
#[derive(Default)]
pub struct BlockTable {
    next_id: u64,
    waiters: HashMap<u64, Waiter>,
    by_key: HashMap<(usize, Key), VecDeque<u64>>,
    by_conn: HashMap<(usize, u32, u32), u64>,
    deadlines: BTreeSet<(u64, u64)>,
}

impl BlockTable {
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Parks a waiter; `waited` is the engine's per-key waiter count.
    pub fn add(&mut self, w: Waiter, waited: &mut Waited) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        for k in &w.keys {
            let key = (w.db, k.clone());
            let q = self.by_key.entry(key.clone()).or_default();
            if !q.contains(&id) {
                q.push_back(id);
                *waited.entry(key).or_default() += 1;
            }
        }
        if let Some(d) = w.deadline_ms {
            self.deadlines.insert((d, id));
        }
        self.by_conn
            .insert((w.origin, w.conn.index, w.conn.generation), id);
        self.waiters.insert(id, w);
        id
    }

    /// Removes a waiter.
    pub fn remove(&mut self, id: u64, waited: &mut Waited) -> Option<Waiter> {
        let w = self.waiters.remove(&id)?;
        for k in &w.keys {
            let key = (w.db, k.clone());
            if let Some(q) = self.by_key.get_mut(&key) {
                q.retain(|&x| x != id);
                if q.is_empty() {
                    self.by_key.remove(&key);
                }
            }
            if let Some(n) = waited.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    waited.remove(&key);
                }
            }
        }
        if let Some(d) = w.deadline_ms {
            self.deadlines.remove(&(d, id));
        }
        self.by_conn
            .remove(&(w.origin, w.conn.index, w.conn.generation));
        Some(w)
    }

    /// The waiter of a connection, if it is blocked here.
    pub fn of_conn(&self, origin: usize, conn: Token) -> Option<u64> {
        self.by_conn
            .get(&(origin, conn.index, conn.generation))
            .copied()
    }

    /// Whether waiter `id` may be served from a key now holding a value of type `found`
    /// (`None`: no value; the re-run then finds nothing, as it should).
    pub fn wants(&self, id: u64, found: Option<&str>) -> bool {
        match (self.waiters.get(&id).and_then(|w| w.pops), found) {
            (Some(wanted), Some(found)) => wanted == found,
            _ => true,
        }
    }

    /// The waiters of a key, in arrival order.
    pub fn queue(&self, db: usize, key: &Key) -> Vec<u64> {
        self.by_key
            .get(&(db, key.clone()))
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn get(&self, id: u64) -> Option<&Waiter> {
        self.waiters.get(&id)
    }

    /// Waiters whose deadline has passed.
    pub fn expired(&self, now_ms: u64) -> Vec<u64> {
        self.deadlines
            .iter()
            .take_while(|(d, _)| *d <= now_ms)
            .map(|(_, id)| *id)
            .collect()
    }
}

/// The reply a timed-out blocking command gets: Redis answers every kind with a null array.
pub fn timeout_reply(proto: Proto) -> Vec<u8> {
    let mut out = Vec::new();
    shards::resp::Reply::new(&mut out, proto).null_array();
    out
}

/// The reply of CLIENT UNBLOCK … ERROR.
pub fn unblocked_error() -> Vec<u8> {
    b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n".to_vec()
}
