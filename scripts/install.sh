#!/usr/bin/env bash
# Builds the C library (crate ratecard-ffi, release) and installs it under a
# prefix, the layout cargo-c's `cargo cinstall` gives a Rust C-ABI library:
#
#   PREFIX/include/ratecard.h
#   PREFIX/lib/libratecard.a
#   PREFIX/lib/libratecard.so.X.Y.Z          (SONAME libratecard.so.0)
#   PREFIX/lib/libratecard.so.0 -> libratecard.so.X.Y.Z
#   PREFIX/lib/libratecard.so   -> libratecard.so.0
#   PREFIX/lib/pkgconfig/ratecard.pc
#
# Usage: scripts/install.sh [--prefix DIR] [--libdir DIR] [--destdir DIR] [--strip]
#   --prefix   where the library will live (absolute; default /usr/local)
#   --libdir   default PREFIX/lib (e.g. PREFIX/lib/x86_64-linux-gnu)
#   --destdir  stage the files under DIR (packaging): DIR/PREFIX/...; the
#              .pc file still names PREFIX. DESTDIR in the environment too.
#   --strip    drop debug information (release builds keep it: debug = 1)
# Env: CARGO_TARGET_DIR (as cargo), STRIP (default strip).
#
# Then: export PKG_CONFIG_PATH=PREFIX/lib/pkgconfig (unless PREFIX is a
# system one) and cc app.c $(pkg-config --cflags --libs ratecard).
set -euo pipefail

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
die() { echo "install.sh: $*" >&2; exit 1; }

prefix=/usr/local
libdir=
destdir=${DESTDIR:-}
strip=0
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --libdir) [ $# -ge 2 ] || die "--libdir needs a directory"; libdir=$2; shift 2 ;;
    --libdir=*) libdir=${1#*=}; shift ;;
    --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; destdir=$2; shift 2 ;;
    --destdir=*) destdir=${1#*=}; shift ;;
    --strip) strip=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# pkg-config files cannot quote, and a relative prefix means nothing once installed.
for dir in "$prefix" ${libdir:+"$libdir"}; do
  case $dir in
    /*) ;;
    *) die "not an absolute path: $dir" ;;
  esac
  case $dir in
    *[[:space:]]*) die "a path with white space cannot go into ratecard.pc: $dir" ;;
  esac
done
prefix=${prefix%/}
libdir=${libdir:-$prefix/lib}
libdir=${libdir%/}
includedir=$prefix/include

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac

cd "$root"
version=$(cargo pkgid -p ratecard-ffi)
version=${version##*[@#]}
case $version in
  [0-9]*.[0-9]*.[0-9]*) ;;
  *) die "cannot read ratecard-ffi's version from cargo pkgid: $version" ;;
esac

# One release build of libratecard.a and libratecard.so; rustc also names the
# system libraries the static library needs (replayed by cargo when fresh).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo rustc -p ratecard-ffi --release -- --print native-static-libs 2>"$log"; then
  cat "$log" >&2
  die "cargo build of ratecard-ffi failed"
fi
native=$(sed -n 's/.*note: native-static-libs: //p' "$log" | tail -n 1)
[ -n "$native" ] || { cat "$log" >&2; die "rustc printed no native-static-libs"; }
# -lc is implicit; -lgcc_s exists only as a shared library (cc -static would
# fail on it) and every C driver links libgcc's unwinder by itself.
private=
for lib in $native; do
  case $lib in
    -lc|-lgcc_s) ;;
    *) private="$private $lib" ;;
  esac
done
private=${private# }

so_built=$target/release/libratecard.so
a_built=$target/release/libratecard.a
[ -f "$so_built" ] && [ -f "$a_built" ] || die "no $so_built or $a_built after the build"
soname=$(readelf -d "$so_built" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ -n "$soname" ] || die "$so_built has no SONAME (ffi/build.rs sets it)"
so_file=libratecard.so.$version

lib_dest=$destdir$libdir
inc_dest=$destdir$includedir
pc_dest=$lib_dest/pkgconfig
install -d "$lib_dest" "$inc_dest" "$pc_dest"
install -m 644 "$root/include/ratecard.h" "$inc_dest/ratecard.h"
install -m 644 "$a_built" "$lib_dest/libratecard.a"
install -m 755 "$so_built" "$lib_dest/$so_file"
if [ "$strip" = 1 ]; then
  "${STRIP:-strip}" --strip-debug "$lib_dest/libratecard.a" "$lib_dest/$so_file"
fi
if [ "$soname" != "$so_file" ]; then
  ln -sfn "$so_file" "$lib_dest/$soname"
fi
ln -sfn "$soname" "$lib_dest/libratecard.so"

# Relative to ${prefix} where possible, so pkg-config --define-prefix can relocate it.
pc_libdir=$libdir
case $libdir in
  "$prefix"/*) pc_libdir="\${prefix}${libdir#"$prefix"}" ;;
esac
cat >"$pc_dest/ratecard.pc" <<EOF
prefix=$prefix
libdir=$pc_libdir
includedir=\${prefix}/include

Name: ratecard
Description: Embeddable rate-limit engine with Clerk's rate-limit table (C ABI)
Version: $version
Libs: -L\${libdir} -lratecard
Libs.private: $private
Cflags: -I\${includedir}
EOF
chmod 644 "$pc_dest/ratecard.pc"

for f in "$inc_dest/ratecard.h" "$lib_dest/libratecard.a" "$lib_dest/$so_file" \
    "$lib_dest/$soname" "$lib_dest/libratecard.so" "$pc_dest/ratecard.pc"; do
  if [ -L "$f" ]; then
    echo "installed $f -> $(readlink "$f")"
  else
    echo "installed $f ($(wc -c <"$f") bytes)"
  fi
done
if [ -z "$destdir" ]; then
  echo "install.sh: PKG_CONFIG_PATH=$libdir/pkgconfig for pkg-config;" \
    "ldconfig (or LD_LIBRARY_PATH=$libdir) for the loader"
fi
