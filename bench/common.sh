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

# Contention check. The benchmarks use every core, and other processes running
# at the same time lower whichever side they hit and skew the ratio.
#   cpu_watch_start            before a run
#   cpu_watch_report LABEL     after it: warn on stderr if other processes used
#                              more than 10% of the machine's CPU time meanwhile
# "Other" = busy CPU time (/proc/stat, steal included) minus the CPU time of
# this script's reaped children (cutime+cstime in /proc/$$/stat, which covers
# their own children, e.g. DataLoader workers, once those are reaped).
_cpu_sample() {  # prints "TOTAL BUSY OWN" in clock ticks
    local user nice sys idle iowait irq softirq steal total stat
    local -a fields
    read -r _ user nice sys idle iowait irq softirq steal _ < /proc/stat
    steal="${steal:-0}"
    total=$((user + nice + sys + idle + iowait + irq + softirq + steal))
    stat="$(< "/proc/$$/stat")"
    stat="${stat##*) }"   # fields from 3 (state) on; cutime, cstime are 16, 17
    read -r -a fields <<< "$stat"
    echo "$total $((total - idle - iowait)) $((fields[13] + fields[14]))"
}

cpu_watch_start() {
    CPU_WATCH=""
    if [[ -r /proc/stat && -r "/proc/$$/stat" ]]; then
        CPU_WATCH="$(_cpu_sample)"
    fi
}

cpu_watch_report() {
    local t0 b0 o0 t1 b1 o1 pct
    [[ -n "${CPU_WATCH:-}" ]] || return 0
    read -r t0 b0 o0 <<< "$CPU_WATCH"
    read -r t1 b1 o1 <<< "$(_cpu_sample)"
    # Too short to judge (under ~0.5 s on 2 CPUs): skip.
    (( t1 - t0 >= 100 )) || return 0
    pct=$(( 100 * ((b1 - b0) - (o1 - o0)) / (t1 - t0) ))
    if (( pct > 10 )); then
        echo "warning: other processes used about $pct% of the CPUs during the $1 run;" \
             "its figures are low (rerun on an idle machine)" >&2
    fi
}

# check_torch_peer: exit 1 with instructions unless $PY imports torch and
# torch runs on OpenBLAS (bench/torch_train.py --check-blas prints the BLAS,
# or says how to select OpenBLAS instead of the reference BLAS).
check_torch_peer() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    if [[ ! -x "$PY" ]] || ! "$PY" -c 'import torch' >/dev/null 2>&1; then
        cat >&2 <<EOF2
error: $PY cannot import torch (the PyTorch peer).
Install Debian's package, as root:
    apt-get install python3-torch
(the project's scripts/deps.sh installs python3-torchvision, which pulls it
in). It is only visible to $PY, not to a pyenv/venv python3 earlier on PATH.
EOF2
        exit 1
    fi
    "$PY" "$here/torch_train.py" --check-blas || exit 1
}
