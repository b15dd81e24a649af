#!/usr/bin/env bash
# Installs what is missing, builds Release, then runs the main job.
# Until training lands (issue 4) the main job is a preview of the default ResNet-style
# augmentation: a contact sheet of what training sees, written to demo-preview.png.
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
