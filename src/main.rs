//! shardis: a Redis-compatible, thread-per-core, shared-nothing in-memory data store.
//!
//! The binary reads its configuration, checks that the machine can run it (io_uring, locked
//! memory, a free port), then starts one glommio executor per shard, each pinned to its core and
//! serving its own share of the client connections with a Redis-style event loop (see `net`).
//! Keys belong to shards by hash slot; commands for another shard's keys travel over channel
//! meshes (see `dispatch`).

mod block;
mod clock;
mod config;
mod conn;
mod ctx;
mod debug;
mod dispatch;
mod info;
mod merge;
mod msg;
mod net;
mod server_cmds;
mod startup;

use std::sync::Arc;

/// jemalloc: compact size classes for many small allocations, and the statistics behind
/// INFO memory.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let config = match config::from_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("*** FATAL CONFIG ERROR *** {e:#}");
            std::process::exit(1);
        }
    };
    clock::calibrate();
    if let Err(e) = startup::run(Arc::new(config)) {
        eprintln!("shardis: {e:#}");
        std::process::exit(1);
    }
}
