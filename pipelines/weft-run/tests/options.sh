#!/usr/bin/env bash
# options.sh WEFT_RUN: the command line (usage.txt is the --help text and the spec).
#   - --help/-h print usage.txt exactly, --version names weft-run and weft;
#   - refused command lines exit 255 with a message and run nothing: no COMMAND, unknown options, bad -j,
#     bad durations, bad --halt and --retries, a missing option argument, an unreadable input, a joblog
#     that cannot be written, --resume without --joblog;
#   - empty input runs nothing and exits 0;
#   - inputs: ::: , :::: FILE, :::: -, -a (repeated), stdin, -0, several sources in every combination (the
#     first varying slowest), --link (shorter sources wrap around);
#   - replacement strings {} {.} {/} {//} {/.} {#} {%} {1} {2} {1.} {2/} {3//} {1/.}, inputs appended when
#     there is none, words after COMMAND belong to it;
#   - -j N runs at most N at once and reaches N (a barrier the jobs meet), -j 0 runs every input at once,
#     the default is the number of cores;
#   - --no-shell, --dry-run (prints commands a shell runs to the same effect, runs nothing; a line shows
#     while the next input is awaited), --bar.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
usage=$(dirname "$0")/../usage.txt

# ---- --help, --version
for h in --help -h; do
  wr "$h"; expect_rc 0 "$h"
  diff "$usage" "$tmp/out" > "$tmp/diff" || { head -20 "$tmp/diff" >&2; fail "$h: not usage.txt"; }
done
wr --version; expect_rc 0 --version
grep -q 'weft-run' "$tmp/out" && grep -q '0\.[0-9]' "$tmp/out" || { show; fail "--version: no name or version"; }
echo "help, version: checked"

# ---- refused command lines: 255, a message, nothing run
refuse() { # refuse WHAT ARGS... (the command, when there is one, would create $tmp/ran.*)
  local what=$1
  shift
  wr "$@" < /dev/null
  [ "$rc" = 255 ] || { show; fail "$what (weft-run $*): exit $rc, want 255"; }
  [ -s "$tmp/err" ] || fail "$what (weft-run $*): no message on stderr"
  [ "$(count_files "$tmp" ran.)" = 0 ] || fail "$what (weft-run $*): a job ran"
  [ ! -s "$tmp/out" ] || { show; fail "$what (weft-run $*): output on stdout"; }
}
ran="touch $tmp/ran.{#}"
refuse "no arguments"
refuse "options alone" -j 2 -k
refuse "no COMMAND before :::" ::: "touch $tmp/ran.1"
refuse "unknown option" --bogus "$ran" ::: a
refuse "unknown short option" -Z "$ran" ::: a
refuse "missing option argument" --timeout
for j in x -1 '' 1.5 2x ' 3' 99999999999999999999 1e2; do
  refuse "-j '$j'" -j "$j" "$ran" ::: a
  grep -qiE -- '-j|jobs' "$tmp/err" || { show; fail "-j '$j': the message does not say what is wrong"; }
done
for d in 5x '' -1s s 1.5.5s 1m-3s 99999999999999h ms 1ss; do
  refuse "--timeout '$d'" --timeout "$d" "$ran" ::: a
  refuse "--deadline '$d'" --deadline "$d" "$ran" ::: a
  refuse "--term-grace '$d'" --term-grace "$d" "$ran" ::: a
done
for h in later,fail=1 now,fail=x now,oops=1 now now,fail= soon,fail=-1 3 x; do
  refuse "--halt '$h'" --halt "$h" "$ran" ::: a
done
for r in x -1 '' 1.5; do refuse "--retries '$r'" --retries "$r" "$ran" ::: a; done
refuse "unreadable :::: FILE" "$ran" :::: "$tmp/missing"
refuse "unreadable -a FILE" -a "$tmp/missing" "$ran"
refuse "a directory as -a FILE" -a "$tmp" "$ran"
refuse "a joblog that cannot be written" --joblog "$tmp/no/such/dir/log" "$ran" ::: a
refuse "--resume without --joblog" --resume "$ran" ::: a
refuse "--resume-failed without --joblog" --resume-failed "$ran" ::: a
echo "refused command lines: exit 255, a message, nothing run"

# ---- empty input
wr "$ran" < /dev/null; expect_rc 0 "empty stdin"
[ ! -s "$tmp/out" ] && [ "$(count_files "$tmp" ran.)" = 0 ] || fail "empty stdin: something ran"
: > "$tmp/empty"
wr -a "$tmp/empty" "$ran"; expect_rc 0 "empty -a FILE"
wr "$ran" :::: "$tmp/empty"; expect_rc 0 "empty :::: FILE"
[ "$(count_files "$tmp" ran.)" = 0 ] || fail "empty input: a job ran"
echo "empty input: exit 0, nothing run"

# ---- inputs and their combinations
same() { # same WHAT EXPECTED: the last run's stdout is EXPECTED (lines), exit 0
  expect_rc 0 "$1"
  printf '%s\n' "$2" > "$tmp/want"
  diff "$tmp/want" "$tmp/out" > "$tmp/diff" || { cat "$tmp/diff" >&2; show; fail "$1: wrong output"; }
}
wr -k echo ::: a b c < /dev/null; same ":::" $'a\nb\nc'
printf 'x\ny\n' > "$tmp/f1"
printf '1\n2' > "$tmp/f2"   # no newline at the end
wr -k echo :::: "$tmp/f1" < /dev/null; same ":::: FILE" $'x\ny'
wr -k echo :::: - < "$tmp/f1"; same ":::: -" $'x\ny'
wr -k -a "$tmp/f2" echo < /dev/null; same "-a FILE, last line without newline" $'1\n2'
wr -k echo < "$tmp/f1"; same "stdin" $'x\ny'
wr -k echo ::: a b ::: 1 2 < /dev/null; same "::: x :::" $'a 1\na 2\nb 1\nb 2'
wr -k echo ::: a b ::: 1 2 ::: x y < /dev/null
same "three sources" $'a 1 x\na 1 y\na 2 x\na 2 y\nb 1 x\nb 1 y\nb 2 x\nb 2 y'
wr -k echo ::: a b :::: "$tmp/f1" < /dev/null; same "::: and ::::" $'a x\na y\nb x\nb y'
wr -k echo :::: "$tmp/f1" "$tmp/f2" < /dev/null; same ":::: two files" $'x 1\nx 2\ny 1\ny 2'
wr -k -a "$tmp/f1" -a "$tmp/f2" echo < /dev/null; same "-a twice" $'x 1\nx 2\ny 1\ny 2'
wr -k --link echo ::: a b c ::: 1 2 < /dev/null; same "--link" $'a 1\nb 2\nc 1'
wr -k --link echo ::: a b c d ::: 1 2 ::: x y z < /dev/null; same "--link, three" $'a 1 x\nb 2 y\nc 1 z\nd 2 x'
printf 'a b\0c\nd\0e' > "$tmp/nul"
wr -k -0 "printf '[%s]\\n'" < "$tmp/nul"; same "-0 stdin" $'[a b]\n[c\nd]\n[e]'
wr -k --null -a "$tmp/nul" "printf '[%s]\\n'" < /dev/null; same "--null -a" $'[a b]\n[c\nd]\n[e]'
# A large first source is streamed: the first job starts before the input ends (it would wait forever
# for "go", which the test writes only once the job has started).
mkfifo "$tmp/fifo"
( exec > "$tmp/fifo"; echo "first"; for _ in $(seq 1 3000); do [ -e "$tmp/started" ] && break; sleep 0.02; done
  if [ -e "$tmp/started" ]; then echo "second"; else echo "not-streamed"; fi ) &
writer=$!
wr -k -j 2 "touch $tmp/started; echo" < "$tmp/fifo"
wait "$writer"
same "streamed stdin" $'first\nsecond'
echo "inputs: :::, ::::, -a, stdin, -0, combinations, --link, streaming: checked"

# ---- replacement strings
wr -k echo {} {.} {/} {//} {/.} ::: dir/sub/file.tar.gz file.txt /abs/x a/b.c/d < /dev/null
same "{} {.} {/} {//} {/.}" 'dir/sub/file.tar.gz dir/sub/file.tar file.tar.gz dir/sub file.tar
file.txt file file.txt . file
/abs/x /abs/x x /abs x
a/b.c/d a/b.c/d d a/b.c d'
wr -k echo {#} {} ::: a b c < /dev/null; same "{#}" $'1 a\n2 b\n3 c'
wr -k echo {2} {1} ::: a b ::: 1 2 < /dev/null; same "{1} {2}" $'1 a\n2 a\n1 b\n2 b'
wr -k echo {1.} {2/} {1/.} {2//} {3//} ::: a/b.c ::: d/e.f ::: /x/y < /dev/null; same "{1.} {2/} {1/.} {2//} {3//}" 'a/b e.f b d /x'
wr -k echo x{}y {} ::: a < /dev/null; same "{} twice, inside a word" 'xay a'
wr -k echo pre ::: a b < /dev/null; same "inputs appended" $'pre a\npre b'
wr -k echo pre ::: a ::: b < /dev/null; same "inputs of two sources appended" 'pre a b'
wr -k echo -j 5 ::: a < /dev/null; same "words after COMMAND are its own" '-j 5 a'
wr -j 1 echo {%} ::: a b c < /dev/null; same "{%} with -j 1" $'1\n1\n1'
# Two jobs that wait for each other run at once, in different slots.
cat > "$tmp/barrier.sh" <<'SH'
#!/bin/sh
# barrier.sh DIR ID N: marks job ID live in DIR, waits (up to 60 s) until N jobs are, prints the number seen.
d=$1; touch "$d/live.$2"
i=0
while [ "$(ls "$d" | grep -c '^live\.')" -lt "$3" ]; do
  i=$((i + 1)); [ "$i" -lt 3000 ] || { echo "barrier: only $(ls "$d" | grep -c '^live\.') of $3 jobs at once" >&2; exit 1; }
  sleep 0.02
done
echo "$(ls "$d" | grep -c '^live\.')"
SH
mkdir "$tmp/b2"
wr -j 2 "sh $tmp/barrier.sh $tmp/b2 {#} 2 >/dev/null; echo {%}" ::: a b < /dev/null
expect_rc 0 "{%} with -j 2"
[ "$(sort "$tmp/out" | tr '\n' ' ')" = "1 2 " ] || { show; fail "{%}: two jobs at once did not get slots 1 and 2"; }
echo "replacement strings: checked"

# ---- -j
# At most N at once: each job counts the live ones while it is live.
cat > "$tmp/count.sh" <<'SH'
#!/bin/sh
# count.sh DIR ID: live for a moment; prints how many jobs were live with it.
touch "$1/live.$2"; sleep 0.05; ls "$1" | grep -c '^live\.'; rm "$1/live.$2"
SH
for j in 1 2 3; do
  mkdir "$tmp/c$j"
  wr -j "$j" sh "$tmp/count.sh" "$tmp/c$j" ::: $(seq 1 12) < /dev/null
  expect_rc 0 "-j $j"
  max=$(sort -n "$tmp/out" | tail -1)
  [ "$(wc -l < "$tmp/out")" = 12 ] && [ "$max" -le "$j" ] || { show; fail "-j $j: up to $max jobs at once"; }
done
# N at once: jobs that only end when N of them run together.
mkdir "$tmp/b3" "$tmp/b0" "$tmp/bd"
wr -j 3 sh "$tmp/barrier.sh" "$tmp/b3" {} 3 ::: 1 2 3 < /dev/null; expect_rc 0 "-j 3 (3 jobs meeting)"
wr -j 0 sh "$tmp/barrier.sh" "$tmp/b0" {} 7 ::: $(seq 1 7) < /dev/null; expect_rc 0 "-j 0 (7 jobs meeting)"
cores=$(nproc)
wr sh "$tmp/barrier.sh" "$tmp/bd" {} "$cores" ::: $(seq 1 "$cores") < /dev/null
expect_rc 0 "default -j ($cores jobs meeting)"
mkdir "$tmp/cd"
wr sh "$tmp/count.sh" "$tmp/cd" ::: $(seq 1 $((cores * 4))) < /dev/null
max=$(sort -n "$tmp/out" | tail -1)
[ "$max" -le "$cores" ] || fail "default -j: $max jobs at once on $cores cores"
echo "-j: at most N and N at once, -j 0, default $cores: checked"

# ---- --no-shell, --dry-run, --bar
wr -k --no-shell printf '%s|\n' ::: 'a b' '$HOME' '*' 'x;y' < /dev/null; same "--no-shell" $'a b|\n$HOME|\n*|\nx;y|'
wr -k --no-shell printf 'x{}y\n' ::: a < /dev/null; same "--no-shell, {} in a word" 'xay'
wr -k --no-shell echo 'a;' '$(id)' ::: b < /dev/null; same "--no-shell, shell syntax in words" 'a; $(id) b'
wr --dry-run -k "$ran; echo {}" ::: a 'b c' "it's" < /dev/null
expect_rc 0 "--dry-run"
[ "$(count_files "$tmp" ran.)" = 0 ] || fail "--dry-run: a job ran"
[ "$(wc -l < "$tmp/out")" = 3 ] || { show; fail "--dry-run: want 3 command lines"; }
(cd "$tmp" && sh "$tmp/out") > "$tmp/dry.ran" 2>&1 || fail "--dry-run: its lines do not run with sh"
printf '%s\n' a 'b c' "it's" | diff - "$tmp/dry.ran" > /dev/null \
  || { cat "$tmp/dry.ran" >&2; fail "--dry-run: the printed commands do not do what the jobs would"; }
[ "$(count_files "$tmp" ran.)" = 3 ] || fail "--dry-run: the printed commands are not the jobs' ({#} lost?)"
rm -f "$tmp"/ran.*
# --dry-run gathers its lines into few writes; a line still comes out while the next input is awaited
mkfifo "$tmp/slow"
timeout 120 "$bin" --dry-run echo < "$tmp/slow" > "$tmp/dry.slow" 2> "$tmp/err" & dp=$!
echo "$dp" >> "$tmp/pids"
exec 7> "$tmp/slow"
echo first >&7
wait_for grep -qx "echo first" "$tmp/dry.slow"
echo second >&7
exec 7>&-
wait "$dp" || fail "--dry-run from a slow input: exit $? ($(cat "$tmp/err"))"
[ "$(cat "$tmp/dry.slow")" = $'echo first\necho second' ] || fail "--dry-run from a slow input: $(cat "$tmp/dry.slow")"
wr --bar -k echo ::: a b < /dev/null; same "--bar" $'a\nb'
wr --no-bar -k echo ::: a b < /dev/null; same "--no-bar" $'a\nb'
echo "--no-shell, --dry-run, --bar: checked"
echo "weft-run options check passed"
