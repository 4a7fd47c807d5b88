"""A toy ADE20K set in the real layout (ADEChallengeData2016/images|annotations/
training|validation), read unchanged by mmseg's ``ADE20KDataset``.

Annotation PNGs hold ADE20K's label values (class index + 1, 0 = other), so the
stock ``reduce_zero_label=True`` pipeline and 150-class heads apply as they are.
Four classes are drawn (``drawn_classes``); the toy configs score those alone
(``configs/toy/_base_/toy_ade20k_classes.py``).
"""

import numpy as np
from PIL import Image

from .output import toy_set
from .scene import paint_labelled_shapes, random_size, textured_background

BACKGROUND_CLASS = 'wall'
KIND_TO_CLASS = {'disc': 'ball', 'triangle': 'tent', 'rectangle': 'painting'}
SPLITS = (('training', 'train'), ('validation', 'val'))


def ade20k_classes():
    from mmseg.datasets import ADE20KDataset
    return ADE20KDataset.METAINFO['classes']


def drawn_classes():
    """The classes the toy set's labels hold, in ADE20K's order."""
    drawn = {BACKGROUND_CLASS, *KIND_TO_CLASS.values()}
    return tuple(name for name in ade20k_classes() if name in drawn)


@toy_set
def make_ade20k(root, seed=0, num_train=64, num_val=16,
                size_range=(128, 192)):
    """Write the toy set under ``root`` (the ADEChallengeData2016 folder)."""
    label_of = {n: i + 1 for i, n in enumerate(ade20k_classes())}
    for split_index, ((folder, tag), count) in enumerate(
            zip(SPLITS, (num_train, num_val))):
        rng = np.random.default_rng([seed, split_index])
        for sub in ('images', 'annotations'):
            (root / sub / folder).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            width, height = random_size(rng, size_range)
            image = textured_background(rng, width, height)
            label = np.full((height, width), label_of[BACKGROUND_CLASS],
                            np.uint8)
            side = min(width, height)
            paint_labelled_shapes(image, label, rng, (1, 5),
                                  (0.15 * side, 0.4 * side),
                                  lambda kind: label_of[KIND_TO_CLASS[kind]])
            name = f'ADE_{tag}_{k + 1:08d}'
            Image.fromarray(image).save(
                root / 'images' / folder / f'{name}.jpg', quality=95)
            Image.fromarray(label).save(
                root / 'annotations' / folder / f'{name}.png')
