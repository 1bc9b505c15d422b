#!/usr/bin/env bash
# Installs what the test suite and the benchmarks need beyond the Rust toolchain: redis-server
# (the reference server for differential tests), redis-cli and redis-benchmark, and redis-py
# (python3-redis: the scripting test runs its Lock and Script helpers; tests/tls.rs uses it
# over ssl), and openssl (scripts/bench-tls.sh makes its certificates with it), from Debian's
# packages. Idempotent: does nothing when all are present. Runs apt-get update only when
# the package lists do not know the packages yet. Works as root without sudo.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ! command -v redis-cli >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
    missing+=(redis-tools)
fi

command -v openssl >/dev/null 2>&1 || missing+=(openssl)

# Debian's own python3 (a pyenv or venv python3 earlier on PATH does not see python3-redis).
/usr/bin/python3 -c 'import redis' >/dev/null 2>&1 || missing+=(python3-redis)

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: redis-server, redis-cli, redis-benchmark and redis-py are present ($(redis-server --version | awk '{print $3}'))"
    exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "install-deps: need root (or sudo) to install ${missing[*]}" >&2
        exit 1
    fi
fi
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)

# Update the package lists only when they do not offer the packages yet.
need_update=0
for pkg in "${missing[@]}"; do
    candidate=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
        need_update=1
    fi
done
if [ "$need_update" -eq 1 ]; then
    echo "install-deps: apt-get update"
    "${apt[@]}" update -q
fi

echo "install-deps: installing ${missing[*]}"
"${apt[@]}" install -y -q --no-install-recommends "${missing[@]}"

# The redis-server package starts a system service on port 6379 where it can; the tests start
# their own servers on free ports, so stop and disable it. Failures here are harmless.
if command -v systemctl >/dev/null 2>&1; then
    "${as_root[@]}" systemctl stop redis-server >/dev/null 2>&1 || true
    "${as_root[@]}" systemctl disable redis-server >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
    "${as_root[@]}" service redis-server stop >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null 2>&1; then
    "${as_root[@]}" update-rc.d redis-server disable >/dev/null 2>&1 || true
fi

for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null 2>&1 || { echo "install-deps: $tool still missing" >&2; exit 1; }
done
version=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
case "$version" in
    7.*) echo "install-deps: redis-server $version installed" ;;
    *) echo "install-deps: warning: redis-server $version is not 7.x; differential tests expect Redis 7.0 replies" >&2 ;;
esac
