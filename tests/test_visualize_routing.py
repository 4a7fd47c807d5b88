"""Routing pictures of real forwards (DiT, TokenPassViT, MixedScaleViT),
tools/visualize_routing.py end to end on toy Mask R-CNN, token-pass and
mixed-scale Segmenter checkpoints made here (with its refusals), and
RoutingVisualizationHook, alone and in a real training run."""
import logging
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import BaseDataElement
from torch import nn

from conftest import ROOT, load_tool, run_tool
from dit_mm.engine import RoutingVisualizationHook
from dit_mm.models.backbones import DiT, MixedScaleViT, TokenPassViT
from dit_mm.visualization import draw_routing_overlay
from dit_mm.visualization.routing_overlay import FINE_COLOUR
from dit_mm.models.builder import build_task_model

TOOL = 'tools/visualize_routing.py'
DET_CONFIG = 'configs/toy/maskrcnn_dit_b0_toy_coco.py'
SEG_CONFIGS = ('configs/toy/segmenter_dovit_toy_ade20k.py',
               'configs/toy/segmenter_msvit_toy_ade20k.py')
VIT = dict(arch=dict(embed_dims=96, num_layers=6, num_heads=3),
           img_size=(128, 128), drop_path_rate=0.)


def build_backbone(kind):
    torch.manual_seed(0)
    if kind == 'DiT':
        model = DiT('b0', drop_path_rate=0.)
    elif kind == 'TokenPassViT':
        model = TokenPassViT(head_layers=[1, 3], num_classes=8, **VIT)
    else:
        model = MixedScaleViT(**VIT)
    model.init_weights()
    return model.eval()


@pytest.fixture(scope='module')
def backbones():
    return {kind: build_backbone(kind)
            for kind in ('DiT', 'TokenPassViT', 'MixedScaleViT')}


def forward(backbone, budget, shape=(128, 160)):
    """The routing of a 2-image batch padded to ``shape`` (H, W)."""
    backbone.set_budget(budget)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        out = backbone(torch.rand(2, 3, *shape, generator=generator))
    return out.stats


def toy_image(h=150, w=180):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)


def legend_shown(picture):
    """The legend's whitened box and its black text, top left."""
    h, w = picture.shape[:2]
    corner = picture[:h * 6 // 10, :w * 6 // 10]
    return (picture[:2, :3] > 200).all() and (corner < 60).all(-1).any()


def save_checkpoint(config, path):
    """An initialised (untrained) model of ``config``, saved as a runner
    would."""
    torch.manual_seed(0)
    model = build_task_model(Config.fromfile(str(ROOT / config)))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def read(path):
    picture = cv2.imread(str(path))
    assert picture is not None, f'{path} is not a readable picture'
    return picture


# ------------------------------------------------------------- pictures
@pytest.mark.parametrize('kind', ['DiT', 'TokenPassViT', 'MixedScaleViT'])
def test_picture_has_the_image_shape_differs_by_budget(kind, backbones):
    """The second image of the batch, 100x150 inside 128x160, drawn over an
    image of another size (the original before the test resize)."""
    backbone = backbones[kind]
    image = toy_image()
    pictures = {}
    for budget in (0.5, 1.0):
        routing = forward(backbone, budget)
        pictures[budget] = draw_routing_overlay(
            image, routing, 1, (100, 150), (128, 160),
            head_layers=getattr(backbone, 'head_layers', None))
        assert pictures[budget].shape == image.shape
        assert pictures[budget].dtype == np.uint8
        assert legend_shown(pictures[budget])
    below = slice(image.shape[0] * 6 // 10, None)  # below the legend
    assert not np.array_equal(pictures[0.5][below], pictures[1.0][below])
    if kind == 'MixedScaleViT':  # all fine at 1.0, not the stop-layer look
        fine = cv2.addWeighted(image, 0.5, np.ascontiguousarray(
            np.broadcast_to(np.uint8(FINE_COLOUR), image.shape)), 0.5, 0)
        same = (pictures[1.0][below] == fine[below]).all(-1)
        assert same.mean() > 0.8  # but for the token outlines


# --------------------------------------------------------------- the tool
@pytest.fixture(scope='module')
def det_checkpoint(tmp_path_factory):
    return save_checkpoint(DET_CONFIG, tmp_path_factory.mktemp('ckpt') /
                           'toy_maskrcnn.pth')


@pytest.fixture(scope='module')
def coco_images(toy_data):
    return sorted((toy_data / 'coco' / 'val2017').glob('*.jpg'))


def test_tool_draws_a_toy_detector_at_two_budgets(det_checkpoint,
                                                  coco_images, tmp_path):
    image = coco_images[0]
    half = tmp_path / 'half'
    log = run_tool(TOOL, DET_CONFIG, det_checkpoint, image, '--out-dir', half,
                   '--budget', '0.5')
    out = half / f'{image.stem}_routing.png'
    assert (f'{image}: realized FLOPs 0.500 of the PVTv2 route (budget: '
            f'0.5) -> {out}') in log, log[-3000:]
    assert [p.name for p in half.iterdir()] == [out.name]
    load_tool(TOOL, 'visualize_routing').main([str(ROOT / DET_CONFIG), str(det_checkpoint), str(image),
                      '--out-dir', str(tmp_path / 'full'), '--budget', '1.0'])
    full = read(tmp_path / 'full' / out.name)
    original = read(image)
    assert read(out).shape == full.shape == original.shape
    assert not np.array_equal(read(out), full)


def test_tool_draws_several_budgets_with_one_model(det_checkpoint,
                                                   coco_images, tmp_path,
                                                   capsys):
    """The first budget into --out-dir, the others into budget_<r>/: each
    picture as the tool draws it at that budget alone."""
    images = coco_images[:2]
    tool = load_tool(TOOL, 'visualize_routing')
    tool.main([str(ROOT / DET_CONFIG), str(det_checkpoint),
               *map(str, images), '--out-dir', str(tmp_path / 'all'),
               '--budget', 'none', '0.5'])
    log = capsys.readouterr().out
    assert '4/4' in log  # two images at two budgets
    tool.main([str(ROOT / DET_CONFIG), str(det_checkpoint), str(images[1]),
               '--out-dir', str(tmp_path / 'half'), '--budget', '0.5'])
    name = f'{images[1].stem}_routing.png'
    assert sorted(p.name for p in (tmp_path / 'all').iterdir()) == sorted(
        [f'{i.stem}_routing.png' for i in images] + ['budget_0.5'])
    assert (f'{images[1]}: realized FLOPs 0.500 of the PVTv2 route (budget: '
            f'0.5) -> {tmp_path / "all" / "budget_0.5" / name}') in log
    assert '(budget: learned)' in log
    assert np.array_equal(read(tmp_path / 'all' / 'budget_0.5' / name),
                          read(tmp_path / 'half' / name))
    assert not np.array_equal(read(tmp_path / 'all' / name),
                              read(tmp_path / 'half' / name))


@pytest.mark.parametrize('config', SEG_CONFIGS)
def test_tool_draws_toy_segmenters(config, toy_data, tmp_path, capsys):
    checkpoint = save_checkpoint(config, tmp_path / 'seg.pth')
    images = sorted((toy_data / 'ade' / 'ADEChallengeData2016' / 'images' /
                     'validation').glob('*.jpg'))[:2]
    load_tool(TOOL, 'visualize_routing').main([str(ROOT / config), str(checkpoint), *map(str, images),
                      '--out-dir', str(tmp_path / 'out'), '--budget', '0.5'])
    log = capsys.readouterr().out
    assert '2/2' in log  # the progress bar
    for image in images:
        out = tmp_path / 'out' / f'{image.stem}_routing.png'
        assert f'{image}: realized FLOPs 0.' in log
        assert 'of the plain ViT' in log and '(budget: 0.5)' in log
        assert read(out).shape == read(image).shape


def test_tool_refuses_a_backbone_without_routing(det_checkpoint, coco_images,
                                                 tmp_path):
    config = tmp_path / 'resnet_toy.py'
    config.write_text(
        f"_base_ = '{ROOT / DET_CONFIG}'\n"
        "model = dict(\n"
        "    backbone=dict(_delete_=True, type='ResNet', depth=18),\n"
        "    neck=dict(in_channels=[64, 128, 256, 512]))\n")
    with pytest.raises(SystemExit, match='backbone of resnet_toy.py is '
                       'ResNet, which reports no routing'):
        load_tool(TOOL, 'visualize_routing').main([str(config), str(det_checkpoint),
                          str(coco_images[0]), '--out-dir',
                          str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('case', ['config', 'checkpoint', 'image'])
def test_tool_names_a_missing_input(case, det_checkpoint, coco_images,
                                    tmp_path):
    paths = dict(config=ROOT / DET_CONFIG, checkpoint=det_checkpoint,
                 image=coco_images[0])
    paths[case] = tmp_path / f'no_{case}.xyz'
    with pytest.raises(SystemExit, match=f'{case} .*no_{case}.xyz does not '
                       'exist'):
        load_tool(TOOL, 'visualize_routing').main([str(paths['config']), str(paths['checkpoint']),
                          str(paths['image']), '--out-dir',
                          str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists()


def test_tool_overwrites_nothing_but_its_pictures(det_checkpoint, coco_images,
                                                  tmp_path):
    tool = load_tool(TOOL, 'visualize_routing')
    args = [str(ROOT / DET_CONFIG), str(det_checkpoint)]
    notes = tmp_path / 'notes.jpg'  # not an image, whatever its name
    notes.write_text('mine')
    with pytest.raises(SystemExit, match='notes.jpg is not an image'):
        tool.main(args + [str(notes), '--out-dir', str(tmp_path)])
    out_file = tmp_path / 'pictures'
    out_file.write_text('mine')
    with pytest.raises(SystemExit, match='exists and is not a folder'):
        tool.main(args + [str(coco_images[0]), '--out-dir', str(out_file)])
    assert out_file.read_text() == 'mine' and notes.read_text() == 'mine'
    cat, drawn = tmp_path / 'cat.png', tmp_path / 'cat_routing.png'
    for image in (cat, drawn):  # cat's picture would replace cat_routing
        image.write_bytes(cv2.imencode('.png', read(coco_images[0]))[1])
    before = drawn.read_bytes()
    with pytest.raises(SystemExit, match='would replace one of the inputs'):
        tool.main(args + [str(cat), str(drawn), '--out-dir', str(tmp_path)])
    assert drawn.read_bytes() == before
    twin = tmp_path / 'twin'
    twin.mkdir()
    (twin / coco_images[0].name).write_bytes(coco_images[0].read_bytes())
    with pytest.raises(SystemExit, match='would both be drawn'):
        tool.main(args + [str(coco_images[0]), str(twin / coco_images[0].name),
                          '--out-dir', str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('bad', ['0', '1.5', 'half'])
def test_tool_refuses_a_bad_budget(bad, capsys):
    with pytest.raises(SystemExit):
        load_tool(TOOL, 'visualize_routing').parse_args(['c.py', 'k.pth', 'i.jpg', '--budget', bad])
    assert "a budget is 'none' or a number in (0, 1]" in \
        capsys.readouterr().err


def test_tool_arguments():
    tool = load_tool(TOOL, 'visualize_routing')
    args = tool.parse_args(['c.py', 'k.pth', 'a.jpg', 'b.png'])
    assert args.images == ['a.jpg', 'b.png']
    assert args.out_dir == 'work_dirs/routing'
    assert 'budget' not in vars(args)  # the config's
    assert tool.budget_folders(args) == [(tool.CONFIG_BUDGET,
                                          'work_dirs/routing')]
    args = tool.parse_args(['c.py', 'k.pth', 'a.jpg', '--budget', 'None',
                            '1', '0.5', '--out-dir', 'o'])
    assert args.budget == [None, 1.0, 0.5]
    assert tool.budget_folders(args) == [(None, 'o'), (1.0, 'o/budget_1.0'),
                                         (0.5, 'o/budget_0.5')]


# --------------------------------------------------------------- the hook
class Recorder:
    def __init__(self):
        self.images = []

    def add_image(self, name, image, step=0):
        self.images.append((name, image.shape, step))


class ToyModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def fake_runner(backbone, name):
    logger = logging.getLogger(f'test_visualize_routing.{name}')
    return SimpleNamespace(model=ToyModel(backbone), logger=logger,
                           visualizer=Recorder(), iter=7)


def validate(hook, runner, paths, batch_size=2):
    """One validation of ``paths`` (each image 100x150 in a 128x160 input)
    through the hook's stages, the backbone run as the model would."""
    hook.before_val_epoch(runner)
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        samples = [BaseDataElement(metainfo=dict(
            img_path=str(p), img_shape=(100, 150), ori_shape=(150, 180),
            scale_factor=(150 / 180, 100 / 150))) for p in batch]
        hook.before_val_iter(runner, start, dict(data_samples=samples))
        with torch.no_grad():
            runner.model.backbone(torch.rand(len(batch), 3, 128, 160))
        hook.after_val_iter(runner, start, dict(data_samples=samples),
                            samples)
    hook.after_val_epoch(runner)


def test_hook_draws_the_first_images_every_interval(backbones, tmp_path):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f'img{i}.png')
        cv2.imwrite(str(paths[-1]), toy_image())
    backbone = backbones['TokenPassViT']
    backbone.set_budget(0.5)
    runner = fake_runner(backbone, 'interval')
    hook = RoutingVisualizationHook(interval=2, max_images=3)
    for _ in range(3):  # validations 1 and 3 draw
        validate(hook, runner, paths)
    names = [name for name, _, _ in runner.visualizer.images]
    assert names == ['routing_img0', 'routing_img1', 'routing_img2'] * 2
    assert {(shape, step) for _, shape, step in runner.visualizer.images} \
        == {((150, 180, 3), 7)}
    assert not backbone._forward_hooks  # removed after each validation


def test_hook_warns_once_for_a_backbone_without_routing(tmp_path, caplog):
    path = tmp_path / 'img.png'
    cv2.imwrite(str(path), toy_image())
    runner = fake_runner(nn.Conv2d(3, 4, 3), 'static')
    hook = RoutingVisualizationHook()
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            validate(hook, runner, [path])
    warnings = [r for r in caplog.records if 'RoutingVisualizationHook' in
                r.getMessage()]
    assert len(warnings) == 1
    assert 'backbone Conv2d reports no routing' in warnings[0].getMessage()
    assert runner.visualizer.images == []
    with pytest.raises(ValueError, match='max_images'):
        RoutingVisualizationHook(max_images=0)


def test_hook_in_a_training_run_matches_the_tool(toy_data, tmp_path,
                                                 capsys):
    """Two iterations of the toy MSViT Segmenter, validated on three images
    at iteration 2: the hook writes the first two images' pictures through
    LocalVisBackend, at each image's size, and they equal what the tool
    draws from the checkpoint of iteration 2."""
    config = tmp_path / 'msvit_hook.py'
    config.write_text(
        f"_base_ = '{ROOT / SEG_CONFIGS[1]}'\n"
        "custom_hooks = [dict(type='RoutingVisualizationHook', "
        "max_images=2)]\n")
    work_dir = tmp_path / 'work'
    run_tool('tools/train.py', config, '--work-dir', work_dir, '--cfg-options',
             'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=2',
             'train_dataloader.batch_size=2', 'val_dataloader.dataset.indices=3',
             'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False',
             'val_dataloader.persistent_workers=False')
    drawn = sorted(work_dir.glob('*/vis_data/vis_image/routing_*.png'))
    images = sorted((toy_data / 'ade' / 'ADEChallengeData2016' / 'images' /
                     'validation').glob('*.jpg'))[:2]
    assert [p.name for p in drawn] == [f'routing_{i.stem}_2.png'
                                       for i in images]
    for picture, image in zip(drawn, images):
        assert read(picture).shape == read(image).shape
    load_tool(TOOL, 'visualize_routing').main([str(config), str(work_dir / 'iter_2.pth'),
                      str(images[0]), '--out-dir', str(tmp_path / 'tool')])
    assert np.array_equal(
        read(tmp_path / 'tool' / f'{images[0].stem}_routing.png'),
        read(drawn[0]))
