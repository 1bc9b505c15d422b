#!/usr/bin/env bash
# Persistence benchmarks, shardis (release build) against redis-server 7 in the same run.
#
# 1. SET throughput with the AOF on, `appendfsync always` and `everysec` (FSYNC_MODES):
#    redis-benchmark -t set -c CLIENTS -n N at each pipeline depth in PIPES, median of ROUNDS,
#    against redis-server, 1-shard and 2-shard shardis with the same settings.
# 2. BGSAVE under load (unless SKIP_BGSAVE=1): KEYS keys of VALUE bytes (DEBUG POPULATE), then
#    a redis-benchmark SET/GET load on random keys of that keyspace while BGSAVE runs. Reports
#    the BGSAVE's duration, the peak extra memory during it (PSS: shardis's process;
#    redis: the server and its fork child together) as a share of the dataset, and the load's
#    p99 latency.
#
#   scripts/bench-persist.sh                       # ROUNDS=3 N=100000 KEYS=2000000 VALUE=100
#   KEYS=16000000 VALUE=100 FSYNC_MODES=skip scripts/bench-persist.sh   # BGSAVE of about 2 GB only
#
# Pinning as in bench-vs-redis.sh: redis and 1-shard shardis on CPU 0, the client on CPU 1;
# 2-shard shardis unpinned. Data files go to a temporary directory on the same disk as /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
N=${N:-100000}
CLIENTS=${CLIENTS:-50}
PIPES=${PIPES:-1 16}
FSYNC_MODES=${FSYNC_MODES:-always everysec}
KEYS=${KEYS:-2000000}
VALUE=${VALUE:-100}
BIN=${SHARDIS_BIN:-target/release/shardis}

SHARDIS_EXTRA=()
REDIS_EXTRA=()
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

stop() { # stop PID
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    kill -KILL "$1" 2>/dev/null || true
}

echo "## SET with the AOF on: redis-benchmark -t set -c $CLIENTS -n $N, median of $ROUNDS rounds"
printf '%-9s %3s | %10s %10s %10s | %8s %8s | %7s %7s %7s\n' fsync P "redis rps" "s1 rps" "s2 rps" "s1/r" "s2/r" "r p99" "s1 p99" "s2 p99"
for mode in $FSYNC_MODES; do
    [ "$mode" = skip ] && continue
    mkdir -p "$work/$mode/redis" "$work/$mode/s1" "$work/$mode/s2"
    REDIS_EXTRA=(--appendonly yes --appendfsync "$mode" --dir "$work/$mode/redis")
    start_redis redis "${pin_server[@]}"
    SHARDIS_EXTRA=(--appendonly yes --appendfsync "$mode" --dir "$work/$mode/s1")
    start_shardis s1 1 "${pin_server[@]}"
    SHARDIS_EXTRA=(--appendonly yes --appendfsync "$mode" --dir "$work/$mode/s2")
    start_shardis s2 2
    results="$work/$mode/results"
    : >"$results"
    for _ in $(seq "$ROUNDS"); do
        for pipe in $PIPES; do
            for name in redis s1 s2; do
                port_var="PORT_$name"
                line=$("${pin_client[@]}" redis-benchmark -p "${!port_var}" -c "$CLIENTS" -n "$N" -P "$pipe" -r 1000000 --csv -t set 2>/dev/null | grep -v '^"test"' | tail -n1)
                rps=$(echo "$line" | awk -F'"' '{print $4}')
                p99=$(echo "$line" | awk -F'"' '{print $14}')
                echo "$name $pipe $rps ${p99:-0}" >>"$results"
            done
        done
    done
    pick() { awk -v s="$1" -v p="$2" -v c="$3" '$1 == s && $2 == p {print $c}' "$results" | median; }
    for pipe in $PIPES; do
        awk -v m="$mode" -v p="$pipe" -v rr="$(pick redis "$pipe" 3)" -v ar="$(pick s1 "$pipe" 3)" -v br="$(pick s2 "$pipe" 3)" \
            -v rp="$(pick redis "$pipe" 4)" -v ap="$(pick s1 "$pipe" 4)" -v bp="$(pick s2 "$pipe" 4)" '
            function ratio(x, y) { return y > 0 ? sprintf("%.2f", x / y) : "n/a" }
            BEGIN { printf "%-9s %3s | %10.0f %10.0f %10.0f | %8s %8s | %7.3f %7.3f %7.3f\n", m, p, rr, ar, br, ratio(ar, rr), ratio(br, rr), rp, ap, bp }'
    done
    for name in redis s1 s2; do
        pid_var="PID_$name"
        stop "${!pid_var}"
    done
done

[ "${SKIP_BGSAVE:-0}" = 1 ] && exit 0

echo
echo "## BGSAVE of $KEYS keys of $VALUE bytes under a SET/GET load (-c $CLIENTS, random keys)"
printf '%-7s | %9s %9s | %9s %11s %9s | %16s\n' server "data MiB" "base MiB" "save s" "peak +MiB" "peak/data" "p99 ms idle/save"
for name in redis s2; do
    mkdir -p "$work/bg/$name"
    if [ "$name" = redis ]; then
        REDIS_EXTRA=(--dir "$work/bg/$name" --enable-debug-command yes)
        start_redis redis "${pin_server[@]}"
    else
        SHARDIS_EXTRA=(--dir "$work/bg/$name" --enable-debug-command yes)
        start_shardis s2 2
    fi
    pid_var="PID_$name"
    port_var="PORT_$name"
    pid=${!pid_var}
    port=${!port_var}
    empty_kb=$(rss_kb "$pid")
    redis-cli -p "$port" DEBUG POPULATE "$KEYS" key "$VALUE" >/dev/null
    base_kb=$(rss_kb "$pid")
    data_kb=$((base_kb - empty_kb))
    # Latency windows of WINDOW SETs on random keys: one before the save (the baseline), then
    # back to back until the save is over; the table gives the worst window's p99.
    window() {
        "${pin_client[@]}" redis-benchmark -p "$port" -c "$CLIENTS" -n "${WINDOW:-20000}" -r "$KEYS" -d "$VALUE" --csv -t set 2>/dev/null |
            grep '^"SET"' | awk -F'"' '{print $14}'
    }
    base_p99=$(window)
    rm -f "$work/bg/stop"
    (while [ ! -f "$work/bg/stop" ]; do window; done) >"$work/bg/$name/p99" &
    load=$!
    t0=$(date +%s.%N)
    redis-cli -p "$port" BGSAVE >/dev/null
    peak=$base_kb
    while :; do
        r=$(rss_kb "$pid")
        [ "$r" -gt "$peak" ] && peak=$r
        if [ "$(redis-cli -p "$port" INFO persistence | tr -d '\r' | sed -n 's/^rdb_bgsave_in_progress://p')" = 0 ]; then
            break
        fi
        sleep 0.02
    done
    t1=$(date +%s.%N)
    touch "$work/bg/stop"
    wait "$load" 2>/dev/null || true
    p99=$(sort -g "$work/bg/$name/p99" | tail -n1)
    p99="${base_p99:-?}/${p99:-?}"
    awk -v n="$name" -v d="$data_kb" -v b="$base_kb" -v t0="$t0" -v t1="$t1" -v pk="$peak" -v p="${p99:-n/a}" '
        BEGIN { printf "%-7s | %9.0f %9.0f | %9.2f %11.0f %9.2f | %16s\n", n, d / 1024, b / 1024, t1 - t0, (pk - b) / 1024, (pk - b) / (d > 0 ? d : 1), p }'
    stop "$pid"
done
