#!/usr/bin/env bash
# Checks augflow the way a user meets it, from a configured and built build folder:
#   1. cmake --install into a temporary prefix: the expected files are there;
#   2. every installed header compiles on its own with its library's target (tests/install);
#   3. examples/ configure and build against the installed package only, and run: batches
#      streamed from a generated image folder, and one image classified by a model that the
#      installed augflow trained; the loader-only example links no ONNX or protobuf;
#   4. cpack -G DEB: the two packages hold the expected files, declare their dependencies, and
#      augflow --version, the man page and the completion work from a `dpkg -x` root.
# A broken install, package or example fails the script.
# Usage: scripts/check_install.sh [BUILD_DIR]   (default build; AUGFLOW_JOBS sets -j)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
jobs="${AUGFLOW_JOBS:-$(nproc)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
fail() { echo "check_install: $*" >&2; exit 1; }
step() { echo "--- $* ($(date +%H:%M:%S))"; }

step "install into a temporary prefix"
cmake --build "$build" -j"$jobs" --target augflow augflow_cli_docs augflow_make_images >/dev/null
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/augflow share/man/man1/augflow.1.gz share/bash-completion/completions/augflow \
         include/augflow/version.hpp include/augflow/augment/spec.hpp include/augflow/pipeline/loader.hpp \
         include/augflow/model/net.hpp include/augflow/pipeline/predictor.hpp \
         lib/cmake/augflow/augflowConfig.cmake lib/cmake/augflow/augflowConfigVersion.cmake \
         lib/cmake/augflow/augflowTargets.cmake share/doc/augflow/README.md; do
  [[ -e "$prefix/$f" ]] || fail "cmake --install did not install $f"
done
for lib in common augment loader model pipeline; do
  [[ -e "$prefix/lib/libaugflow_$lib.a" ]] || fail "cmake --install did not install lib/libaugflow_$lib.a"
done
# Internal headers stay out of the package.
for f in common/tsan.hpp common/atomic_file.hpp model/grad_check.hpp model/parallel.hpp pipeline/plot.hpp; do
  [[ ! -e "$prefix/include/augflow/$f" ]] || fail "the internal header $f was installed"
done
"$prefix/bin/augflow" --version | grep '^augflow [0-9]' >/dev/null || fail "installed augflow --version"

step "every installed header compiles on its own"
cmake -S "$root/tests/install" -B "$work/header-check" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/header-check" -j"$jobs" >/dev/null || {
  cmake --build "$work/header-check" -j1 2>&1 | grep -m20 -E 'error|Error' >&2; fail "an installed header does not compile alone"; }

step "examples/ against the installed package"
cmake -S "$root/examples" -B "$work/examples" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/examples" -j"$jobs" >/dev/null
if ldd "$work/examples/stream_batches" | grep -E 'onnx|protobuf' >/dev/null; then
  fail "stream_batches (augflow::loader) links ONNX or protobuf: $(ldd "$work/examples/stream_batches" | grep -E 'onnx|protobuf')"
fi
"$build/augflow_make_images" --out "$work/images" --count 24 --classes 2 --width 40 --height 40 >/dev/null
"$work/examples/stream_batches" "$work/images" "hflip | resized_crop(size=32) | normalize(imagenet)" 8 2 >"$work/stream.log"
grep -q 'samples 3x32x32' "$work/stream.log" || fail "stream_batches: $(cat "$work/stream.log")"
[[ $(grep -c '^epoch ' "$work/stream.log") -eq 6 ]] || fail "stream_batches: expected 6 batches: $(cat "$work/stream.log")"
"$prefix/bin/augflow" train --train "$work/images" --model fc8-relu-fc2 --aug "resized_crop(size=32) | normalize(none)" \
  --epochs 1 --batch 8 --threads 2 --out "$work/run" >"$work/train.log" 2>&1 || { cat "$work/train.log" >&2; fail "installed augflow train"; }
image="$(find "$work/images" -name '*.jpg' | sort | head -n1)"
"$work/examples/classify" "$work/run/best.ckpt" "$image" 2 >"$work/classify.log" || { cat "$work/classify.log" >&2; fail "classify"; }
[[ $(grep -cE '^[0-9a-z_]+ +[01]\.[0-9]{4}$' "$work/classify.log") -eq 2 ]] || fail "classify: $(cat "$work/classify.log")"

step "Debian packages (cpack -G DEB)"
(cd "$build" && cpack -G DEB -B "$work/deb" >/dev/null)
version="$("$prefix/bin/augflow" --version | awk '{print $NF}')"
deb_cli="$(ls "$work"/deb/augflow_"$version"_*.deb)" || fail "no augflow .deb"
deb_dev="$(ls "$work"/deb/libaugflow-dev_"$version"_*.deb)" || fail "no libaugflow-dev .deb"
dpkg-deb -c "$deb_cli" | awk '{print $NF}' >"$work/cli.files"
dpkg-deb -c "$deb_dev" | awk '{print $NF}' >"$work/dev.files"
for f in ./usr/bin/augflow ./usr/share/man/man1/augflow.1.gz ./usr/share/bash-completion/completions/augflow \
         ./usr/share/doc/augflow/README.md; do
  grep -qxF "$f" "$work/cli.files" || fail "$(basename "$deb_cli") lacks $f"
done
for f in ./usr/lib/libaugflow_augment.a ./usr/lib/libaugflow_pipeline.a ./usr/include/augflow/augment/spec.hpp \
         ./usr/lib/cmake/augflow/augflowConfig.cmake; do
  grep -qxF "$f" "$work/dev.files" || fail "$(basename "$deb_dev") lacks $f"
done
! grep -q '\.a$\|/include/' "$work/cli.files" || fail "$(basename "$deb_cli") holds libraries or headers"
! grep -q '/bin/' "$work/dev.files" || fail "$(basename "$deb_dev") holds programs"
depends="$(dpkg-deb -f "$deb_cli" Depends)"
for d in libopencv-core libtbb libstdc++6; do
  grep -q "$d" <<<"$depends" || fail "$(basename "$deb_cli") Depends lacks $d: $depends"
done
grep -q 'libopencv-core-dev' <<<"$(dpkg-deb -f "$deb_dev" Depends)" || fail "libaugflow-dev Depends lacks libopencv-core-dev"
dpkg -x "$deb_cli" "$work/root"
"$work/root/usr/bin/augflow" --version | grep -xF "augflow $version" >/dev/null || fail "augflow --version from the package"
if command -v man >/dev/null; then
  MANWIDTH=100 man -l "$work/root/usr/share/man/man1/augflow.1.gz" 2>/dev/null | grep 'augflow train' >/dev/null ||
    fail "the packaged man page does not render"
else
  zcat "$work/root/usr/share/man/man1/augflow.1.gz" | grep '^\.SS "augflow train"' >/dev/null || fail "the packaged man page"
fi
bash -c "source '$work/root/usr/share/bash-completion/completions/augflow'; complete -p augflow" >/dev/null ||
  fail "the packaged completion does not load"
echo "check_install: install, headers, examples and packages are good"
