#!/usr/bin/env bash
# The project's test command (README): installs the reference tools, builds the server (debug)
# and runs every test in the workspace. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build
cargo test --workspace
