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
//! where its connection lives, as a transaction on copies gathered from the owners. When it
//! finds nothing, each owner keeps a *watcher* for the connection on its keys (registered in the
//! same locked step that copies them, so no write can slip in between). A watcher queues with
//! the parked waiters of its keys, in arrival order: when its turn comes after a write it is
//! woken to gather and run again, and the waiters behind it wait until that run's transaction
//! has released the key here (or the connection stopped watching). Watchers of one connection
//! on one shard are replaced by each new registration and dropped when the command ends.

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

/// A connection (origin shard, slab index, generation), as a map key.
type ConnRef = (usize, u32, u32);

/// A key in a database.
pub type DbKey = (usize, Key);

fn conn_ref(origin: usize, conn: Token) -> ConnRef {
    (origin, conn.index, conn.generation)
}

/// A shard's blocked commands.
#[derive(Default)]
pub struct BlockTable {
    next_id: u64,
    waiters: HashMap<u64, Waiter>,
    /// The parked waiters and the watchers of each key, in arrival order (one id space).
    by_key: HashMap<(usize, Key), VecDeque<u64>>,
    by_conn: HashMap<ConnRef, u64>,
    deadlines: BTreeSet<(u64, u64)>,
    watchers: HashMap<u64, Watcher>,
    /// Each watching connection's watcher id and keys here.
    watched: HashMap<ConnRef, (u64, Vec<(usize, Key)>)>,
    /// Keys whose queue stopped at a woken watcher: they go on once that connection's next
    /// transaction step here has released its locks (or it stops watching). With each, the
    /// bound of the write that woke it (see `resumed`).
    awaiting: HashMap<ConnRef, Vec<(DbKey, u64)>>,
    /// Keys whose queue goes on after a watcher's turn, for the same write: only the waiters
    /// and watchers with ids below the bound (there when the write was seen) get a turn. The
    /// watcher that ran and found nothing watches again with a new id, so it is not woken
    /// again for the same write (nor is anyone else that already had a turn for it).
    resumed: Vec<(DbKey, u64)>,
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

    /// Makes `w` watch `keys` here, replacing whatever its connection watched before. It takes
    /// its place in each key's queue like a parked waiter.
    pub fn watch(&mut self, w: Watcher, keys: Vec<(usize, Key)>, waited: &mut Waited) {
        self.unwatch(w.origin, w.conn, waited);
        let id = self.next_id;
        self.next_id += 1;
        for key in &keys {
            self.by_key.entry(key.clone()).or_default().push_back(id);
            bump(waited, key, true);
        }
        self.watchers.insert(id, w);
        self.watched.insert(conn_ref(w.origin, w.conn), (id, keys));
    }

    /// Drops every watcher of a connection here.
    pub fn unwatch(&mut self, origin: usize, conn: Token, waited: &mut Waited) {
        let Some((id, keys)) = self.watched.remove(&conn_ref(origin, conn)) else {
            return;
        };
        self.watchers.remove(&id);
        for key in keys {
            if let Some(q) = self.by_key.get_mut(&key) {
                q.retain(|&x| x != id);
                if q.is_empty() {
                    self.by_key.remove(&key);
                }
            }
            bump(waited, &key, false);
        }
    }

    /// If `id` (met in the queue of `key`, which was written) is a watcher: drops all its
    /// connection's watchers here, notes that `key`'s queue waits for that connection (to go
    /// on for the write with this `bound`), and returns it to be woken.
    pub fn wake_watcher(
        &mut self,
        id: u64,
        key: &(usize, Key),
        bound: u64,
        waited: &mut Waited,
    ) -> Option<Watcher> {
        let w = *self.watchers.get(&id)?;
        self.unwatch(w.origin, w.conn, waited);
        self.awaiting
            .entry(conn_ref(w.origin, w.conn))
            .or_default()
            .push((key.clone(), bound));
        Some(w)
    }

    /// The keys whose queue waited for this connection (it has had its turn) go on, for the
    /// next look at ready keys.
    pub fn resume_awaiting(&mut self, origin: usize, conn: Token) {
        if self.awaiting.is_empty() {
            return;
        }
        let keys = self
            .awaiting
            .remove(&conn_ref(origin, conn))
            .unwrap_or_default();
        self.resumed.extend(keys);
    }

    /// The keys to look at again after watchers' turns, each with its write's bound.
    pub fn take_resumed(&mut self) -> Vec<(DbKey, u64)> {
        std::mem::take(&mut self.resumed)
    }

    /// The bound of a write seen now: every waiter and watcher there now has a smaller id.
    pub fn bound_now(&self) -> u64 {
        self.next_id
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
        self.by_conn.insert(conn_ref(w.origin, w.conn), id);
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
        self.by_conn.remove(&conn_ref(w.origin, w.conn));
        Some(w)
    }

    /// The waiter of a connection, if it is blocked here.
    pub fn of_conn(&self, origin: usize, conn: Token) -> Option<u64> {
        self.by_conn.get(&conn_ref(origin, conn)).copied()
    }

    /// Whether waiter `id` may be served from a key now holding a value of type `found`
    /// (`None`: no value; the re-run then finds nothing, as it should).
    pub fn wants(&self, id: u64, found: Option<&str>) -> bool {
        match (self.waiters.get(&id).and_then(|w| w.pops), found) {
            (Some(wanted), Some(found)) => wanted == found,
            _ => true,
        }
    }

    /// Whether waiter `id` runs again when its key is deleted: a parked stream reader (its
    /// command decides what a deletion means) or a watcher (its command runs again on fresh
    /// copies and decides the same), not a parked pop.
    pub fn sees_deletion(&self, id: u64) -> bool {
        match self.waiters.get(&id) {
            Some(w) => w.pops.is_none(),
            None => self.watchers.contains_key(&id),
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

    /// Every parked waiter: its id, database and first key (cluster mode checks that its
    /// slot is still served here; see `crate::cluster::route::redirect_blocked`).
    pub fn first_keys(&self) -> Vec<(u64, usize, Key)> {
        self.waiters
            .iter()
            .filter_map(|(id, w)| w.keys.first().map(|k| (*id, w.db, k.clone())))
            .collect()
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
    fn watchers_queue_with_waiters_and_leave_nothing_behind() {
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
        // Re-registering replaces (and goes to the back): the connection no longer watches x.
        let a2 = Watcher { seq: 4, ..a };
        t.watch(a2, vec![key("y")], &mut waited);
        assert_eq!(waited.get(&key("x")), None);
        assert_eq!(t.watching(), 2);
        // The queue of y holds b, then a2.
        let q = t.queue(0, &key("y").1);
        assert_eq!(q.len(), 2);
        let bound = t.bound_now();
        assert_eq!(t.wake_watcher(q[0], &key("y"), bound, &mut waited), Some(b));
        assert_eq!(t.wake_watcher(q[0], &key("y"), bound, &mut waited), None);
        assert_eq!(t.watching(), 1);
        // y's queue waits for b's connection, once; it goes on for the same write.
        t.resume_awaiting(0, conn(8));
        assert_eq!(t.take_resumed(), vec![(key("y"), bound)]);
        t.resume_awaiting(0, conn(8));
        assert!(t.take_resumed().is_empty());
        t.unwatch(1, conn(7), &mut waited);
        t.unwatch(1, conn(7), &mut waited);
        assert!(waited.is_empty() && t.watching() == 0);
        assert!(t.queue(0, &key("y").1).is_empty());
    }
}
