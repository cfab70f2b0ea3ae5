#!/usr/bin/env bash
# Decisions through Redis: ratecard's charge script (EVALSHA) against
# redis-cell's CL.THROTTLE, loaded into the same redis-server, with PING and
# an empty EVALSHA as the floors; measured with redis-benchmark on loopback.
#
#   bash benches/redis/bench.sh               # 3 rounds
#   ROUNDS=5 N1=30000 NP=500000 bash benches/redis/bench.sh
#   INSTRUCTIONS=0 bash benches/redis/bench.sh   # skip the callgrind counts
#   ONLY=flood bash benches/redis/bench.sh       # the flood alone
#
# Then a flood from one limited client (integrations/redis/examples/flood.rs)
# on the same server: ratecard through RedisBackend with and without its
# cache of denials, against CL.THROTTLE on one limited key.
#
# Builds redis-cell 0.2.2 from the crate's source (fetched by cargo into a
# throwaway project, built in a scratch copy, cached as a .so under
# target/bench-redis/; none of its code lands in this tree). Starts its own
# redis-server on 127.0.0.1 on a free port, no persistence, and stops it by
# pid on exit. Cases alternate within each round; figures are medians over
# the rounds. Then, unless INSTRUCTIONS=0, the server's instructions per
# call of each case under callgrind (valgrind), which no load on the machine
# changes. Prints markdown tables (see benches/redis/README.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${ROUNDS:-3}
N1=${N1:-20000}      # requests per run on one connection
NP=${NP:-400000}     # requests per run on 50 connections, pipeline 16
KEYSPACE=${KEYSPACE:-100000}
ONLY=${ONLY:-}                   # "flood": the flood alone
FLOOD_SECONDS=${FLOOD_SECONDS:-3} # each ratecard flood, at most
cache="$root/target/bench-redis"
work=$(mktemp -d)
pid=""

cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

die() { echo "bench.sh: $*" >&2; exit 1; }
command -v redis-server >/dev/null || die "needs redis-server and redis-tools (apt-get install redis-server redis-tools)"
command -v redis-benchmark >/dev/null || die "needs redis-benchmark (redis-tools)"

# --- redis-cell 0.2.2, built from its published source -----------------------
cell="$cache/libredis_cell.so"
if [ ! -f "$cell" ]; then
  mkdir -p "$work/fetch/src" "$cache"
  cat >"$work/fetch/Cargo.toml" <<'EOF'
[package]
name = "fetch-redis-cell"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
redis-cell = "=0.2.2"

[workspace]
EOF
  : >"$work/fetch/src/lib.rs"
  (cd "$work/fetch" && cargo fetch -q)
  manifest=$(cd "$work/fetch" && cargo metadata --format-version 1 |
    grep -o '"manifest_path":"[^"]*/redis-cell-0\.2\.2/Cargo\.toml"' | head -1 |
    sed 's/^"manifest_path":"//; s/"$//')
  [ -n "$manifest" ] || die "cargo did not fetch redis-cell 0.2.2"
  cp -r "$(dirname "$manifest")" "$work/redis-cell"
  (cd "$work/redis-cell" && cargo build --release -q 2>"$work/cell-build.log") ||
    { cat "$work/cell-build.log" >&2; die "redis-cell did not build"; }
  cp "$work/redis-cell/target/release/libredis_cell.so" "$cell"
fi
(cd "$root" && cargo build --release -q -p ratecard-redis --example flood) ||
  die "the flood example did not build"
target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
  grep -o '"target_directory":"[^"]*"' | sed 's/^"target_directory":"//; s/"$//')
flood_bin="$target/release/examples/flood"
[ -x "$flood_bin" ] || die "no $flood_bin"

# --- redis-server on a free port ---------------------------------------------
start_server() {
  local try
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$work" --logfile "$work/redis.log" --daemonize no \
      --loadmodule "$cell" >/dev/null 2>&1 &
    pid=$!
    local i
    for i in $(seq 50); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if [ "$(redis-cli -p "$port" PING 2>/dev/null)" = PONG ]; then return 0; fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  done
  die "redis-server did not start: $(tail -5 "$work/redis.log" 2>/dev/null)"
}
start_server
cli() { redis-cli -p "$port" "$@"; }

sha=$(cli -x SCRIPT LOAD <"$root/core/src/remote/charge.lua")
want=$(grep -o 'SCRIPT_SHA1: &str = "[0-9a-f]*"' "$root/core/src/remote/mod.rs" | grep -o '[0-9a-f]\{40\}')
[ "$sha" = "$want" ] || die "the server names the script $sha, core/src/remote/mod.rs says $want"
empty=$(cli SCRIPT LOAD "return 1")
# The least any GCRA script does: read the clock, read the state, write it
# with a TTL, answer 6 integers. No math, no checks.
naive_src="local t = redis.call('TIME') local v = redis.call('GET', KEYS[1]) redis.call('SET', KEYS[1], '1800000000123456789', 'PX', 2000) return {1, 1, 1, 4, 2000000000, 0}"
naive=$(cli SCRIPT LOAD "$naive_src")
# The same for two keys, all or nothing: TIME, two GET, two SET PX.
naive2_src="local t = redis.call('TIME') local v = redis.call('GET', KEYS[1]) local w = redis.call('GET', KEYS[2]) redis.call('SET', KEYS[1], '1800000000123456789', 'PX', 2000) redis.call('SET', KEYS[2], '1800000000123456789', 'PX', 2000) return {1, 1, 1, 4, 2000000000, 0, 1, 4, 2000000000, 0}"
naive2=$(cli SCRIPT LOAD "$naive2_src")

# --- a flood from one limited client, on this server ----------------------------
# Every flood bounded by --seconds, every redis-benchmark by its count.
flood="$work/flood.md"
run_flood() {
  timeout 900 "$flood_bin" --port "$port" --rounds "$ROUNDS" --seconds "$FLOOD_SECONDS" >"$flood" ||
    die "the flood failed"
}
if [ "$ONLY" = flood ]; then
  run_flood
  cat "$flood"
  exit 0
fi

# --- the cases -----------------------------------------------------------------
# sign-in: fapi.sign_ins.create, 5 / 10 s (GCRA: T = 2 s, burst 5).
# patch:   bapi.instance.production 1000 / 10 s (T = 10 ms) and
#          bapi.users.update 10 / 10 s (T = 1 s), both charged in one call.
# redis-cell's CL.THROTTLE key max_burst count period: max_burst = burst - 1.
CASES=(ping empty naive ours1 cell1 naive2 ours2 cellI cellU)
command_of() {
  case "$1" in
    ping) CMD=(PING) ;;
    empty) CMD=(EVALSHA "$empty" 1 'rc:{__rand_int__}S' 0 1 g 2000000000 5) ;;
    naive) CMD=(EVALSHA "$naive" 1 'rc:{__rand_int__}S' 0 1 g 2000000000 5) ;;
    ours1) CMD=(EVALSHA "$sha" 1 'rc:{__rand_int__}S' 0 1 g 2000000000 5) ;;
    cell1) CMD=(CL.THROTTLE 'rc:{__rand_int__}S' 4 5 10 1) ;;
    naive2) CMD=(EVALSHA "$naive2" 2 'rc:{__rand_int__}I' 'rc:{__rand_int__}U' 0 1
      g 10000000 1000 g 1000000000 10) ;;
    ours2) CMD=(EVALSHA "$sha" 2 'rc:{__rand_int__}I' 'rc:{__rand_int__}U' 0 1
      g 10000000 1000 g 1000000000 10) ;;
    cellI) CMD=(CL.THROTTLE 'rc:{__rand_int__}I' 999 1000 10 1) ;;
    cellU) CMD=(CL.THROTTLE 'rc:{__rand_int__}U' 9 10 10 1) ;;
  esac
}

results="$work/results"
: >"$results"
for round in $(seq "$ROUNDS"); do
  for mode in one pipe; do
    if [ "$mode" = one ]; then opts=(-c 1 -n "$N1"); else opts=(-c 50 -P 16 -n "$NP"); fi
    for c in "${CASES[@]}"; do
      command_of "$c"
      cli FLUSHALL >/dev/null
      cli CONFIG RESETSTAT >/dev/null
      # csv: "test","rps","avg","min","p50","p95","p99","max" (ms)
      line=$(redis-benchmark -p "$port" "${opts[@]}" -r "$KEYSPACE" --csv "${CMD[@]}" | tail -1 | tr -d '"')
      rps=$(echo "$line" | awk -F, '{print $2}')
      p50=$(echo "$line" | awk -F, '{print $5}')
      p99=$(echo "$line" | awk -F, '{print $7}')
      # The server's own time per call, nested commands included.
      name=$(echo "${CMD[0]}" | tr 'A-Z' 'a-z')
      us=$(cli INFO commandstats | tr -d '\r' | grep "^cmdstat_$name:" | sed 's/.*usec_per_call=//; s/,.*//')
      echo "$mode $c $round $rps $p50 $p99 ${us:-0}" >>"$results"
      echo "round $round $mode $c: $rps/s p50 $p50 ms p99 $p99 ms, server $us us/call" >&2
    done
  done
done

# A decision of redis-cell over two limits is two calls in a row.
awk '$2 == "cellI" || $2 == "cellU" { k = $1" "$3" "$2; r[k] = $4; a[k] = $5; b[k] = $6; u[k] = $7 }
  END { for (k in r) { split(k, f, " "); if (f[3] == "cellI") { o = f[1]" "f[2]" cellU";
    printf "%s cell2 %s %.2f %.3f %.3f %.2f\n", f[1], f[2], 1 / (1 / r[k] + 1 / r[o]), a[k] + a[o], b[k] + b[o], u[k] + u[o] } } }' \
  "$results" >>"$results"

median() { # mode case column
  awk -v m="$1" -v c="$2" -v col="$3" '$1 == m && $2 == c { print $col }' "$results" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# --- memory per key: keys of the length write_key gives (prefix + 24 bytes) ---
cli FLUSHALL >/dev/null
k_ours='rc:{aZ3-k9Qp_x1}Bq7Lm2Nv8Rt'
k_cell='rc:{aZ3-k9Qp_x2}Bq7Lm2Nv8Rt'
cli EVALSHA "$sha" 1 "$k_ours" 0 1 g 2000000000 5 >/dev/null
cli CL.THROTTLE "$k_cell" 4 5 10 1 >/dev/null
mem_ours=$(cli MEMORY USAGE "$k_ours")
mem_cell=$(cli MEMORY USAGE "$k_cell")
enc_ours=$(cli OBJECT ENCODING "$k_ours")
enc_cell=$(cli OBJECT ENCODING "$k_cell")

run_flood

# --- instructions per call, under callgrind ------------------------------------
# (Ir after N2 calls − Ir after N1 calls) / (N2 − N1), one connection: the
# server's work per call, start-up and shutdown cancelled out.
INSTRUCTIONS=${INSTRUCTIONS:-1}
instructions() { # case calls
  local vport vpid="" i try out="$work/cg.$1.$2"
  command_of "$1"
  for try in 1 2 3 4 5; do
    vport=$((20000 + RANDOM % 40000))
    valgrind --tool=callgrind --callgrind-out-file="$out" \
      redis-server --port "$vport" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$work" --logfile "" --daemonize no --loadmodule "$cell" >/dev/null 2>&1 &
    vpid=$!
    for i in $(seq 300); do
      kill -0 "$vpid" 2>/dev/null || break
      [ "$(redis-cli -p "$vport" PING 2>/dev/null)" = PONG ] && break 2
      sleep 0.2
    done
    kill "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    vpid=""
  done
  [ -n "$vpid" ] || die "redis-server under valgrind did not start"
  redis-cli -p "$vport" -x SCRIPT LOAD <"$root/core/src/remote/charge.lua" >/dev/null
  redis-cli -p "$vport" SCRIPT LOAD "return 1" >/dev/null
  redis-cli -p "$vport" SCRIPT LOAD "$naive_src" >/dev/null
  redis-cli -p "$vport" SCRIPT LOAD "$naive2_src" >/dev/null
  if ! timeout 600 redis-benchmark -p "$vport" -c 1 -n "$2" -r "$KEYSPACE" "${CMD[@]}" >/dev/null 2>&1; then
    kill "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    die "redis-benchmark under valgrind failed ($1)"
  fi
  redis-cli -p "$vport" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  wait "$vpid" 2>/dev/null || true
  grep -o '^summary: [0-9]*' "$out" | grep -o '[0-9]*'
}
declare -A IR
if [ "$INSTRUCTIONS" = 1 ] && command -v valgrind >/dev/null; then
  for c in ping empty naive ours1 cell1 naive2 ours2 cellI cellU; do
    a=$(instructions "$c" 500)
    b=$(instructions "$c" 2500)
    [ -n "$a" ] && [ -n "$b" ] || die "no instruction count for $c"
    IR[$c]=$(((b - a) / 2000))
    echo "instructions $c: ${IR[$c]} per call" >&2
  done
  IR[cell2]=$((IR[cellI] + IR[cellU]))
fi

# --- report --------------------------------------------------------------------
row() { # label case
  printf '| %s | %.0f/s | %s / %s ms | %.0f/s | %s / %s ms | %s µs | %s |\n' "$1" \
    "$(median one "$2" 4)" "$(median one "$2" 5)" "$(median one "$2" 6)" \
    "$(median pipe "$2" 4)" "$(median pipe "$2" 5)" "$(median pipe "$2" 6)" "$(median pipe "$2" 7)" \
    "${IR[$2]:-–}"
}
bar() { # label value floor
  local ok=met
  awk -v v="$2" -v f="$3" 'BEGIN { exit !(v + 0 >= f + 0) }' || ok=MISSED
  printf '| %s | %s× | ≥ %s× | %s |\n' "$1" "$2" "$3" "$ok"
}

echo
echo "redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-), $(nproc) cores," \
  "$ROUNDS rounds, medians; one connection: $N1 requests per run;" \
  "50 connections, pipeline 16: $NP requests per run; $KEYSPACE random keys."
echo
echo '| case | 1 connection | median / p99 | 50 connections, pipeline 16 | median / p99 | server time per call | instructions per call |'
echo '| --- | ---: | ---: | ---: | ---: | ---: | ---: |'
row '`PING`' ping
row '`EVALSHA` of `return 1`' empty
row 'floor: a script doing `TIME`, `GET`, `SET PX` only' naive
row 'ratecard, sign-in (1 rule)' ours1
row 'redis-cell `CL.THROTTLE`, sign-in' cell1
row 'floor: `TIME`, 2 `GET`, 2 `SET PX` only' naive2
row 'ratecard, `PATCH /v1/users/{id}` (2 rules, 1 call)' ours2
row 'redis-cell, the same 2 limits (2 calls)' cell2
echo
echo '| bar | ratio | needs | |'
echo '| --- | ---: | ---: | --- |'
bar 'sign-in, 1 connection: ratecard / redis-cell' "$(ratio "$(median one ours1 4)" "$(median one cell1 4)")" 0.95
bar 'sign-in, pipelined: ratecard / redis-cell' "$(ratio "$(median pipe ours1 4)" "$(median pipe cell1 4)")" 0.8
bar '2 rules, 1 connection: ratecard / redis-cell 2 calls' "$(ratio "$(median one ours2 4)" "$(median one cell2 4)")" 1.5
bar '2 rules, pipelined: ratecard / one `CL.THROTTLE`' "$(ratio "$(median pipe ours2 4)" "$(median pipe cell1 4)")" 0.6
bar 'memory per key: redis-cell / ratecard' "$(ratio "$mem_cell" "$mem_ours")" 1
echo
echo "Floors: \`EVALSHA\` of \`return 1\` / \`PING\`: $(ratio "$(median one empty 4)" "$(median one ping 4)")× on one connection," \
  "$(ratio "$(median pipe empty 4)" "$(median pipe ping 4)")× pipelined; ratecard sign-in / empty \`EVALSHA\`:" \
  "$(ratio "$(median one ours1 4)" "$(median one empty 4)")× and $(ratio "$(median pipe ours1 4)" "$(median pipe empty 4)")×;" \
  "ratecard sign-in / the TIME-GET-SET floor: $(ratio "$(median one ours1 4)" "$(median one naive 4)")× and" \
  "$(ratio "$(median pipe ours1 4)" "$(median pipe naive 4)")×; the floor / redis-cell:" \
  "$(ratio "$(median one naive 4)" "$(median one cell1 4)")× and $(ratio "$(median pipe naive 4)" "$(median pipe cell1 4)")×;" \
  "2 rules: ratecard / its floor $(ratio "$(median one ours2 4)" "$(median one naive2 4)")× and" \
  "$(ratio "$(median pipe ours2 4)" "$(median pipe naive2 4)")×; that floor / one CL.THROTTLE" \
  "$(ratio "$(median one naive2 4)" "$(median one cell1 4)")× and $(ratio "$(median pipe naive2 4)" "$(median pipe cell1 4)")×."
echo
echo "Memory per key (\`MEMORY USAGE\`, ${#k_ours}-byte keys): ratecard $mem_ours B ($enc_ours), redis-cell $mem_cell B ($enc_cell)."
cat "$flood"
