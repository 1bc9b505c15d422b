//! shardis: a Redis-compatible, thread-per-core, shared-nothing in-memory data store.
//!
//! The binary reads its configuration, checks that the machine can run it (io_uring, locked
//! memory, a free port), then starts one glommio executor per shard, each pinned to its core and
//! serving its own share of the client connections with a Redis-style event loop (see `net`).
//! Keys belong to shards by hash slot; commands for another shard's keys travel over channel
//! meshes (see `dispatch`).

/// Writes a line to standard error, ignoring failures (a closed stderr must never stop the
/// server: `eprintln!` would panic).
#[macro_export]
/// Logs a notice in Redis's line format (see `logging`).
macro_rules! log {
    ($($arg:tt)*) => {{
        $crate::logging::write($crate::logging::Level::Notice, &format!($($arg)*));
    }};
}

/// Logs a warning (`#`).
#[allow(unused_macros)]
macro_rules! warn {
    ($($arg:tt)*) => {{
        $crate::logging::write($crate::logging::Level::Warning, &format!($($arg)*));
    }};
}

mod acl_cmds;
mod aof;
mod block;
mod clock;
mod cluster;
mod config;
mod conn;
mod ctx;
mod debug;
mod dispatch;
mod info;
mod load;
mod logging;
mod maxmemory;
mod memory;
mod merge;
mod metrics;
mod monitor;
mod msg;
mod multi;
mod net;
mod pause;
mod persist;
mod pubsub;
mod repl;
mod save;
mod sentinel;
mod server_cmds;
mod snapshot;
mod startup;
mod tls;
mod tracking;
mod txn;

use std::sync::Arc;

/// jemalloc: compact size classes for many small allocations, and the statistics behind
/// INFO memory.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    // A panic on any shard stops the whole process: a half-alive server that silently lost a
    // core's keys would be worse.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    if sentinel::requested() {
        std::process::exit(sentinel::run());
    }
    let config = match config::from_args() {
        Ok(c) => c,
        Err(e) => {
            warn!("*** FATAL CONFIG ERROR *** {e:#}");
            std::process::exit(1);
        }
    };
    if let Err(e) = logging::init(&config) {
        warn!("{e:#}");
        std::process::exit(1);
    }
    clock::calibrate();
    if let Err(e) = startup::run(Arc::new(config)) {
        warn!("shardis: {e:#}");
        std::process::exit(1);
    }
}
