#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds a program against it the two ways a user
# would: CMake's find_package(weft) (shared and static targets) and pkg-config; then as a parent project
# that adds weft's source with add_subdirectory(). Each program must run.
#   check.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(find "$tmp/prefix" -name 'libweft.so' -printf '%h\n' | head -1)
example="$src/examples/context-tree/main.c"

cmake -S "$src/tests/install" -B "$tmp/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DEXAMPLE_SOURCE="$example" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/consumer/consumer" 50 | tail -1
"$tmp/consumer/consumer_static" 50 | tail -1

export PKG_CONFIG_PATH="$libdir/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -o "$tmp/pc" "$example" $(pkg-config --cflags --libs weft)
LD_LIBRARY_PATH="$libdir" "$tmp/pc" 50 | tail -1
# shellcheck disable=SC2046
cc -std=c11 -o "$tmp/pcs" "$example" $(pkg-config --static --cflags weft) "$libdir/libweft.a" \
  $(pkg-config --static --libs-only-l --libs-only-other weft | sed 's/-lweft//')
"$tmp/pcs" 50 | tail -1

# The whole examples/ directory, configured and built standalone against the installed package, as a
# user's project would (find_package(weft) at its top), then its quick self-checking examples run.
cmake -S "$src/examples" -B "$tmp/examples" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/examples" >/dev/null
LD_LIBRARY_PATH="$libdir" ctest --test-dir "$tmp/examples" -R 'example_(restaurant|order_chain|monitor|tracing)' \
  --output-on-failure >/dev/null
echo "examples built and run standalone against the installed package"
# weft as a subproject: only the library builds by default.
cmake -S "$src/tests/subproject" -B "$tmp/parent" -G Ninja -DWEFT_SOURCE="$src" -DEXAMPLE_SOURCE="$example" >/dev/null
cmake --build "$tmp/parent" >/dev/null
"$tmp/parent/parent" 50 | tail -1
echo "a parent project built weft's library alone"
echo "install check passed"
