#!/usr/bin/env bash
# Builds the module and expect.c (the library's own answers, which the test
# holds nginx to), then tests the module in a real Debian nginx (2 workers,
# loopback only, prefix and pid file in a temporary directory).
# Prints "N passed, M failed"; exits non-zero on a failure.
# Needs: nginx nginx-dev (Debian), python3, cargo, cc. Env: RATECARD_LIB and
# RATECARD_INCLUDE as for build.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

bash "$here/build.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ratecard-nginx-test.XXXXXX")
chmod 755 "$tmp"

# test.py stops nginx itself; this is the backstop if it dies first.
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

${CC:-cc} -std=c99 -O2 -Wall -Wextra -Werror -I "${RATECARD_INCLUDE:-$root/include}" \
  "$here/expect.c" "${RATECARD_LIB:-$root/target/release/libratecard.a}" \
  -lpthread -ldl -lm -o "$tmp/expect"

PYTHONDONTWRITEBYTECODE=1 python3 "$here/test.py" "$root/target/nginx/ngx_http_ratecard_module.so" \
  "$tmp" "$tmp/expect"
