//! Memory limits and eviction, as Redis 7.0 does them (`evict.c`): per-key access clocks (LRU
//! or LFU, 24 bits a key), the eviction pool of the best candidates among sampled keys, and the
//! loop that deletes keys until the shard is back under `maxmemory`.
//!
//! Clocks are kept only while an LRU or LFU policy is selected: under the default `noeviction`
//! (and the random and TTL policies) a key costs no byte more and a lookup no work more than
//! one branch. They live beside the slab, one 3-byte cell per slot (see [`Clocks`]), not in the
//! 64-byte slot itself, which has no spare byte.
//!
//! The limit is checked against [`Shard::used_memory`], a function the server provides; the
//! bytes one deletion freed come from [`Shard::freed_memory`] (the engine reads no allocator of
//! its own). Each shard evicts only from its own databases, sampling them as Redis samples its
//! one keyspace, and frees its 1/nshards share of what the process is over the limit by.

use crate::cmd::Lookup;
use crate::keyspace::{Db, Key};
use crate::limits::{EVICTION_POOL_SIZE, EVICTION_TRIES_MAX};
use crate::notify::class;
use crate::{Error, Result, Shard};

/// Redis's `LRU_CLOCK_MAX`: the LRU clock is 24 bits of seconds.
const LRU_CLOCK_MAX: u32 = (1 << 24) - 1;
/// Redis's `LFU_INIT_VAL`: the counter a new key starts with, so it is not evicted at once.
pub const LFU_INIT_VAL: u8 = 5;

/// `maxmemory-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    NoEviction,
    AllkeysLru,
    VolatileLru,
    AllkeysLfu,
    VolatileLfu,
    AllkeysRandom,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    /// The policy named as in `maxmemory-policy`.
    pub fn parse(name: &str) -> Option<Policy> {
        Some(match name.to_ascii_lowercase().as_str() {
            "noeviction" => Policy::NoEviction,
            "allkeys-lru" => Policy::AllkeysLru,
            "volatile-lru" => Policy::VolatileLru,
            "allkeys-lfu" => Policy::AllkeysLfu,
            "volatile-lfu" => Policy::VolatileLfu,
            "allkeys-random" => Policy::AllkeysRandom,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            _ => return None,
        })
    }

    /// Whether keys are ranked by access frequency.
    pub fn lfu(self) -> bool {
        matches!(self, Policy::AllkeysLfu | Policy::VolatileLfu)
    }

    /// The clocks this policy ranks keys by, if any.
    pub fn clock_kind(self) -> Option<ClockKind> {
        match self {
            Policy::AllkeysLru | Policy::VolatileLru => Some(ClockKind::Lru),
            Policy::AllkeysLfu | Policy::VolatileLfu => Some(ClockKind::Lfu),
            _ => None,
        }
    }

    /// Whether only keys with a deadline may be evicted.
    fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }
}

/// The memory settings of a shard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryConfig {
    /// `maxmemory`, bytes (0: no limit).
    pub maxmemory: u64,
    pub policy: Policy,
    /// `maxmemory-samples`: keys sampled per database per pool refresh.
    pub samples: usize,
    /// `maxmemory-eviction-tenacity`, 0..=100: how long one eviction run may take.
    pub tenacity: u32,
    /// `lfu-log-factor`: how slowly the LFU counter grows.
    pub lfu_log_factor: u32,
    /// `lfu-decay-time`: minutes for the LFU counter to lose one (0: never).
    pub lfu_decay_time: u32,
}

impl Default for MemoryConfig {
    /// Redis 7.0's defaults.
    fn default() -> Self {
        MemoryConfig {
            maxmemory: 0,
            policy: Policy::NoEviction,
            samples: 5,
            tenacity: 10,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
        }
    }
}

impl MemoryConfig {
    /// Whether a command needs the shard's memory hook at all: a limit is set, or clocks are
    /// kept. False under the defaults, so the hook costs one branch then.
    #[inline]
    pub fn active(&self) -> bool {
        // One test for both: a limit is set, or the policy keeps clocks.
        let clocks = matches!(
            self.policy,
            Policy::AllkeysLru | Policy::VolatileLru | Policy::AllkeysLfu | Policy::VolatileLfu
        );
        self.maxmemory | clocks as u64 != 0
    }

    /// How long one eviction run may take, µs (Redis's `evictionTimeLimitUs`); `None`: no
    /// limit (tenacity 100).
    fn time_limit_us(&self) -> Option<u64> {
        let t = self.tenacity.min(100) as u64;
        if t <= 10 {
            Some(50 * t)
        } else if t < 100 {
            // Geometric growth from 500 µs at 10 up to about 2 minutes at 99, as Redis does.
            Some((500.0 * 1.15f64.powi(t as i32 - 10)) as u64)
        } else {
            None
        }
    }
}

/// Which kind of clock the cells hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockKind {
    /// Seconds (24 bits, wrapping), the time of the last access.
    Lru,
    /// Minutes of the last decrement (16 bits, wrapping) above an 8-bit logarithmic counter.
    Lfu,
}

/// The access clocks of one database: 3 bytes per slot id, in chunks that follow the slab's.
#[derive(Debug)]
pub struct Clocks {
    pub kind: ClockKind,
    lfu_log_factor: u32,
    lfu_decay_time: u32,
    /// The time of the latest lookup, Unix ms: what new keys are stamped with.
    pub now_ms: u64,
    /// xorshift state for the LFU counter's random increments.
    seed: u64,
    cells: Vec<Box<[[u8; 3]]>>,
}

fn lru_clock(now_ms: u64) -> u32 {
    (now_ms / 1000) as u32 & LRU_CLOCK_MAX
}

fn lfu_minutes(now_ms: u64) -> u32 {
    (now_ms / 60_000) as u32 & 0xFFFF
}

impl Clocks {
    pub fn new(cfg: &MemoryConfig, kind: ClockKind, now_ms: u64) -> Clocks {
        Clocks {
            kind,
            lfu_log_factor: cfg.lfu_log_factor,
            lfu_decay_time: cfg.lfu_decay_time,
            now_ms,
            seed: 0x2545_F491_4F6C_DD1D,
            cells: Vec::new(),
        }
    }

    /// Takes new settings; cells keep their bits (as in Redis, a switch between LRU and LFU
    /// reads the old bits the new way until keys are touched again).
    pub fn configure(&mut self, cfg: &MemoryConfig, kind: ClockKind) {
        self.kind = kind;
        self.lfu_log_factor = cfg.lfu_log_factor;
        self.lfu_decay_time = cfg.lfu_decay_time;
    }

    /// The same settings, no cells (after the database is emptied).
    pub fn emptied(&self) -> Clocks {
        Clocks {
            cells: Vec::new(),
            ..*self
        }
    }

    /// The raw 24-bit cell of slot `id` (0 if never set).
    pub fn get(&self, id: u32) -> u32 {
        let (c, i) = (
            id as usize / crate::keyspace::CHUNK,
            id as usize % crate::keyspace::CHUNK,
        );
        self.cells
            .get(c)
            .and_then(|c| c.get(i))
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// Sets the raw cell of slot `id`.
    pub fn set(&mut self, id: u32, v: u32) {
        let (c, i) = (
            id as usize / crate::keyspace::CHUNK,
            id as usize % crate::keyspace::CHUNK,
        );
        while self.cells.len() <= c {
            self.cells
                .push(vec![[0u8; 3]; crate::keyspace::CHUNK].into_boxed_slice());
        }
        if let Some(cell) = self.cells.get_mut(c).and_then(|c| c.get_mut(i)) {
            let b = v.to_le_bytes();
            *cell = [b[0], b[1], b[2]];
        }
    }

    /// The cell for a key created now (Redis's `createObject`).
    pub fn fresh(&self) -> u32 {
        match self.kind {
            ClockKind::Lru => lru_clock(self.now_ms),
            ClockKind::Lfu => lfu_minutes(self.now_ms) << 8 | LFU_INIT_VAL as u32,
        }
    }

    /// Records an access to slot `id` (Redis's `lookupKey`: the LRU clock, or `updateLFU`).
    #[inline]
    pub fn touch(&mut self, id: u32, now_ms: u64) {
        self.now_ms = now_ms;
        let v = match self.kind {
            ClockKind::Lru => lru_clock(now_ms),
            ClockKind::Lfu => {
                let counter = self.lfu_decayed(self.get(id));
                let counter = self.lfu_log_incr(counter);
                lfu_minutes(now_ms) << 8 | counter as u32
            }
        };
        self.set(id, v);
    }

    /// The LFU counter of a cell after its decay (Redis's `LFUDecrAndReturn`).
    fn lfu_decayed(&self, cell: u32) -> u8 {
        let ldt = cell >> 8;
        let counter = (cell & 0xFF) as u8;
        let now = lfu_minutes(self.now_ms);
        let elapsed = if now >= ldt {
            now - ldt
        } else {
            65535 - ldt + now
        };
        let periods = elapsed.checked_div(self.lfu_decay_time).unwrap_or(0);
        counter.saturating_sub(periods.min(255) as u8)
    }

    /// Redis's `LFULogIncr`: one more with probability 1 / ((counter - 5) * factor + 1).
    fn lfu_log_incr(&mut self, counter: u8) -> u8 {
        if counter == 255 {
            return 255;
        }
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let r = (self.seed >> 11) as f64 / (1u64 << 53) as f64;
        let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
        let p = 1.0 / (base * self.lfu_log_factor as f64 + 1.0);
        if r < p {
            counter + 1
        } else {
            counter
        }
    }

    /// OBJECT FREQ of slot `id`.
    pub fn freq(&self, id: u32) -> u8 {
        self.lfu_decayed(self.get(id))
    }

    /// OBJECT IDLETIME of slot `id` at `now_ms`, ms (Redis's `estimateObjectIdleTime`).
    pub fn idle_ms(&self, id: u32, now_ms: u64) -> u64 {
        let now = lru_clock(now_ms);
        let then = self.get(id) & LRU_CLOCK_MAX;
        let secs = if now >= then {
            now - then
        } else {
            now + (LRU_CLOCK_MAX - then)
        };
        secs as u64 * 1000
    }

    /// What an RDB file records of slot `id`'s clock at `now_ms`: its idle seconds under LRU,
    /// its (decayed) counter under LFU, as Redis saves them.
    pub fn rdb_clock(&self, id: u32, now_ms: u64) -> crate::rdb::file::KeyClock {
        match self.kind {
            ClockKind::Lru => crate::rdb::file::KeyClock::Idle(self.idle_ms(id, now_ms) / 1000),
            ClockKind::Lfu => crate::rdb::file::KeyClock::Freq(self.freq(id)),
        }
    }

    /// Sets slot `id` as RESTORE's IDLETIME or FREQ asks (Redis's `objectSetLRUOrLFU`).
    pub fn set_restored(&mut self, id: u32, idle_s: Option<i64>, freq: Option<i64>) {
        match (self.kind, freq, idle_s) {
            (ClockKind::Lfu, Some(f), _) => {
                let v = lfu_minutes(self.now_ms) << 8 | f.clamp(0, 255) as u32;
                self.set(id, v);
            }
            (ClockKind::Lru, None, Some(idle)) => {
                let now = lru_clock(self.now_ms) as i64;
                let mut abs = now - idle.clamp(0, LRU_CLOCK_MAX as i64);
                if abs < 0 {
                    abs += LRU_CLOCK_MAX as i64;
                }
                self.set(id, abs as u32);
            }
            _ => {}
        }
    }

    /// The eviction score of slot `id`: higher is evicted first (idle ms, or 255 - frequency).
    fn score(&self, id: u32) -> u64 {
        match self.kind {
            ClockKind::Lru => self.idle_ms(id, self.now_ms),
            ClockKind::Lfu => 255 - self.freq(id) as u64,
        }
    }
}

/// One candidate of the eviction pool.
#[derive(Debug, Clone)]
struct Candidate {
    score: u64,
    db: usize,
    key: Key,
}

/// Redis's eviction pool: the best candidates seen in recent samples, by ascending score.
/// It outlives one eviction run, so every run starts from what earlier samples found.
#[derive(Debug, Default)]
pub struct Pool {
    entries: Vec<Candidate>,
}

impl Pool {
    /// Offers a sampled key; kept if the pool has room or it beats the worst entry.
    fn offer(&mut self, score: u64, db: usize, key: &[u8]) {
        if self
            .entries
            .iter()
            .any(|c| c.db == db && c.key.as_slice() == key)
        {
            return;
        }
        let full = self.entries.len() >= EVICTION_POOL_SIZE;
        if full && self.entries.first().is_some_and(|c| c.score >= score) {
            return;
        }
        let at = self.entries.partition_point(|c| c.score < score);
        self.entries.insert(
            at,
            Candidate {
                score,
                db,
                key: key.into(),
            },
        );
        if self.entries.len() > EVICTION_POOL_SIZE {
            self.entries.remove(0);
        }
    }

    /// Takes the best candidate.
    fn pop(&mut self) -> Option<Candidate> {
        self.entries.pop()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What an eviction run ended with (Redis's `EVICT_OK` / `EVICT_RUNNING` / `EVICT_FAIL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Under the limit.
    Ok,
    /// Still over, out of time: commands run meanwhile; the next run goes on.
    Running,
    /// Over the limit and nothing (more) can be evicted: deny-oom commands are refused.
    Fail,
}

/// Redis's reply to a deny-oom command while over `maxmemory` with nothing to evict.
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// How a shard reads its memory use. The server measures; the engine reads no allocator.
#[derive(Debug, Clone, Copy)]
pub struct MemoryProbe {
    /// The bytes in use that `maxmemory` limits, as last read, and an id of that reading (it
    /// changes whenever the figure is read afresh).
    pub used: fn() -> (u64, u64),
    /// A running count of the bytes this shard's thread has freed: the difference across one
    /// deletion is what the deletion freed.
    pub freed: fn() -> u64,
    /// A clock in µs, for the time limit of one eviction run.
    pub now_us: fn() -> u64,
}

impl Default for MemoryProbe {
    /// Measures nothing: never over any limit.
    fn default() -> Self {
        MemoryProbe {
            used: || (0, 0),
            freed: || 0,
            now_us: || 0,
        }
    }
}

/// Runs a command under the memory settings (Redis's check in `processCommand`): keeps the
/// clocks in step with the policy, evicts while over `maxmemory`, and refuses deny-oom commands
/// when nothing more can be evicted. A command a script calls neither evicts nor is checked
/// again: it is refused only if the script began over the limit (Redis's pre-command OOM state).
pub fn guarded(
    sh: &mut Shard,
    cmd: Lookup,
    db: usize,
    now_ms: u64,
    run: impl FnOnce(&mut Shard) -> Result<()>,
) -> Result<()> {
    let denyoom = cmd.spec.flags & crate::cmd::flag::DENYOOM != 0;
    if sh.evict_depth > 0 {
        if sh.oom && denyoom {
            return Err(Error::Other(OOM.into()));
        }
        return run(sh);
    }
    let kind = sh.config.memory.policy.clock_kind();
    if sh.dbs.get(db).map(|d| d.clocks().map(|c| c.kind)) != Some(kind) {
        configure(sh, now_ms);
    }
    if let Some(c) = sh.dbs.get_mut(db).and_then(|d| d.clocks_mut()) {
        c.now_ms = now_ms;
    }
    sh.oom = sh.config.memory.maxmemory != 0 && perform(sh, now_ms) == Outcome::Fail;
    // A part of a command split over shards was checked once, where the command came in.
    if sh.oom && denyoom && sh.counting {
        sh.stats.count_rejected(cmd);
        return Err(Error::Other(OOM.into()));
    }
    sh.evict_depth += 1;
    let r = run(sh);
    sh.evict_depth -= 1;
    r
}

/// How long the shard has been over `maxmemory` without evicting its way back under, µs
/// (INFO's `current_eviction_exceeded_time`).
pub fn exceeded_now_us(sh: &Shard, now_us: u64) -> u64 {
    sh.evict_over_since_us
        .map_or(0, |since| now_us.saturating_sub(since))
}

/// Whether the shard is over `maxmemory` with nothing left to evict, evicting first as before
/// any command: for commands queued in MULTI, which Redis refuses then.
pub fn out_of_memory(sh: &mut Shard, now_ms: u64) -> bool {
    if sh.config.memory.maxmemory == 0 {
        return false;
    }
    sh.oom = perform(sh, now_ms) == Outcome::Fail;
    sh.oom
}

/// Whether a script declaring its flags (a shebang script or a function) may start: one that
/// may write and is not `allow-oom` is refused while over the limit, as Redis refuses it; an
/// `allow-oom` one may then call deny-oom commands. Scripts without a shebang are checked
/// command by command instead (see [`guarded`]).
pub fn script_may_run(sh: &mut Shard, flags: u32) -> Result<()> {
    use crate::script::sflag;
    if flags & sflag::ALLOW_OOM != 0 {
        sh.oom = false;
    } else if sh.oom && flags & sflag::NO_WRITES == 0 {
        return Err(Error::Other(OOM.into()));
    }
    Ok(())
}

/// Applies the memory settings: every database keeps clocks of the kind the policy needs, or
/// none, and without a limit nothing is out of memory. Cheap when nothing changed.
pub fn configure(sh: &mut Shard, now_ms: u64) {
    let cfg = sh.config.memory;
    if cfg.maxmemory == 0 {
        sh.oom = false;
    }
    let kind = cfg.policy.clock_kind();
    for db in &mut sh.dbs {
        db.set_clocks(&cfg, kind, now_ms);
    }
}

/// Picks the next key to evict under a sampling policy, refreshing the pool from every
/// database that has candidates. `None`: no database has any.
fn pick_pooled(sh: &mut Shard, volatile: bool, now_ms: u64) -> Option<(usize, Key)> {
    let cfg = sh.config.memory;
    for _ in 0..EVICTION_TRIES_MAX {
        let mut total = 0;
        let Shard {
            dbs,
            rng,
            evict_pool,
            ..
        } = sh;
        for (i, db) in dbs.iter_mut().enumerate() {
            let n = if volatile {
                db.volatile_len()
            } else {
                db.len()
            };
            if n == 0 {
                continue;
            }
            total += n;
            if let Some(c) = db.clocks_mut() {
                c.now_ms = now_ms;
            }
            db.sample(
                rng,
                volatile,
                cfg.samples.max(1),
                |key, id, deadline, clocks| {
                    let score = match (cfg.policy, clocks) {
                        (Policy::VolatileTtl, _) => u64::MAX - deadline.unwrap_or(u64::MAX),
                        (_, Some(c)) => c.score(id),
                        (_, None) => 0,
                    };
                    evict_pool.offer(score, i, key);
                },
            );
        }
        if total == 0 {
            return None;
        }
        // The best candidate still there (and still eligible) wins; stale ones are dropped.
        while let Some(c) = sh.evict_pool.pop() {
            let db = &sh.dbs[c.db];
            let eligible = if volatile {
                db.expire_at(&c.key).is_some()
            } else {
                db.peek(&c.key, 0).is_some()
            };
            if eligible {
                return Some((c.db, c.key));
            }
        }
    }
    None
}

/// Picks a random key to evict (the random policies), visiting the databases in turn.
fn pick_random(sh: &mut Shard, volatile: bool, now_ms: u64) -> Option<(usize, Key)> {
    let ndb = sh.dbs.len();
    for k in 0..ndb {
        let i = (sh.evict_next_db + k) % ndb;
        let Shard { dbs, rng, .. } = sh;
        let key = if volatile {
            dbs[i].random_volatile_key(rng)
        } else {
            dbs[i].random_key(rng, now_ms)
        };
        if let Some(key) = key {
            sh.evict_next_db = i + 1;
            return Some((i, key));
        }
    }
    None
}

/// Deletes one evicted key with everything Redis does for it: the `evicted_keys` count, the
/// `evicted` event, a DEL in the propagation log, and WATCH seeing the key as changed.
fn evict_key(sh: &mut Shard, db: usize, key: Key) {
    if sh.dbs[db].remove(&key).is_none() {
        return;
    }
    sh.stats.evicted_keys += 1;
    sh.propagate(db, &[b"DEL", key.as_slice()]);
    sh.notify(class::EVICTED, "evicted", db, &key);
    if !(sh.watched.is_empty() && sh.waited.is_empty()) {
        sh.touch_key((db, key));
    }
}

/// The memory in use less what this shard's evictions freed since the figure was read: the
/// figure may be some milliseconds old, and a shard must not evict again for an excess it has
/// freed already.
fn used_now(sh: &mut Shard) -> u64 {
    let (bytes, reading) = (sh.memory_probe.used)();
    if sh.evict_credit.0 != reading {
        sh.evict_credit = (reading, 0);
    }
    bytes.saturating_sub(sh.evict_credit.1)
}

/// Frees memory until the shard is under `maxmemory` (Redis's `performEvictions`), and times
/// the stretches in which it could not (ran out of time or of keys), as Redis does for INFO's
/// `total_eviction_exceeded_time`.
pub fn perform(sh: &mut Shard, now_ms: u64) -> Outcome {
    if crate::keyspace::expiry_paused(now_ms) {
        // CLIENT PAUSE: nothing is evicted meanwhile (Redis's rule too).
        return Outcome::Ok;
    }
    let result = evict_until_under(sh, now_ms);
    match result {
        Outcome::Ok => {
            if let Some(since) = sh.evict_over_since_us.take() {
                let now_us = (sh.memory_probe.now_us)();
                sh.stats.eviction_exceeded_us += now_us.saturating_sub(since);
            }
        }
        Outcome::Running | Outcome::Fail => {
            if sh.evict_over_since_us.is_none() {
                sh.evict_over_since_us = Some((sh.memory_probe.now_us)());
            }
        }
    }
    result
}

fn evict_until_under(sh: &mut Shard, now_ms: u64) -> Outcome {
    let cfg = sh.config.memory;
    if cfg.maxmemory == 0 {
        return Outcome::Ok;
    }
    let used = used_now(sh);
    if used <= cfg.maxmemory {
        return Outcome::Ok;
    }
    if cfg.policy == Policy::NoEviction {
        return Outcome::Fail;
    }
    let start_us = (sh.memory_probe.now_us)();
    // Every shard over the limit frees its share of the excess from its own keys: the limit is
    // split evenly, and the shards together free what the process is over by.
    let to_free = (used - cfg.maxmemory).div_ceil(sh.nshards.max(1) as u64);
    let volatile = cfg.policy.volatile();
    let random = matches!(cfg.policy, Policy::AllkeysRandom | Policy::VolatileRandom);
    let mut freed: u64 = 0;
    let mut keys = 0u32;
    let result = loop {
        if freed >= to_free {
            break Outcome::Ok;
        }
        let picked = if random {
            pick_random(sh, volatile, now_ms)
        } else {
            pick_pooled(sh, volatile, now_ms)
        };
        let Some((db, key)) = picked else {
            break Outcome::Fail;
        };
        let before = (sh.memory_probe.freed)();
        evict_key(sh, db, key);
        // A wrapping difference: negative (more allocated than freed) counts as nothing.
        let delta = (sh.memory_probe.freed)().wrapping_sub(before);
        freed += u64::try_from(delta as i64).unwrap_or(0);
        keys += 1;
        // Check the clock every 16 keys, as Redis does.
        if keys.is_multiple_of(16) {
            if let Some(limit) = cfg.time_limit_us() {
                if (sh.memory_probe.now_us)().saturating_sub(start_us) > limit {
                    break Outcome::Running;
                }
            }
        }
    };
    sh.evict_credit.1 += freed;
    if result == Outcome::Fail && keys > 0 && used_now(sh) <= cfg.maxmemory {
        // Freed enough after all (the run's own estimate was short).
        return Outcome::Ok;
    }
    result
}

impl Db {
    /// The clocks of this database, if it keeps any.
    pub fn clocks(&self) -> Option<&Clocks> {
        self.clocks.as_deref()
    }

    pub fn clocks_mut(&mut self) -> Option<&mut Clocks> {
        self.clocks.as_deref_mut()
    }

    /// Keeps clocks of `kind` (or none), stamping every key as just used when they start.
    pub fn set_clocks(&mut self, cfg: &MemoryConfig, kind: Option<ClockKind>, now_ms: u64) {
        match (&mut self.clocks, kind) {
            (None, None) => {}
            (Some(_), None) => self.clocks = None,
            (Some(c), Some(k)) => c.configure(cfg, k),
            (None, Some(k)) => {
                let mut c = Clocks::new(cfg, k, now_ms);
                let fresh = c.fresh();
                self.for_each_id(|id| c.set(id, fresh));
                self.clocks = Some(Box::new(c));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::Entry;
    use crate::types::Value;

    fn str_value(s: &str) -> Value {
        Value::Str(crate::types::string::Str::from_bytes(s.as_bytes()))
    }

    fn shard_with(policy: Policy, maxmemory: u64) -> Shard {
        let mut sh = Shard::new(0, 1, 7);
        sh.config.memory = MemoryConfig {
            maxmemory,
            policy,
            ..MemoryConfig::default()
        };
        configure(&mut sh, 0);
        sh
    }

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let cfg = MemoryConfig::default();
        let mut c = Clocks::new(&cfg, ClockKind::Lfu, 0);
        c.set(0, c.fresh());
        assert_eq!(c.freq(0), LFU_INIT_VAL);
        for _ in 0..100 {
            c.touch(0, 0);
        }
        let after_100 = c.freq(0);
        for _ in 0..900 {
            c.touch(0, 0);
        }
        let after_1k = c.freq(0);
        // Redis's table for factor 10: 100 hits make about 10, 1000 hits about 18 (the
        // counter grows with the square root of the hits).
        assert!((8..=14).contains(&after_100), "{after_100}");
        assert!((13..=24).contains(&after_1k), "{after_1k}");
        // One minute of decay time takes one off per minute idle.
        c.now_ms = 10 * 60_000;
        assert_eq!(c.freq(0), after_1k - 10);
        c.now_ms = 1000 * 60_000;
        assert_eq!(c.freq(0), 0);
    }

    #[test]
    fn lru_idle_time_wraps_with_the_24_bit_clock() {
        let cfg = MemoryConfig::default();
        let mut c = Clocks::new(&cfg, ClockKind::Lru, 5_000);
        c.touch(3, 5_000);
        assert_eq!(c.idle_ms(3, 65_000), 60_000);
        c.set(4, LRU_CLOCK_MAX - 10);
        assert_eq!(c.idle_ms(4, 20_000), 30_000);
        c.now_ms = 20_000;
        c.set_restored(5, Some(100), None);
        assert_eq!(c.idle_ms(5, 20_000), 100_000);
    }

    #[test]
    fn pool_keeps_the_best_sixteen() {
        let mut p = Pool::default();
        for i in 0..100u64 {
            p.offer(i * 7 % 100, 0, format!("k{i}").as_bytes());
        }
        assert_eq!(p.len(), EVICTION_POOL_SIZE);
        let best: Vec<u64> = std::iter::from_fn(|| p.pop().map(|c| c.score)).collect();
        assert_eq!(best, (84..100).rev().collect::<Vec<_>>());
    }

    fn fill(sh: &mut Shard, n: usize, ttl_every: usize) {
        for i in 0..n {
            let e = if ttl_every != 0 && i % ttl_every == 0 {
                Entry::with_expiry(str_value("v"), Some(1_000_000 + i as u64))
            } else {
                Entry::new(str_value("v"))
            };
            sh.dbs[0].insert(format!("k{i}").as_bytes(), e);
        }
    }

    /// Evicts `n` keys with the shard believing it is over its limit until then.
    fn evict_n(sh: &mut Shard, n: usize, now_ms: u64) -> Vec<Vec<u8>> {
        let before: std::collections::HashSet<Vec<u8>> = keys_of(sh);
        for _ in 0..n {
            let volatile = sh.config.memory.policy.volatile();
            let picked = match sh.config.memory.policy {
                Policy::AllkeysRandom | Policy::VolatileRandom => pick_random(sh, volatile, now_ms),
                _ => pick_pooled(sh, volatile, now_ms),
            };
            let Some((db, key)) = picked else { break };
            evict_key(sh, db, key);
        }
        let after = keys_of(sh);
        before.difference(&after).cloned().collect()
    }

    fn keys_of(sh: &mut Shard) -> std::collections::HashSet<Vec<u8>> {
        let mut out = std::collections::HashSet::new();
        sh.dbs[0].for_each_key(0, |k, _, _| {
            out.insert(k.to_vec());
        });
        out
    }

    #[test]
    fn evict_lru_prefers_the_idle_keys() {
        let mut sh = shard_with(Policy::AllkeysLru, 1);
        fill(&mut sh, 1000, 0);
        // Keys k0..k499 are touched an hour later: the other half is idle for an hour.
        let later = 3_600_000;
        for i in 0..500 {
            sh.dbs[0].get(format!("k{i}").as_bytes(), later);
        }
        let gone = evict_n(&mut sh, 200, later);
        assert_eq!(gone.len(), 200);
        let hot = gone.iter().filter(|k| key_number(k) < 500).count();
        // Sampling 5 at a time with a pool of 16: a hot key wins only if no idle one is near.
        assert!(hot <= 5, "{hot} hot keys evicted");
        assert_eq!(sh.stats.evicted_keys, 200);
    }

    /// The number in a test key `k<n>`.
    fn key_number(k: &[u8]) -> usize {
        std::str::from_utf8(&k[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn evict_lfu_prefers_the_rarely_used_keys() {
        let mut sh = shard_with(Policy::AllkeysLfu, 1);
        fill(&mut sh, 1000, 0);
        for _ in 0..50 {
            for i in 0..100 {
                sh.dbs[0].get(format!("k{i}").as_bytes(), 0);
            }
        }
        let gone = evict_n(&mut sh, 500, 0);
        let hot = gone.iter().filter(|k| key_number(k) < 100).count();
        assert_eq!(hot, 0);
    }

    #[test]
    fn evict_volatile_ttl_picks_the_soonest_deadlines() {
        let mut sh = shard_with(Policy::VolatileTtl, 1);
        fill(&mut sh, 1000, 2);
        let gone = evict_n(&mut sh, 50, 0);
        assert_eq!(gone.len(), 50);
        // Deadlines grow with the key number: the evicted keys are among the earliest.
        let late = gone.iter().filter(|k| key_number(k) > 500).count();
        assert!(late <= 3, "{late}");
    }

    #[test]
    fn volatile_policies_never_touch_keys_without_a_deadline() {
        for policy in [
            Policy::VolatileLru,
            Policy::VolatileLfu,
            Policy::VolatileRandom,
            Policy::VolatileTtl,
        ] {
            let mut sh = shard_with(policy, 1);
            fill(&mut sh, 300, 3);
            let gone = evict_n(&mut sh, 1000, 0);
            assert_eq!(gone.len(), 100, "{policy:?}");
            for k in &gone {
                let n: usize = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
                assert_eq!(n % 3, 0, "{policy:?} evicted {n}");
            }
            assert_eq!(sh.dbs[0].len(), 200);
        }
    }

    #[test]
    fn evict_perform_stops_under_the_limit_and_fails_when_nothing_is_left() {
        thread_local! {
            static USED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
            static FREED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        }
        let mut sh = shard_with(Policy::VolatileRandom, 10);
        fill(&mut sh, 20, 2);
        // Every key costs 1 byte of "memory": each deletion frees one.
        USED.with(|u| u.set(20));
        sh.memory_probe.used = || (USED.with(|u| u.get()), 0);
        sh.memory_probe.freed = || {
            FREED.with(|f| f.set(f.get() + 1));
            FREED.with(|f| f.get())
        };
        assert_eq!(perform(&mut sh, 0), Outcome::Ok);
        assert_eq!(sh.dbs[0].len(), 10);
        // 10 freed already count until the figure is read afresh.
        USED.with(|u| u.set(40));
        assert_eq!(perform(&mut sh, 0), Outcome::Fail);
        assert_eq!(sh.dbs[0].volatile_len(), 0);
        sh.config.memory.policy = Policy::NoEviction;
        assert_eq!(perform(&mut sh, 0), Outcome::Fail);
    }

    thread_local! {
        /// The "memory in use" of [`over_by_keys`]: keys in db 0, at 1 byte each.
        static KEYS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        static FREED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// A probe that reads the keys of db 0 as bytes (set by [`count_keys`]), and one byte
    /// freed per deletion.
    fn over_by_keys(sh: &mut Shard) {
        sh.memory_probe.used = || (KEYS.with(|k| k.get()), FREED.with(|f| f.get()));
        sh.memory_probe.freed = || {
            FREED.with(|f| f.set(f.get() + 1));
            FREED.with(|f| f.get())
        };
    }

    fn count_keys(sh: &Shard) {
        KEYS.with(|k| k.set(sh.dbs[0].len() as u64));
    }

    #[test]
    fn evict_fires_events_logs_del_and_fails_watch() {
        let mut t = crate::shard::testing::TestShard::new();
        t.shard.config.memory.policy = Policy::AllkeysLru;
        t.shard.config.memory.maxmemory = 3;
        over_by_keys(&mut t.shard);
        t.shard.notify_flags = crate::notify::parse_flags("Ee").unwrap();
        t.shard.prop = Some(Default::default());
        for k in ["a", "b", "c"] {
            count_keys(&t.shard);
            assert_eq!(t.run(&format!("SET {k} v")), "+OK\r\n");
        }
        let (version, _) = t.shard.watch_key(0, b"a", t.now_ms);
        count_keys(&t.shard);
        // 3 keys at a limit of 3 bytes: not over. One more key is.
        assert_eq!(t.run("SET d v"), "+OK\r\n");
        assert!(t.shard.events.is_empty());
        count_keys(&t.shard);
        t.shard.prop.as_mut().unwrap().buf.clear();
        assert_eq!(t.run("GET d"), "$1\r\nv\r\n");
        assert_eq!(t.shard.stats.evicted_keys, 1);
        assert_eq!(t.shard.dbs[0].len(), 3);
        let ev = &t.shard.events[0];
        assert_eq!((ev.event, ev.class), ("evicted", class::EVICTED));
        let gone = ev.key.clone();
        let log = String::from_utf8_lossy(&t.shard.prop.as_ref().unwrap().buf).into_owned();
        assert!(
            log.ends_with(&format!("$3\r\nDEL\r\n$1\r\n{}\r\n", gone[0] as char)),
            "{log:?}"
        );
        if gone == b"a" {
            assert!(!t.shard.watch_holds(0, b"a", version, true, t.now_ms));
        }
    }

    #[test]
    fn evict_oom_refuses_denyoom_commands_only() {
        let mut t = crate::shard::testing::TestShard::new();
        t.shard.config.memory.maxmemory = 1;
        over_by_keys(&mut t.shard);
        t.run("SET a v");
        t.run("SET b v");
        count_keys(&t.shard);
        let oom = format!("-{OOM}\r\n");
        assert_eq!(t.run("SET c v"), oom);
        assert_eq!(t.run("APPEND a x"), oom);
        assert_eq!(t.run("GET a"), "$1\r\nv\r\n");
        assert_eq!(t.run("EXPIRE a 100"), ":1\r\n");
        assert_eq!(t.run("DEL b"), ":1\r\n");
        assert_eq!(t.shard.stats.evicted_keys, 0);
        // An LRU policy evicts instead.
        t.shard.config.memory.policy = Policy::AllkeysLru;
        assert_eq!(t.run("SET c v"), "+OK\r\n");
        assert_eq!(t.shard.stats.evicted_keys, 1);
    }

    #[test]
    fn evict_clocks_follow_lookups_but_not_notouch_commands() {
        let mut t = crate::shard::testing::TestShard::new();
        t.shard.config.memory.policy = Policy::AllkeysLru;
        t.run("SET k v");
        t.now_ms += 10_000;
        for cmd in [
            "TYPE k",
            "EXISTS k",
            "TTL k",
            "OBJECT ENCODING k",
            "OBJECT IDLETIME k",
        ] {
            t.run(cmd);
        }
        assert_eq!(t.run("OBJECT IDLETIME k"), ":10\r\n");
        t.run("GET k");
        assert_eq!(t.run("OBJECT IDLETIME k"), ":0\r\n");
        t.now_ms += 5_000;
        t.run("TOUCH k");
        assert_eq!(t.run("OBJECT IDLETIME k"), ":0\r\n");
        // Under LFU: a new key starts at 5, OBJECT FREQ does not count as an access.
        t.shard.config.memory.policy = Policy::AllkeysLfu;
        t.run("SET f v");
        assert_eq!(t.run("OBJECT FREQ f"), ":5\r\n");
        assert_eq!(t.run("OBJECT FREQ f"), ":5\r\n");
        // Back to noeviction: the clocks go, and their memory with them.
        t.shard.config.memory.policy = Policy::NoEviction;
        configure(&mut t.shard, t.now_ms);
        assert!(t.shard.dbs[0].clocks().is_none());
        assert_eq!(t.run("OBJECT IDLETIME k"), ":0\r\n");
    }
}
