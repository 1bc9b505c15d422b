//! The fuzz targets on stable, for CI: every saved corpus input (`fuzz/corpus/<target>/`) and
//! every crash input found so far (`fuzz/regressions/<target>/`) through the target's function
//! in `shards::fuzz`, then seeded mutations of them (bit flips, truncation, splicing, bytes
//! and length fields set to edge values).
//!
//! `FUZZ_SEED=n` picks the mutation seed (default 1); `FUZZ_SCALE=n` multiplies the number of
//! mutated inputs each target gets ([`ITERATIONS`], about 20 000 in all, a few seconds of a
//! debug build). A failure names the seed, the iteration and the input.

use shards::fuzz::TARGETS;
use shards::rng::Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The saved inputs of `target`: its corpus, then its regressions, sorted by path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        files.extend(paths.into_iter().map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        }));
    }
    files
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn saved_inputs_pass() {
    for (target, run) in TARGETS {
        let files = inputs(target);
        assert!(
            !files.is_empty(),
            "no corpus for {target} in fuzz/corpus/{target}"
        );
        for (path, data) in files {
            if catch_unwind(|| run(&data)).is_err() {
                panic!("{target} fails on {}", path.display());
            }
        }
    }
}

/// One mutation of `data`, drawing a second input from `pool` for splicing.
fn mutate(rng: &mut Rng, data: &[u8], pool: &[(PathBuf, Vec<u8>)]) -> Vec<u8> {
    let mut out = data.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => out[rng.below(len)] ^= 1 << rng.below(8),
            1 if len > 0 => out.truncate(rng.below(len)),
            2 => {
                let other = &pool[rng.below(pool.len())].1;
                let from = rng.below(other.len() + 1);
                let at = rng.below(len + 1);
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
            3 if len > 0 => {
                // A byte set to a value that length and type fields make special.
                const EDGES: &[u8] = &[0, 1, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xfe, 0xff];
                out[rng.below(len)] = EDGES[rng.below(EDGES.len())];
            }
            4 if len >= 4 => {
                // A 4-byte length field (as RDB's 32-bit lengths and listpack headers hold)
                // set to a huge or off-by-one value.
                let at = rng.below(len - 3);
                let field = u32::from_le_bytes(out[at..at + 4].try_into().unwrap());
                let new = [
                    u32::MAX,
                    0x7fff_ffff,
                    field.wrapping_add(1),
                    field.wrapping_sub(1),
                ];
                out[at..at + 4].copy_from_slice(&new[rng.below(4)].to_le_bytes());
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let n = rng.below(len - at).min(64);
                let piece = out[at..at + n].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, piece);
            }
            _ => out.insert(rng.below(len + 1), rng.next_u64() as u8),
        }
    }
    out
}

/// Mutated inputs per target at `FUZZ_SCALE=1`, fewer where one input costs more (a debug
/// build runs a few dozen commands in about 1.5 ms).
const ITERATIONS: &[(&str, u64)] = &[
    ("resp_parse", 7000),
    ("restore_payload", 8000),
    ("rdb_load", 3000),
    ("command_args", 2000),
];

#[test]
fn mutated_inputs_pass() {
    let seed = env_u64("FUZZ_SEED", 1);
    let scale = env_u64("FUZZ_SCALE", 1);
    let mut rng = Rng::new(seed);
    for (target, run) in TARGETS {
        let pool = inputs(target);
        let iterations = scale
            * ITERATIONS
                .iter()
                .find(|(t, _)| t == target)
                .map_or(1000, |t| t.1);
        let started = std::time::Instant::now();
        for i in 0..iterations {
            let base = &pool[rng.below(pool.len())].1;
            let data = mutate(&mut rng, base, &pool);
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                panic!("{target} fails with FUZZ_SEED={seed}, iteration {i}, input {data:?}");
            }
        }
        eprintln!(
            "{target}: {iterations} mutated inputs in {:?}",
            started.elapsed()
        );
    }
}
