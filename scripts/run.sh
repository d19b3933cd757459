#!/usr/bin/env bash
# The main job: installs what weft needs, builds it, and runs the flagship program, weft-digest: the size,
# line count and XXH3-64 checksum of every file under /usr/share (or the directory given), computed by a
# weft pipeline (walk -> read -> hash -> count), sorted by path, then a summary. Ctrl-C once drains,
# twice cancels. Options are passed on: scripts/run.sh -j 4 -q /usr/lib
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
[ $# -eq 0 ] && set -- /usr/share
exec build/pipelines/weft-digest/weft-digest "$@"
