#!/usr/bin/env bash
# Idempotent set-up of the dit_mm environment in .venv at the repository root.
#
# Installs torch + torchvision (unless a fitting torch is already there), builds
# mmcv 2.1.0 with its compiled ops against that torch (the wheel is cached under a
# key made of the mmcv, torch and python versions and the device kind), then the
# pinned OpenMMLab stack, the test tools and dit_mm itself (editable).
# A second run on a ready machine only checks a stamp and imports mmcv.ops.
#
# Knobs (environment variables):
#   DIT_MM_VENV          where the environment goes            (default: <repo>/.venv)
#   DIT_MM_PYTHON        interpreter the venv is made from     (default: python3)
#   DIT_MM_SYSTEM_SITE=1 let the venv see the system's packages, so a torch that is
#                        already installed there (a CUDA one, say) is kept
#   DIT_MM_TORCH_SPEC    what to install when no fitting torch is found
#                        (default: "torch===2.13.0 torchvision==0.28.0")
#   DIT_MM_CACHE         cache of built mmcv wheels            (default: ~/.cache/dit_mm)
#   FORCE_CUDA=1         build mmcv's CUDA ops even without a visible GPU (docker builds)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${DIT_MM_VENV:-$ROOT/.venv}
PYTHON=${DIT_MM_PYTHON:-python3}
CACHE=${DIT_MM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dit_mm}
TORCH_SPEC=${DIT_MM_TORCH_SPEC:-"torch===2.13.0 torchvision==0.28.0"}
MMCV_VERSION=2.1.0
STAMP=$VENV/.dit_mm_setup_stamp

log() { echo "[setup] $*" >&2; }

inputs_hash() {
  cat "$ROOT/tools/setup_env.sh" "$ROOT"/requirements/*.txt "$ROOT/setup.py" \
    | sha256sum | cut -d' ' -f1
}

HASH=$(inputs_hash)
if [[ -f $STAMP && $(cat "$STAMP") == "$HASH" ]] \
   && "$VENV/bin/python" -c 'import mmcv.ops, dit_mm' >/dev/null 2>&1; then
  log "environment up to date: $VENV"
  exit 0
fi

if [[ ! -x $VENV/bin/python ]]; then
  log "creating $VENV"
  if [[ ${DIT_MM_SYSTEM_SITE:-0} == 1 ]]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY=$VENV/bin/python
# Every install goes through one constraints file: setuptools < 81 still ships
# pkg_resources, which mmcv 2.1.0's build imports (torch would pull the newest),
# and once torch is chosen it is pinned there so nothing replaces it.
CONSTRAINTS=$VENV/dit_mm_constraints.txt
echo 'setuptools<81' > "$CONSTRAINTS"
PIP=("$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS")
"${PIP[@]}" -q "setuptools<81" wheel ninja

# torch: keep one that fits (mmcv 2.1.0 builds with C++17, so torch < 2.14).
torch_fits() {
  "$PY" - <<'EOF' >/dev/null 2>&1
import torch, torchvision  # noqa: F401
from packaging.version import Version
v = Version(torch.__version__.split('+')[0])
raise SystemExit(0 if Version('2.0') <= v < Version('2.14') else 1)
EOF
}
if torch_fits; then
  log "keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  log "installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "${PIP[@]}" $TORCH_SPEC
fi

read -r TORCH_VER PY_TAG DEVICE_KIND < <("$PY" - <<'EOF'
import os, sys, torch
cuda = torch.version.cuda and (torch.cuda.is_available() or os.getenv('FORCE_CUDA') == '1')
print(torch.__version__, f'cp{sys.version_info[0]}{sys.version_info[1]}',
      f'cu{torch.version.cuda}' if cuda else 'cpu')
EOF
)
"$PY" - >> "$CONSTRAINTS" <<'EOF'
import torch, torchvision
print(f'torch=={torch.__version__}\ntorchvision=={torchvision.__version__}')
EOF

# mmcv with compiled ops, cached by (mmcv, torch, python, device kind): pip's own
# wheel cache does not know which torch a wheel was built against.
WHEEL_DIR=$CACHE/mmcv-$MMCV_VERSION/torch-$TORCH_VER-$PY_TAG-$DEVICE_KIND
if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
  if ! compgen -G "$WHEEL_DIR/mmcv-*.whl" >/dev/null; then
    log "building mmcv $MMCV_VERSION with ops against torch $TORCH_VER ($DEVICE_KIND); this takes ~10 min on 2 cores for the CPU ops, an hour or more per CUDA arch"
    TMP=$(mktemp -d)
    CUDA_ENV=()
    if [ "$DEVICE_KIND" != cpu ]; then
      # CUDA's ops: for the data-centre and desktop archs unless a GPU is seen
      # (torch then builds for it) or TORCH_CUDA_ARCH_LIST says; the headers of
      # the CUDA libraries torch's include files need (cusparse.h, ...) come
      # with torch's nvidia-* wheels, not always with the toolkit
      NV_INCLUDE=$("$PY" -c 'import glob, os, nvidia; print(":".join(sorted(glob.glob(os.path.join(nvidia.__path__[0], "*", "include")))))' 2>/dev/null || true)
      "$PY" -c 'import torch; raise SystemExit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
        CUDA_ENV+=("TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;8.6;8.9;9.0}")
      CUDA_ENV+=("CPATH=$NV_INCLUDE${CPATH:+:$CPATH}" "NVCC_APPEND_FLAGS=${NV_INCLUDE:+-I${NV_INCLUDE//:/ -I}}")
      # torch compiles the ops' C++ files with $CUDA_HOME/include, and without
      # CUDA_HOME takes the folder above the nvcc on the PATH: a wrapper script
      # there (/usr/local/bin/nvcc) makes it /usr/local, with no CUDA headers,
      # and the C++ files then fail on crt/host_defines.h
      if [[ -z ${CUDA_HOME:-} ]]; then
        NVCC_ON_PATH=$(command -v nvcc || true)
        for home in "${CUDA_PATH:-}" /usr/local/cuda "${NVCC_ON_PATH%/bin/nvcc}"; do
          if [[ -n $home && -x $home/bin/nvcc && -f $home/include/cuda_runtime_api.h ]]; then
            CUDA_ENV+=("CUDA_HOME=$home")
            break
          fi
        done
      fi
    fi
    # torch's extension builder calls its compilers through ccache when it is
    # installed; paths made relative to the temp root let a build that was
    # interrupted take the objects it already compiled (pip builds in a new
    # temporary folder each time)
    CUDA_ENV+=("CCACHE_BASEDIR=${TMPDIR:-/tmp}" "CCACHE_NOHASHDIR=1")
    env "${CUDA_ENV[@]}" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      "$PY" -m pip wheel --no-cache-dir --no-build-isolation --no-deps -w "$TMP" "mmcv==$MMCV_VERSION"
    mkdir -p "$WHEEL_DIR"
    mv "$TMP"/mmcv-*.whl "$WHEEL_DIR"/
    rm -rf "$TMP"
  fi
  log "installing cached mmcv wheel from $WHEEL_DIR"
  "${PIP[@]}" "$WHEEL_DIR"/mmcv-*.whl
fi

log "installing the OpenMMLab stack, test tools and dit_mm (editable)"
"${PIP[@]}" -q -r "$ROOT/requirements/runtime.txt" \
  -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" -q --no-build-isolation --no-deps -e "$ROOT"

"$PY" -c 'import dit_mm, mmcv.ops, mmdet, mmseg, mmpretrain.models, torchvision.ops'
echo "$HASH" > "$STAMP"
log "ready: $VENV"
