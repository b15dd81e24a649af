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
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"   # PY (/usr/bin/python3), AUG_SPEC_*, find_augflow, check_peer, json_get

DATA="${1:-$REPO/../shared/datasets/hymenoptera}"
SPEC_NAME="${2:-resnet}"
PASSES="${PASSES:-5}"
THREADS=2

case "$SPEC_NAME" in
    resnet) AUG_SPEC="$AUG_SPEC_RESNET" ;;
    rrc)    AUG_SPEC="$AUG_SPEC_RRC" ;;
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
find_augflow "$REPO"

# --- check the peer ---------------------------------------------------------
check_peer

make_tmpdir compare_augment

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
