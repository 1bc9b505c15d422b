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
