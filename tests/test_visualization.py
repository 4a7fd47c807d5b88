"""The routing pictures (dit_mm.visualization) on routing made by hand: where
tokens land on the image, the colours of each backbone's picture, the legend,
the part of the image a model saw (centre crops) and bad input. Pictures of
real forwards, the tool and the hook: test_visualize_routing.py."""
import cv2
import numpy as np
import pytest
import torch

from dit_mm.models.routing import MixedScaleInfo, RoutingInfo, TokenPassInfo
from dit_mm.visualization import (draw_routing_overlay, image_region,
                                  sample_grid, token_size)
from dit_mm.visualization.inference import model_box
from dit_mm.visualization.routing_overlay import (COARSE_COLOUR, FINE_COLOUR,
                                                  OUTSIDE, SCALE_COLOURS)

ALPHA = 0.5


def toy_image(h=100, w=140, value=None):
    if value is not None:
        return np.full((h, w, 3), value, np.uint8)
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)


def blend(image, colour, alpha=ALPHA):
    full = np.ascontiguousarray(np.broadcast_to(
        np.array(colour, np.uint8), image.shape))
    return cv2.addWeighted(image, 1 - alpha, full, alpha, 0)


def legend_free(picture):
    """The bottom 40% (the legend sits top left, in 60% of the height)."""
    return picture[-(-picture.shape[0] * 6 // 10):]


def dit_routing(input_shape=(64, 96), img_shape=None, depths=(2, 2, 2, 2)):
    """DiT routing of one image: every block computes every token over the
    image (over all the grid without ``img_shape``), none over padding."""
    masks, density = [], []
    for stride, depth in zip((4, 8, 16, 32), depths):
        grid = torch.zeros(1, -(-input_shape[0] // stride),
                           -(-input_shape[1] // stride), dtype=torch.bool)
        h, w = img_shape or input_shape
        grid[:, :-(-h // stride), :-(-w // stride)] = True
        masks.append([grid.clone() for _ in range(depth)])
        density.append(grid.float())
    return RoutingInfo(masks, density, torch.tensor([2.0]), 4.0)


def token_pass_routing(stop_layer, num_layers=6):
    stop = torch.as_tensor(stop_layer)[None]
    return TokenPassInfo(stop, torch.zeros(1, 2), torch.tensor([1.0]), 2.0,
                         num_layers)


# ------------------------------------------------------------ geometry
def test_image_region_rounds_partial_tokens_in():
    grid = np.zeros((16, 24))
    assert image_region(grid, (50, 70), (64, 96)).shape == (13, 18)
    assert image_region(grid, (64, 96), (64, 96)).shape == (16, 24)
    assert image_region(grid).shape == (16, 24)
    with pytest.raises(ValueError, match='both'):
        image_region(grid, (50, 70))
    with pytest.raises(ValueError, match='does not fit'):
        image_region(grid, (65, 70), (64, 96))


def test_token_size():
    assert token_size(128, 8) == 16
    assert token_size(147, 10) == 16  # a ViT pads 147 to 160
    assert token_size(100, 4) == 32   # 100 = 3 strides of 32 and a part
    assert token_size(20, 1) == 32    # any stride >= 20 draws the same
    assert token_size(120, 7) == pytest.approx(120 / 7)  # no power of two


def test_tokens_land_on_the_pixels_they_cover():
    """An 8x8 grid of 16-pixel tokens over a 128x128 input whose top 100
    rows are the image, drawn at twice the size: token k covers image rows
    [32k, 32k + 32), the last one partly."""
    grid = np.arange(64).reshape(8, 8)
    drawn = sample_grid(grid, (200, 256), (100, 128), (128, 128))
    assert drawn.shape == (200, 256)
    rows = np.arange(200) // 32
    cols = np.arange(256) // 32
    assert np.array_equal(drawn, grid[np.ix_(rows, cols)])
    # a grid that reaches past its input (ViT padding 147 -> 160)
    grid = np.arange(10)[:, None].repeat(8, 1)
    drawn = sample_grid(grid, (147, 128), (147, 128), (147, 128))
    assert np.array_equal(drawn[:, 0], np.arange(147) // 16)
    # no shapes: the grid covers the image
    assert np.array_equal(sample_grid(np.eye(2), (4, 4)),
                          np.kron(np.eye(2), np.ones((2, 2))))


# ------------------------------------------------------------- pictures
def test_dit_static_route_is_one_colour_at_full_brightness():
    """Every block over every token: each location has the same share (1) at
    every scale, so the finest scale's colour at full brightness."""
    image = toy_image()
    picture = draw_routing_overlay(image, dit_routing(), 0)
    assert picture.shape == image.shape and picture.dtype == np.uint8
    assert np.array_equal(legend_free(picture),
                          legend_free(blend(image, SCALE_COLOURS[0])))


def test_dit_padding_is_cropped_away_and_depth_darkens():
    image = toy_image(100, 140)
    routing = dit_routing((128, 192), (100, 140))
    picture = draw_routing_overlay(image, routing, 0, (100, 140), (128, 192))
    expected = blend(image, SCALE_COLOURS[0])
    assert np.array_equal(legend_free(picture), legend_free(expected))
    uncropped = draw_routing_overlay(image, routing, 0)
    assert not np.array_equal(legend_free(uncropped), legend_free(expected))
    # only stride 32 computed, one block of two: blue at 0.2 + 0.8 / 8
    for stage, masks in enumerate(routing.keep_masks):
        for mask in masks:
            mask.zero_()
        routing.density[stage].zero_()
    routing.density[3].fill_(0.5)
    routing.keep_masks[3][0].fill_(True)
    picture = draw_routing_overlay(image, routing, 0, (100, 140), (128, 192))
    colour = np.rint(np.array(SCALE_COLOURS[3]) * (0.2 + 0.8 / 8))
    assert np.array_equal(legend_free(picture),
                          legend_free(blend(image, colour)))


def test_token_pass_colours_by_stop_layer_and_legend():
    stop = torch.full((4, 4), 5)
    stop[:2, :2] = 1  # the top-left quarter stopped after layer 1
    routing = token_pass_routing(stop)
    image = toy_image(80, 80, value=128)
    picture = draw_routing_overlay(image, routing, 0, head_layers=[1, 3])
    # the legend lists layers 1, 3 and 5 (all 6): one more line than without
    # head_layers (1 and 5 only), so its box is taller
    present = draw_routing_overlay(image, routing, 0)
    assert (picture[:, :40] != present[:, :40]).any()
    # a token-pass ViT's statistics name its heads, which the legend takes
    routing.head_layers = (1, 3)
    assert np.array_equal(draw_routing_overlay(image, routing, 0), picture)
    bottom = picture[60:, 60:]
    assert (bottom == bottom[0, 0]).all()
    # viridis at 6/6 (yellow) over mid grey
    assert np.abs(bottom[0, 0].astype(int) - [190, 179, 82]).max() <= 2
    quiet = draw_routing_overlay(image, token_pass_routing(torch.full(
        (4, 4), 5)), 0)
    assert np.array_equal(quiet[60:, 60:], bottom)


def test_mixed_scale_colours_and_token_outlines():
    scale_map = torch.zeros(4, 4, dtype=torch.bool)
    scale_map[2:, 2:] = True  # the bottom-right region is one coarse token
    routing = MixedScaleInfo(
        torch.full((1, 4, 4), 5), torch.zeros(1, 0), torch.tensor([1.0]),
        2.0, 6, coarse=torch.tensor([[[False, False], [False, True]]]),
        scale_map=scale_map[None], num_tokens=torch.tensor([13]),
        fine_patches=16)
    image = toy_image(64, 64, value=100)
    picture = draw_routing_overlay(image, routing, 0, (64, 64), (64, 64))
    coarse, fine = blend(image, COARSE_COLOUR), blend(image, FINE_COLOUR)
    # inside the coarse token (no outline across it) and a fine token
    assert np.array_equal(picture[40:63, 40:63], coarse[40:63, 40:63])
    assert np.array_equal(picture[49:63, 17:31], fine[49:63, 17:31])
    # outlines: between fine tokens at column 16 / row 48, none at 48 inside
    # the coarse token
    assert (picture[50:60, 16] > fine[50:60, 16]).all()
    assert np.array_equal(picture[50:60, 48], coarse[50:60, 48])


def test_legend_is_drawn_and_fits_small_images():
    """White image, routing colours blended over it: the legend's box is
    whiter, its text black; it keeps to 60% of the height where it can."""
    for h, w in ((200, 180), (100, 120), (60, 60), (20, 300)):
        image = toy_image(h, w, value=255)
        picture = draw_routing_overlay(image, dit_routing(), 0)
        overlay = blend(image, SCALE_COLOURS[0])
        assert (picture[:2, :3] > overlay[:2, :3]).all()  # the box's margin
        assert (picture[:max(h * 6 // 10, 12), :w * 6 // 10] < 80).any()
        if h >= 100:
            assert np.array_equal(legend_free(picture), legend_free(overlay))


def test_box_dims_what_the_model_did_not_see():
    image = toy_image(80, 120)
    box = (10, 20, 70, 100)
    picture = draw_routing_overlay(image, dit_routing(), 0, box=box)
    outside = (image * OUTSIDE).astype(np.uint8)
    assert np.array_equal(picture[75:, :], outside[75:, :])
    assert np.array_equal(picture[50:70, 75:100],
                          blend(image, SCALE_COLOURS[0])[50:70, 75:100])


def test_model_box():
    # resized (scale factors (w, h)) and not cropped: the whole image
    meta = dict(img_shape=(64, 91), scale_factor=(91 / 91, 64 / 64))
    assert model_box(meta, (64, 91)) == (0, 0, 64, 91)
    assert model_box(dict(img_shape=(30, 40)), (60, 80)) == (0, 0, 60, 80)
    # mmpretrain: ResizeEdge(64) of 64x91 then CenterCrop(64): the middle
    meta = dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))
    assert model_box(meta, (64, 91)) == (0, 14, 64, 78)
    # 93x81 -> 73x64 (x 0.785) -> rows 4 ... 67 of 73, 5 ... 86 of 93
    meta = dict(img_shape=(64, 64), scale_factor=(64 / 81, 73 / 93))
    assert model_box(meta, (93, 81)) == (5, 0, 87, 81)


def test_bad_input_is_refused():
    routing = dit_routing()
    with pytest.raises(ValueError, match='uint8 RGB'):
        draw_routing_overlay(toy_image().astype(np.float32), routing)
    with pytest.raises(ValueError, match='uint8 RGB'):
        draw_routing_overlay(toy_image()[..., 0], routing)
    with pytest.raises(IndexError, match='batch of 1'):
        draw_routing_overlay(toy_image(), routing, index=1)
    with pytest.raises(ValueError, match='not inside'):
        draw_routing_overlay(toy_image(), routing, box=(0, 0, 101, 10))
    with pytest.raises(TypeError, match='no routing picture for dict'):
        draw_routing_overlay(toy_image(), dict(flops=[1]))
