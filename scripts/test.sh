#!/usr/bin/env bash
# Builds weft from scratch and runs the whole test suite.
#   scripts/test.sh          plain build (build/)
#   scripts/test.sh asan     AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
#   scripts/test.sh tsan     ThreadSanitizer (build-tsan/)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-plain}
bash scripts/deps.sh
case "$mode" in
  plain) dir=build; opts=() ;;
  asan) dir=build-asan; opts=(-DWEFT_ASAN=ON -DWEFT_BUILD_BENCH=OFF) ;;
  tsan) dir=build-tsan; opts=(-DWEFT_TSAN=ON -DWEFT_BUILD_BENCH=OFF) ;;
  *) echo "usage: $0 [plain|asan|tsan]" >&2; exit 2 ;;
esac
rm -rf "$dir"
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${opts[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
echo "== weft tests ($mode)"
ctest --test-dir "$dir" --output-on-failure -j1
