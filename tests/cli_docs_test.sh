#!/usr/bin/env bash
# The generated man page and bash completion (scripts/cli_docs.sh) against the program itself:
# every subcommand has its section and completes, options and spec step names complete.
#   tests/cli_docs_test.sh AUGFLOW_BINARY MAN_PAGE BASH_COMPLETION
set -euo pipefail
bin="$1" man="$2" completion="$3"
fail() { echo "cli_docs_test: $*" >&2; exit 1; }
# shellcheck disable=SC1090
source "$completion"
# (grep without -q after a pipe: -q stops reading at the first match, and under pipefail the
# writer's SIGPIPE would fail the check.)
complete_line() {
  COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=()
  _augflow
  printf '%s\n' "${COMPREPLY[@]}"
}

subcommands=$("$bin" --help | awk '/^Subcommands:$/ {s = 1; next} /^[A-Z]/ {s = 0} s && /^  [a-z]/ {print $1}')
[[ $(wc -w <<<"$subcommands") -ge 7 ]] || fail "augflow --help lists too few subcommands: $subcommands"
for sub in $subcommands; do
  grep -qx ".SS \"augflow $sub\"" "$man" || fail "the man page has no section for augflow $sub"
  complete_line augflow "${sub:0:2}" | grep -x "$sub" >/dev/null || fail "'augflow ${sub:0:2}<TAB>' does not offer $sub"
done
grep -qx '.SS "augflow bench loader"' "$man" || fail "the man page has no section for augflow bench loader"
grep -q '^\.SH EXIT STATUS' "$man" || fail "the man page has no EXIT STATUS"

complete_line augflow train --ep | grep -x -- --epochs >/dev/null || fail "'augflow train --ep<TAB>' does not offer --epochs"
complete_line augflow bench loader --pre | grep -x -- --prefetch >/dev/null || fail "bench loader options"
# Every option train's help lists completes.
for option in $("$bin" train --help | grep -oE '^  (-[a-z],)?--[a-z0-9-]+' | sed 's/^  //; s/.*,//'); do
  complete_line augflow train "$option" | grep -x -- "$option" >/dev/null || fail "'augflow train $option' does not complete"
done
# Spec step names, at the start of a quoted spec and after a '|'.
complete_line augflow train --aug "'sc" | grep -x scale_crop >/dev/null || fail "no step names after --aug"
complete_line augflow train --aug "'hflip | res" | grep -x 'hflip | resized_crop' >/dev/null || fail "no step names after '|'"
complete_line augflow eval --views "'ten" | grep -x tencrop >/dev/null || fail "no view steps after --views"
[[ -z $(complete_line augflow train --aug "'no_such") ]] || fail "an unknown step prefix completes"
echo "cli_docs_test: man page and completion agree with augflow --help"
