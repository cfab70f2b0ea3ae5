#!/usr/bin/env bash
# Overhead of the nginx module: wrk on loopback, the same route with the
# module on and off in one run; prints both and the ratio (not asserted).
# Needs: nginx nginx-dev wrk (Debian), python3, cargo.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

command -v wrk >/dev/null || { echo "bench.sh: wrk missing: apt-get install wrk" >&2; exit 1; }
bash "$here/build.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ratecard-nginx-bench.XXXXXX")
chmod 755 "$tmp"
cleanup() {
  if [ -s "$tmp/nginx.pid" ]; then
    pid=$(cat "$tmp/nginx.pid")
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

PYTHONDONTWRITEBYTECODE=1 python3 "$here/bench.py" "$root/target/nginx/ngx_http_ratecard_module.so" "$tmp"
