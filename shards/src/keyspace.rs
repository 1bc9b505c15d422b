//! One logical database of one shard: keys, values and expiry times.
//!
//! Layout, for memory and cache misses: every key and its entry live in one fixed slot of a
//! chunked slab (chunks of `CHUNK` slots, so growth never copies or over-reserves more than one
//! chunk), and a hash table of 4-byte slot ids finds them. A key's slot id never changes while it
//! lives, which gives SCAN its guarantee for free: the cursor is a slot id walked downwards, and a
//! key present for the whole scan sits at one id the walk reaches. Freed slots are reused. A
//! random key (RANDOMKEY, eviction sampling) is a random slot id, retried when it is empty.
//!
//! Deadlines live outside the slots, in a map from slot id to deadline (most keys have none, so
//! a slot is just a key and a value: 64 bytes, and a chunk is exactly one 64 KiB allocation).
//! The index marks the ids of keys that have a deadline with a high bit, so looking up a key
//! without one never touches the map. Expiry is lazy (every lookup checks the deadline) plus an
//! active cycle that samples the map and deletes the expired keys.

use crate::evict::Clocks;
use crate::limits::EXPIRE_SAMPLE;
use crate::notify::KeyNote;
use crate::rdb::file::Section;
use crate::rng::Rng;
use crate::types::Value;
use hashbrown::HashTable;
use indexmap::IndexMap;
use std::num::NonZeroU64;

type Hasher = ahash::RandomState;

/// Slots per slab chunk.
pub(crate) const CHUNK: usize = 1024;

/// The index's mark on the ids of keys that have a deadline.
const VOLATILE: u32 = 1 << 31;

/// A stored key's name (inline when short).
pub type Key = crate::types::SmallKey;

/// Until when (Unix ms) expired keys are left in place: CLIENT PAUSE stops expiry and eviction
/// as Redis does, so nothing changes the data while clients are held (readers see expired
/// keys as absent). Process-wide, as a pause is; 0: not paused.
pub static EXPIRY_PAUSED_UNTIL_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// The process is a replica: its master's DELs remove expired keys, not its own expiry (nor
/// eviction), as in Redis.
pub static REPLICA: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `cluster-enabled yes`: only database 0 exists for clients (MOVE, SWAPDB and COPY … DB are
/// refused, as Redis Cluster refuses them).
pub static CLUSTER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Cluster mode: whether this node serves a command of a script on `slot` (`write`: the
/// command writes), as the server's cluster state says; `Some(error)` when it does not. Set
/// once by the server at start-up.
pub static CLUSTER_SLOT_CHECK: std::sync::OnceLock<fn(u16, bool) -> Option<&'static str>> =
    std::sync::OnceLock::new();

/// Whether cluster mode is on (see [`CLUSTER`]).
pub fn cluster_mode() -> bool {
    CLUSTER.load(std::sync::atomic::Ordering::Relaxed)
}

/// `replica-read-only`: a replica's clients may not write (scripts included).
pub static REPLICA_READ_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(true);

/// Whether this process is a replica that refuses its clients' writes.
pub fn read_only_replica() -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    REPLICA.load(Relaxed) && REPLICA_READ_ONLY.load(Relaxed)
}

/// Whether expiry (and eviction) is paused at `now_ms`.
#[inline]
pub fn expiry_paused(now_ms: u64) -> bool {
    now_ms < EXPIRY_PAUSED_UNTIL_MS.load(std::sync::atomic::Ordering::Relaxed)
        || REPLICA.load(std::sync::atomic::Ordering::Relaxed)
}

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
            expire: expire_at_ms.map(deadline),
        }
    }

    /// The deadline, Unix milliseconds.
    pub fn expire_at(&self) -> Option<u64> {
        self.expire.map(NonZeroU64::get)
    }
}

fn deadline(at_ms: u64) -> NonZeroU64 {
    NonZeroU64::new(at_ms.max(1)).unwrap_or(NonZeroU64::MIN)
}

/// A stored value, as lookups hand it out (its deadline is [`Db::expire_at`]).
#[derive(Debug, PartialEq)]
#[repr(transparent)]
pub struct Item {
    pub value: Value,
}

/// A key and its value, in their slab slot.
#[derive(Debug)]
struct Slot {
    key: Key,
    item: Item,
}

type Chunks = Vec<Box<[Option<Slot>]>>;

/// Deadlines by slot id.
type Expires = IndexMap<u32, NonZeroU64, Hasher>;

fn slot_of(chunks: &Chunks, id: u32) -> Option<&Slot> {
    chunks
        .get(id as usize / CHUNK)?
        .get(id as usize % CHUNK)?
        .as_ref()
}

/// A logical database (one of the 16 that SELECT chooses), as held by one shard.
#[derive(Debug, Default)]
pub struct Db {
    /// Slot ids (marked [`VOLATILE`] when the key has a deadline), hashed by their key.
    index: HashTable<u32>,
    hasher: Hasher,
    chunks: Chunks,
    /// Freed slot ids, reused first.
    free: Vec<u32>,
    /// Slot ids handed out so far (the high-water mark).
    next: u32,
    len: usize,
    /// The deadlines (Unix ms) of the keys that have one, by slot id.
    expires: Expires,
    /// Keys deleted because they had expired (INFO's `expired_keys`).
    pub expired_count: u64,
    /// The snapshot in progress, if any (see [`Db::begin_snapshot`]).
    snapshot: Option<Box<Snapshot>>,
    /// While the shard logs its effects: the keys deleted because they had expired, not yet
    /// logged (the shard drains them after every command and expiry cycle).
    pub expired_log: Option<Vec<Key>>,
    /// While keyspace notifications for new or expired keys are on: the keys created and
    /// expired, in order, not yet turned into events (see [`crate::Shard::notify`]).
    pub key_notes: Option<Vec<(KeyNote, Key)>>,
    /// Per-key access clocks, kept only under an LRU or LFU `maxmemory-policy` (see
    /// [`crate::evict`]): a key costs nothing for them otherwise.
    pub(crate) clocks: Option<Box<Clocks>>,
    /// Cluster mode: the slot ids of the keys of each hash slot, kept from the first time
    /// someone asks (see [`Db::count_in_slot`]); a key costs nothing for it otherwise.
    slot_keys: Option<Box<SlotKeys>>,
}

/// The keys of each of the 16384 hash slots, as slab slot ids.
#[derive(Debug)]
struct SlotKeys {
    sets: Vec<std::collections::HashSet<u32, Hasher>>,
}

impl SlotKeys {
    fn new() -> SlotKeys {
        SlotKeys {
            sets: (0..crate::limits::SLOTS)
                .map(|_| std::collections::HashSet::with_hasher(Hasher::default()))
                .collect(),
        }
    }

    fn set(&mut self, key: &[u8]) -> Option<&mut std::collections::HashSet<u32, Hasher>> {
        self.sets.get_mut(crate::slot::key_slot(key).0 as usize)
    }
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
        self.expires.len()
    }

    /// The index entry of `key`: its slot id, marked if it has a deadline.
    fn find(&self, key: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        let chunks = &self.chunks;
        self.index
            .find(h, |&id| {
                slot_of(chunks, id & !VOLATILE).is_some_and(|s| s.key.as_slice() == key)
            })
            .copied()
    }

    /// Sets or clears the mark of `key`'s index entry.
    fn mark(&mut self, key: &[u8], id: u32, volatile: bool) {
        let h = self.hasher.hash_one(key);
        if let Some(e) = self.index.find_mut(h, |&x| x & !VOLATILE == id) {
            *e = if volatile { id | VOLATILE } else { id };
        }
    }

    fn slot(&self, id: u32) -> Option<&Slot> {
        slot_of(&self.chunks, id)
    }

    /// The slot `id`, for a change (so a snapshot saves its chunk first).
    fn slot_mut(&mut self, id: u32) -> Option<&mut Slot> {
        self.before_write(id);
        self.chunks
            .get_mut(id as usize / CHUNK)?
            .get_mut(id as usize % CHUNK)?
            .as_mut()
    }

    /// Whether the key in slot `id` has a deadline that has passed.
    fn expired(&self, id: u32, now_ms: u64) -> bool {
        !self.expires.is_empty() && self.expires.get(&id).is_some_and(|t| t.get() <= now_ms)
    }

    /// Stores a new key in a free slot and indexes it.
    fn add(&mut self, key: &[u8], entry: Entry) -> u32 {
        let slot = Slot {
            key: key.into(),
            item: Item { value: entry.value },
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
        // A reused slot may sit in a chunk a snapshot has still to save without this key.
        self.before_write(id);
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
        let marked = if entry.expire.is_some() {
            id | VOLATILE
        } else {
            id
        };
        index.insert_unique(h, marked, |&x| {
            slot_of(chunks, x & !VOLATILE).map_or(0, |s| hasher.hash_one(s.key.as_slice()))
        });
        if let Some(t) = entry.expire {
            self.expires.insert(id, t);
        }
        if let Some(c) = &mut self.clocks {
            let fresh = c.fresh();
            c.set(id, fresh);
        }
        self.len += 1;
        if let Some(set) = self.slot_keys.as_mut().and_then(|k| k.set(key)) {
            set.insert(id);
        }
        if let Some(notes) = &mut self.key_notes {
            notes.push((KeyNote::New, key.into()));
        }
        id
    }

    /// Deletes the key in slot `id`.
    fn remove_id(&mut self, id: u32) -> Option<Entry> {
        self.before_write(id);
        let cell = self
            .chunks
            .get_mut(id as usize / CHUNK)?
            .get_mut(id as usize % CHUNK)?;
        let slot = cell.take()?;
        let h = self.hasher.hash_one(slot.key.as_slice());
        if let Ok(e) = self.index.find_entry(h, |&x| x & !VOLATILE == id) {
            e.remove();
        }
        let expire = if self.expires.is_empty() {
            None
        } else {
            self.expires.swap_remove(&id)
        };
        self.free.push(id);
        self.len -= 1;
        if let Some(set) = self
            .slot_keys
            .as_mut()
            .and_then(|k| k.set(slot.key.as_slice()))
        {
            set.remove(&id);
        }
        Some(Entry {
            value: slot.item.value,
            expire,
        })
    }

    /// Deletes the key in slot `id` if its deadline has passed. Returns whether it is expired
    /// (while clients are paused it stays, logically expired; see [`expiry_paused`]).
    fn expire_id(&mut self, id: u32, now_ms: u64) -> bool {
        let expired = self.expired(id, now_ms);
        if expired && expiry_paused(now_ms) {
            return true;
        }
        if expired {
            if self.expired_log.is_some() || self.key_notes.is_some() {
                if let Some(s) = slot_of(&self.chunks, id) {
                    if let Some(log) = &mut self.expired_log {
                        log.push(s.key.clone());
                    }
                    if let Some(notes) = &mut self.key_notes {
                        notes.push((KeyNote::Expired, s.key.clone()));
                    }
                }
            }
            self.remove_id(id);
            self.expired_count += 1;
        }
        expired
    }

    /// The slot id of the live key `key` (one hash lookup, expiring it if due), recording the
    /// access in its clock (Redis's `lookupKey`).
    fn live_id(&mut self, key: &[u8], now_ms: u64) -> Option<u32> {
        let id = self.untouched_id(key, now_ms)?;
        if let Some(c) = &mut self.clocks {
            c.touch(id, now_ms);
        }
        Some(id)
    }

    /// [`Db::live_id`] without recording an access (Redis's `LOOKUP_NOTOUCH`).
    fn untouched_id(&mut self, key: &[u8], now_ms: u64) -> Option<u32> {
        let marked = self.find(key)?;
        let id = marked & !VOLATILE;
        if marked & VOLATILE != 0 && self.expire_id(id, now_ms) {
            return None;
        }
        Some(id)
    }

    /// The live value under `key` without recording an access, as TYPE, EXISTS, the TTL family
    /// and OBJECT look keys up (Redis's `LOOKUP_NOTOUCH`); a miss is noted for `keymiss` when
    /// `note_miss`.
    pub fn get_untouched(&mut self, key: &[u8], now_ms: u64, note_miss: bool) -> Option<&Item> {
        let id = self.untouched_id(key, now_ms);
        if id.is_none() && note_miss {
            if let Some(notes) = &mut self.key_notes {
                notes.push((KeyNote::Miss, key.into()));
            }
        }
        self.slot(id?).map(|s| &s.item)
    }

    /// The access clock cell of the live key `key` with the clocks, without touching it
    /// (OBJECT IDLETIME / FREQ, DEBUG OBJECT).
    pub fn clock_of(&self, key: &[u8]) -> Option<(&Clocks, u32)> {
        let c = self.clocks.as_deref()?;
        let id = self.find(key)? & !VOLATILE;
        Some((c, id))
    }

    /// Sets the clock of `key` as RESTORE's IDLETIME / FREQ ask.
    pub fn set_restored_clock(&mut self, key: &[u8], idle_s: Option<i64>, freq: Option<i64>) {
        let Some(id) = self.find(key) else { return };
        if let Some(c) = &mut self.clocks {
            c.set_restored(id & !VOLATILE, idle_s, freq);
        }
    }

    /// Calls `f` for every occupied slot id.
    pub(crate) fn for_each_id(&self, mut f: impl FnMut(u32)) {
        for (c, chunk) in self.chunks.iter().enumerate() {
            for (i, s) in chunk.iter().enumerate() {
                if s.is_some() {
                    f((c * CHUNK + i) as u32);
                }
            }
        }
    }

    /// Up to `n` random keys for the eviction pool (`volatile`: only keys with a deadline),
    /// each with its slot id, deadline and the clocks (Redis's `dictGetSomeKeys`: a sample,
    /// possibly with repeats; expired keys are candidates too).
    pub(crate) fn sample(
        &self,
        rng: &mut Rng,
        volatile: bool,
        n: usize,
        mut f: impl FnMut(&[u8], u32, Option<u64>, Option<&Clocks>),
    ) {
        let clocks = self.clocks.as_deref();
        if volatile {
            for _ in 0..n.min(self.expires.len()) {
                let i = rng.below(self.expires.len());
                if let Some((&id, t)) = self.expires.get_index(i) {
                    if let Some(s) = self.slot(id) {
                        f(&s.key, id, Some(t.get()), clocks);
                    }
                }
            }
            return;
        }
        let (mut found, mut tries) = (0, 0);
        // Random slot ids hit a key as often as the slab is full; bound the misses.
        while found < n.min(self.len) && tries < n.saturating_mul(20) && self.next > 0 {
            tries += 1;
            let id = rng.below(self.next as usize) as u32;
            if let Some(s) = self.slot(id) {
                found += 1;
                let t = if self.expires.is_empty() {
                    None
                } else {
                    self.expires.get(&id).map(|t| t.get())
                };
                f(&s.key, id, t, clocks);
            }
        }
    }

    /// A random key with a deadline (expired or not).
    pub fn random_volatile_key(&self, rng: &mut Rng) -> Option<Key> {
        if self.expires.is_empty() {
            return None;
        }
        let (&id, _) = self.expires.get_index(rng.below(self.expires.len()))?;
        self.slot(id).map(|s| s.key.clone())
    }

    /// The live value under `key`.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<&Item> {
        let id = self.live_id(key, now_ms)?;
        self.slot(id).map(|s| &s.item)
    }

    /// The live value under `key` for a read lookup (Redis's `lookupKeyRead`): a miss is noted
    /// for the `keymiss` event while key notes are on.
    pub fn get_read(&mut self, key: &[u8], now_ms: u64) -> Option<&Item> {
        let id = self.read_id(key, now_ms)?;
        self.slot(id).map(|s| &s.item)
    }

    /// [`Db::get_read`], for a read that may update the value in place.
    pub fn get_read_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Item> {
        let id = self.read_id(key, now_ms)?;
        self.slot_mut(id).map(|s| &mut s.item)
    }

    fn read_id(&mut self, key: &[u8], now_ms: u64) -> Option<u32> {
        let id = self.live_id(key, now_ms);
        if id.is_none() {
            if let Some(notes) = &mut self.key_notes {
                notes.push((KeyNote::Miss, key.into()));
            }
        }
        id
    }

    /// The live value under `key`, for modification.
    pub fn get_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Item> {
        let id = self.live_id(key, now_ms)?;
        self.slot_mut(id).map(|s| &mut s.item)
    }

    /// The live value under `key`, without expiring it: for holding several values at once
    /// (look each up with [`Db::get`] first, so an expired one is deleted and counted).
    pub fn peek(&self, key: &[u8], now_ms: u64) -> Option<&Item> {
        let marked = self.find(key)?;
        let id = marked & !VOLATILE;
        if marked & VOLATILE != 0 && self.expired(id, now_ms) {
            return None;
        }
        self.slot(id).map(|s| &s.item)
    }

    /// The deadline (Unix ms) of `key`, if it exists and has one (expired or not).
    pub fn expire_at(&self, key: &[u8]) -> Option<u64> {
        let marked = self.find(key)?;
        if marked & VOLATILE == 0 {
            return None;
        }
        self.expires.get(&(marked & !VOLATILE)).map(|t| t.get())
    }

    /// A copy of the live key `key` with its deadline (for moving keys between shards).
    pub fn get_entry(&mut self, key: &[u8], now_ms: u64) -> Option<Entry> {
        let value = self.get(key, now_ms)?.value.clone();
        Some(Entry {
            value,
            expire: self.expire_at(key).map(deadline),
        })
    }

    /// Whether a live key exists.
    pub fn contains(&mut self, key: &[u8], now_ms: u64) -> bool {
        self.get(key, now_ms).is_some()
    }

    /// Stores `entry` under `key`, replacing any value and deadline.
    pub fn insert(&mut self, key: &[u8], entry: Entry) {
        let Some(marked) = self.find(key) else {
            self.add(key, entry);
            return;
        };
        let id = marked & !VOLATILE;
        self.before_write(id);
        if let Some(s) = self.slot_mut(id) {
            s.item.value = entry.value;
        }
        if let Some(c) = &mut self.clocks {
            // An overwrite is an access (Redis looks the key up for writing first).
            c.touch(id, c.now_ms);
        }
        match entry.expire {
            Some(t) => {
                self.expires.insert(id, t);
                if marked & VOLATILE == 0 {
                    self.mark(key, id, true);
                }
            }
            None if marked & VOLATILE != 0 => {
                self.expires.swap_remove(&id);
                self.mark(key, id, false);
            }
            None => {}
        }
    }

    /// Replaces the value under an existing `key`, keeping its deadline; or inserts it without
    /// one.
    pub fn set_value_keep_ttl(&mut self, key: &[u8], value: Value) {
        match self.find(key).and_then(|id| self.slot_mut(id & !VOLATILE)) {
            Some(s) => s.item.value = value,
            None => {
                self.add(key, Entry::new(value));
            }
        }
    }

    /// Removes `key` (expired or not). Returns the entry it held.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let id = self.find(key)? & !VOLATILE;
        self.remove_id(id)
    }

    /// Sets or clears the deadline of an existing key. Returns false if the key is absent.
    pub fn set_expire(&mut self, key: &[u8], at_ms: Option<u64>) -> bool {
        let Some(marked) = self.find(key) else {
            return false;
        };
        let id = marked & !VOLATILE;
        self.before_write(id);
        match at_ms {
            Some(t) => {
                self.expires.insert(id, deadline(t));
            }
            None => {
                self.expires.swap_remove(&id);
            }
        }
        if (marked & VOLATILE != 0) != at_ms.is_some() {
            self.mark(key, id, at_ms.is_some());
        }
        true
    }

    /// Removes every key. A snapshot in progress keeps the old keys it has still to save (their
    /// chunks move into it, nothing is copied) and carries on from them; the keys added after
    /// this are not part of it.
    pub fn clear(&mut self) {
        let expired_count = self.expired_count;
        let mut snapshot = self.snapshot.take();
        if let Some(snap) = snapshot.as_deref_mut() {
            if snap.frozen.is_none() {
                let chunks = std::mem::take(&mut self.chunks);
                snap.frozen = Some((chunks, std::mem::take(&mut self.expires)));
            }
        }
        let expired_log = self.expired_log.take();
        let key_notes = self.key_notes.take();
        let clocks = self.clocks.take().map(|c| Box::new(c.emptied()));
        let slot_keys = self.slot_keys.take().map(|_| Box::new(SlotKeys::new()));
        *self = Db::default();
        self.clocks = clocks;
        self.slot_keys = slot_keys;
        self.key_notes = key_notes;
        self.expired_count = expired_count;
        self.snapshot = snapshot;
        self.expired_log = expired_log;
    }

    /// The per-slot index, built from the keys present the first time it is needed.
    fn slot_keys(&mut self) -> &mut SlotKeys {
        let Db {
            slot_keys, chunks, ..
        } = self;
        slot_keys.get_or_insert_with(|| {
            let mut keys = Box::new(SlotKeys::new());
            for (c, chunk) in chunks.iter().enumerate() {
                for (i, cell) in chunk.iter().enumerate() {
                    if let Some(slot) = cell {
                        if let Some(set) = keys.set(slot.key.as_slice()) {
                            set.insert((c * CHUNK + i) as u32);
                        }
                    }
                }
            }
            keys
        })
    }

    /// How many keys (expired or not, as Redis counts them) are in hash slot `slot`. The
    /// first call indexes the keys by slot; from then on this is O(1).
    pub fn count_in_slot(&mut self, slot: u16) -> usize {
        self.slot_keys()
            .sets
            .get(slot as usize)
            .map_or(0, |s| s.len())
    }

    /// Up to `max` keys of hash slot `slot` (see [`Db::count_in_slot`]).
    pub fn keys_in_slot(&mut self, slot: u16, max: usize) -> Vec<Key> {
        let ids: Vec<u32> = self
            .slot_keys()
            .sets
            .get(slot as usize)
            .map(|s| s.iter().take(max).copied().collect())
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.slot(id).map(|s| s.key.clone()))
            .collect()
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
                    .filter(|_| !self.expired(id, now_ms))
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
        mut f: impl FnMut(&[u8], &Item),
    ) -> u64 {
        let mut pos = cursor.min(self.next as u64);
        let (mut visited, mut steps) = (0, 0);
        // Like Redis, bound the empty slots one call walks past as well as the keys it returns.
        while pos > 0 && visited < count.max(1) && steps < count.max(1).saturating_mul(10) {
            pos -= 1;
            steps += 1;
            let id = pos as u32;
            if let Some(s) = self.slot(id) {
                visited += 1;
                if !self.expired(id, now_ms) {
                    f(&s.key, &s.item);
                }
            }
        }
        pos
    }

    /// Calls `f` for every live key, with its slot id, slot and deadline.
    fn for_each_live(&self, now_ms: u64, mut f: impl FnMut(u32, &Slot, Option<u64>)) {
        for (c, chunk) in self.chunks.iter().enumerate() {
            for (i, s) in chunk.iter().enumerate() {
                let Some(s) = s else { continue };
                let id = (c * CHUNK + i) as u32;
                let expire = if self.expires.is_empty() {
                    None
                } else {
                    self.expires.get(&id).map(|t| t.get())
                };
                if expire.is_none_or(|t| t > now_ms) {
                    f(id, s, expire);
                }
            }
        }
    }

    /// [`Db::for_each_key`] with what an RDB file records of each key's clock (under an
    /// LRU or LFU policy).
    pub fn for_each_key_clocked(
        &self,
        now_ms: u64,
        mut f: impl FnMut(&[u8], &Item, Option<u64>, Option<crate::rdb::file::KeyClock>),
    ) {
        let clocks = self.clocks.as_deref();
        self.for_each_live(now_ms, |id, s, expire| {
            let clock = clocks.map(|k| k.rdb_clock(id, now_ms));
            f(&s.key, &s.item, expire, clock);
        });
    }

    /// Calls `f` for every live key, with its value and deadline.
    pub fn for_each_key(&self, now_ms: u64, mut f: impl FnMut(&[u8], &Item, Option<u64>)) {
        self.for_each_live(now_ms, |_, s, expire| f(&s.key, &s.item, expire));
    }

    /// Up to `rounds` rounds of active expiry: each samples volatile keys and deletes the
    /// expired ones. Stops early once a round finds at most 10% of its sample expired (Redis's
    /// acceptable-stale rule). Returns the keys deleted and whether more rounds would pay.
    pub fn active_expire(&mut self, rng: &mut Rng, now_ms: u64, rounds: usize) -> (usize, bool) {
        let mut deleted = 0;
        for _ in 0..rounds {
            if self.expires.is_empty() {
                return (deleted, false);
            }
            let mut expired_in_round = 0;
            let sample = EXPIRE_SAMPLE.min(self.expires.len());
            for _ in 0..sample {
                if self.expires.is_empty() {
                    break;
                }
                let i = rng.below(self.expires.len());
                let Some((&id, _)) = self.expires.get_index(i) else {
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

// ---------------------------------------------------------------------------------------------
// Copy-on-write snapshots.

/// A snapshot of a database in progress: which of the chunks that existed when it began are
/// serialised already, and the serialised key records not yet taken.
#[derive(Debug)]
struct Snapshot {
    /// After [`Db::clear`]: the chunks and deadlines as they were, which the snapshot goes on
    /// saving (the database's own are new and no concern of it).
    frozen: Option<(Chunks, Expires)>,
    progress: Progress,
}

#[derive(Debug)]
struct Progress {
    /// Chunks at the start; chunks from this index on hold only keys added since.
    end: usize,
    /// One bit per slot of the chunks below `end`: serialised already (or, for a slot empty
    /// then, nothing to serialise: a key added there since is not part of the snapshot).
    saved: Vec<u64>,
    /// Every chunk below this one is saved.
    cursor: usize,
    /// Keys whose deadline had passed at the start are left out.
    now_ms: u64,
    section: Section,
}

impl Progress {
    fn is_saved(&self, id: usize) -> bool {
        self.saved[id / 64] & (1 << (id % 64)) != 0
    }

    /// Serialises slot `id` as it is now (if it holds a key), and marks it saved.
    fn save_slot(
        &mut self,
        id: usize,
        chunks: &Chunks,
        expires: &Expires,
        clocks: Option<&Clocks>,
    ) {
        self.saved[id / 64] |= 1 << (id % 64);
        let Some(Some(s)) = chunks.get(id / CHUNK).and_then(|c| c.get(id % CHUNK)) else {
            return;
        };
        let expire = if expires.is_empty() {
            None
        } else {
            expires.get(&(id as u32)).map(|t| t.get())
        };
        if expire.is_none_or(|t| t > self.now_ms) {
            let clock = clocks.map(|c| c.rdb_clock(id as u32, self.now_ms));
            self.section.entry(&s.key, &s.item.value, expire, clock);
        }
    }

    /// Serialises the slots of chunk `c` not saved yet, as they are now.
    fn save_chunk(
        &mut self,
        c: usize,
        chunks: &Chunks,
        expires: &Expires,
        clocks: Option<&Clocks>,
    ) {
        for id in c * CHUNK..(c + 1) * CHUNK {
            if !self.is_saved(id) {
                self.save_slot(id, chunks, expires, clocks);
            }
        }
    }
}

impl Db {
    /// Starts a snapshot of this database as it is now, to be written as database `db_index`
    /// of an RDB file; keys expired at `now_ms` are left out. Replaces any snapshot in
    /// progress.
    ///
    /// Nothing is copied here. The snapshot serialises the slab a chunk at a time
    /// ([`Db::snapshot_step`]); any change to a slot not yet serialised first serialises the
    /// key it holds as it was (copy-on-write per key; a slot empty at the start is marked, so a
    /// key added there later is not part of it), and keys added in chunks made since are not
    /// part of it either. The bytes come out in pieces ([`Db::snapshot_take`]) for
    /// [`crate::rdb::file::FileWriter::append`], keys in the order they were saved. Take them
    /// after every step and every batch of commands.
    ///
    /// The snapshot belongs to the data, not to the database number: SWAPDB (which swaps the
    /// `Db`s) carries it along, and it still writes as `db_index`.
    pub fn begin_snapshot(&mut self, db_index: usize, now_ms: u64) {
        let end = self.chunks.len();
        self.snapshot = Some(Box::new(Snapshot {
            frozen: None,
            progress: Progress {
                end,
                saved: vec![0; (end * CHUNK).div_ceil(64)],
                cursor: 0,
                now_ms,
                section: Section::new(db_index, self.len, self.expires.len()),
            },
        }));
    }

    /// Whether a snapshot is in progress (begun, and not all taken yet).
    pub fn snapshot_active(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Drops the snapshot in progress and what it has not handed out.
    pub fn snapshot_abort(&mut self) {
        self.snapshot = None;
    }

    /// Serialises up to `max_chunks` more chunks (in slab order, skipping those saved already).
    /// Returns whether chunks remain to be saved.
    pub fn snapshot_step(&mut self, max_chunks: usize) -> bool {
        let Db {
            snapshot,
            chunks,
            expires,
            clocks,
            ..
        } = self;
        let Some(snap) = snapshot.as_deref_mut() else {
            return false;
        };
        let Snapshot { frozen, progress } = snap;
        let mut saved = 0;
        while progress.cursor < progress.end && saved < max_chunks {
            let c = progress.cursor;
            progress.cursor += 1;
            saved += 1;
            match frozen {
                Some((old_chunks, old_expires)) => {
                    // The clocks follow the live slots, not frozen ones.
                    progress.save_chunk(c, old_chunks, old_expires, None);
                    // Free the old keys as they are written out.
                    if let Some(chunk) = old_chunks.get_mut(c) {
                        *chunk = Box::new([]);
                    }
                }
                None => progress.save_chunk(c, chunks, expires, clocks.as_deref()),
            }
        }
        progress.cursor < progress.end
    }

    /// Serialised bytes not yet taken.
    pub fn snapshot_pending_len(&self) -> usize {
        self.snapshot
            .as_ref()
            .map_or(0, |s| s.progress.section.pending_len())
    }

    /// The serialised bytes not yet taken: empty, or a piece of key records that starts with
    /// `SELECTDB` (see [`crate::rdb::file::Section`]). Once every chunk is saved, the call that
    /// takes the last bytes also ends the snapshot.
    pub fn snapshot_take(&mut self) -> Vec<u8> {
        let Some(snap) = self.snapshot.as_deref_mut() else {
            return Vec::new();
        };
        let out = snap.progress.section.take();
        if snap.progress.cursor >= snap.progress.end {
            self.snapshot = None;
        }
        out
    }

    /// Before a change to slot `id`: lets a snapshot in progress save its chunk first. Costs
    /// one branch when no snapshot runs.
    #[inline]
    fn before_write(&mut self, id: u32) {
        if self.snapshot.is_some() {
            self.save_before_write(id);
        }
    }

    #[cold]
    fn save_before_write(&mut self, id: u32) {
        let Db {
            snapshot,
            chunks,
            expires,
            clocks,
            ..
        } = self;
        let Some(snap) = snapshot.as_deref_mut() else {
            return;
        };
        // Copy-on-write per key: the key in this slot (if any) is saved as it is before the
        // change; the rest of its chunk waits for the snapshot's own pace.
        let id = id as usize;
        let p = &mut snap.progress;
        if snap.frozen.is_none() && id < p.end * CHUNK && !p.is_saved(id) {
            p.save_slot(id, chunks, expires, clocks.as_deref());
        }
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
    fn deadlines_follow_inserts_and_set_expire() {
        let mut db = Db::default();
        db.insert(b"a", Entry::with_expiry(val("1"), Some(500)));
        assert_eq!(db.expire_at(b"a"), Some(500));
        // Replacing the value without a deadline clears it, with one replaces it.
        db.insert(b"a", Entry::new(val("2")));
        assert_eq!((db.expire_at(b"a"), db.volatile_len()), (None, 0));
        assert!(db.get(b"a", 10_000).is_some());
        db.insert(b"a", Entry::with_expiry(val("3"), Some(700)));
        assert!(db.set_expire(b"a", Some(900)));
        assert_eq!(db.expire_at(b"a"), Some(900));
        assert!(db.peek(b"a", 899).is_some() && db.peek(b"a", 900).is_none());
        let e = db.get_entry(b"a", 0);
        assert_eq!(e.and_then(|e| e.expire_at()), Some(900));
        assert!(db.set_expire(b"a", None));
        assert!(db.get(b"a", 10_000).is_some());
        assert!(!db.set_expire(b"missing", Some(1)));
        // A removed key gives its deadline back, and a reused slot starts without one.
        db.set_expire(b"a", Some(5));
        assert_eq!(db.remove(b"a").and_then(|e| e.expire_at()), Some(5));
        db.insert(b"b", Entry::new(val("x")));
        assert_eq!((db.expire_at(b"b"), db.volatile_len()), (None, 0));
        let mut seen = Vec::new();
        db.insert(b"c", Entry::with_expiry(val("y"), Some(50)));
        db.for_each_key(10, |k, _, t| seen.push((k.to_vec(), t)));
        seen.sort();
        assert_eq!(seen, vec![(b"b".to_vec(), None), (b"c".to_vec(), Some(50))]);
        assert!(db.get(b"c", 50).is_none());
        assert_eq!(db.expired_count, 1);
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
        // 64 bytes: a chunk of 1024 slots is exactly one 64 KiB allocation.
        assert_eq!(std::mem::size_of::<Option<super::Slot>>(), 64);
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use crate::rdb::file::{Aux, FileReader, FileWriter};
    use crate::shard::ShardConfig;
    use crate::types::list::{End, Fill};
    use crate::types::{List, Str};
    use std::collections::BTreeMap;

    type Model = BTreeMap<Vec<u8>, (Value, Option<u64>)>;

    const NOW_MS: u64 = 1000;
    const FILLED: usize = 12 * CHUNK;

    fn key(i: usize) -> Vec<u8> {
        format!("key{i:05}").into_bytes()
    }

    fn value(rng: &mut Rng) -> Value {
        if rng.below(4) == 0 {
            let mut l = List::new();
            for i in 0..1 + rng.below(5) {
                l.push(End::Tail, format!("e{i}").as_bytes(), Fill::default());
            }
            Value::List(l)
        } else {
            Value::Str(Str::from_bytes(format!("v{}", rng.below(1000)).as_bytes()))
        }
    }

    fn model_of(db: &Db, now_ms: u64) -> Model {
        let mut m = Model::new();
        db.for_each_key(now_ms, |k, item, t| {
            m.insert(k.to_vec(), (item.value.clone(), t));
        });
        m
    }

    /// Keys in `FILLED` slots (about twelve chunks), with free slots among them and deadlines
    /// (some past at `NOW_MS`).
    fn filled(rng: &mut Rng) -> Db {
        let mut db = Db::default();
        for i in 0..FILLED {
            let t = match i % 7 {
                0 => Some(500),
                1 | 2 => Some(NOW_MS + rng.below(400) as u64),
                _ => None,
            };
            db.insert(&key(i), Entry::with_expiry(value(rng), t));
        }
        for i in (0..FILLED).step_by(11) {
            db.remove(&key(i));
        }
        db
    }

    /// One random write of any kind (or a read that may expire a key).
    fn random_op(db: &mut Db, rng: &mut Rng, clock: &mut u64) {
        let k = key(rng.below(FILLED * 5 / 4));
        match rng.below(9) {
            0 => {
                let t = (rng.below(3) == 0).then(|| *clock + rng.below(300) as u64);
                db.insert(&k, Entry::with_expiry(value(rng), t));
            }
            1 => {
                db.remove(&k);
            }
            2 => {
                if let Some(item) = db.get_mut(&k, *clock) {
                    match &mut item.value {
                        Value::List(l) => l.push(End::Head, b"pushed", Fill::default()),
                        v => *v = Value::Str(Str::from_bytes(b"changed in place")),
                    }
                }
            }
            3 => {
                let t = (rng.below(2) == 0).then(|| *clock + rng.below(300) as u64);
                db.set_expire(&k, t);
            }
            4 => {
                *clock += rng.below(20) as u64;
                db.get(&k, *clock);
            }
            5 => {
                db.active_expire(rng, *clock, 2);
            }
            6 => db.set_value_keep_ttl(&k, value(rng)),
            7 => {
                db.random_key(rng, *clock);
            }
            _ => {
                for i in 0..20 {
                    db.insert(
                        format!("new{}-{i}", rng.below(1 << 20)).as_bytes(),
                        Entry::new(value(rng)),
                    );
                }
            }
        }
    }

    fn read_file(file: &[u8], db_index: usize) -> Model {
        let mut r = FileReader::new(file).unwrap();
        let mut m = Model::new();
        while let Some(e) = r.next_entry().unwrap() {
            assert_eq!(e.db, db_index);
            let v = e.decode(&ShardConfig::default()).unwrap();
            assert!(
                m.insert(e.key, (v, e.expire_ms)).is_none(),
                "key written twice"
            );
        }
        m
    }

    /// Runs a snapshot to the end with `ops` random writes between steps of one chunk; returns
    /// the file and the largest piece taken.
    fn run_snapshot(
        db: &mut Db,
        rng: &mut Rng,
        ops: usize,
        mut between: impl FnMut(&mut Db),
    ) -> (Vec<u8>, usize) {
        let mut w = FileWriter::new(&Aux::default());
        let mut clock = NOW_MS;
        let mut largest = 0;
        db.begin_snapshot(3, NOW_MS);
        loop {
            for _ in 0..rng.below(ops + 1) {
                random_op(db, rng, &mut clock);
            }
            between(db);
            let more = db.snapshot_step(1);
            let piece = db.snapshot_take();
            largest = largest.max(piece.len());
            w.append(&piece);
            if !more {
                break;
            }
        }
        assert!(!db.snapshot_active());
        w.finish();
        (w.take_pending(), largest)
    }

    #[test]
    fn snapshot_is_the_state_at_its_start() {
        // Few writes per step leave chunks unsaved for long, so each kind of write in turn
        // meets unsaved chunks; many writes per step save most chunks ahead of the steps.
        for (seed, ops) in [1, 2, 3, 5, 10, 30, 400].into_iter().enumerate() {
            let mut rng = Rng::new(seed as u64);
            let mut db = filled(&mut rng);
            let before = model_of(&db, NOW_MS);
            let (file, _) = run_snapshot(&mut db, &mut rng, ops, |_| {});
            assert_eq!(read_file(&file, 3), before, "seed {seed}");
            // Once it is over, writes cost nothing and produce nothing.
            db.insert(b"after", Entry::new(Value::Str(Str::from_bytes(b"x"))));
            assert!(db.snapshot_take().is_empty());
        }
    }

    #[test]
    fn slot_index_follows_adds_and_removes() {
        let mut db = Db::default();
        let slot = |k: &str| crate::slot::key_slot(k.as_bytes()).0;
        db.insert(b"{a}1", Entry::new(Value::Str(Str::from_bytes(b"x"))));
        // Indexed on first use, from the keys present.
        assert_eq!(db.count_in_slot(slot("a")), 1);
        db.insert(b"{a}2", Entry::new(Value::Str(Str::from_bytes(b"x"))));
        db.insert(b"{b}1", Entry::new(Value::Str(Str::from_bytes(b"x"))));
        assert_eq!(db.count_in_slot(slot("a")), 2);
        assert_eq!(db.count_in_slot(slot("b")), 1);
        let mut keys: Vec<Vec<u8>> = db
            .keys_in_slot(slot("a"), 10)
            .iter()
            .map(|k| k.to_vec())
            .collect();
        keys.sort();
        assert_eq!(keys, vec![b"{a}1".to_vec(), b"{a}2".to_vec()]);
        assert_eq!(db.keys_in_slot(slot("a"), 1).len(), 1);
        db.remove(b"{a}1");
        assert_eq!(db.count_in_slot(slot("a")), 1);
        db.clear();
        assert_eq!(db.count_in_slot(slot("a")), 0);
        db.insert(b"{a}3", Entry::new(Value::Str(Str::from_bytes(b"x"))));
        assert_eq!(db.count_in_slot(slot("a")), 1);
    }

    #[test]
    fn clear_during_a_snapshot_keeps_the_old_keys() {
        let mut rng = Rng::new(42);
        let mut db = filled(&mut rng);
        let before = model_of(&db, NOW_MS);
        let mut steps = 0;
        let (file, _) = run_snapshot(&mut db, &mut rng, 50, |db| {
            steps += 1;
            if steps == 2 || steps == 4 {
                db.clear();
            }
        });
        assert_eq!(read_file(&file, 3), before);
    }

    #[test]
    fn pending_output_stays_bounded() {
        let mut rng = Rng::new(7);
        let mut db = Db::default();
        let v = Value::Str(Str::from_bytes(b"value-of-fixed-size"));
        for i in 0..20 * CHUNK {
            db.insert(&key(i), Entry::new(v.clone()));
        }
        let mut section = crate::rdb::file::Section::new(0, 0, 0);
        section.entry(&key(0), &v, None, None);
        let header_and_one = section.pending_len();
        section.entry(&key(1), &v, None, None);
        let record_len = section.pending_len() - header_and_one;
        let mut pieces = 0;
        let mut w = FileWriter::new(&Aux::default());
        let mut largest = 0;
        db.begin_snapshot(0, NOW_MS);
        loop {
            // Writes to random old keys, each of which may save a chunk ahead of the steps.
            for _ in 0..3 {
                db.set_value_keep_ttl(&key(rng.below(20 * CHUNK)), v.clone());
            }
            let more = db.snapshot_step(1);
            let piece = db.snapshot_take();
            pieces += usize::from(!piece.is_empty());
            largest = largest.max(piece.len());
            w.append(&piece);
            if !more {
                break;
            }
        }
        // At most the step's chunk and three written-to chunks per piece, plus framing.
        assert!(largest <= 4 * CHUNK * record_len + 16, "{largest}");
        assert!(pieces >= 5, "{pieces}");
        w.finish();
        assert_eq!(read_file(&w.take_pending(), 0).len(), 20 * CHUNK);
    }
}
