//! MEMORY STATS / DOCTOR / MALLOC-STATS / PURGE / HELP (USAGE runs on the key's shard, in
//! the engine). The figures are the allocator's (jemalloc), for the whole process.

use crate::conn::Conn;
use crate::ctx::ShardCtx;
use crate::msg::{RepBody, ReqBody};
use shards::cmd::Lookup;
use shards::Error;

/// Bytes this thread has allocated so far (`Shard::thread_allocated`).
pub fn thread_allocated() -> u64 {
    thread_local! {
        static COUNTER: Option<tikv_jemalloc_ctl::thread::ThreadLocal<u64>> =
            tikv_jemalloc_ctl::thread::allocatedp::read().ok();
    }
    COUNTER.with(|c| c.map_or(0, |c| c.get()))
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

struct Alloc {
    allocated: u64,
    active: u64,
    resident: u64,
}

fn alloc() -> Alloc {
    let _ = tikv_jemalloc_ctl::epoch::advance();
    Alloc {
        allocated: tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64,
        active: tikv_jemalloc_ctl::stats::active::read().unwrap_or(0) as u64,
        resident: tikv_jemalloc_ctl::stats::resident::read().unwrap_or(0) as u64,
    }
}

fn ratio(a: u64, b: u64) -> f64 {
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
            // SAFETY: mallctl with a constant NUL-terminated name and no values to read or
            // write; 4096 is MALLCTL_ARENAS_ALL.
            unsafe {
                tikv_jemalloc_sys::mallctl(
                    c"arena.4096.purge".as_ptr(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                );
            }
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
                    let mut keys = 0u64;
                    let mut per_db = std::collections::BTreeMap::<usize, (u64, u64)>::new();
                    for (_, b) in &results {
                        if let RepBody::Stats(s) = b {
                            for &(db, n, expires) in &s.keys {
                                keys += n as u64;
                                let e = per_db.entry(db).or_default();
                                e.0 += n as u64;
                                e.1 += expires;
                            }
                        }
                    }
                    let a = alloc();
                    let peak = shared.peak_memory(a.allocated);
                    let rss = crate::info::rss_bytes();
                    if doctor {
                        doctor_report(conn, &a, peak, rss, keys);
                    } else {
                        stats_reply(conn, &a, peak, rss, keys, &per_db);
                    }
                }),
            );
        }
    }
    Ok(())
}

fn stats_reply(
    conn: &mut Conn,
    a: &Alloc,
    peak: u64,
    rss: u64,
    keys: u64,
    per_db: &std::collections::BTreeMap<usize, (u64, u64)>,
) {
    let mut r = conn.reply();
    r.map(27 + per_db.len());
    let int = |r: &mut shards::resp::Reply, k: &str, v: u64| {
        r.bulk(k.as_bytes());
        r.int(v as i64);
    };
    let dbl = |r: &mut shards::resp::Reply, k: &str, v: f64| {
        r.bulk(k.as_bytes());
        r.double(v);
    };
    int(&mut r, "peak.allocated", peak);
    int(&mut r, "total.allocated", a.allocated);
    int(&mut r, "startup.allocated", 0);
    int(&mut r, "replication.backlog", 0);
    int(&mut r, "clients.slaves", 0);
    int(&mut r, "clients.normal", 0);
    int(&mut r, "cluster.links", 0);
    int(&mut r, "aof.buffer", 0);
    int(&mut r, "lua.caches", 0);
    int(&mut r, "functions.caches", 0);
    for (db, (n, expires)) in per_db {
        r.bulk(format!("db.{db}").as_bytes());
        r.map(3);
        // Per-key bookkeeping of the keyspace's index (slot and entry) and expiry table.
        int(&mut r, "overhead.hashtable.main", n * 48);
        int(&mut r, "overhead.hashtable.expires", expires * 16);
        int(&mut r, "overhead.hashtable.slot-to-keys", 0);
    }
    int(&mut r, "overhead.total", 0);
    int(&mut r, "keys.count", keys);
    int(
        &mut r,
        "keys.bytes-per-key",
        a.allocated.checked_div(keys).unwrap_or(0),
    );
    int(&mut r, "dataset.bytes", a.allocated);
    dbl(&mut r, "dataset.percentage", 100.0);
    dbl(&mut r, "peak.percentage", ratio(a.allocated, peak) * 100.0);
    int(&mut r, "allocator.allocated", a.allocated);
    int(&mut r, "allocator.active", a.active);
    int(&mut r, "allocator.resident", a.resident);
    dbl(
        &mut r,
        "allocator-fragmentation.ratio",
        ratio(a.active, a.allocated),
    );
    int(
        &mut r,
        "allocator-fragmentation.bytes",
        a.active.saturating_sub(a.allocated),
    );
    dbl(&mut r, "allocator-rss.ratio", ratio(a.resident, a.active));
    int(
        &mut r,
        "allocator-rss.bytes",
        a.resident.saturating_sub(a.active),
    );
    dbl(&mut r, "rss-overhead.ratio", ratio(rss, a.resident));
    int(&mut r, "rss-overhead.bytes", rss.saturating_sub(a.resident));
    dbl(&mut r, "fragmentation", ratio(rss, a.allocated));
    int(
        &mut r,
        "fragmentation.bytes",
        rss.saturating_sub(a.allocated),
    );
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
