#!/usr/bin/env bash
# vs-parallel.sh WEFT_RUN: the same invocations through weft-run and GNU parallel (`parallel --will-cite`),
# comparing stdout (sorted where the order is not promised) and exit statuses; for joblogs, the columns
# that do not depend on time (Seq, Host, Send, Receive, Exitval, Signal). Covers the input sources and their
# combinations, --link, replacement strings, quoting of hostile inputs, -0, --tag, -k, exit statuses, --halt
# (counts, percentages, shorthands), --retries, --timeout, --dry-run (its lines run with sh), --resume.
# GNU parallel splits ::: arguments at newlines and gives ".hidden" an empty {.}: those are left out here
# (names.sh checks weft-run on them). Skips (passing) when parallel is not installed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if ! command -v parallel > /dev/null; then
  echo "GNU parallel not installed: nothing compared"
  echo "weft-run vs-parallel check passed"
  exit 0
fi
mkdir "$tmp/home"
n=0
long=987.$tok
# both ORDER WHAT ARGS...: ORDER "sorted" compares sorted outputs, "ordered" as they are. Stdin is the caller's
# (read once into a file, given to both).
both() {
  local order=$1 what=$2 rw=0 rp=0
  shift 2
  cat > "$tmp/stdin"
  timeout -k 10 120 "$bin" "$@" < "$tmp/stdin" > "$tmp/w.out" 2> "$tmp/w.err" || rw=$?
  HOME=$tmp/home timeout -k 10 120 parallel --will-cite "$@" < "$tmp/stdin" > "$tmp/p.out" 2> "$tmp/p.err" || rp=$?
  if [ "$order" = sorted ]; then sort -o "$tmp/w.out" "$tmp/w.out"; sort -o "$tmp/p.out" "$tmp/p.out"; fi
  if ! cmp -s "$tmp/w.out" "$tmp/p.out"; then
    echo "--- weft-run:" >&2; head -20 "$tmp/w.out" | cat -A >&2
    echo "--- parallel:" >&2; head -20 "$tmp/p.out" | cat -A >&2
    fail "$what: outputs differ ($*)"
  fi
  [ "$rw" = "$rp" ] || { cat "$tmp/w.err" >&2; fail "$what: weft-run exits $rw, GNU parallel $rp ($*)"; }
  n=$((n + 1))
}
# jlcols LOG: the joblog's time-independent columns, by Seq.
jlcols() { tail -n +2 "$1" | cut -f1,2,5-8 | sort -n; }

# ---- inputs
both sorted ":::" echo ::: a b c < /dev/null
both ordered "three sources" -k echo ::: a b ::: 1 2 ::: x y < /dev/null
both ordered "--link" -k --link echo ::: a b c ::: 1 2 < /dev/null
printf 'x\ny\n' > "$tmp/f1"; printf '1\n2\n3\n' > "$tmp/f2"
both ordered ":::: two files" -k echo :::: "$tmp/f1" "$tmp/f2" < /dev/null
both ordered "-a twice" -k -a "$tmp/f1" -a "$tmp/f2" echo < /dev/null
both ordered "::: and ::::" -k echo ::: a b :::: "$tmp/f2" < /dev/null
both ordered "stdin" -k echo < "$tmp/f2"
both ordered ":::: -" -k echo ::: a :::: - < "$tmp/f1"
printf 'a b\0c\nd\0e\0' > "$tmp/nul"
both ordered "-0" -k -0 "printf '[%s]\n'" < "$tmp/nul"
both ordered "empty input" echo < /dev/null
echo "inputs compared"

# ---- replacement strings, quoting
both ordered "{} {.} {/} {//} {/.}" -k echo {} {.} {/} {//} {/.} ::: dir/sub/file.tar.gz file.txt /abs/x a/b.c/d x.y/z < /dev/null
both ordered "{#} {1} {2}" -k echo {#} {2} {1} ::: a b ::: x y < /dev/null
both ordered "{1.} {2/} {1/.} {2//}" -k echo {1.} {2/} {1/.} {2//} ::: a/b.c ::: d/e.f < /dev/null
both ordered "appended" -k echo pre ::: a b ::: c < /dev/null
both ordered "words after COMMAND" -k echo -j 5 ::: a < /dev/null
hostile=('with space' "it's" 'say "hi"' '$HOME' '`id`' '$(id)' 'a;b' 'a|b' '*' '~' 'back\slash' $'tab\there'
         $'\xff\xfe bytes' '-n' '--help' ' lead' 'trail ' '{}' '!' '%s')
both ordered "hostile inputs" -k "printf '<%s>\n'" ::: "${hostile[@]}" < /dev/null
both ordered "hostile inputs with {}" -k "printf '<%s>\n'" {} {} ::: "${hostile[@]}" < /dev/null
printf '%s\n' "${hostile[@]}" > "$tmp/hostile"
both ordered "hostile lines on stdin" -k "printf '<%s>\n'" < "$tmp/hostile"
echo "replacement strings and quoting compared"

# ---- output
both ordered "--tag" -k --tag echo ::: a b ::: 1 2 < /dev/null
both ordered "-k with delays" -k -j 3 'sleep {}; echo {}' ::: 0.3 0.1 0.2 0 0.15 < /dev/null
both sorted "--line-buffer" --line-buffer -j 3 'echo {}; sleep 0.1; echo {} again' ::: a b c < /dev/null
both ordered "--group" -j 3 'echo {}; sleep {}; echo {} again' ::: 0.1 0.4 0.7 < /dev/null
echo "output modes compared"

# ---- exit statuses, --halt, --retries, --timeout
both sorted "exit statuses" 'exit {}' ::: 0 1 2 3 < /dev/null
both sorted "150 failures" -j 4 'exit 1' ::: $(seq 1 150) < /dev/null
both sorted "command not found" "no-such-command-$tok" ::: 1 < /dev/null
halt() { local spec=$1; shift; both ordered "--halt $spec" -j 1 --halt "$spec" 'echo {}; exit {}' ::: "$@" < /dev/null; }
halt soon,fail=1 0 0 3 0 0
halt now,fail=1 0 0 3 0 0
halt soon,fail=2 0 1 0 4 0 0
halt soon,done=3 0 1 0 0 0
halt soon,success=1 1 0 1 1
halt now,success=2 1 0 0 1
halt soon,fail=30% 0 0 1 1 1 0 0 0 0 0
halt soon,done=30% 0 1 1 1 1 0 0 0 0 0
halt soon,success=30% 1 1 0 0 0 0 0 0 0 0
halt 1 0 2 0
halt 2 0 2 0
halt -1 1 0 1
halt 0 0 2 0
both ordered "--halt soon,fail=1, own signal" -j 1 --halt soon,fail=1 'kill -USR1 $$; : {}' ::: 1 2 < /dev/null
mkdir "$tmp/rw" "$tmp/rp"
rm -f "$tmp/att"
both sorted "--retries 3" --retries 3 "echo x >> $tmp/att; exit 1" ::: a < /dev/null
[ "$(wc -l < "$tmp/att")" = 6 ] || fail "--retries 3: $(wc -l < "$tmp/att") attempts by the two programs, want 3 + 3"
both sorted "--timeout" --timeout 1 'sleep {}; echo {}' ::: 0 "$long" 0.1 < /dev/null
survivors "$long"
echo "exit statuses, --halt, --retries, --timeout compared"

# ---- joblogs
jobs=('printf hello' 'echo hi; echo err >&2' 'exit 3' 'kill -USR1 $$' "no-such-command-$tok" "sleep $long")
"$bin" --joblog "$tmp/w.log" --timeout 1 -k eval {} ::: "${jobs[@]}" < /dev/null > /dev/null 2>&1 || true
HOME=$tmp/home parallel --will-cite --joblog "$tmp/p.log" --timeout 1 -k eval {} ::: "${jobs[@]}" < /dev/null > /dev/null 2>&1 || true
survivors "$long"
if ! diff <(jlcols "$tmp/w.log") <(jlcols "$tmp/p.log") > "$tmp/diff"; then
  echo "Seq Host Send Receive Exitval Signal (< weft-run, > GNU parallel):" >&2; cat "$tmp/diff" >&2
  fail "joblogs differ"
fi
[ "$(head -1 "$tmp/w.log")" = "$(head -1 "$tmp/p.log")" ] || fail "joblog headers differ"
# --resume: the same jobs run in the second run.
for p in w p; do
  prog=$bin; [ $p = w ] || prog="parallel --will-cite"
  rm -f "$tmp/$p.rlog"
  HOME=$tmp/home $prog --joblog "$tmp/$p.rlog" "echo {} >> $tmp/$p.ran" ::: 1 2 3 < /dev/null
  HOME=$tmp/home $prog --joblog "$tmp/$p.rlog" --resume "echo {} >> $tmp/$p.ran" ::: 1 2 3 4 5 < /dev/null
done
diff <(sort "$tmp/w.ran") <(sort "$tmp/p.ran") > /dev/null || fail "--resume: different jobs ran"
diff <(jlcols "$tmp/w.rlog") <(jlcols "$tmp/p.rlog") > /dev/null || fail "--resume: joblogs differ"
echo "joblog columns and --resume compared"

# ---- --dry-run: the printed lines (quoting may differ) do the same when run
for p in w p; do
  prog=$bin; [ $p = w ] || prog="parallel --will-cite"
  HOME=$tmp/home $prog --dry-run -k "printf '<%s>\n'" ::: "${hostile[@]}" < /dev/null > "$tmp/$p.dry"
  (cd "$tmp" && sh "$tmp/$p.dry") > "$tmp/$p.dryran"
done
cmp -s "$tmp/w.dryran" "$tmp/p.dryran" || fail "--dry-run: the printed commands do not do the same"
echo "--dry-run compared"
echo "$n invocations compared"
echo "weft-run vs-parallel check passed"
