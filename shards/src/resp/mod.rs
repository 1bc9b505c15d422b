//! The RESP codec: requests in (RESP multibulk and inline commands), replies out (RESP2/RESP3).
//! The AOF and replication streams reuse both halves.

pub mod parse;
mod reply;

pub use parse::{parse_command, split_args, ParseLimits, Parsed, ProtocolError};
pub use reply::{Proto, Reply};

/// Encodes a command as a RESP multibulk frame.
pub fn encode_command(argv: &[&[u8]], out: &mut Vec<u8>) {
    let mut r = Reply::new(out, Proto::Resp2);
    r.array(argv.len());
    for a in argv {
        r.bulk(a);
    }
}
