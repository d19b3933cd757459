#!/usr/bin/env bash
# names.sh WEFT_RUN: inputs that a careless shell quoting would break reach the job byte for byte:
# spaces, tabs, both quotes, $, backquotes, $(...), ;, |, &, *, ~, a backslash, newlines, bytes that are not
# UTF-8, leading dashes, a leading and a trailing space, "{}" itself, an empty input. Each is checked
#   - given with ::: (the job prints it NUL-terminated: the output must equal the inputs exactly),
#   - read NUL-separated (-0) from stdin and from -a FILE,
#   - as a file name, the job reading the file (cat {}),
#   - through {/} {//} {.} {/.}, and with --no-shell, and in two sources' {1} {2},
# and no input ever runs as a command (a "pwned" file would appear).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
names=(
  'plain' 'with space' $'tab\there' "it's" 'say "hi"' '$HOME' '${PATH}' '`touch pwned`' "\$(touch pwned)"
  'a;touch pwned' 'a|touch pwned' 'a&&touch pwned' 'a & b' '*' '~' 'back\slash' '\' $'new\nline' $'\n'
  $'\xff\xfe\x80 not utf-8' $'caf\xc3\xa9' '-n' '--help' '-e' ' lead' 'trail ' '{}' '{1}' '!' '#x' '%s' 'a=b'
  $'\r' $'ctl\x01\x1b[31m' ''
)
cd "$tmp"   # a "pwned" file would land here
# Command words are joined with spaces for the shell, as GNU parallel does: a format holding a backslash
# is one word, quoted for the shell.
pf="printf '%s\\0'"

printf '%s\0' "${names[@]}" > "$tmp/want"
check() { # check WHAT: $tmp/out equals $tmp/want, exit 0, no pwned
  expect_rc 0 "$1"
  cmp -s "$tmp/want" "$tmp/out" || { od -c "$tmp/out" | head -30 >&2; fail "$1: the inputs did not arrive intact"; }
  [ ! -e "$tmp/pwned" ] || fail "$1: an input ran as a command"
}
wr -k "$pf" ::: "${names[@]}" < /dev/null; check "::: ARGS"
wr -k "$pf" {} ::: "${names[@]}" < /dev/null; check "::: ARGS with {}"
wr -k -0 "$pf" < "$tmp/want"; check "-0 stdin"
wr -k -0 -a "$tmp/want" "$pf" < /dev/null; check "-0 -a FILE"
wr -k --no-shell printf '%s\0' ::: "${names[@]}" < /dev/null; check "--no-shell"
wr -k --no-shell printf '%s\0' {} ::: "${names[@]}" < /dev/null; check "--no-shell with {}"
# Lines (no newline in them) from stdin.
lines=()
for n in "${names[@]}"; do [[ $n == *$'\n'* ]] || lines+=("$n"); done
printf '%s\n' "${lines[@]}" > "$tmp/lines"
printf '%s\0' "${lines[@]}" > "$tmp/want"
wr -k "$pf" < "$tmp/lines"; check "lines on stdin"
echo "${#names[@]} hostile inputs intact through :::, -0 stdin, -0 -a, --no-shell; ${#lines[@]} through lines"

# Two sources: {1} {2} and the appended form keep each input whole.
wr -k "printf '<%s|%s>\\0'" {2} {1} ::: 'a b' "it's" ::: '$x y' $'n\nl' < /dev/null
printf '<%s|%s>\0' '$x y' 'a b' $'n\nl' 'a b' '$x y' "it's" $'n\nl' "it's" > "$tmp/want"
check "{1} {2}"
wr -k "printf '<%s|%s>\\0'" ::: 'a b' "it's" ::: '$x y' $'n\nl' < /dev/null
printf '<%s|%s>\0' 'a b' '$x y' 'a b' $'n\nl' "it's" '$x y' "it's" $'n\nl' > "$tmp/want"
check "two sources appended"

# Files with those names (those that can be file names), read by the job.
mkdir "$tmp/files"
fnames=()
for n in "${names[@]}"; do
  case $n in */*|''|.|..) continue ;; esac
  printf 'content of %s\n' "$n" > "$tmp/files/$n"
  fnames+=("$tmp/files/$n")
done
: > "$tmp/want"
for f in "${fnames[@]}"; do cat "$f" >> "$tmp/want"; done
wr -k cat ::: "${fnames[@]}" < /dev/null; check "cat of hostile file names"
wr -k cat {} ::: "${fnames[@]}" < /dev/null; check "cat {} of hostile file names"
printf '%s\0' "${fnames[@]}" > "$tmp/fnames"
wr -k -0 cat < "$tmp/fnames"
check "cat of hostile file names, -0 stdin"
wr -k --no-shell cat ::: "${fnames[@]}" < /dev/null; check "--no-shell cat of hostile file names"
# The modifiers on a hostile path: {/} {//} {.} {/.}
d=$'dir with \'quote\' $and\nnewline'
mkdir -p "$tmp/$d"
p="$tmp/$d/it's \$name.tar.gz"
: > "$p"
wr "$pf" {/} {//} {.} {/.} ::: "$p" < /dev/null
printf '%s\0' "it's \$name.tar.gz" "$tmp/$d" "$tmp/$d/it's \$name.tar" "it's \$name.tar" > "$tmp/want"
check "{/} {//} {.} {/.} on a hostile path"
# The job number and slot beside a hostile input.
wr -k -j 1 "printf '%s|%s|%s\\0'" {#} {%} {} ::: '-n' "it's" < /dev/null
printf '%s\0' '1|1|-n' "2|1|it's" > "$tmp/want"
check "{#} {%} beside hostile inputs"
echo "hostile file names, modifiers, {1} {2}: intact; nothing ran as a command"
echo "weft-run names check passed"
