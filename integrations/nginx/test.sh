#!/usr/bin/env bash
# Builds the module and expect.c (the library's own answers, which the tests
# hold nginx to), then tests the module in a real Debian nginx: test.py (the
# local table, 2 workers) and test_redis.py (the Redis mode: two nginx hosts
# and a 1-worker host on a real redis-server, stub servers, Prometheus).
# Everything listens on loopback; prefixes, pid files and data live in a
# temporary directory. Each suite prints "N passed, M failed"; exits non-zero
# on a failure.
# Needs: nginx nginx-dev redis-server prometheus (Debian), python3, cargo, cc.
# Env: RATECARD_LIB and RATECARD_INCLUDE as for build.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

bash "$here/build.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ratecard-nginx-test.XXXXXX")
chmod 755 "$tmp"

# The suites stop their servers themselves; this is the backstop if one dies
# first: every server whose pid file lies under $tmp (nginx masters by
# SIGQUIT, redis-server and prometheus by SIGTERM), if that pid is still one.
cleanup() {
  local pidfile pid comm
  while IFS= read -r pidfile; do
    pid=$(cat "$pidfile" 2>/dev/null) || continue
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
    case "$comm" in
      nginx) kill -QUIT "$pid" 2>/dev/null || true ;;
      redis-server|prometheus) kill -TERM "$pid" 2>/dev/null || true ;;
      *) continue ;;
    esac
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done < <(find "$tmp" -name '*.pid' 2>/dev/null)
  rm -rf "$tmp"
}
trap cleanup EXIT

${CC:-cc} -std=c99 -O2 -Wall -Wextra -Werror -I "${RATECARD_INCLUDE:-$root/include}" \
  "$here/expect.c" "${RATECARD_LIB:-$root/target/release/libratecard.a}" \
  -lpthread -ldl -lm -o "$tmp/expect"

status=0
mkdir "$tmp/local" "$tmp/redis"
echo "=== test.py: the local table ==="
PYTHONDONTWRITEBYTECODE=1 python3 "$here/test.py" "$root/target/nginx/ngx_http_ratecard_module.so" \
  "$tmp/local" "$tmp/expect" || status=1
echo "=== test_redis.py: the Redis mode ==="
PYTHONDONTWRITEBYTECODE=1 python3 "$here/test_redis.py" \
  "$root/target/nginx/ngx_http_ratecard_module.so" "$tmp/redis" "$tmp/expect" || status=1
exit $status
