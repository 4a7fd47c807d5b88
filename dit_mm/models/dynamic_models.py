"""Stock OpenMMLab models that also train their dynamic backbone's own losses.

``DynamicMaskRCNN``, ``DynamicRetinaNet`` (mmdet), ``DynamicEncoderDecoder``
(mmseg) and ``DynamicImageClassifier`` (mmpretrain) are the stock models plus
one step: after the task losses, they add what the backbone and the neck report
through ``aux_losses(data_samples)`` (DiT: ``loss_budget``, and ``flops_ratio``
for the log; the token-pass ViT: its stop heads' ``loss_aux_*``). With the stock model types a DiT backbone still trains, without its
budget.
"""
from typing import Dict

from mmdet.models.detectors import MaskRCNN, RetinaNet
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS as MMSEG_MODELS


class AuxLossMixin:
    """Adds ``aux_losses(data_samples)`` of the backbone and the neck to
    ``loss()``."""

    def loss(self, inputs, data_samples) -> Dict:
        losses = super().loss(inputs, data_samples)
        return self.add_aux_losses(losses, data_samples)

    def add_aux_losses(self, losses: Dict, data_samples) -> Dict:
        """``losses`` with the backbone's and the neck's own added."""
        for part in (getattr(self, 'backbone', None),
                     getattr(self, 'neck', None)):
            extra = getattr(part, 'aux_losses', None)
            if extra is None:
                continue
            for name, value in extra(data_samples).items():
                if name in losses:
                    raise KeyError(f'auxiliary loss {name!r} of '
                                   f'{type(part).__name__} clashes with a '
                                   'task loss')
                losses[name] = value
        return losses


@MMDET_MODELS.register_module()
class DynamicMaskRCNN(AuxLossMixin, MaskRCNN):
    """Mask R-CNN that trains its backbone's auxiliary losses too."""


@MMDET_MODELS.register_module()
class DynamicRetinaNet(AuxLossMixin, RetinaNet):
    """RetinaNet that trains its backbone's auxiliary losses too."""


@MMSEG_MODELS.register_module()
class DynamicEncoderDecoder(AuxLossMixin, EncoderDecoder):
    """mmseg EncoderDecoder that trains its backbone's auxiliary losses too."""


@MMPRETRAIN_MODELS.register_module()
class DynamicImageClassifier(AuxLossMixin, ImageClassifier):
    """mmpretrain ImageClassifier that trains its backbone's auxiliary losses
    too."""
