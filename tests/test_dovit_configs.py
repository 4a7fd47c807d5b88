"""The token-pass (DoViT) configs: every one loads with the right backbone,
widths and classes; a full-size one and a stock mmseg Segmenter config with
only the backbone type changed train and predict through the tools on the toy
ADE20K layout; the toy config trains the whole model well above chance while
the threshold schedule lowers the keep fraction, and resumes on schedule."""
import glob
import textwrap

import pytest
from mmengine.config import Config
from mmengine.fileio import load

from conftest import ROOT, run_tool
from test_dit_configs import ADE, ade_at
from test_tools import logged_losses, metric, short_run

TOY = 'configs/toy/segmenter_dovit_toy_ade20k.py'
# the toy ADE20K Segmenters' schedules cut (from 480, and MSViT's from 960)
# to the 120 that show them learning (the polynomial decay ends with the run)
TOY_120_ITERS = ('--cfg-options', 'train_cfg.max_iters=120',
                 'train_cfg.val_interval=120', 'param_scheduler.0.end=120',
                 'default_hooks.checkpoint.interval=120')
WIDTH = dict(s=384, b=768, l=1024)


@pytest.mark.parametrize(
    'path', sorted(glob.glob(str(ROOT / 'configs/*_dovit_*.py'))))
def test_every_dovit_config_loads_with_its_backbone_and_classes(path):
    cfg = Config.fromfile(path)
    stem = path.rsplit('/', 1)[1][:-3]
    if stem.endswith('_fsdp'):  # the same model, trained sharded
        stem = stem[:-len('_fsdp')]
        assert cfg.runner_type == 'FlexibleRunner'
        assert cfg.strategy.type == 'DitFSDPStrategy'
    decoder, arch, dataset = stem.split('_dovit_')[0], *stem.split(
        '_dovit_')[1].split('_')
    assert cfg.custom_imports.imports == ['dit_mm']
    assert cfg.model.type == 'TokenPassEncoderDecoder'
    backbone = cfg.model.backbone
    assert backbone.type == 'TokenPassViT' and backbone.arch == arch
    classes = 150 if dataset == 'ade20k' else 19
    crop = 512 if dataset == 'ade20k' else 768
    assert backbone.num_classes == cfg.model.decode_head.num_classes == classes
    assert tuple(backbone.img_size) == tuple(cfg.crop_size) == (crop, crop)
    assert cfg.train_dataloader.dataset.type == {
        'ade20k': 'ADE20KDataset', 'cityscapes': 'CityscapesDataset'}[dataset]
    assert cfg.train_cfg.max_iters == (160000 if dataset == 'ade20k' else 80000)
    assert backbone.threshold_schedule.end == cfg.train_cfg.max_iters // 2
    # training for every budget, the recipe docs/budgets.md chose
    assert backbone.budget_sampling == dict(learned=0.75, full=0.15, low=0.3)
    width = WIDTH[arch]
    head = cfg.model.decode_head
    if decoder == 'upernet':
        assert cfg.model.neck.in_channels == [width] * 4
        assert head.in_channels == [width] * 4
        assert cfg.model.auxiliary_head.in_channels == width
        assert len(backbone.out_indices) == 4
    else:
        assert head.in_channels == width
        assert {'segmenter': 'SegmenterMaskTransformerHead',
                'setr_naive': 'SETRUPHead',
                'setr_pup': 'SETRUPHead'}[decoder] == head.type
    if decoder == 'setr_pup':
        assert head.num_convs == 4 and head.up_scale == 2


@pytest.mark.slow
def test_full_size_config_trains_and_predicts_on_the_ade20k_layout(
        toy_data, tmp_path):
    config = 'configs/segmenter_dovit_s_ade20k.py'
    out = run_tool('tools/train.py', config, '--work-dir', tmp_path,
                   '--cfg-options', *ade_at(ADE))
    assert 'Iter(train) [1/1]' in out
    for logged in ('decode.loss_ce', 'loss_aux_l2', 'loss_aux_l5',
                   'loss_aux_l8', 'keep_fraction', 'stop_threshold'):
        assert logged in out, logged
    preds = tmp_path / 'preds.pkl'
    run_tool('tools/test.py', config, tmp_path / 'iter_1.pth', '--work-dir',
             tmp_path, '--out', preds, '--cfg-options', *ade_at(ADE))
    results = load(str(preds))
    assert len(results) == 2 and 'pred_sem_seg' in results[0]


@pytest.mark.slow
def test_stock_segmenter_config_takes_the_token_pass_backbone(
        toy_data, tmp_path):
    config = tmp_path / 'segmenter_token_pass.py'
    config.write_text(textwrap.dedent("""\
        _base_ = 'mmseg::segmenter/segmenter_vit-s_mask_8xb1-160k_ade20k-512x512.py'
        custom_imports = dict(imports=['dit_mm'], allow_failed_imports=False)
        model = dict(type='TokenPassEncoderDecoder', pretrained=None,
                     backbone=dict(type='TokenPassViT'))
        """))
    out = run_tool('tools/train.py', config, '--work-dir', tmp_path,
                   '--cfg-options', *ade_at(ADE))
    assert 'Iter(train) [1/1]' in out and 'loss_aux_l8' in out
    preds = tmp_path / 'preds.pkl'
    run_tool('tools/test.py', config, tmp_path / 'iter_1.pth', '--work-dir',
             tmp_path, '--out', preds, '--cfg-options', *ade_at(ADE))
    assert len(load(str(preds))) == 2


@pytest.mark.slow
def test_toy_token_pass_segmenter_learns_and_stops_tokens(toy_data, tmp_path):
    """The whole model (backbone, stop heads, decoder) from scratch on the
    toy ADE20K set. Its labels hold four classes, so predicting any one class
    everywhere scores at most 25 mIoU."""
    out = run_tool('tools/train.py', TOY, '--work-dir', tmp_path,
                   *TOY_120_ITERS)
    assert metric(out, 'mIoU') > 45.0
    keep = logged_losses(tmp_path, 'keep_fraction')
    threshold = logged_losses(tmp_path, 'stop_threshold')
    assert all(keep[i] == 1.0 for i in range(10, 21, 10))  # threshold ~1.0
    assert threshold[10] == 1.0 and threshold[120] == pytest.approx(0.9)
    assert keep[120] < 0.8 and keep[110] < 0.8


@pytest.mark.slow
def test_toy_token_pass_upernet_trains_and_tests_on_cityscapes(
        toy_data, tmp_path):
    config = 'configs/toy/upernet_dovit_toy_cityscapes.py'
    out = run_tool('tools/train.py', config, '--work-dir', tmp_path,
                   *short_run(2, 2))
    metric(out, 'mIoU')  # validated (metric() asserts it is reported)
    assert sorted(logged_losses(tmp_path, 'loss_aux_l3')) == [1, 2]
    preds = tmp_path / 'preds.pkl'
    run_tool('tools/test.py', config, tmp_path / 'iter_2.pth', '--work-dir',
             tmp_path, '--out', preds)
    assert len(load(str(preds))) == 8
