#!/usr/bin/env bash
# Every test ratecard has, from a fresh Debian machine with Rust stable and
# nightly: installs what is missing (scripts/setup.sh), then runs the checks
# stage by stage. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TERM_COLOR=never

stage() { printf '\n=== %s ===\n' "$*"; }

stage "setup: Debian packages (Go, nginx, valgrind, wrk, curl, redis) and cargo-fuzz"
bash scripts/setup.sh

stage "format"
cargo fmt --all -- --check

stage "clippy"
cargo clippy --workspace --all-targets -- -D warnings

stage "rust tests (core, ffi, benches)"
cargo test --workspace

stage "Redis: the charge script on a real redis-server (started by the tests)"
cargo test -p ratecard --test redis_script -- --include-ignored

stage "occupancy at 2^20 slots (release)"
cargo test --release -p ratecard --test occupancy

stage "loom model of the slot protocol"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR="$root/target/loom" \
  cargo test --release -p ratecard --test loom

stage "no_std and no alloc: core linked into a no_std staticlib"
bash nostd-check/check.sh

stage "docs"
# One package at a time: core and ffi both name their library `ratecard`.
for pkg in ratecard ratecard-ffi ratecard-benches; do
  RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p "$pkg"
done

stage "benches compile (criterion; run them with cargo bench -p ratecard-benches)"
cargo bench -p ratecard-benches --no-run

stage "C ABI: C test suite on libratecard.a and libratecard.so under valgrind"
sh ffi/tests/c/run.sh

stage "Go: gofmt, go vet, go test -race, cgo pointer checks"
cargo build -p ratecard-ffi --release
bash go/test.sh

stage "nginx: build the dynamic module, run it in a real nginx"
bash integrations/nginx/test.sh

stage "fuzz smoke: every target for a bounded time under AddressSanitizer"
bash fuzz/smoke.sh

echo
echo "all stages passed"
