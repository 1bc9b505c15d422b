//! Commands with arbitrary arguments against one shard: see `shards::fuzz::command_args`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| shards::fuzz::command_args(data));
