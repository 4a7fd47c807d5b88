"""One picture per image of what a dynamic backbone did with it: the image at
its own size with the routing blended over it and a legend in its top-left
corner. :func:`draw_routing_overlay` chooses the picture by the type of
the statistics a forward returned (``backbone(x).stats``):

- DiT (:class:`RoutingInfo`): colour = the scale (stride 4, 8, 16 or 32)
  where the location's tokens went through the largest share of their
  scale's blocks (``density``; a tie goes to the finer scale, so the PVTv2
  route, every block everywhere, is all stride 4); brightness = how many
  blocks the location's tokens went through over all scales (dark: none,
  full colour: every block of the route).
- Token pass (:class:`TokenPassInfo`): one colour per layer a token stopped
  after (viridis, by depth: the head layers, then the last layer, "all N
  layers").
- MSViT (:class:`MixedScaleInfo`): two colours, coarse (one token for a
  2x2 block of patches, 32x32 pixels of the input for 16x16 patches) and
  fine, with each token's outline drawn in white. Stop heads of an MSViT
  are not drawn.

Every token is drawn over exactly the pixels it covers: token ``k`` of a grid
of stride ``s`` covers input pixels ``[k * s, (k + 1) * s)`` (the grid may
reach past the input, as the backbones pad), ``s`` being the smallest power of
two that gives as many tokens as the grid has (the input size divided by the
token count where none does). The legend's first line is the image's
realized FLOPs as a fraction of the static model's (the PVTv2 route, the plain
ViT).
"""
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..models.routing import MixedScaleInfo, RoutingInfo, TokenPassInfo
from .routing_map import (FONT, _check_image, _check_index, _heat_map,
                          _numpy, _put_text, image_region)

# stride 4, 8, 16, 32 (red, amber, green, blue): far apart in hue, so they
# stay apart when darkened by depth and blended over the image
SCALE_COLOURS = ((230, 60, 50), (250, 170, 20), (60, 180, 75), (0, 120, 220))
STRIDES = (4, 8, 16, 32)
COARSE_COLOUR, FINE_COLOUR = SCALE_COLOURS[3], SCALE_COLOURS[2]
MIN_BRIGHTNESS = 0.2  # a location no block computed: its colour at 20%
OUTSIDE = 0.35        # image pixels the model did not see are dimmed to this

Box = Tuple[int, int, int, int]
LegendEntry = Tuple[np.ndarray, str]  # (swatch colours (k, 3), label)
Colours = Tuple[np.ndarray, Optional[np.ndarray], List[LegendEntry]]


def draw_routing_overlay(image: np.ndarray, routing, index: int = 0,
                         img_shape: Optional[Sequence[int]] = None,
                         input_shape: Optional[Sequence[int]] = None, *,
                         alpha: float = 0.5,
                         head_layers: Optional[Sequence[int]] = None,
                         box: Optional[Box] = None) -> np.ndarray:
    """Image ``index`` of a batch's routing over ``image``, as an RGB uint8
    picture of exactly ``image``'s shape (see the module docstring for what
    each backbone's picture shows).

    ``image``: ``(H, W, 3)`` uint8 RGB, the original image. ``img_shape``:
    ``(h, w)`` of the image inside the backbone's padded input of
    ``input_shape`` ``(H_in, W_in)`` (top left); None for both: the grid
    covers the whole image. ``box``: ``(y0, x0, y1, x1)``, the part of
    ``image`` the model's image is (a centre crop, say; default: all of
    it); the rest is dimmed. ``alpha``: weight of the routing colours.
    ``head_layers``: a token-pass ViT's stop-head layers, so its legend
    lists every layer a token may stop after (default: the statistics'
    ``head_layers``, else those in the image).
    """
    image = _check_image(image)
    paint = _painter(routing)
    _check_index(routing, index)
    y0, x0, y1, x1 = _check_box(box, image.shape)
    colours, borders, entries = paint(routing, index, (y1 - y0, x1 - x0),
                                      img_shape, input_shape, head_layers)
    picture = (image * OUTSIDE).astype(np.uint8)
    region = cv2.addWeighted(image[y0:y1, x0:x1], 1 - alpha, colours, alpha,
                             0)
    if borders is not None:
        region[borders] = (0.4 * region[borders] + 0.6 * 255).astype(np.uint8)
    picture[y0:y1, x0:x1] = region
    fraction = float(routing.flops_fraction[index])
    _draw_legend(picture, f'FLOPs {fraction:.2f}', entries)
    return picture


def routing_summary(routing, index: int = 0) -> str:
    """A line on image ``index``: its realized FLOPs as a fraction of the
    static model's, and what the backbone kept."""
    _check_index(routing, index)
    fraction = float(routing.flops_fraction[index])
    if isinstance(routing, MixedScaleInfo):
        return (f'FLOPs {fraction:.3f} of the plain ViT, coarse regions '
                f'{float(routing.coarse_fraction[index]):.3f}, tokens '
                f'{float(routing.token_fraction[index]):.3f} of all-fine')
    if isinstance(routing, TokenPassInfo):
        return (f'FLOPs {fraction:.3f} of the plain ViT, tokens through '
                f'{float(routing.keep_fraction[index]):.3f} of the layers')
    return f'FLOPs {fraction:.3f} of the PVTv2 route'


# ---------------------------------------------------------------- the grids
def sample_grid(grid: np.ndarray, size: Sequence[int],
                img_shape: Optional[Sequence[int]] = None,
                input_shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """The value of the token over each pixel of an image of ``size``
    ``(h, w)``: ``(h, w)`` (plus ``grid``'s trailing axes), from a grid over
    the padded input (``img_shape`` inside ``input_shape``, top left; None
    for both: the grid covers the image exactly)."""
    region = image_region(grid, img_shape, input_shape)
    if img_shape is None:
        img_shape = input_shape = grid.shape[:2]
    rows = _pixel_tokens(size[0], img_shape[0], input_shape[0],
                         grid.shape[0], region.shape[0])
    cols = _pixel_tokens(size[1], img_shape[1], input_shape[1],
                         grid.shape[1], region.shape[1])
    return region[np.ix_(rows, cols)]


def token_size(length: int, tokens: int) -> float:
    """Input pixels per token along an axis of ``length`` pixels that a grid
    covers with ``tokens`` tokens: the smallest power of two ``s`` with
    ``ceil(length / s) == tokens`` (the grid may reach past the input), else
    ``length / tokens``."""
    stride = 1
    while stride < 2 * length:
        if -(-length // stride) == tokens:
            return stride
        stride *= 2
    return length / tokens


def _pixel_tokens(pixels: int, extent: int, length: int, tokens: int,
                  region: int) -> np.ndarray:
    """For each of ``pixels`` image pixels, the token over its centre: the
    image spans ``extent`` of the input's ``length`` pixels."""
    centres = (np.arange(pixels) + 0.5) * extent / pixels
    index = np.floor(centres / token_size(length, tokens)).astype(int)
    return np.minimum(index, region - 1)


def _check_box(box: Optional[Box], shape: Sequence[int]) -> Box:
    height, width = shape[:2]
    if box is None:
        return 0, 0, height, width
    y0, x0, y1, x1 = (int(v) for v in box)
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise ValueError(f'box {tuple(box)} (y0, x0, y1, x1) is not inside '
                         f'the image of shape {(height, width)}')
    return y0, x0, y1, x1


# ------------------------------------------------------- one per backbone
def _painter(routing):
    """The colours of ``routing``'s picture: ``(colours (h, w, 3) uint8,
    outline mask (h, w) or None, legend entries)``."""
    if isinstance(routing, MixedScaleInfo):  # before its base TokenPassInfo
        return _mixed_scale_colours
    if isinstance(routing, TokenPassInfo):
        return _token_pass_colours
    if isinstance(routing, RoutingInfo):
        return _dit_colours
    raise TypeError(f'no routing picture for {type(routing).__name__}; '
                    'expected RoutingInfo, TokenPassInfo or MixedScaleInfo')


def _dit_colours(routing: RoutingInfo, index: int, size, img_shape,
                 input_shape, head_layers=None) -> Colours:
    """DiT: hue = the scale of the largest share of blocks, brightness = the
    blocks gone through."""
    if len(routing.density) > len(STRIDES):
        raise ValueError(f'{len(routing.density)} stages; the picture draws '
                         f'at most {len(STRIDES)}')
    depths = [len(stage) for stage in routing.keep_masks]
    shares = np.stack([
        sample_grid(_numpy(density[index]), size, img_shape, input_shape)
        for density in routing.density])
    blocks = np.tensordot(depths, shares, axes=1)
    total = max(sum(depths), 1)
    brightness = MIN_BRIGHTNESS + (1 - MIN_BRIGHTNESS) * blocks / total
    palette = np.array(SCALE_COLOURS[:len(depths)], np.float64)
    colours = palette[shares.argmax(0)] * brightness[..., None]
    ramp = np.linspace(MIN_BRIGHTNESS, 1, 8)[:, None] * [255, 255, 255]
    entries = [(np.array([colour]), f'stride {stride}')
               for colour, stride in zip(SCALE_COLOURS, STRIDES[:len(depths)])]
    entries.append((ramp, f'blocks 0-{sum(depths)}'))
    return np.rint(colours).astype(np.uint8), None, entries


def _token_pass_colours(routing: TokenPassInfo, index: int, size, img_shape,
                        input_shape, head_layers=None) -> Colours:
    """Token pass: a viridis colour per layer a token stopped after."""
    last = routing.num_layers - 1
    head_layers = head_layers or routing.head_layers or None
    stops = sample_grid(_numpy(routing.stop_layer[index]).astype(int), size,
                        img_shape, input_shape)
    colours = _heat_map((stops + 1) / routing.num_layers, size[1], size[0])
    layers = (set(head_layers) | {last} if head_layers is not None
              else set(np.unique(stops).tolist()))
    entries = []
    for layer in sorted(layers):
        swatch = _heat_map(np.array([[(layer + 1) / routing.num_layers]]),
                           1, 1)[0]
        label = (f'all {routing.num_layers} layers' if layer == last else
                 f'stopped after layer {layer}')
        entries.append((swatch, label))
    return colours, None, entries


def _mixed_scale_colours(routing: MixedScaleInfo, index: int, size,
                         img_shape, input_shape, head_layers=None) -> Colours:
    """MSViT: coarse and fine tokens in two colours, each token outlined."""
    coarse = _numpy(routing.scale_map[index]).astype(bool)
    rows, cols = coarse.shape
    # a token's id: the fine position of its top-left patch
    r, c = np.mgrid[:rows, :cols]
    ids = np.where(coarse, (r - r % 2) * cols + (c - c % 2), r * cols + c)
    ids = sample_grid(ids, size, img_shape, input_shape)
    drawn = sample_grid(coarse, size, img_shape, input_shape)
    colours = np.where(drawn[..., None], np.array(COARSE_COLOUR, np.uint8),
                       np.array(FINE_COLOUR, np.uint8))
    borders = np.zeros(size, bool)
    borders[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    borders[1:] |= ids[1:] != ids[:-1]
    patch = 16 if input_shape is None else round(token_size(input_shape[0],
                                                            rows))
    entries = [(np.array([COARSE_COLOUR]), f'coarse {2 * patch}x{2 * patch}'),
               (np.array([FINE_COLOUR]), f'fine {patch}x{patch}')]
    return np.ascontiguousarray(colours), borders, entries


# ---------------------------------------------------------------- legend
def _draw_legend(picture: np.ndarray, title: str,
                 entries: Sequence[LegendEntry]) -> None:
    """A whitened box in the top-left corner of ``picture``: ``title``, then
    a swatch and a label a line, the font shrunk (down to 0.25) until the
    box fits in 60% of the picture's width and height; cut at its edges if
    it still does not."""
    height, width = picture.shape[:2]
    labels = [title] + [label for _, label in entries]
    scale = 0.45
    while True:
        sizes = [cv2.getTextSize(text, FONT, scale, 1) for text in labels]
        text_w = max(w for (w, _), _ in sizes)
        text_h, base = max(h for (_, h), _ in sizes), sizes[0][1]
        line = text_h + base + 2
        swatch = max(line - 3, 3)
        box_w = 3 + swatch + 3 + text_w + 3
        box_h = 2 + line * len(labels) + 1
        if scale <= 0.25 or (box_w <= 0.6 * width
                             and box_h <= 0.6 * height):
            break
        scale -= 0.05
    box_w, box_h = min(box_w, width), min(box_h, height)
    corner = picture[:box_h, :box_w]
    corner[:] = (0.2 * corner + 0.8 * 255).astype(np.uint8)
    _put_text(picture, title, 2 + text_h, x=3, scale=scale)
    for i, (colours, label) in enumerate(entries, 1):
        top = 2 + i * line
        cells = np.array_split(np.arange(swatch), len(colours))
        for cell, colour in zip(cells, colours):
            if len(cell):
                picture[top:top + swatch, 3 + cell[0]:4 + cell[-1]] = colour
        _put_text(picture, label, top + text_h, x=6 + swatch, scale=scale)
