//! MEMORY STATS / DOCTOR / MALLOC-STATS / PURGE / HELP (USAGE runs on the key's shard, in
//! the engine). The figures are the allocator's (jemalloc), for the whole process.

use crate::conn::Conn;
use crate::ctx::{ShardCtx, Shared};
use crate::msg::{RepBody, ReqBody, ShardStats};
use shards::cmd::Lookup;
use shards::Error;
use std::collections::BTreeMap;

/// Bytes this thread has allocated so far (`Shard::thread_allocated`).
pub fn thread_allocated() -> u64 {
    thread_local! {
        static COUNTER: Option<tikv_jemalloc_ctl::thread::ThreadLocal<u64>> =
            tikv_jemalloc_ctl::thread::allocatedp::read().ok();
    }
    COUNTER.with(|c| c.map_or(0, |c| c.get()))
}

/// Bytes this thread holds: what it has allocated less what it has freed (INFO shards'
/// per-shard memory). A buffer one shard allocates and another frees (a message between
/// them) counts for the first and against the second, so the figure is a shard's share of
/// the process, not an exact account.
pub fn thread_live_bytes() -> u64 {
    thread_local! {
        static COUNTERS: Option<(
            tikv_jemalloc_ctl::thread::ThreadLocal<u64>,
            tikv_jemalloc_ctl::thread::ThreadLocal<u64>,
        )> = tikv_jemalloc_ctl::thread::allocatedp::read()
            .ok()
            .zip(tikv_jemalloc_ctl::thread::deallocatedp::read().ok());
    }
    COUNTERS.with(|c| c.map_or(0, |(a, d)| a.get().saturating_sub(d.get())))
}

/// What a key costs the keyspace besides its name and value: its slot and entry, and its
/// entry in the expiry table when it has a TTL (MEMORY STATS' per-database overheads).
const KEY_ENTRY_BYTES: u64 = 48;
const EXPIRE_ENTRY_BYTES: u64 = 16;

/// The process's memory, split as Redis splits it for INFO memory and MEMORY STATS.
pub struct Breakdown {
    pub alloc: Alloc,
    pub rss: u64,
    pub peak: u64,
    /// Allocated when the server was set up (before any data).
    pub startup: u64,
    pub keys: u64,
    /// Per database: the keyspace's and the expiry table's bookkeeping bytes.
    pub per_db: BTreeMap<usize, (u64, u64)>,
    /// AOF bytes queued and not yet written.
    pub aof_buffer: u64,
    /// Cached script bodies: how many, and their bytes.
    pub scripts: (u64, u64),
    /// Function libraries, functions, and the libraries' code bytes.
    pub functions: (u64, u64, u64),
    /// The shards' Lua states.
    pub lua: u64,
    /// Client connections' buffers and state.
    pub clients: u64,
}

impl Breakdown {
    /// Measures now, with every shard's statistics.
    pub fn measure(shared: &Shared, stats: &[(usize, ShardStats)]) -> Breakdown {
        let mut keys = 0u64;
        let mut per_db = BTreeMap::<usize, (u64, u64)>::new();
        for (_, s) in stats {
            for &(db, n, expires) in &s.keys {
                keys += n as u64;
                let e = per_db.entry(db).or_default();
                e.0 += n as u64 * KEY_ENTRY_BYTES;
                e.1 += expires * EXPIRE_ENTRY_BYTES;
            }
        }
        let alloc = alloc();
        let (scripts, script_bytes) = shared.scripts.stats();
        let (libs, funcs, lib_bytes) = shared.scripts.library_stats();
        Breakdown {
            peak: shared.peak_memory(alloc.allocated),
            alloc,
            rss: crate::info::rss_bytes(),
            startup: shared
                .startup_memory
                .load(std::sync::atomic::Ordering::Relaxed),
            keys,
            per_db,
            aof_buffer: stats.iter().filter_map(|(_, s)| s.aof).map(|a| a.2).sum(),
            scripts: (scripts as u64, script_bytes as u64),
            functions: (libs as u64, funcs as u64, lib_bytes as u64),
            lua: stats.iter().map(|(_, s)| s.lua_memory).sum(),
            clients: stats.iter().map(|(_, s)| s.clients_memory).sum(),
        }
    }

    /// Bytes of bookkeeping rather than data: what start-up allocated, client connections,
    /// the keyspace's entries, the AOF buffer and the script caches (Redis's
    /// used_memory_overhead).
    pub fn overhead(&self) -> u64 {
        let dbs: u64 = self.per_db.values().map(|(k, e)| k + e).sum();
        self.startup + self.clients + dbs + self.aof_buffer + self.scripts.1 + self.functions.2
    }

    /// The rest of what is allocated: keys and values (Redis's used_memory_dataset).
    pub fn dataset(&self) -> u64 {
        self.alloc.allocated.saturating_sub(self.overhead())
    }

    /// The dataset's share of what was allocated since start-up, in percent.
    pub fn dataset_percent(&self) -> f64 {
        let net = self.alloc.allocated.saturating_sub(self.startup).max(1);
        ratio(self.dataset(), net) * 100.0
    }
}

/// jemalloc's stats writer: appends to the Vec<u8> behind `opaque`.
extern "C" fn append_stats(opaque: *mut libc::c_void, text: *const libc::c_char) {
    if opaque.is_null() || text.is_null() {
        return;
    }
    // SAFETY: `opaque` is the Vec<u8> MEMORY MALLOC-STATS passed; `text` is NUL-terminated.
    unsafe {
        let out = &mut *(opaque as *mut Vec<u8>);
        out.extend_from_slice(std::ffi::CStr::from_ptr(text).to_bytes());
    }
}

/// jemalloc's figures for the whole process.
pub struct Alloc {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
}

fn alloc() -> Alloc {
    let _ = tikv_jemalloc_ctl::epoch::advance();
    Alloc {
        allocated: tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64,
        active: tikv_jemalloc_ctl::stats::active::read().unwrap_or(0) as u64,
        resident: tikv_jemalloc_ctl::stats::resident::read().unwrap_or(0) as u64,
    }
}

pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

pub fn handle(ctx: &ShardCtx, conn: &mut Conn, l: Lookup, _argv: &[&[u8]]) -> Result<(), Error> {
    match l.spec.name {
        "help" => crate::server_cmds::help(
            conn,
            "MEMORY",
            &[
                "DOCTOR",
                "    Return memory problems reports.",
                "MALLOC-STATS",
                "    Return internal statistics report from the memory allocator.",
                "PURGE",
                "    Attempt to purge dirty pages for reclamation by the allocator.",
                "STATS",
                "    Return information about the memory usage of the server.",
                "USAGE <key> [SAMPLES <count>]",
                "    Return memory in bytes used by <key> and its value. Nested values are",
                "    sampled up to <count> times (default: 5, 0 means sample all).",
            ],
        ),
        "malloc-stats" => {
            let mut out: Vec<u8> = Vec::new();
            // SAFETY: the callback only appends the NUL-terminated text jemalloc hands it to
            // the Vec passed as `opaque`, which outlives the call.
            unsafe {
                tikv_jemalloc_sys::malloc_stats_print(
                    Some(append_stats),
                    &mut out as *mut Vec<u8> as *mut libc::c_void,
                    std::ptr::null(),
                );
            }
            conn.reply().verbatim(&out);
        }
        "purge" => {
            purge();
            conn.reply().ok();
        }
        name => {
            // STATS and DOCTOR need every shard's key counts.
            let doctor = name == "doctor";
            let shared = ctx.shared.clone();
            let parts = (0..ctx.n).map(|s| (s, ReqBody::Stats(false))).collect();
            crate::dispatch::fan_out(
                ctx,
                conn,
                parts,
                Box::new(move |_, conn, results| {
                    let stats: Vec<(usize, ShardStats)> = results
                        .into_iter()
                        .filter_map(|(id, b)| match b {
                            RepBody::Stats(s) => Some((id, *s)),
                            _ => None,
                        })
                        .collect();
                    let m = Breakdown::measure(&shared, &stats);
                    if doctor {
                        doctor_report(conn, &m.alloc, m.peak, m.rss, m.keys);
                    } else {
                        stats_reply(conn, &m);
                    }
                }),
            );
        }
    }
    Ok(())
}

fn stats_reply(conn: &mut Conn, m: &Breakdown) {
    let a = &m.alloc;
    let mut r = conn.reply();
    r.map(27 + m.per_db.len());
    let int = |r: &mut shards::resp::Reply, k: &str, v: u64| {
        r.bulk(k.as_bytes());
        r.int(v as i64);
    };
    let dbl = |r: &mut shards::resp::Reply, k: &str, v: f64| {
        r.bulk(k.as_bytes());
        r.double(v);
    };
    int(&mut r, "peak.allocated", m.peak);
    int(&mut r, "total.allocated", a.allocated);
    int(&mut r, "startup.allocated", m.startup);
    int(&mut r, "replication.backlog", 0);
    int(&mut r, "clients.slaves", 0);
    int(&mut r, "clients.normal", m.clients);
    int(&mut r, "cluster.links", 0);
    int(&mut r, "aof.buffer", m.aof_buffer);
    int(&mut r, "lua.caches", m.scripts.1);
    int(&mut r, "functions.caches", m.functions.2);
    for (db, (main, expires)) in &m.per_db {
        r.bulk(format!("db.{db}").as_bytes());
        r.map(3);
        int(&mut r, "overhead.hashtable.main", *main);
        int(&mut r, "overhead.hashtable.expires", *expires);
        int(&mut r, "overhead.hashtable.slot-to-keys", 0);
    }
    int(&mut r, "overhead.total", m.overhead());
    int(&mut r, "keys.count", m.keys);
    let net = a.allocated.saturating_sub(m.startup);
    int(
        &mut r,
        "keys.bytes-per-key",
        net.checked_div(m.keys).unwrap_or(0),
    );
    int(&mut r, "dataset.bytes", m.dataset());
    dbl(&mut r, "dataset.percentage", m.dataset_percent());
    dbl(
        &mut r,
        "peak.percentage",
        ratio(a.allocated, m.peak) * 100.0,
    );
    int(&mut r, "allocator.allocated", a.allocated);
    int(&mut r, "allocator.active", a.active);
    int(&mut r, "allocator.resident", a.resident);
    // Each of these is a ratio of two figures and the bytes between them.
    for (ratio_name, bytes_name, num, den) in [
        (
            "allocator-fragmentation.ratio",
            "allocator-fragmentation.bytes",
            a.active,
            a.allocated,
        ),
        (
            "allocator-rss.ratio",
            "allocator-rss.bytes",
            a.resident,
            a.active,
        ),
        (
            "rss-overhead.ratio",
            "rss-overhead.bytes",
            m.rss,
            a.resident,
        ),
        ("fragmentation", "fragmentation.bytes", m.rss, a.allocated),
    ] {
        dbl(&mut r, ratio_name, ratio(num, den));
        int(&mut r, bytes_name, num.saturating_sub(den));
    }
}

/// A short report in our own words: what looks wrong, or that nothing does.
fn doctor_report(conn: &mut Conn, a: &Alloc, peak: u64, rss: u64, keys: u64) {
    let mut issues = Vec::new();
    if keys == 0 && a.allocated < 5 << 20 {
        let text = "The instance is nearly empty: there is nothing to diagnose yet.\n";
        conn.reply().verbatim(text.as_bytes());
        return;
    }
    let frag = ratio(rss, a.allocated);
    if frag > 1.4 && rss > 64 << 20 {
        issues.push(format!(
            "* Fragmentation: the process holds {:.2} times the bytes it has allocated ({} resident for {} allocated). MEMORY PURGE returns unused pages to the system.",
            frag, rss, a.allocated
        ));
    }
    if peak > 0 && ratio(peak, a.allocated) > 1.5 {
        issues.push(format!(
            "* Peak: allocation once reached {peak} bytes, {:.0}% of now; the memory freed since may stay resident.",
            ratio(peak, a.allocated) * 100.0
        ));
    }
    let text = if issues.is_empty() {
        "No memory problems detected.\n".to_string()
    } else {
        format!("Memory report:\n\n{}\n", issues.join("\n"))
    };
    conn.reply().verbatim(text.as_bytes());
}

/// Returns every arena's unused dirty pages to the system (MEMORY PURGE).
pub fn purge() {
    // SAFETY: mallctl with a constant NUL-terminated name and no values to read or write;
    // 4096 is MALLCTL_ARENAS_ALL.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}
