# Sourced by the launchers: PYTHON, unless set, is the set-up's .venv python
# when there is one (as the README's commands use it), else python.
if [ -z "${PYTHON:-}" ]; then
    PYTHON="$(dirname "${BASH_SOURCE[0]}")/../.venv/bin/python"
    [ -x "$PYTHON" ] || PYTHON=python
fi
