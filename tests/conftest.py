"""Shared fixtures: the repository root, a runner for the project's tools, and
the toy data sets at their default place (data/toy, made once, idempotently)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope='session')
def one_torch_thread():
    """One intra-op thread for the models tests run in this process: on a small
    shared CPU, two threads per process spin against the other processes and
    make small forwards many times slower. (Tools run as subprocesses keep
    torch's default.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def load_tool(path: str, name: str = 'tool'):
    """A project tool (a script, not a package module) imported in this
    process, to call its ``main`` or ``parse_args`` directly."""
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
