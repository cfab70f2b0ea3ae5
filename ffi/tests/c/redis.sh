#!/usr/bin/env bash
# The hiredis example (ffi/examples/redis_hiredis.c) against a real
# redis-server: built with -Wall -Wextra -Werror, run as separate processes
# that must share one limit (Clerk: 5 sign-ins per 10 s per client IP).
# The server runs on 127.0.0.1, on a free port, without persistence, and is
# stopped by pid when the script ends, failed or not.
# Needs the release static library (cargo build -p ratecard-ffi --release),
# libhiredis-dev, redis-server and redis-tools; valgrind if present.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
lib=$target/release/libratecard.a
[ -f "$lib" ] || { echo "redis.sh: $lib is missing: cargo build -p ratecard-ffi --release" >&2; exit 1; }

out=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT INT TERM

# shellcheck disable=SC2046
${CC:-cc} -std=c99 -Wall -Wextra -Werror -pedantic -I"$root/include" \
  "$root/ffi/examples/redis_hiredis.c" "$lib" $(pkg-config --cflags --libs hiredis) \
  -lpthread -ldl -lm -o "$out/redis_hiredis"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$out" \
  --logfile redis.log --daemonize no &
pid=$!
for _ in $(seq 100); do
  redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
  sleep 0.1
done
redis-cli -p "$port" ping | grep -q PONG

ms() { date +%s%3N; }
run() { "$out/redis_hiredis" 127.0.0.1 "$port" "$@"; }
die() { echo "redis.sh: $*" >&2; exit 1; }
expect() { # <what> <output> <summary line wanted>
  if ! grep -qx "$3" <<<"$2"; then
    printf 'redis.sh: %s: want "%s", got:\n%s\n' "$1" "$3" "$2" >&2
    exit 1
  fi
}

# Two processes, one client: the second gets what the first left, no more.
# A unit comes back every 2 s, so the allowance grows with the elapsed time.
start=$(ms)
first=$(run 203.0.113.9 3 2>"$out/first.err")
second=$(run 203.0.113.9 5 2>"$out/second.err")
back=$((($(ms) - start) / 2000))
echo "$first"; echo "$second"
expect "first process" "$first" "allowed=3 limited=0 unavailable=0"
allowed=$(sed -n 's/^allowed=\([0-9]*\) .*/\1/p' <<<"$second")
if [ "$allowed" -lt 2 ] || [ "$allowed" -gt $((2 + back)) ]; then
  die "second process: $allowed allowed; 5 per 10 s leaves 2 (+$back)"
fi
grep -q "limited by redis (fapi.sign_ins.create), Retry-After: [1-9]" <<<"$second" ||
  die "second process: no denial from Redis with Retry-After"
# The denial is cached in the second process: its later attempts make no round trip.
grep -q "limited by this process" <<<"$second" || die "second process: the denial was not cached"
# The first loaded the script into the fresh server; the second found it there.
grep -q "loaded the script" "$out/first.err" || die "first process: did not load the script"
if grep -q "loaded the script" "$out/second.err"; then die "second process: loaded the script again"; fi

# Another client has its own limit; no client's IP reaches Redis in clear.
if command -v valgrind >/dev/null; then
  other=$(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible \
    "$out/redis_hiredis" 127.0.0.1 "$port" 198.51.100.7 1)
else
  other=$(run 198.51.100.7 1)
fi
expect "another client" "$other" "allowed=1 limited=0 unavailable=0"
keys=$(redis-cli -p "$port" --scan --pattern 'rc:*')
[ "$(wc -l <<<"$keys")" -eq 2 ] || die "keys: $keys"
if grep -q -e 203.0.113.9 -e 198.51.100.7 <<<"$keys"; then die "a client IP in a key: $keys"; fi

# SCRIPT FLUSH: the next process loads it again, and the limit holds.
redis-cli -p "$port" script flush >/dev/null
again=$(run 198.51.100.7 1 2>"$out/again.err")
expect "after SCRIPT FLUSH" "$again" "allowed=1 limited=0 unavailable=0"
grep -q "loaded the script" "$out/again.err" || die "after SCRIPT FLUSH: did not load the script"

# Redis gone: fail closed, no decision, and the process still exits cleanly.
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
gone=$(run 203.0.113.10 2 2>/dev/null)
expect "Redis stopped" "$gone" "allowed=0 limited=0 unavailable=2"
echo "redis.sh: the hiredis example shares one limit across processes"
