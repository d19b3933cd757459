# Helpers for weft-run's tests with a real nats-server (sourced; $1 of the test is the weft-run binary).
# Each test starts its own server (JetStream, file storage in a temporary directory, a free port) and
# stops it on exit. Without nats-server the test says so and passes as skipped.
set -u
WR=${1:?usage: $0 path/to/weft-run}
[ -x "$WR" ] && WR=$(cd "$(dirname "$WR")" && pwd)/$(basename "$WR")
NAME=$(basename "$0" .sh)
if ! command -v nats-server >/dev/null 2>&1; then
  echo "SKIPPED: nats-server not installed (apt install nats-server); $NAME check passed"
  exit 0
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/weft-run-nats.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  # jobs left by a worker killed with SIGKILL run in process groups of their own: the test's jobs record
  # their shell's pid in $T/pgids
  if [ -f "$T/pgids" ]; then while read -r g; do kill -KILL -- "-$g" 2>/dev/null; done <"$T/pgids"; fi
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL ($NAME): $*"; for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done; exit 1; }

# start_server: a server on a free port; sets URL (nats://127.0.0.1:PORT)
start_server() {
  for try in 1 2 3 4 5 6 7 8; do
    PORT=$(( 20000 + (RANDOM * 7 + $$ + try * 131) % 40000 ))
    nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$T/store" >"$T/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
      grep -q "Server is ready" "$T/server.log" 2>/dev/null && { URL="nats://127.0.0.1:$PORT"; return 0; }
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=
  done
  fail "could not start nats-server"
}

# wait_for COND_DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.1 s (generous limits, no timing checks)
wait_for() {
  local what=$1 secs=$2; shift 2
  local n=$(( secs * 10 ))
  while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$(( n - 1 )); done
  fail "timed out waiting for: $what"
}
count() { grep -c -- "$1" "$2" 2>/dev/null || true; }
# has N PATTERN FILE: FILE has N lines matching PATTERN (for wait_for: evaluated at every poll)
has() { [ "$(count "$2" "$3")" = "$1" ]; }
nlines() { [ -f "$2" ] && [ "$(wc -l <"$2")" = "$1" ]; }
