#!/usr/bin/env bash
# Builds ngx_http_ratecard_module.so for Debian's nginx into target/nginx/.
#
# The way Debian builds its own module packages (dh's nginx_mod build system):
# nginx-dev's source tree, configured with Debian's conf_flags (--with-compat
# among them, so the module's signature matches /usr/sbin/nginx) and
# dpkg-buildflags, then `make modules`. The tree is copied to a temporary
# directory, since configure writes into it.
#
# Needs: nginx nginx-dev (Debian), cargo. Env: RATECARD_LIB (a prebuilt
# libratecard.a: no cargo run) and RATECARD_INCLUDE (its ratecard.h directory),
# RATECARD_NGINX_SRC (default /usr/share/nginx/src), NGINX (the binary to
# check against, /usr/sbin/nginx).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
src=${RATECARD_NGINX_SRC:-/usr/share/nginx/src}
nginx=${NGINX:-/usr/sbin/nginx}
lib=$root/target/release/libratecard.a
out=$root/target/nginx

if [ ! -f "$src/conf_flags" ] || [ ! -x "$src/configure" ]; then
  echo "build.sh: $src has no configure/conf_flags: apt-get install nginx nginx-dev" >&2
  exit 1
fi

# The static library: RATECARD_LIB (and RATECARD_INCLUDE) name a prebuilt one;
# else this repository's, built when missing or older than its sources.
if [ -n "${RATECARD_LIB:-}" ]; then
  lib=$RATECARD_LIB
  [ -f "$lib" ] || { echo "build.sh: RATECARD_LIB=$lib not found" >&2; exit 1; }
elif [ ! -f "$lib" ] || [ -n "$(find "$root/core/src" "$root/ffi/src" "$root/core/Cargo.toml" \
    "$root/ffi/Cargo.toml" -newer "$lib" -print -quit 2>/dev/null)" ]; then
  (cd "$root" && cargo build -p ratecard-ffi --release)
fi
export RATECARD_LIB=$lib   # read by ./config

build=$(mktemp -d "${TMPDIR:-/tmp}/ratecard-nginx-build.XXXXXX")
trap 'rm -rf "$build"' EXIT

# The module is current when newer than everything it is built from.
so=$out/ngx_http_ratecard_module.so
if [ -f "$so" ] && [ -z "$(find "$here" "$lib" "${RATECARD_INCLUDE:-$root/include}/ratecard.h" \
    "$nginx" -maxdepth 1 \( -name '*.[ch]' -o -name config -o -name '*.a' -o -name '*.h' \
    -o -name nginx \) -newer "$so" -print -quit)" ]; then
  printf 'load_module %s;\nevents {}\n' "$so" >"$build/check.conf"
  "$nginx" -t -q -c "$build/check.conf" -g "error_log stderr; pid $build/check.pid;"
  echo "build.sh: $so is current" >&2
  exit 0
fi

cp -a "$src/." "$build/nginx"
cd "$build/nginx"

# shellcheck disable=SC1091
. ./conf_flags   # sets NGX_CONF_FLAGS, the flags /usr/sbin/nginx was built with

cflags="$(dpkg-buildflags --get CFLAGS) -fPIC $(dpkg-buildflags --get CPPFLAGS)"
ldflags="$(dpkg-buildflags --get LDFLAGS) -fPIC"

echo "build.sh: configuring nginx $("$nginx" -v 2>&1 | sed 's/.*\///') with the module" >&2
if ! ./configure --with-cc-opt="$cflags" --with-ld-opt="$ldflags" \
    "${NGX_CONF_FLAGS[@]}" --add-dynamic-module="$here" >configure.log 2>&1; then
  tail -n 30 configure.log >&2
  exit 1
fi

make -f objs/Makefile -j"$(nproc)" modules >make.log 2>&1 || { tail -n 40 make.log >&2; exit 1; }

mkdir -p "$out"
cp objs/ngx_http_ratecard_module.so "$out/"

# Debian's own module check: the module loads into the packaged binary (it
# refuses a module whose version or signature differs).
conf=$build/check.conf
printf 'load_module %s;\nevents {}\n' "$out/ngx_http_ratecard_module.so" >"$conf"
"$nginx" -t -q -c "$conf" -g "error_log stderr; pid $build/check.pid;"

echo "build.sh: $out/ngx_http_ratecard_module.so" >&2
