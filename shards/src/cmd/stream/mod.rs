//! Stream commands (Redis's `t_stream.c`): XADD, XRANGE, XREAD, … with Redis 7.0's replies,
//! errors and keyspace events. Consumer-group commands live in [`group`]. The data structure
//! lives in `types::stream`.

pub mod group;

use super::spec::CommandSpec;

/// The stream commands that do not involve consumer groups' management.
pub const COMMANDS: &[CommandSpec] = &[];
