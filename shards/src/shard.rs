//! A shard: the databases of one core's slots, its statistics and its random generator.
//! `Shard::execute` runs one looked-up command and writes its reply.

use crate::cmd::{Call, Lookup};
use crate::keyspace::{Db, Entry, Key};
use crate::limits::DATABASES;
use crate::notify::KeyNote;
pub use crate::notify::{class, flags_to_string, parse_flags, Event};
pub use crate::prop::Propagate;
use crate::prop::Rewrites;
use crate::resp::{Proto, Reply};
use crate::rng::Rng;
use crate::{Error, Result};
use std::collections::HashMap;

/// Per-command counters (INFO commandstats).
#[derive(Debug, Default, Clone, Copy)]
pub struct CmdStat {
    pub calls: u64,
    /// Time spent, in the ticks of the shard's `ticks` clock (the server converts).
    pub ticks: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
}

/// Counters INFO stats reports, per shard (the server adds them up).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub commands: u64,
    /// Writes since the last save (Redis's `dirty`).
    pub dirty: u64,
    /// Error replies by error code (the first word: `ERR`, `WRONGTYPE`, …), for errorstats.
    pub errors: HashMap<String, u64>,
    /// Per command, keyed by the address of its declaration (cheap to hash on every call).
    pub cmd: HashMap<usize, (Lookup, CmdStat), ahash::RandomState>,
    /// Keys deleted to stay under `maxmemory` (INFO's `evicted_keys`).
    pub evicted_keys: u64,
    /// µs spent over `maxmemory` until evictions brought the shard back under it (INFO's
    /// `total_eviction_exceeded_time`, in ms there).
    pub eviction_exceeded_us: u64,
}

impl Stats {
    /// Counts a lookup as Redis's `lookupKeyRead` does, a hit when the key exists (whatever
    /// its type) and a miss otherwise, and hands the lookup's result back.
    pub fn count_lookup<T>(&mut self, found: Option<T>) -> Option<T> {
        if found.is_some() {
            self.keyspace_hits += 1;
        } else {
            self.keyspace_misses += 1;
        }
        found
    }

    /// The counters of one command.
    pub fn cmd_stat(&mut self, cmd: Lookup) -> &mut CmdStat {
        &mut self
            .cmd
            .entry(cmd.spec as *const _ as usize)
            .or_insert((cmd, CmdStat::default()))
            .1
    }

    /// Counts an error reply under its code.
    pub fn record_error(&mut self, text: &str) {
        let code = text.split(' ').next().unwrap_or("ERR");
        match self.errors.get_mut(code) {
            Some(n) => *n += 1,
            None => {
                self.errors.insert(code.to_string(), 1);
            }
        }
    }

    /// Counts a call of a command carried out outside `Shard::execute` (split over shards, or
    /// by the server layer).
    pub fn count_call(&mut self, cmd: Lookup) {
        self.commands += 1;
        self.cmd_stat(cmd).calls += 1;
    }

    /// Counts a call rejected before it ran (wrong arity, not authenticated, …).
    pub fn count_rejected(&mut self, cmd: Lookup) {
        self.cmd_stat(cmd).rejected_calls += 1;
    }

    /// Adds what a command run elsewhere for this shard's connection changed: keyspace hits
    /// and misses, writes and error replies (a gathered command runs on a scratch shard, and
    /// its call was already counted here).
    pub fn absorb(&mut self, other: &Stats) {
        self.keyspace_hits += other.keyspace_hits;
        self.keyspace_misses += other.keyspace_misses;
        self.dirty += other.dirty;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_insert(0) += n;
        }
    }

    /// Adds the calls a scratch shard counted (the commands of an EXEC block run on copies):
    /// per command calls, time and failures, and the command total.
    pub fn absorb_calls(&mut self, other: &Stats) {
        self.commands += other.commands;
        for (l, s) in other.cmd.values() {
            let mine = self.cmd_stat(*l);
            mine.calls += s.calls;
            mine.ticks += s.ticks;
            mine.failed_calls += s.failed_calls;
            mine.rejected_calls += s.rejected_calls;
        }
    }

    /// Adds the time a scratch shard spent in commands whose calls were counted here.
    pub fn absorb_ticks(&mut self, other: &Stats) {
        for (l, s) in other.cmd.values() {
            self.cmd_stat(*l).ticks += s.ticks;
        }
    }

    /// (full name, counters) of every command called so far.
    pub fn cmd_stats(&self) -> Vec<(String, CmdStat)> {
        self.cmd
            .values()
            .map(|(l, s)| (l.full_name(), *s))
            .collect()
    }
}

/// Keys blocked clients wait on, with their waiter counts.
pub type Waited = HashMap<(usize, Key), u32, ahash::RandomState>;

/// Settings a shard's commands consult.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Whether the active expiry cycle runs (DEBUG SET-ACTIVE-EXPIRE).
    pub active_expire: bool,
    /// `list-max-listpack-size`: positive = entries per node, negative = -1..-5 for 4..64 KiB.
    pub list_max_listpack_size: i64,
    /// `hash-max-listpack-entries` / `hash-max-listpack-value` (Redis 7.0's built-in default
    /// for the entries is 512; the 128 of its sample redis.conf is not what a bare server uses).
    pub hash_max_listpack_entries: usize,
    pub hash_max_listpack_value: usize,
    /// `set-max-intset-entries` (Redis 7.0 sets are intset or hashtable).
    pub set_max_intset_entries: usize,
    /// `zset-max-listpack-entries` / `zset-max-listpack-value`.
    pub zset_max_listpack_entries: usize,
    pub zset_max_listpack_value: usize,
    /// `hll-sparse-max-bytes`: a sparse HyperLogLog that would grow past this turns dense.
    pub hll_sparse_max_bytes: usize,
    /// `stream-node-max-bytes` / `stream-node-max-entries`.
    pub stream: crate::types::stream::Limits,
    /// `busy-reply-threshold` (`lua-time-limit`), ms: a script running longer makes its
    /// shard answer BUSY and can be stopped by SCRIPT KILL.
    pub busy_reply_threshold_ms: u64,
    /// `maxmemory` and the eviction settings.
    pub memory: crate::evict::MemoryConfig,
}

impl Default for ShardConfig {
    /// Redis 7.0's defaults.
    fn default() -> Self {
        ShardConfig {
            active_expire: true,
            list_max_listpack_size: -2,
            hash_max_listpack_entries: 512,
            hash_max_listpack_value: 64,
            set_max_intset_entries: 512,
            zset_max_listpack_entries: 128,
            zset_max_listpack_value: 64,
            hll_sparse_max_bytes: crate::types::hll::SPARSE_MAX_BYTES_DEFAULT,
            stream: crate::types::stream::Limits::default(),
            busy_reply_threshold_ms: 5000,
            memory: crate::evict::MemoryConfig::default(),
        }
    }
}

/// One core's share of the data.
pub struct Shard {
    pub id: usize,
    pub nshards: usize,
    pub dbs: Vec<Db>,
    pub rng: Rng,
    pub stats: Stats,
    pub config: ShardConfig,
    /// The clock command timing uses (the engine reads no clock of its own; the server sets
    /// a cycle counter here).
    pub ticks: fn() -> u64,
    /// Keys blocked clients wait on, with how many wait on each (kept by the server).
    pub waited: Waited,
    /// Waited-on keys written since the server last looked (Redis's ready keys).
    pub ready: Vec<(usize, Key)>,
    /// Keys clients WATCH: how many watch each, and a version every change bumps.
    pub watched: HashMap<(usize, Key), (u32, u64), ahash::RandomState>,
    /// Whether calls are counted in the statistics (not for the per-shard parts of a command
    /// split over shards: the connection's shard counts the command once).
    pub counting: bool,
    /// The propagation log (see [`crate::prop`]): `None` while logging is off.
    pub prop: Option<Propagate>,
    /// The effects the running command recorded in place of its arguments.
    rewrites: Rewrites,
    /// Whether the databases record their expired keys (follows `prop`, see
    /// [`Shard::sync_expiry_log`]).
    expiry_logging: bool,
    /// `notify-keyspace-events` as [`class`] flags (0 = off); set by the server.
    pub notify_flags: u32,
    /// The keyspace events recorded since the server last drained them, in order.
    pub events: Vec<Event>,
    /// The `notify_flags` the databases' key notes were last set up for.
    notes_flags: u32,
    /// Set by a command that returns [`Error::Blocked`] when the command to run again once
    /// its keys are written differs from the one sent: XREAD's `$` becomes the last id at the
    /// time it blocked. The server takes it when it parks the client.
    pub block_args: Option<Vec<Vec<u8>>>,
    /// The wall clock when a log replay (which runs at time 0, so that nothing expires on
    /// the way) started: what the replayed commands record as the time in values. See
    /// [`Shard::stamp_ms`].
    pub load_clock_ms: u64,
    /// Set by [`Shard::keep_watches`] for the running command.
    keep_watch: bool,
    /// True while the server runs a parked command again (its keys were written). Streams
    /// need it: a group or stream deleted under a blocked XREADGROUP is an error then.
    pub rerun: bool,
    /// Script bodies and per-shard script state, shared by every shard of the process.
    pub scripts: std::sync::Arc<crate::script::Store>,
    /// The keys a script may touch here: `None`, every key this shard owns; `Some`, exactly
    /// these (a scratch shard holding a transaction's copies). See [`crate::script`].
    pub script_keys: Option<std::collections::HashSet<(usize, Key)>>,
    /// Set with [`Error::Reroute`]: the keys the script must run over, elsewhere.
    pub reroute: Option<Vec<(usize, Key)>>,
    /// The wall clock in Unix ms, for script time limits (the server sets it; 0 = none).
    pub clock_ms: fn() -> u64,
    /// Called from a script's count hook while the script runs past `busy-reply-threshold`:
    /// the server serves its connections meanwhile (answering `-BUSY`, SCRIPT KILL, SHUTDOWN
    /// NOSAVE), as Redis's `processEventsWhileBlocked` does.
    pub busy_poll: Option<fn()>,
    /// Who runs the current script, when its user's permissions must be checked for every
    /// command it calls (see `acl::Caller`).
    pub caller: Option<std::sync::Arc<crate::acl::Caller>>,
    /// How the shard reads its memory use (set by the server; see [`crate::evict`]).
    pub memory_probe: crate::evict::MemoryProbe,
    /// Eviction state: the pool of candidates, the next database the random policies try,
    /// since when evictions have not kept the shard under `maxmemory`, and whether it was
    /// over with no key left to evict before the running command.
    pub(crate) evict_pool: crate::evict::Pool,
    pub(crate) evict_next_db: usize,
    pub(crate) evict_over_since_us: Option<u64>,
    pub evict_depth: u32,
    /// Bytes this shard's evictions freed since the memory figure of reading `.0` (see
    /// `evict::used_now`).
    pub(crate) evict_credit: (u64, u64),
    pub oom: bool,
    /// Commands slower than `slowlog-log-slower-than` (see `slowlog`).
    pub slowlog: crate::slowlog::SlowLog,
    /// The id of the client whose commands run now (0: none known), for SLOWLOG and NOLOOP,
    /// with `tracking::READS_TRACKED` set when its reads are to be remembered.
    pub client: u64,
    /// A client's address and name by id, and tick counts in microseconds (set by the server).
    pub client_ident: fn(u64) -> (String, String),
    pub ticks_to_us: fn(u64) -> u64,
    /// Command latency histograms and latency events (see `latency`).
    pub latency: crate::latency::Latency,
    /// Bytes this thread has allocated so far (the allocator's counter, set by the server;
    /// MEMORY USAGE measures a value by what copying it allocates).
    pub thread_allocated: fn() -> u64,
    /// Client-side caching: who read which keys, who follows which prefixes.
    pub tracking: crate::tracking::Tracking,
    /// Commands scripts called (database, arguments), for MONITOR (see `script::MONITORS`).
    pub script_calls: Vec<(usize, Vec<Vec<u8>>)>,
    /// Search indexes over this shard's hashes (see [`crate::search`]).
    pub search: crate::search::Indexes,
}

impl Shard {
    pub fn new(id: usize, nshards: usize, seed: u64) -> Shard {
        Shard {
            id,
            nshards,
            dbs: (0..DATABASES).map(|_| Db::default()).collect(),
            rng: Rng::new(seed ^ (id as u64).wrapping_mul(0x9E37_79B9)),
            stats: Stats::default(),
            config: ShardConfig::default(),
            ticks: || 0,
            waited: HashMap::default(),
            ready: Vec::new(),
            watched: HashMap::default(),
            counting: true,
            prop: None,
            rewrites: Rewrites::default(),
            expiry_logging: false,
            notify_flags: 0,
            events: Vec::new(),
            notes_flags: 0,
            block_args: None,
            load_clock_ms: 0,
            rerun: false,
            keep_watch: false,
            scripts: std::sync::Arc::new(crate::script::Store::new(nshards)),
            script_keys: None,
            reroute: None,
            clock_ms: || 0,
            busy_poll: None,
            caller: None,
            memory_probe: crate::evict::MemoryProbe::default(),
            evict_pool: Default::default(),
            evict_next_db: 0,
            evict_over_since_us: None,
            evict_depth: 0,
            evict_credit: (0, 0),
            oom: false,
            slowlog: crate::slowlog::SlowLog::default(),
            client: 0,
            client_ident: |_| (String::new(), String::new()),
            ticks_to_us: |t| t / 1000,
            latency: crate::latency::Latency::new(),
            thread_allocated: || 0,
            tracking: crate::tracking::Tracking::default(),
            script_calls: Vec::new(),
            search: crate::search::Indexes::default(),
        }
    }

    /// Lends this shard's SLOWLOG, latency records and clocks to `scratch` (a shard holding
    /// copies, about to run commands for `client`), so what runs there is timed as if it ran
    /// here; [`Shard::take_back_timing`] returns them.
    pub fn lend_timing(&mut self, scratch: &mut Shard, client: u64) {
        std::mem::swap(&mut self.slowlog, &mut scratch.slowlog);
        std::mem::swap(&mut self.latency, &mut scratch.latency);
        scratch.ticks = self.ticks;
        scratch.ticks_to_us = self.ticks_to_us;
        scratch.client_ident = self.client_ident;
        scratch.client = client;
    }

    /// Takes back what [`Shard::lend_timing`] lent, with the time the scratch shard's commands
    /// took (`calls`: their calls too, when they were not counted here).
    pub fn take_back_timing(&mut self, scratch: &mut Shard, calls: bool) {
        std::mem::swap(&mut self.slowlog, &mut scratch.slowlog);
        std::mem::swap(&mut self.latency, &mut scratch.latency);
        if calls {
            self.stats.absorb_calls(&scratch.stats);
        } else {
            self.stats.absorb_ticks(&scratch.stats);
        }
    }

    /// Records a keyspace event, if its class is on (Redis's `notifyKeyspaceEvent`). One
    /// branch while notifications are off.
    #[inline]
    pub fn notify(&mut self, class: u32, event: &'static str, db: usize, key: &[u8]) {
        if self.notify_flags & class == 0 {
            return;
        }
        self.notify_slow(class, event, db, key);
    }

    #[cold]
    fn notify_slow(&mut self, class: u32, event: &'static str, db: usize, key: &[u8]) {
        if self.notify_flags & (class::KEYSPACE | class::KEYEVENT) == 0 {
            return;
        }
        // Keys created or expired so far in this command come first, as Redis fires their
        // events at the moment it adds or expires them.
        self.flush_key_notes();
        self.events.push(Event {
            class,
            event,
            db,
            key: key.to_vec(),
        });
    }

    /// Turns the databases' notes of new, expired and missed keys into events.
    pub fn flush_key_notes(&mut self) {
        let flags = self.notify_flags;
        for (i, db) in self.dbs.iter_mut().enumerate() {
            let Some(notes) = &mut db.key_notes else {
                continue;
            };
            for (note, key) in notes.drain(..) {
                let (c, event) = match note {
                    KeyNote::New => (class::NEW, "new"),
                    KeyNote::Expired => (class::EXPIRED, "expired"),
                    KeyNote::Miss => (class::KEY_MISS, "keymiss"),
                };
                if flags & c != 0 {
                    self.events.push(Event {
                        class: c,
                        event,
                        db: i,
                        key: key.to_vec(),
                    });
                }
            }
        }
    }

    /// Makes the databases note new, expired and missed keys exactly while events for them are on
    /// (a database replaced wholesale starts noting too); notes left from work outside a
    /// command (a load, an import) are dropped. Called before every command.
    fn sync_key_notes(&mut self) {
        let wanted = class::NEW | class::EXPIRED | class::KEY_MISS;
        let on = self.notify_flags & wanted != 0
            && self.notify_flags & (class::KEYSPACE | class::KEYEVENT) != 0;
        for db in &mut self.dbs {
            match (&mut db.key_notes, on) {
                (Some(notes), true) => notes.clear(),
                (None, true) => db.key_notes = Some(Vec::new()),
                (notes, false) => *notes = None,
            }
        }
        self.notes_flags = self.notify_flags;
    }

    /// Whether commands' effects are being logged: a command that rewrites its effect checks
    /// this before building the rewrite.
    pub fn propagating(&self) -> bool {
        self.prop.is_some()
    }

    /// Appends one command to the propagation log, if logging is on.
    pub fn propagate(&mut self, db: usize, argv: &[&[u8]]) {
        if let Some(p) = &mut self.prop {
            p.command(db, argv);
        }
    }

    /// Records, during a command's run, one command of its effect for database `db`: the call
    /// is then logged as the commands it recorded, in order, instead of its own arguments.
    /// Does nothing while logging is off.
    pub fn rewrite(&mut self, db: usize, argv: &[&[u8]]) {
        if self.prop.is_some() {
            self.rewrites.push(db, argv);
        }
    }

    /// Makes the running call log only what it records with [`Shard::rewrite`], possibly
    /// nothing, never its own arguments (Redis's `preventCommandPropagation`). Does nothing
    /// while logging is off.
    pub fn prevent_propagation(&mut self) {
        if self.prop.is_some() {
            self.rewrites.suppress();
        }
    }

    /// Makes the databases record the keys they expire exactly while logging is on (a
    /// database replaced wholesale, by a load, starts recording too). Called before every
    /// logged call; while logging stays off, callers skip it with one comparison.
    fn sync_expiry_log(&mut self) {
        let on = self.prop.is_some() || self.tracking.active();
        if on {
            for db in &mut self.dbs {
                if db.expired_log.is_none() {
                    db.expired_log = Some(Vec::new());
                }
            }
        } else if self.expiry_logging {
            for db in &mut self.dbs {
                db.expired_log = None;
            }
        }
        self.expiry_logging = on;
    }

    /// Logs `DEL key` for every key the databases deleted because it expired since the last
    /// call (Redis propagates expired keys' deletions as DEL). The engine calls this after every
    /// command and expiry cycle; the server calls it after working on the databases directly
    /// (such as [`Shard::export`]).
    pub fn flush_expired(&mut self) {
        if self.notes_flags != 0 {
            // Their `expired` events too, in the same order.
            self.flush_key_notes();
        }
        if self.tracking.active() {
            // Clients that read them are told (Redis signals an expired key as modified).
            for db in &self.dbs {
                for k in db.expired_log.iter().flatten() {
                    self.tracking.invalidate(k, 0);
                }
            }
        }
        let Some(p) = &mut self.prop else {
            if self.expiry_logging && self.tracking.active() {
                for db in &mut self.dbs {
                    if let Some(keys) = &mut db.expired_log {
                        keys.clear();
                    }
                }
                return;
            }
            self.sync_expiry_log();
            return;
        };
        for (i, db) in self.dbs.iter_mut().enumerate() {
            match &mut db.expired_log {
                Some(keys) => crate::prop::expired_into(p, i, keys),
                None => db.expired_log = Some(Vec::new()),
            }
        }
        self.expiry_logging = true;
    }

    /// Logs what a call changed: the keys it found expired, then its effect (its rewrites, or
    /// its own arguments) if it changed anything.
    fn log_call(&mut self, argv: &[&[u8]], db: usize, changed: bool) {
        self.flush_expired();
        let Some(p) = &mut self.prop else {
            return;
        };
        if changed {
            if !self.rewrites.is_empty() {
                self.rewrites.drain_into(p);
            } else {
                p.command(db, argv);
            }
        }
        self.rewrites.clear();
    }

    /// Database `i`; callers pass an index already checked against `DATABASES`.
    pub fn db(&mut self, i: usize) -> &mut Db {
        &mut self.dbs[i]
    }

    /// Runs a command that has been looked up (arity checked) and routed here.
    pub fn execute(
        &mut self,
        cmd: Lookup,
        argv: &[&[u8]],
        db: usize,
        now_us: u64,
        proto: Proto,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(run) = cmd.spec.run else {
            return Err(crate::Error::err("command not available here"));
        };
        let mut call = Call {
            argv,
            db,
            now_ms: now_us / 1000,
            now_us,
            out: Reply::new(out, proto),
        };
        if !self.counting {
            // A part of a command split over shards (the connection's shard counts the call):
            // its time still counts here, and a slow part is logged.
            let t0 = (self.ticks)();
            let r = run(self, &mut call);
            let spent = (self.ticks)().wrapping_sub(t0);
            self.stats.cmd_stat(cmd).ticks += spent;
            if spent >= self.slowlog.threshold_ticks {
                self.log_slow(cmd, argv, spent, now_us);
            }
            return r;
        }
        self.stats.commands += 1;
        let t0 = (self.ticks)();
        let r = run(self, &mut call);
        let spent = (self.ticks)().wrapping_sub(t0);
        let stat = self.stats.cmd_stat(cmd);
        stat.calls += 1;
        if r.is_err() {
            stat.failed_calls += 1;
        }
        self.record_time(cmd, argv, spent, now_us);
        r
    }

    /// Accounts a command's execution time: commandstats, the latency histogram, SLOWLOG and
    /// the latency monitor (also for commands the server layer carries out itself).
    pub fn record_time(&mut self, cmd: Lookup, argv: &[&[u8]], spent: u64, now_us: u64) {
        self.stats.cmd_stat(cmd).ticks += spent;
        if self.latency.tracking {
            let ns = (self.ticks_to_us)(spent.saturating_mul(1000));
            self.latency.record(cmd, ns);
        }
        if spent >= self.slowlog.threshold_ticks {
            self.log_slow(cmd, argv, spent, now_us);
        }
        if spent >= self.latency.monitor_ticks {
            let ms = (self.ticks_to_us)(spent) / 1000;
            let event = if cmd.spec.flags & crate::cmd::flag::FAST != 0 {
                "fast-command"
            } else {
                "command"
            };
            self.latency.event(event, now_us / 1_000_000, ms);
        }
    }

    /// Records a slow command (not one a script called, nor one flagged skip_slowlog).
    #[cold]
    fn log_slow(&mut self, cmd: Lookup, argv: &[&[u8]], spent: u64, now_us: u64) {
        let skip = cmd.spec.flags | cmd.parent.map_or(0, |p| p.flags);
        if skip & crate::cmd::flag::SKIP_SLOWLOG != 0 || crate::script::in_script() {
            return;
        }
        let who = (self.client_ident)(self.client & !crate::tracking::READS_TRACKED);
        let us = (self.ticks_to_us)(spent);
        self.slowlog.record(argv, us, now_us / 1_000_000, who);
    }

    /// Runs a command and encodes an error reply if it fails.
    pub fn execute_reply(
        &mut self,
        cmd: Lookup,
        argv: &[&[u8]],
        db: usize,
        now_us: u64,
        proto: Proto,
        out: &mut Vec<u8>,
    ) -> Option<u64> {
        let dirty = self.stats.dirty;
        let logging = self.prop.is_some();
        let tracking = self.tracking.active();
        if logging || self.expiry_logging || tracking {
            self.sync_expiry_log();
        }
        if logging {
            // Left over only if a command ran outside this path; never logged twice.
            self.rewrites.clear();
        }
        if self.notify_flags | self.notes_flags != 0 {
            self.sync_key_notes();
        }
        let r = if self.config.memory.active() {
            crate::evict::guarded(self, cmd, db, now_us / 1000, |sh| {
                sh.execute(cmd, argv, db, now_us, proto, out)
            })
        } else {
            self.execute(cmd, argv, db, now_us, proto, out)
        };
        let keep_watch = std::mem::take(&mut self.keep_watch);
        if self.notes_flags != 0 {
            self.flush_key_notes();
        }
        if logging {
            // A command that changed data is logged even if it then failed, as Redis does; a
            // blocked one changed nothing and runs again when served.
            let changed = self.stats.dirty != dirty
                && !matches!(r, Err(Error::Blocked(_)) | Err(Error::Reroute));
            self.log_call(argv, db, changed);
        } else if self.expiry_logging {
            self.flush_expired();
        }
        if !self.search.is_empty() && self.stats.dirty != dirty {
            self.search_after(cmd, argv, now_us / 1000);
        }
        if self.client & crate::tracking::READS_TRACKED != 0
            && !matches!(r, Err(Error::Blocked(_)) | Err(Error::Reroute))
        {
            self.remember_reads(cmd, argv);
        }
        match r {
            Ok(()) => {
                // Only a command that changed something touches its keys (as Redis signals
                // modified keys): DEL of a missing key wakes no one and fails no WATCH. A
                // read that may write (PFCOUNT refreshing its cached count) counts too.
                let may_write = crate::cmd::flag::WRITE | crate::cmd::flag::MAY_REPLICATE;
                if cmd.spec.flags & may_write != 0
                    && self.stats.dirty != dirty
                    && !(self.waited.is_empty()
                        && self.watched.is_empty()
                        && !self.tracking.active())
                {
                    self.signal_keys(cmd, argv, db, keep_watch);
                }
                None
            }
            Err(Error::Blocked(timeout_ms)) => Some(timeout_ms),
            // No reply: the server runs the script again elsewhere (see `Shard::reroute`).
            Err(Error::Reroute) => None,
            Err(e) => {
                let text = e.text();
                self.stats.record_error(&text);
                Reply::new(out, proto).error(&text);
                None
            }
        }
    }

    /// The time a command records in values (stream consumers' seen times, delivery times):
    /// `now_ms`, or during a replay of the log (run at time 0) the time the replay started,
    /// as Redis records its load time.
    pub fn stamp_ms(&self, now_ms: u64) -> u64 {
        if now_ms == 0 {
            self.load_clock_ms
        } else {
            now_ms
        }
    }

    /// Notes the keys a write command touched that blocked clients wait for.
    /// With `keep_watch` the watchers' EXEC still succeeds (see [`Shard::keep_watches`]).
    fn signal_keys(&mut self, cmd: Lookup, argv: &[&[u8]], db: usize, keep_watch: bool) {
        use crate::cmd::spec::{kflag, CommandSpec};
        let mut pos = Vec::new();
        let spec = cmd.spec;
        let read_only = |flags: u32| flags & kflag::RO != 0 && flags & kflag::RW == 0;
        if spec.getkeys.is_none() && spec.keys.iter().any(|k| read_only(k.flags)) {
            // Only the keys the command may write count as changed (SUNIONSTORE's destination,
            // not its sources), as Redis signals them.
            let mut one_pos = Vec::new();
            for ks in spec.keys.iter().filter(|k| !read_only(k.flags)) {
                let one = CommandSpec {
                    keys: std::slice::from_ref(ks),
                    ..*spec
                };
                crate::cmd::key_positions(&one, argv, &mut one_pos);
                pos.extend_from_slice(&one_pos);
            }
        } else {
            crate::cmd::key_positions(spec, argv, &mut pos);
        }
        for p in pos {
            let k = (db, Key::from(argv[p]));
            if keep_watch {
                self.make_ready(k);
            } else {
                self.touch_key(k);
            }
        }
    }

    /// After a write: the search indexes look again at the keys it touched (in database 0,
    /// whatever the command's database: MOVE brings keys in and out), or start over after a
    /// whole-database change.
    #[cold]
    fn search_after(&mut self, cmd: Lookup, argv: &[&[u8]], now_ms: u64) {
        if matches!(cmd.spec.name, "flushall" | "flushdb" | "swapdb") {
            self.search.reset();
            return;
        }
        let mut pos = Vec::new();
        crate::cmd::key_positions(cmd.spec, argv, &mut pos);
        for p in pos {
            self.search_touch(argv[p], now_ms);
        }
    }

    /// Remembers the keys a tracking client's read-only command read (Redis's
    /// `trackingRememberKeys`). A command a script calls does not remember its own keys: the
    /// script's declared keys are remembered when it ends, if it read anything (as Redis 7.0
    /// does; EVAL_RO and FCALL_RO themselves count only through what they call).
    #[cold]
    fn remember_reads(&mut self, cmd: Lookup, argv: &[&[u8]]) {
        use crate::cmd::{flag, Group};
        let reader = self.client & !crate::tracking::READS_TRACKED;
        let read_only = cmd.spec.flags & flag::READONLY != 0;
        let script = cmd.spec.group == Group::Scripting;
        if crate::script::in_script() {
            if read_only && !script {
                self.tracking.script_read = true;
            }
            return;
        }
        if script {
            if !std::mem::take(&mut self.tracking.script_read) {
                return;
            }
        } else if !read_only {
            return;
        }
        let mut pos = Vec::new();
        crate::cmd::key_positions(cmd.spec, argv, &mut pos);
        for p in pos {
            self.tracking.remember(argv[p], reader);
        }
    }

    /// Called by a command whose change Redis does not count as modifying the key for
    /// WATCH (a consumer group's bookkeeping: XACK, XCLAIM, XREADGROUP, most of XGROUP):
    /// blocked clients still look again, but EXEC of a client watching the key succeeds.
    pub fn keep_watches(&mut self) {
        self.keep_watch = true;
    }

    /// A key's waiters look again.
    fn make_ready(&mut self, k: (usize, Key)) {
        if self.waited.contains_key(&k) && !self.ready.contains(&k) {
            self.ready.push(k);
        }
    }

    /// A key changed: its waiters look again, its watchers' EXEC fails.
    pub(crate) fn touch_key(&mut self, k: (usize, Key)) {
        if let Some((_, version)) = self.watched.get_mut(&k) {
            *version += 1;
        }
        if self.tracking.active() {
            self.tracking
                .invalidate(&k.1, self.client & !crate::tracking::READS_TRACKED);
        }
        self.make_ready(k);
    }

    /// After SWAPDB of `a` and `b`: watched keys present in either database count as changed,
    /// and waited-on keys that now hold a value are ready (as Redis does).
    pub fn swapped(&mut self, a: usize, b: usize, now_ms: u64) {
        let in_either = |dbs: &[Db], k: &(usize, Key)| {
            (k.0 == a || k.0 == b)
                && (dbs[a].peek(&k.1, now_ms).is_some() || dbs[b].peek(&k.1, now_ms).is_some())
        };
        for (k, (_, version)) in self.watched.iter_mut() {
            if in_either(&self.dbs, k) {
                *version += 1;
            }
        }
        let ready: Vec<(usize, Key)> = self
            .waited
            .keys()
            .filter(|k| (k.0 == a || k.0 == b) && self.dbs[k.0].peek(&k.1, now_ms).is_some())
            .cloned()
            .collect();
        for k in ready {
            if !self.ready.contains(&k) {
                self.ready.push(k);
            }
        }
    }

    /// After FLUSHDB (`Some(db)`) or FLUSHALL: the waited-on keys of the flushed databases are
    /// ready, as Redis signals deleted keys (a blocked XREADGROUP learns its stream is gone).
    pub fn flushed(&mut self, db: Option<usize>) {
        self.tracking.flush_all();
        let ready: Vec<(usize, Key)> = self
            .waited
            .keys()
            .filter(|k| db.is_none_or(|d| k.0 == d))
            .cloned()
            .collect();
        for k in ready {
            self.make_ready(k);
        }
    }

    /// WATCH: one more watcher of `key`; returns its version and whether it is live now.
    pub fn watch_key(&mut self, db: usize, key: &[u8], now_ms: u64) -> (u64, bool) {
        let live = self.dbs[db].peek(key, now_ms).is_some();
        let e = self.watched.entry((db, Key::from(key))).or_insert((0, 0));
        e.0 += 1;
        (e.1, live)
    }

    /// One watcher of `key` less.
    pub fn unwatch_key(&mut self, db: usize, key: &[u8]) {
        let k = (db, Key::from(key));
        if let Some(e) = self.watched.get_mut(&k) {
            e.0 -= 1;
            if e.0 == 0 {
                self.watched.remove(&k);
            }
        }
    }

    /// Whether a key watched at `version` (live then or not) is untouched: not changed since,
    /// and not expired or deleted if it was live (Redis fails EXEC for a watched key that
    /// expired meanwhile, not for one already expired when watched).
    pub fn watch_holds(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        was_live: bool,
        now_ms: u64,
    ) -> bool {
        let now_version = self
            .watched
            .get(&(db, Key::from(key)))
            .map_or(u64::MAX, |e| e.1);
        now_version == version && (!was_live || self.dbs[db].peek(key, now_ms).is_some())
    }

    /// Copies out the live entries of `keys` in `db` (for work that gathers keys from several
    /// shards). Absent keys give `None`.
    pub fn export(&mut self, db: usize, keys: &[&[u8]], now_ms: u64) -> Vec<(Key, Option<Entry>)> {
        let d = &mut self.dbs[db];
        let entries = keys
            .iter()
            .map(|k| (Key::from(*k), d.get_entry(k, now_ms)))
            .collect();
        if self.expiry_logging {
            self.flush_expired();
        }
        entries
    }

    /// Installs entries computed elsewhere: `Some` stores, `None` deletes. Nothing is logged:
    /// the server logs what it installs (as `RESTORE … REPLACE ABSTTL` or `DEL`).
    pub fn import(&mut self, db: usize, entries: Vec<(Key, Option<Entry>)>) {
        for (k, _) in &entries {
            self.touch_key((db, k.clone()));
        }
        let d = &mut self.dbs[db];
        let touched: Vec<Key> = if db == 0 && !self.search.is_empty() {
            entries.iter().map(|(k, _)| k.clone()).collect()
        } else {
            Vec::new()
        };
        for (k, e) in entries {
            match e {
                Some(e) => d.insert(&k, e),
                None => {
                    d.remove(&k);
                }
            }
        }
        for k in touched {
            // No clock here: keys being installed are live.
            self.search_touch(&k, 0);
        }
    }

    /// One active expiry cycle over every database. Returns keys deleted.
    /// A bounded step of active expiry over every database (at most `EXPIRE_ROUNDS_MAX`
    /// rounds each). Returns the keys deleted and whether another step would find more; the
    /// caller repeats within its time budget, so the effort follows how many keys are expiring.
    pub fn active_expire(&mut self, now_ms: u64) -> (usize, bool) {
        if !self.config.active_expire || crate::keyspace::expiry_paused(now_ms) {
            return (0, false);
        }
        self.sync_expiry_log();
        if self.notify_flags | self.notes_flags != 0 {
            self.sync_key_notes();
        }
        let (mut n, mut more) = (0, false);
        for db in &mut self.dbs {
            let (d, m) = db.active_expire(&mut self.rng, now_ms, crate::limits::EXPIRE_ROUNDS_MAX);
            n += d;
            more |= m;
        }
        if self.expiry_logging {
            self.flush_expired();
        }
        if self.notes_flags != 0 {
            self.flush_key_notes();
        }
        (n, more)
    }

    /// Total keys deleted because they expired.
    pub fn expired_keys(&self) -> u64 {
        self.dbs.iter().map(|d| d.expired_count).sum()
    }
}

#[cfg(test)]
pub mod testing {
    //! Helpers to run commands against a shard in unit tests, with a manual clock.
    use super::*;
    use crate::cmd::lookup;

    /// A shard plus a clock the test moves by hand.
    pub struct TestShard {
        pub shard: Shard,
        pub now_ms: u64,
        pub db: usize,
        pub proto: Proto,
    }

    impl Default for TestShard {
        fn default() -> Self {
            TestShard::new()
        }
    }

    impl TestShard {
        pub fn new() -> TestShard {
            TestShard {
                shard: Shard::new(0, 1, 7),
                now_ms: 1_700_000_000_000,
                db: 0,
                proto: Proto::Resp2,
            }
        }

        /// Runs a command given as space-separated words; returns the raw reply.
        pub fn run(&mut self, line: &str) -> String {
            let words: Vec<&[u8]> = line.split(' ').map(|w| w.as_bytes()).collect();
            self.run_args(&words)
        }

        /// Runs a command given as arguments; returns the raw reply as text.
        pub fn run_args(&mut self, argv: &[&[u8]]) -> String {
            String::from_utf8_lossy(&self.run_bytes(argv)).into_owned()
        }

        /// Runs a command given as arguments; returns the raw reply.
        pub fn run_bytes(&mut self, argv: &[&[u8]]) -> Vec<u8> {
            let mut out = Vec::new();
            match lookup(argv) {
                Ok(l) => {
                    let blocked = self.shard.execute_reply(
                        l,
                        argv,
                        self.db,
                        self.now_ms * 1000,
                        self.proto,
                        &mut out,
                    );
                    // A blocking command that would park the client shows as "(blocked)".
                    if blocked.is_some() {
                        out.extend_from_slice(b"(blocked)");
                    }
                }
                Err(e) => Reply::new(&mut out, self.proto).error(&e.text()),
            }
            out
        }
    }
}
