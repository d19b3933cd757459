#!/usr/bin/env bash
# Runs a daemon-style example, sends it SIGTERM once it is running, and checks it: the exit status must be 0
# and the output must contain a line matching EXPECT (an extended regular expression).
#   sigterm.sh EXPECT READY DELAY PROGRAM [ARGS...]
# READY: a regular expression for the line that says the program is running; DELAY: seconds to wait after
# it before the SIGTERM. The output is printed at the end.
set -uo pipefail
expect=$1 ready=$2 delay=$3
shift 3
out=$(mktemp)
"$@" >"$out" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null; rm -f "$out"' EXIT
for ((i = 0; i < 400; i++)); do
  grep -Eq -- "$ready" "$out" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
if ! grep -Eq -- "$ready" "$out"; then
  cat "$out"
  echo "sigterm.sh: $1 never printed a line matching '$ready'" >&2
  exit 1
fi
sleep "$delay"
kill -TERM "$pid"
wait "$pid"
status=$?
cat "$out"
if [ "$status" -ne 0 ]; then
  echo "sigterm.sh: $1 exited with status $status after SIGTERM" >&2
  exit 1
fi
if ! grep -Eq -- "$expect" "$out"; then
  echo "sigterm.sh: no line matching '$expect' in the output of $1" >&2
  exit 1
fi
echo "sigterm.sh: $(basename "$1") passed"
