"""Every bad input of the list gets an error that names the problem, and
nothing the user had is lost or changed: the checkpoints, the work dir of an
earlier run, the data and the model's weights hash the same afterwards.

One real training run (toy classification, one iteration: the suite's
shared ``trained_classifier``) makes the run the other tests try to damage;
the tools are called in this process (their ``main``, with ``build_runner``
forbidden where the refusal must come before any runner or process group),
and once each as a subprocess.
"""
import hashlib
import re
import shutil
import sys
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from conftest import CLS_TOY, ONE_ITER, ROOT, load_tool, run_tool
from dit_mm.engine.cli import apply_train_args, load_config, tool_config
from dit_mm.engine.data_errors import EmptyDatasetError, ImageFileError
from dit_mm.engine.run_guards import (CheckpointMismatchError,
                                      WorkDirInUseError, check_train_run)
from dit_mm.models.backbones import DiT, MixedScaleViT, TokenPassViT
from dit_mm.toydata import make_imagenet
from dit_mm.models.builder import build_task_model

CONFIG = CLS_TOY
CONFIG_NAME = Path(CONFIG).name
TRAIN = load_tool('tools/train.py', 'train_tool')
TEST = load_tool('tools/test.py', 'test_tool')
TOY = load_tool('tools/make_toy_data.py', 'toy_tool')
VIT = dict(embed_dims=32, num_layers=12, num_heads=2, mlp_ratio=2)  # tiny


def digest(root: Path) -> dict:
    """relative path -> sha256 of every file under ``root`` (or of ``root``)."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(root.rglob('*'))
    return {
        str(p.relative_to(root) if p != root else p.name):
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files if p.is_file()
    }


@pytest.fixture
def run(trained_classifier) -> Path:
    """The work dir of a finished one-iteration run of ``CONFIG`` with
    ``ONE_ITER``: its dumped config, ``iter_1.pth`` and ``last_checkpoint``."""
    assert (trained_classifier / 'iter_1.pth').is_file()
    assert (trained_classifier / CONFIG_NAME).is_file()
    return trained_classifier


def call_tool(tool, monkeypatch, *argv):
    """A tool's ``main`` with ``argv``, refused before any runner is built."""

    def no_runner(cfg):
        raise AssertionError('the runner was built before the refusal')

    monkeypatch.setattr(sys, 'argv', ['tool.py', *map(str, argv)])
    monkeypatch.setattr(tool, 'build_runner', no_runner)
    tool.main()


def train_cfg(monkeypatch, *argv) -> Config:
    """The config tools/train.py would check, for inputs that pass."""
    monkeypatch.setattr(sys, 'argv', ['train.py', *map(str, argv)])
    return tool_config(TRAIN.parse_args(), apply_train_args)


# ------------------------------------------------ arch, budget, out_indices
@pytest.mark.parametrize('option, error, message', [
    ('model.backbone.arch=b9', KeyError, r"Unknown DiT arch 'b9'; choose one "
     r"of \['b0'"),
    ('model.backbone.budget=1.5', ValueError,
     r'budget must be in \(0, 1\] or None, got 1.5'),
    ('model.backbone.budget=0', ValueError,
     r'budget must be in \(0, 1\] or None, got 0.0'),
    ('model.backbone.out_indices=(4,)', ValueError,
     r'out_indices must name stages 0..3 \(or count back from -1\), '
     r'got \(4,\)'),
])
def test_bad_model_settings_are_named_and_the_run_is_kept(
        run, monkeypatch, option, error, message):
    """Resuming with a bad arch / budget / out_indices fails while the model
    is built for the checkpoint check, before the runner writes anything."""
    before = digest(run)
    with pytest.raises(error, match=message):
        call_tool(TRAIN, monkeypatch, CONFIG, '--work-dir', run, '--resume',
                  '--cfg-options', *ONE_ITER, option)
    assert digest(run) == before


@pytest.mark.parametrize('cls, arch, message', [
    (DiT, 'b0', r"Unknown DiT arch 'b9'"),
    (TokenPassViT, VIT, r"Unknown ViT arch 'b9'"),
    (MixedScaleViT, VIT, r"Unknown ViT arch 'b9'"),
])
def test_every_backbone_names_a_bad_arch_budget_and_out_indices(
        cls, arch, message):
    with pytest.raises(KeyError, match=message):
        cls('b9')
    for budget in (0, -0.5, 1.01, float('nan')):
        with pytest.raises(ValueError, match=r'budget must be in \(0, 1\]'):
            cls(arch, budget=budget)
    with pytest.raises(ValueError, match=r'out_indices .*40'):
        cls(arch, out_indices=(40, ))
    model = cls(arch)
    model.set_budget(0.5)
    with pytest.raises(ValueError, match='got 2.0'):
        model.set_budget(2.0)
    assert model.budget == 0.5  # a refused budget changes nothing


# ------------------------------------------------ a checkpoint of another arch
def test_test_refuses_a_checkpoint_of_another_arch(run, monkeypatch,
                                                   tmp_path):
    before = digest(run)
    with pytest.raises(CheckpointMismatchError) as info:
        call_tool(TEST, monkeypatch, CONFIG, run / 'iter_1.pth',
                  '--work-dir', tmp_path / 'test', '--cfg-options',
                  'model.backbone.arch=b1')
    text = str(info.value)
    assert 'iter_1.pth does not fit the model' in text
    assert 'DynamicImageClassifier with a DiT backbone' in text
    assert re.search(r'\d+ shape mismatches: backbone\.\S+ \(checkpoint '
                     r'\(\d+[,\d ]*\) vs model \(\d+', text), text
    assert 'Nothing was loaded' in text
    # b2: deeper stages; its extra blocks are missing from a b0 checkpoint
    with pytest.raises(CheckpointMismatchError,
                       match=r'\d+ keys of the model missing from the '
                       r'checkpoint: backbone\.stages\.0\.blocks\.2\.'):
        call_tool(TEST, monkeypatch, CONFIG, run / 'iter_1.pth',
                  '--cfg-options', 'model.backbone.arch=b2')
    assert digest(run) == before
    assert not (tmp_path / 'test').exists()


def test_resume_refuses_a_checkpoint_of_another_arch(run, monkeypatch,
                                                     tmp_path):
    before = digest(run)
    fresh = tmp_path / 'fresh'
    with pytest.raises(CheckpointMismatchError,
                       match=r'--resume checkpoint .*iter_1\.pth does not '
                       r'fit the model .*shape mismatches'):
        call_tool(TRAIN, monkeypatch, CONFIG, '--work-dir', fresh,
                  '--resume', run / 'iter_1.pth', '--cfg-options', *ONE_ITER,
                  'model.backbone.arch=b1')
    # the run's own work dir: the checkpoint last_checkpoint names is checked
    with pytest.raises(CheckpointMismatchError,
                       match=r'named in .*last_checkpoint'):
        call_tool(TRAIN, monkeypatch, CONFIG, '--work-dir', run, '--resume',
                  '--cfg-options', *ONE_ITER, 'model.backbone.arch=b1')
    assert digest(run) == before
    assert not fresh.exists()


def test_load_from_needs_the_backbone_to_fit_not_the_head(run, monkeypatch,
                                                          tmp_path):
    before = digest(run)
    with pytest.raises(CheckpointMismatchError,
                       match=r'load_from checkpoint .* does not fit the '
                       r'backbone of the model .*a layout the backbone '
                       r'converts'):
        call_tool(TRAIN, monkeypatch, CONFIG, '--work-dir', tmp_path / 'ft',
                  '--cfg-options', *ONE_ITER, f'load_from={run}/iter_1.pth',
                  'model.backbone.arch=b1')
    # fine-tuning with a head of another class count is normal: it passes
    check_train_run(train_cfg(
        monkeypatch, CONFIG, '--work-dir', tmp_path / 'ft', '--cfg-options',
        f'load_from={run}/iter_1.pth', 'model.head.num_classes=7'))
    check_train_run(train_cfg(monkeypatch, CONFIG, '--work-dir', run,
                              '--resume'))  # the run itself resumes
    assert digest(run) == before
    assert not (tmp_path / 'ft').exists()


def test_init_cfg_checkpoint_of_another_arch_names_keys_and_keeps_weights(
        run):
    model = DiT('b1', init_cfg=dict(type='Pretrained',
                                    checkpoint=str(run / 'iter_1.pth')))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    before = digest(run)
    with pytest.raises(ValueError, match=r'does not fit DiT: shape '
                       r'mismatches .*stages\.0\.patch_embed\.proj\.weight: '
                       r'checkpoint \(32, 3, 7, 7\) vs model \(64, 3, 7, 7\)'):
        model.init_weights()
    assert all(torch.equal(v, weights[k])
               for k, v in model.state_dict().items())
    assert digest(run) == before


def test_test_tool_refuses_another_arch_in_a_subprocess(run, tmp_path):
    before = digest(run)
    out = run_tool('tools/test.py', CONFIG, run / 'iter_1.pth', '--work-dir',
                   tmp_path / 'test', '--cfg-options',
                   'model.backbone.arch=b1', check=False)
    assert 'CheckpointMismatchError' in out and 'shape mismatches' in out
    assert 'Nothing was loaded' in out
    assert digest(run) == before
    assert not (tmp_path / 'test').exists()


# ---------------------------------------------------- a truncated checkpoint
def test_truncated_checkpoint_is_named_and_kept(run, monkeypatch, tmp_path):
    data = (run / 'iter_1.pth').read_bytes()
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(data[:len(data) // 2])
    before, kept = digest(run), digest(broken)
    for tool, argv in ((TEST, [CONFIG, broken]),
                       (TRAIN, [CONFIG, '--work-dir', tmp_path / 'w',
                                '--resume', broken]),
                       (TRAIN, [CONFIG, '--work-dir', tmp_path / 'w',
                                '--cfg-options', f'load_from={broken}'])):
        with pytest.raises(RuntimeError,
                           match=r'broken\.pth is truncated or corrupt'):
            call_tool(tool, monkeypatch, *argv)
    assert digest(broken) == kept and digest(run) == before
    assert not (tmp_path / 'w').exists()


# ------------------------------------------------------ a work dir in use
def test_training_into_an_earlier_run_is_refused(run, monkeypatch):
    before = digest(run)
    with pytest.raises(WorkDirInUseError) as info:
        call_tool(TRAIN, monkeypatch, CONFIG, '--work-dir', run,
                  '--cfg-options', *ONE_ITER)
    text = str(info.value)
    assert f'work dir {run} holds the checkpoints of an earlier run' in text
    assert '(iter_1.pth, last_checkpoint)' in text
    assert '--resume' in text and '--work-dir another/dir' in text
    assert digest(run) == before


def test_resuming_a_run_of_another_config_is_refused(run, monkeypatch,
                                                     tmp_path):
    other = tmp_path / 'other'
    shutil.copytree(run, other)
    (other / CONFIG_NAME).rename(other / 'cls_other_toy.py')
    before = digest(other)
    with pytest.raises(WorkDirInUseError,
                       match=r'holds a run of another config, not of '
                       rf'{CONFIG_NAME} \(its config is cls_other_toy\.py; '
                       r'checkpoints iter_1\.pth, last_checkpoint\)'):
        call_tool(TRAIN, monkeypatch, CONFIG, '--work-dir', other,
                  '--resume', '--cfg-options', *ONE_ITER)
    # checkpoints that --resume alone cannot find (no last_checkpoint)
    (other / 'cls_other_toy.py').rename(other / CONFIG_NAME)
    (other / 'last_checkpoint').unlink()
    before = digest(other)
    with pytest.raises(WorkDirInUseError,
                       match=r'no last_checkpoint, so --resume finds nothing'):
        call_tool(TRAIN, monkeypatch, CONFIG, '--work-dir', other,
                  '--resume', '--cfg-options', *ONE_ITER)
    assert digest(other) == before


def test_train_tool_refuses_an_earlier_run_in_a_subprocess(run):
    before = digest(run)
    out = run_tool('tools/train.py', CONFIG, '--work-dir', run,
                   '--cfg-options', *ONE_ITER, check=False)
    assert 'WorkDirInUseError' in out and 'iter_1.pth' in out
    assert digest(run) == before


# ------------------------------------------------- bad images and batches
def _imagenet_model(run):
    cfg = Config.fromfile(ROOT / CONFIG)
    return build_task_model(cfg, str(run / 'iter_1.pth'))


def test_bad_batches_are_named_and_the_weights_kept(run):
    model = _imagenet_model(run)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    before = digest(run)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    nan, inf = image.float(), image.float()
    nan[1, 5, 5], inf[0, 0, 0] = float('nan'), float('inf')
    bad = [
        ([], r'DynamicImageClassifier\.test_step got an empty batch '
         r'\(0 images\)'),
        (dict(inputs=[], data_samples=[]), 'got an empty batch'),
        (dict(inputs=[image[:, :0, :0]]), r'empty images of size \(0, 0\)'),
        (dict(inputs=[nan]), 'NaN or infinite'),
        (dict(inputs=[inf]), 'NaN or infinite'),
    ]
    with torch.no_grad():
        for data, message in bad:
            with pytest.raises(ValueError, match=message):
                model.test_step(data)
        model.test_step(dict(inputs=[image]))  # a good batch still runs
        model.test_step(dict(inputs=[image[:, :16, :20]]))  # any size does
    assert all(torch.equal(v, weights[k])
               for k, v in model.state_dict().items())
    assert digest(run) == before


@pytest.mark.parametrize('make', [
    lambda: DiT('b0'),
    lambda: TokenPassViT(VIT, img_size=64),
    lambda: MixedScaleViT(VIT, img_size=64),  # all fine under 2 patches
])
def test_images_smaller_than_the_largest_stride_run(make):
    """As the stock networks' padded patch embeddings take them (a minimum
    of one stride or region was refused before, needlessly)."""
    model = make().eval()
    for budget in (None, 1.0):
        model.set_budget(budget)
        for size in ((1, 1), (8, 64), (16, 20), (31, 64)):
            with torch.no_grad():
                outs = model(torch.rand(2, 3, *size))
            assert all(torch.isfinite(o).all() for o in outs)


def _loader(dataset: dict):
    return Runner.build_dataloader(dict(
        batch_size=2, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dataset))


def test_an_empty_image_file_is_named_and_kept(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    mmcv.imwrite(np.full((40, 48, 3), 128, np.uint8), str(folder / 'a.jpg'))
    (folder / 'b.jpg').write_bytes(b'')
    before = digest(folder)
    cfg = Config.fromfile(ROOT / CONFIG)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = _loader(dict(type='CustomDataset', data_root=str(folder),
                              with_label=False, pipeline=cfg.test_pipeline))
        with pytest.raises(ImageFileError,
                           match=r'cannot read image .*b\.jpg: the file is '
                           r'empty \(0 bytes\)'):
            list(loader)
    assert digest(folder) == before


def test_an_empty_data_set_is_named(tmp_path):
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'val.txt').write_text('')
    before = digest(tmp_path)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        with pytest.raises(EmptyDatasetError,
                           match=r"ImageNet found no samples \(data_root="
                           r".*ann_file='.*val\.txt'"):
            _loader(dict(type='ImageNet', data_root=str(tmp_path),
                         split='val', pipeline=[]))
    assert digest(tmp_path) == before


# -------------------------------------------------------------- toy data
def test_toy_data_tool_refuses_to_write_over_data(tmp_path, monkeypatch):
    make_imagenet(tmp_path / 'imagenet', num_train_per_class=1,
                  num_val_per_class=1)
    mine = tmp_path / 'coco' / 'annotations' / 'instances_train2017.json'
    mine.parent.mkdir(parents=True)
    mine.write_text('my real annotations')
    before = digest(tmp_path)
    for sets, message in ((['imagenet'], '--overwrite'),
                          (['coco'], 'not made by the dit_mm')):
        monkeypatch.setattr(sys, 'argv', [
            'make_toy_data.py', '--out', str(tmp_path), '--sets', *sets,
            '--seed', '1'])
        with pytest.raises(SystemExit, match=message):
            TOY.main()
    assert digest(tmp_path) == before


def test_a_sweep_refuses_a_budget_below_the_minimum_before_evaluating(
        run, tmp_path, capsys):
    """sweep_budget.py tries every budget first: one DiT cannot meet (it was
    clamped; a token-pass minimum crashed the sweep after the earlier
    budgets ran) stops it before any evaluation, with the minimum named."""
    sweep = load_tool('tools/analysis_tools/sweep_budget.py', 'sweep_tool')
    before = digest(run)
    with pytest.raises(SystemExit, match=r'error: budget 0.01 cannot be '
                       r'met on the val images .* below what DiT must spend '
                       r'at this input size \(0\.\d+ of the static route'):
        sweep.main([CONFIG, str(run / 'iter_1.pth'), '--budgets', '1.0',
                    '0.01', '--flops-images', '2',
                    '--out-dir', str(tmp_path / 'sweep')])
    assert not (tmp_path / 'sweep' / 'sweep.json').exists()
    assert digest(run) == before
    # a point of the default grid below the minimum is skipped, named
    cfg = load_config(CONFIG)
    model = build_task_model(cfg)
    batches = sweep.val_batches(cfg, 2)
    assert sweep.feasible_budgets(model, batches, [1.0, 0.5, 0.01, None],
                                  skip=True) == [1.0, 0.5, None]
    assert 'skipped: budget 0.01 cannot be met' in capsys.readouterr().err


# --------------------------------------- what the tools' outputs must not lose
def test_a_misspelled_top_level_option_is_refused_by_every_tool(
        run, monkeypatch):
    """mmengine adds any top-level key: ``train_cfgg.max_iters=1`` trained
    the config's schedule and ``load_fromm=X`` from scratch, saying
    nothing."""
    before = digest(run)
    for option, meant in (('train_cfgg.max_iters=1', 'train_cfg'),
                          ('load_fromm=x.pth', 'load_from')):
        with pytest.raises(ValueError, match=f"did you mean '{meant}'"):
            call_tool(TRAIN, monkeypatch, CONFIG, '--work-dir', run,
                      '--resume', '--cfg-options', *ONE_ITER, option)
    with pytest.raises(ValueError, match='nothing would read it'):
        call_tool(TEST, monkeypatch, CONFIG, run / 'iter_1.pth',
                  '--cfg-options', 'test_cfgg.fp16=True')
    assert digest(run) == before


def test_a_checkpoint_with_nan_weights_is_refused(run, monkeypatch,
                                                   tmp_path):
    """A diverged training's checkpoint scored top-1 0.0 in test.py and a
    sweep of 0.0 'within the tolerance', without a word."""
    checkpoint = torch.load(run / 'iter_1.pth', weights_only=False)
    key = next(k for k in checkpoint['state_dict'] if k.startswith('head.'))
    checkpoint['state_dict'][key][0] = float('nan')
    nan = tmp_path / 'nan.pth'
    torch.save(checkpoint, nan)
    with pytest.raises(ValueError, match=f'NaN or infinite values in 1 '
                       f'tensor.*{re.escape(key)}'):
        call_tool(TEST, monkeypatch, CONFIG, nan, '--work-dir',
                  tmp_path / 'test')
    with pytest.raises(ValueError, match='NaN or infinite'):
        build_task_model(load_config(CONFIG), str(nan))


def test_measuring_tools_do_not_write_over_a_file_that_is_not_a_report(
        run, tmp_path):
    """``get_flops.py --out`` given the checkpoint it had read replaced it
    with its JSON; a sweep with a --metric the loop does not report
    replaced the complete sweep.json before it stopped."""
    get_flops = load_tool('tools/analysis_tools/get_flops.py', 'flops_tool')
    copy = tmp_path / 'm.pth'
    shutil.copy(run / 'iter_1.pth', copy)
    before = hashlib.md5(copy.read_bytes()).hexdigest()
    with pytest.raises(FileExistsError, match='not a JSON report'):
        get_flops.main([CONFIG, '--checkpoint', str(copy), '--shape', '32',
                        '32', '--num-images', '1', '--out', str(copy)])
    assert hashlib.md5(copy.read_bytes()).hexdigest() == before
    sweep = load_tool('tools/analysis_tools/sweep_budget.py', 'sweep_tool')
    out = tmp_path / 'sweep'
    out.mkdir()
    (out / 'sweep.json').write_text('{"complete": true}')
    with pytest.raises(SystemExit, match='--metric accuracy/top2 is not'):
        sweep.main([CONFIG, str(run / 'iter_1.pth'), '--budgets', '1.0',
                    '--flops-images', '1', '--metric', 'accuracy/top2',
                    '--out-dir', str(out)])
    assert (out / 'sweep.json').read_text() == '{"complete": true}'


@pytest.mark.parametrize('option', [['--tolerance', 'nan'],
                                    ['--tolerance', '-1'],
                                    ['--warmup', '-3']])
def test_a_sweep_refuses_a_tolerance_or_warmup_that_means_nothing(option):
    """``--tolerance nan`` wrote NaN (not JSON) into sweep.json."""
    sweep = load_tool('tools/analysis_tools/sweep_budget.py', 'sweep_tool')
    with pytest.raises(SystemExit):
        sweep.parse_args([CONFIG, 'x.pth', *option])


def test_the_test_tool_keeps_the_training_runs_record_of_its_config(
        run, monkeypatch, tmp_path):
    """``test.py``'s default work dir is ``train.py``'s, and mmengine's
    runner dumped the test's config over the training run's
    ``<work dir>/<config>.py`` (its schedule replaced by the config's,
    ``load_from`` set); it now goes into the test run's own folder."""
    work = tmp_path / 'run'
    shutil.copytree(run, work)
    record = (work / CONFIG_NAME).read_bytes()
    monkeypatch.setattr(sys, 'argv', ['test.py', CONFIG,
                                      str(work / 'iter_1.pth'),
                                      '--work-dir', str(work)])
    TEST.main()
    assert (work / CONFIG_NAME).read_bytes() == record
    assert len(list(work.glob(f'*/{CONFIG_NAME}'))) == 1  # the test run's
