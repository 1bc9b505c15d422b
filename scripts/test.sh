#!/usr/bin/env bash
# The project's test command (README): installs the reference tools, builds the server (debug)
# and runs every test in the workspace. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# --workspace: tests/loadgen.rs drives the load generator's binary too.
cargo build --workspace
# --no-fail-fast: run every test binary and report all failures, still exiting non-zero.
cargo test --workspace --no-fail-fast
