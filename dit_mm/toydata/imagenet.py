"""A toy ImageNet-style classification set (train/<wnid>/*.JPEG, flat val/,
meta/train.txt and meta/val.txt with ``path label`` lines), read unchanged by
mmpretrain's ``ImageNet`` with its 1000 classes.

Each image holds one shape; its kind is the class. Folder names follow the
``n`` + 8 digits pattern of ImageNet wnids but are derived from the class index
(the real wnids are not needed by the dataset class, which reads labels from
the meta files).
"""

import numpy as np
from PIL import Image

from .output import toy_set
from .scene import paint, random_shapes, random_size, textured_background

KIND_TO_CLASS = {'disc': 'golf ball', 'triangle': 'mountain tent',
                 'rectangle': 'envelope'}


def imagenet_classes():
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    return IMAGENET_CATEGORIES


@toy_set
def make_imagenet(root, seed=0, num_train_per_class=32, num_val_per_class=8,
                  size_range=(64, 96)):
    """Write the toy set under ``root``."""
    classes = list(imagenet_classes())
    (root / 'meta').mkdir(exist_ok=True)
    kinds = list(KIND_TO_CLASS)
    for split_index, (split, per_class) in enumerate(
            (('train', num_train_per_class), ('val', num_val_per_class))):
        rng = np.random.default_rng([seed, split_index])
        lines = []
        for k in range(per_class * len(kinds)):
            kind = kinds[k % len(kinds)]
            label = classes.index(KIND_TO_CLASS[kind])
            width, height = random_size(rng, size_range)
            image = textured_background(rng, width, height)
            side = min(width, height)
            for shape in random_shapes(rng, width, height, 1,
                                       (0.45 * side, 0.8 * side),
                                       kinds=(kind, )):
                paint(image, shape, rng)
            if split == 'train':
                wnid = f'n{label:08d}'
                rel = f'{wnid}/{wnid}_{k + 1}.JPEG'
            else:
                rel = f'ILSVRC2012_val_{k + 1:08d}.JPEG'
            path = root / split / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, format='JPEG', quality=95)
            lines.append(f'{rel} {label}')
        (root / 'meta' / f'{split}.txt').write_text('\n'.join(lines) + '\n')
