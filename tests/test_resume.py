"""Kill and resume: a toy run killed with SIGKILL (no clean-up, as a lost node
would be) after its checkpoint at iteration 3, then started again with
``--resume``, logs at every iteration what the uninterrupted run logged: the
losses, the schedules (DiT's budget warm-up and Gumbel temperature, the
token pass's stop threshold, MSViT's gate temperature) and so the random
draws (Gumbel noise, Mask R-CNN's samplers, data augmentation). The
schedules read the runner's iteration, which the checkpoint restores, and
``IterationSeedHook`` reseeds every iteration."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from test_distributed import PROBES, assert_same_logs, logged

HEADER = """_base_ = '{base}'
custom_imports = dict(imports=['dit_mm', 'train_probes'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='KillHook')]
"""
# name -> (toy config, its changes, the scheduled values it logs)
CASES = {
    'dit': ('maskrcnn_dit_b0_toy_coco.py', """
model = dict(backbone=dict(
    budget_loss=dict(warmup_iters=6),
    gumbel_tau_schedule=dict(start=3.0, begin=0, end=6)))
""", ('budget_weight', 'gumbel_tau')),
    'token_pass': ('segmenter_dovit_toy_ade20k.py', """
model = dict(backbone=dict(threshold_schedule=dict(start=1.0, begin=0, end=6),
                           stop_threshold=0.02))
train_dataloader = dict(batch_size=2)
""", ('stop_threshold', )),
    'mixed_scale': ('segmenter_msvit_toy_ade20k.py', """
model = dict(backbone=dict(
    scale_gate=dict(init_logit=0.5),
    gate_temperature_schedule=dict(start=3.0, begin=0, end=6)))
train_dataloader = dict(batch_size=2)
""", ('gate_temperature', )),
}
ITERS, CHECKPOINT, KILL = 6, 3, 5
# the runs compare training logs; validation (after the last iteration, of
# the whole and the resumed run) would add nothing to them
NO_VALIDATION = ['val_dataloader=None', 'val_cfg=None', 'val_evaluator=None']


def train(config, work_dir, *extra, kill_at=None):
    env = dict(os.environ, PYTHONUNBUFFERED='1', **PROBES)
    if kill_at is not None:
        env['DIT_MM_KILL_AT_ITER'] = str(kill_at)
    return subprocess.run(
        [sys.executable, 'tools/train.py', str(config), '--work-dir',
         str(work_dir), *extra, '--cfg-options',
         f'train_cfg.max_iters={ITERS}', *NO_VALIDATION,
         f'default_hooks.checkpoint.interval={CHECKPOINT}',
         'default_hooks.logger.interval=1'],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=900, start_new_session=True)  # its own group


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CASES))
def test_a_killed_run_resumes_as_if_never_stopped(name, toy_data, tmp_path):
    base, changes, scheduled = CASES[name]
    config = tmp_path / f'{name}.py'
    config.write_text(HEADER.format(base=ROOT / 'configs' / 'toy' / base) +
                      changes)
    whole, parts = tmp_path / 'whole', tmp_path / 'parts'
    done = train(config, whole)
    assert done.returncode == 0, done.stdout[-4000:]

    killed = train(config, parts, kill_at=KILL)
    assert killed.returncode == -9, killed.stdout[-4000:]  # SIGKILL
    assert (parts / f'iter_{CHECKPOINT}.pth').is_file()
    assert not (parts / f'iter_{ITERS}.pth').exists()
    resumed = train(config, parts, '--resume')
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert f'resumed epoch: 0, iter: {CHECKPOINT}' in resumed.stdout

    expected = logged(whole)
    assert_same_logs(logged(parts), expected, ITERS, rel=1e-5, abs=1e-7)
    for key in scheduled:  # the schedules really moved over the run
        values = [expected[it][key] for it in range(1, ITERS + 1)]
        assert values[0] != values[-1] and len(set(values)) >= 4, (key,
                                                                   values)
