#!/usr/bin/env bash
# Instruction counts of the hot paths under callgrind, against the budgets
# in benches/instructions.txt: deterministic (the count does not depend on
# the machine's load), so a regression fails CI without timing noise.
#
#   bash benches/instructions.sh          # check every case against its budget
#   bash benches/instructions.sh --bless  # rewrite the budgets from this run
#
# A case fails when it takes more than its budget plus TOLERANCE percent
# (default 3). Budgets hold for the toolchain CI uses; a new rustc may move
# them a little: re-bless with a note in the commit.
set -euo pipefail
cd "$(dirname "$0")/.."
budgets=benches/instructions.txt
tolerance=${TOLERANCE:-3}
cargo build -q --release -p ratecard-benches --example instructions
bin=target/release/examples/instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

bless=0
[ "${1:-}" = --bless ] && bless=1
failed=0
new=""
for case in $($bin list); do
  valgrind -q --tool=callgrind --toggle-collect=measured \
    --callgrind-out-file="$out/$case.cg" "$bin" "$case" > "$out/$case.txt"
  calls=$(awk '{print $2}' "$out/$case.txt")
  total=$(grep -E '^summary:' "$out/$case.cg" | awk '{print $2}')
  per=$(( (total + calls / 2) / calls ))
  new="$new$case $per"$'\n'
  if [ $bless = 1 ]; then
    printf '%-28s %6d instructions per call\n' "$case" "$per"
    continue
  fi
  budget=$(awk -v c="$case" '$1 == c {print $2}' "$budgets")
  if [ -z "$budget" ]; then
    echo "FAIL $case: no budget in $budgets (run with --bless)"
    failed=1
    continue
  fi
  limit=$(( budget + budget * tolerance / 100 ))
  if [ "$per" -gt "$limit" ]; then
    echo "FAIL $case: $per instructions per call, budget $budget (+$tolerance%)"
    failed=1
  else
    echo "ok   $case: $per instructions per call (budget $budget)"
  fi
done
if [ $bless = 1 ]; then
  {
    echo "# Instructions per call of each hot path (benches/instructions.sh):"
    echo "# callgrind counts of the measured loop, divided by its calls."
    printf '%s' "$new"
  } > "$budgets"
  echo "budgets written to $budgets"
fi
exit $failed
