"""Shared pieces of the routing pictures (:mod:`.routing_overlay`): where a
backbone's token grid lies over the image, a fixed colour scale and text.

Token grids cover the padded batch input; the image sits in its top-left
corner (as mmdet and mmseg pad), so only the rows and columns over the image
are drawn. Values are drawn on fixed scales, not stretched per map, so
pictures of different images and budgets compare.
"""
from typing import Optional, Sequence

import cv2
import numpy as np
from torch import Tensor

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


def _check_image(image: np.ndarray) -> np.ndarray:
    if (not isinstance(image, np.ndarray) or image.dtype != np.uint8
            or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape):
        raise ValueError('image must be an (H, W, 3) uint8 RGB array, got '
                         f'{getattr(image, "dtype", type(image))} of shape '
                         f'{getattr(image, "shape", None)}')
    return image


def _check_index(routing, index: int) -> None:
    batch = len(routing.flops)
    if not -batch <= index < batch:
        raise IndexError(f'image index {index} is out of a batch of {batch}')


def _numpy(map_: Tensor) -> np.ndarray:
    return map_.detach().float().cpu().numpy()


def _heat_map(grid: np.ndarray, width: int, height: int) -> np.ndarray:
    """Values in [0, 1] as RGB viridis at ``width`` x ``height``, each token
    a block of one colour (nearest resize: no made-up detail)."""
    levels = np.clip(np.rint(grid * 255), 0, 255).astype(np.uint8)
    levels = cv2.resize(levels, (width, height),
                        interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS),
                        cv2.COLOR_BGR2RGB)


def _put_text(canvas: np.ndarray, text: str, baseline: int, x: int = 2,
              scale: float = 0.5) -> None:
    """Black text on ``canvas`` from column ``x``, at font ``scale`` or
    smaller, shrunk (down to 0.25) until it fits the canvas' width."""
    while (scale > 0.25 and cv2.getTextSize(text, FONT, scale, 1)[0][0] >
           canvas.shape[1] - x - 2):
        scale -= 0.05
    cv2.putText(canvas, text, (x, baseline), FONT, scale, (0, 0, 0), 1,
                cv2.LINE_AA)
