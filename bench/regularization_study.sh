#!/usr/bin/env bash
# The regularizers' effect, measured: train a small CNN from scratch on an image
# folder with and without augmentation, and with and without dropout + L2, over
# several seeds, and print a table of validation accuracies.
#
# Usage: bench/regularization_study.sh [DATA]
#   DATA is a folder with train/ and val/ sub-folders in ImageFolder layout
#   (default ../shared/datasets/hymenoptera next to the repository).
# Env:
#   AUGFLOW  augflow binary (default <repo>/build/augflow)
#   SEEDS    seeds per configuration (default "1 2 3")
#   EPOCHS   epochs per run (default 30)
#   OUT      folder for the runs (default: a temporary folder, removed at exit)
#
# The four configurations (64x64 inputs, the ResNet recipe scaled by 64/224):
#   plain         center_crop(73,64) only (the same deterministic view every epoch)
#   augment       hflip | scale_crop(73,137,64) | jitter(brightness=0.4,contrast=0.4)
#   regularize    plain data, drop0.5 before the classifier and --reg l2:5e-4
#   both          augment + regularize
# All runs: Adam 1e-3 with a cosine schedule, batch 16, decoded images cached.
# The table gives the mean (and spread) over the seeds of the final validation
# accuracy (last epoch, no model selection) and of the best epoch's.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"   # PY, find_augflow, json_get, make_tmpdir

case "${1:-}" in
    -h|--help)
        sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
        exit 0
        ;;
esac
DATA="${1:-$REPO/../shared/datasets/hymenoptera}"
if [[ ! -d "$DATA/train" || ! -d "$DATA/val" ]]; then
    echo "error: $DATA must hold train/ and val/ image folders (ImageFolder layout)" >&2
    exit 1
fi
SEEDS="${SEEDS:-1 2 3}"
EPOCHS="${EPOCHS:-30}"
find_augflow "$REPO"
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    RUNS="$OUT"
else
    make_tmpdir regularization_study
    RUNS="$TMP"
fi

BASE='conv16k3p1-bn-relu-pool2-conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-pool2-fc64-relu'
PLAIN_AUG='center_crop(73,64) | normalize(imagenet)'
RICH_AUG='hflip | scale_crop(73,137,64) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)'

run() {  # NAME MODEL AUG REG
    local name="$1" model="$2" aug="$3" reg="$4" seed
    for seed in $SEEDS; do
        "$BIN" train --train "$DATA/train" --val "$DATA/val" --model "$model" --aug "$aug" --reg "$reg" \
            --epochs "$EPOCHS" --batch 16 --optimizer adam --lr 1e-3 --schedule cosine --cache 256 \
            --seed "$seed" --threads 2 --out "$RUNS/$name-$seed" >"$RUNS/$name-$seed.log" 2>&1 || {
            echo "error: run $name seed $seed failed; see $RUNS/$name-$seed.log" >&2
            tail -5 "$RUNS/$name-$seed.log" >&2
            exit 1
        }
        echo "  $name seed $seed: final $(json_get "$RUNS/$name-$seed/summary.json" final_val_accuracy)," \
             "best $(json_get "$RUNS/$name-$seed/summary.json" best_val_accuracy)" >&2
    done
}

echo "data: $DATA, $EPOCHS epochs, seeds: $SEEDS" >&2
run plain "$BASE-fc2" "$PLAIN_AUG" none
run augment "$BASE-fc2" "$RICH_AUG" none
run regularize "$BASE-drop0.5-fc2" "$PLAIN_AUG" l2:5e-4
run both "$BASE-drop0.5-fc2" "$RICH_AUG" l2:5e-4

"$PY" - "$RUNS" "$SEEDS" <<'EOF'
import json, statistics, sys
runs, seeds = sys.argv[1], sys.argv[2].split()
print("| configuration | augmentation | dropout + L2 | final val acc | best val acc | train acc (last epoch) |")
print("|---|---|---|---|---|---|")
for name, aug, reg in [("plain", "no", "no"), ("augment", "yes", "no"), ("regularize", "no", "yes"), ("both", "yes", "yes")]:
    final, best, train = [], [], []
    for s in seeds:
        d = json.load(open(f"{runs}/{name}-{s}/summary.json"))
        final.append(100 * d["final_val_accuracy"])
        best.append(100 * d["best_val_accuracy"])
        last = open(f"{runs}/{name}-{s}/metrics.csv").read().strip().splitlines()[-1].split(",")
        train.append(100 * float(last[2]))
    def fmt(v):
        return f"{statistics.mean(v):.1f} % (±{statistics.pstdev(v):.1f})" if len(v) > 1 else f"{v[0]:.1f} %"
    print(f"| {name} | {aug} | {reg} | {fmt(final)} | {fmt(best)} | {fmt(train)} |")
EOF
