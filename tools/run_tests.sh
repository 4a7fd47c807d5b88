#!/usr/bin/env bash
# The test command of the README: set up .venv (idempotent), then run pytest
# in DIT_MM_TEST_WORKERS processes (default 2: CI's two cores; 0 runs in this
# process), longest tests first (tests/conftest.py orders them; xdist keeps
# each xdist_group on one worker), and the 15 slowest listed at the end.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh tests/test_stack.py`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -n "${DIT_MM_TEST_WORKERS:-2}" \
  --dist loadgroup --no-loadscope-reorder --durations=15 \
  "$@"  # no paths: setup.cfg testpaths
