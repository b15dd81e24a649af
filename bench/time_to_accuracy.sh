#!/usr/bin/env bash
# Time to accuracy: augflow and its PyTorch peer train the same model on the same data for
# the same wall-clock budgets, in the same run, and the script reports the test accuracy each
# reaches and when, per run and as medians over the seeds.
#
# Usage: bench/time_to_accuracy.sh [--data fashion-mnist|objects] [--budgets "5 10"]
#          [--seeds 3] [--model M] [--peer-budget-factor F] [--objects-dir DIR]
#          [--json FILE] [--plot FILE]
#   --data      fashion-mnist (default; the IDX files in /usr/share/datasets/fashion-mnist)
#               or objects: a colour 32x32 JPEG image folder (50000 train, 10000 test, 10
#               classes) written by augflow_make_images --kind objects, next to the binary
#   --budgets   wall-clock minutes per run, one run per budget and seed (default "5 10");
#               the first is the one whose accuracy is the target below
#   --seeds     seeds 1..N (default 3)
#   --model     augflow model spec or preset (default cnn-small); the peer builds the same
#               layers from the same string (bench/torch_models.py)
#   --peer-budget-factor F   the peer trains F times each budget (default 1, the same):
#               above 1 it shows when the peer gets to augflow's accuracy if it is slower
#   --objects-dir DIR        reuse DIR/train and DIR/test instead of generating them
#   --json FILE the summary (snake_case keys, every run's curve); --plot FILE a PNG of the
#               curves, test accuracy over minutes, both sides, all seeds (needs matplotlib)
# Env:
#   AUGFLOW         augflow binary (default <repo>/build/augflow, then <repo>/build-release/augflow)
#   AUGFLOW_RECIPE  augflow's training flags (default below, where it is marked)
#   PEER_RECIPE     the peer's (bench/torch_time_to_accuracy.py flags; default below)
#
# Each run's clock starts when training begins and includes reading the data, augmentation
# and every validation (after each epoch and at the end); both sides lay the learning-rate
# schedule over the budget from the clock (augflow train --budget; the peer does the same).
# Both use 2 cores, the same augmentation (random crop of the zero-padded image + horizontal
# flip, pixels / 255), the same model and the same validation views (each test image and its
# mirror, probabilities averaged: augflow's --val-views auto after hflip). Runs alternate augflow, peer for each seed and budget
# so that a change in the machine's load hits both sides.
#
# Target: augflow's median final test accuracy at the first budget. Printed: each run, the
# medians, each side's time to the target (median over seeds of the earliest validation at or
# above it in any of that seed's runs) and, last, "ratio: R" = the peer's time / augflow's;
# when the peer never gets there, R is a lower bound (its longest run / augflow's time) and a
# line before says so. The full default run takes seeds x sum(budgets) x (1 + F) minutes plus
# start-up: 3 x 15 x 2 = 90 minutes; develop with e.g. --budgets 1 --seeds 1. Before their
# first validation both sides set aside time for it estimated from their first steps (half a
# step per validation batch): on a loaded machine a budget of a minute or two can be used up
# after a few steps, with one validation at about 10 %.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$SCRIPT_DIR/common.sh"   # PY, find_augflow, check_torch_peer, make_tmpdir, cpu_watch_*

# ============================================================================================
# AUGFLOW_RECIPE: augflow's training recipe (flags of `augflow train`), to be tuned here.
AUGFLOW_RECIPE="${AUGFLOW_RECIPE:---schedule onecycle --label-smoothing 0.1}"
# PEER_RECIPE: flags of bench/torch_time_to_accuracy.py, the best of a few tries (Fashion-MNIST,
# cnn-small, one epoch laid out with --budget-epochs 1, seed 1, onecycle, label smoothing 0.1,
# batch 128, on a loaded machine): AdamW lr 1e-2 88.77 %, SGD-Nesterov lr 0.1 88.71 %, AdamW
# lr 3e-3 88.15 %. Batch 128 trained more images per second than 64 or 256, channels_last fewer.
# On the objects folder AdamW at 1e-2 stayed at chance for the whole 5 minutes (the folder got
# harder); 1e-3 learns (51 % after its first epoch): --data objects uses it.
PEER_RECIPE_OBJECTS="--optimizer adamw --lr 1e-3 --weight-decay 5e-4 --schedule onecycle --label-smoothing 0.1 --batch 128"
PEER_RECIPE_GIVEN="${PEER_RECIPE:-}"
PEER_RECIPE="${PEER_RECIPE:---optimizer adamw --lr 1e-2 --weight-decay 5e-4 --schedule onecycle --label-smoothing 0.1 --batch 128}"
# ============================================================================================
THREADS=2
# DataLoader worker processes of the peer for the JPEG folder (1 thread each).
PEER_WORKERS="${PEER_WORKERS:-1}"

usage() {
    echo "usage: $0 [--data fashion-mnist|objects] [--budgets \"5 10\"] [--seeds N] [--model M]" \
         "[--peer-budget-factor F] [--objects-dir DIR] [--json FILE] [--plot FILE]" >&2
}

DATA=fashion-mnist
BUDGETS="5 10"
SEEDS=3
MODEL=cnn-small
FACTOR=1
OBJECTS_DIR=""
JSON_OUT=""
PLOT_OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help)
            sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
            exit 0
            ;;
        --data|--budgets|--seeds|--model|--peer-budget-factor|--objects-dir|--json|--plot)
            if [[ $# -lt 2 ]]; then
                usage
                echo "error: $1 needs a value" >&2
                exit 2
            fi
            case "$1" in
                --data) DATA="$2" ;;
                --budgets) BUDGETS="$2" ;;
                --seeds) SEEDS="$2" ;;
                --model) MODEL="$2" ;;
                --peer-budget-factor) FACTOR="$2" ;;
                --objects-dir) OBJECTS_DIR="$2" ;;
                --json) JSON_OUT="$2" ;;
                --plot) PLOT_OUT="$2" ;;
            esac
            shift 2
            ;;
        *)
            usage
            echo "error: unknown argument '$1'" >&2
            exit 2
            ;;
    esac
done

# --- check the arguments before anything long starts ----------------------------------------
is_positive_number() { [[ "$1" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ ]] && [[ ! "$1" =~ ^[0.]+$ ]]; }
case "$DATA" in
    fashion-mnist|objects) ;;
    *) usage; echo "error: --data '$DATA': use fashion-mnist or objects" >&2; exit 2 ;;
esac
read -r -a BUDGET_LIST <<< "$BUDGETS"
if [[ ${#BUDGET_LIST[@]} -eq 0 ]]; then
    echo "error: --budgets is empty: give minutes, e.g. --budgets \"5 10\"" >&2
    exit 2
fi
for b in "${BUDGET_LIST[@]}"; do
    if ! is_positive_number "$b"; then
        echo "error: --budgets: '$b' is not a number of minutes > 0 (e.g. --budgets \"5 10\")" >&2
        exit 2
    fi
done
if [[ ! "$SEEDS" =~ ^[0-9]+$ ]] || (( 10#$SEEDS < 1 )); then
    echo "error: --seeds '$SEEDS' is not a whole number >= 1" >&2
    exit 2
fi
if ! is_positive_number "$FACTOR"; then
    echo "error: --peer-budget-factor '$FACTOR' is not a number > 0 (1: the same budget)" >&2
    exit 2
fi
for f in "$JSON_OUT" "$PLOT_OUT"; do
    if [[ -n "$f" && ! -d "$(dirname "$f")" ]]; then
        echo "error: cannot write $f: the folder $(dirname "$f") does not exist" >&2
        exit 2
    fi
done

find_augflow "$REPO"
check_torch_peer
if [[ -n "$PLOT_OUT" ]] && ! "$PY" -c 'import matplotlib' >/dev/null 2>&1; then
    cat >&2 <<EOF
error: --plot needs matplotlib for $PY. Install Debian's package, as root:
    apt-get install python3-matplotlib
(AUGFLOW_WITH_PEERS=1 scripts/deps.sh installs it), or leave out --plot.
EOF
    exit 1
fi
# Check the model spec on the peer's side now rather than after the first augflow run.
spec_rc=0
spec_out="$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import torch_models
shape = (1, 28, 28) if sys.argv[3] == "fashion-mnist" else (3, 32, 32)
try:
    torch_models.build_model(sys.argv[2], shape, 10)
except torch_models.SpecError as e:
    sys.exit(str(e))' "$SCRIPT_DIR" "$MODEL" "$DATA" 2>&1)" || spec_rc=$?
if (( spec_rc != 0 )); then
    echo "error: --model '$MODEL': ${spec_out:-bench/torch_models.py failed with exit status $spec_rc}" >&2
    exit 2
fi

make_tmpdir time_to_accuracy

# Both sides get the same 2 cores. augflow's compute runs on every core its affinity mask
# allows (oneTBB's default arena), torch on set_num_threads plus the DataLoader workers: on a
# bigger machine, pin both to the same two CPUs so that "2 cores" holds for each.
PIN=()
ALLOWED="$("$PY" -c 'import os; print(",".join(map(str, sorted(os.sched_getaffinity(0)))))')"
IFS=, read -r -a ALLOWED_CPUS <<< "$ALLOWED"
if (( ${#ALLOWED_CPUS[@]} < THREADS )); then
    echo "warning: only ${#ALLOWED_CPUS[@]} CPU(s) available; the figures are for $THREADS cores" >&2
elif (( ${#ALLOWED_CPUS[@]} > THREADS )); then
    if ! command -v taskset >/dev/null; then
        echo "error: this machine has ${#ALLOWED_CPUS[@]} CPUs and taskset (util-linux) is missing to" \
             "keep both sides on $THREADS of them; install util-linux" >&2
        exit 1
    fi
    PIN=(taskset -c "${ALLOWED_CPUS[0]},${ALLOWED_CPUS[1]}")
fi

# --- data --------------------------------------------------------------------------------------
if [[ "$DATA" == fashion-mnist ]]; then
    AF_DATA=(--train fashion-mnist --val fashion-mnist:test)
    PT_DATA=(--data fashion-mnist)
    AUG='pad_crop(2,28) | hflip | normalize(none)'
    PAD=2
    PEER_EXTRA=""
else
    if [[ -z "$OBJECTS_DIR" ]]; then
        MAKE_IMAGES="$(dirname "$BIN")/augflow_make_images"
        if [[ ! -x "$MAKE_IMAGES" ]]; then
            echo "error: $MAKE_IMAGES not found (it writes the objects images); build it with" \
                 "cmake --build build --target augflow_make_images, or give --objects-dir DIR" >&2
            exit 1
        fi
        OBJECTS_DIR="$TMP/objects"
        echo "== writing the objects image folder ($MAKE_IMAGES)"
        "$MAKE_IMAGES" --kind objects --out "$OBJECTS_DIR" --count 60000 --split 10000 >/dev/null
    fi
    for d in "$OBJECTS_DIR/train" "$OBJECTS_DIR/test"; do
        if [[ ! -d "$d" ]]; then
            echo "error: $d is missing: --objects-dir needs train/ and test/ image folders" \
                 "(augflow_make_images --kind objects --out DIR --count 60000 --split 10000)" >&2
            exit 1
        fi
    done
    AF_DATA=(--train "$OBJECTS_DIR/train" --val "$OBJECTS_DIR/test")
    PT_DATA=(--train "$OBJECTS_DIR/train" --val "$OBJECTS_DIR/test" --workers "$PEER_WORKERS")
    AUG='pad_crop(4,32) | hflip | normalize(none)'
    PAD=4
    PEER_EXTRA=" --workers $PEER_WORKERS"
    [[ -z "$PEER_RECIPE_GIVEN" ]] && PEER_RECIPE="$PEER_RECIPE_OBJECTS"
fi

read -r -a AF_RECIPE <<< "$AUGFLOW_RECIPE"
read -r -a PT_RECIPE <<< "$PEER_RECIPE"

echo "== time_to_accuracy: $DATA, model $MODEL, budgets ${BUDGET_LIST[*]} min, seeds 1..$SEEDS," \
     "peer budget x$FACTOR, $THREADS threads${PIN:+ (${PIN[*]})}"
echo "augflow ($BIN): $AUGFLOW_RECIPE --aug '$AUG'"
echo "peer (torch_time_to_accuracy.py): $PEER_RECIPE --pad $PAD$PEER_EXTRA"
echo

MANIFEST="$TMP/manifest.tsv"
: > "$MANIFEST"
for seed in $(seq 1 "$SEEDS"); do
    for budget in "${BUDGET_LIST[@]}"; do
        run="$TMP/augflow-$budget-$seed"
        echo "== augflow, budget $budget min, seed $seed"
        cpu_watch_start
        # The log goes to a file: one line per epoch is kept, the rest is there on failure.
        if ! "${PIN[@]}" "$BIN" train "${AF_DATA[@]}" --model "$MODEL" --budget "$budget" --seed "$seed" \
                --threads "$THREADS" --aug "$AUG" "${AF_RECIPE[@]}" --out "$run" \
                > "$TMP/augflow-$budget-$seed.log" 2>&1; then
            tail -20 "$TMP/augflow-$budget-$seed.log" >&2
            echo "error: augflow train failed (budget $budget, seed $seed); its log is above" >&2
            exit 1
        fi
        grep -E '^epoch ' "$TMP/augflow-$budget-$seed.log" || true
        cpu_watch_report "augflow (budget $budget, seed $seed)"
        printf 'augflow\t%s\t%s\t%s\n' "$budget" "$seed" "$run/summary.json" >> "$MANIFEST"

        peer_budget="$("$PY" -c 'import sys; print("%g" % (float(sys.argv[1]) * float(sys.argv[2])))' \
            "$budget" "$FACTOR")"
        out="$TMP/torch-$budget-$seed.json"
        echo "== peer, budget $peer_budget min, seed $seed"
        cpu_watch_start
        "${PIN[@]}" "$PY" "$SCRIPT_DIR/torch_time_to_accuracy.py" "${PT_DATA[@]}" --model "$MODEL" \
            --budget "$peer_budget" --seed "$seed" --threads "$THREADS" --pad "$PAD" \
            "${PT_RECIPE[@]}" --json "$out"
        cpu_watch_report "peer (budget $peer_budget, seed $seed)"
        # Listed under augflow's budget: the pair is compared, whatever the factor.
        printf 'torch\t%s\t%s\t%s\n' "$budget" "$seed" "$out" >> "$MANIFEST"
        echo
    done
done

REPORT_ARGS=(--data "$DATA" --setting "model=$MODEL" --setting "augflow=$BIN"
             --setting "augflow_recipe=$AUGFLOW_RECIPE --aug '$AUG' --threads $THREADS"
             --setting "peer_recipe=$PEER_RECIPE --pad $PAD --threads $THREADS$PEER_EXTRA"
             --setting "peer_budget_factor=$FACTOR" --setting "cpus=${PIN[*]:-all ($ALLOWED)}")
[[ -n "$JSON_OUT" ]] && REPORT_ARGS+=(--json "$JSON_OUT")
[[ -n "$PLOT_OUT" ]] && REPORT_ARGS+=(--plot "$PLOT_OUT")
"$PY" "$SCRIPT_DIR/time_to_accuracy_report.py" "$MANIFEST" "${REPORT_ARGS[@]}"
