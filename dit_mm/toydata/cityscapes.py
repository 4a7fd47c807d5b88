"""A toy Cityscapes set in the real layout (leftImg8bit/ and gtFine/ per split and
city, with ``*_gtFine_labelTrainIds.png`` and ``*_gtFine_labelIds.png``), read
unchanged by mmseg's ``CityscapesDataset``.

Scenes are a street in miniature: sky above a horizon, road below, and shapes
drawn as traffic lights, traffic signs and cars.
"""

import numpy as np
from PIL import Image

from .output import toy_set
from .scene import paint_labelled_shapes

# trainId -> Cityscapes labelId of the classes the toy scenes use.
LABEL_IDS = {'road': 7, 'traffic light': 19, 'traffic sign': 20, 'sky': 23,
             'car': 26}
KIND_TO_CLASS = {'disc': 'traffic light', 'triangle': 'traffic sign',
                 'rectangle': 'car'}
CITIES = {'train': ('aachen', 'bremen'), 'val': ('frankfurt', )}


def cityscapes_classes():
    from mmseg.datasets import CityscapesDataset
    return CityscapesDataset.METAINFO['classes']


def _street(rng, width, height):
    """Background image and trainId map: sky above a random horizon, road below."""
    horizon = int(height * rng.uniform(0.35, 0.55))
    image = np.empty((height, width, 3), np.float64)
    image[:horizon] = np.array([135, 180, 230]) + rng.uniform(-20, 20, 3)
    image[horizon:] = np.array([95, 95, 100]) + rng.uniform(-15, 15, 3)
    image += rng.normal(0, 5, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), horizon


@toy_set
def make_cityscapes(root, seed=0, num_train=32, num_val=8,
                    size=(512, 256)):
    """Write the toy set under ``root``; ``size`` is (width, height)."""
    train_id = {n: i for i, n in enumerate(cityscapes_classes())}
    to_label_id = np.full(256, 0, np.uint8)  # 0 = 'unlabeled'
    for name, label_id in LABEL_IDS.items():
        to_label_id[train_id[name]] = label_id
    to_label_id[255] = 0
    width, height = size
    for split_index, (split, count) in enumerate(
            (('train', num_train), ('val', num_val))):
        rng = np.random.default_rng([seed, split_index])
        cities = CITIES[split]
        for k in range(count):
            city = cities[k % len(cities)]
            image, horizon = _street(rng, width, height)
            label = np.full((height, width), train_id['road'], np.uint8)
            label[:horizon] = train_id['sky']
            paint_labelled_shapes(image, label, rng, (2, 6),
                                  (0.15 * height, 0.4 * height),
                                  lambda kind: train_id[KIND_TO_CLASS[kind]])
            stem = f'{city}_{k // len(cities):06d}_000019'
            img_dir = root / 'leftImg8bit' / split / city
            gt_dir = root / 'gtFine' / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(img_dir / f'{stem}_leftImg8bit.png')
            Image.fromarray(label).save(
                gt_dir / f'{stem}_gtFine_labelTrainIds.png')
            Image.fromarray(to_label_id[label]).save(
                gt_dir / f'{stem}_gtFine_labelIds.png')
