#!/usr/bin/env bash
# The test command of the README: set up .venv (idempotent), then run pytest.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh tests/test_stack.py`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"  # no paths: setup.cfg testpaths
