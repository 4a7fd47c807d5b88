"""The routing picture (dit_mm.visualization) of real DiT forwards, and
tools/analysis/show_routing.py end to end on a toy Mask R-CNN checkpoint made
here, with its refusals (non-DiT backbone, missing inputs, unsafe --out)."""
import importlib.util

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import ROOT, run_tool
from dit_mm.models.backbones import DiT
from dit_mm.models.routing import RoutingInfo
from dit_mm.visualization import (GAP, TITLE_HEIGHT, draw_keep_masks,
                                  draw_routing, image_region)

TOY_CONFIG = 'configs/toy/maskrcnn_dit_b0_toy_coco.py'
TOOL = 'tools/analysis/show_routing.py'
YELLOW = (253, 231, 37)  # viridis at 1.0 (cv2's table, RGB)
PURPLE = (68, 1, 84)     # viridis at 0.0


@pytest.fixture(scope='module')
def dit():
    torch.manual_seed(0)
    model = DiT('b0', drop_path_rate=0.)
    model.init_weights()
    return model.eval()


def forward(model, budget, shape=(64, 96)):
    """Routing of a 2-image batch padded to ``shape`` (H, W)."""
    model.set_budget(budget)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        model(torch.rand(2, 3, *shape, generator=generator))
    return model.routing


def toy_image(h=100, w=140):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)


def stage_panel(picture, stage, w):
    """The pixels (no title) of stage ``stage``'s panel."""
    left = (stage + 1) * (w + GAP)
    return picture[TITLE_HEIGHT:, left:left + w]


def test_picture_layout_and_untouched_image(dit):
    image = toy_image()
    picture = draw_routing(image, forward(dit, 0.5), 1, (50, 70), (64, 96))
    assert picture.dtype == np.uint8
    assert picture.shape == (TITLE_HEIGHT + 100, 5 * 140 + 4 * GAP, 3)
    assert np.array_equal(picture[TITLE_HEIGHT:, :140], image)
    assert (picture[:TITLE_HEIGHT] < 128).any()  # a title is written
    assert (picture[:, 140:140 + GAP] == 255).all()


def test_pvt_route_is_full_density_everywhere(dit):
    """Budget 1.0 computes every token in every block: each stage panel is the
    image blended with viridis' top colour, the same for every pixel."""
    image = toy_image()
    picture = draw_routing(image, forward(dit, 1.0), 0, (50, 70), (64, 96),
                           alpha=0.6)
    full = np.broadcast_to(np.array(YELLOW, np.uint8), image.shape)
    expected = cv2.addWeighted(image, 0.4, np.ascontiguousarray(full), 0.6, 0)
    for stage in range(4):
        assert np.array_equal(stage_panel(picture, stage, 140), expected)


def test_different_routing_different_picture(dit):
    image = toy_image()
    half = draw_routing(image, forward(dit, 0.5), 0, (50, 70), (64, 96))
    full = draw_routing(image, forward(dit, 1.0), 0, (50, 70), (64, 96))
    assert half.shape == full.shape
    for stage in range(4):  # every stage's map changes, not only one
        assert not np.array_equal(stage_panel(half, stage, 140),
                                  stage_panel(full, stage, 140))
    assert not np.array_equal(half[:TITLE_HEIGHT], full[:TITLE_HEIGHT])


def test_padding_is_cropped_away():
    """Density 1 over the image and 0 over the padding: the drawn panels show
    only the image's tokens, so they are uniform."""
    density, masks = [], []
    for stride in (4, 8, 16, 32):
        grid = torch.zeros(1, 64 // stride, 96 // stride)
        rows, cols = -(-50 // stride), -(-70 // stride)
        grid[:, :rows, :cols] = 1
        density.append(grid)
        masks.append([grid.bool()])
    routing = RoutingInfo(masks, density, torch.tensor([1.0]), 2.0)
    image = toy_image(50, 70)
    picture = draw_routing(image, routing, 0, (50, 70), (64, 96))
    for stage in range(4):
        panel = stage_panel(picture, stage, 70).astype(int)
        expected = 0.4 * image + 0.6 * np.array(YELLOW)
        assert np.abs(panel - expected).max() <= 1, stage
    uncropped = draw_routing(image, routing)  # the whole grid, padding too
    assert not np.array_equal(uncropped, picture)


def test_image_region_rounds_partial_tokens_in():
    grid = np.zeros((16, 24))
    assert image_region(grid, (50, 70), (64, 96)).shape == (13, 18)
    assert image_region(grid, (64, 96), (64, 96)).shape == (16, 24)
    assert image_region(grid).shape == (16, 24)
    with pytest.raises(ValueError, match='both'):
        image_region(grid, (50, 70))
    with pytest.raises(ValueError, match='does not fit'):
        image_region(grid, (65, 70), (64, 96))


def test_keep_mask_grid(dit):
    full = draw_keep_masks(forward(dit, 1.0), 0, (48, 96), (64, 96),
                           cell_height=32)
    cell_w = 64  # the region's aspect 2:1 at a height of 32
    assert full.shape == (TITLE_HEIGHT + 4 * 32 + 3 * GAP,
                          72 + 2 * (GAP + cell_w), 3)
    left = 72 + GAP  # after the row labels
    first_cell = full[TITLE_HEIGHT:TITLE_HEIGHT + 32, left:left + cell_w]
    assert (first_cell == YELLOW).all()  # the PVTv2 route computes them all
    half = draw_keep_masks(forward(dit, 0.5), 0, (48, 96), (64, 96),
                           cell_height=32)
    first_cell = half[TITLE_HEIGHT:TITLE_HEIGHT + 32, left:left + cell_w]
    assert (first_cell == PURPLE).all(-1).any()  # some tokens skip block 1
    assert (first_cell == YELLOW).all(-1).any()  # and some go through it


def test_bad_input_is_refused(dit):
    routing = forward(dit, 0.5)
    with pytest.raises(ValueError, match='uint8 RGB'):
        draw_routing(toy_image().astype(np.float32), routing)
    with pytest.raises(ValueError, match='uint8 RGB'):
        draw_routing(toy_image()[..., 0], routing)
    with pytest.raises(IndexError, match='batch of 2'):
        draw_routing(toy_image(), routing, index=2)


# ------------------------------------------------------------- the tool
@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """An initialised (untrained) toy Mask R-CNN, saved as a runner would."""
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(ROOT / TOY_CONFIG)).model)
    model.init_weights()
    path = tmp_path_factory.mktemp('ckpt') / 'toy_maskrcnn.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def toy_image_path(toy_data):
    return sorted((toy_data / 'coco' / 'val2017').glob('*.jpg'))[0]


def load_tool():
    spec = importlib.util.spec_from_file_location('show_routing', ROOT / TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_draws_a_toy_image(checkpoint, toy_image_path, tmp_path):
    out = tmp_path / 'sub' / 'routing.png'
    log = run_tool(TOOL, TOY_CONFIG, checkpoint, toy_image_path, '--out', out,
                   '--budget', '0.5')
    assert 'realized FLOPs: 0.500 of the PVTv2 route (budget: 0.5)' in log
    picture = cv2.imread(str(out))
    image = cv2.imread(str(toy_image_path))
    assert picture is not None
    h, w = image.shape[:2]
    assert picture.shape == (TITLE_HEIGHT + h, 5 * w + 4 * GAP, 3)
    assert np.array_equal(picture[TITLE_HEIGHT:, :w], image)
    assert not np.array_equal(picture[TITLE_HEIGHT:, w + GAP:2 * w + GAP],
                              image)


def test_tool_refuses_a_backbone_without_routing(checkpoint, toy_image_path,
                                                 tmp_path):
    config = tmp_path / 'resnet_toy.py'
    config.write_text(
        f"_base_ = '{ROOT / TOY_CONFIG}'\n"
        "model = dict(\n"
        "    backbone=dict(_delete_=True, type='ResNet', depth=18),\n"
        "    neck=dict(in_channels=[64, 128, 256, 512]))\n")
    out = tmp_path / 'routing.png'
    log = run_tool(TOOL, config, checkpoint, toy_image_path, '--out', out,
                   check=False)
    assert 'backbone of resnet_toy.py is ResNet' in log, log[-3000:]
    assert not out.exists()


@pytest.mark.parametrize('case', ['checkpoint', 'image', 'config'])
def test_tool_names_a_missing_input(case, checkpoint, toy_image_path,
                                    tmp_path):
    paths = dict(config=ROOT / TOY_CONFIG, checkpoint=checkpoint,
                 image=toy_image_path)
    paths[case] = tmp_path / f'no_{case}.xyz'
    with pytest.raises(SystemExit, match=f'{case} .*no_{case}.xyz does not '
                       'exist'):
        load_tool().main([str(paths['config']), str(paths['checkpoint']),
                          str(paths['image']), '--out',
                          str(tmp_path / 'r.png')])
    assert not (tmp_path / 'r.png').exists()


def test_tool_overwrites_nothing_but_a_png_out(checkpoint, toy_image_path,
                                              tmp_path):
    tool = load_tool()
    image_copy = tmp_path / 'image.png'
    image_copy.write_bytes(toy_image_path.read_bytes())
    before = image_copy.read_bytes()
    args = [str(ROOT / TOY_CONFIG), str(checkpoint), str(image_copy)]
    with pytest.raises(SystemExit, match='is one of the inputs'):
        tool.main(args + ['--out', str(image_copy)])
    assert image_copy.read_bytes() == before
    notes = tmp_path / 'notes.txt'
    notes.write_text('mine')
    with pytest.raises(SystemExit, match='must name a .png'):
        tool.main(args + ['--out', str(notes)])
    assert notes.read_text() == 'mine'
    folder = tmp_path / 'folder.png'
    folder.mkdir()
    with pytest.raises(SystemExit, match='not a plain file'):
        tool.main(args + ['--out', str(folder)])


@pytest.mark.parametrize('bad', ['0', '1.5', 'half', 'nan'])
def test_tool_refuses_a_bad_budget(bad, capsys):
    with pytest.raises(SystemExit):
        load_tool().parse_args(['c.py', 'k.pth', 'i.jpg', '--out', 'o.png',
                                '--budget', bad])
    assert "a budget is 'none' or a number in (0, 1]" in \
        capsys.readouterr().err


def test_tool_budget_choices():
    tool = load_tool()
    base = ['c.py', 'k.pth', 'i.jpg', '--out', 'o.png']
    assert 'budget' not in vars(tool.parse_args(base))  # the config's
    assert tool.parse_args(base + ['--budget', 'None']).budget is None
    assert tool.parse_args(base + ['--budget', '1.0']).budget == 1.0
    assert tool.parse_args(base + ['--budget', '0.5']).budget == 0.5

