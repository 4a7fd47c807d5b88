"""Random scenes of coloured shapes: the learnable content of every toy data set.

Each shape kind has its own colour family, so a small model learns to detect,
segment and classify them within minutes on a CPU. Shapes never overlap, so an
instance mask is exactly the painted polygon.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

SHAPE_KINDS = ('disc', 'triangle', 'rectangle')
# Base colour of each kind; every shape jitters it a little.
KIND_COLOURS = {
    'disc': (215, 55, 45),
    'triangle': (40, 175, 65),
    'rectangle': (55, 85, 215),
}


@dataclass
class Shape:
    """One painted shape: its kind and its outline as (N, 2) float x, y."""
    kind: str
    polygon: np.ndarray

    def mask(self, width: int, height: int) -> np.ndarray:
        """Boolean mask of the filled polygon on a ``height`` x ``width`` grid."""
        canvas = Image.new('L', (width, height), 0)
        ImageDraw.Draw(canvas).polygon(
            [tuple(p) for p in self.polygon.tolist()], fill=1)
        return np.asarray(canvas, dtype=bool)


def shape_polygon(rng: np.random.Generator, kind: str, cx: float, cy: float,
                  size: float) -> np.ndarray:
    """Outline of a ``kind`` shape of about ``size`` pixels around (cx, cy)."""
    r = size / 2
    if kind == 'disc':
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    if kind == 'triangle':
        t = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
        return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
    if kind == 'rectangle':
        aspect = rng.uniform(0.6, 1.0)
        w, h = (r, r * aspect) if rng.random() < 0.5 else (r * aspect, r)
        return np.array([[cx - w, cy - h], [cx + w, cy - h], [cx + w, cy + h],
                         [cx - w, cy + h]])
    raise ValueError(f'unknown shape kind {kind!r}; known: {SHAPE_KINDS}')


def textured_background(rng: np.random.Generator, width: int,
                        height: int) -> np.ndarray:
    """A grey gradient with mild noise, so the background is not trivially flat."""
    base = rng.uniform(90, 170)
    gy, gx = rng.uniform(-30, 30, size=2)
    ys = np.linspace(-0.5, 0.5, height)[:, None]
    xs = np.linspace(-0.5, 0.5, width)[None, :]
    grey = base + gy * ys + gx * xs
    noise = rng.normal(0, 6, size=(height, width, 3))
    return np.clip(grey[..., None] + noise, 0, 255).astype(np.uint8)


def paint(image: np.ndarray, shape: Shape,
          rng: np.random.Generator) -> np.ndarray:
    """Paint ``shape`` in its kind's colour (jittered) onto ``image`` in place."""
    colour = np.array(KIND_COLOURS[shape.kind]) + rng.integers(-25, 26, 3)
    mask = shape.mask(image.shape[1], image.shape[0])
    image[mask] = np.clip(colour, 0, 255).astype(np.uint8)
    return mask


def _overlaps(box: Tuple[float, float, float, float],
              boxes: Sequence[Tuple[float, float, float, float]],
              margin: float = 2.0) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin
               and b[1] < y1 + margin for b in boxes)


def random_shapes(rng: np.random.Generator,
                  width: int,
                  height: int,
                  num_shapes: int,
                  size_range: Tuple[float, float],
                  kinds: Sequence[str] = SHAPE_KINDS,
                  region: Optional[Tuple[int, int, int, int]] = None,
                  max_tries: int = 50) -> List[Shape]:
    """Up to ``num_shapes`` non-overlapping shapes inside ``region`` (x0, y0, x1, y1)."""
    x_lo, y_lo, x_hi, y_hi = region or (0, 0, width, height)
    shapes, boxes = [], []
    for _ in range(num_shapes):
        for _ in range(max_tries):
            size = rng.uniform(*size_range)
            half = size / 2
            if x_hi - x_lo <= size or y_hi - y_lo <= size:
                break
            cx = rng.uniform(x_lo + half, x_hi - half)
            cy = rng.uniform(y_lo + half, y_hi - half)
            box = (cx - half, cy - half, cx + half, cy + half)
            if not _overlaps(box, boxes):
                kind = kinds[rng.integers(len(kinds))]
                shapes.append(Shape(kind, shape_polygon(rng, kind, cx, cy,
                                                        size)))
                boxes.append(box)
                break
    return shapes


def paint_labelled_shapes(image: np.ndarray, label: np.ndarray,
                          rng: np.random.Generator, counts: Tuple[int, int],
                          size_range: Tuple[float, float],
                          class_id: Callable[[str], int]) -> None:
    """A semantic-segmentation scene: ``rng.integers(*counts)`` random
    shapes painted onto ``image``, each shape's pixels of ``label`` set to
    ``class_id(shape.kind)``; both in place."""
    height, width = label.shape
    for shape in random_shapes(rng, width, height, int(rng.integers(*counts)),
                               size_range):
        label[paint(image, shape, rng)] = class_id(shape.kind)


def random_size(rng: np.random.Generator, size_range: Tuple[int, int],
                square: bool = False) -> Tuple[int, int]:
    """A (width, height) drawn from ``size_range``; both equal when ``square``."""
    w = int(rng.integers(size_range[0], size_range[1] + 1))
    h = w if square else int(rng.integers(size_range[0], size_range[1] + 1))
    return w, h
