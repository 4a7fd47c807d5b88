"""The routing of one image as a picture: the image beside, for every scale,
how much of that scale's depth each token went through
(``RoutingInfo.density``).

Density is drawn on a fixed scale (viridis: 0 dark purple ... 1 yellow), not
stretched per map, so pictures of different images and budgets compare. Token
grids cover the padded batch input; only the part over the image is drawn, and
the mean in each title is over those tokens, not over padding.
"""
from typing import Optional, Sequence

import cv2
import numpy as np
from torch import Tensor

from ..models.routing import RoutingInfo

TITLE_HEIGHT = 24  # white bar above each panel, for its title
GAP = 4            # white columns between panels
FONT = cv2.FONT_HERSHEY_SIMPLEX


def image_region(grid: np.ndarray, img_shape: Optional[Sequence[int]] = None,
                 input_shape: Optional[Sequence[int]] = None) -> np.ndarray:
    """The rows and columns of a token grid that lie over the image.

    ``img_shape``: (h, w) of the image inside the padded input (top left, as
    mmdet and mmseg pad); ``input_shape``: (H, W) of that input. A token that
    is partly over the image counts as over it. None for both: the whole grid.
    """
    if img_shape is None and input_shape is None:
        return grid
    if img_shape is None or input_shape is None:
        raise ValueError('give both img_shape and input_shape, or neither')
    (h, w), (in_h, in_w) = tuple(img_shape[:2]), tuple(input_shape[:2])
    if not (0 < h <= in_h and 0 < w <= in_w):
        raise ValueError(f'img_shape {(h, w)} does not fit in input_shape '
                         f'{(in_h, in_w)}')
    rows, cols = grid.shape[:2]
    return grid[:-(-rows * h // in_h), :-(-cols * w // in_w)]


def draw_routing(image: np.ndarray, routing: RoutingInfo, index: int = 0,
                 img_shape: Optional[Sequence[int]] = None,
                 input_shape: Optional[Sequence[int]] = None,
                 strides: Sequence[int] = (4, 8, 16, 32),
                 alpha: float = 0.6) -> np.ndarray:
    """Image ``index`` of a batch's routing, as an RGB uint8 picture.

    Panels, left to right: ``image`` itself (titled with its realized FLOPs
    as a fraction of the PVTv2 route), then one density heat map per stage,
    cropped to the image (see :func:`image_region`), resized to the image and
    blended over it (``alpha``: weight of the heat map), titled with its stride
    and mean density. Size: ``(TITLE_HEIGHT + h, n * w + (n - 1) * GAP, 3)``
    for ``n = 1 + stages`` panels of the image's ``(h, w)``.
    """
    image = _check_image(image)
    _check_index(routing, index)
    if len(strides) < len(routing.density):
        raise ValueError(f'{len(routing.density)} stages but only strides '
                         f'{tuple(strides)}')
    fraction = float(routing.flops_fraction[index])
    panels = [_titled(image, f'FLOPs {fraction:.2f} of PVTv2')]
    for density, stride in zip(routing.density, strides):
        grid = image_region(_numpy(density[index]), img_shape, input_shape)
        heat = _heat_map(grid, image.shape[1], image.shape[0])
        blended = cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)
        panels.append(_titled(blended,
                              f'stride {stride}: mean {grid.mean():.2f}'))
    return _side_by_side(panels)


def draw_keep_masks(routing: RoutingInfo, index: int = 0,
                    img_shape: Optional[Sequence[int]] = None,
                    input_shape: Optional[Sequence[int]] = None,
                    strides: Sequence[int] = (4, 8, 16, 32),
                    cell_height: int = 64) -> np.ndarray:
    """Which tokens each block computed (yellow) or skipped (purple), in the
    heat maps' colours, as an RGB uint8 grid under a title bar: a row per
    stage (labelled with its stride), a cell per block. Cells keep the aspect
    of the image region; a stage with fewer blocks leaves its last cells
    light grey."""
    _check_index(routing, index)
    rows = [[image_region(_numpy(mask[index]), img_shape, input_shape)
             for mask in stage] for stage in routing.keep_masks]
    first = next((g for row in rows for g in row), None)
    if first is None:
        raise ValueError('the routing has no keep masks')
    width = max(1, round(cell_height * first.shape[1] / first.shape[0]))
    columns = max(len(row) for row in rows)
    lines = []
    for row, stride in zip(rows, strides):
        cells = [_heat_map(g, width, cell_height) for g in row]
        cells += [np.full((cell_height, width, 3), 224, np.uint8)
                  ] * (columns - len(cells))
        label = np.full((cell_height, 72, 3), 255, np.uint8)
        _put_text(label, f'stride {stride}', cell_height // 2 + 4)
        lines.append(_side_by_side([label] + cells))
    return _titled(stack_pictures(lines),
                   'blocks: yellow = computed')


def stack_pictures(pictures: Sequence[np.ndarray]) -> np.ndarray:
    """RGB pictures one under the other, GAP apart, padded white on the
    right."""
    width = max(p.shape[1] for p in pictures)
    padded = []
    for i, picture in enumerate(pictures):
        pad = np.full((picture.shape[0] + (GAP if i else 0), width, 3), 255,
                      np.uint8)
        pad[pad.shape[0] - picture.shape[0]:, :picture.shape[1]] = picture
        padded.append(pad)
    return np.concatenate(padded)


def _check_image(image: np.ndarray) -> np.ndarray:
    if (not isinstance(image, np.ndarray) or image.dtype != np.uint8
            or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape):
        raise ValueError('image must be an (H, W, 3) uint8 RGB array, got '
                         f'{getattr(image, "dtype", type(image))} of shape '
                         f'{getattr(image, "shape", None)}')
    return image


def _check_index(routing: RoutingInfo, index: int) -> None:
    batch = len(routing.flops)
    if not -batch <= index < batch:
        raise IndexError(f'image index {index} is out of a batch of {batch}')


def _numpy(map_: Tensor) -> np.ndarray:
    return map_.detach().float().cpu().numpy()


def _heat_map(grid: np.ndarray, width: int, height: int) -> np.ndarray:
    """Density in [0, 1] as RGB viridis at ``width`` x ``height``, each token
    a block of one colour (nearest resize: no made-up detail)."""
    levels = np.clip(np.rint(grid * 255), 0, 255).astype(np.uint8)
    levels = cv2.resize(levels, (width, height),
                        interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS),
                        cv2.COLOR_BGR2RGB)


def _titled(panel: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((TITLE_HEIGHT, ) + panel.shape[1:], 255, np.uint8)
    _put_text(bar, text, TITLE_HEIGHT - 8)
    return np.concatenate([bar, panel])


def _put_text(canvas: np.ndarray, text: str, baseline: int) -> None:
    """Black text at the left of ``canvas``, shrunk until it fits its width."""
    scale = 0.5
    while (scale > 0.25 and
           cv2.getTextSize(text, FONT, scale, 1)[0][0] > canvas.shape[1] - 4):
        scale -= 0.05
    cv2.putText(canvas, text, (2, baseline), FONT, scale, (0, 0, 0), 1,
                cv2.LINE_AA)


def _side_by_side(panels: Sequence[np.ndarray]) -> np.ndarray:
    """RGB panels of one height left to right, GAP white columns apart."""
    gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
    out = [panels[0]]
    for panel in panels[1:]:
        out += [gap, panel]
    return np.concatenate(out, axis=1)
