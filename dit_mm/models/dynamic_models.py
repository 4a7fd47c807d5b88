"""Stock OpenMMLab models that also train their dynamic backbone's own losses.

``DynamicMaskRCNN``, ``DynamicRetinaNet`` (mmdet), ``DynamicEncoderDecoder``
(mmseg) and ``DynamicImageClassifier`` (mmpretrain) are the stock models plus
one step: after the task losses, they add what a dynamic backbone
(``DynamicBackbone``) reports through ``aux_losses(stats, data_samples)``
for the statistics its forward returned in that loss (DiT:
``loss_budget``, and ``flops_ratio`` for the log; the token-pass ViT: its stop
heads' ``loss_aux_*``; the mixed-scale ViT: ``loss_scale``), and with
``budget_sampling=dict(sandwich=True)`` the task losses of a second, fixed
route (``fixed_*``). With the stock model types a dynamic backbone still
trains, without its own losses. In a data-parallel run they log the losses
averaged over the processes, as one process on the global batch would.

``train_only=['backbone.scale_gate', ...]`` freezes every other parameter when
the model is built (before any DDP wrapping, which must know what trains):
MSViT's first recipe stage trains only the gate of a pretrained model.
"""
from typing import Dict, Optional, Sequence

from mmdet.models.detectors import MaskRCNN, RetinaNet
from mmdet.registry import MODELS as MMDET_MODELS
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS as MMSEG_MODELS

from .common.checks import check_batch
from .common.dynamic import DynamicBackbone
from .data_parallel import mean_over_ranks
from .routing import RouteStats


class AuxLossMixin:
    """Adds a dynamic backbone's ``aux_losses(stats, data_samples)`` to
    ``loss()``; ``train_only`` (parameter-name prefixes) freezes the rest."""

    def __init__(self, *args, train_only: Optional[Sequence[str]] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if train_only is not None:
            freeze_all_but(self, train_only)

    def loss(self, inputs, data_samples) -> Dict:
        if not isinstance(self.backbone, DynamicBackbone):
            return super().loss(inputs, data_samples)
        with self.backbone.recording() as record:
            losses = super().loss(inputs, data_samples)
        losses = self.add_aux_losses(losses, record.stats, data_samples)
        sampler = self.backbone.budget_sampler
        if sampler is not None and sampler.sandwich:
            # budget sampling's sandwich: the same batch through a drawn
            # fixed route too, its task losses added
            with sampler.second_route():
                second = super().loss(inputs, data_samples)
            losses.update({f'fixed_{k}': v for k, v in second.items()})
        return losses

    # An empty batch is refused by name before the data preprocessor, which
    # would fail on it with "list index out of range" or the like.
    def train_step(self, data, optim_wrapper):
        check_batch(data, f'{type(self).__name__}.train_step')
        return super().train_step(data, optim_wrapper)

    def val_step(self, data):
        check_batch(data, f'{type(self).__name__}.val_step')
        return super().val_step(data)

    def test_step(self, data):
        check_batch(data, f'{type(self).__name__}.test_step')
        return super().test_step(data)

    def parse_losses(self, losses: Dict):
        """mmengine's, with the logged values averaged over the processes of
        a data-parallel run (the loss each process backpropagates is its
        own), so the log shows the global batch as one process would."""
        loss, log_vars = super().parse_losses(losses)
        return loss, type(log_vars)(mean_over_ranks(log_vars))

    def add_aux_losses(self, losses: Dict, stats: Optional[RouteStats],
                       data_samples) -> Dict:
        """``losses`` with the dynamic backbone's own for its forward's
        ``stats`` added."""
        for name, value in self.backbone.aux_losses(stats,
                                                    data_samples).items():
            if name in losses:
                raise KeyError(f'auxiliary loss {name!r} of '
                               f'{type(self.backbone).__name__} clashes with '
                               'a task loss')
            losses[name] = value
        return losses


def freeze_all_but(model, prefixes: Sequence[str]) -> None:
    """``requires_grad=False`` on every parameter whose name starts with none
    of ``prefixes``; a prefix that names no parameter is an error."""
    if isinstance(prefixes, str) or not prefixes:
        raise TypeError(f'train_only must be a non-empty list of parameter '
                        f'name prefixes, got {prefixes!r}')
    names = [name for name, _ in model.named_parameters()]
    unmatched = [p for p in prefixes
                 if not any(n.startswith(p) for n in names)]
    if unmatched:
        roots = sorted({n.split('.')[0] + '.' + n.split('.')[1]
                        for n in names if '.' in n})
        raise KeyError(f'train_only prefixes {unmatched} match no parameter '
                       f'of {type(model).__name__}; its modules include '
                       f'{roots}')
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(tuple(prefixes)))


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
