#!/usr/bin/env bash
# Compare augflow's test-time evaluation speed (`augflow eval`) with torchvision's
# TenCrop recipe + the same PyTorch model (bench/torch_eval.py).
#
# Usage: bench/compare_eval.sh [DATA] [--views tencrop|center]
#   DATA defaults to <repo>/../shared/datasets/hymenoptera/val: an ImageFolder
#   root (its immediate sub-folders are the classes, searched recursively).
#   --views tencrop (default): Resize(256) + TenCrop(224), 10 views per image,
#   softmax averaged over the views; center: Resize(256) + CenterCrop(224).
# Env:
#   AUGFLOW  augflow binary (default <repo>/build/augflow, then <repo>/build-release/augflow)
#   MODEL    augflow compact model spec for both sides (default
#            conv16k3s2p1-bn-relu-pool2-conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-gap-fc2;
#            the last fc must have as many outputs as DATA has classes)
#   REPEATS  timed passes over DATA for both sides, median reported (default 3)
#   TRAIN    training folder for augflow's checkpoint (default DATA/../train)
#   CKPT     an existing augflow checkpoint of MODEL to evaluate instead
#            (skips the training run)
#
# augflow evaluates a checkpoint, so one is trained first in a temporary
# folder: one epoch of MODEL on TRAIN (batch 16, 2 threads; not timed). The
# PyTorch model has the same layers with random weights (speed is compared,
# accuracy is only reported). Both sides use 2 threads (torch: 2 intra-op
# threads for the model + 2 DataLoader workers, batch 12 images = 120 views).
# torch_eval.py refuses to run unless OpenBLAS is the selected BLAS. The last
# line of output is "ratio: R" with R = augflow images_per_second / torch
# images_per_second.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"   # PY (/usr/bin/python3), find_augflow, check_peer, check_torch_peer,
                                 # json_get, make_tmpdir, cpu_watch_*

usage() {
    echo "usage: $0 [DATA] [--views tencrop|center]" >&2
}

DATA=""
VIEWS=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --views)
            if [[ $# -lt 2 ]]; then
                usage
                echo "--views needs tencrop or center" >&2
                exit 2
            fi
            VIEWS="$2"
            shift 2
            ;;
        --views=*)
            VIEWS="${1#--views=}"
            shift
            ;;
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
            if [[ -n "$DATA" ]]; then
                usage
                echo "unexpected argument '$1' (DATA is already '$DATA')" >&2
                exit 2
            fi
            DATA="$1"
            shift
            ;;
    esac
done
DATA="${DATA:-$REPO/../shared/datasets/hymenoptera/val}"
VIEWS="${VIEWS:-tencrop}"
MODEL="${MODEL:-conv16k3s2p1-bn-relu-pool2-conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-gap-fc2}"
REPEATS="${REPEATS:-3}"
CKPT="${CKPT:-}"
THREADS=2
PEER_BATCH=12
TRAIN_AUG='hflip | scale_crop(256,480,224) | normalize(imagenet)'

case "$VIEWS" in
    tencrop|center) ;;
    *)
        usage
        echo "error: unknown views '$VIEWS' (expected tencrop or center)" >&2
        exit 2
        ;;
esac
if [[ ! "$REPEATS" =~ ^[0-9]+$ ]] || (( 10#$REPEATS < 1 )); then
    echo "error: REPEATS=$REPEATS is not a positive whole number" >&2
    exit 2
fi
if [[ -z "$MODEL" ]]; then
    echo "error: MODEL is empty" >&2
    exit 2
fi
if [[ ! -d "$DATA" ]]; then
    echo "error: data folder '$DATA' does not exist" >&2
    usage
    exit 1
fi
DATA="$(cd "$DATA" && pwd)"
if [[ -n "$CKPT" ]]; then
    if [[ ! -f "$CKPT" ]]; then
        echo "error: CKPT=$CKPT is not a file" >&2
        exit 1
    fi
else
    TRAIN="${TRAIN:-$(dirname "$DATA")/train}"
    if [[ ! -d "$TRAIN" ]]; then
        echo "error: training folder '$TRAIN' (for augflow's checkpoint) does not exist;" \
             "set TRAIN to one with the classes of $DATA, or CKPT to a checkpoint of MODEL" >&2
        exit 1
    fi
    TRAIN="$(cd "$TRAIN" && pwd)"
fi

# --- locate augflow ---------------------------------------------------------
find_augflow "$REPO"
# (`augflow eval --help` exits 0 even without eval: the top-level help answers it.)
if [[ ! "$("$BIN" --help 2>/dev/null || true)" =~ $'\n'[[:space:]]+eval[[:space:]] ]]; then
    echo "error: $BIN has no 'eval' subcommand (rebuild it, or point AUGFLOW at a newer binary)" >&2
    exit 1
fi

# --- check the peer (torchvision importable, torch on OpenBLAS) -------------
check_peer
check_torch_peer

make_tmpdir compare_eval

echo "== compare_eval: views $VIEWS, data $DATA, $THREADS threads/workers, $REPEATS passes (median)"
echo "   model: $MODEL"
echo

if [[ -z "$CKPT" ]]; then
    echo "== augflow checkpoint: 1 epoch on $TRAIN (not timed)"
    "$BIN" train --train "$TRAIN" --val "$DATA" --model "$MODEL" --aug "$TRAIN_AUG" \
        --epochs 1 --batch 16 --threads "$THREADS" --out "$TMP/run" > "$TMP/train.log" 2>&1 || {
        cat "$TMP/train.log" >&2
        echo "error: augflow train failed (log above)" >&2
        exit 1
    }
    CKPT="$TMP/run/last.ckpt"
    if [[ ! -f "$CKPT" ]]; then
        cat "$TMP/train.log" >&2
        echo "error: augflow train wrote no $CKPT" >&2
        exit 1
    fi
    tail -n 3 "$TMP/train.log" | sed 's/^/   /'
    echo
fi

echo "== augflow ($BIN)"
cpu_watch_start
"$BIN" eval --data "$DATA" --model "$CKPT" --views "$VIEWS" --threads "$THREADS" \
    --repeats "$REPEATS" --json "$TMP/augflow.json"
cpu_watch_report augflow
echo

echo "== torch"
cpu_watch_start
"$PY" "$SCRIPT_DIR/torch_eval.py" --data "$DATA" --views "$VIEWS" --model "$MODEL" \
    --batch "$PEER_BATCH" --workers "$THREADS" --threads "$THREADS" --repeats "$REPEATS" \
    --json "$TMP/torch.json"
cpu_watch_report torch
echo

AF_RATE="$(json_get "$TMP/augflow.json" images_per_second)"
AF_VIEWS="$(json_get "$TMP/augflow.json" views_per_image)"
AF_TOP1="$(json_get "$TMP/augflow.json" top1)"
AF_IMAGES="$(json_get "$TMP/augflow.json" images)"
AF_SKIPPED="$(json_get "$TMP/augflow.json" skipped_files)"
PT_RATE="$(json_get "$TMP/torch.json" images_per_second)"
PT_VIEWS="$(json_get "$TMP/torch.json" views_per_image)"
PT_TOP1="$(json_get "$TMP/torch.json" top1)"
PT_IMAGES="$(json_get "$TMP/torch.json" images)"
PT_SKIPPED="$(json_get "$TMP/torch.json" skipped_files)"
PT_BLAS="$(json_get "$TMP/torch.json" blas)"

if [[ "$AF_IMAGES" != "$PT_IMAGES" ]]; then
    echo "warning: image counts differ (augflow $AF_IMAGES, torch $PT_IMAGES)" >&2
fi
if [[ "$AF_VIEWS" != "$PT_VIEWS" ]]; then
    echo "warning: views per image differ (augflow $AF_VIEWS, torch $PT_VIEWS)" >&2
fi

"$PY" -c 'import sys
af, pt = float(sys.argv[1]), float(sys.argv[2])
af_views, af_top1, af_images, af_skipped, pt_views, pt_top1, pt_images, pt_skipped = sys.argv[3:11]
blas = sys.argv[11]
print("augflow eval: %8.1f images/s (%s views/image, %.1f views/s), top-1 %.4f (%s images, %s files skipped; trained 1 epoch)" % (
    af, af_views, af * float(af_views), float(af_top1), af_images, af_skipped))
print("torch eval:   %8.1f images/s (%s views/image, %.1f views/s), top-1 %.4f (%s images, %s files skipped; random weights)" % (
    pt, pt_views, pt * float(pt_views), float(pt_top1), pt_images, pt_skipped))
print("torch BLAS: %s" % blas)
if pt <= 0:
    sys.exit("torch rate is not positive; cannot compute ratio")
print("ratio: %.2f" % (af / pt))' "$AF_RATE" "$PT_RATE" \
    "$AF_VIEWS" "$AF_TOP1" "$AF_IMAGES" "$AF_SKIPPED" \
    "$PT_VIEWS" "$PT_TOP1" "$PT_IMAGES" "$PT_SKIPPED" "$PT_BLAS"
