#!/usr/bin/env bash
# The one-shot GPU benchmark, on the GPU machine, from the repository root:
# install the wheels tools/gpu/prepare_kit.sh made (no network needed), then
# run the mixed-precision tests on the GPU (bf16 and fp16 training steps and
# fixed-budget inference of the three methods) and tools/gpu/benchmark_kit.py
# (bf16, at most about 7 minutes on an H200).
#
#   bash tools/gpu/run_kit.sh [benchmark_kit.py options]     # -> $OUT or work_dirs/gpu_kit
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT=${DIT_MM_KIT:-.gpu_kit}
SITE=${DIT_MM_KIT_SITE:-/tmp/dit_mm_site}
compgen -G "$KIT/mmcv-*.whl" >/dev/null || {
  echo "[run_kit] error: no mmcv wheel in $KIT: run tools/gpu/prepare_kit.sh on the CPU machine first" >&2; exit 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target "$SITE" "$KIT"/*.whl
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c 'import torch, mmcv.ops, mmdet, mmseg, mmpretrain, dit_mm; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
RESULTS=${OUT:-work_dirs/gpu_kit}
mkdir -p "$RESULTS"
DIT_MM_TEST_DEVICE=${DIT_MM_TEST_DEVICE:-cuda} python3 -m pytest -q -p no:cacheprovider tests/test_amp.py \
  -k 'training_under_autocast or fixed_budget_inference' 2>&1 | tail -15 | tee "$RESULTS/amp_cuda.txt" || true
python3 tools/gpu/benchmark_kit.py --out-dir "$RESULTS" "$@"
