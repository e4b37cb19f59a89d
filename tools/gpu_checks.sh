#!/usr/bin/env bash
# Issue 14's checks on a lent GPU machine (the workplace's `device` tool), inside its 15-minute lease.
#
#   here:   bash tools/gpu_checks.sh prepare   .devpack/: the wheels the device's Python (3.12) lacks, unpacked and
#                                              packed again as one xz tarball (rasterio, pyproj, rosbags, ...), the
#                                              hnswlib sdist (no binary wheel: built there), the orthophotos and the
#                                              NEON sample (JPEG-compressed at quality 90: same size, CRS and tag, the
#                                              image only serves the training's throughput there); about 43 MB, which
#                                              with the repository stays under the 64 MiB a call may carry
#                                              (PYTHON: a python that imports skyfix)
#   there:  bash tools/gpu_checks.sh run [GROUP...]
#                                              (carry .devpack) unpack into .site/, then every check, or those of the
#                                              groups named: tests (native build, GPU tests), train (training, torch
#                                              export, encoder bench), loop (maps, loop benches; needs train's export)
#
# Plan: three calls one after the other, `run tests`, `run train`, `run loop` (each within the machine's 30 s warm
# window, so one start serves all three: .site/ and the export stay there), about 3 minutes each. Each call brings
# back what it measured, so a machine that stops answering loses one group, not the lease (the one call of all of
# them, on 2026-12-05, lost everything that way).
#
# `run` writes under $OUT (or .run/out) summary.txt, versions.txt, gpu.txt, the groups' JSON results and logs.tgz
# (the device tool returns at most 8 files; logs.tgz is rewritten after every step, so a call cut short still
# returns what ran): the native build, the GPU test selection, a short `--preset gpu` training (its steps/s against
# the preset's; from scratch, since the ImageNet weights' package, 18 MB, does not fit the carry and a step's speed
# does not depend on the initial weights), the torch export of its checkpoint and `skyfix bench encoder` on it, two
# maps of zurich_a (the shipped ONNX model and the exported program) and `runtime bench` with the loop on the GPU
# (the shipped model; the exported program, whole frame on the GPU) and on the CPU, one after the other on the same
# machine. Every step has a time limit, so one that hangs costs its limit and not the call.
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
  for p in /.whl/ /.devpack/ /.site/ /.run/; do need_exclude "$p"; done
  rm -rf .whl .devpack && mkdir -p .whl/wheels .whl/unpacked .devpack/ortho .devpack/cache
  wheels .whl/wheels rasterio==1.4.4 affine==3.0.1 cligj==0.7.2 click-plugins==1.1.1.2 pyproj==3.7.2 rosbags==0.11.9 \
    apsw==3.54.1.0 lz4==4.4.5 backports.zstd==1.8.0 ruamel.yaml==0.19.1 pynmea2==1.19.0 pyserial==3.5 \
    defusedxml==0.7.1 || return 1
  # a wheel is a zip (deflate); the unpacked files again as xz: 50 MB of wheels become 34 MB
  for w in .whl/wheels/*.whl; do "$PY" -m zipfile -e "$w" .whl/unpacked/ || return 1; done
  tar cf - -C .whl/unpacked . | xz -9 -T0 > .devpack/site.tar.xz || return 1
  # hnswlib has no binary wheel: its sdist, built there (pybind11, numpy and a compiler are in the image)
  "$PY" -m pip download -q --no-deps --no-binary=hnswlib -d .devpack hnswlib==0.8.0 || return 1
  # the orthophotos (tests, training areas, held-out areas) and the NEON sample the training split adds (fetched from
  # the package registry on first use, which the device cannot reach)
  local data="${SKYFIX_DATA:-../shared/data}"
  cp -r "$data"/ortho/. .devpack/ortho/ || return 1
  # one real camera JPEG (0.4 MB) for the nvJPEG-against-OpenCV test
  mkdir -p .devpack/real/seneca/images && cp "$data"/real/seneca/images/IMG_0446.jpg .devpack/real/seneca/images/ \
    || return 1
  chmod -R u+w .devpack/ortho .devpack/real
  "$PY" - <<'PYEOF' || return 1
import rasterio
from maps.samples import _cached_ok, default_orthophoto_path
from pathlib import Path
src = default_orthophoto_path()
dst = Path(".devpack/cache") / src.name
with rasterio.open(src) as s:
    profile = dict(s.profile, compress="jpeg", jpeg_quality=90, photometric="ycbcr")
    with rasterio.open(dst, "w", **profile) as d:
        d.write(s.read())
        d.update_tags(**s.tags())
assert _cached_ok(dst), "the JPEG copy of the NEON sample is not taken as the cached sample"
PYEOF
  du -sh .devpack
}

step() {  # step NAME LIMIT_S COMMAND...: one check, its output in $LOGS/NAME.log (and $OUT/logs.tgz), its status in
          # $OUT/summary.txt; stopped after LIMIT_S seconds (rc 124)
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name: $*"
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  printf '%-14s rc=%-3s %4ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$*" | tee -a "$OUT/summary.txt"
  tail -n 5 "$LOGS/$name.log"
  tar czf "$OUT/logs.tgz" -C "$LOGS" .  # the device tool returns at most 8 files: the logs go back as one archive
  return 0
}

GROUPS_WANTED=()
want() {  # want GROUP: true when `run` was given no group or this one (tests, train, loop)
  [[ ${#GROUPS_WANTED[@]} -eq 0 ]] && return 0
  local g
  for g in "${GROUPS_WANTED[@]}"; do [[ "$g" == "$1" ]] && return 0; done
  return 1
}

run() {
  # this script's scratch: what the groups run now write starts clean (a `loop` after a `train` keeps its export)
  rm -rf "${RUN:?}"/logs
  if want train; then rm -rf "$RUN"/train "$RUN"/enc_fp16.pt2; fi
  if want loop; then rm -rf "$RUN"/map "$RUN"/map_pt2; fi
  mkdir -p "$OUT" "$RUN/logs"
  LOGS="$RUN/logs"
  : > "$OUT/summary.txt"
  export PYTHONPATH="$PWD/.site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  export SKYFIX_DATA="${SKYFIX_DATA:-$PWD/.devpack}" SKYFIX_CACHE="${SKYFIX_CACHE:-$PWD/.devpack/cache}"
  local native_args=()
  if [[ "$DEVICE" != cpu ]]; then
    nvidia-smi > "$OUT/gpu.txt" 2>&1
    # a machine still warm from an earlier call keeps .site/
    [[ -d .site/rasterio ]] || step unpack 60 tar xJf .devpack/site.tar.xz -C "$(mkdir -p .site && echo .site)"
    "$PY" -c "import hnswlib" 2>/dev/null || step hnswlib 240 "$PY" -m pip install -q --no-index --no-deps \
      --no-build-isolation --no-cache-dir --target .site .devpack/hnswlib-0.8.0.tar.gz
    native_args=(-DSKYFIX_CUDA_ARCHITECTURES=90)  # the lent GPUs are Hopper: one architecture builds faster
  fi
  "$PY" -c "import torch, cv2, numpy, onnxruntime, rasterio, pyproj, rosbags, hnswlib; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'opencv', cv2.__version__, \
'numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__)" > "$OUT/versions.txt" 2>&1
  cat "$OUT/versions.txt"

  local preset=gpu loop_dev=$DEVICE xdist=()
  if [[ "$DEVICE" == cpu ]]; then preset=tiny; loop_dev=torch:cpu; fi
  "$PY" -c "import xdist" 2>/dev/null && [[ "$DEVICE" != cpu ]] && xdist=(-n 4 --dist loadfile)
  if want tests; then
    step native 60 cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release "${native_args[@]}"
    step native_build 120 cmake --build build/native -j
    step pytest 200 "$PY" -m pytest -q -rs "${xdist[@]}" tests/runtime/gpu tests/runtime/native \
      tests/runtime/test_torch_graphs.py tests/export/test_gpu_pairs.py tests/export/test_train_device.py \
      tests/runtime/test_bench_encoder.py
  fi
  if want train; then
    step train 140 "$PY" -m runtime.cli.skyfix train --preset "$preset" --device "$DEVICE" --steps "$STEPS" \
      --time-budget "${TRAIN_BUDGET_S:-90}" --from-scratch --out "$RUN/train" --no-onnx
    step export 90 "$PY" -m runtime.cli.skyfix export torch "$RUN/train/last.pt" -o "$RUN/enc_fp16.pt2" --fp16
    step bench_enc 120 "$PY" -m runtime.cli.skyfix bench encoder "$RUN/enc_fp16.pt2" --device "$DEVICE" \
      --batch 1,8,64 --json "$OUT/bench_encoder.json"
  fi
  if want loop; then
    step map 90 "$PY" -m runtime.cli.skyfix maps build "$SKYFIX_DATA/ortho/swissimage_zurich_a_0.5m.tif" \
      -o "$RUN/map" --model default --overwrite
    step map_pt2 90 "$PY" -m runtime.cli.skyfix maps build "$SKYFIX_DATA/ortho/swissimage_zurich_a_0.5m.tif" \
      -o "$RUN/map_pt2" --model "$RUN/enc_fp16.pt2" --overwrite
    step bench_pt2 90 "$PY" -m runtime.cli.onboard bench --map "$RUN/map_pt2" --model "$RUN/enc_fp16.pt2" \
      --device "$loop_dev" --frames 200 --json "$OUT/bench_loop_pt2.json"
    step bench_loop 90 "$PY" -m runtime.cli.onboard bench --map "$RUN/map" --device "$loop_dev" --frames 200 \
      --json "$OUT/bench_loop_device.json"
    step bench_cpu 90 "$PY" -m runtime.cli.onboard bench --map "$RUN/map" --device cpu --frames 200 \
      --json "$OUT/bench_loop_cpu.json"
  fi
  cat "$OUT/summary.txt"
}

case "${1:-}" in
  prepare) prepare ;;
  run)
    shift
    for g in "$@"; do
      case "$g" in
        tests|train|loop) GROUPS_WANTED+=("$g") ;;
        *) echo "unknown group $g: expected tests, train or loop" >&2; exit 2 ;;
      esac
    done
    run ;;
  *) echo "usage: bash tools/gpu_checks.sh prepare|run [tests|train|loop...] (see the header)" >&2; exit 2 ;;
esac
