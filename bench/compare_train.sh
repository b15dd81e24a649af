#!/usr/bin/env bash
# Compare augflow's CPU training and inference throughput with PyTorch's
# (Debian's python3-torch on OpenBLAS) for the same model.
#
# Usage: bench/compare_train.sh [MODEL]
#   MODEL is cnn-small (default), mlp or twolayer: augflow's preset and the
#   identical torch.nn model in bench/torch_train.py.
# Env:
#   AUGFLOW  augflow binary (default <repo>/build/augflow, then <repo>/build-release/augflow)
#   STEPS    timed steps per repeat for both sides (default: each side's own,
#            50 for torch); raise it for mlp/twolayer, whose steps are short
#
# Both sides: batch 128, 2 threads, random 1x28x28 inputs, 10 classes,
# cross-entropy, Adam; training = forward + loss + backward + step, inference =
# forward in eval mode. torch_train.py refuses to run unless OpenBLAS is the
# selected BLAS (the reference BLAS makes torch's linear layers ~5x slower).
# The last line of output is "ratio: R" with R = augflow
# train_samples_per_second / torch train_samples_per_second.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"   # PY (/usr/bin/python3), find_augflow, json_get, make_tmpdir,
                                 # cpu_watch_*

usage() {
    echo "usage: $0 [cnn-small|mlp|twolayer]" >&2
}

MODEL=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help)
            sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
            exit 0
            ;;
        -*)
            usage
            echo "unknown option '$1'" >&2
            exit 2
            ;;
        *)
            if [[ -n "$MODEL" ]]; then
                usage
                echo "unexpected argument '$1' (MODEL is already '$MODEL')" >&2
                exit 2
            fi
            MODEL="$1"
            shift
            ;;
    esac
done
MODEL="${MODEL:-cnn-small}"
STEPS="${STEPS:-}"
THREADS=2
BATCH=128

case "$MODEL" in
    cnn-small|mlp|twolayer) ;;
    *)
        usage
        echo "error: unknown model '$MODEL' (torch_train.py has cnn-small, mlp, twolayer)" >&2
        exit 2
        ;;
esac
if [[ -n "$STEPS" ]] && { [[ ! "$STEPS" =~ ^[0-9]+$ ]] || (( 10#$STEPS < 1 )); }; then
    echo "error: STEPS=$STEPS is not a positive whole number" >&2
    exit 2
fi

# --- locate augflow ---------------------------------------------------------
find_augflow "$REPO"

# --- check the peer (torch importable, on OpenBLAS) -------------------------
check_torch_peer

make_tmpdir compare_train

AF_ARGS=(bench train --model "$MODEL" --batch "$BATCH" --threads "$THREADS")
PT_ARGS=(--model "$MODEL" --batch "$BATCH" --threads "$THREADS")
if [[ -n "$STEPS" ]]; then
    AF_ARGS+=(--steps "$STEPS")
    PT_ARGS+=(--steps "$STEPS")
fi

echo "== compare_train: model $MODEL, batch $BATCH, $THREADS threads${STEPS:+, $STEPS steps}"
echo

echo "== augflow ($BIN)"
cpu_watch_start
"$BIN" "${AF_ARGS[@]}" --json "$TMP/augflow.json"
cpu_watch_report augflow
echo

echo "== torch"
cpu_watch_start
"$PY" "$SCRIPT_DIR/torch_train.py" "${PT_ARGS[@]}" --json "$TMP/torch.json"
cpu_watch_report torch
echo

AF_TRAIN="$(json_get "$TMP/augflow.json" train_samples_per_second)"
AF_INFER="$(json_get "$TMP/augflow.json" infer_samples_per_second)"
AF_GFLOPS="$(json_get "$TMP/augflow.json" gflops)"
PT_TRAIN="$(json_get "$TMP/torch.json" train_samples_per_second)"
PT_INFER="$(json_get "$TMP/torch.json" infer_samples_per_second)"
PT_GFLOPS="$(json_get "$TMP/torch.json" gflops)"
PT_BLAS="$(json_get "$TMP/torch.json" blas)"

"$PY" -c 'import sys
af_train, af_infer, af_gflops, pt_train, pt_infer, pt_gflops = map(float, sys.argv[1:7])
blas = sys.argv[7]
print("augflow train:     %9.1f samples/s (%.2f GFLOP/s), inference %9.1f samples/s" % (
    af_train, af_gflops, af_infer))
print("torch train:       %9.1f samples/s (%.2f GFLOP/s), inference %9.1f samples/s" % (
    pt_train, pt_gflops, pt_infer))
print("torch BLAS: %s" % blas)
if pt_train <= 0 or pt_infer <= 0:
    sys.exit("torch rate is not positive; cannot compute ratio")
print("inference ratio (augflow / torch): %.2f" % (af_infer / pt_infer))
print("ratio: %.2f" % (af_train / pt_train))' "$AF_TRAIN" "$AF_INFER" "$AF_GFLOPS" \
    "$PT_TRAIN" "$PT_INFER" "$PT_GFLOPS" "$PT_BLAS"
