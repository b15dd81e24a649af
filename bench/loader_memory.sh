#!/usr/bin/env bash
# Shows that the loader's peak memory is bounded by configuration, not by the data set: streams
# 2,000 and then 20,000 generated images (same size distribution) through `augflow bench
# loader` and compares peak RSS. Target: they differ by less than 10%.
#
# Usage: bench/loader_memory.sh [SMALL] [LARGE]      (defaults 2000 20000)
# Env:   AUGFLOW (binary), AUGFLOW_MAKE_IMAGES (generator), WORK (where the images go;
#        default /tmp/augflow_memory_bench, kept between runs)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
small="${1:-2000}"
large="${2:-20000}"
bin="${AUGFLOW:-$repo/build/augflow}"
make_images="${AUGFLOW_MAKE_IMAGES:-$(dirname "$bin")/augflow_make_images}"
work="${WORK:-/tmp/augflow_memory_bench}"
for tool in "$bin" "$make_images"; do
  if [[ ! -x "$tool" ]]; then
    echo "error: $tool not found; build with: cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2" >&2
    exit 1
  fi
done

peak() {  # data dir -> peak_rss_mb
  local json
  json="$(mktemp)"
  "$bin" bench loader --data "$1" --batch 64 --threads 2 --epochs 1 --json "$json" >/dev/null
  /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["peak_rss_mb"], d["dataset_images"], d["images_per_second"])' "$json"
  rm -f "$json"
}

for n in "$small" "$large"; do
  dir="$work/n$n"
  if [[ ! -f "$dir/.complete" ]]; then
    echo "generating $n images in $dir ..."
    rm -rf "$dir"
    "$make_images" --out "$dir" --count "$n" --classes 10 --width 256 --height 192 >/dev/null
    touch "$dir/.complete"
  fi
done

read -r rss_small images_small rate_small < <(peak "$work/n$small")
read -r rss_large images_large rate_large < <(peak "$work/n$large")
echo "small: $images_small images, peak RSS $rss_small MB ($rate_small images/s)"
echo "large: $images_large images, peak RSS $rss_large MB ($rate_large images/s)"
/usr/bin/python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print("difference: %.1f%%" % (100*abs(b-a)/a)); print("rss_ratio: %.3f" % (b/a))' "$rss_small" "$rss_large"
