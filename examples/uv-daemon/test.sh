#!/usr/bin/env bash
# Drives uv-daemon with a client (bash's /dev/tcp, 127.0.0.1 only) and checks its answers and its report.
#   test.sh DAEMON
# The client:
#   1. three short requests (work 50), each answered "ok";
#   2. two long requests (work 5000) whose clients hang up once the work started: the work must stop
#      mid-run (logged "canceled while running", a few ms after the client left, far from its 5 s);
#   3. one request with its own 100 ms deadline (work 5000 deadline 100): answered "deadline";
#   4. two requests that fit in the grace period (work 300) and two that do not (work 20000), then SIGTERM:
#      a new connection is refused, the short ones are answered "ok", the long ones are cancelled when the
#      grace period (2 s) runs out and answered "canceled", and the daemon exits 0 with a report where
#      every request is accounted for: 10 = 5 answered + 1 deadline + 2 client left + 2 by shutdown.
# Checks are on causality and counts, with wide time windows only (a loaded machine is slow, not wrong).
set -uo pipefail
daemon=$1
log=$(mktemp)
pid=
cleanup() {
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$log"
}
trap cleanup EXIT
fail() {
  echo "---- daemon log"
  cat "$log"
  echo "FAIL: $*"
  exit 1
}
wait_for() { # wait_for REGEX [SECONDS]
  local limit=$((${2:-20} * 20)) i
  for ((i = 0; i < limit; i++)); do
    grep -Eq -- "$1" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  grep -Eq -- "$1" "$log" || fail "no line matching '$1'"
}
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

"$daemon" --workers 4 --grace-ms 2000 >"$log" 2>&1 &
pid=$!
wait_for 'listening on 127\.0\.0\.1:[0-9]+'
port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -1)

# 1. short requests, answered
for i in 1 2 3; do
  exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect"
  printf 'work 50\n' >&3
  read -r -t 20 ans <&3 || fail "no answer to a short request"
  [[ "$ans" == "ok r-$i "* ]] || fail "short request $i answered '$ans'"
  exec 3>&-
done

# 2. clients that leave while their work runs
for i in 4 5; do
  exec 4<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect"
  printf 'work 5000\n' >&4
  wait_for "\[r-$i\] work started"
  exec 4>&- # hang up
  wait_for "\[r-$i\] client left: work stopped"
  line=$(grep "\[r-$i\] client left: work stopped" "$log")
  [[ "$line" == *"(canceled while running)"* ]] || fail "r-$i: $line"
  after=$(sed -n "s/.*\[r-$i\] client left: work stopped \([0-9.]*\) ms after it.*/\1/p" "$log")
  lt "$after" 2000 || fail "r-$i stopped ${after} ms after its client left (its work was 5 s)"
done

# 3. a request's own deadline
exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect"
printf 'work 5000 deadline 100\n' >&3
read -r -t 20 ans <&3 || fail "no answer to the deadline request"
[ "$ans" = "deadline r-6" ] || fail "deadline request answered '$ans'"
exec 3>&-

# 4. SIGTERM with four requests in flight: two fit in the grace period, two do not
exec 5<>"/dev/tcp/127.0.0.1/$port" && printf 'work 300\n' >&5
exec 6<>"/dev/tcp/127.0.0.1/$port" && printf 'work 300\n' >&6
exec 7<>"/dev/tcp/127.0.0.1/$port" && printf 'work 20000\n' >&7
exec 8<>"/dev/tcp/127.0.0.1/$port" && printf 'work 20000\n' >&8
for i in 7 8 9 10; do wait_for "\[r-$i\] work started"; done
kill -TERM "$pid"
wait_for 'shutdown: SIGTERM received.*4 request\(s\) in flight'
if (exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then fail "a connection was accepted after SIGTERM"; fi
answers=""
for fd in 5 6 7 8; do
  read -r -t 30 ans <&$fd || ans="(none)"
  answers="$answers|$ans"
done
wait "$pid"
status=$?
pid=
[ "$status" -eq 0 ] || fail "daemon exited with status $status"
[ "$(grep -o '|ok r-' <<<"$answers" | wc -l)" -eq 2 ] || fail "the short requests were not answered ok: $answers"
[ "$(grep -o '|canceled r-[0-9]*: shutting down' <<<"$answers" | wc -l)" -eq 2 ] ||
  fail "the long requests were not cancelled by the shutdown: $answers"
grep -q 'shutdown: grace period over: cancelling 2 request(s) still in flight' "$log" || fail "no grace expiry"
[ "$(grep -c 'shutdown: work stopped mid-run (canceled while running)' "$log")" -eq 2 ] ||
  fail "the long requests did not stop mid-run"
grep -Eq '^report: 10 request\(s\) accepted = 5 answered \+ 1 deadline exceeded \+ 0 failed \+ 2 client left \(2 stopped mid-run, 0 before start\) \+ 2 cancelled by shutdown \(2 mid-run, 0 before start\); 0 refused' "$log" ||
  fail "the report's accounting"
grep -Eq '^adapter report .*completed 5, failed 1, canceled before start 0, canceled while running 4, in flight 0' "$log" ||
  fail "the adapter's report"
grep -Eq '^pool report .*submitted 10, completed 5, failed 3, canceled before start 0, canceled while running 2, still running 0' "$log" ||
  fail "the pool's report"
grep -q '^OK: every request accounted for (10 accepted, 10 ended)' "$log" || fail "no OK line"
echo "---- daemon log"
cat "$log"
echo "PASS: clients that left stopped their work mid-run; SIGTERM drained, then cancelled; all 10 accounted for"
