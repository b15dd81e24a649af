#!/usr/bin/env bash
# Compare augflow's CPU training and inference throughput with PyTorch's
# (Debian's python3-torch on OpenBLAS) for the same model.
#
# Usage: bench/compare_train.sh [MODEL]
#   MODEL is cnn-small, resnet-mini, mlp or twolayer: augflow's preset and the
#   identical torch.nn model in bench/torch_train.py. Without MODEL: cnn-small
#   and resnet-mini, one after the other.
# Env:
#   AUGFLOW  augflow binary (default <repo>/build/augflow, then <repo>/build-release/augflow)
#   STEPS    timed steps per repeat for both sides (default: each side's own,
#            50 for torch); raise it for mlp/twolayer, whose steps are short
#
# Both sides: batch 128, 2 threads, random 1x28x28 inputs, 10 classes,
# cross-entropy, Adam; training = forward + loss + backward + step, inference =
# forward in eval mode. torch_train.py refuses to run unless OpenBLAS is the
# selected BLAS (the reference BLAS makes torch's linear layers ~5x slower).
# Each model's summary ends with "ratio MODEL: R", R = augflow
# train_samples_per_second / torch train_samples_per_second, and augflow's
# conv + fc kernels' fraction of the machine's FP32 peak. The last line of
# output is "ratio: R", the smallest of the models' ratios.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"   # PY (/usr/bin/python3), find_augflow, json_get, make_tmpdir,
                                 # cpu_watch_*

usage() {
    echo "usage: $0 [cnn-small|resnet-mini|mlp|twolayer]" >&2
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
MODELS=("${MODEL:-cnn-small}")
[[ -n "$MODEL" ]] || MODELS=(cnn-small resnet-mini)
STEPS="${STEPS:-}"
THREADS=2
BATCH=128

for m in "${MODELS[@]}"; do
    case "$m" in
        cnn-small|resnet-mini|mlp|twolayer) ;;
        *)
            usage
            echo "error: unknown model '$m' (torch_train.py has cnn-small, resnet-mini, mlp, twolayer)" >&2
            exit 2
            ;;
    esac
done
if [[ -n "$STEPS" ]] && { [[ ! "$STEPS" =~ ^[0-9]+$ ]] || (( 10#$STEPS < 1 )); }; then
    echo "error: STEPS=$STEPS is not a positive whole number" >&2
    exit 2
fi

# --- locate augflow ---------------------------------------------------------
find_augflow "$REPO"

# --- check the peer (torch importable, on OpenBLAS) -------------------------
check_torch_peer

make_tmpdir compare_train

RATIOS=()
for MODEL in "${MODELS[@]}"; do
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
    "$BIN" "${AF_ARGS[@]}" --json "$TMP/augflow-$MODEL.json"
    cpu_watch_report augflow
    echo

    echo "== torch"
    cpu_watch_start
    "$PY" "$SCRIPT_DIR/torch_train.py" "${PT_ARGS[@]}" --json "$TMP/torch-$MODEL.json"
    cpu_watch_report torch
    echo

    AF_TRAIN="$(json_get "$TMP/augflow-$MODEL.json" train_samples_per_second)"
    AF_INFER="$(json_get "$TMP/augflow-$MODEL.json" infer_samples_per_second)"
    AF_GFLOPS="$(json_get "$TMP/augflow-$MODEL.json" gflops)"
    AF_PEAK="$(json_get "$TMP/augflow-$MODEL.json" peak_gflops)"
    AF_FRACTION="$(json_get "$TMP/augflow-$MODEL.json" fraction_of_peak)"
    PT_TRAIN="$(json_get "$TMP/torch-$MODEL.json" train_samples_per_second)"
    PT_INFER="$(json_get "$TMP/torch-$MODEL.json" infer_samples_per_second)"
    PT_GFLOPS="$(json_get "$TMP/torch-$MODEL.json" gflops)"
    PT_BLAS="$(json_get "$TMP/torch-$MODEL.json" blas)"

    "$PY" -c 'import sys
model = sys.argv[1]
af_train, af_infer, af_gflops, af_peak, af_fraction, pt_train, pt_infer, pt_gflops = map(float, sys.argv[2:10])
blas = sys.argv[10]
print("augflow train:     %9.1f samples/s (%.2f GFLOP/s), inference %9.1f samples/s" % (
    af_train, af_gflops, af_infer))
print("augflow conv + fc kernels: %.1f %% of the FP32 peak (%.1f GFLOP/s)" % (100 * af_fraction, af_peak))
print("torch train:       %9.1f samples/s (%.2f GFLOP/s), inference %9.1f samples/s" % (
    pt_train, pt_gflops, pt_infer))
print("torch BLAS: %s" % blas)
if pt_train <= 0 or pt_infer <= 0:
    sys.exit("torch rate is not positive; cannot compute ratio")
print("inference ratio (augflow / torch): %.2f" % (af_infer / pt_infer))
print("ratio %s: %.2f" % (model, af_train / pt_train))' "$MODEL" "$AF_TRAIN" "$AF_INFER" "$AF_GFLOPS" \
        "$AF_PEAK" "$AF_FRACTION" "$PT_TRAIN" "$PT_INFER" "$PT_GFLOPS" "$PT_BLAS" | tee "$TMP/summary-$MODEL.txt"
    RATIOS+=("$(sed -n 's/^ratio [^:]*: //p' "$TMP/summary-$MODEL.txt")")
    echo
done

# The smallest ratio: the one a target must be met by.
"$PY" -c 'import sys
print("ratio: %.2f" % min(map(float, sys.argv[1:])))' "${RATIOS[@]}"
