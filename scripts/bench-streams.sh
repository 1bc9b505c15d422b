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

start_redis redis "${pin_server[@]}"
start_shardis s1 1 "${pin_server[@]}"
start_shardis s2 2
servers=(redis s1 s2)
port_of() { local v="PORT_$1"; echo "${!v}"; }
pid_of() { local v="PID_$1"; echo "${!v}"; }

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

TICKS=$(getconf CLK_TCK)
# bench NAME PIPE ARGS... : "rps cpu_us" of one redis-benchmark run against server NAME:
# requests per second, and the server's CPU microseconds per request.
bench() {
    local name=$1 pipe=$2 port pid before after rps
    shift 2
    port=$(port_of "$name")
    pid=$(pid_of "$name")
    before=$(cpu_ticks "$pid")
    rps=$("${pin_client[@]}" redis-benchmark -p "$port" -n "$N" -c "$CLIENTS" -P "$pipe" -r 1000000 \
        --csv "$@" | tail -n1 | awk -F'","' '{gsub(/"/, "", $2); print $2}')
    after=$(cpu_ticks "$pid")
    echo "$rps $(awk -v a="$after" -v b="$before" -v t="$TICKS" -v n="$N" 'BEGIN {printf "%.3f", (a - b) * 1e6 / t / n}')"
}

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
            echo "xadd $pipe $s $(bench "$s" "$pipe" XADD "$key" '*' sensor sensor-42 temp 21.5 seq __rand_int__)" >>"$results"
            echo "xrange $pipe $s $(bench "$s" "$pipe" XRANGE "$key" - + COUNT 10)" >>"$results"
        done
        # Enough entries for every XREADGROUP to deliver 10 new ones.
        for pipe in $PIPES; do
            xadd_load "$port" "$key:g$pipe" $((N * 10 + 1000))
            redis-cli -p "$port" XGROUP CREATE "$key:g$pipe" grp 0 >/dev/null
            echo "xreadgroup $pipe $s $(bench "$s" "$pipe" XREADGROUP GROUP grp c1 COUNT 10 STREAMS "$key:g$pipe" '>')" >>"$results"
            redis-cli -p "$port" DEL "$key:g$pipe" >/dev/null
        done
        redis-cli -p "$port" DEL "$key" >/dev/null
    done
done
printf '%-11s %3s | %9s %9s %9s | %5s %5s | %8s %8s %8s | %5s %5s\n' command P "redis rps" "s1 rps" "s2 rps" "s1/r" "s2/r" "redis us" "s1 us" "s2 us" "s1/r" "s2/r"
for cmd in xadd xrange xreadgroup; do
    for pipe in $PIPES; do
        m() { awk -v c="$cmd" -v p="$pipe" -v s="$1" -v col="$2" '$1 == c && $2 == p && $3 == s {print $col}' "$results" | median; }
        r=$(m redis 4)
        a=$(m s1 4)
        b=$(m s2 4)
        rc=$(m redis 5)
        ac=$(m s1 5)
        bc=$(m s2 5)
        printf '%-11s %3s | %9.0f %9.0f %9.0f | %5.2f %5.2f | %8.2f %8.2f %8.2f | %5.2f %5.2f\n' "$cmd" "$pipe" "$r" "$a" "$b" \
            "$(awk -v x="$a" -v y="$r" 'BEGIN {print x / y}')" "$(awk -v x="$b" -v y="$r" 'BEGIN {print x / y}')" \
            "$rc" "$ac" "$bc" \
            "$(awk -v x="$ac" -v y="$rc" 'BEGIN {print x / y}')" "$(awk -v x="$bc" -v y="$rc" 'BEGIN {print x / y}')"
    done
done
echo "(us: server CPU microseconds per request; s2's is both shards' together)"
