#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks for the tests: Go (and x/time for
# the Go comparison benchmarks, redigo and its cluster client, client_golang
# and go-cmp, which its module graph names),
# nginx and its module kit, Redis and hiredis, Prometheus (promtool),
# valgrind, wrk, curl, pkgconf (Debian packages) and cargo-fuzz (crates).
# Safe to run again: installs only what is missing.
set -euo pipefail

pkgs=(golang-go golang-golang-x-time-dev nginx nginx-dev valgrind wrk curl pkgconf
  redis-server redis-tools libhiredis-dev
  golang-github-gomodule-redigo-dev golang-github-mna-redisc-dev
  prometheus golang-github-prometheus-client-golang-dev golang-github-google-go-cmp-dev)
missing=()
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
