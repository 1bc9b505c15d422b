#!/usr/bin/env bash
# The standard benchmark matrix: shardis (release build, 1 shard and NSHARDS shards) against
# redis-server 7 in the same run, driven by shardis-bench (loadgen/).
#
# Scenarios (CLIENTS connections, VALUE-byte values, KEYS keys preloaded with SET):
#   set-p1, set-p16   SET of uniform random keys at pipeline depth 1 and 16
#   get-p1, get-p16   GET of uniform random keys
#   mix-p1            90% GET / 10% SET over Zipf(0.99) keys
#   mget10, mset10    MGET / MSET of 10 keys (random keys, spread over the shards)
# Each scenario runs N requests against each server; servers alternate within a round, ROUNDS
# rounds, medians reported. Server CPU is utime+stime of the whole process from /proc before
# and after each run. Prints a Markdown table (requests/s, ratio to Redis, server CPU
# microseconds per request and its ratio) and, with OUT=dir, writes OUT/bench.md and
# OUT/ratios.tsv (input of scripts/bench-chart.py).
#
#   scripts/bench.sh                      # ROUNDS=3 N=200000 CLIENTS=50 KEYS=1000000 VALUE=100
#   SCENARIOS="get-p16 set-p16" ROUNDS=5 scripts/bench.sh
#
# Pinning as in bench-vs-redis.sh: redis-server and 1-shard shardis on CPU 0, the client on
# CPU 1; NSHARDS-shard shardis unpinned (it shares the cores with the client on a 2-core box).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
N=${N:-200000}
CLIENTS=${CLIENTS:-50}
KEYS=${KEYS:-1000000}
VALUE=${VALUE:-100}
NSHARDS=${NSHARDS:-$(nproc)}
SCENARIOS=${SCENARIOS:-set-p1 set-p16 get-p1 get-p16 mix-p1 mget10 mset10}
BIN=${SHARDIS_BIN:-target/release/shardis}
LOADGEN=${LOADGEN:-target/release/shardis-bench}
OUT=${OUT:-}
TICKS=$(getconf CLK_TCK)

SHARDIS_EXTRA=()
REDIS_EXTRA=()
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

start_redis redis "${pin_server[@]}"
start_shardis s1 1 "${pin_server[@]}"
start_shardis sN "$NSHARDS"
servers=(redis s1 sN)
port_of() { local v="PORT_$1"; echo "${!v}"; }
pid_of() { local v="PID_$1"; echo "${!v}"; }

# The shardis-bench options of a scenario.
scenario_args() {
    local common=(--keyspace "$KEYS" -d "$VALUE" -c "$CLIENTS")
    case $1 in
        set-p1) echo "${common[*]} --mix set:1 -P 1" ;;
        set-p16) echo "${common[*]} --mix set:1 -P 16" ;;
        get-p1) echo "${common[*]} --mix get:1 -P 1" ;;
        get-p16) echo "${common[*]} --mix get:1 -P 16" ;;
        mix-p1) echo "${common[*]} --mix get:9,set:1 --key-pattern zipf:0.99 -P 1" ;;
        mget10) echo "${common[*]} --mix mget:10:1 -P 1" ;;
        mset10) echo "${common[*]} --mix mset:10:1 -P 1" ;;
        *) echo "unknown scenario $1" >&2; exit 2 ;;
    esac
}

# Preload every key so GETs hit.
for s in "${servers[@]}"; do
    "${pin_client[@]}" "$LOADGEN" -p "$(port_of "$s")" -q -c 20 -P 64 --keyspace "$KEYS" \
        -d "$VALUE" --mix set:1 --key-pattern sequential -n "$KEYS" >/dev/null
done

results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
    for sc in $SCENARIOS; do
        for s in "${servers[@]}"; do
            pid=$(pid_of "$s")
            before=$(cpu_ticks "$pid")
            # shellcheck disable=SC2046
            "${pin_client[@]}" "$LOADGEN" -p "$(port_of "$s")" -q -n "$N" --seed "$round" \
                $(scenario_args "$sc") --json "$work/run.json" >/dev/null
            after=$(cpu_ticks "$pid")
            rps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"]["requests_per_sec"])' "$work/run.json")
            errors=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["total"]; print(t["errors"])' "$work/run.json")
            [ "$errors" = 0 ] || { echo "$s $sc: $errors error replies" >&2; exit 1; }
            cpu=$(awk -v a="$after" -v b="$before" -v t="$TICKS" -v n="$N" 'BEGIN {printf "%.3f", (a - b) * 1e6 / t / n}')
            echo "$sc $s $rps $cpu" >>"$results"
            echo "# round $round: $sc $s: $rps req/s, $cpu us CPU/request" >&2
        done
    done
done

med() { # scenario server column
    awk -v c="$1" -v s="$2" -v k="$3" '$1 == c && $2 == s {print $k}' "$results" | median
}
table="$work/bench.md"
{
    echo "| scenario | redis req/s | s1 req/s | s$NSHARDS req/s | s1/redis | s$NSHARDS/redis | redis µs/req | s1 µs/req | s$NSHARDS µs/req | s1/redis CPU | s$NSHARDS/redis CPU |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for sc in $SCENARIOS; do
        r=$(med "$sc" redis 3); a=$(med "$sc" s1 3); b=$(med "$sc" sN 3)
        rc=$(med "$sc" redis 4); ac=$(med "$sc" s1 4); bc=$(med "$sc" sN 4)
        awk -v sc="$sc" -v r="$r" -v a="$a" -v b="$b" -v rc="$rc" -v ac="$ac" -v bc="$bc" 'BEGIN {
            printf "| %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                sc, r, a, b, a / r, b / r, rc, ac, bc, ac / rc, bc / rc }'
    done
} >"$table"
cat "$table"
echo "(µs/req: the server process's CPU time per request; s$NSHARDS's is all its shards together)"
if [ -n "$OUT" ]; then
    mkdir -p "$OUT"
    cp "$table" "$OUT/bench.md"
    {
        echo "## Server CPU per request, 1 shard / Redis (lower is better)"
        for sc in $SCENARIOS; do
            printf '%s\t%s\n' "$sc" "$(awk -v rc="$(med "$sc" redis 4)" -v ac="$(med "$sc" s1 4)" 'BEGIN {printf "%.3f", ac / rc}')"
        done
        echo "## Throughput, 1 shard / Redis (higher is better)"
        for sc in $SCENARIOS; do
            printf '%s\t%s\n' "$sc" "$(awk -v r="$(med "$sc" redis 3)" -v a="$(med "$sc" s1 3)" 'BEGIN {printf "%.3f", a / r}')"
        done
    } >"$OUT/ratios.tsv"
fi
