"""Shared fixtures: the repository root, a runner for the project's tools, and
the toy data sets at their default place (data/toy, made once, idempotently)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope='session')
def toy_data(repo_root) -> Path:
    """data/toy with all four toy sets, as ``tools/make_toy_data.py`` makes them."""
    run_tool('tools/make_toy_data.py', '--out', 'data/toy')
    return repo_root / 'data' / 'toy'


def run_tool(*args, timeout=900, check=True, env=None) -> str:
    """Run a project tool with this interpreter from the repo root; return its output."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    proc = subprocess.run(
        [sys.executable, *map(str, args)], cwd=ROOT, env=full_env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{" ".join(map(str, args))} exited {proc.returncode}:\n'
            f'{proc.stdout[-6000:]}')
    return proc.stdout
