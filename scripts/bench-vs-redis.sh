#!/usr/bin/env bash
# Compares shardis (release build, 1 shard and 2 shards) with redis-server 7 using
# redis-benchmark: requests per second and the server's CPU time per request, median over
# ROUNDS rounds, with the shardis/redis ratios.
#
#   scripts/bench-vs-redis.sh            # ROUNDS=3 N=200000 CLIENTS=50 TESTS="set get" PIPES="1 16"
#   ROUNDS=5 N=500000 scripts/bench-vs-redis.sh
#   TESTS="mset mget10" PIPES=1 scripts/bench-vs-redis.sh   # cross-shard MSET/MGET of 10 keys
#
# Tests: set, get (redis-benchmark's, one key), mset (its MSET of 10 keys, with -r 1000000 so
# they are random keys spread over the shards), mget10 (MGET of 10 random keys). The table also
# gives redis-benchmark's p99 latency.
#   TESTS="zadd zrank zrange" scripts/bench-vs-redis.sh   # sorted sets
#
# Sorted-set tests, on one sorted set `myz` of up to 100,000 members
# (preloaded with PRELOAD random ZADDs before the rounds): zadd (ZADD myz <rand> member:<rand>),
# zrank (ZRANK myz member:<rand>) and zrange (ZRANGE myz <rand> +inf BYSCORE LIMIT 0 10).
#
# Each run is one redis-benchmark invocation for one test (SET or GET) at one pipeline depth
# (P=1, P=16) against one server; servers alternate within a round so that drift in the
# machine's state spreads evenly. Server CPU is utime+stime of the whole process (all threads)
# from /proc/<pid>/stat before and after the run, in clock ticks (getconf CLK_TCK), so N must
# be large enough for the run to take a good many ticks.
#
# Pinning, on this project's 2-core machines: redis-server and 1-shard shardis are pinned to
# CPU 0 and redis-benchmark to CPU 1, so server and client never compete for a core. 2-shard
# shardis needs both cores, so it runs unpinned and shares them with the client: its numbers
# include that contention, and its rps is a lower bound of what it does on a bigger machine.
# (Shardis may pin its shard threads itself; the script prints their CPU masks.)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
TESTS=${TESTS:-set get}
PIPES=${PIPES:-1 16}
N=${N:-200000}
CLIENTS=${CLIENTS:-50}
TESTS=${TESTS:-set get}
PRELOAD=${PRELOAD:-300000}
BIN=${SHARDIS_BIN:-target/release/shardis}
TICKS=$(getconf CLK_TCK)
NCPU=$(nproc)


SHARDIS_EXTRA=()
REDIS_EXTRA=()
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

start_redis redis "${pin_server[@]}"
start_shardis s1 1 "${pin_server[@]}"
start_shardis s2 2
for name in redis s1 s2; do
    pid_var="PID_$name"
    port_var="PORT_$name"
    masks=$(for t in /proc/"${!pid_var}"/task/*; do awk '/Cpus_allowed_list/ {print $2}' "$t/status"; done | sort | uniq -c | awk '{printf "%s thread(s) on cpus %s; ", $1, $2}')
    echo "# $name: pid ${!pid_var} port ${!port_var}: $masks" >&2
done

# The redis-benchmark arguments of one test.
bench_args() {
    case "$1" in
        set | get) echo "-t $1" ;;
        mset) echo "-t mset -r 1000000" ;;
        mget10) echo "-r 1000000 MGET$(printf ' key:__rand_int__%.0s' $(seq 10))" ;;
        zadd) echo "-r 100000 ZADD myz __rand_int__ member:__rand_int__" ;;
        zrank) echo "-r 100000 ZRANK myz member:__rand_int__" ;;
        zrange) echo "-r 100000 ZRANGE myz __rand_int__ +inf BYSCORE LIMIT 0 10" ;;
        *) echo "unknown test $1" >&2; exit 1 ;;
    esac
}

case " $TESTS " in
    *" zadd "* | *" zrank "* | *" zrange "*)
        for name in redis s1 s2; do
            port_var="PORT_$name"
            redis-benchmark -p "${!port_var}" -c "$CLIENTS" -n "$PRELOAD" -P 16 -r 100000 \
                ZADD myz __rand_int__ member:__rand_int__ >/dev/null
            echo "# $name: myz preloaded with $(redis-cli -p "${!port_var}" ZCARD myz) members" >&2
        done
        ;;
esac

results="$work/results"
: >"$results"

for round in $(seq "$ROUNDS"); do
    for pipe in $PIPES; do
        for test in $TESTS; do
            for name in redis s1 s2; do
                pid_var="PID_$name"
                port_var="PORT_$name"
                # MSET's keys pile up otherwise (the sorted-set tests keep their preload).
                case "$test" in mset | mget10) redis-cli -p "${!port_var}" FLUSHALL >/dev/null ;; esac
                before=$(cpu_ticks "${!pid_var}")
                # shellcheck disable=SC2046
                line=$("${pin_client[@]}" redis-benchmark -p "${!port_var}" -c "$CLIENTS" -n "$N" -P "$pipe" --csv $(bench_args "$test") 2>/dev/null | grep -v '^"test"' | tail -n1)
                after=$(cpu_ticks "${!pid_var}")
                rps=$(echo "$line" | awk -F'"' '{print $4}')
                p99=$(echo "$line" | awk -F'"' '{print $14}')
                [ -n "$rps" ] || { echo "redis-benchmark gave no result for $name $test P=$pipe" >&2; exit 1; }
                cpu_us=$(awk -v a="$after" -v b="$before" -v t="$TICKS" -v n="$N" 'BEGIN {printf "%.3f", (a - b) * 1e6 / t / n}')
                echo "$name $pipe $test $rps $cpu_us ${p99:-0}" >>"$results"
                echo "# round $round: $name P=$pipe $test: $rps rps, $cpu_us us CPU/request, p99 ${p99:-?} ms" >&2
            done
        done
    done
done

pick() { # pick NAME PIPE TEST COLUMN
    awk -v s="$1" -v p="$2" -v t="$3" -v c="$4" '$1 == s && $2 == p && $3 == t {print $c}' "$results" | median
}

echo
echo "redis-benchmark -c $CLIENTS -n $N, median of $ROUNDS rounds; cpu = server CPU microseconds per request"
printf '%-6s %3s | %10s %10s %10s | %7s %7s %7s | %9s %9s | %9s %9s | %7s %7s %7s\n' \
    test P "redis rps" "s1 rps" "s2 rps" "redis" "s1 cpu" "s2 cpu" "s1/r rps" "s2/r rps" "s1/r cpu" "s2/r cpu" "r p99" "s1 p99" "s2 p99"
for pipe in $PIPES; do
    for test in $TESTS; do
        r_rps=$(pick redis "$pipe" "$test" 4); a_rps=$(pick s1 "$pipe" "$test" 4); b_rps=$(pick s2 "$pipe" "$test" 4)
        r_cpu=$(pick redis "$pipe" "$test" 5); a_cpu=$(pick s1 "$pipe" "$test" 5); b_cpu=$(pick s2 "$pipe" "$test" 5)
        r_p99=$(pick redis "$pipe" "$test" 6); a_p99=$(pick s1 "$pipe" "$test" 6); b_p99=$(pick s2 "$pipe" "$test" 6)
        awk -v t="$test" -v p="$pipe" -v rr="$r_rps" -v ar="$a_rps" -v br="$b_rps" -v rc="$r_cpu" -v ac="$a_cpu" -v bc="$b_cpu" \
            -v rp="$r_p99" -v ap="$a_p99" -v bp="$b_p99" '
            function ratio(x, y) { return y > 0 ? sprintf("%.2f", x / y) : "n/a" }
            BEGIN {
                printf "%-6s %3s | %10.0f %10.0f %10.0f | %7.2f %7.2f %7.2f | %9s %9s | %9s %9s | %7.3f %7.3f %7.3f\n",
                    t, p, rr, ar, br, rc, ac, bc, ratio(ar, rr), ratio(br, rr), ratio(ac, rc), ratio(bc, rc), rp, ap, bp
            }'
    done
done
