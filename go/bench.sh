#!/usr/bin/env bash
# Runs the Go benchmarks: the package's own (Check, CheckKey, the middleware,
# with a bare cgo call as the floor), then compare/, where Check, a bare cgo
# call, ratecard_check in a C loop and golang.org/x/time/rate (a keyed map
# of limiters under a mutex) run side by side; then go/redis, where
# decisions through a redis-server the benchmark starts run beside PING and
# an empty EVALSHA on the same connection. Extra arguments go to go test
# (e.g. -benchtime 3s -count 5).
# Needs the static library (cargo build -p ratecard-ffi --release) and, for
# compare/, Debian's golang-golang-x-time-dev. Nothing is fetched.
set -euo pipefail
cd "$(dirname "$0")"

export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1
xtime=/usr/share/gocode/src/golang.org/x/time

go test -run '^$' -bench . -benchmem "$@" .
if [ -d "$xtime" ]; then
  (cd compare && go test -run '^$' -bench . -benchmem "$@" .)
else
  echo "skipped compare/: apt-get install golang-golang-x-time-dev" >&2
  exit 1
fi
bash deps.sh
(cd redis && go test -run '^$' -bench . -benchmem "$@" .)
