#!/usr/bin/env bash
# Runs an example and checks it: the exit status must be 0 and the output must contain a line matching
# EXPECT (an extended regular expression).
#   expect.sh EXPECT PROGRAM [ARGS...]
# Output is echoed as it comes, so ctest --output-on-failure shows what the example explained.
set -uo pipefail
expect=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
  echo "expect.sh: $1 exited with status $status" >&2
  exit 1
fi
if ! grep -Eq -- "$expect" "$out"; then
  echo "expect.sh: no line matching '$expect' in the output of $1" >&2
  exit 1
fi
echo "expect.sh: $(basename "$1") passed"
