#!/usr/bin/env bash
# Installs what a fresh machine lacks for the tests: Debian packages and
# cargo-fuzz. Safe to run twice.
set -euo pipefail

need_apt=()
for pkg in valgrind; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
