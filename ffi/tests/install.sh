#!/usr/bin/env bash
# The installed C library, used the way a C user would: scripts/install.sh
# into a temporary prefix, then ffi/examples/hello.c built with nothing but
# pkg-config's flags (shared, and static with pkg-config --static; also the
# archive named by path in a dynamic program), run, and
# the installed files inspected (SONAME, exports, symlinks, .pc file).
# A staged install (--destdir, --libdir, --strip) is checked the same way,
# the nginx module is built against the prefix when nginx-dev is there, and
# the Go binding once go/capi.go links by search path (-l:libratecard.a).
#
#   bash ffi/tests/install.sh
#   RATECARD_INSTALL_NGINX=0 bash ffi/tests/install.sh   # skip the nginx build
#
# Needs: cargo, gcc, pkg-config, binutils (readelf, nm), glibc's static
# libraries (libc6-dev) for the static link. Prints "N passed, M failed".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cc=${CC:-gcc}
hello=$root/ffi/examples/hello.c
cflags=(-std=c99 -Wall -Wextra -Werror -pedantic -O1)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ratecard-install-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1" >&2; shift; [ $# -eq 0 ] || printf '     %s\n' "$@" >&2; }

# ---------------------------------------------------------------------------
# Install into a temporary prefix.
prefix=$tmp/prefix
start=$(date +%s%N)
bash "$root/scripts/install.sh" --prefix "$prefix" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log" >&2; echo "0 passed, 1 failed"; exit 1; }
end=$(date +%s%N)
cat "$tmp/install.log"
ms=$(((end - start) / 1000000))
printf 'install.sh took %d.%03d s\n' $((ms / 1000)) $((ms % 1000))

lib=$prefix/lib
version=$(PKG_CONFIG_PATH=$lib/pkgconfig pkg-config --modversion ratecard)
so_file=libratecard.so.$version

layout_ok=1
for f in include/ratecard.h lib/libratecard.a "lib/$so_file" lib/pkgconfig/ratecard.pc; do
  [ -f "$prefix/$f" ] && [ ! -L "$prefix/$f" ] || { layout_ok=0; fail "installs $f" "missing or a symlink"; }
done
[ "$layout_ok" = 0 ] || pass "installs the header, libratecard.a, $so_file and ratecard.pc"

if [ "$(readlink "$lib/libratecard.so.0")" = "$so_file" ] \
    && [ "$(readlink "$lib/libratecard.so")" = libratecard.so.0 ]; then
  pass "libratecard.so -> libratecard.so.0 -> $so_file"
else
  fail "symlinks" "$(ls -l "$lib")"
fi

if cmp -s "$root/include/ratecard.h" "$prefix/include/ratecard.h"; then
  pass "installed header is include/ratecard.h"
else
  fail "installed header is include/ratecard.h"
fi

# The version in the file name (from Cargo.toml via cargo) is the library's own.
cargo_version=$(cd "$root" && cargo pkgid -p ratecard-ffi)
cargo_version=${cargo_version##*[@#]}
if [ "$version" = "$cargo_version" ]; then
  pass "ratecard.pc Version and the file name are Cargo.toml's $cargo_version"
else
  fail "ratecard.pc Version" "pc: $version, Cargo.toml: $cargo_version"
fi

soname=$(readelf -d "$lib/$so_file" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
if [ "$soname" = libratecard.so.0 ]; then
  pass "SONAME is libratecard.so.0"
else
  fail "SONAME is libratecard.so.0" "readelf -d: '$soname'"
fi

exports=$(nm -D --defined-only "$lib/$so_file" | awk '{ print $NF }' | sed 's/@.*//')
others=$(printf '%s\n' "$exports" | grep -v '^ratecard_' || true)
count=$(printf '%s\n' "$exports" | grep -c '^ratecard_' || true)
if [ -z "$others" ] && [ "$count" -gt 0 ] && printf '%s\n' "$exports" | grep -qx ratecard_check; then
  pass "the shared library exports $count ratecard_* symbols and nothing else"
else
  fail "exports ratecard_* only" "ratecard_*: $count; others:" $others
fi

# ---------------------------------------------------------------------------
# pkg-config, as a build system would call it.
export PKG_CONFIG_PATH=$lib/pkgconfig
if pkg-config --validate ratecard; then
  pass "pkg-config --validate ratecard"
else
  fail "pkg-config --validate ratecard"
fi
# pkgconf ends its output with a space.
pc_cflags=$(pkg-config --cflags ratecard | sed 's/ *$//')
pc_libs=$(pkg-config --libs ratecard | sed 's/ *$//')
pc_static=$(pkg-config --static --libs ratecard | sed 's/ *$//')
if [ "$pc_cflags" = "-I$prefix/include" ] && [ "$pc_libs" = "-L$lib -lratecard" ] \
    && [[ $pc_static == "-L$lib -lratecard "* ]]; then
  pass "pkg-config names the prefix: $pc_libs; --static: $pc_static"
else
  fail "pkg-config flags" "--cflags: $pc_cflags" "--libs: $pc_libs" "--static --libs: $pc_static"
fi

# Runs a hello binary; it exits 0 only on 5 allowed then 1 denied, Retry-After 2.
run_hello() { # name, binary, [env...]
  local name=$1 exe=$2 out
  shift 2
  local want="5 allowed, 1 denied, then 429 Retry-After: 2 (fapi.sign_ins.create)"
  if out=$(env "$@" "$exe" 2>&1) && [[ $out == *"$want"* ]]; then
    pass "$name: $out"
  else
    fail "$name runs" "$out"
  fi
}

# Shared: cc hello.c $(pkg-config --cflags --libs ratecard).
# shellcheck disable=SC2046
if $cc "${cflags[@]}" "$hello" $(pkg-config --cflags --libs ratecard) -o "$tmp/hello_shared" \
    2>"$tmp/cc.log"; then
  pass "hello.c builds with pkg-config --cflags --libs ratecard"
  if readelf -d "$tmp/hello_shared" | grep -q 'NEEDED.*\[libratecard\.so\.0\]'; then
    pass "the shared build needs libratecard.so.0"
  else
    fail "the shared build needs libratecard.so.0" "$(readelf -d "$tmp/hello_shared" | grep NEEDED)"
  fi
  run_hello "shared" "$tmp/hello_shared" LD_LIBRARY_PATH="$lib"
else
  fail "hello.c builds with pkg-config (shared)" "$(cat "$tmp/cc.log")"
fi

# Static: cc -static hello.c $(pkg-config --static --cflags --libs ratecard).
# glibc warns that getaddrinfo and getpwuid_r (in std, never called here)
# need its shared libraries at run time in a static program: not an error.
# shellcheck disable=SC2046
if $cc -static "${cflags[@]}" "$hello" $(pkg-config --static --cflags --libs ratecard) \
    -o "$tmp/hello_static" 2>"$tmp/cc.log"; then
  pass "hello.c builds with cc -static and pkg-config --static"
  if LC_ALL=C readelf -d "$tmp/hello_static" 2>&1 | grep -q 'no dynamic section'; then
    pass "the static build loads no shared library"
  else
    fail "the static build loads no shared library" "$(readelf -d "$tmp/hello_static" | grep NEEDED)"
  fi
  run_hello "static" "$tmp/hello_static"
else
  fail "hello.c builds with pkg-config --static" "$(cat "$tmp/cc.log")"
fi

# The archive in a dynamic program (the README's line): named by path, since
# -lratecard would pick libratecard.so beside it.
# shellcheck disable=SC2046
if $cc "${cflags[@]}" "$hello" $(pkg-config --cflags ratecard) \
    "$(pkg-config --variable=libdir ratecard)/libratecard.a" -lpthread -ldl -lm \
    -o "$tmp/hello_archive" 2>"$tmp/cc.log"; then
  if readelf -d "$tmp/hello_archive" | grep -q 'NEEDED.*libratecard'; then
    fail "the archive build needs no libratecard.so" "$(readelf -d "$tmp/hello_archive" | grep NEEDED)"
  else
    pass "hello.c links libratecard.a into a dynamic program"
  fi
  run_hello "archive" "$tmp/hello_archive"
else
  fail "hello.c builds with the installed libratecard.a" "$(cat "$tmp/cc.log")"
fi

# ---------------------------------------------------------------------------
# A packager's install: staged under DESTDIR, another libdir, stripped.
stage=$tmp/stage
bash "$root/scripts/install.sh" --prefix /opt/ratecard --libdir /opt/ratecard/lib64 \
  --destdir "$stage" --strip >"$tmp/stage.log" 2>&1 || { cat "$tmp/stage.log" >&2; fail "staged install"; }
slib=$stage/opt/ratecard/lib64
if [ -f "$slib/$so_file" ] && [ -f "$stage/opt/ratecard/include/ratecard.h" ] \
    && [ ! -e "$stage/opt/ratecard/lib" ]; then
  pass "--destdir stages under DESTDIR/PREFIX, --libdir is honoured"
else
  fail "--destdir/--libdir layout" "$(cd "$stage" && find . | sort)"
fi
if grep -qx 'prefix=/opt/ratecard' "$slib/pkgconfig/ratecard.pc" \
    && grep -qx 'libdir=${prefix}/lib64' "$slib/pkgconfig/ratecard.pc"; then
  pass "the staged ratecard.pc names the final prefix, not DESTDIR"
else
  fail "staged ratecard.pc" "$(cat "$slib/pkgconfig/ratecard.pc")"
fi
debug_sections() { readelf -S "$1" | grep -c '\.debug_info' || true; }
if [ "$(debug_sections "$lib/$so_file")" -gt 0 ] && [ "$(debug_sections "$slib/$so_file")" = 0 ]; then
  pass "--strip drops debug information ($(wc -c <"$lib/$so_file") -> $(wc -c <"$slib/$so_file") bytes)"
else
  fail "--strip drops debug information"
fi
# shellcheck disable=SC2046
if $cc "${cflags[@]}" "$hello" $(PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_PATH=$slib/pkgconfig \
    pkg-config --cflags --libs ratecard) -o "$tmp/hello_stripped" 2>"$tmp/cc.log"; then
  run_hello "stripped, staged" "$tmp/hello_stripped" LD_LIBRARY_PATH="$slib"
else
  fail "hello.c builds against the staged prefix" "$(cat "$tmp/cc.log")"
fi

# ---------------------------------------------------------------------------
# The nginx module against the installed prefix (its config reads
# RATECARD_LIB and RATECARD_INCLUDE); build.sh loads it into nginx -t.
if [ "${RATECARD_INSTALL_NGINX:-1}" != 0 ] && [ -x /usr/share/nginx/src/configure ]; then
  if RATECARD_LIB=$(pkg-config --variable=libdir ratecard)/libratecard.a \
      RATECARD_INCLUDE=$(pkg-config --variable=includedir ratecard) \
      bash "$root/integrations/nginx/build.sh" >"$tmp/nginx.log" 2>&1; then
    pass "the nginx module builds against the prefix and loads (nginx -t)"
  else
    fail "nginx module against the prefix" "$(tail -n 20 "$tmp/nginx.log")"
  fi
else
  echo "skip nginx module against the prefix (RATECARD_INSTALL_NGINX=0 or no nginx-dev)"
fi

# ---------------------------------------------------------------------------
# The Go binding against the prefix: cgo puts CGO_CFLAGS/CGO_LDFLAGS before
# the package's own flags, so -I and -L from pkg-config win over the in-tree
# paths once go/capi.go links by search path (-l:libratecard.a). A copy of
# go/ with no include/ or target/ beside it proves the prefix is what is used.
if ! command -v go >/dev/null; then
  echo "skip Go binding against the prefix (no go)"
elif ! grep -q '^#cgo LDFLAGS:.*-l:libratecard\.a' "$root/go/capi.go"; then
  echo "skip Go binding against the prefix (go/capi.go links a fixed path, not -l:libratecard.a)"
else
  mkdir "$tmp/gocopy"
  cp -a "$root/go" "$tmp/gocopy/go"
  if (cd "$tmp/gocopy/go" && GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1 \
      CGO_CFLAGS="-g -O2 $(pkg-config --cflags ratecard)" \
      CGO_LDFLAGS="$(pkg-config --libs-only-L ratecard)" \
      go test -count=1 -run '^Example' .) >"$tmp/go.log" 2>&1; then
    pass "the Go binding builds and runs its examples against the prefix"
  else
    fail "Go binding against the prefix" "$(tail -n 20 "$tmp/go.log")"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
