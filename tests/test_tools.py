"""tools/train.py and tools/test.py run every toy config (DiT Mask R-CNN and
RetinaNet, UperNet on ADE20K and Cityscapes, classification, and the Swin-v2
family's Mask R-CNN and UperNet) through the real
runners, each logging DiT's loss_budget; ``--resume`` from a named checkpoint;
the slurm scripts. (Data-parallel training: test_distributed.py; an
interrupted run resuming: test_resume.py.) The DiT Mask R-CNN is the demo's
config: its run is the suite's shared trained detector (conftest.py)."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from mmengine.fileio import load

from conftest import DEMO_CONFIG, ROOT, run_tool

# name -> (config, metric it reports, val set size, iterations to train: an
# untrained detector detects nothing and CocoMetric then reports nothing;
# after 20 iterations the Swin-v2 Mask R-CNN scored bbox mAP 0.021 and the
# RetinaNet 0.150)
TOY_CONFIGS = {
    'coco': (DEMO_CONFIG, 'coco/segm_mAP', 32, None),  # trained_detector's run
    'coco_retinanet': ('configs/toy/retinanet_dit_b0_toy_coco.py',
                       'coco/bbox_mAP', 32, 20),
    'ade20k': ('configs/toy/upernet_dit_b0_toy_ade20k.py', 'mIoU', 16, 2),
    'coco_swinv2': ('configs/toy/maskrcnn_ditswinv2_toy_coco.py',
                    'coco/segm_mAP', 32, 20),
    'ade20k_swinv2': ('configs/toy/upernet_ditswinv2_toy_ade20k.py', 'mIoU',
                      16, 2),
    'cityscapes': ('configs/toy/upernet_dit_b0_toy_cityscapes.py', 'mIoU', 8, 2),
    'imagenet': ('configs/toy/cls_dit_b0_toy_imagenet.py', 'accuracy/top1', 24,
                 2),
}


def short_run(max_iters, interval):
    """--cfg-options for a few logged iterations with a checkpoint each ``interval``."""
    return [
        '--cfg-options', f'train_cfg.max_iters={max_iters}',
        f'train_cfg.val_interval={max_iters}',
        f'default_hooks.checkpoint.interval={interval}',
        'default_hooks.logger.interval=1'
    ]


def logged_losses(work_dir, key='loss'):
    """iter -> ``key`` from every scalars.json the runs in ``work_dir`` wrote."""
    losses = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if key in record:
                losses[record['iter']] = record[key]
    return losses


def metric(output, name):
    found = re.findall(rf'{re.escape(name)}: (-?[\d.]+)', output)
    assert found, f'{name} not in the output:\n{output[-3000:]}'
    return float(found[-1])


def check_trained_and_tested(name, work_dir, iters, train_out, test_out):
    """The run of ``TOY_CONFIGS[name]`` in ``work_dir``: its validation and
    test metrics, every iteration's losses, ``--out`` and ``--show-dir``."""
    _, key, num_val, _ = TOY_CONFIGS[name]
    validated = metric(train_out, key)
    assert sorted(logged_losses(work_dir)) == list(range(1, iters + 1))
    for logged in ('loss_budget', 'flops_ratio'):
        assert sorted(logged_losses(work_dir, logged)) == list(
            range(1, iters + 1))
    # the toys test on their val set: tools/test.py on the last checkpoint
    # reproduces the run's own validation of it
    assert metric(test_out, key) == pytest.approx(validated, abs=1e-3)
    assert len(load(str(work_dir / 'preds.pkl'))) == num_val
    assert any(p.suffix in ('.png', '.jpg')
               for p in (work_dir / 'vis').rglob('*'))


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(set(TOY_CONFIGS) - {'coco'}))
def test_toy_config_trains_and_tests(name, toy_data, tmp_path):
    config, _, _, iters = TOY_CONFIGS[name]
    train = run_tool('tools/train.py', config, '--work-dir', tmp_path,
                     *short_run(iters, iters))
    test = run_tool('tools/test.py', config, tmp_path / f'iter_{iters}.pth',
                    '--work-dir', tmp_path, '--out', tmp_path / 'preds.pkl',
                    '--show-dir', tmp_path / 'vis')
    check_trained_and_tested(name, tmp_path, iters, train, test)


def test_the_demo_config_trains_and_tests(trained_detector):
    """The toy DiT Mask R-CNN: the shared run of the demo's config."""
    run = trained_detector
    check_trained_and_tested('coco', Path(run['work_dir']), run['iters'],
                             run['train'], run['test'])


@pytest.mark.slow
def test_training_moves_the_flops_fraction_to_the_budget_target(
        toy_data, tmp_path):
    """Toy classification from scratch: DiT starts near the PVTv2 route (gates
    open with p=0.95) and the budget loss (target 0.5) pulls the realized
    FLOPs fraction of the training forward passes down towards it."""
    config = TOY_CONFIGS['imagenet'][0]
    run_tool('tools/train.py', config, '--work-dir', tmp_path,
             *short_run(30, 30), 'model.backbone.budget_loss.warmup_iters=5')
    ratios = logged_losses(tmp_path, 'flops_ratio')
    first = sum(ratios[i] for i in range(1, 4)) / 3
    last = sum(ratios[i] for i in range(26, 31)) / 5
    assert first > 0.85, ratios
    assert abs(last - 0.5) < abs(first - 0.5) - 0.1, ratios


@pytest.mark.slow
def test_resume_from_a_named_checkpoint_and_a_missing_one(toy_data, tmp_path):
    config = TOY_CONFIGS['imagenet'][0]
    run_tool('tools/train.py', config, '--work-dir', tmp_path,
             *short_run(2, 1))
    out = run_tool('tools/train.py', config, '--work-dir', tmp_path,
                   '--resume', tmp_path / 'iter_1.pth', *short_run(2, 1))
    assert 'resumed epoch: 0, iter: 1' in out
    out = run_tool('tools/train.py', config, '--resume',
                   tmp_path / 'missing.pth', check=False)
    assert 'missing.pth does not exist' in out


def test_slurm_scripts_hand_srun_the_right_command(tmp_path):
    """No Slurm here: a stand-in srun records what the scripts ask it to run."""
    (tmp_path / 'srun').write_text('#!/bin/bash\necho "$@" > "$SRUN_LOG"\n')
    (tmp_path / 'srun').chmod(0o755)
    env = dict(os.environ, PATH=f'{tmp_path}:{os.environ["PATH"]}',
               SRUN_LOG=str(tmp_path / 'log'), GPUS='16')
    env.pop('PYTHON', None)
    calls = {
        'slurm_train.sh': ['part', 'job', 'cfg.py', 'wd', '--amp'],
        'slurm_test.sh': ['part', 'job', 'cfg.py', 'ck.pth', '--out', 'o.pkl'],
    }
    expected = {
        'slurm_train.sh': 'tools/train.py cfg.py --work-dir wd --amp '
        '--launcher slurm',
        'slurm_test.sh': 'tools/test.py cfg.py ck.pth --out o.pkl '
        '--launcher slurm',
    }
    for script, args in calls.items():
        subprocess.run(['bash', f'tools/{script}', *args], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        logged = (tmp_path / 'log').read_text()
        assert logged.startswith('-p part --job-name=job --gres=gpu:8 '
                                 '--ntasks=16 '), logged
        assert logged.rstrip().endswith(expected[script]), logged
        if (ROOT / '.venv/bin/python').exists():  # without PYTHON: the venv's
            assert '.venv/bin/python -u ' in logged, logged
