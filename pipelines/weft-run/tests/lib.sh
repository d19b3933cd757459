# lib.sh: what the weft-run behaviour tests share. Sourced by each test with the program's path as $1:
#   bin        the weft-run under test
#   tmp        a temporary directory, removed on exit (with every process whose pid a test recorded)
#   fail MSG   prints "<test>: MSG" and exits 1
#   wr ARGS... runs weft-run bounded by `timeout` (a hang fails the test instead of holding it), stdout to
#              $tmp/out, stderr to $tmp/err; sets rc. Stdin is the caller's (redirect it).
#   summary    parses the "weft-run: ... N done, N failed, N timed out, N killed, N not started[, N skipped]"
#              line of $tmp/err (or the file given) into s_done s_failed s_timed s_killed s_notstarted
#              s_skipped and s_total, their sum, and checks it equals "(N inputs read)" when printed
#   survivors TOKEN  waits (up to 10 s: a SIGKILLed process needs a moment to go) until no process's
#              command line holds TOKEN; fails naming the survivors
#   joblog_ok FILE N checks FILE is a joblog in GNU parallel's format with N job lines
# Tests print what they checked, and a final "weft-run <name> check passed".
set -euo pipefail
bin=$1
case $bin in /*) ;; */*) bin=$PWD/$bin ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-run-test.XXXXXX")
# Processes a test leaves behind on purpose (a daemon a job forked, a weft-run it stopped) are recorded
# in $tmp/pids and ended by pid at exit.
cleanup() {
  local p
  if [ -f "$tmp/pids" ]; then
    while read -r p; do { kill -9 "$p" && wait "$p"; } 2>/dev/null || true; done < "$tmp/pids"
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# weft-run's temporary files (--group spills) go here, and are removed with it.
export TMPDIR=$tmp
# A token unique to this run, for finding a job's processes in `ps`: sleeps are given "987.<token>" seconds.
tok=$$$RANDOM
name=$(basename "$0" .sh)
fail() { echo "$name.sh: $*" >&2; exit 1; }
show() { # show: the last run's output, for a failure's context
  echo "--- stdout (head):" >&2; head -c 3000 "$tmp/out" >&2 || true
  echo "--- stderr (head):" >&2; head -c 3000 "$tmp/err" >&2 || true
}
wr() {
  rc=0
  timeout -k 10 "${WR_TIMEOUT:-90}" "$bin" "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then show; fail "weft-run $* did not end within ${WR_TIMEOUT:-90} s"; fi
  return 0
}
expect_rc() { # expect_rc WANT WHAT
  [ "$rc" = "$1" ] || { show; fail "$2: exit $rc, want $1"; }
}
summary() {
  local f=${1:-$tmp/err} line
  line=$(grep -a '^weft-run: .*[0-9]* done, [0-9]* failed, [0-9]* timed out, [0-9]* killed, [0-9]* not started' "$f" \
         | tail -1) || { echo "--- stderr:" >&2; cat "$f" >&2; fail "no summary line on stderr"; }
  s_done=$(sed -E 's/.* ([0-9]+) done,.*/\1/' <<< "$line")
  s_failed=$(sed -E 's/.* ([0-9]+) failed,.*/\1/' <<< "$line")
  s_timed=$(sed -E 's/.* ([0-9]+) timed out,.*/\1/' <<< "$line")
  s_killed=$(sed -E 's/.* ([0-9]+) killed,.*/\1/' <<< "$line")
  s_notstarted=$(sed -E 's/.* ([0-9]+) not started.*/\1/' <<< "$line")
  s_skipped=0
  if [[ $line == *skipped* ]]; then s_skipped=$(sed -E 's/.* ([0-9]+) skipped.*/\1/' <<< "$line"); fi
  s_total=$((s_done + s_failed + s_timed + s_killed + s_notstarted + s_skipped))
  s_line=$line
  # "(N inputs read)" when the program says it: the classes must add up to it.
  s_read=$s_total
  if [[ $line =~ \(([0-9]+)\ inputs\ read\) ]]; then s_read=${BASH_REMATCH[1]}; fi
  [ "$s_total" = "$s_read" ] || fail "the summary does not add up to the inputs read: $line"
}
expect_summary() { # expect_summary DONE FAILED TIMED KILLED NOTSTARTED [SKIPPED] WHAT
  local want="$1 done, $2 failed, $3 timed out, $4 killed, $5 not started" what=$6 skip=0
  if [ $# = 7 ]; then skip=$6; what=$7; fi
  summary
  [ "$s_done $s_failed $s_timed $s_killed $s_notstarted $s_skipped" = "$1 $2 $3 $4 $5 $skip" ] \
    || { show; fail "$what: summary '$s_line', want '$want' ($skip skipped)"; }
}
survivors() {
  local t=$1 left
  for _ in $(seq 1 100); do
    left=$(pgrep -af -- "$t" | grep -v -e pgrep || true)
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  fail "processes survived: $left"
}
# wait_for COND_COMMAND... : polls (every 20 ms, up to 60 s) until the command succeeds; fails otherwise.
wait_for() {
  for _ in $(seq 1 3000); do "$@" && return 0; sleep 0.02; done
  fail "gave up waiting (60 s) for: $*"
}
count_files() { # count_files GLOB-DIR PREFIX: how many files in DIR start with PREFIX
  local n=0 f
  for f in "$1"/"$2"*; do [ -e "$f" ] && n=$((n + 1)); done
  echo "$n"
}
at_least_files() { [ "$(count_files "$1" "$2")" -ge "$3" ]; }
joblog_ok() {
  local f=$1 n=$2 got
  [ "$(head -1 "$f")" = $'Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand' ] \
    || fail "joblog $f: bad header: $(head -1 "$f" | cat -A)"
  got=$(($(wc -l < "$f") - 1))
  [ "$got" = "$n" ] || { cat "$f" >&2; fail "joblog $f: $got job lines, want $n"; }
  # Seq, Host ":", Starttime epoch.3, JobRuntime %10.3f, Send, Receive, Exitval, Signal, then the command.
  if tail -n +2 "$f" | grep -avE $'^[0-9]+\t:\t[0-9]{9,}\\.[0-9]{3}\t[ 0-9]{6,}\\.[0-9]{3}\t[0-9]+\t[0-9]+\t-?[0-9]+\t[0-9]+\t' \
       > "$tmp/badlog"; then
    cat -A "$tmp/badlog" | head -5 >&2; fail "joblog $f: lines not in GNU parallel's format"
  fi
  # JobRuntime is "%10.3f": exactly 10 characters below 100000 s.
  if tail -n +2 "$f" | cut -f4 | grep -avE '^.{10}$' > "$tmp/badlog"; then
    cat -A "$tmp/badlog" | head -5 >&2; fail "joblog $f: JobRuntime not %10.3f"
  fi
}
# jl_col FILE SEQ COLUMN: a column (1-based) of job SEQ's line in a joblog.
jl_col() { awk -F'\t' -v s="$2" -v c="$3" 'NR > 1 && $1 == s { print $c }' "$1"; }
# wr_bg ARGS...: starts weft-run in the background (stdout $tmp/out, stderr $tmp/err, stdin the caller's);
# sets wr_pid. SIGINT is restored to its default, as an interactive shell leaves it (a non-interactive
# shell's background jobs would otherwise inherit it ignored). wr_wait: waits for it (90 s at most, then
# kills it and fails); sets rc.
wr_bg() {
  # <&0: an explicit redirection, or a background job's stdin would be /dev/null.
  env --default-signal=INT,QUIT "$bin" "$@" <&0 > "$tmp/out" 2> "$tmp/err" &
  wr_pid=$!
  echo "$wr_pid" >> "$tmp/pids"
}
wr_wait() {
  for _ in $(seq 1 900); do kill -0 "$wr_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$wr_pid" 2>/dev/null; then kill -9 "$wr_pid"; show; fail "weft-run did not end within 90 s"; fi
  rc=0
  wait "$wr_pid" 2>/dev/null || rc=$?
}
