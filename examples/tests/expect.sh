#!/usr/bin/env bash
# Runs an example and checks it: the exit status must be 0 and the output must contain a line matching
# EXPECT (an extended regular expression).
#   expect.sh EXPECT PROGRAM [ARGS...]
#   expect.sh --sigterm READY DELAY EXPECT PROGRAM [ARGS...]
# Plain: the output is echoed as it comes, so ctest --output-on-failure shows what the example explained.
# --sigterm, for a daemon-style example that runs until SIGTERM: once the program printed a line matching
# READY (a regular expression), wait DELAY seconds and send it SIGTERM; the output is printed at the end.
set -uo pipefail
ready=
if [ "${1-}" = --sigterm ]; then
  if [ $# -lt 5 ]; then
    echo "usage: $0 [--sigterm READY DELAY] EXPECT PROGRAM [ARGS...]" >&2
    exit 2
  fi
  ready=$2 delay=$3
  shift 3
fi
expect=$1
shift
prog=$1
out=$(mktemp)
pid=
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -f "$out"' EXIT
if [ -z "$ready" ]; then
  "$@" 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
else
  "$@" >"$out" 2>&1 &
  pid=$!
  for ((i = 0; i < 400; i++)); do
    grep -Eq -- "$ready" "$out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! grep -Eq -- "$ready" "$out"; then
    cat "$out"
    echo "expect.sh: $prog never printed a line matching '$ready'" >&2
    exit 1
  fi
  sleep "$delay"
  kill -TERM "$pid"
  wait "$pid"
  status=$?
  pid=
  cat "$out"
fi
if [ "$status" -ne 0 ]; then
  echo "expect.sh: $prog exited with status $status${ready:+ after SIGTERM}" >&2
  exit 1
fi
if ! grep -Eq -- "$expect" "$out"; then
  echo "expect.sh: no line matching '$expect' in the output of $prog" >&2
  exit 1
fi
echo "expect.sh: $(basename "$prog") passed"
