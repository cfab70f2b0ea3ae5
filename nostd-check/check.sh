#!/usr/bin/env bash
# Build ratecard into a no_std, no-alloc static library, and show that the
# check can fail: the same build with `alloc` or `std` pulled in must not
# link. Run from anywhere; uses the installed stable toolchain, host target.
set -euo pipefail
cd "$(dirname "$0")"

build() {
  cargo build --release --quiet "$@"
}

echo "nostd-check: building ratecard as a no_std, no-alloc staticlib"
build
lib=target/release/libratecard_nostd_check.a
test -s "$lib" || { echo "nostd-check: $lib missing" >&2; exit 1; }
# The decision path is really in the archive.
if command -v nm >/dev/null; then
  symbols=$(nm "$lib" 2>/dev/null || true)
  grep -q ' T ratecard_nostd_check$' <<<"$symbols" \
    || { echo "nostd-check: ratecard_nostd_check not exported" >&2; exit 1; }
fi
echo "nostd-check: ok"

for canary in canary-alloc canary-std; do
  log=$(mktemp)
  if build --features "$canary" >"$log" 2>&1; then
    echo "nostd-check: the $canary build succeeded; the check cannot fail" >&2
    rm -f "$log"
    exit 1
  fi
  echo "nostd-check: $canary fails as it must: $(grep -m1 '^error' "$log" || echo '(no error line)')"
  rm -f "$log"
done
echo "nostd-check: passed"
