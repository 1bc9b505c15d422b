//! RESTORE's payload decoder over arbitrary bytes: see `shards::fuzz::restore_payload`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shards::fuzz::restore_payload(data));
