#!/usr/bin/env bash
# Streams, shardis (release build) against redis-server 7 in the same run.
#
# 1. Memory: ENTRIES entries with 3 fields (`sensor`, `temp`, `seq` with a random value) added
#    to one stream with XADD `*` (redis-benchmark, pipelined); the memory each server's
#    process gained (PSS), per entry, and the ratio.
# 2. Throughput and server CPU per request, redis-benchmark -c CLIENTS -n N at each depth in
#    PIPES, median of ROUNDS:
#    XADD (`*`, 3 fields), XRANGE - + COUNT 10 over that stream, and XREADGROUP COUNT 10 `>`
#    (each call delivers 10 new entries and adds them to the group's pending list).
#    Against redis-server, 1-shard and 2-shard shardis.
#
#   scripts/bench-streams.sh              # ENTRIES=1000000 ROUNDS=3 N=100000 CLIENTS=50 PIPES="1 16"
#
# Pinning as in bench-vs-redis.sh: redis and 1-shard shardis on CPU 0, the client on CPU 1;
# 2-shard shardis unpinned.
set -euo pipefail
cd "$(dirname "$0")/.."

ENTRIES=${ENTRIES:-1000000}
ROUNDS=${ROUNDS:-3}
N=${N:-100000}
CLIENTS=${CLIENTS:-50}
PIPES=${PIPES:-1 16}
BIN=${SHARDIS_BIN:-target/release/shardis}

SHARDIS_EXTRA=()
REDIS_EXTRA=()
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

start_trio

xadd_load() { # PORT KEY COUNT
    "${pin_client[@]}" redis-benchmark -p "$1" -n "$3" -c 20 -P 64 -r 1000000 -q \
        XADD "$2" '*' sensor sensor-42 temp 21.5 seq __rand_int__ >/dev/null
}

echo "## Memory: one stream of $ENTRIES entries with 3 fields"
printf '%-6s | %12s %14s | %8s\n' server "PSS gain KiB" "bytes/entry" ratio
declare -A per_entry gain
for s in "${servers[@]}"; do
    port=$(port_of "$s")
    before=$(rss_kb "$(pid_of "$s")")
    xadd_load "$port" mem:stream "$ENTRIES"
    # redis-benchmark rounds the count up to whole pipelines: use the length it reached.
    len=$(redis-cli -p "$port" XLEN mem:stream)
    [ "$len" -ge "$ENTRIES" ] || { echo "$s: XLEN $len, expected $ENTRIES" >&2; exit 1; }
    after=$(rss_kb "$(pid_of "$s")")
    gain[$s]=$((after - before))
    per_entry[$s]=$(awk -v a="$after" -v b="$before" -v n="$len" 'BEGIN {printf "%.1f", (a - b) * 1024 / n}')
    redis-cli -p "$port" DEL mem:stream >/dev/null
done
for s in "${servers[@]}"; do
    ratio=$(awk -v x="${per_entry[$s]}" -v r="${per_entry[redis]}" 'BEGIN {printf "%.2f", x / r}')
    printf '%-6s | %12s %14s | %8s\n' "$s" "${gain[$s]}" "${per_entry[$s]}" "$ratio"
done


echo
echo "## Throughput: redis-benchmark -c $CLIENTS -n $N, median of $ROUNDS rounds (requests/s)"
results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
    for s in "${servers[@]}"; do
        port=$(port_of "$s")
        key="bench:$round"
        redis-cli -p "$port" DEL "$key" >/dev/null
        for pipe in $PIPES; do
            echo "xadd $pipe $s $(rb_bench "$s" "$pipe" XADD "$key" '*' sensor sensor-42 temp 21.5 seq __rand_int__)" >>"$results"
            echo "xrange $pipe $s $(rb_bench "$s" "$pipe" XRANGE "$key" - + COUNT 10)" >>"$results"
        done
        # Enough entries for every XREADGROUP to deliver 10 new ones.
        for pipe in $PIPES; do
            xadd_load "$port" "$key:g$pipe" $((N * 10 + 1000))
            redis-cli -p "$port" XGROUP CREATE "$key:g$pipe" grp 0 >/dev/null
            echo "xreadgroup $pipe $s $(rb_bench "$s" "$pipe" XREADGROUP GROUP grp c1 COUNT 10 STREAMS "$key:g$pipe" '>')" >>"$results"
            redis-cli -p "$port" DEL "$key:g$pipe" >/dev/null
        done
        redis-cli -p "$port" DEL "$key" >/dev/null
    done
done
ratio_header
for cmd in xadd xrange xreadgroup; do
    for pipe in $PIPES; do
        ratio_row "$results" "$cmd" "$pipe"
    done
done
echo "(us: server CPU microseconds per request; s2's is both shards' together)"
