# shellcheck shell=bash disable=SC2034  # BIN, TMP, PY, AUG_SPEC_* are used by the sourcing script
# Shared helpers for the bench/compare_*.sh scripts. Source it, do not run it:
#     source "$SCRIPT_DIR/common.sh"
# The callers run with `set -euo pipefail`.

# torch/torchvision come from Debian packages: only the system interpreter
# sees them (a pyenv python3 earlier on PATH does not).
PY=/usr/bin/python3

# augflow specs matching torchvision_augment.py's build_transform(resnet|rrc).
AUG_SPEC_RESNET='hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)'
AUG_SPEC_RRC='resized_crop(224) | hflip | jitter(0.4,0.4,0.4) | normalize(imagenet)'

# find_augflow REPO: set BIN to the augflow binary ($AUGFLOW, else
# REPO/build/augflow, else REPO/build-release/augflow); exit 1 with a
# message if there is none.
find_augflow() {
    local repo="$1"
    if [[ -n "${AUGFLOW:-}" ]]; then
        if [[ ! -x "$AUGFLOW" ]]; then
            echo "error: AUGFLOW=$AUGFLOW is not an executable file" >&2
            exit 1
        fi
        BIN="$AUGFLOW"
    elif [[ -x "$repo/build/augflow" ]]; then
        BIN="$repo/build/augflow"
    elif [[ -x "$repo/build-release/augflow" ]]; then
        BIN="$repo/build-release/augflow"
    else
        cat >&2 <<EOF
error: augflow binary not found (looked for \$AUGFLOW, $repo/build/augflow,
$repo/build-release/augflow). Build it first, either with
    scripts/demo.sh
or
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2
(from $repo), or point AUGFLOW at an existing binary.
EOF
        exit 1
    fi
}

# check_peer: exit 1 with install instructions unless $PY imports
# torch and torchvision.
check_peer() {
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
}

# make_tmpdir NAME: set TMP to a fresh temporary directory, removed on exit.
make_tmpdir() {
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    trap 'rm -rf "$TMP"' EXIT
}

# json_get FILE KEY: print a JSON field (fails if missing).
json_get() {
    "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
if sys.argv[2] not in d:
    sys.exit("%s: missing key %s" % (sys.argv[1], sys.argv[2]))
print(d[sys.argv[2]])' "$1" "$2"
}

# warn_if_busy LABEL: sample the CPUs for 1 s and warn on stderr if less than
# 90% idle (other processes running). The benchmarks use every core, so
# contention lowers whichever side it hits and skews the ratio.
warn_if_busy() {
    local user nice sys idle iowait irq softirq total1 idle1 total2 idle2 pct
    [[ -r /proc/stat ]] || return 0
    read -r _ user nice sys idle iowait irq softirq _ < /proc/stat
    total1=$((user + nice + sys + idle + iowait + irq + softirq)) idle1=$idle
    sleep 1
    read -r _ user nice sys idle iowait irq softirq _ < /proc/stat
    total2=$((user + nice + sys + idle + iowait + irq + softirq)) idle2=$idle
    (( total2 > total1 )) || return 0
    pct=$(( 100 * (idle2 - idle1) / (total2 - total1) ))
    if (( pct < 90 )); then
        echo "warning: CPUs only $pct% idle just before the $1 run (other processes are" \
             "running); its figures will be low" >&2
    fi
}
