#!/usr/bin/env bash
# Cost of the nginx module: wrk on loopback against one static route with the
# module off, on the local table and through a redis-server started here, in
# alternating rounds; prints medians of req/s, p50/p99 and CPU per request of
# nginx's workers and of Redis (reported, not asserted). Bounded: ROUNDS x 3
# runs of SECONDS each (defaults 5 and 5; CI runs ROUNDS=1 SECONDS=1).
# Needs: nginx nginx-dev wrk redis-server (Debian), python3, cargo.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

command -v wrk >/dev/null || { echo "bench.sh: wrk missing: apt-get install wrk" >&2; exit 1; }
bash "$here/build.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ratecard-nginx-bench.XXXXXX")
chmod 755 "$tmp"
# bench.py stops its servers itself; this is the backstop if it dies first.
cleanup() {
  local pidfile pid comm
  while IFS= read -r pidfile; do
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
    case "$comm" in
      nginx) kill -QUIT "$pid" 2>/dev/null || true ;;
      redis-server) kill -TERM "$pid" 2>/dev/null || true ;;
      *) continue ;;
    esac
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done < <(find "$tmp" -name '*.pid' 2>/dev/null)
  rm -rf "$tmp"
}
trap cleanup EXIT

PYTHONDONTWRITEBYTECODE=1 python3 "$here/bench.py" "$root/target/nginx/ngx_http_ratecard_module.so" "$tmp"
