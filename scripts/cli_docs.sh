#!/usr/bin/env bash
# Writes augflow's man page (augflow.1) and bash completion from the command line's own --help,
# so that neither can drift from the options the program has. Run by the build (target
# augflow_cli_docs); bash and awk only.
#   scripts/cli_docs.sh AUGFLOW_BINARY OUT_MAN_PAGE OUT_BASH_COMPLETION
# The man page holds the top-level help, then every subcommand's (and nested subcommand's) help
# verbatim. The completion knows the subcommands, each one's options, and the augmentation
# spec's step names (from the "Steps:" list of the help), offered after a spec option
# (--aug, --views) and after a '|' inside a spec. Inside a quoted spec, readline keeps the
# opening quote and replaces what follows it, so the replies carry no quote.
set -euo pipefail
if [[ $# -ne 3 ]]; then
  echo "usage: $0 AUGFLOW_BINARY OUT_MAN_PAGE OUT_BASH_COMPLETION" >&2
  exit 2
fi
bin="$1" man="$2" completion="$3"

help_of() { "$bin" "$@" --help | sed "s|^Usage: [^ ]*augflow|Usage: augflow|"; }
# The names listed in a help text's "Subcommands:" section (descriptions are indented further).
subcommands_in() { awk '/^[A-Z][A-Za-z]*:$/ {s = ($0 == "Subcommands:"); next} s && /^  [a-z]/ {print $1}'; }
# The long and short option names of a help text's "Options:" section.
options_in() {
  awk '/^[A-Z][A-Za-z]*:$/ {s = ($0 == "Options:"); next} /^$/ {s = 0}
       s && /^  -/ {n = split($1, names, ","); for (i = 1; i <= n; i++) print names[i]}'
}
# Options whose description calls their value a spec of steps (augmentation or view spec).
spec_options_in() {
  awk '/^[A-Z][A-Za-z]*:$/ {s = ($0 == "Options:"); next} /^$/ {s = 0}
       s && /^  --/ && /(augmentation|view) spec/ {print $1}'
}
# Step names of the "Steps:" list: "  name(params)" or "  name", descriptions indented further.
steps_in() { awk '/^Steps:$/ {s = 1; next} s && /^  [a-z_0-9]+(\(|$)/ {sub(/^  /, ""); sub(/\(.*/, ""); print}'; }

top="$(help_of)"
version="$("$bin" --version | awk '{print $NF}')"
summary="$(head -n1 <<<"$top" | sed 's/^augflow: //; s/\.$//')"

# Every command path: "train", "bench", "bench loader", ...
commands=()
for sub in $(subcommands_in <<<"$top"); do
  commands+=("$sub")
  for nested in $(help_of "$sub" | subcommands_in); do commands+=("$sub $nested"); done
done
[[ ${#commands[@]} -gt 0 ]] || { echo "$0: no subcommands found in '$bin --help'" >&2; exit 1; }

roff_verbatim() { sed 's/\\/\\e/g; s/^\([.'"'"']\)/\\\&\1/'; }

{
  echo ".TH AUGFLOW 1 \"\" \"augflow $version\" \"User Commands\""
  echo ".SH NAME"
  echo "augflow \\- $summary"
  echo ".SH SYNOPSIS"
  echo ".B augflow"
  echo ".I subcommand"
  echo "[\\fIoptions\\fR]"
  echo ".br"
  echo ".B augflow --version"
  echo ".SH DESCRIPTION"
  echo ".nf"
  roff_verbatim <<<"$top"
  echo ".fi"
  echo ".SH SUBCOMMANDS"
  for c in "${commands[@]}"; do
    echo ".SS \"augflow $c\""
    echo ".nf"
    # shellcheck disable=SC2086
    help_of $c | roff_verbatim
    echo ".fi"
  done
  echo ".SH EXIT STATUS"
  echo "0 on success, 1 when the run failed (unreadable data, input/output errors), 2 for a usage,"
  echo "option or spec error."
  echo ".SH SEE ALSO"
  echo "The guide: README.md and docs/ in /usr/share/doc/augflow (or the prefix augflow was"
  echo "installed into). Programs built on augflow's libraries use its CMake package:"
  echo "find_package(augflow)."
} >"$man"

steps=""
options_case=""
spec_options=""
for c in "${commands[@]}"; do
  # shellcheck disable=SC2086
  text="$(help_of $c)"
  steps="$steps $(steps_in <<<"$text")"
  spec_options="$spec_options $(spec_options_in <<<"$text")"
  options_case+="    \"$c\") opts=\"$(options_in <<<"$text" | tr '\n' ' ' | sed 's/ $//')\" ;;"$'\n'
done
steps="$(tr ' ' '\n' <<<"$steps" | awk 'NF && !seen[$0]++' | tr '\n' ' ' | sed 's/ $//')"
spec_options="$(tr ' ' '\n' <<<"$spec_options" | awk 'NF && !seen[$0]++' | tr '\n' '|' | sed 's/|$//')"
[[ -n "$steps" ]] || { echo "$0: no spec steps found in the subcommands' help" >&2; exit 1; }
nested_case=""
for sub in $(subcommands_in <<<"$top"); do
  nested="$(help_of "$sub" | subcommands_in | tr '\n' ' ' | sed 's/ $//')"
  [[ -n "$nested" ]] && nested_case+="    $sub) nested=\"$nested\" ;;"$'\n'
done

cat >"$completion" <<COMPLETION
# bash completion for augflow $version: subcommands, their options, and the step names of the
# augmentation spec. Generated from augflow's --help by scripts/cli_docs.sh; do not edit.
_augflow() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  local IFS=\$' \\t\\n'
  local command="" nested="" opts=""
  local i
  # The command path so far: the subcommand and, for bench, its nested subcommand.
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in -*) continue ;; esac
    if [[ -z \$command ]]; then
      command=\${COMP_WORDS[i]}
      case "\$command" in
$nested_case      esac
    elif [[ -n \$nested && " \$nested " == *" \${COMP_WORDS[i]} "* ]]; then
      command="\$command \${COMP_WORDS[i]}"
      nested=""
    fi
  done
  if [[ -z \$command ]]; then
    if [[ \$cur == -* ]]; then
      COMPREPLY=(\$(compgen -W "--help --version" -- "\$cur"))
    else
      COMPREPLY=(\$(compgen -W "$(subcommands_in <<<"$top" | tr '\n' ' ' | sed 's/ $//')" -- "\$cur"))
    fi
    return
  fi
  case "\$command" in
$options_case  esac
  # A spec: step names after a spec option, where the word is the quoted spec typed so far
  # ("'hflip | sc"), or after an unquoted '|' (one of bash's word breaks).
  case "\$prev" in
    $spec_options|"|")
      local word=\${cur#[\"\']} head="" lead
      if [[ \$word == *"|"* ]]; then head="\${word%|*}|"; word=\${word##*|}; fi
      lead=\${word%%[! ]*}; word=\${word#"\$lead"}
      compopt +o filenames 2>/dev/null
      mapfile -t COMPREPLY < <(compgen -P "\$head\$lead" -W "$steps" -- "\$word")
      return ;;
  esac
  if [[ \$cur == -* ]]; then
    COMPREPLY=(\$(compgen -W "\$opts" -- "\$cur"))
  elif [[ -n \$nested ]]; then
    COMPREPLY=(\$(compgen -W "\$nested" -- "\$cur"))
  else
    COMPREPLY=(\$(compgen -f -- "\$cur"))
  fi
}
complete -o filenames -o bashdefault -F _augflow augflow
COMPLETION
