#!/usr/bin/env bash
# TLS, shardis (release build) against redis-server 7 with TLS in the same run: redis-benchmark
# SET and GET with and without --tls against each server's plain and TLS ports (every server
# serves both), -c CLIENTS -n N at each depth in PIPES, median of ROUNDS; requests per second
# and the server's CPU per request, then what TLS costs each server (TLS rps / plain rps).
# Certificates (a CA and a server certificate for 127.0.0.1) are made with openssl in the work
# directory; clients are not asked for certificates (tls-auth-clients no).
#
#   scripts/bench-tls.sh            # ROUNDS=3 N=200000 CLIENTS=50 PIPES="1 16"
#   SHARDIS_BIN=target/debug/shardis ROUNDS=1 N=2000 PIPES=1 scripts/bench-tls.sh   # a smoke run
#
# Pinning as in bench-vs-redis.sh: redis and 1-shard shardis on CPU 0, the client on CPU 1;
# 2-shard shardis unpinned. Not start_trio: each server needs its own plain and TLS ports.
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

if ! redis-benchmark --help 2>&1 | grep -q -- '--tls'; then
    echo "bench-tls: this redis-benchmark build has no TLS" >&2
    exit 1
fi

certs="$work/certs"
mkdir -p "$certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$certs/ca.key" -out "$certs/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$certs/server.key" -out "$certs/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$certs/san.ext"
openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
    -CAcreateserial -days 2 -extfile "$certs/san.ext" -out "$certs/server.crt" 2>/dev/null
tls_opts=(--tls-cert-file "$certs/server.crt" --tls-key-file "$certs/server.key"
    --tls-ca-cert-file "$certs/ca.crt" --tls-auth-clients no)

# Each server on a plain port and a TLS port; NAME_tls is the same process by its TLS port.
start_pair() { # start_pair KIND NAME [SHARDS] PIN...
    local kind=$1 name=$2 tls_port
    shift 2
    tls_port=$(free_port)
    if [ "$kind" = redis ]; then
        REDIS_EXTRA=(--tls-port "$tls_port" "${tls_opts[@]}")
        start_redis "$name" "$@"
    else
        local shards=$1
        shift
        SHARDIS_EXTRA=(--port "$(free_port)" --tls-port "$tls_port" "${tls_opts[@]}")
        start_shardis "$name" "$shards" "$@"
    fi
    printf -v "PORT_${name}_tls" '%s' "$tls_port"
    printf -v "PID_${name}_tls" '%s' "$(pid_of "$name")"
}
start_pair redis redis "${pin_server[@]}"
start_pair shardis s1 1 "${pin_server[@]}"
start_pair shardis s2 2
servers=(redis s1 s2)

tls_args=(--tls --cacert "$certs/ca.crt")
for s in "${servers[@]}"; do
    # Fail early, and clearly, if a TLS port does not answer.
    if ! redis-cli -p "$(port_of "${s}_tls")" "${tls_args[@]}" PING | grep -q PONG; then
        echo "bench-tls: $s does not answer on its TLS port" >&2
        exit 1
    fi
done

echo "## SET/GET over TLS and plain TCP: redis-benchmark -c $CLIENTS -n $N, median of $ROUNDS rounds"
results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
    for s in "${servers[@]}"; do
        for pipe in $PIPES; do
            for t in set get; do
                echo "$t-tls $pipe $s $(rb_bench "${s}_tls" "$pipe" "${tls_args[@]}" -t "$t")" >>"$results"
                echo "$t-plain $pipe $s $(rb_bench "$s" "$pipe" -t "$t")" >>"$results"
            done
        done
    done
done
ratio_header
for pipe in $PIPES; do
    for t in set get; do
        ratio_row "$results" "$t-tls" "$pipe"
        ratio_row "$results" "$t-plain" "$pipe"
    done
done
echo "(us: server CPU microseconds per request; s2's is both shards' together)"
echo
echo "## What TLS costs: TLS rps / plain rps, per server"
printf '%-6s %3s | %6s %6s %6s\n' command P redis s1 s2
for pipe in $PIPES; do
    for t in set get; do
        row=()
        for s in "${servers[@]}"; do
            tls=$(awk -v c="$t-tls" -v p="$pipe" -v s="$s" '$1 == c && $2 == p && $3 == s {print $4}' "$results" | median)
            plain=$(awk -v c="$t-plain" -v p="$pipe" -v s="$s" '$1 == c && $2 == p && $3 == s {print $4}' "$results" | median)
            row+=("$(awk -v x="$tls" -v y="$plain" 'BEGIN {printf "%.2f", x / y}')")
        done
        printf '%-6s %3s | %6s %6s %6s\n' "$t" "$pipe" "${row[@]}"
    done
done
