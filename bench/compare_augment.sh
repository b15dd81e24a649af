#!/usr/bin/env bash
# Compare augflow's decode+augment throughput with the torchvision peer.
#
# Usage: bench/compare_augment.sh [DATA] [resnet|rrc]
#   DATA defaults to <repo>/../shared/datasets/hymenoptera, spec to resnet.
# Env:
#   AUGFLOW  augflow binary (default <repo>/build/augflow, then <repo>/build-release/augflow)
#   PASSES   timed passes for both sides (default 5)
#
# Both sides use 2 threads/workers on the same folder. The last line of output
# is "ratio: R" with R = augflow decode_augment_images_per_second /
# torchvision images_per_second.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# torch/torchvision come from Debian packages: only the system interpreter
# sees them (a pyenv python3 earlier on PATH does not).
PY=/usr/bin/python3

DATA="${1:-$REPO/../shared/datasets/hymenoptera}"
SPEC_NAME="${2:-resnet}"
PASSES="${PASSES:-5}"
THREADS=2

case "$SPEC_NAME" in
    resnet) AUG_SPEC='hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)' ;;
    rrc)    AUG_SPEC='resized_crop(224) | hflip | jitter(0.4,0.4,0.4) | normalize(imagenet)' ;;
    *)
        echo "usage: $0 [DATA] [resnet|rrc]" >&2
        echo "unknown spec '$SPEC_NAME' (expected resnet or rrc)" >&2
        exit 2
        ;;
esac

if [[ ! -d "$DATA" ]]; then
    echo "error: data folder '$DATA' does not exist" >&2
    echo "usage: $0 [DATA] [resnet|rrc]" >&2
    exit 1
fi
DATA="$(cd "$DATA" && pwd)"

# --- locate augflow ---------------------------------------------------------
if [[ -n "${AUGFLOW:-}" ]]; then
    if [[ ! -x "$AUGFLOW" ]]; then
        echo "error: AUGFLOW=$AUGFLOW is not an executable file" >&2
        exit 1
    fi
    BIN="$AUGFLOW"
elif [[ -x "$REPO/build/augflow" ]]; then
    BIN="$REPO/build/augflow"
elif [[ -x "$REPO/build-release/augflow" ]]; then
    BIN="$REPO/build-release/augflow"
else
    cat >&2 <<EOF
error: augflow binary not found (looked for \$AUGFLOW, $REPO/build/augflow,
$REPO/build-release/augflow). Build it first, either with
    scripts/demo.sh
or
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2
(from $REPO), or point AUGFLOW at an existing binary.
EOF
    exit 1
fi

# --- check the peer ---------------------------------------------------------
if [[ ! -x "$PY" ]] || ! "$PY" -c 'import torch, torchvision' >/dev/null 2>&1; then
    cat >&2 <<EOF
error: $PY cannot import torch/torchvision (the torchvision peer).
Install Debian's packages, as root:
    apt-get install python3-torchvision
(the project's scripts/deps.sh installs it). They are only visible to
$PY, not to a pyenv/venv python3 earlier on PATH.
EOF
    exit 1
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/compare_augment.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# json_get FILE KEY: print a numeric JSON field (fails if missing).
json_get() {
    "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
if sys.argv[2] not in d:
    sys.exit("%s: missing key %s" % (sys.argv[1], sys.argv[2]))
print(d[sys.argv[2]])' "$1" "$2"
}

echo "== compare_augment: spec $SPEC_NAME, data $DATA, $THREADS threads"
echo

echo "== augflow ($BIN)"
echo "   spec: $AUG_SPEC"
"$BIN" bench augment --data "$DATA" --aug "$AUG_SPEC" --threads "$THREADS" --passes "$PASSES" \
    --json "$TMP/augflow.json"
echo

echo "== torchvision"
"$PY" "$SCRIPT_DIR/torchvision_augment.py" --data "$DATA" --spec "$SPEC_NAME" \
    --workers "$THREADS" --passes "$PASSES" --json "$TMP/torchvision.json"
echo

AF_RATE="$(json_get "$TMP/augflow.json" decode_augment_images_per_second)"
AF_IMAGES="$(json_get "$TMP/augflow.json" images)"
AF_SKIPPED="$(json_get "$TMP/augflow.json" skipped_files)"
TV_RATE="$(json_get "$TMP/torchvision.json" images_per_second)"
TV_IMAGES="$(json_get "$TMP/torchvision.json" images)"

if [[ "$AF_IMAGES" != "$TV_IMAGES" ]]; then
    echo "warning: image counts differ (augflow $AF_IMAGES, torchvision $TV_IMAGES)" >&2
fi

"$PY" -c 'import sys
af, tv = float(sys.argv[1]), float(sys.argv[2])
print("augflow decode+augment: %.1f images/s (%s images, %s files skipped)" % (af, sys.argv[3], sys.argv[4]))
print("torchvision:            %.1f images/s (%s images)" % (tv, sys.argv[5]))
if tv <= 0:
    sys.exit("torchvision rate is not positive; cannot compute ratio")
print("ratio: %.2f" % (af / tv))' "$AF_RATE" "$TV_RATE" "$AF_IMAGES" "$AF_SKIPPED" "$TV_IMAGES"
