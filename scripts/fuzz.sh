#!/usr/bin/env bash
# Runs each libFuzzer target (fuzz/fuzz_targets/) for FUZZ_SECONDS (default 300) and prints how
# many inputs it executed. Needs a nightly toolchain and cargo-fuzz (`cargo install
# cargo-fuzz`); without them it says so and exits 0. The saved corpus (fuzz/corpus/<target>/)
# seeds each run; what a run adds goes to target/fuzz-corpus/<target>/, so the checkout stays
# clean (`cargo +nightly fuzz cmin` folds worthwhile inputs back in). A crash stops the script
# with the input under fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                          # every target, 300 s each
#   FUZZ_SECONDS=60 scripts/fuzz.sh rdb_load # one target
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-300}
if [ "$FUZZ_SECONDS" = 0 ]; then
    echo "fuzz: skipped (FUZZ_SECONDS=0)"
    exit 0
fi
if ! cargo +nightly --version >/dev/null 2>&1 || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: skipped (needs a nightly toolchain and cargo-fuzz: cargo install cargo-fuzz)"
    exit 0
fi
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    targets=(resp_parse restore_payload rdb_load command_args)
fi
for target in "${targets[@]}"; do
    scratch=target/fuzz-corpus/$target
    mkdir -p "$scratch"
    log=target/fuzz-corpus/$target.log
    echo "# fuzz $target for ${FUZZ_SECONDS}s"
    if ! cargo +nightly fuzz run "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096 -timeout=10 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz: $target FAILED (input under fuzz/artifacts/$target/, log in $log)"
        exit 1
    fi
    grep -E "^Done [0-9]+ runs" "$log" || tail -n 5 "$log"
done
echo "fuzz: all targets passed"
