#!/usr/bin/env bash
# Installs what is missing, builds Release, then runs the main job:
#  1. a preview of the default ResNet-style augmentation (demo-preview.png), and
#  2. training the default model (cnn-small) on Fashion-MNIST for DEMO_EPOCHS epochs (default
#     5, a few minutes on 2 cores), validated on the Fashion-MNIST test set, whose accuracy
#     after the last epoch is printed (no model selection on the test set).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target augflow

source=testcard
hymenoptera="$root/../shared/datasets/hymenoptera/train/bees"
[[ -d "$hymenoptera" ]] && source="$hymenoptera"
./build/augflow preview "$source" \
  --aug 'hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | affine(rotate=10,shear=5) | normalize(imagenet)' \
  --n 11 --seed 1 --out demo-preview.png
echo "demo: open demo-preview.png to see what training sees"

epochs="${DEMO_EPOCHS:-5}"
run=runs/demo-fashion-mnist
./build/augflow train --train fashion-mnist --val fashion-mnist:test --model cnn-small \
  --aug 'pad_crop(2,28) | hflip | normalize(none)' --epochs "$epochs" --batch 64 \
  --optimizer adam --lr 1e-3 --schedule cosine --seed 1 --out "$run"
accuracy=$(grep -o '"final_val_accuracy": [0-9.]*' "$run/summary.json" | awk '{print $2}')
echo "demo: Fashion-MNIST test accuracy after $epochs epochs of cnn-small: $accuracy (run folder $run)"
