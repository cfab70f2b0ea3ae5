#!/bin/sh
# The C test suite of libratecard: builds the release static library, links
# test_ratecard.c against it with the documented link line, runs it under
# valgrind (leaks and memory errors fail the run), then links the same test
# against the shared library through its SONAME and runs it once more.
#
#   sh ffi/tests/c/run.sh            # from anywhere in the repository
#   RATECARD_VALGRIND=0 sh ffi/tests/c/run.sh   # skip valgrind (faster)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cc=${CC:-gcc}

cd "$root"
cargo build -p ratecard-ffi --release

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT INT TERM

cflags="-std=c99 -Wall -Wextra -Werror -pedantic -g -O1 -I$root/include"

# Static: the documented link line.
# shellcheck disable=SC2086
$cc $cflags "$here/test_ratecard.c" "$target/release/libratecard.a" -lpthread -ldl -lm \
  -o "$out/test_static"

# Shared: link by name, load through the SONAME (libratecard.so.0).
cp "$target/release/libratecard.so" "$out/libratecard.so.0"
ln -s libratecard.so.0 "$out/libratecard.so"
# shellcheck disable=SC2086
$cc $cflags "$here/test_ratecard.c" -L"$out" -lratecard -lpthread -o "$out/test_shared"

if [ "${RATECARD_VALGRIND:-1}" = 0 ]; then
  echo "== static (no valgrind)"
  "$out/test_static"
else
  echo "== static, under valgrind"
  valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible \
    "$out/test_static"
fi
echo "== shared (libratecard.so.0)"
LD_LIBRARY_PATH="$out" "$out/test_shared"
