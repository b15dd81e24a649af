#!/usr/bin/env bash
# Transfer learning on a small photo folder (default: hymenoptera, ants vs bees, 244 usable
# training photos): pretrain resnet-mini on a generated 10-class objects folder, export it as
# ONNX, then train on the photos three ways for the same number of epochs and report the
# validation accuracy and the training time of each:
#   head     --init pretrained.onnx --freeze -1   (a fresh 2-class head on the frozen body)
#   full     --init pretrained.onnx               (every layer, from the pretrained weights)
#   scratch  --model resnet-mini                  (random initialisation)
# Usage: bench/transfer_learning.sh [PHOTOS_DIR] [PRETRAIN_EPOCHS] [EPOCHS] [SEEDS]
#   PHOTOS_DIR       an ImageFolder with train/ and val/ (default ../shared/datasets/hymenoptera)
#   PRETRAIN_EPOCHS  epochs on the objects folder (default 6)
#   EPOCHS           epochs of each run on the photos (default 15)
#   SEEDS            seeds per mode; the table shows medians (default 3)
# The binary is $AUGFLOW, else the project's build; augflow_make_images is found beside it.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
source "$SCRIPT_DIR/common.sh"
find_augflow "$REPO"
MAKE_IMAGES="$(dirname "$BIN")/augflow_make_images"
[[ -x "$MAKE_IMAGES" ]] || { echo "error: $MAKE_IMAGES not found (build the augflow_make_images target)" >&2; exit 1; }

PHOTOS="${1:-$REPO/../shared/datasets/hymenoptera}"
PRETRAIN_EPOCHS="${2:-6}"
EPOCHS="${3:-15}"
SEEDS="${4:-3}"
[[ -d "$PHOTOS/train" && -d "$PHOTOS/val" ]] || { echo "error: $PHOTOS has no train/ and val/ folders" >&2; exit 1; }
make_tmpdir transfer_learning

SIZE=64
AUG="hflip | scale_crop(72,96,$SIZE) | jitter(brightness=0.3,contrast=0.3) | normalize(imagenet)"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"

echo "== pretraining resnet-mini on 20,000 generated objects (${SIZE}x${SIZE}, 10 classes), $PRETRAIN_EPOCHS epochs"
"$MAKE_IMAGES" --kind objects --out "$TMP/objects" --count 25000 --width $SIZE --height $SIZE --split 0.2 --seed 1 >/dev/null
start=$(date +%s.%N)
"$BIN" train --train "$TMP/objects/train" --val "$TMP/objects/test" --model resnet-mini \
  --aug "pad_crop(6,$SIZE) | hflip | normalize(imagenet)" --epochs "$PRETRAIN_EPOCHS" --schedule cosine \
  --seed 1 --out "$TMP/pretrain" >"$TMP/pretrain.log" 2>&1
pretrain_seconds=$(awk "BEGIN {print $(date +%s.%N) - $start}")
pretrain_acc=$(sed -n 's/.*"best_val_accuracy": *\([0-9.]*\).*/\1/p' "$TMP/pretrain/summary.json")
printf 'pretrained: objects val accuracy %.4f in %.0f s\n' "$pretrain_acc" "$pretrain_seconds"
"$BIN" export "$TMP/pretrain/best.ckpt" --out "$TMP/pretrained.onnx" >/dev/null

# run MODE SEED: one training run on the photos; prints "accuracy seconds".
run() {
  local mode="$1" seed="$2" out="$TMP/$1-$2" args=()
  case "$mode" in
    head) args=(--init "$TMP/pretrained.onnx" --freeze -1 --lr 3e-3) ;;
    full) args=(--init "$TMP/pretrained.onnx" --lr 1e-3) ;;
    scratch) args=(--model resnet-mini --lr 1e-3) ;;
  esac
  local t0 t1
  t0=$(date +%s.%N)
  "$BIN" train --train "$PHOTOS/train" --val "$PHOTOS/val" --aug "$AUG" --epochs "$EPOCHS" --schedule cosine \
    --seed "$seed" "${args[@]}" --out "$out" >"$out.log" 2>&1
  t1=$(date +%s.%N)
  printf '%s %s\n' "$(sed -n 's/.*"best_val_accuracy": *\([0-9.]*\).*/\1/p' "$out/summary.json")" "$(awk "BEGIN {print $t1 - $t0}")"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "== $EPOCHS epochs on $(basename "$PHOTOS") (${SIZE}x${SIZE}), $SEEDS seeds each"
printf '%-8s %12s %12s   %s\n' mode val_accuracy seconds "per seed (accuracy/seconds)"
for mode in head full scratch; do
  results=()
  for seed in $(seq 1 "$SEEDS"); do results+=("$(run "$mode" "$seed")"); done
  acc=$(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | median)
  secs=$(printf '%s\n' "${results[@]}" | cut -d' ' -f2 | median)
  printf '%-8s %12.4f %12.1f   %s\n' "$mode" "$acc" "$secs" "$(printf '%s ' "${results[@]/ //}")"
done
