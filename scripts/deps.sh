#!/usr/bin/env bash
# Installs the Debian packages augflow needs. Idempotent and quiet when all are present.
# Set AUGFLOW_WITH_PEERS=1 to also install the benchmark peers (PyTorch, torchvision, and
# matplotlib for bench/time_to_accuracy.sh --plot), and
# AUGFLOW_WITH_CLANG=1 for clang with libFuzzer's runtime (the fuzz stage, scripts/fuzz.sh).
# dpkg-dev and file: cpack's Debian packages (dpkg-shlibdeps computes the command's Depends).
set -euo pipefail

packages=(
  cmake g++ make pkg-config
  libopencv-dev libtbb-dev libeigen3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev zlib1g-dev libjpeg-dev libpng-dev
  libonnx-dev libprotobuf-dev protobuf-compiler
  libopenmpi-dev openmpi-bin libdnnl-dev
  dpkg-dev file
  dataset-fashion-mnist
)
if [[ "${AUGFLOW_WITH_PEERS:-0}" == 1 ]]; then
  packages+=(python3-torch python3-torchvision python3-pil libopenblas0-pthread
             python3-matplotlib)
fi
if [[ "${AUGFLOW_WITH_CLANG:-0}" == 1 ]]; then
  # libclang-rt-14-dev (libFuzzer, clang's sanitizer runtimes) is only a recommendation of clang.
  packages+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done"
