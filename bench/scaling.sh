#!/usr/bin/env bash
# Data-parallel training: measured on this machine, projected to a cluster.
#
# 1. Training samples/s of one process with 2 threads against `mpirun -np 2` with 1 thread each,
#    over shared memory and over the TCP stack on loopback (--mca btl tcp,self), alternated
#    ROUNDS times (medians): cnn-small, and resnet-mini over shared memory.
# 2. The exchange's latency and bandwidth (`augflow bench exchange` over TCP on loopback).
# 3. A cost model from those measurements: the scaling efficiency of N = 2..64 machines like
#    this one on 10 and 25 Gbit/s Ethernet, and the largest N that keeps >= 80 %.
# The last line is `ratio: R`: the two-process rate over the one-process rate, the lower of
# shared memory and TCP for cnn-small (the target is >= 0.9 on a 2-core machine).
#
# Usage: bench/scaling.sh [DATA] [ROUNDS]        (defaults fashion-mnist and 3)
# Env:   AUGFLOW (binary), EPOCHS (training epochs per run, default 0.5), BATCH (default 128),
#        MODEL_BATCH (the global batch of the projection, default 512)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/bench/common.sh"
find_augflow "$repo"
data="${1:-fashion-mnist}"
rounds="${2:-3}"
epochs="${EPOCHS:-0.5}"
batch="${BATCH:-128}"
model_batch="${MODEL_BATCH:-512}"
if [[ ! "$rounds" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: ROUNDS must be a positive whole number, not '$rounds'" >&2
  exit 2
fi
if ! command -v mpirun >/dev/null; then
  echo "error: mpirun not found: install Open MPI (apt-get install openmpi-bin libopenmpi-dev; scripts/deps.sh does)" >&2
  exit 1
fi
# What Open MPI needs as root and in containers (as scripts/test.sh sets).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"
make_tmpdir augflow_scaling

# run NAME MODEL PROCESSES [MPI FLAGS...]: one training run; prints its summary.json path.
run() {
  local name="$1" model="$2" np="$3"
  shift 3
  local out="$TMP/$name" threads=$((2 / np))
  rm -rf "$out"
  local args=(train --train "$data" --val-split 0.02 --model "$model" --batch "$batch" --budget-epochs "$epochs"
    --threads "$threads" --seed 1 --out "$out")
  if ((np == 1)); then
    "$BIN" "${args[@]}" >"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log" >&2; exit 1; }
  else
    mpirun --oversubscribe --bind-to none "$@" -np "$np" "$BIN" "${args[@]}" >"$TMP/$name.log" 2>&1 ||
      { cat "$TMP/$name.log" >&2; exit 1; }
  fi
  echo "$out/summary.json"
}
rate() { printf '%.0f' "$(json_get "$1" train_images_per_second)"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "== scaling: $data, batch $batch, $epochs epochs per run, $rounds rounds; $(nproc) cores"
declare -A rates
for model in cnn-small resnet-mini; do
  for ((r = 1; r <= rounds; ++r)); do
    one="$(run "one-$model" "$model" 1)"
    two="$(run "shm-$model" "$model" 2)"
    rates[one-$model]+=" $(rate "$one")"
    rates[shm-$model]+=" $(rate "$two")"
    line="round $r $model: 1 process x 2 threads $(rate "$one") samples/s, 2 processes x 1 thread $(rate "$two")"
    if [[ "$model" == cnn-small ]]; then
      tcp="$(run "tcp-$model" "$model" 2 --mca btl tcp,self)"
      rates[tcp-$model]+=" $(rate "$tcp")"
      line+=", over TCP $(rate "$tcp")"
    fi
    cp "$two" "$TMP/exchange-$model.json"  # its communication figures feed the model
    echo "$line samples/s"
  done
done
mpirun --oversubscribe --bind-to none --mca btl tcp,self -np 2 "$BIN" bench exchange --json "$TMP/tcp.json" >/dev/null

# shellcheck disable=SC2086  # the lists are space-separated on purpose
"$PY" - "$TMP" "$model_batch" \
  "$(median ${rates[one-cnn-small]})" "$(median ${rates[shm-cnn-small]})" "$(median ${rates[tcp-cnn-small]})" \
  "$(median ${rates[one-resnet-mini]})" "$(median ${rates[shm-resnet-mini]})" <<'EOF'
import json, math, sys

tmp, model_batch = sys.argv[1], int(sys.argv[2])
one_cnn, shm_cnn, tcp_cnn, one_res, shm_res = map(float, sys.argv[3:8])
tcp = json.load(open(f"{tmp}/tcp.json"))
alpha = tcp["latency_seconds"]
print(f"median cnn-small:   1 process {one_cnn:.0f}, 2 processes {shm_cnn:.0f} (ratio {shm_cnn / one_cnn:.2f}), "
      f"over TCP {tcp_cnn:.0f} (ratio {tcp_cnn / one_cnn:.2f}) samples/s")
print(f"median resnet-mini: 1 process {one_res:.0f}, 2 processes {shm_res:.0f} (ratio {shm_res / one_res:.2f}) samples/s")
print(f"exchange over TCP on loopback: {alpha * 1e6:.1f} us per collective, "
      f"{tcp['bandwidth_bytes_per_second'] / 1e9:.2f} GB/s")

# The cost model. Per step of a global batch B on N machines like this one (2 cores each),
# the batch cut into K = 2N chunks (--chunks 2N: every core holds one):
#   compute    t_c(N) = B / (N * r1)                 r1: one machine's samples/s (measured)
#   exchange   t_x(N) = m * alpha * ceil(log2 N) + 2 * 4 P' (N - 1)/N / beta
# Each process adds its chunks' gradient partials (an aligned subtree of the fixed chunk tree)
# and sends that one sum: a reduce-scatter and an all-gather, the bytes of an all-reduce.
# m collectives per step and P' floats (weights plus the batch-norm sums) come from the
# measured two-process run (summary.json's communication_calls, and communication_bytes: per
# step 2 * 4 P' * (2 - 1)/2 = 4 P'); alpha is the measured latency of a collective over TCP;
# beta the link's bandwidth. The exchange does not overlap compute:
#   efficiency E(N) = t_c / (t_c + t_x)
def model(name, rate_one):
    s = json.load(open(f"{tmp}/exchange-{name}.json"))
    steps = max(1, s["steps"])
    calls = s["communication_calls"] / steps
    floats = s["communication_bytes"] / steps / 4
    rows = []
    for gbit in (10, 25):
        beta = gbit * 1e9 / 8
        row, largest = [], 1
        for n in (2, 4, 8, 16, 32, 64):
            t_c = model_batch / (n * rate_one)
            t_x = calls * alpha * math.ceil(math.log2(n)) + 2 * 4 * floats * (n - 1) / n / beta
            e = t_c / (t_c + t_x)
            row.append(e)
            if e >= 0.8:
                largest = n
        rows.append((gbit, row, largest))
    print(f"\n{name}: {floats / 1e6:.2f} M floats exchanged per step (P'), {calls:.0f} collectives per step, "
          f"one machine {rate_one:.0f} samples/s; global batch {model_batch}")
    print("| link | N=2 | N=4 | N=8 | N=16 | N=32 | N=64 | largest N with >= 80 % |")
    print("|---|---|---|---|---|---|---|---|")
    for gbit, row, largest in rows:
        print(f"| {gbit} Gbit/s | " + " | ".join(f"{e * 100:.0f} %" for e in row) + f" | {largest} |")

model("cnn-small", one_cnn)
model("resnet-mini", one_res)
print(f"\nratio: {min(shm_cnn, tcp_cnn) / one_cnn:.2f}")
EOF
