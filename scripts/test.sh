#!/usr/bin/env bash
# Every test ratecard has, from a fresh Debian machine with Rust stable and
# nightly: installs what is missing (scripts/setup.sh), then runs the checks
# stage by stage, timing each. Exits non-zero on the first failure.
#
#   bash scripts/test.sh          # everything (what CI runs)
#   bash scripts/test.sh quick    # fmt, clippy, cargo test: no installs
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TERM_COLOR=never
mode=${1:-all}

started=$(date +%s)
last=$started
stage() {
  local now
  now=$(date +%s)
  if [ -n "${current:-}" ]; then
    printf '=== %s: %ss\n' "$current" $((now - last))
  fi
  current="$*"
  last=$now
  printf '\n=== %s ===\n' "$*"
}
finish() {
  stage "done"
  printf 'all stages passed in %ss\n' $(($(date +%s) - started))
}

if [ "$mode" != quick ]; then
  stage "setup: Debian packages and cargo-fuzz"
  bash scripts/setup.sh
fi

stage "format"
cargo fmt --all -- --check

stage "clippy"
cargo clippy --workspace --all-targets -- -D warnings

if [ "$mode" = quick ]; then
  stage "rust tests (every crate of the workspace)"
  cargo test --workspace
  finish
  exit 0
fi

# Ignored tests need what setup installed: redis-server (the charge script,
# the Redis limiter, the Redis backend), promtool (metrics pages). They run
# in the same invocation, so nothing is built twice; the occupancy curve is
# a printout for release builds and stays out.
stage "rust tests (every crate, with those needing redis-server and promtool)"
cargo test --workspace -- --include-ignored --skip print_occupancy_curve

stage "tower layer: without axum, on the Redis backend (clippy, docs, its Redis tests)"
cargo build -p ratecard-tower --no-default-features
cargo build -p ratecard-tower --no-default-features --features redis
cargo clippy -p ratecard-tower --all-targets --all-features -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p ratecard-tower --features redis
cargo test -p ratecard-tower --features redis --test redis -- --include-ignored

# Its tests (a three-master cluster among them) ran with the workspace.
stage "ratecard-redis: a bounded run of its latency example (redis-server, redis-benchmark)"
cargo run -p ratecard-redis --example latency -- --calls 500 --seconds 1

stage "ratecard-redis: a bounded run of its flood example (redis-server)"
cargo run -p ratecard-redis --example flood -- --rounds 1 --seconds 0.5

stage "loom model of the slot protocol"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR="$root/target/loom" \
  cargo test --release -p ratecard --test loom

stage "no_std and no alloc: core linked into a no_std staticlib"
bash nostd-check/check.sh

stage "docs"
# One package at a time: core and ffi both name their library `ratecard`.
for pkg in ratecard ratecard-ffi ratecard-benches ratecard-redis; do
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p "$pkg"
done

stage "benches compile (criterion; run them with cargo bench -p ratecard-benches)"
cargo bench -p ratecard-benches --no-run

stage "envoy: ratecard-rls docs; its load generator and peers (clippy, a bounded run)"
# The protocol tests ran with the workspace; the load generator needs
# --features bench (Limitador, the C ABI), kept out of the service's build.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p ratecard-rls
cargo clippy -p ratecard-rls --all-targets --features bench -- -D warnings
cargo build -p ratecard-rls --features bench
target/debug/ratecard-rls-load --calls 2000 --seconds 2 --batches 3 --batch 200 --warmup 200

stage "instruction budgets of the hot paths (callgrind; deterministic)"
bash benches/instructions.sh

stage "C ABI: C test suite on libratecard.a and libratecard.so under valgrind"
sh ffi/tests/c/run.sh

stage "C: the hiredis example through a real redis-server (two processes, one limit)"
bash ffi/tests/c/redis.sh

stage "C library installed into a temporary prefix: pkg-config shared and static, SONAME, exports"
bash ffi/tests/install.sh

stage "benchmark chart: benches/chart.py on fixed input; benches/chart.svg drawn from benches/README.md"
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s benches/tests -v

stage "Go: gofmt, go vet, go test -race, cgo pointer checks"
cargo build -p ratecard-ffi --release
bash go/test.sh package

stage "Go through Redis: go/redis against redis-server, a three-master cluster, gateway processes, faults"
bash go/test.sh redis

stage "Go metrics: go/prometheus through promtool and a real Prometheus scraping a Go server"
bash go/test.sh prometheus

stage "nginx: build the dynamic module, run it in a real nginx, and two nginx hosts on a real redis-server; a bench smoke run"
bash integrations/nginx/test.sh
ROUNDS=1 SECONDS=1 bash integrations/nginx/bench.sh

stage "fuzz smoke: every target for a bounded time under AddressSanitizer"
bash fuzz/smoke.sh

finish
