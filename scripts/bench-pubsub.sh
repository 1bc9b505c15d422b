#!/usr/bin/env bash
# Pub/Sub fan-out, shardis (release build, 2 shards) against redis-server 7 in the same run:
# SUBS subscribers (redis-cli processes reading and discarding) on one channel, and
# redis-benchmark publishing N messages of 32 bytes from CLIENTS connections. Reports
# publishes per second and messages delivered per second (publishes x subscribers), and the
# shardis/redis ratio, for each subscriber count in SUBS_LIST.
#
#   scripts/bench-pubsub.sh                    # SUBS_LIST="1 10 100" N=20000 CLIENTS=10
set -euo pipefail
cd "$(dirname "$0")/.."

SUBS_LIST=${SUBS_LIST:-1 10 100}
N=${N:-20000}
CLIENTS=${CLIENTS:-10}
BIN=${SHARDIS_BIN:-target/release/shardis}

SHARDIS_EXTRA=()
REDIS_EXTRA=()
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

start_redis redis "${pin_server[@]}"
start_shardis s2 2

# publish PORT SUBS: starts SUBS subscribers, publishes, prints publishes/s.
publish() {
    local port=$1 subs=$2 sub_pids=() i
    for i in $(seq "$subs"); do
        redis-cli -p "$port" SUBSCRIBE fan >/dev/null &
        sub_pids+=($!)
    done
    # Wait until every subscriber is in.
    for _ in $(seq 200); do
        [ "$(redis-cli -p "$port" PUBSUB NUMSUB fan | tail -n1)" = "$subs" ] && break
        sleep 0.05
    done
    "${pin_client[@]}" redis-benchmark -p "$port" -c "$CLIENTS" -n "$N" --csv PUBLISH fan 0123456789abcdef0123456789abcdef 2>/dev/null |
        grep -v '^"test"' | tail -n1 | awk -F'"' '{print $4}'
    kill "${sub_pids[@]}" 2>/dev/null || true
    wait "${sub_pids[@]}" 2>/dev/null || true
}

printf '%5s | %12s %12s | %14s %14s | %7s\n' subs "redis pub/s" "s2 pub/s" "redis msg/s" "s2 msg/s" "s2/r"
for subs in $SUBS_LIST; do
    r=$(publish "$PORT_redis" "$subs")
    s=$(publish "$PORT_s2" "$subs")
    awk -v n="$subs" -v r="$r" -v s="$s" 'BEGIN {
        printf "%5d | %12.0f %12.0f | %14.0f %14.0f | %7.2f\n", n, r, s, r * n, s * n, (r > 0 ? s / r : 0)
    }'
done
