//! Blocked clients (BLPOP, BLMOVE, BLMPOP, … and later BZPOPMIN, XREAD BLOCK): the owning shard
//! keeps a waiter per blocked command, queued per key in arrival order. Whenever a write touches
//! a waited-on key (the engine lists it in `Shard::ready`), the waiters of that key re-run their
//! command in order until one finds nothing to serve; each one served is answered, on whatever
//! shard its connection lives. Deadlines are kept here too, so the shard that pops is the shard
//! that decides a timeout, and no element is ever popped for a client that timed out.
//!
//! A blocked client never blocks its shard: the shard keeps serving everyone else.
//!
//! A blocking command whose keys live on several shards cannot park on any one of them: it runs
//! where its connection lives, on copies gathered from the owners. When it finds nothing, each
//! owner keeps a *watcher* for the connection on its keys (registered in the same message that
//! exports them, so no write can slip in between); the first write to a watched key wakes the
//! connection, which gathers and runs the command again. Watchers of one connection on one
//! shard are replaced by each new registration and dropped when the command ends.

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
    /// Watchers (origin shard, connection, sequence number) per key, in arrival order.
    watchers: HashMap<(usize, Key), Vec<Watcher>>,
    /// The keys each connection watches here.
    watched: HashMap<(usize, u32, u32), Vec<(usize, Key)>>,
}

/// A connection (on shard `origin`) waiting for a write to a key here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watcher {
    pub origin: usize,
    pub conn: Token,
    pub seq: u32,
}

fn bump(waited: &mut Waited, key: &(usize, Key), up: bool) {
    if up {
        *waited.entry(key.clone()).or_default() += 1;
    } else if let Some(n) = waited.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            waited.remove(key);
        }
    }
}

impl BlockTable {
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Makes `w` watch `keys` here, replacing whatever its connection watched before.
    pub fn watch(&mut self, w: Watcher, keys: Vec<(usize, Key)>, waited: &mut Waited) {
        self.unwatch(w.origin, w.conn, waited);
        for key in &keys {
            self.watchers.entry(key.clone()).or_default().push(w);
            bump(waited, key, true);
        }
        self.watched
            .insert((w.origin, w.conn.index, w.conn.generation), keys);
    }

    /// Drops every watcher of a connection here.
    pub fn unwatch(&mut self, origin: usize, conn: Token, waited: &mut Waited) {
        let Some(keys) = self.watched.remove(&(origin, conn.index, conn.generation)) else {
            return;
        };
        for key in keys {
            if let Some(list) = self.watchers.get_mut(&key) {
                list.retain(|x| !(x.origin == origin && x.conn == conn));
                if list.is_empty() {
                    self.watchers.remove(&key);
                }
            }
            bump(waited, &key, false);
        }
    }

    /// Takes the watchers of a key that was written (each connection's other watchers here go
    /// too: one wake is enough).
    pub fn take_watchers(&mut self, db: usize, key: &Key, waited: &mut Waited) -> Vec<Watcher> {
        let Some(list) = self.watchers.get(&(db, key.clone())).cloned() else {
            return Vec::new();
        };
        for w in &list {
            self.unwatch(w.origin, w.conn, waited);
        }
        list
    }

    /// Number of watching connections.
    #[cfg(test)]
    pub fn watching(&self) -> usize {
        self.watched.len()
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
            bump(waited, &key, false);
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

/// The reply of a blocking command that may not block (inside MULTI) and finds nothing: the
/// commands that move one element answer a null bulk, the others a null array.
pub fn cannot_block_reply(name: &str, proto: Proto) -> Vec<u8> {
    let mut out = Vec::new();
    let mut r = shards::resp::Reply::new(&mut out, proto);
    if matches!(name, "blmove" | "brpoplpush") {
        r.null();
    } else {
        r.null_array();
    }
    out
}

/// The reply of CLIENT UNBLOCK … ERROR.
pub fn unblocked_error() -> Vec<u8> {
    b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n".to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(index: u32) -> Token {
        Token {
            index,
            generation: 1,
        }
    }

    fn key(k: &str) -> (usize, Key) {
        (0, Key::from(k.as_bytes()))
    }

    #[test]
    fn watchers_wake_once_and_leave_nothing_behind() {
        let mut t = BlockTable::default();
        let mut waited = Waited::default();
        let a = Watcher {
            origin: 1,
            conn: conn(7),
            seq: 3,
        };
        let b = Watcher {
            origin: 0,
            conn: conn(8),
            seq: 9,
        };
        t.watch(a, vec![key("x"), key("y")], &mut waited);
        t.watch(b, vec![key("y")], &mut waited);
        assert_eq!(waited.get(&key("y")), Some(&2));
        // Re-registering replaces: the connection no longer watches x.
        let a2 = Watcher { seq: 4, ..a };
        t.watch(a2, vec![key("y")], &mut waited);
        assert_eq!(waited.get(&key("x")), None);
        assert_eq!(t.watching(), 2);
        // A write to y wakes both, in arrival order, and drops all their watchers here.
        assert_eq!(t.take_watchers(0, &key("y").1, &mut waited), vec![b, a2]);
        assert!(waited.is_empty());
        assert_eq!(t.watching(), 0);
        assert!(t.take_watchers(0, &key("y").1, &mut waited).is_empty());
        // Unwatch of a connection that watches nothing is harmless.
        t.watch(a, vec![key("z")], &mut waited);
        t.unwatch(1, conn(7), &mut waited);
        t.unwatch(1, conn(7), &mut waited);
        assert!(waited.is_empty() && t.watching() == 0);
    }
}
