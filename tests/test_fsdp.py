"""Sharded training (FSDP) through mmengine's FlexibleRunner: two torchrun
processes on gloo train the token-pass UperNet toy with
``configs/toy/upernet_dovit_toy_cityscapes_fsdp.py``.

Each rank holds half of the parameters (the strategy logs every rank's share
of the wrapped model), the run computes what data-parallel training (DDP)
computes, step for step, and writes checkpoints in the plain layout, which
``tools/test.py`` evaluates with the non-FSDP config and from which an FSDP
run resumes exactly.

Both runs start from one checkpoint (mmengine's FlexibleRunner builds the
model later than its Runner, after other random draws, so a seeded
initialisation differs), and draw the same batches and augmentations (the
sampler and the dataloader workers are seeded from the seed and the rank
alone). SGD with gradient clipping by norm: the clip is active (the gradient
norm is about 3.7) and SGD's step, unlike AdamW's first ones, follows the
gradient's scale, so clipping each rank's shard by its own norm (mmengine's
OptimWrapper under FSDP) would change the losses.
"""
import math
import re

import pytest
import torch
from torch import nn

from conftest import ROOT, run_tool
from dit_mm.engine.fsdp import DitFSDPStrategy, match_module_paths
from test_distributed import dist_train
from test_tools import logged_losses

# one worker runs the module: its tests share one FSDP run (fsdp_run)
pytestmark = pytest.mark.xdist_group('fsdp')
FSDP_TOY = ROOT / 'configs' / 'toy' / 'upernet_dovit_toy_cityscapes_fsdp.py'
PLAIN_TOY = ROOT / 'configs' / 'toy' / 'upernet_dovit_toy_cityscapes.py'
ITERS = 3
CONFIG = """_base_ = '{base}'
load_from = '{init}'
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='SGD', lr=0.05, momentum=0.9,
                   weight_decay=1e-4),
    clip_grad=dict(max_norm=0.5))
"""
COMPARED = ('loss', 'decode.loss_ce', 'aux.loss_ce', 'loss_aux_l1',
            'loss_aux_l3', 'grad_norm')


def run_options(iters=ITERS, *extra):
    return ['--cfg-options', f'train_cfg.max_iters={iters}',
            f'train_cfg.val_interval={iters + 1}',
            'default_hooks.checkpoint.interval=2',
            'default_hooks.logger.interval=1', *extra]


def initial_checkpoint(path):
    """The toy model's initial weights, as a plain (non-FSDP) checkpoint."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(PLAIN_TOY).model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)
    return model.state_dict()


@pytest.fixture(scope='module')
def fsdp_run(toy_data, tmp_path_factory):
    """(config, initial state dict, FSDP work dir, its output)."""
    root = tmp_path_factory.mktemp('fsdp')
    init = initial_checkpoint(root / 'init.pth')
    config = root / 'toy_fsdp.py'
    config.write_text(CONFIG.format(base=FSDP_TOY, init=root / 'init.pth'))
    work_dir = root / 'fsdp'
    out = dist_train(config, work_dir, 2, *run_options())
    return config, init, work_dir, out


@pytest.mark.slow
def test_fsdp_shards_trains_and_saves_a_plain_checkpoint(fsdp_run, tmp_path):
    config, init, work_dir, out = fsdp_run
    assert 'Distributed launcher: pytorch' in out
    assert "backend='gloo'" in out
    shares = re.findall(r'FSDP: 2 ranks hold (\d+), (\d+) of (\d+) parameters '
                        r'\(.*\) in (\d+) units', out)
    assert len(shares) == 1, out[-3000:]
    rank0, rank1, total, units = map(int, shares[0])
    assert total == sum(v.numel() for k, v in init.items()
                        if 'running_' not in k and 'num_batches' not in k)
    assert rank0 + rank1 == total
    for share in (rank0, rank1):
        assert abs(share - total / 2) < 0.001 * total
    assert units == 25  # 24 modules named in wrap_modules and the root

    losses = logged_losses(work_dir)
    assert sorted(losses) == list(range(1, ITERS + 1))
    assert all(math.isfinite(v) for v in losses.values())

    # rank 0 wrote the whole model under the plain names
    checkpoint = torch.load(work_dir / f'iter_{ITERS}.pth', map_location='cpu',
                            weights_only=False)
    state = checkpoint['state_dict']
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        k: tuple(v.shape) for k, v in init.items()}
    assert not torch.equal(state['decode_head.conv_seg.weight'],
                           init['decode_head.conv_seg.weight'])
    assert len(checkpoint['optimizer']['state']) > 0

    out = run_tool('tools/test.py', PLAIN_TOY, work_dir / f'iter_{ITERS}.pth',
                   '--work-dir', tmp_path)
    miou = re.findall(r'mIoU: (-?[\d.]+)', out)
    assert miou, out[-3000:]  # tested: the gathered model evaluates


@pytest.mark.slow
def test_fsdp_trains_as_ddp(fsdp_run, tmp_path):
    config, _, work_dir, _ = fsdp_run
    out = dist_train(config, tmp_path, 2,
                     *run_options(ITERS, 'runner_type=Runner'))
    assert 'FSDP:' not in out and 'MMDistributedDataParallel' in out
    for key in COMPARED:
        sharded, ddp = logged_losses(work_dir, key), logged_losses(tmp_path, key)
        assert sorted(sharded) == sorted(ddp) == list(range(1, ITERS + 1))
        for it, value in ddp.items():
            assert sharded[it] == pytest.approx(value, rel=1e-4, abs=1e-6), (
                key, it, sharded, ddp)


@pytest.mark.slow
def test_fsdp_resumes_exactly(fsdp_run, tmp_path):
    config, _, work_dir, _ = fsdp_run
    out = dist_train(config, tmp_path, 2, '--resume',
                     work_dir / 'iter_2.pth', *run_options())
    assert 'resumed epoch: 0, iter: 2' in out
    resumed, whole = logged_losses(tmp_path), logged_losses(work_dir)
    assert sorted(resumed) == [ITERS]
    assert resumed[ITERS] == pytest.approx(whole[ITERS], rel=1e-5)


def test_wrap_modules_match_dotted_paths_part_by_part():
    model = nn.Sequential()
    model.add_module('mlp', nn.Sequential(nn.Linear(2, 4), nn.GELU(),
                                          nn.Linear(4, 2)))
    mlp = model.mlp
    assert match_module_paths(model, ['mlp.*']) == [mlp[0], mlp[2]]
    assert match_module_paths(model, ['*']) == [mlp]  # one part, no dots
    assert match_module_paths(model, ['mlp', 'm*']) == [mlp]
    with pytest.raises(ValueError, match=r"\['mlp.1', 'head'\] match no"):
        match_module_paths(model, ['mlp.0', 'mlp.1', 'head'])


def test_without_a_process_group_the_model_is_not_wrapped(tmp_path):
    """tools/test.py runs an FSDP config in one process as a plain model."""
    strategy = DitFSDPStrategy(work_dir=str(tmp_path), wrap_modules=['0'],
                               state_dict_cfg='full')
    model, optim_wrapper = strategy.prepare(
        nn.Sequential(nn.Linear(2, 2)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1),
                           clip_grad=dict(max_norm=1.0)))
    assert type(model) is nn.Sequential
    optim_wrapper.update_params(model(torch.ones(1, 2)).sum())
    state = strategy.optim_state_dict()
    strategy.load_optim_state_dict(state)
    assert state['param_groups'][0]['lr'] == 0.1
