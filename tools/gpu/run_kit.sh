#!/usr/bin/env bash
# The one-shot GPU benchmark, on the GPU machine, from the repository root:
# install the wheels tools/gpu/prepare_kit.sh made (no network needed), then
# run tools/gpu/benchmark_kit.py (bf16, about 7 minutes on an H200).
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
python3 tools/gpu/benchmark_kit.py --out-dir "${OUT:-work_dirs/gpu_kit}" "$@"
