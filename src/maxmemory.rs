//! The memory figure `maxmemory` is enforced against, as each shard thread reads it.
//!
//! The figure is the process's allocated bytes as jemalloc counts them (`stats.allocated`, the
//! `used_memory` INFO reports), so the limit means what an operator reads in INFO, as in Redis.
//! It is not a per-shard count, and cannot cheaply be one exactly: a request parsed on one
//! shard and run on another is freed by the second, and its reply the other way round, so the
//! per-thread allocated/deallocated counters drift apart without bound under cross-shard
//! traffic (only their sum over all threads is exact); per-arena statistics are blurred by
//! thread caches that hand one arena's freed blocks to another thread; and counting keyspace
//! bytes per key would make every in-place edit report its size change. So every shard checks
//! the process-wide figure against `maxmemory` and evicts from its own keys (whose share of the
//! process is about 1/nshards, keys being spread by hash slot) until it is back under.
//!
//! Reading `stats.allocated` means advancing jemalloc's statistics epoch, a global operation
//! of some microseconds, so a shard reads it at most every [`REFRESH_US`]; in between, the
//! engine subtracts what its own evictions freed since the reading (measured exactly with the
//! thread's allocation counters around each deletion), so a shard neither evicts twice for
//! one excess nor, by adding its thread's other allocations, for bytes that another shard
//! frees (a request forwarded to its owner is allocated here and freed there).

use shards::evict::MemoryProbe;
use std::cell::Cell;
use tikv_jemalloc_ctl::thread::{allocatedp, deallocatedp, ThreadLocal};

/// How stale the process-wide part of the figure may get, µs.
const REFRESH_US: u64 = 5_000;

thread_local! {
    /// This thread's allocated and deallocated byte counters (jemalloc keeps them per thread).
    static COUNTERS: Option<(ThreadLocal<u64>, ThreadLocal<u64>)> =
        allocatedp::read().ok().zip(deallocatedp::read().ok());
    /// When the process-wide figure was last read (the reading's id), and what it was.
    static LAST: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// This thread's allocated bytes minus its freed bytes, wrapping (only differences matter).
fn thread_net() -> u64 {
    COUNTERS.with(|c| c.map_or(0, |(a, d)| a.get().wrapping_sub(d.get())))
}

/// The bytes in use as `maxmemory` counts them (see the module's doc), and the reading's id.
pub fn used() -> (u64, u64) {
    let now = crate::ctx::now_us();
    LAST.with(|last| {
        let (at, bytes) = last.get();
        if at != 0 && now.saturating_sub(at) < REFRESH_US {
            return (bytes, at);
        }
        let bytes = crate::info::allocated_bytes();
        last.set((now, bytes));
        (bytes, now)
    })
}

/// A running count of the bytes this thread freed net of what it allocated, wrapping: the
/// difference across a deletion is what the deletion freed.
pub fn freed() -> u64 {
    thread_net().wrapping_neg()
}

/// The probe a shard reads its memory use with.
pub fn probe() -> MemoryProbe {
    MemoryProbe {
        used,
        freed,
        now_us: crate::ctx::now_us,
    }
}
