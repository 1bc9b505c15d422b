#!/usr/bin/env bash
# Replication benchmarks: a redis-server replica of shardis (2 shards, release build) against a
# redis-server replica of redis-server, in the same run.
#
# 1. Full sync: KEYS keys of VALUE bytes (DEBUG POPULATE) on the master, then a replica
#    attaches; reports the time until its link is up and the master's peak extra memory
#    (PSS, the master and any fork child) during the sync, as a share of the dataset.
# 2. Lag under load: redis-benchmark SETs (-P PIPE) against the master with the replica
#    attached (and the same load before the replica attached, for comparison); the master's and replica's offsets are sampled every 50 ms; reports the median
#    and largest difference in bytes, and the time the replica needs to catch up once the load
#    stops.
#
# 3. Apply rate: the replica is stopped (SIGSTOP) while N SETs go to the master; once let go,
#    the time it takes to catch up.
# 4. All of it again with a shardis replica of the shardis master (same shard count), with the
#    replica's CPU by thread (its shards apply their parts of the stream in parallel), and with a
#    one-shard shardis replica (SHARDIS_REPLICA=0 leaves these out).
#
#   scripts/bench-repl.sh                    # KEYS=1000000 VALUE=100 N=1000000 PIPE=16
#   KEYS=20000000 VALUE=100 scripts/bench-repl.sh   # a full sync of about 2 GB
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-1000000}
VALUE=${VALUE:-100}
N=${N:-1000000}
PIPE=${PIPE:-16}
CLIENTS=${CLIENTS:-50}
BIN=${SHARDIS_BIN:-target/release/shardis}

SHARDIS_EXTRA=(--enable-debug-command yes --repl-diskless-sync-delay 0)
# Replicas load straight from the socket (no dump.rdb left in the working directory).
REDIS_EXTRA=(--enable-debug-command yes --repl-diskless-sync-delay 0 --repl-diskless-load swapdb)
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

field() { # field PORT NAME: a field of INFO replication
    redis-cli -p "$1" INFO replication | tr -d '\r' | sed -n "s/^$2://p"
}

ms() { date +%s%3N; }

# thread_cpu PID: "name ticks" for each of its threads.
thread_cpu() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(cat "$t/comm" 2>/dev/null)" "$(sed 's/.*) //' "$t/stat" 2>/dev/null | awk '{print $12 + $13}')"
    done
}

run() { # run MASTER_NAME [REPLICA_KIND: redis (default), shardis, or shardis1 (one shard)]
    local m=$1 kind=${2:-redis} mport mpid r rport rpid base t0 t1 peak cur used
    mport=$(port_of "$m")
    mpid=$(pid_of "$m")
    # The load the lag run applies, with no replica attached yet, for the cost of replication.
    local alone
    alone=$("${pin_client[@]}" redis-benchmark -p "$mport" -t set -n "$N" -c "$CLIENTS" -P "$PIPE" \
        -r 1000000 -d "$VALUE" -q 2>&1 | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -n1)
    redis-cli -p "$mport" DEBUG POPULATE "$KEYS" key "$VALUE" >/dev/null
    used=$(redis-cli -p "$mport" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
    base=$(rss_kb "$mpid")
    r="rep_${m}_$kind"
    if [ "$kind" = shardis ]; then
        start_shardis "$r" 2
    elif [ "$kind" = shardis1 ]; then
        # One shard: the stream applies with no hop between shards.
        start_shardis "$r" 1
    else
        start_redis "$r"
    fi
    rport=$(port_of "$r")
    rpid=$(pid_of "$r")
    t0=$(ms)
    redis-cli -p "$rport" REPLICAOF 127.0.0.1 "$mport" >/dev/null
    peak=$base
    local limit=$(($(ms) + 300000))
    while [ "$(field "$rport" master_link_status)" != "up" ]; do
        [ "$(ms)" -lt "$limit" ] || { echo "$m: no sync in 300 s" >&2; return 1; }
        cur=$(rss_kb "$mpid")
        [ "$cur" -gt "$peak" ] && peak=$cur
        sleep 0.05
    done
    t1=$(ms)
    local extra=$(((peak - base) * 1024))
    local label="$m->$kind"
    printf '%-16s full sync of %s keys (used_memory %d MB): %6d ms, master peak extra memory %5.1f%% of used_memory\n' \
        "$label" "$KEYS" $((used / 1048576)) $((t1 - t0)) "$(echo "$extra * 100 / $used" | bc -l)"
    thread_cpu "$rpid" >"$work/cpu0-$r"

    # Lag under load.
    local samples="$work/lag-$m"
    : >"$samples"
    "${pin_client[@]}" redis-benchmark -p "$mport" -t set -n "$N" -c "$CLIENTS" -P "$PIPE" \
        -r 1000000 -d "$VALUE" -q >"$work/bench-$m" 2>&1 &
    local bench=$!
    while kill -0 "$bench" 2>/dev/null; do
        local mo ro
        # The replica first: read after it, the master's offset bounds the lag from above.
        ro=$(field "$rport" slave_repl_offset)
        mo=$(field "$mport" master_repl_offset)
        [ -n "$mo" ] && [ -n "$ro" ] && echo $((mo - ro)) >>"$samples"
        sleep 0.05
    done
    local stop_ms caught
    stop_ms=$(ms)
    limit=$(($(ms) + 60000))
    while [ "$(field "$rport" slave_repl_offset)" != "$(field "$mport" master_repl_offset)" ]; do
        [ "$(ms)" -lt "$limit" ] || { echo "$m: replica never caught up" >&2; return 1; }
        sleep 0.01
    done
    caught=$(($(ms) - stop_ms))
    printf '%-16s lag under %s: median %8s bytes, max %9s bytes, caught up %4d ms after the load; %s with the replica, %s without\n' \
        "$label" "SET -P $PIPE" "$(median <"$samples")" "$(sort -n "$samples" | tail -n1)" "$caught" \
        "$(tr '\r' '\n' <"$work/bench-$m" | grep -o '[0-9.]* requests per second' | tail -n1)" "$alone"
    # Where the replica spent its CPU while it followed the load (per thread, in ticks).
    thread_cpu "$rpid" >"$work/cpu1-$r"
    printf '%-16s replica CPU by thread during the load:' "$label"
    join <(sort "$work/cpu0-$r") <(sort "$work/cpu1-$r") |
        awk '{d = $3 - $2; if (d > 0) printf " %s %d", $1, d}'
    echo " (ticks of $TICKS/s)"

    # Apply rate: the replica is stopped (SIGSTOP) while N SETs go to the master, then let
    # go; the time it takes to catch up is the time it takes to apply them.
    local o0 o1 t2 t3
    kill -STOP "$rpid"
    "${pin_client[@]}" redis-benchmark -p "$mport" -t set -n "$N" -c "$CLIENTS" -P "$PIPE" \
        -r 1000000 -d "$VALUE" -q >/dev/null 2>&1
    o1=$(field "$mport" master_repl_offset)
    kill -CONT "$rpid"
    t2=$(ms)
    o0=$(field "$rport" slave_repl_offset)
    limit=$(($(ms) + 120000))
    while [ "$(field "$rport" slave_repl_offset)" != "$(field "$mport" master_repl_offset)" ]; do
        [ "$(ms)" -lt "$limit" ] || { echo "$m: replica never caught up after SIGCONT" >&2; return 1; }
        sleep 0.01
    done
    t3=$(ms)
    printf '%-16s apply rate: %s SETs (%s bytes of stream) applied in %d ms after SIGCONT: %.0f commands/s\n' \
        "$label" "$N" $((o1 - o0)) $((t3 - t2)) "$(echo "$N * 1000 / ($t3 - $t2 + 1)" | bc -l)"
    redis-cli -p "$rport" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    redis-cli -p "$mport" FLUSHALL >/dev/null
}

start_redis redis "${pin_server[@]}"
start_shardis shardis 2
run redis
run shardis
# Two shardis with the same shard count (one merged stream, which the replica's shards apply in
# parallel, each its own part), and a one-shard shardis replica for comparison:
# SHARDIS_REPLICA=0 leaves these runs out.
if [ "${SHARDIS_REPLICA:-1}" = 1 ]; then
    redis-cli -p "$(port_of shardis)" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    start_shardis shardis 2
    run shardis shardis
    redis-cli -p "$(port_of shardis)" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
    start_shardis shardis 2
    run shardis shardis1
fi
