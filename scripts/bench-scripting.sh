#!/usr/bin/env bash
# Lua scripting, shardis (release build) against redis-server 7 in the same run: EVALSHA of a
# small script (one GET, one INCR on the same key) over 100000 keys, redis-benchmark -c CLIENTS
# -n N at each depth in PIPES, median of ROUNDS; requests per second and the server's CPU per
# request. Against redis-server, 1-shard and 2-shard shardis (with 2 shards half the keys live
# on the other shard than the connection's: those scripts run as transactions on copies).
#
#   scripts/bench-scripting.sh            # ROUNDS=3 N=200000 CLIENTS=50 PIPES="1 16"
#
# Pinning as in bench-vs-redis.sh: redis and 1-shard shardis on CPU 0, the client on CPU 1;
# 2-shard shardis unpinned.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
N=${N:-200000}
CLIENTS=${CLIENTS:-50}
PIPES=${PIPES:-1 16}
BIN=${SHARDIS_BIN:-target/release/shardis}
BENCH_RANGE=100000

SHARDIS_EXTRA=()
REDIS_EXTRA=()
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

start_trio

SCRIPT="local v = redis.call('get', KEYS[1]) return {v, redis.call('incr', KEYS[1])}"

echo "## EVALSHA (GET + INCR): redis-benchmark -c $CLIENTS -n $N -r 100000, median of $ROUNDS rounds"
results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
    for s in "${servers[@]}"; do
        port=$(port_of "$s")
        sha=$(redis-cli -p "$port" SCRIPT LOAD "$SCRIPT")
        for pipe in $PIPES; do
            echo "evalsha $pipe $s $(rb_bench "$s" "$pipe" EVALSHA "$sha" 1 key:__rand_int__)" >>"$results"
        done
    done
done
ratio_header
for pipe in $PIPES; do
    ratio_row "$results" evalsha "$pipe"
done
echo "(us: server CPU microseconds per request; s2's is both shards' together)"
