"""A toy COCO instance set in the real layout (annotations/instances_*.json,
train2017/, val2017/), read unchanged by mmdet's ``CocoDataset``.

The json lists all 80 COCO categories with their real ids, so the toy set needs
no ``metainfo`` override and a stock 80-class head trains on it; the shapes are
drawn as three of those categories.
"""
import json

import numpy as np
from PIL import Image

from .output import toy_set
from .scene import paint, random_shapes, random_size, textured_background

# The real (non-contiguous) ids of the 80 COCO categories, in mmdet's order.
COCO_CATEGORY_IDS = (
    list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45)) +
    list(range(46, 66)) + [67, 70] + list(range(72, 83)) + list(range(84, 91)))
KIND_TO_CLASS = {'disc': 'sports ball', 'triangle': 'kite', 'rectangle': 'book'}
SPLITS = ('train2017', 'val2017')


def coco_classes():
    from mmdet.datasets import CocoDataset
    return CocoDataset.METAINFO['classes']


def _annotation(shape, mask, ann_id, image_id, category_id, width, height):
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    poly = shape.polygon.copy()
    poly[:, 0] = poly[:, 0].clip(0, width)
    poly[:, 1] = poly[:, 1].clip(0, height)
    return dict(
        id=ann_id, image_id=image_id, category_id=category_id,
        segmentation=[np.round(poly.reshape(-1), 2).tolist()],
        area=int(mask.sum()), bbox=[int(x0), int(y0), int(x1 - x0),
                                    int(y1 - y0)], iscrowd=0)


@toy_set
def make_coco(root, seed=0, num_train=128, num_val=32,
              size_range=(144, 208)):
    """Write the toy COCO set under ``root``."""
    classes = coco_classes()
    name_to_id = dict(zip(classes, COCO_CATEGORY_IDS))
    categories = [dict(id=i, name=n, supercategory=n)
                  for n, i in name_to_id.items()]
    (root / 'annotations').mkdir(exist_ok=True)
    ann_id = 0
    for split_index, (split, count) in enumerate(zip(SPLITS,
                                                     (num_train, num_val))):
        rng = np.random.default_rng([seed, split_index])
        (root / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for k in range(count):
            image_id = split_index * 1_000_000 + k + 1
            width, height = random_size(rng, size_range)
            image = textured_background(rng, width, height)
            side = min(width, height)
            shapes = random_shapes(rng, width, height, int(rng.integers(1, 4)),
                                   (0.2 * side, 0.45 * side))
            for shape in shapes:
                mask = paint(image, shape, rng)
                ann_id += 1
                annotations.append(_annotation(
                    shape, mask, ann_id, image_id,
                    name_to_id[KIND_TO_CLASS[shape.kind]], width, height))
            file_name = f'{image_id:012d}.jpg'
            Image.fromarray(image).save(root / split / file_name, quality=95)
            images.append(dict(id=image_id, file_name=file_name, width=width,
                               height=height))
        instances = dict(
            info=dict(description='dit_mm toy COCO', version='1.0'),
            licenses=[], images=images, annotations=annotations,
            categories=categories)
        (root / 'annotations' / f'instances_{split}.json').write_text(
            json.dumps(instances))
