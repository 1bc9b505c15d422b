//! One logical database of one shard: keys, values and expiry times.
//!
//! Layout, for memory and cache misses: every key and its entry live in one fixed slot of a
//! chunked slab (chunks of `CHUNK` slots, so growth never copies or over-reserves more than one
//! chunk), and a hash table of 4-byte slot ids finds them. A key's slot id never changes while it
//! lives, which gives SCAN its guarantee for free: the cursor is a slot id walked downwards, and a
//! key present for the whole scan sits at one id the walk reaches. Freed slots are reused. A
//! random key (RANDOMKEY, eviction sampling) is a random slot id, retried when it is empty.
//!
//! Expiry is lazy (every lookup checks the deadline) plus an active cycle that samples the slot
//! ids of keys with a TTL (kept in their own set) and deletes the expired ones.

use crate::limits::EXPIRE_SAMPLE;
use crate::rng::Rng;
use crate::types::Value;
use hashbrown::HashTable;
use indexmap::IndexSet;
use std::num::NonZeroU64;

type Hasher = ahash::RandomState;

/// Slots per slab chunk.
const CHUNK: usize = 1024;

/// A stored key's name (inline when short).
pub type Key = crate::types::SmallKey;

/// A value and its expiry deadline (Unix milliseconds; never 0, so it costs 8 bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: Value,
    expire: Option<NonZeroU64>,
}

impl Entry {
    pub fn new(value: Value) -> Entry {
        Entry {
            value,
            expire: None,
        }
    }

    /// An entry with an optional deadline (a deadline of 0 counts as 1 ms: long past either way).
    pub fn with_expiry(value: Value, expire_at_ms: Option<u64>) -> Entry {
        Entry {
            value,
            expire: expire_at_ms.map(|t| NonZeroU64::new(t.max(1)).unwrap_or(NonZeroU64::MIN)),
        }
    }

    /// The deadline, Unix milliseconds.
    pub fn expire_at(&self) -> Option<u64> {
        self.expire.map(NonZeroU64::get)
    }

    fn set_expire_at(&mut self, at_ms: Option<u64>) {
        self.expire = at_ms.map(|t| NonZeroU64::new(t.max(1)).unwrap_or(NonZeroU64::MIN));
    }

    fn expired(&self, now_ms: u64) -> bool {
        matches!(self.expire, Some(t) if t.get() <= now_ms)
    }
}

/// A key and its entry, in their slab slot.
#[derive(Debug)]
struct Slot {
    key: Key,
    entry: Entry,
}

type Chunks = Vec<Box<[Option<Slot>]>>;

fn slot_of(chunks: &Chunks, id: u32) -> Option<&Slot> {
    chunks
        .get(id as usize / CHUNK)?
        .get(id as usize % CHUNK)?
        .as_ref()
}

/// A logical database (one of the 16 that SELECT chooses), as held by one shard.
#[derive(Debug, Default)]
pub struct Db {
    /// Slot ids, hashed by their key.
    index: HashTable<u32>,
    hasher: Hasher,
    chunks: Chunks,
    /// Freed slot ids, reused first.
    free: Vec<u32>,
    /// Slot ids handed out so far (the high-water mark).
    next: u32,
    len: usize,
    /// The slot ids of keys that have an expiry deadline.
    volatile: IndexSet<u32, Hasher>,
    /// Keys deleted because they had expired (INFO's `expired_keys`).
    pub expired_count: u64,
}

impl Db {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of keys with an expiry deadline (INFO keyspace's `expires`).
    pub fn volatile_len(&self) -> usize {
        self.volatile.len()
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        let chunks = &self.chunks;
        self.index
            .find(h, |&id| {
                slot_of(chunks, id).is_some_and(|s| s.key.as_slice() == key)
            })
            .copied()
    }

    fn slot(&self, id: u32) -> Option<&Slot> {
        slot_of(&self.chunks, id)
    }

    fn slot_mut(&mut self, id: u32) -> Option<&mut Slot> {
        self.chunks
            .get_mut(id as usize / CHUNK)?
            .get_mut(id as usize % CHUNK)?
            .as_mut()
    }

    /// Stores a new key in a free slot and indexes it.
    fn add(&mut self, key: &[u8], entry: Entry) -> u32 {
        let volatile = entry.expire.is_some();
        let slot = Slot {
            key: key.into(),
            entry,
        };
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                if self.next as usize == self.chunks.len() * CHUNK {
                    self.chunks.push((0..CHUNK).map(|_| None).collect());
                }
                self.next += 1;
                self.next - 1
            }
        };
        if let Some(cell) = self
            .chunks
            .get_mut(id as usize / CHUNK)
            .and_then(|c| c.get_mut(id as usize % CHUNK))
        {
            *cell = Some(slot);
        }
        let Db {
            index,
            chunks,
            hasher,
            ..
        } = self;
        let h = hasher.hash_one(key);
        index.insert_unique(h, id, |&x| {
            slot_of(chunks, x).map_or(0, |s| hasher.hash_one(s.key.as_slice()))
        });
        if volatile {
            self.volatile.insert(id);
        }
        self.len += 1;
        id
    }

    /// Deletes the key in slot `id`.
    fn remove_id(&mut self, id: u32) -> Option<Entry> {
        let cell = self
            .chunks
            .get_mut(id as usize / CHUNK)?
            .get_mut(id as usize % CHUNK)?;
        let slot = cell.take()?;
        let h = self.hasher.hash_one(slot.key.as_slice());
        if let Ok(e) = self.index.find_entry(h, |&x| x == id) {
            e.remove();
        }
        if slot.entry.expire.is_some() {
            self.volatile.swap_remove(&id);
        }
        self.free.push(id);
        self.len -= 1;
        Some(slot.entry)
    }

    /// Deletes the key in slot `id` if its deadline has passed. Returns whether it did.
    fn expire_id(&mut self, id: u32, now_ms: u64) -> bool {
        let expired = self.slot(id).is_some_and(|s| s.entry.expired(now_ms));
        if expired {
            self.remove_id(id);
            self.expired_count += 1;
        }
        expired
    }

    /// The slot id of the live key `key` (one hash lookup, expiring it if due).
    fn live_id(&mut self, key: &[u8], now_ms: u64) -> Option<u32> {
        let id = self.find(key)?;
        if self.expire_id(id, now_ms) {
            return None;
        }
        Some(id)
    }

    /// The live entry under `key`.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        let id = self.live_id(key, now_ms)?;
        self.slot(id).map(|s| &s.entry)
    }

    /// The live entry under `key`, for modification. Changing `expire_at_ms` through this
    /// reference is not allowed: use [`Db::set_expire`].
    pub fn get_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Entry> {
        let id = self.live_id(key, now_ms)?;
        self.slot_mut(id).map(|s| &mut s.entry)
    }

    /// The live entry under `key`, without expiring it: for holding several entries at once
    /// (look each up with [`Db::get`] first, so an expired one is deleted and counted).
    pub fn peek(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        let id = self.find(key)?;
        self.slot(id)
            .map(|s| &s.entry)
            .filter(|e| !e.expired(now_ms))
    }

    /// Whether a live key exists.
    pub fn contains(&mut self, key: &[u8], now_ms: u64) -> bool {
        self.get(key, now_ms).is_some()
    }

    /// Stores `entry` under `key`, replacing any value and deadline.
    pub fn insert(&mut self, key: &[u8], entry: Entry) {
        let Some(id) = self.find(key) else {
            self.add(key, entry);
            return;
        };
        let volatile = entry.expire.is_some();
        if let Some(s) = self.slot_mut(id) {
            s.entry = entry;
        }
        if volatile {
            self.volatile.insert(id);
        } else if !self.volatile.is_empty() {
            self.volatile.swap_remove(&id);
        }
    }

    /// Replaces the value under an existing `key`, keeping its deadline; or inserts it without
    /// one.
    pub fn set_value_keep_ttl(&mut self, key: &[u8], value: Value) {
        match self.find(key).and_then(|id| self.slot_mut(id)) {
            Some(s) => s.entry.value = value,
            None => {
                self.add(key, Entry::new(value));
            }
        }
    }

    /// Removes `key` (expired or not). Returns the entry it held.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let id = self.find(key)?;
        self.remove_id(id)
    }

    /// Sets or clears the deadline of an existing key. Returns false if the key is absent.
    pub fn set_expire(&mut self, key: &[u8], at_ms: Option<u64>) -> bool {
        let Some(id) = self.find(key) else {
            return false;
        };
        if let Some(s) = self.slot_mut(id) {
            s.entry.set_expire_at(at_ms);
        }
        if at_ms.is_some() {
            self.volatile.insert(id);
        } else {
            self.volatile.swap_remove(&id);
        }
        true
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        let expired_count = self.expired_count;
        *self = Db::default();
        self.expired_count = expired_count;
    }

    /// A random live key.
    pub fn random_key(&mut self, rng: &mut Rng, now_ms: u64) -> Option<Key> {
        // Random slot ids hit a live key with the probability the slab is full; after a bounded
        // number of misses, walk from a random id instead.
        for _ in 0..100 {
            if self.len == 0 {
                return None;
            }
            let id = rng.below(self.next as usize) as u32;
            if self.expire_id(id, now_ms) {
                continue;
            }
            if let Some(s) = self.slot(id) {
                return Some(s.key.clone());
            }
        }
        if self.len == 0 {
            return None;
        }
        let start = rng.below(self.next as usize);
        (0..self.next as usize)
            .map(|i| ((start + i) % self.next as usize) as u32)
            .find_map(|id| {
                self.slot(id)
                    .filter(|s| !s.entry.expired(now_ms))
                    .map(|s| s.key.clone())
            })
    }

    /// One step of SCAN. `cursor` is the number of slot ids still to visit (ids `cursor-1` down
    /// to 0); pass a large value to start. Visits about `count` ids, calls `f` for each live
    /// key, and returns the next cursor (0 when done).
    pub fn scan(
        &mut self,
        cursor: u64,
        count: usize,
        now_ms: u64,
        mut f: impl FnMut(&[u8], &Entry),
    ) -> u64 {
        let mut pos = cursor.min(self.next as u64);
        let (mut visited, mut steps) = (0, 0);
        // Like Redis, bound the empty slots one call walks past as well as the keys it returns.
        while pos > 0 && visited < count.max(1) && steps < count.max(1).saturating_mul(10) {
            pos -= 1;
            steps += 1;
            if let Some(s) = self.slot(pos as u32) {
                visited += 1;
                if !s.entry.expired(now_ms) {
                    f(&s.key, &s.entry);
                }
            }
        }
        pos
    }

    /// Calls `f` for every live key.
    pub fn for_each_key(&self, now_ms: u64, mut f: impl FnMut(&[u8], &Entry)) {
        for s in self.chunks.iter().flat_map(|c| c.iter()).flatten() {
            if !s.entry.expired(now_ms) {
                f(&s.key, &s.entry);
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
                let Some(&id) = self.volatile.get_index(i) else {
                    break;
                };
                if self.expire_id(id, now_ms) {
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
                Entry::with_expiry(val("v"), Some(1000)),
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

#[cfg(test)]
mod layout {
    /// Every key costs one slot: keep it small (memory per key is a product goal).
    #[test]
    fn slot_stays_small() {
        assert!(std::mem::size_of::<Option<super::Slot>>() <= 72);
        assert!(std::mem::size_of::<super::Entry>() <= 48);
    }
}
