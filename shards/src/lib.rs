//! The single-shard engine of shardis.
//!
//! Rules this crate keeps, so that it stays testable and fast:
//! - **No I/O and no runtime.** Nothing here opens a socket or a file, spawns a task or reads a
//!   clock. Time comes in with each call (`now_ms`), randomness from the shard's own seeded
//!   generator.
//! - **One core.** A [`Shard`] is owned by exactly one thread; nothing in it is shared or locked.
//! - **Replies are bytes.** Commands write their RESP2/RESP3 reply straight into the caller's
//!   buffer, so a reply produced on one core travels to another as ready bytes.
//! - **Client mistakes are replies.** Bad input becomes an [`Error`] whose text is Redis's; it never
//!   panics and never logs.

pub mod acl;
pub mod aof;
pub mod cmd;
pub mod error;
pub mod evict;
pub mod fuzz;
pub mod glob;
pub mod keyspace;
pub mod latency;
pub mod limits;
pub mod notify;
pub mod pqsort;
pub mod prop;
#[cfg(test)]
mod prop_tests;
pub mod rdb;
pub mod resp;
pub mod rng;
pub mod script;
pub mod search;
pub mod shard;
pub mod slot;
pub mod slowlog;
pub mod tracking;
pub mod types;
pub mod util;

pub use error::{Error, Result};
pub use shard::Shard;
