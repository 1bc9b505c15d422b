//! The whole-file RDB reader over arbitrary bytes: see `shards::fuzz::rdb_load`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shards::fuzz::rdb_load(data));
