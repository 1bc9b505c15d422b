#!/usr/bin/env bash
# Vector search benchmark: shardis's HNSW (FT.CREATE … VECTOR HNSW, FT.SEARCH KNN) beside faiss
# (IndexHNSWFlat) and hnswlib, from PyPI, on the same data in the same run.
#
# Data: N (default 100,000) clustered synthetic vectors of dimension 128 (100 Gaussian clusters)
# and Q (default 1,000) queries from the same distribution, generated here with a fixed seed.
# Reported per engine: build time, index memory, recall@10 against exact search (numpy brute
# force), and queries/s at each EF_RUNTIME / efSearch of a sweep, with the first setting whose
# recall is ≥ 0.95 marked. shardis is measured through redis-py over TCP from one client
# connection (so its queries/s include the round trip and the client); the libraries are called
# in-process on one thread.
#
# Usage: scripts/bench-search.sh            (builds the release binary, makes a venv under target/)
#        N=20000 Q=200 scripts/bench-search.sh   (a quick run)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
Q=${Q:-1000}
SHARDS=${SHARDS:-2}
BIN=${SHARDIS_BIN:-target/release/shardis}
VENV=${VENV:-target/bench-search-venv}

if [ -z "${SHARDIS_BIN:-}" ]; then
    nice cargo build --release --bin shardis >&2
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet numpy redis faiss-cpu >&2
    # hnswlib ships few wheels; without one it needs a C++ build, so it is optional.
    "$VENV/bin/pip" install --quiet --only-binary=:all: hnswlib >&2 || echo "bench-search: hnswlib not installed (no wheel); skipped" >&2
fi

port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
"$BIN" --port "$port" --shards "$SHARDS" --bind 127.0.0.1 --save "" --dir "$dir" >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    "$VENV/bin/python" -c "import redis,sys; redis.Redis(port=$port).ping()" 2>/dev/null && break
    sleep 0.1
done

N=$N Q=$Q PORT=$port SHARDS=$SHARDS "$VENV/bin/python" - <<'EOF'
import os, time, numpy as np, redis

n, nq, port = int(os.environ["N"]), int(os.environ["Q"]), int(os.environ["PORT"])
dim, k, clusters = 128, 10, 100
rng = np.random.default_rng(42)
centers = rng.normal(0, 1, (clusters, dim)).astype(np.float32)
def sample(m):
    return (centers[rng.integers(0, clusters, m)] + rng.normal(0, 0.35, (m, dim))).astype(np.float32)
data, queries = sample(n), sample(nq)

# Exact top-10 (squared L2), in chunks.
t = time.time()
d_norm = (data * data).sum(1)
truth = []
for i in range(0, nq, 100):
    q = queries[i:i + 100]
    dist = d_norm[None, :] - 2 * q @ data.T
    truth.append(np.argpartition(dist, k, axis=1)[:, :k])
truth = [set(r) for r in np.vstack(truth)]
print(f"exact search for {nq} queries: {time.time() - t:.1f} s")

def recall(results):
    return sum(len(set(r) & t) for r, t in zip(results, truth)) / (k * nq)

rows = []
sweep = [10, 20, 40, 80, 160, 320]

# shardis
r = redis.Redis(port=port, protocol=2)
# Raw replies (newer redis-py parses some FT.* replies itself).
for name in ("FT.INFO", "FT.SEARCH", "FT.CREATE"):
    r.response_callbacks.pop(name, None)
def ft_info():
    i = r.execute_command("FT.INFO", "bench")
    if isinstance(i, dict):
        return {(k.decode() if isinstance(k, bytes) else k): v for k, v in i.items()}
    return {i[j].decode(): i[j + 1] for j in range(0, len(i), 2)}
mem0 = int(r.info("memory")["used_memory"])
r.execute_command("FT.CREATE", "bench", "ON", "HASH", "PREFIX", "1", "v:", "SCHEMA", "vec", "VECTOR",
                  "HNSW", "10", "TYPE", "FLOAT32", "DIM", dim, "DISTANCE_METRIC", "L2", "M", 16,
                  "EF_CONSTRUCTION", 200)
t = time.time()
p = r.pipeline(transaction=False)
for i in range(n):
    p.hset(f"v:{i}", "vec", data[i].tobytes())
    if i % 1000 == 999:
        p.execute()
p.execute()
while int(ft_info()["indexing"]) != 0:
    time.sleep(0.1)
build = time.time() - t
vec_mb = float(ft_info()["vector_index_sz_mb"])
used_mb = (int(r.info("memory")["used_memory"]) - mem0) / 2**20
for ef in sweep:
    t = time.time()
    res = []
    for q in queries:
        out = r.execute_command("FT.SEARCH", "bench", f"*=>[KNN {k} @vec $b EF_RUNTIME {ef}]",
                                "PARAMS", 2, "b", q.tobytes(), "NOCONTENT", "LIMIT", 0, k, "DIALECT", 2)
        if isinstance(out, dict):  # RESP3
            out = [None] + [d.get(b"id", d.get("id")) for d in out.get(b"results", out.get("results"))]
        res.append([int(x[2:]) for x in out[1:]])
    qps = nq / (time.time() - t)
    rows.append(("shardis (HNSW, 2 shards, via TCP)", build, f"{vec_mb:.0f} (+{used_mb:.0f} keys and data)", ef, recall(res), qps))

# faiss
try:
    import faiss
    faiss.omp_set_num_threads(1)
    idx = faiss.IndexHNSWFlat(dim, 16)
    idx.hnsw.efConstruction = 200
    t = time.time()
    idx.add(data)
    build = time.time() - t
    mem = f"{(n * dim * 4 + n * 16 * 2 * 4 * 1.1) / 2**20:.0f} (est.)"
    for ef in sweep:
        idx.hnsw.efSearch = ef
        t = time.time()
        res = [idx.search(q[None, :], k)[1][0] for q in queries]
        qps = nq / (time.time() - t)
        rows.append(("faiss IndexHNSWFlat (1 thread)", build, mem, ef, recall(res), qps))
except ImportError:
    print("faiss not available")

# hnswlib
try:
    import hnswlib
    h = hnswlib.Index(space="l2", dim=dim)
    h.init_index(max_elements=n, M=16, ef_construction=200)
    h.set_num_threads(1)
    t = time.time()
    h.add_items(data)
    build = time.time() - t
    mem = f"{(n * dim * 4 + n * 16 * 2 * 4 * 1.1) / 2**20:.0f} (est.)"
    for ef in sweep:
        h.set_ef(ef)
        t = time.time()
        res = [h.knn_query(q, k=k)[0][0] for q in queries]
        qps = nq / (time.time() - t)
        rows.append(("hnswlib (1 thread)", build, mem, ef, recall(res), qps))
except ImportError:
    print("hnswlib not available")

print(f"\n{n} clustered vectors, dim {dim}, {nq} queries, k={k}, M=16, ef_construction=200\n")
print("| engine | build s | index MiB | ef | recall@10 | queries/s |")
print("|---|---|---|---|---|---|")
marked = set()
for name, build, mem, ef, rec, qps in rows:
    mark = ""
    if rec >= 0.95 and name not in marked:
        marked.add(name)
        mark = " ← first ≥ 0.95"
    print(f"| {name} | {build:.1f} | {mem} | {ef} | {rec:.3f} | {qps:.0f}{mark} |")
EOF
