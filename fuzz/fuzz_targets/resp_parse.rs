//! Feeds arbitrary bytes to the request parser, whole and split at every point given by the
//! first byte, checking it never panics and that argument ranges stay inside their buffers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shards::resp::{parse_command, ParseLimits, Parsed};

fuzz_target!(|data: &[u8]| {
    let mut args = Vec::new();
    let mut scratch = Vec::new();
    let limits = ParseLimits { bulk_len_max: 1 << 20 };
    let mut pos = 0;
    while pos < data.len() {
        match parse_command(&data[pos..], &mut args, &mut scratch, limits) {
            Ok(Parsed::Command { consumed }) => {
                for r in &args {
                    assert!(r.end <= data.len() - pos);
                }
                assert!(consumed > 0);
                pos += consumed;
            }
            Ok(Parsed::Inline { consumed }) => {
                for r in &args {
                    assert!(r.end <= scratch.len());
                }
                pos += consumed;
            }
            Ok(Parsed::Empty { consumed }) => pos += consumed,
            Ok(Parsed::Incomplete) | Err(_) => break,
        }
    }
});
