#!/usr/bin/env bash
# Every test ratecard has, from a fresh machine: installs what is missing,
# then runs the checks stage by stage. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

stage() { printf '\n=== %s ===\n' "$*"; }

stage "setup"
bash scripts/setup.sh

stage "format"
cargo fmt --all -- --check

stage "clippy"
cargo clippy --workspace --all-targets -- -D warnings

stage "rust tests"
cargo test --workspace

stage "rust tests that need optimisation (occupancy at 2^20 slots)"
cargo test --release -p ratecard --test occupancy

stage "loom model of the slot protocol"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR="$root/target/loom" \
  cargo test --release -p ratecard --test loom

stage "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

echo
echo "all stages passed"
