#!/usr/bin/env bash
# CI smoke run of every fuzz target: build them once (nightly, AddressSanitizer,
# debug assertions), then run each for a bounded time from its seed corpus.
# A crash, a failed assertion, a leak or a hang (over 10 s on one input) fails
# the script; the input is left in fuzz/artifacts/<target>/ (see README.md).
#
#   bash fuzz/smoke.sh                 # every target, 20 s each
#   SECONDS_PER_TARGET=60 bash fuzz/smoke.sh engine route
#
# Needs the nightly toolchain already installed (rustup never downloads one
# here); installs cargo-fuzz from the registry if it is missing.
set -euo pipefail

cd "$(dirname "$0")"
SECONDS_PER_TARGET="${SECONDS_PER_TARGET:-20}"
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(engine route table_memory ffi remote_reply remote_encode)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz/smoke.sh: the nightly toolchain is not installed (cargo fuzz needs it)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

start=$(date +%s)
# One cargo invocation builds every target.
cargo +nightly fuzz build --sanitizer address
echo "fuzz/smoke.sh: built in $(( $(date +%s) - start )) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "$work/$t"
    dict=()
    if [ "$t" = route ]; then
        dict=(-dict=route.dict)
    fi
    # New inputs go to the scratch corpus; the committed seeds are only read.
    # -jobs=1 runs the fuzzer in a child that logs to fuzz-0.log.
    rm -f fuzz-0.log
    if cargo +nightly fuzz run --sanitizer address "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -jobs=1 -timeout=10 "${dict[@]}" \
        >"$work/$t.out" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
    fi
    log=fuzz-0.log
    [ -f "$log" ] || log="$work/$t.out"
    if [ "$status" = ok ]; then
        line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
        echo "fuzz/smoke.sh: $t ok: ${line:-(no stats line)}"
    else
        echo "fuzz/smoke.sh: $t FAILED; the end of its log:" >&2
        grep -v -E 'NEW|REDUCE|pulse|Uses:' "$log" | tail -60 >&2 || true
        ls -1 "artifacts/$t" 2>/dev/null | sed 's/^/  artifact: fuzz\/artifacts\/'"$t"'\//' >&2 || true
    fi
    rm -f fuzz-0.log
done
echo "fuzz/smoke.sh: done in $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/smoke.sh: failed: ${failed[*]}" >&2
    exit 1
fi
