#!/usr/bin/env bash
# Keeps the documentation honest: every command line that README.md and docs/*.md show as an
# example (a line starting with `augflow ` in a ```sh, ```bash or ```console block, `\`
# continuations joined, a leading "$ " prompt dropped) is run through `augflow --check-args`,
# which parses the options and the specs without running anything. Run by ctest.
#   tests/docs_test.sh AUGFLOW_BINARY SOURCE_DIR
set -euo pipefail
bin="$1" src="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"  # whatever else a line runs (| tee, > file) happens here

# The check must be able to fail: an unknown option and a bad spec are rejected.
if "$bin" --check-args train --train x --no-such-option >/dev/null 2>&1; then
  echo "docs_test: --check-args accepted an unknown option" >&2; exit 1
fi
if "$bin" --check-args train --train x --aug 'hflip | no_such_step' >/dev/null 2>&1; then
  echo "docs_test: --check-args accepted an unknown spec step" >&2; exit 1
fi

# file<TAB>line<TAB>command, one per example.
extract() {
  awk '
    FNR == 1 { fence = 0; cont = "" }
    /^[ \t]*```/ {
      if (!fence && $0 ~ /^[ \t]*```(sh|bash|shell|console)[ \t]*$/) fence = 1; else fence = 0
      next
    }
    fence {
      line = $0; sub(/^[ \t]*(\$ )?/, "", line)
      if (cont != "") { text = text " " line }
      else if (line ~ /^augflow /) { text = line; start = FNR }
      else next
      if (text ~ /\\$/) { sub(/\\$/, "", text); cont = 1; next }
      cont = ""
      printf "%s\t%d\t%s\n", FILENAME, start, text
    }' "$@"
}

files=("$src/README.md")
shopt -s nullglob
files+=("$src"/docs/*.md)
extract "${files[@]}" >"$work/examples.tsv"
count=$(wc -l <"$work/examples.tsv")
[[ $count -ge 5 ]] || { echo "docs_test: only $count example command lines found" >&2; exit 1; }

augflow() { "$bin" --check-args "$@"; }
failed=0
while IFS=$'\t' read -r file line text; do
  if ! out="$(eval "$text" 2>&1 </dev/null)"; then
    echo "${file#"$src"/}:$line: $text" >&2
    echo "$out" | sed 's/^/    /' >&2
    failed=$((failed + 1))
  fi
done <"$work/examples.tsv"
echo "docs_test: $count example command lines, $failed rejected"
[[ $failed -eq 0 ]]
