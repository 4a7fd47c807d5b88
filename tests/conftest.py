"""Shared fixtures: the repository root, a runner for the project's tools, the
toy data sets at their default place (data/toy, made once, idempotently), and
what the suite makes once per run for all its workers (see :func:`once`).

The README's test command runs the suite in two processes (pytest-xdist,
``--dist loadgroup``). Tests that start processes of their own take a free
port (:func:`free_port`) and a work dir under ``tmp_path``; whatever lies at a
fixed place (data/toy, a trained model) is made under a file lock."""
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope='session')
def one_torch_thread():
    """One intra-op thread for the models tests run in this process: on a small
    shared CPU, two threads per process spin against the other processes and
    make small forwards many times slower. The tools a test runs as
    subprocesses get the cores shared out among the workers
    (``OMP_NUM_THREADS``; with one worker, torch's default: every core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 1))
    if workers > 1 and 'OMP_NUM_THREADS' not in os.environ:
        os.environ['OMP_NUM_THREADS'] = str(max(1, os.cpu_count() // workers))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope='session')
def toy_data(repo_root) -> Path:
    """data/toy with all four toy sets, made as ``tools/make_toy_data.py``
    makes them (its writers, seed 0), under a lock: a worker that found a set
    half made would remake it while the other writes."""
    from dit_mm.toydata import TOY_SETS
    root = repo_root / 'data' / 'toy'
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / '.toy.lock')):
        for writer, folder in TOY_SETS.values():
            writer(root / folder, seed=0)
    return root


@pytest.fixture(scope='session')
def shared_tmp(tmp_path_factory) -> Path:
    """A folder all workers of this test run see (the base temp of one run)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


def once(shared_tmp: Path, name: str, make) -> dict:
    """What ``make(folder)`` returns (a JSON-able dict), made once per test run
    in ``shared_tmp/name``: the first worker to ask makes it, a later one waits
    for the lock and reads the result. A ``make`` that failed is made again by
    the next asker, which then fails with its own message."""
    folder, result = shared_tmp / name, shared_tmp / f'{name}.json'
    with FileLock(str(shared_tmp / f'{name}.lock')):
        if not result.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            result.write_text(json.dumps(make(folder)))
        return json.loads(result.read_text())


DEMO_CONFIG = 'configs/toy/maskrcnn_dit_b0_toy_coco.py'
# a sixth of the demo's 600 iterations: bbox / segm mAP after 100 measured
# 0.44 / 0.54 (seed 0, the config's), 0.42 / 0.53 (seed 1), 0.38 / 0.60
# (seed 2) before the sandwich's high=0.75, 0.446 / 0.543 (seed 0) and bbox
# 0.371 (seed 1) with it, and with low=0.15 0.425 / 0.517, 0.345 / 0.540 and
# 0.386 / 0.481 (one thread), clear of the 0.3 the demo test asks for (0.95 /
# 0.95 after 600)
DEMO_MODEL_ITERS = 100


@pytest.fixture(scope='session')
def trained_detector(toy_data, shared_tmp) -> dict:
    """The demo's model, trained once per test run for every test that needs a
    trained detector: ``tools/train.py`` on the demo's config for
    ``DEMO_MODEL_ITERS`` iterations, logging every iteration and validating
    after the last, then ``tools/test.py`` on the final checkpoint with
    ``--out`` and ``--show-dir``. Holds the work dir, the number of
    iterations and both tools' output."""

    def make(work_dir):
        train = run_tool('tools/train.py', DEMO_CONFIG, '--work-dir', work_dir,
                         '--cfg-options',
                         f'train_cfg.max_iters={DEMO_MODEL_ITERS}',
                         f'train_cfg.val_interval={DEMO_MODEL_ITERS}',
                         'default_hooks.logger.interval=1')
        test = run_tool('tools/test.py', DEMO_CONFIG,
                        work_dir / f'iter_{DEMO_MODEL_ITERS}.pth',
                        '--work-dir', work_dir, '--out',
                        work_dir / 'preds.pkl', '--show-dir', work_dir / 'vis')
        return dict(work_dir=str(work_dir), iters=DEMO_MODEL_ITERS,
                    train=train, test=test)

    return once(shared_tmp, 'trained_detector', make)


CLS_TOY = 'configs/toy/cls_dit_b0_toy_imagenet.py'
ONE_ITER = ['train_cfg.max_iters=1', 'train_cfg.val_interval=100',
            'default_hooks.checkpoint.interval=1']


@pytest.fixture(scope='session')
def trained_classifier(toy_data, shared_tmp) -> Path:
    """The work dir of a finished one-iteration run of the toy DiT classifier
    (its dumped config, ``iter_1.pth`` and ``last_checkpoint``), made once per
    test run: the bad-input tests try to damage it (and check it is left as
    it was), the deterministic-evaluation test scores its checkpoint."""

    def make(work_dir):
        run_tool('tools/train.py', CLS_TOY, '--work-dir', work_dir,
                 '--cfg-options', *ONE_ITER)
        return dict(work_dir=str(work_dir))

    return Path(once(shared_tmp, 'trained_classifier', make)['work_dir'])


SHARED_RUNS = ('trained_detector', 'trained_classifier')


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: trains or evaluates a model through the tools '
        '(about 20 s or more on 2 cores); run first')


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """The tests of each shared run in one xdist group (one worker makes the
    run while the other goes on), and the longest first, so that the workers
    finish together: the trained detector's tests, then the tests marked
    slow, then the others, each kind in file order. (With ``--dist loadgroup
    --no-loadscope-reorder``, the README's test command, xdist hands out
    tests in this order.)"""
    for item in items:
        for name in SHARED_RUNS:
            if name in item.fixturenames:
                item.add_marker(pytest.mark.xdist_group(name))

    def rank(item):
        if 'trained_detector' in item.fixturenames:
            return 0
        return 1 if item.get_closest_marker('slow') else 2

    items.sort(key=rank)


def free_port() -> int:
    """A TCP port free now, for a torchrun rendezvous (fixed ports collide when
    two workers launch at once, or with a port still in TIME_WAIT)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


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
