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

SCRIPT="local v = redis.call('get', KEYS[1]) return {v, redis.call('incr', KEYS[1])}"
TICKS=$(getconf CLK_TCK)
# bench NAME PIPE ARGS... : "rps cpu_us" of one redis-benchmark run against server NAME.
bench() {
    local name=$1 pipe=$2 port pid before after rps
    shift 2
    port=$(port_of "$name")
    pid=$(pid_of "$name")
    before=$(cpu_ticks "$pid")
    rps=$("${pin_client[@]}" redis-benchmark -p "$port" -n "$N" -c "$CLIENTS" -P "$pipe" -r 100000 \
        --csv "$@" | tail -n1 | awk -F'","' '{gsub(/"/, "", $2); print $2}')
    after=$(cpu_ticks "$pid")
    echo "$rps $(awk -v a="$after" -v b="$before" -v t="$TICKS" -v n="$N" 'BEGIN {printf "%.3f", (a - b) * 1e6 / t / n}')"
}

echo "## EVALSHA (GET + INCR): redis-benchmark -c $CLIENTS -n $N -r 100000, median of $ROUNDS rounds"
results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
    for s in "${servers[@]}"; do
        port=$(port_of "$s")
        sha=$(redis-cli -p "$port" SCRIPT LOAD "$SCRIPT")
        for pipe in $PIPES; do
            echo "evalsha $pipe $s $(bench "$s" "$pipe" EVALSHA "$sha" 1 key:__rand_int__)" >>"$results"
        done
    done
done
printf '%-8s %3s | %9s %9s %9s | %5s %5s | %8s %8s %8s | %5s %5s\n' command P "redis rps" "s1 rps" "s2 rps" "s1/r" "s2/r" "redis us" "s1 us" "s2 us" "s1/r" "s2/r"
for pipe in $PIPES; do
    m() { awk -v p="$pipe" -v s="$1" -v col="$2" '$1 == "evalsha" && $2 == p && $3 == s {print $col}' "$results" | median; }
    r=$(m redis 4)
    a=$(m s1 4)
    b=$(m s2 4)
    rc=$(m redis 5)
    ac=$(m s1 5)
    bc=$(m s2 5)
    printf '%-8s %3s | %9.0f %9.0f %9.0f | %5.2f %5.2f | %8.2f %8.2f %8.2f | %5.2f %5.2f\n' evalsha "$pipe" "$r" "$a" "$b" \
        "$(awk -v x="$a" -v y="$r" 'BEGIN {print x / y}')" "$(awk -v x="$b" -v y="$r" 'BEGIN {print x / y}')" \
        "$rc" "$ac" "$bc" \
        "$(awk -v x="$ac" -v y="$rc" 'BEGIN {print x / y}')" "$(awk -v x="$bc" -v y="$rc" 'BEGIN {print x / y}')"
done
echo "(us: server CPU microseconds per request; s2's is both shards' together)"
