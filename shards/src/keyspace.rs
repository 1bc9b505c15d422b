//! One logical database of one shard: keys, values and expiry times.
//!
//! Keys live in an insertion-ordered hash map so that a random key is an O(1) pick (RANDOMKEY,
//! active expiry sampling) and a SCAN cursor is a plain index. SCAN walks indexes downwards:
//! deleting swaps the last entry into the hole, and the last entry is always one the walk has
//! already passed, so a key present for the whole scan is returned at least once.
//!
//! Expiry is lazy (every lookup checks the deadline) plus an active cycle that samples the keys
//! with a TTL (kept in their own set) and deletes the expired ones.

use crate::limits::EXPIRE_SAMPLE;
use crate::rng::Rng;
use crate::types::Value;
use indexmap::{IndexMap, IndexSet};

type Hasher = ahash::RandomState;

/// A stored key's name (inline when short).
pub type Key = crate::types::SmallBytes;

/// A value and its expiry deadline (Unix milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: Value,
    pub expire_at_ms: Option<u64>,
}

impl Entry {
    pub fn new(value: Value) -> Entry {
        Entry {
            value,
            expire_at_ms: None,
        }
    }

    fn expired(&self, now_ms: u64) -> bool {
        matches!(self.expire_at_ms, Some(t) if t <= now_ms)
    }
}

/// A logical database (one of the 16 that SELECT chooses), as held by one shard.
#[derive(Debug, Default)]
pub struct Db {
    map: IndexMap<Key, Entry, Hasher>,
    /// The keys that have an expiry deadline.
    volatile: IndexSet<Key, Hasher>,
    /// Keys deleted because they had expired (INFO's `expired_keys`).
    pub expired_count: u64,
}

impl Db {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of keys with an expiry deadline (INFO keyspace's `expires`).
    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    /// Drops `key` if its deadline has passed. Returns whether it was dropped.
    fn expire_if_needed(&mut self, key: &[u8], now_ms: u64) -> bool {
        match self.map.get_index_of(key) {
            Some(i) => self.expire_index(i, now_ms),
            None => false,
        }
    }

    /// Drops the entry at `i` if its deadline has passed. Returns whether it was dropped.
    fn expire_index(&mut self, i: usize, now_ms: u64) -> bool {
        let expired = self
            .map
            .get_index(i)
            .is_some_and(|(_, e)| e.expired(now_ms));
        if expired {
            if let Some((k, _)) = self.map.swap_remove_index(i) {
                self.volatile.swap_remove(&k);
            }
            self.expired_count += 1;
        }
        expired
    }

    /// The index of the live entry under `key` (one hash lookup, expiring it if due).
    fn live_index(&mut self, key: &[u8], now_ms: u64) -> Option<usize> {
        let i = self.map.get_index_of(key)?;
        if self.expire_index(i, now_ms) {
            return None;
        }
        Some(i)
    }

    /// The live entry under `key`.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        let i = self.live_index(key, now_ms)?;
        self.map.get_index(i).map(|(_, e)| e)
    }

    /// The live entry under `key`, for modification. Changing `expire_at_ms` through this
    /// reference is not allowed: use [`Db::set_expire`].
    pub fn get_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Entry> {
        let i = self.live_index(key, now_ms)?;
        self.map.get_index_mut(i).map(|(_, e)| e)
    }

    /// The live entry under `key`, without expiring it: for holding several entries at once
    /// (look each up with [`Db::get`] first, so an expired one is deleted and counted).
    pub fn peek(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.map.get(key).filter(|e| !e.expired(now_ms))
    }

    /// Whether a live key exists.
    pub fn contains(&mut self, key: &[u8], now_ms: u64) -> bool {
        self.get(key, now_ms).is_some()
    }

    /// Stores `entry` under `key`, replacing any value and deadline.
    pub fn insert(&mut self, key: &[u8], entry: Entry) {
        if entry.expire_at_ms.is_some() {
            if !self.volatile.contains(key) {
                self.volatile.insert(key.into());
            }
        } else if !self.volatile.is_empty() {
            self.volatile.swap_remove(key);
        }
        match self.map.get_mut(key) {
            Some(slot) => *slot = entry,
            None => {
                self.map.insert(key.into(), entry);
            }
        }
    }

    /// Replaces the value under an existing `key`, keeping its deadline; or inserts it without
    /// one.
    pub fn set_value_keep_ttl(&mut self, key: &[u8], value: Value) {
        match self.map.get_mut(key) {
            Some(e) => e.value = value,
            None => {
                self.map.insert(key.into(), Entry::new(value));
            }
        }
    }

    /// Removes `key` (expired or not). Returns the entry it held.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let e = self.map.swap_remove(key)?;
        if e.expire_at_ms.is_some() {
            self.volatile.swap_remove(key);
        }
        Some(e)
    }

    /// Sets or clears the deadline of an existing key. Returns false if the key is absent.
    pub fn set_expire(&mut self, key: &[u8], at_ms: Option<u64>) -> bool {
        let Some(e) = self.map.get_mut(key) else {
            return false;
        };
        e.expire_at_ms = at_ms;
        if at_ms.is_some() {
            if !self.volatile.contains(key) {
                self.volatile.insert(key.into());
            }
        } else {
            self.volatile.swap_remove(key);
        }
        true
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.map = IndexMap::default();
        self.volatile = IndexSet::default();
    }

    /// A random live key.
    pub fn random_key(&mut self, rng: &mut Rng, now_ms: u64) -> Option<Key> {
        // Bounded: when every sampled key has expired, give up like Redis does after many tries
        // only if all keys are volatile; expired keys are deleted as they are met, so the loop
        // also makes progress.
        for _ in 0..100 {
            if self.map.is_empty() {
                return None;
            }
            let i = rng.below(self.map.len());
            let (k, e) = self.map.get_index(i)?;
            if e.expired(now_ms) {
                let k = k.clone();
                self.expire_if_needed(&k, now_ms);
                continue;
            }
            return Some(k.clone());
        }
        self.map
            .get_index(rng.below(self.map.len().max(1)))
            .map(|(k, _)| k.clone())
    }

    /// One step of SCAN. `cursor` is the number of index positions still to visit (positions
    /// `cursor-1` down to 0); pass `u64::MAX`-like large values to start. Visits about `count`
    /// positions, calls `f` for each live key, and returns the next cursor (0 when done).
    pub fn scan(
        &mut self,
        cursor: u64,
        count: usize,
        now_ms: u64,
        mut f: impl FnMut(&[u8], &Entry),
    ) -> u64 {
        let mut pos = (cursor as usize).min(self.map.len());
        let mut visited = 0;
        while pos > 0 && visited < count.max(1) {
            pos -= 1;
            visited += 1;
            let Some((k, e)) = self.map.get_index(pos) else {
                continue;
            };
            if !e.expired(now_ms) {
                f(k, e);
            }
        }
        pos as u64
    }

    /// Calls `f` for every live key.
    pub fn for_each_key(&self, now_ms: u64, mut f: impl FnMut(&[u8], &Entry)) {
        for (k, e) in &self.map {
            if !e.expired(now_ms) {
                f(k, e);
            }
        }
    }

    /// Up to `rounds` rounds of active expiry: each samples volatile keys and deletes the
    /// expired ones. Stops early once a round finds at most 10% of its sample expired (Redis's
    /// acceptable-stale rule). Returns the keys deleted and whether more rounds would pay.
    pub fn active_expire(&mut self, rng: &mut Rng, now_ms: u64, rounds: usize) -> (usize, bool) {
        let mut deleted = 0;
        for _ in 0..rounds {
            if self.volatile.is_empty() {
                return (deleted, false);
            }
            let mut expired_in_round = 0;
            let sample = EXPIRE_SAMPLE.min(self.volatile.len());
            for _ in 0..sample {
                if self.volatile.is_empty() {
                    break;
                }
                let i = rng.below(self.volatile.len());
                let Some(k) = self.volatile.get_index(i).cloned() else {
                    break;
                };
                if self.expire_if_needed(&k, now_ms) {
                    expired_in_round += 1;
                }
            }
            deleted += expired_in_round;
            if expired_in_round * 10 <= sample {
                return (deleted, false);
            }
        }
        (deleted, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::EXPIRE_ROUNDS_MAX;
    use crate::types::Str;

    fn val(s: &str) -> Value {
        Value::Str(Str::from_bytes(s.as_bytes()))
    }

    #[test]
    fn lazy_and_active_expiry() {
        let mut db = Db::default();
        let mut rng = Rng::new(1);
        for i in 0..100 {
            db.insert(
                format!("k{i}").as_bytes(),
                Entry {
                    value: val("v"),
                    expire_at_ms: Some(1000),
                },
            );
        }
        db.insert(b"p", Entry::new(val("v")));
        assert_eq!(db.volatile_len(), 100);
        assert!(db.get(b"k1", 999).is_some());
        assert!(db.get(b"k1", 1000).is_none());
        let mut total = 1;
        for _ in 0..50 {
            total += db.active_expire(&mut rng, 1000, EXPIRE_ROUNDS_MAX).0;
        }
        assert_eq!(total, 100);
        assert_eq!(db.len(), 1);
        assert_eq!(db.volatile_len(), 0);
    }

    #[test]
    fn scan_returns_stable_keys_despite_deletes() {
        let mut db = Db::default();
        for i in 0..1000 {
            db.insert(format!("k{i}").as_bytes(), Entry::new(val("v")));
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = u64::MAX;
        let mut round = 0;
        loop {
            let mut batch = Vec::new();
            cursor = db.scan(cursor, 10, 0, |k, _| batch.push(k.to_vec()));
            seen.extend(batch);
            // Delete some keys in the middle of the scan, only odd ones.
            let victim = format!("k{}", 2 * round + 1);
            db.remove(victim.as_bytes());
            round += 1;
            if cursor == 0 {
                break;
            }
        }
        for i in (0..1000).step_by(2) {
            assert!(seen.contains(format!("k{i}").as_bytes()), "missing k{i}");
        }
    }
}
