#!/usr/bin/env bash
# Prepare, on the CPU machine, the wheels the GPU machine lacks for the one-shot
# benchmark (tools/gpu/run_kit.sh): the OpenMMLab packages, the dependencies of
# theirs that machine has not got (model-index, not the empty modelindex wheel,
# holds mmpretrain's modelindex), and mmcv 2.1.0 with its ops compiled (CUDA
# included) for that machine's Python and torch. Idempotent; the mmcv build
# (the long part: about an hour on 2 cores for one GPU arch) is cached.
#
#   bash tools/gpu/prepare_kit.sh            # -> .gpu_kit/ (git-ignored)
#
# The GPU machine (the README's "GPU benchmark kit"):
# Python 3.12, torch 2.11.0 built for CUDA 13, an H200 (compute capability 9.0),
# no network, and numpy, scipy, matplotlib, opencv-python-headless, pyyaml,
# rich, regex, einops, six, tqdm, pillow, packaging, markdown, zipp installed.
#
# Knobs:
#   DIT_MM_KIT            where the wheels go                (.gpu_kit)
#   DIT_MM_KIT_PYTHON     an interpreter of the GPU machine's Python version
#                         (python3.12)
#   DIT_MM_KIT_TORCH      the GPU machine's torch           (2.11.0)
#   DIT_MM_KIT_ARCHS      CUDA archs mmcv is compiled for   (9.0)
#   DIT_MM_CACHE          the build venv and mmcv wheels    (~/.cache/dit_mm)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KIT=${DIT_MM_KIT:-$ROOT/.gpu_kit}
KIT_PYTHON=${DIT_MM_KIT_PYTHON:-python3.12}
KIT_TORCH=${DIT_MM_KIT_TORCH:-2.11.0}
ARCHS=${DIT_MM_KIT_ARCHS:-9.0}
CACHE=${DIT_MM_CACHE:-$HOME/.cache/dit_mm}
MMCV_VERSION=2.1.0
log() { echo "[prepare_kit] $*"; }

PY_TAG=$("$KIT_PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
# 1. a venv of that Python with that torch (a CUDA build from PyPI, ~4 GB):
#    what mmcv's extension is compiled against, as on the GPU machine
BUILD_VENV=$CACHE/kit-venv-$PY_TAG-torch-$KIT_TORCH
if ! "$BUILD_VENV/bin/python" -c "import torch; assert torch.__version__.startswith('$KIT_TORCH')" 2>/dev/null; then
  log "making $BUILD_VENV (torch $KIT_TORCH)"
  "$KIT_PYTHON" -m venv "$BUILD_VENV"
  "$BUILD_VENV/bin/python" -m pip install -q "torch==$KIT_TORCH" 'setuptools<81' wheel ninja packaging numpy
fi
CUDA_TAG=$("$BUILD_VENV/bin/python" -c 'import torch; print("cu" + torch.version.cuda)')

# 2. mmcv with ops, CUDA's included (nvcc from CUDA_HOME, else the PATH)
WHEEL_DIR=$CACHE/mmcv-$MMCV_VERSION/torch-$KIT_TORCH-$PY_TAG-$CUDA_TAG-sm${ARCHS//[.; ]/_}
if ! compgen -G "$WHEEL_DIR/mmcv-*.whl" >/dev/null; then
  command -v nvcc >/dev/null || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] || {
    echo "[prepare_kit] error: no nvcc: install CUDA's toolkit (or pip's nvidia-cuda-nvcc) and set CUDA_HOME" >&2; exit 1; }
  log "building mmcv $MMCV_VERSION ($PY_TAG, torch $KIT_TORCH, $CUDA_TAG, archs $ARCHS)"
  # the CUDA libraries' headers (cusparse.h, cublas_v2.h, ...) torch's include
  # files need come with torch's nvidia-* wheels, not always with the toolkit
  NV_INCLUDE=$("$BUILD_VENV/bin/python" -c 'import glob, os, nvidia; print(":".join(sorted(glob.glob(os.path.join(nvidia.__path__[0], "*", "include")))))')
  TMP=$(mktemp -d)
  FORCE_CUDA=1 MMCV_WITH_OPS=1 TORCH_CUDA_ARCH_LIST="$ARCHS" \
    CPATH="$NV_INCLUDE${CPATH:+:$CPATH}" NVCC_APPEND_FLAGS="${NV_INCLUDE:+-I${NV_INCLUDE//:/ -I}}" \
    CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "$BUILD_VENV/bin/python" -m pip wheel -q --no-cache-dir --no-build-isolation \
    --no-deps -w "$TMP" "mmcv==$MMCV_VERSION"
  mkdir -p "$WHEEL_DIR"
  mv "$TMP"/mmcv-*.whl "$WHEEL_DIR"/
  rm -rf "$TMP"
fi

# 3. the pure-Python wheels: the stack, and what of its needs the machine lacks
mkdir -p "$KIT"
rm -f "$KIT"/*.whl
cp "$WHEEL_DIR"/mmcv-*.whl "$KIT"/
"$KIT_PYTHON" -m pip download -q --no-deps --only-binary=:all: \
  --python-version "${PY_TAG#cp}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$KIT" \
  mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 \
  addict==2.4.0 yapf==0.43.0 platformdirs==4.3.6 termcolor==2.5.0 \
  terminaltables==3.1.10 pycocotools==2.0.8 shapely==2.0.6 ftfy==6.3.1 \
  wcwidth==0.2.13 prettytable==3.12.0 model-index==0.1.11 ordered-set==4.1.0 \
  importlib-metadata==8.5.0
log "kit: $(ls "$KIT" | wc -l) wheels, $(du -sh "$KIT" | cut -f1) in $KIT"
