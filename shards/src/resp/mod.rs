//! The RESP codec: requests in (RESP multibulk and inline commands), replies out (RESP2/RESP3).
//! The AOF and replication streams reuse both halves.

pub mod parse;
mod reply;

pub use parse::{parse_command, split_args, ParseLimits, Parsed, ProtocolError};
pub use reply::{Proto, Reply};
