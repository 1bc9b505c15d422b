#!/usr/bin/env bash
# Memory of shardis against redis-server 7, loaded the same way in the same run.
#
# Datasets (each loaded into a fresh server, through `redis-cli --pipe`):
#   strings: KEYS (default 1,000,000) short strings (`key:<i>` = `v<i>`)
#   values:  KEYS keys of 100-byte values
#   sets:    SETS (default 100,000) sets of 10 short string members (hashtable)
#   hashes:  HASHES (default 1,000,000) hashes of 5 small fields
#   lists:   LISTS (default 100,000) lists of 100 elements
#   zsets:   ZSETS (default 100,000) sorted sets of 100 members (`member:<j>`, scores with two
#            decimals: the small, listpack encoding)
#   bigzset: one sorted set of BIGZSET (default 1,000,000) members (`member:<i>`, random
#            double scores: the big encoding), loaded 1,000 members per ZADD
# Reports used_memory (allocator bytes, from INFO memory) and RSS (from /proc) after loading,
# minus the empty server's, per key and in total, and the shardis/redis ratios.
#
# Usage: scripts/bench-memory.sh            (SHARDS=2 HASHES=… LISTS=… ZSETS=… BIGZSET=…,
#        DATASETS="zsets bigzset" to run only some)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
BIN=${BIN:-target/release/shardis}
[ -x "$BIN" ] || cargo build --release
SHARDS=${SHARDS:-2}
KEYS=${KEYS:-1000000}
SETS=${SETS:-100000}
HASHES=${HASHES:-1000000}
LISTS=${LISTS:-100000}
ZSETS=${ZSETS:-100000}
BIGZSET=${BIGZSET:-1000000}
DATASETS=${DATASETS:-strings values sets hashes lists zsets bigzset}
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT

gen() { # dataset -> RESP on stdout
  python3 - "$1" "$HASHES" "$LISTS" "$ZSETS" "$BIGZSET" "$KEYS" "$SETS" <<'PY'
import random, sys
kind, hashes, lists, zsets, bigzset, keys, sets = sys.argv[1], *map(int, sys.argv[2:8])
random.seed(1)
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
buf = []
if kind == "strings":
    for i in range(keys):
        buf.append(cmd("SET", f"key:{i}", f"v{i}"))
        if len(buf) >= 10000: out.write(b"".join(buf)); buf = []
elif kind == "values":
    for i in range(keys):
        buf.append(cmd("SET", f"key:{i}", (f"{i}:" + "x" * 100)[:100]))
        if len(buf) >= 10000: out.write(b"".join(buf)); buf = []
elif kind == "sets":
    for i in range(sets):
        buf.append(cmd("SADD", f"set:{i}", *[f"member:{j}" for j in range(10)]))
        if len(buf) >= 10000: out.write(b"".join(buf)); buf = []
elif kind == "hashes":
    for i in range(hashes):
        buf.append(cmd("HSET", f"user:{i}", "name", f"n{i}", "age", i % 90, "city", "paris", "score", i % 1000, "active", 1))
        if len(buf) >= 10000: out.write(b"".join(buf)); buf = []
elif kind == "lists":
    for i in range(lists):
        buf.append(cmd("RPUSH", f"list:{i}", *[f"item:{j}" for j in range(100)]))
        if len(buf) >= 1000: out.write(b"".join(buf)); buf = []
elif kind == "zsets":
    for i in range(zsets):
        pairs = []
        for j in range(100):
            pairs += ["%.2f" % (random.random() * 1000), f"member:{j}"]
        buf.append(cmd("ZADD", f"zset:{i}", *pairs))
        if len(buf) >= 1000: out.write(b"".join(buf)); buf = []
else:
    for start in range(0, bigzset, 1000):
        pairs = []
        for i in range(start, min(start + 1000, bigzset)):
            pairs += [repr(random.random() * 1e6), f"member:{i}"]
        buf.append(cmd("ZADD", "bigzset", *pairs))
        if len(buf) >= 100: out.write(b"".join(buf)); buf = []
out.write(b"".join(buf))
PY
}

used() { redis-cli -p "$1" INFO memory | tr -d '\r' | awk -F: '/^used_memory:/{print $2}'; }
rss() { awk '/VmRSS/{print $2*1024}' "/proc/$1/status"; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

measure() { # name dataset -> prints "used rss"
  local name=$1 data=$2 port pid
  port=$(free_port)
  if [ "$name" = redis ]; then
    redis-server --port "$port" --save '' --appendonly no >/dev/null 2>&1 & pid=$!
  else
    # No save points and its own directory: nothing loaded at start, nothing left behind.
    "$BIN" --port "$port" --shards "$SHARDS" --save "" --appendonly no --dir "$TMP" >/dev/null 2>&1 & pid=$!
  fi
  for _ in $(seq 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.1; done
  local u0 r0 u1 r1
  u0=$(used "$port"); r0=$(rss "$pid")
  redis-cli -p "$port" --pipe < "$TMP/$data.resp" >/dev/null
  sleep 1
  u1=$(used "$port"); r1=$(rss "$pid")
  echo "$((u1 - u0)) $((r1 - r0)) $(redis-cli -p "$port" DBSIZE)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

printf '%-8s %9s %14s %14s %14s %14s %9s %9s %8s %8s\n' dataset keys redis_used shardis_used redis_rss shardis_rss r_B/key s_B/key used_x rss_x
for data in $DATASETS; do
  gen "$data" > "$TMP/$data.resp"
  read -r ru rr rk < <(measure redis "$data")
  read -r su sr sk < <(measure shardis "$data")
  [ "$rk" = "$sk" ] || echo "warning: key counts differ (redis $rk, shardis $sk)"
  printf '%-8s %9d %14d %14d %14d %14d %9.1f %9.1f %8.2f %8.2f\n' "$data" "$rk" "$ru" "$su" "$rr" "$sr" \
    "$(python3 -c "print($ru / max($rk, 1))")" "$(python3 -c "print($su / max($sk, 1))")" \
    "$(python3 -c "print($su / max($ru, 1))")" "$(python3 -c "print($sr / max($rr, 1))")"
done
