#!/usr/bin/env bash
# Drives thinking-server through one scenario and checks its log.
#   test.sh SERVER MODE
# MODE:
#   cancel    the client sends GET /think, closes after 1.5 steps; the handler must stop at once
#             ("context canceled", cause "client disconnected"), long before its remaining steps would end
#   ignore    the same with --ignore-context: the handler keeps thinking for nobody (the problem)
#   shutdown  SIGTERM while a request is in flight: the request finishes inside the grace period, the client
#             gets its 200, the server exits 0
#   grace     the same with a 100 ms grace: the server cancels its context, the handler stops, the client
#             gets a 503, the server exits 0
# Only 127.0.0.1 is used. Timing checks are wide windows; the rest is causality read from the log.
set -uo pipefail
server=$1 mode=$2
step=0.25 # --fast: steps of 250 ms, 6 of them
log=$(mktemp) resp=$(mktemp)
pid=
cleanup() {
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$log" "$resp"
}
trap cleanup EXIT
fail() {
  echo "---- server log"
  cat "$log"
  echo "FAIL ($mode): $*"
  exit 1
}
# wait_for REGEX [SECONDS]: until the log has a line matching REGEX
wait_for() {
  local limit=$((${2:-10} * 20))
  for ((i = 0; i < limit; i++)); do
    grep -Eq -- "$1" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  grep -Eq -- "$1" "$log" || fail "no line matching '$1'"
}
# float comparison: lt A B
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

args=(--fast)
case "$mode" in
  ignore) args+=(--ignore-context) ;;
  grace) args+=(--grace-ms 100) ;;
  cancel | shutdown) ;;
  *) echo "usage: $0 SERVER cancel|ignore|shutdown|grace" >&2; exit 2 ;;
esac
"$server" "${args[@]}" >"$log" 2>&1 &
pid=$!
wait_for 'listening on http://127\.0\.0\.1:[0-9]+'
port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$log" | head -1)

# The client: bash's /dev/tcp, one request, then hang up (or wait for the answer).
exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect to 127.0.0.1:$port"
printf 'GET /think HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >&3
wait_for '\[r-1\] thinking-server: GET /think'

case "$mode" in
  cancel | ignore)
    sleep "$(awk -v s=$step 'BEGIN { print 1.5 * s }')"
    exec 3>&- # the client gives up and closes the connection
    wait_for 'r-1: handler (stopped|kept thinking)'
    kill -TERM "$pid"
    wait "$pid"
    status=$?
    pid=
    [ "$status" -eq 0 ] || fail "server exited with status $status"
    grep -q 'client went away during r-1' "$log" || fail "the server did not notice the client leaving"
    after=$(sed -n 's/.*r-1: handler \(stopped\|kept thinking\) \([0-9.]*\)s after the client left.*/\2/p' "$log")
    if [ "$mode" = cancel ]; then
      grep -Eq '\[r-1\] stopped thinking during step [1-5]/6: context canceled \(cause: client disconnected\)' "$log" ||
        fail "the handler did not stop with 'context canceled' before its last step"
      grep -q 'finished thinking' "$log" && fail "the handler finished thinking for a client that left"
      # The remaining steps would take ~1.1 s; a context-aware sleep returns within milliseconds.
      lt "$after" 0.6 || fail "the handler stopped ${after}s after the client left (window: 0.6 s)"
      echo "PASS: the handler stopped ${after}s after the client left (context canceled)"
    else
      grep -Eq '\[r-1\] still thinking: step [3-6]/6 done, though the request context says .context canceled' "$log" ||
        fail "the handler ignoring its context should keep thinking after the client left"
      grep -q '\[r-1\] finished thinking' "$log" || fail "the handler ignoring its context should finish"
      grep -q '\[r-1\] stopped thinking' "$log" && fail "the handler ignoring its context should not stop"
      # It had about 4.5 steps (1.1 s) left when the client closed.
      lt 0.5 "$after" || fail "the handler ignoring its context kept thinking only ${after}s"
      echo "PASS: ignoring its context, the handler kept thinking ${after}s for a client that had left"
    fi
    ;;
  shutdown | grace)
    sleep "$step" # one step into the request
    kill -TERM "$pid"
    timeout 10 cat <&3 >"$resp"
    exec 3>&-
    wait "$pid"
    status=$?
    pid=
    [ "$status" -eq 0 ] || fail "server exited with status $status"
    grep -q 'shutdown: SIGTERM received' "$log" || fail "no SIGTERM shutdown in the log"
    if [ "$mode" = shutdown ]; then
      grep -q '^HTTP/1.1 200 OK' "$resp" || fail "the in-flight request did not get its 200: $(cat "$resp")"
      grep -q 'thought for 6 steps' "$resp" || fail "the in-flight request did not finish thinking"
      grep -q 'every in-flight request finished within the grace period' "$log" || fail "no graceful drain"
      echo "PASS: SIGTERM waited for the in-flight request, which answered 200 and the server exited 0"
    else
      grep -q '^HTTP/1.1 503' "$resp" || fail "the request stopped by shutdown should get a 503: $(cat "$resp")"
      grep -q 'grace period over' "$log" || fail "no grace expiry in the log"
      grep -Eq '\[r-1\] stopped thinking during step [1-6]/6: context canceled \(cause: server shutting down\)' \
        "$log" || fail "the handler did not stop when the server context was cancelled"
      echo "PASS: after the grace period the server cancelled its context, the handler stopped, 503, exit 0"
    fi
    ;;
esac
echo "---- server log"
cat "$log"
