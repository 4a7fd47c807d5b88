"""The mixed-scale (MSViT) configs: every one loads with the right backbone,
recipe stage and grid; the full-size gate stages train one step through the
tools on the toy layouts; on the toy ImageNet set the gate stage moves the
fraction of coarse regions to its target; the toy Segmenter trains whole,
well above chance, while the gate learns to make regions coarse."""
import glob

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import load
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, load_checkpoint

from conftest import ROOT, run_tool
from test_dit_configs import ADE, ade_at
from test_dovit_configs import TOY_120_ITERS
from test_tools import logged_losses, metric

CLS_TOY = 'configs/toy/cls_msvit_gate_toy_imagenet.py'
SEG_TOY = 'configs/toy/segmenter_msvit_toy_ade20k.py'
WIDTH = dict(s=384, b=768)


@pytest.mark.parametrize(
    'path', sorted(glob.glob(str(ROOT / 'configs/*_msvit_*.py'))))
def test_every_msvit_config_loads_with_its_stage_and_grid(path):
    cfg = Config.fromfile(path)
    name = path.rsplit('/', 1)[1][:-3]
    task, rest = name.split('_msvit_')
    arch, *stage, dataset = rest.split('_')
    backbone = cfg.model.backbone
    assert cfg.custom_imports.imports == ['dit_mm']
    assert backbone.type == 'MixedScaleViT' and backbone.arch == arch
    assert backbone.scale_loss.type == 'GeneralizedBatchShapingLoss'
    crop = 224 if dataset == 'imagenet' else 512
    assert tuple(backbone.scale_loss.grid) == (crop // 32, crop // 32)
    if dataset == 'imagenet':
        assert cfg.model.type == 'DynamicImageClassifier'
        assert backbone.out_type == 'cls_token'
        assert cfg.model.head.in_channels == WIDTH[arch]
    else:
        assert cfg.model.type == 'DynamicEncoderDecoder'
        assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
        assert cfg.model.decode_head.num_classes == 150
        assert backbone.budget_sampling == dict(learned=0.75, full=0.15,
                                                low=0.3)
    if stage == ['gate']:
        assert cfg.load_from is None
        assert 'backbone.scale_gate' in cfg.model.train_only
        assert not any(p.startswith('backbone.layers')
                       for p in cfg.model.train_only)
    else:
        assert 'train_only' not in cfg.model
        gate_name = f'{task}_msvit_{arch}_gate_{dataset}'
        gate = Config.fromfile(ROOT / 'configs' / f'{gate_name}.py')
        last = (f'epoch_{gate.train_cfg.max_epochs}' if dataset == 'imagenet'
                else f'iter_{gate.train_cfg.max_iters}')
        assert cfg.load_from == f'work_dirs/{gate_name}/{last}.pth'


@pytest.mark.slow
def test_full_size_gate_stage_trains_only_the_gate_on_the_ade20k_layout(
        toy_data, tmp_path):
    config = 'configs/segmenter_msvit_s_gate_ade20k.py'
    out = run_tool('tools/train.py', config, '--work-dir', tmp_path,
                   '--cfg-options', *ade_at(ADE))
    assert 'Iter(train) [1/1]' in out
    for logged in ('decode.loss_ce', 'loss_scale', 'coarse_fraction',
                   'flops_ratio'):
        assert logged in out, logged
    state = torch.load(tmp_path / 'iter_1.pth', map_location='cpu',
                       weights_only=False)
    trained = len(state['optimizer']['state'])
    frozen_layers = [k for k in state['state_dict']
                     if k.startswith('backbone.layers.')]
    assert frozen_layers and 0 < trained < len(state['state_dict']) - len(
        frozen_layers)
    preds = tmp_path / 'preds.pkl'
    run_tool('tools/test.py', config, tmp_path / 'iter_1.pth', '--work-dir',
             tmp_path, '--out', preds, '--cfg-options', *ade_at(ADE))
    assert len(load(str(preds))) == 2


def coarse_fraction_on(cfg, checkpoint, split):
    """Test-time coarse fractions of the model (trained, or as built when
    ``checkpoint`` is None) over a toy ImageNet split read with the test
    pipeline."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        from mmpretrain.registry import MODELS
        # the runner adds mmpretrain's top-level data_preprocessor too
        model = MODELS.build(dict(cfg.model,
                                  data_preprocessor=cfg.data_preprocessor))
        if checkpoint is not None:
            load_checkpoint(model, str(checkpoint), map_location='cpu')
        loader = Runner.build_dataloader(dict(
            cfg.val_dataloader, num_workers=0, persistent_workers=False,
            dataset=dict(cfg.val_dataloader.dataset, split=split)))
        model.eval()
        fractions = []
        with torch.no_grad():
            for data in loader:
                inputs = model.data_preprocessor(data, False)['inputs']
                info = model.backbone(inputs).stats
                fractions.append(info.coarse_fraction)
    return torch.cat(fractions)


@pytest.mark.slow
def test_toy_gate_stage_reaches_the_target_coarse_fraction(toy_data,
                                                           tmp_path):
    """Only the gate, its priors and the classifier train on a frozen ViT;
    the generalised batch-shaping loss pulls the coarse fraction from about
    0.05 (a new gate) to the 0.5 target, judged with test-time decisions on
    the 120 toy images."""
    run_tool('tools/train.py', CLS_TOY, '--work-dir', tmp_path)
    cfg = Config.fromfile(ROOT / CLS_TOY)
    cfg.val_dataloader.dataset.data_root = str(toy_data / 'imagenet')

    def fractions(checkpoint):
        return torch.cat([coarse_fraction_on(cfg, checkpoint, split)
                          for split in ('train', 'val')])

    assert float(fractions(None).mean()) < 0.1  # a new gate: all fine
    fractions = fractions(tmp_path / 'iter_300.pth')
    assert len(fractions) == 120
    assert abs(float(fractions.mean()) - 0.5) < 0.05
    assert 0.3 < logged_losses(tmp_path, 'coarse_fraction')[300] < 0.7
    assert fractions.std() > 0.1  # decisions differ between images


@pytest.mark.slow
def test_toy_mixed_scale_segmenter_learns_with_coarse_tokens(toy_data,
                                                            tmp_path):
    """The whole model (gate, ViT, Segmenter head) from scratch on the toy
    ADE20K set: four classes, so one class everywhere scores at most 25."""
    out = run_tool('tools/train.py', SEG_TOY, '--work-dir', tmp_path,
                   *TOY_120_ITERS)
    assert metric(out, 'mIoU') > 40.0
    coarse = logged_losses(tmp_path, 'coarse_fraction')
    flops = logged_losses(tmp_path, 'flops_ratio')
    assert coarse[10] < 0.15
    late = [coarse[i] for i in (100, 110, 120)]
    assert sum(late) / 3 > 0.25
    assert min(flops[i] for i in (100, 110, 120)) < 0.85
