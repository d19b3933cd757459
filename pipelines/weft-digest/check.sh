#!/usr/bin/env bash
# check.sh WEFT_DIGEST [DIR]: weft-digest agrees with xxHash's own tool and coreutils.
# Without DIR it builds a test tree (empty files, small and multi-MiB files, names with spaces, nested
# directories, a symbolic link that must be skipped) in a temporary directory. For every regular file the
# checksum must equal `xxhsum -H3`'s, the size `stat`'s and the line count `wc -l`'s, and the set of files
# must be exactly what `find DIR -type f` lists. Prints "weft-digest check passed" on success.
set -euo pipefail
digest=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-digest-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dir=${2:-}
if [ -z "$dir" ]; then
  dir=$tmp/tree
  mkdir -p "$dir/a/b/c" "$dir/with space" "$dir/empty-dir"
  : > "$dir/empty"
  printf 'one line\n' > "$dir/a/one"
  printf 'no newline at end' > "$dir/a/b/partial"
  printf 'x\ny\nz\n' > "$dir/with space/file name.txt"
  head -c 3000000 /dev/urandom > "$dir/a/b/c/big.bin"            # streamed by the hash stage
  seq 1 200000 > "$dir/a/b/c/lines.txt"                           # ~1.3 MB of lines: streamed too
  head -c 1048576 /dev/urandom > "$dir/a/exactly-1MiB"            # read whole
  head -c 70001 /dev/zero | tr '\0' '\n' > "$dir/a/newlines-only"  # every byte counted: 255-word blocks full
  for i in $(seq 1 300); do printf 'file %d\n%.0s' "$i" $(seq 1 $((i % 7))) > "$dir/a/b/f$i"; done
  ln -s ../one "$dir/a/b/link-to-one"
fi
WEFT_DIGEST_NO_PROGRESS=1 "$digest" -j 3 "$dir" > "$tmp/weft.out"
grep -v '^#' "$tmp/weft.out" | awk '{ h=$1; s=$2; l=$3; $1=""; $2=""; $3=""; sub(/^ +/, ""); print $0 "\t" h "\t" s "\t" l }' \
  | sort > "$tmp/weft.tsv"
# xxhsum -H3 prints "XXH3 (PATH) = HEX"; wc and stat give the rest.
find "$dir" -type f -print0 | sort -z | while IFS= read -r -d '' f; do
  h=$(xxhsum -H3 "$f" 2>/dev/null | sed 's/.* = //')
  printf '%s\t%s\t%s\t%s\n' "$f" "$h" "$(stat -c %s "$f")" "$(wc -l < "$f")"
done | sort > "$tmp/ref.tsv"
if ! diff "$tmp/ref.tsv" "$tmp/weft.tsv" > "$tmp/diff"; then
  echo "weft-digest disagrees with xxhsum/stat/wc (< reference, > weft-digest):"
  head -20 "$tmp/diff"
  exit 1
fi
echo "$(wc -l < "$tmp/ref.tsv") files agree"
echo "weft-digest check passed"
