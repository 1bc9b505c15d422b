#!/usr/bin/env bash
# Long runs that do not fit in CI, for closing notes: the cross-shard concurrency, blocking and
# linearizability tests many times over (with many more linearizability histories per run),
# many more seeds of the random sorted-set workloads diffed against redis-server, many
# kill-and-restart rounds of the persistence crash tests, and many seeds of random arguments to
# every command (tests/hostile.rs), plus the scripting concurrency test many times over, then
# each libFuzzer target (fuzz/) for FUZZ_SECONDS, when a nightly toolchain and cargo-fuzz are
# installed (skipped otherwise; FUZZ_SECONDS=0 skips them too).
#
#   scripts/soak.sh                 # ROUNDS=20 LIN_ROUNDS=100 ZSET_FUZZ_SEEDS=30 CRASH_ROUNDS=30
#                                   # HOSTILE_SEEDS=20 HOSTILE_COMMANDS=20000 FUZZ_SECONDS=300
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
ROUNDS=${ROUNDS:-20}
export LIN_ROUNDS=${LIN_ROUNDS:-100}
export ZSET_FUZZ_SEEDS=${ZSET_FUZZ_SEEDS:-30}
export CRASH_ROUNDS=${CRASH_ROUNDS:-30}
cargo build --tests -q
for round in $(seq "$ROUNDS"); do
    echo "# round $round of $ROUNDS"
    cargo test -q --test transactions --test linearizability --test blocking 2>&1 | grep -E "^test result|FAILED|panicked"
    cargo test -q --test scripting transfers_across_shards 2>&1 | grep -E "^test result|FAILED|panicked"
done
export HOSTILE_COMMANDS=${HOSTILE_COMMANDS:-20000}
for seed in $(seq 1 "${HOSTILE_SEEDS:-20}"); do
    HOSTILE_SEED=$seed cargo test -q --test hostile 2>&1 | grep -E "^test result|FAILED|panicked"
done
cargo test -q --test differential zsets_random 2>&1 | grep -E "^test result|FAILED|panicked"
cargo test -q --test persistence crash_ 2>&1 | grep -E "^test result|FAILED|panicked"
scripts/fuzz.sh
echo "soak: all rounds passed"
