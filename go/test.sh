#!/usr/bin/env bash
# Checks the Go code, in three parts (all of them by default):
#   package     the ratecard package: gofmt (every module), the C shim's
#               warnings, go vet (every module), go test -race, the cgo
#               pointer checks at their strictest, one pass of every
#               benchmark (so none rots)
#   redis       go/redis, the RedisLimiter on redigo and redisc: go test
#               -race against real redis-servers, a three-master cluster and
#               gateway processes the tests start
#   prometheus  go/prometheus, the collector: go test -race with promtool
#               and a real Prometheus scraping a Go server
#
#   bash go/test.sh                 # all three
#   bash go/test.sh redis           # one part
#
# Needs Go (Debian: golang-go) and the static library, built first with
#   cargo build -p ratecard-ffi --release
# go/redis needs redis-server, redis-tools, golang-github-gomodule-redigo-dev
# and golang-github-mna-redisc-dev; go/prometheus needs prometheus,
# golang-github-prometheus-client-golang-dev and golang-github-google-go-cmp-dev
# (scripts/setup.sh installs them all). The comparison benchmarks
# (compare/) also need golang-golang-x-time-dev; without it they are
# skipped, saying so. Nothing is fetched: no module proxy.
set -euo pipefail
cd "$(dirname "$0")"

export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1
lib=../target/release/libratecard.a
xtime=/usr/share/gocode/src/golang.org/x/time
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(package redis prometheus)

stage() { printf '\n=== go: %s ===\n' "$*"; }

if [ ! -f "$lib" ]; then
  echo "go/test.sh: $lib is missing: run 'cargo build -p ratecard-ffi --release' first" >&2
  exit 1
fi
go version
# The modules of Debian packages shipped without go.mod, for go/redis and
# go/prometheus (go vet of every module needs them too).
bash deps.sh

package() {
  stage "gofmt"
  local unformatted
  unformatted=$(find . -name '*.go' ! -path './.deps/*' -exec gofmt -l {} +)
  if [ -n "$unformatted" ]; then
    echo "not gofmt-ed:" >&2
    echo "$unformatted" >&2
    exit 1
  fi

  stage "C shim: -Wall -Wextra -Werror"
  # cgo builds shim.c with the package's flags only; the project's C warnings
  # are checked here instead, so that a user's compiler never fails the build.
  "${CC:-cc}" -std=c99 -Wall -Wextra -Werror -pedantic -I../include -c shim.c -o /dev/null

  stage "go vet"
  go vet ./...
  (cd redis && go vet ./...)
  (cd prometheus && go vet ./...)
  if [ -d "$xtime" ]; then
    (cd compare && go vet ./...)
  fi

  stage "go test -race"
  go test -race -count=1 ./...

  # Go 1.19 and 1.20 check every pointer store with GODEBUG=cgocheck=2;
  # from 1.21 that check is the cgocheck2 experiment instead.
  local minor
  minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  if [ "$minor" -ge 21 ]; then
    stage "go test, GOEXPERIMENT=cgocheck2"
    GOEXPERIMENT=cgocheck2 go test -count=1 ./...
  else
    stage "go test, GODEBUG=cgocheck=2"
    GODEBUG=cgocheck=2 go test -count=1 ./...
  fi

  stage "benchmarks, one iteration each"
  go test -run '^$' -bench . -benchtime 1x ./...
  if [ -d "$xtime" ]; then
    (cd compare && go test -run '^$' -bench . -benchtime 1x ./...)
  else
    echo "skipped compare/: golang.org/x/time is not in $xtime (apt-get install golang-golang-x-time-dev)"
  fi
}

redis() {
  stage "go/redis: go test -race (redis-server, a Redis Cluster, gateway processes, faults)"
  (cd redis && go test -race -count=1 ./...)
  stage "go/redis: benchmarks, one iteration each"
  (cd redis && go test -run '^$' -bench . -benchtime 1x ./...)
}

prometheus() {
  stage "go/prometheus: go test -race (promtool, a Prometheus server scraping a Go server)"
  (cd prometheus && go test -race -count=1 ./...)
}

for part in "${parts[@]}"; do
  case $part in
    package | redis | prometheus) "$part" ;;
    *) echo "go/test.sh: unknown part '$part' (package, redis, prometheus)" >&2; exit 2 ;;
  esac
done

echo
echo "go: ${parts[*]}: all stages passed"
