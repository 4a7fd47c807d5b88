"""Small, deterministic data sets in the exact layouts of COCO, ADE20K,
Cityscapes and ImageNet, so the real dataset classes and metrics run on them."""
from .ade20k import make_ade20k
from .cityscapes import make_cityscapes
from .coco import make_coco
from .imagenet import make_imagenet
from .output import ToyDataExistsError

# name -> (writer, folder under the toy data root)
TOY_SETS = {
    'coco': (make_coco, 'coco'),
    'ade20k': (make_ade20k, 'ade/ADEChallengeData2016'),
    'cityscapes': (make_cityscapes, 'cityscapes'),
    'imagenet': (make_imagenet, 'imagenet'),
}

__all__ = ['TOY_SETS', 'ToyDataExistsError', 'make_ade20k', 'make_cityscapes',
           'make_coco', 'make_imagenet']
