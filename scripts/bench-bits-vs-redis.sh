#!/usr/bin/env bash
# Bitmap and HyperLogLog commands, shardis (release build, 1 shard) against redis-server 7
# side by side: redis-benchmark requests per second and the server's CPU time per request
# (utime+stime from /proc), median over ROUNDS rounds, with shardis/redis ratios.
#
#   scripts/bench-bits-vs-redis.sh            # ROUNDS=3 N=100000 CLIENTS=50 P=16
#
# Both servers are pinned to CPU 0 and redis-benchmark to CPU 1 when there are 2+ CPUs. Each
# test starts from the same data on both servers (loaded by the same commands). redis-benchmark
# writes __rand_int__ zero-padded, which is no valid offset: random keys carry the randomness.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
N=${N:-100000}
CLIENTS=${CLIENTS:-50}
P=${P:-16}
BIN=${SHARDIS_BIN:-target/release/shardis}
TICKS=$(getconf CLK_TCK)

scripts/install-deps.sh >/dev/null
[ -x "$BIN" ] || cargo build --release

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

pin_server=()
pin_client=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    pin_server=(taskset -c 0)
    pin_client=(taskset -c 1)
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_redis=$(free_port)
"${pin_server[@]}" redis-server --port "$port_redis" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$work/redis.log" &
pid_redis=$!
pids+=("$pid_redis")
"${pin_server[@]}" "$BIN" --port 0 --bind 127.0.0.1 --shards 1 --save "" >"$work/shardis.log" 2>&1 &
pid_shardis=$!
pids+=("$pid_shardis")
port_shardis=""
for _ in $(seq 300); do
    port_shardis=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$work/shardis.log" | head -n1)
    [ -n "$port_shardis" ] && redis-cli -p "$port_redis" PING >/dev/null 2>&1 && break
    sleep 0.1
done
[ -n "$port_shardis" ] || { cat "$work/shardis.log" >&2; exit 1; }

# Data both servers start from: a 1 KiB and a 1 MiB bitmap, dense HyperLogLogs.
load() {
    local port=$1
    redis-cli -p "$port" FLUSHALL >/dev/null
    redis-cli -p "$port" SETRANGE kib 1023 x >/dev/null
    redis-cli -p "$port" SETRANGE mib 1048575 x >/dev/null
    for k in hd1 hd2 hd3; do
        redis-benchmark -p "$port" -n 20000 -r 1000000 -q PFADD "$k" __rand_int__ >/dev/null
    done
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

tests=(
    "SETBIT bm:__rand_int__ 1000 1"
    "GETBIT bm:__rand_int__ 1000"
    "BITFIELD bf:__rand_int__ INCRBY u12 #7 1"
    "BITCOUNT kib"
    "BITPOS kib 1"
    "PFADD hs:__rand_int__ __rand_int__"
    "PFADD hd1 __rand_int__"
    "PFCOUNT hd2"
    "PFCOUNT hd1 hd2 hd3"
    "PFMERGE hm hd1 hd2"
)
results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
    for name in redis shardis; do
        pid_var="pid_$name"
        port_var="port_$name"
        load "${!port_var}"
        for i in "${!tests[@]}"; do
            n=$N
            case "${tests[$i]}" in PFCOUNT\ hd1* | PFMERGE*) n=$((N / 20)) ;; esac
            before=$(cpu_ticks "${!pid_var}")
            # shellcheck disable=SC2086
            line=$("${pin_client[@]}" redis-benchmark -p "${!port_var}" -c "$CLIENTS" -n "$n" -P "$P" \
                -r 100000 --csv ${tests[$i]} 2>/dev/null | grep -v '^"test"' | tail -n1)
            after=$(cpu_ticks "${!pid_var}")
            rps=$(echo "$line" | awk -F'"' '{print $4}')
            cpu_us=$(awk -v a="$after" -v b="$before" -v t="$TICKS" -v n="$n" 'BEGIN {printf "%.3f", (a - b) * 1e6 / t / n}')
            echo "$name $i $rps $cpu_us" >>"$results"
        done
    done
    echo "# round $round done" >&2
done

median() { sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
pick() { awk -v s="$1" -v i="$2" -v c="$3" '$1 == s && $2 == i {print $c}' "$results" | median; }

echo "redis-benchmark -c $CLIENTS -P $P, median of $ROUNDS rounds; cpu = server CPU us per request"
printf '%-52s | %10s %10s | %8s %8s | %6s %6s\n' test "redis rps" "shardis" "redis" "shardis" "rps" "cpu"
for i in "${!tests[@]}"; do
    rr=$(pick redis "$i" 3); sr=$(pick shardis "$i" 3)
    rc=$(pick redis "$i" 4); sc=$(pick shardis "$i" 4)
    awk -v t="${tests[$i]}" -v rr="$rr" -v sr="$sr" -v rc="$rc" -v sc="$sc" '
        function ratio(x, y) { return y > 0 ? sprintf("%.2f", x / y) : "n/a" }
        BEGIN { printf "%-52s | %10.0f %10.0f | %8.2f %8.2f | %6s %6s\n", t, rr, sr, rc, sc, ratio(sr, rr), ratio(sc, rc) }'
done
