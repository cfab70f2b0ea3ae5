#!/usr/bin/env bash
# Checks the Go package: gofmt, the C shim's warnings, go vet, go test -race,
# the cgo pointer checks at their strictest, and one pass of every benchmark
# (so none rots).
# Needs Go (Debian: golang-go) and the static library, built first with
#   cargo build -p ratecard-ffi --release
# The comparison benchmarks (compare/) also need golang-golang-x-time-dev;
# without it they are skipped, saying so. Nothing is fetched: no module proxy.
set -euo pipefail
cd "$(dirname "$0")"

export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1
lib=../target/release/libratecard.a
xtime=/usr/share/gocode/src/golang.org/x/time

stage() { printf '\n=== go: %s ===\n' "$*"; }

if [ ! -f "$lib" ]; then
  echo "go/test.sh: $lib is missing: run 'cargo build -p ratecard-ffi --release' first" >&2
  exit 1
fi
go version

stage "gofmt"
unformatted=$(gofmt -l .)
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
if [ -d "$xtime" ]; then
  (cd compare && go vet ./...)
fi

stage "go test -race"
go test -race -count=1 ./...

# Go 1.19 and 1.20 check every pointer store with GODEBUG=cgocheck=2;
# from 1.21 that check is the cgocheck2 experiment instead.
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

echo
echo "go: all stages passed"
