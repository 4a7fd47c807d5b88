"""Data-parallel training of the dynamic models through torchrun on gloo.

Two processes with one image each train the toy DiT, token-pass and
mixed-scale models exactly as one process with both images does: every logged
value agrees at every iteration, and the two ranks end with identical
parameters. For that the runs must not depend on how the batch is split:
the test configs turn off random augmentation and the Gumbel noise
(``gumbel_noise=False``, the deterministic straight-through estimator). The
batch-level losses (DiT's budget, MSViT's batch shaping, the stop heads' mean
over labelled pixels) see the global batch (``dit_mm.models.data_parallel``);
without that the losses below would differ. No ``find_unused_parameters``.
"""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import ROOT, free_port, run_tool
from test_tools import logged_losses

PROBES = dict(PYTHONPATH=f'{ROOT / "tests"}:{os.environ.get("PYTHONPATH", "")}')
HEADER = """_base_ = '{base}'
custom_imports = dict(imports=['dit_mm', 'train_probes'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='RankParamsHook')]
"""
SEG_PIPELINE = """train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=False),
    dict(type='PackSegInputs')]
train_dataloader = dict(num_workers=1, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline))
"""
# name -> (toy config, its changes, a logged value that must vary inside a
# batch so that the ranks hold different token counts)
CASES = {
    'dit': ('cls_dit_b0_toy_imagenet.py', """
model = dict(backbone=dict(gumbel_noise=False,
                           budget_loss=dict(warmup_iters=0)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=64, edge='short'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs')]
train_dataloader = dict(num_workers=1, persistent_workers=False,
                        dataset=dict(pipeline=train_pipeline))
""", 'flops_ratio'),
    # a low threshold: the untrained stop heads already stop tokens
    'token_pass': ('segmenter_dovit_toy_ade20k.py', """
model = dict(backbone=dict(threshold_schedule=None, stop_threshold=0.0105))
""" + SEG_PIPELINE, 'keep_fraction'),
    # a gate that starts undecided and learns fast mixes coarse and fine
    'mixed_scale': ('segmenter_msvit_toy_ade20k.py', """
model = dict(backbone=dict(gumbel_noise=False,
                           scale_gate=dict(init_logit=0.0)))
optim_wrapper = dict(paramwise_cfg=dict(
    custom_keys={'scale_gate': dict(lr_mult=100.0)}))
""" + SEG_PIPELINE, 'coarse_fraction'),
}
ITERS = 4
NOT_COMPARED = {'time', 'data_time', 'eta', 'memory', 'iter', 'epoch', 'step'}


def write_config(tmp_path, name):
    base, changes, _ = CASES[name]
    path = tmp_path / f'{name}.py'
    path.write_text(HEADER.format(base=ROOT / 'configs' / 'toy' / base) +
                    changes)
    return path


def cfg_options(batch_size):
    return ['--cfg-options', f'train_cfg.max_iters={ITERS}',
            f'train_cfg.val_interval={ITERS + 1}',
            f'default_hooks.checkpoint.interval={ITERS}',
            'default_hooks.logger.interval=1',
            f'train_dataloader.batch_size={batch_size}']


def dist_train(config, work_dir, procs, *args):
    """tools/dist_train.sh with ``procs`` processes on a free port."""
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               PYTHONUNBUFFERED='1', **PROBES)
    proc = subprocess.run(
        ['bash', 'tools/dist_train.sh', str(config), str(procs),
         '--work-dir', str(work_dir), *map(str, args)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return proc.stdout


def logged(work_dir):
    """iteration -> every value the run logged at it (timings left out)."""
    records = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record:
                records[record['iter']] = {
                    k: v for k, v in record.items() if k not in NOT_COMPARED}
    return records


def assert_same_logs(got, expected, iters, rel, abs):
    """Both runs logged the same values at every iteration 1 ... ``iters``."""
    assert sorted(expected) == sorted(got) == list(range(1, iters + 1))
    for it in expected:
        assert set(got[it]) == set(expected[it]), it
        for key, value in expected[it].items():
            assert got[it][key] == pytest.approx(value, rel=rel, abs=abs), (
                it, key)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CASES))
def test_two_processes_train_as_one_with_the_global_batch(
        name, toy_data, tmp_path):
    config = write_config(tmp_path, name)
    single, ddp = tmp_path / 'single', tmp_path / 'ddp'
    run_tool('tools/train.py', config, '--work-dir', single,
             *cfg_options(batch_size=2), env=PROBES)
    out = dist_train(config, ddp, 2, *cfg_options(batch_size=1))
    assert "backend='gloo'" in out and 'find_unused_parameters=False' in out

    assert_same_logs(logged(ddp), logged(single), ITERS, rel=1e-4, abs=1e-6)
    varying = logged_losses(single, CASES[name][2])
    assert any(0 < v < 1 for v in varying.values()) or name == 'dit', varying

    ranks = [torch.load(ddp / f'rank{r}_params_after.pth') for r in (0, 1)]
    alone = torch.load(single / 'rank0_params_after.pth')
    start = torch.load(single / 'rank0_params_before.pth')
    assert sorted(ranks[0]) == sorted(ranks[1]) == sorted(alone)
    for key in alone:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    # AdamW amplifies rounding in weights whose gradient is near zero, so
    # compare the whole update: what the two runs trained is the same
    flat = [torch.cat([p[k].flatten() for k in sorted(alone)])
            for p in (ranks[0], alone, start)]
    assert (flat[0] - flat[1]).norm() < 0.01 * (flat[1] - flat[2]).norm()
    assert (ddp / f'iter_{ITERS}.pth').is_file()


def _gather_in_process(rank, init_file, results):
    from dit_mm.models.data_parallel import global_batch, mean_over_ranks
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=2)
    try:
        local = torch.full((rank + 1, 2), float(rank + 1), requires_grad=True)
        whole = global_batch(local)
        (whole**2).sum().backward()
        means = mean_over_ranks(dict(a=torch.tensor(float(rank)),
                                     b=torch.tensor(2.0)))
        errors = []
        try:
            global_batch(torch.zeros(1, rank + 1))
        except ValueError as err:
            errors.append(str(err))
        try:  # rank 1 logs one value more
            mean_over_ranks({f'v{i}': torch.tensor(1.0)
                             for i in range(rank + 1)})
        except RuntimeError as err:
            errors.append(str(err))
        results[rank] = (whole.detach(), local.grad, means, errors)
    finally:
        dist.destroy_process_group()


def test_global_batch_concatenates_in_rank_order_and_scales_the_gradient(
        tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_gather_in_process, args=(str(tmp_path / 'init'), results),
             nprocs=2)
    expected = torch.tensor([[1., 1.], [2., 2.], [2., 2.]])
    for rank in (0, 1):
        whole, grad, means, errors = results[rank]
        assert torch.equal(whole, expected)  # batches of 1 and 2 images
        # d/dx of x^2 is 2x, times 2 processes: DDP's mean is then the
        # gradient of the one loss on the global batch
        assert torch.equal(grad, torch.full((rank + 1, 2), 4.0 * (rank + 1)))
        assert means['a'].item() == 0.5 and means['b'].item() == 2.0
        assert len(errors) == 2, errors
        assert 'only the batch size may differ' in errors[0]
        assert 'the processes log different values' in errors[1]
    from dit_mm.models.data_parallel import global_batch
    alone = torch.ones(2, 3)
    assert global_batch(alone) is alone  # no process group: unchanged
