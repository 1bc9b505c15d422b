# Shared by the benchmark scripts: a work directory cleaned up on exit (servers stopped),
# starting shardis and redis-server on free ports (extra options in the SHARDIS_EXTRA and
# REDIS_EXTRA arrays), CPU pinning for the 2-core machines, and small helpers.
# Source it after setting BIN (and LOADGEN if the script uses shardis-bench); it installs the
# reference tools, brings the release binaries up to date (a no-op when they are; a stale
# binary would measure old code), and sets `work`, `pids`, `pin_server`, `pin_client`.

scripts/install-deps.sh >/dev/null
if [ -z "${SHARDIS_BIN:-}" ]; then
    cargo build --release --workspace -q
fi

SHARDIS_EXTRA=("${SHARDIS_EXTRA[@]}")
REDIS_EXTRA=("${REDIS_EXTRA[@]}")

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

pin_server=()
pin_client=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    pin_server=(taskset -c 0)
    pin_client=(taskset -c 1)
fi

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null && return
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

# start_shardis NAME SHARDS PIN... : starts shardis on a kernel-chosen port; sets PORT_<NAME>, PID_<NAME>.
start_shardis() {
    local name=$1 shards=$2
    shift 2
    local log="$work/$name.log"
    # Made before the server starts: the wait below reads it at once (set -e, pipefail).
    : >"$log"
    "$@" "$BIN" --port 0 --bind 127.0.0.1 --shards "$shards" --save "" --appendonly no "${SHARDIS_EXTRA[@]}" >"$log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    local port=""
    for _ in $(seq 300); do
        port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n1)
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "shardis ($name) did not start; log:" >&2
        cat "$log" >&2
        exit 1
    fi
    printf -v "PORT_$name" '%s' "$port"
    printf -v "PID_$name" '%s' "$pid"
}

# start_redis NAME PIN... : starts redis-server on a free port and checks that it is ours.
start_redis() {
    local name=$1
    shift
    local port
    port=$(free_port)
    "$@" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --logfile "$work/$name.log" "${REDIS_EXTRA[@]}" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        # The server answering on this port must be the process we started.
        if [ "$(redis-cli -p "$port" INFO server 2>/dev/null | sed -n 's/^process_id:\([0-9]*\).*/\1/p')" = "$pid" ]; then
            printf -v "PORT_$name" '%s' "$port"
            printf -v "PID_$name" '%s' "$pid"
            return
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "redis-server ($name) did not start on port $port; log:" >&2
    cat "$work/$name.log" >&2
    exit 1
}

cpu_ticks() {
    # Fields after the command name (which may contain spaces): utime is the 12th, stime the 13th.
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}


median() { # median of the numbers on stdin
    sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# rss_kb PID... : memory of these processes and their children, KiB: the sum of their PSS
# (proportional set size), so pages a fork child shares with its parent count once.
rss_kb() {
    local total=0 p c v
    for p in "$@"; do
        for c in $p $(pgrep -P "$p" 2>/dev/null); do
            v=$(awk '/^Pss:/ {print $2}' "/proc/$c/smaps_rollup" 2>/dev/null || true)
            total=$((total + ${v:-0}))
        done
    done
    echo "$total"
}

# The usual trio: redis-server and 1-shard shardis pinned to CPU 0 (the client runs on CPU 1),
# 2-shard shardis unpinned; their names in `servers`.
start_trio() {
    start_redis redis "${pin_server[@]}"
    start_shardis s1 1 "${pin_server[@]}"
    start_shardis s2 2
    servers=(redis s1 s2)
}

# The servers a script started with start_redis / start_shardis, by name.
port_of() { local v="PORT_$1"; echo "${!v}"; }
pid_of() { local v="PID_$1"; echo "${!v}"; }

TICKS=$(getconf CLK_TCK)
# rb_bench NAME PIPE ARGS... : "rps cpu_us" of one redis-benchmark run (-n $N -c $CLIENTS,
# -r ${BENCH_RANGE:-1000000}) against server NAME: requests per second, and the server's CPU
# microseconds per request.
rb_bench() {
    local name=$1 pipe=$2 port pid before after rps
    shift 2
    port=$(port_of "$name")
    pid=$(pid_of "$name")
    before=$(cpu_ticks "$pid")
    rps=$("${pin_client[@]}" redis-benchmark -p "$port" -n "$N" -c "$CLIENTS" -P "$pipe" \
        -r "${BENCH_RANGE:-1000000}" --csv "$@" | tail -n1 | awk -F'","' '{gsub(/"/, "", $2); print $2}')
    after=$(cpu_ticks "$pid")
    echo "$rps $(awk -v a="$after" -v b="$before" -v t="$TICKS" -v n="$N" 'BEGIN {printf "%.3f", (a - b) * 1e6 / t / n}')"
}

# ratio_header, then ratio_row RESULTS CMD PIPE: the medians of lines "CMD PIPE SERVER rps us"
# in file RESULTS for servers redis, s1 and s2, and s1's and s2's ratios to redis.
ratio_header() {
    printf '%-11s %3s | %9s %9s %9s | %5s %5s | %8s %8s %8s | %5s %5s\n' command P "redis rps" "s1 rps" "s2 rps" "s1/r" "s2/r" "redis us" "s1 us" "s2 us" "s1/r" "s2/r"
}
ratio_row() {
    local results=$1 cmd=$2 pipe=$3 r a b rc ac bc
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
}
