#!/usr/bin/env bash
# Trials per hour of `augflow search` with --parallel 1 and --parallel 2 on the same trials
# (the two-layer net on Fashion-MNIST, 5 epochs each, 2 threads), alternating the two settings
# ROUNDS times so that a shared machine's load hits both alike; prints every run, the medians
# and `ratio: R` (parallel 2 over parallel 1; the issue's target is >= 1.7 on 2 cores).
#
# Usage: bench/search_parallel.sh [TRIALS] [ROUNDS]      (defaults 8 and 3)
# Env:   AUGFLOW (binary), EPOCHS (default 5)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/bench/common.sh"
find_augflow "$repo"
trials="${1:-8}"
rounds="${2:-3}"
epochs="${EPOCHS:-5}"
make_tmpdir augflow_search_parallel

rate() {  # parallel -> trials per hour (from the line augflow search ends with)
  local out="$TMP/p$1"
  rm -rf "$out"
  "$BIN" search --train fashion-mnist --val-split 0.1 --model twolayer --aug 'normalize(none)' \
    --space 'lr=log(1e-4,1e-2) reg=log(1e-5,1e-3)' --trials "$trials" --epochs "$epochs" \
    --threads 2 --parallel "$1" --seed 1 --out "$out" | sed -n 's/.*(\([0-9.]*\) trials\/hour.*/\1/p'
}

one=()
two=()
for ((r = 1; r <= rounds; ++r)); do
  one+=("$(rate 1)")
  two+=("$(rate 2)")
  echo "round $r: --parallel 1: ${one[-1]} trials/hour, --parallel 2: ${two[-1]} trials/hour"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
m1="$(median "${one[@]}")"
m2="$(median "${two[@]}")"
echo "median: --parallel 1: $m1 trials/hour, --parallel 2: $m2 trials/hour ($trials trials of $epochs epochs)"
awk -v a="$m2" -v b="$m1" 'BEGIN {printf "ratio: %.2f\n", a / b}'
