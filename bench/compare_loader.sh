#!/usr/bin/env bash
# Compare augflow's streaming data loader with torchvision's
# ImageFolder + DataLoader peer (decode + resnet augmentation + batching).
#
# Usage: bench/compare_loader.sh [DATA] [--cache MB]
#   DATA defaults to <repo>/../shared/datasets/hymenoptera. It is an
#   ImageFolder root: its immediate sub-folders are the classes (for the
#   default, train and val), searched recursively; both sides get the same root.
#   --cache MB is passed to augflow only (torchvision decodes from disk every
#   epoch, as it always does).
# Env:
#   AUGFLOW      augflow binary (default <repo>/build/augflow, then <repo>/build-release/augflow)
#   EPOCHS       timed epochs for both sides, after one warm-up (default 3)
#   CONSUMER_MS  if set, both consumers sleep this many ms per batch (a simulated
#                training step) and the share of time spent waiting is reported
#
# Both sides use 2 threads/workers, batch 64 and the resnet spec. The last line
# of output is "ratio: R" with R = augflow images_per_second / torchvision
# images_per_second.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"   # PY (/usr/bin/python3), AUG_SPEC_*, find_augflow, check_peer, json_get,
                                 # cpu_watch_*

usage() {
    echo "usage: $0 [DATA] [--cache MB]" >&2
}

DATA=""
CACHE_MB=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cache)
            if [[ $# -lt 2 ]]; then
                usage
                echo "--cache needs a size in MB" >&2
                exit 2
            fi
            CACHE_MB="$2"
            shift 2
            ;;
        --cache=*)
            CACHE_MB="${1#--cache=}"
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
DATA="${DATA:-$REPO/../shared/datasets/hymenoptera}"
EPOCHS="${EPOCHS:-3}"
CONSUMER_MS="${CONSUMER_MS:-}"
THREADS=2
BATCH=64
SPEC_NAME=resnet
AUG_SPEC="$AUG_SPEC_RESNET"

if [[ -n "$CACHE_MB" && ! "$CACHE_MB" =~ ^[0-9]+$ ]]; then
    usage
    echo "--cache: '$CACHE_MB' is not a size in MB (a whole number)" >&2
    exit 2
fi
if [[ ! "$EPOCHS" =~ ^[0-9]+$ ]] || (( 10#$EPOCHS < 1 )); then
    echo "error: EPOCHS=$EPOCHS is not a positive whole number" >&2
    exit 2
fi
if [[ -n "$CONSUMER_MS" && ! "$CONSUMER_MS" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    echo "error: CONSUMER_MS=$CONSUMER_MS is not a non-negative number of milliseconds" >&2
    exit 2
fi

if [[ ! -d "$DATA" ]]; then
    echo "error: data folder '$DATA' does not exist" >&2
    usage
    exit 1
fi
DATA="$(cd "$DATA" && pwd)"

# --- locate augflow ---------------------------------------------------------
find_augflow "$REPO"

# --- check the peer ---------------------------------------------------------
check_peer

make_tmpdir compare_loader

AF_ARGS=(bench loader --data "$DATA" --aug "$AUG_SPEC" --batch "$BATCH" --threads "$THREADS"
         --epochs "$EPOCHS")
TV_ARGS=(--data "$DATA" --spec "$SPEC_NAME" --workers "$THREADS" --batch "$BATCH" --epochs "$EPOCHS")
if [[ -n "$CACHE_MB" ]]; then
    AF_ARGS+=(--cache "$CACHE_MB")
fi
if [[ -n "$CONSUMER_MS" ]]; then
    AF_ARGS+=(--consumer-ms "$CONSUMER_MS")
    TV_ARGS+=(--consumer-ms "$CONSUMER_MS")
fi

SETUP="batch $BATCH, $THREADS threads/workers, $EPOCHS epochs (+1 warm-up)"
if [[ -n "$CONSUMER_MS" ]]; then
    SETUP+=", consumer $CONSUMER_MS ms/batch"
fi
echo "== compare_loader: spec $SPEC_NAME, data $DATA, $SETUP"
if [[ -n "$CACHE_MB" ]]; then
    echo "   augflow decoded-image cache: $CACHE_MB MB (augflow only; torchvision decodes from disk every epoch)"
fi
echo

echo "== augflow ($BIN)"
echo "   spec: $AUG_SPEC"
cpu_watch_start
"$BIN" "${AF_ARGS[@]}" --json "$TMP/augflow.json"
cpu_watch_report augflow
echo

echo "== torchvision"
cpu_watch_start
"$PY" "$SCRIPT_DIR/torchvision_loader.py" "${TV_ARGS[@]}" --json "$TMP/torchvision.json"
cpu_watch_report torchvision
echo

AF_RATE="$(json_get "$TMP/augflow.json" images_per_second)"
AF_IMAGES="$(json_get "$TMP/augflow.json" dataset_images)"
AF_SKIPPED="$(json_get "$TMP/augflow.json" skipped_files)"
AF_RSS="$(json_get "$TMP/augflow.json" peak_rss_mb)"
TV_RATE="$(json_get "$TMP/torchvision.json" images_per_second)"
TV_IMAGES="$(json_get "$TMP/torchvision.json" dataset_images)"
TV_SKIPPED="$(json_get "$TMP/torchvision.json" skipped_files)"
TV_RSS="$(json_get "$TMP/torchvision.json" peak_rss_mb)"
AF_WAIT=""
TV_WAIT=""
if [[ -n "$CONSUMER_MS" ]]; then
    AF_WAIT="$(json_get "$TMP/augflow.json" consumer_wait_fraction)"
    TV_WAIT="$(json_get "$TMP/torchvision.json" consumer_wait_fraction)"
fi

if [[ "$AF_IMAGES" != "$TV_IMAGES" ]]; then
    echo "warning: image counts differ (augflow $AF_IMAGES, torchvision $TV_IMAGES)" >&2
fi

"$PY" -c 'import sys
af, tv = float(sys.argv[1]), float(sys.argv[2])
(af_images, af_skipped, af_rss, af_wait,
 tv_images, tv_skipped, tv_rss, tv_wait, cache_mb) = sys.argv[3:12]
def waited(w):
    return ", consumer waited %.1f%%" % (100.0 * float(w)) if w else ""
cache = ", cache %s MB" % cache_mb if cache_mb else ""
print("augflow loader:     %.1f images/s (%s images, %s files skipped; peak RSS %.0f MB%s%s)" % (
    af, af_images, af_skipped, float(af_rss), waited(af_wait), cache))
print("torchvision loader: %.1f images/s (%s images, %s files skipped; peak RSS %.0f MB, main + largest worker%s)" % (
    tv, tv_images, tv_skipped, float(tv_rss), waited(tv_wait)))
if tv <= 0:
    sys.exit("torchvision rate is not positive; cannot compute ratio")
print("ratio: %.2f" % (af / tv))' "$AF_RATE" "$TV_RATE" \
    "$AF_IMAGES" "$AF_SKIPPED" "$AF_RSS" "$AF_WAIT" \
    "$TV_IMAGES" "$TV_SKIPPED" "$TV_RSS" "$TV_WAIT" "$CACHE_MB"
