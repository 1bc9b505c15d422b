//! Request parsing (RESP multibulk and inline) over arbitrary bytes: see
//! `shards::fuzz::resp_parse`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shards::fuzz::resp_parse(data));
