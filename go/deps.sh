#!/usr/bin/env bash
# Makes modules of the two Debian Go packages that ship without a go.mod
# (redisc; protobuf extensions, which Prometheus' expfmt imports), so the
# modules go/redis and go/prometheus can name them in `replace` directives.
# Each lands in go/.deps/<name> (ignored by git): the package's own files
# (tests left out) and a one-line go.mod. The other dependencies are
# replaced by their /usr/share/gocode directories as they are.
# Needs golang-github-mna-redisc-dev and
# golang-github-matttproud-golang-protobuf-extensions-dev (pulled in by
# golang-github-prometheus-client-golang-dev).
set -euo pipefail
cd "$(dirname "$0")"
gocode=/usr/share/gocode/src

module() { # <module path> <directory name under .deps>
  local src=$gocode/$1 dst=.deps/$2
  if [ ! -d "$src" ]; then
    echo "go/deps.sh: $src is missing (install the Debian package that ships $1)" >&2
    exit 1
  fi
  rm -rf "$dst"
  mkdir -p "$dst"
  (cd "$src" && find . -name '*.go' ! -name '*_test.go' ! -path '*/testdata/*' -print0) |
    while IFS= read -r -d '' f; do
      mkdir -p "$dst/$(dirname "$f")"
      cp "$src/$f" "$dst/$f"
    done
  printf 'module %s\n\ngo 1.14\n' "$1" >"$dst/go.mod"
}

module github.com/mna/redisc redisc
module github.com/matttproud/golang_protobuf_extensions protobuf-extensions
