"""mmseg's EncoderDecoder for token-pass backbones, with optional distillation
from the full ViT.

The teacher is the same network on its full route (``budget_scope(1.0)``: every
token through every layer, no stop heads), run without gradients before the
student's forward: self-distillation, so no second set of weights is stored
or loaded, and the teacher improves as the student does. The distillation
terms are a pixel-wise KL divergence between the decode head's class
distributions (``loss_distill_kl``, temperature ``T``, scaled by ``T^2``) and
the mean squared error between the student's and the teacher's features
(``loss_distill_feat``, over every level the decode head reads).
"""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.utils import add_prefix
from torch import Tensor

from ..common.dynamic import DynamicBackbone
from ..dynamic_models import DynamicEncoderDecoder


@MMSEG_MODELS.register_module()
class TokenPassEncoderDecoder(DynamicEncoderDecoder):
    """``DynamicEncoderDecoder`` plus ``distill=dict(kl_weight=1.0,
    feature_weight=1.0, temperature=1.0)`` (``None``: no distillation)."""

    def __init__(self, *args, distill: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.distill = self._check_distill(distill)

    def _check_distill(self, distill: Optional[dict]) -> Optional[dict]:
        if distill is None:
            return None
        allowed = {'kl_weight', 'feature_weight', 'temperature'}
        unknown = set(distill) - allowed
        if unknown:
            raise KeyError(f'distill takes {sorted(allowed)}, got unknown '
                           f'{sorted(unknown)}')
        if not isinstance(self.backbone, DynamicBackbone):
            raise TypeError(f'distillation needs a backbone with a full route '
                            f'(budget_scope), not {type(self.backbone).__name__}')
        distill = dict(dict(kl_weight=1.0, feature_weight=1.0,
                            temperature=1.0), **distill)
        if distill['temperature'] <= 0:
            raise ValueError(f'distill temperature must be > 0, got '
                             f'{distill["temperature"]}')
        return distill

    def loss(self, inputs: Tensor, data_samples) -> Dict:
        if self.distill is None:
            return super().loss(inputs, data_samples)
        with torch.no_grad(), self.backbone.budget_scope(1.0):
            teacher_feats = self.extract_feat(inputs)
            teacher_logits = self.decode_head.forward(teacher_feats)
        with self.backbone.recording() as record:
            feats = self.extract_feat(inputs)
        logits = self.decode_head.forward(feats)
        losses = add_prefix(self.decode_head.loss_by_feat(logits, data_samples),
                            'decode')
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(
                feats, data_samples))
        losses.update(self._distill_losses(feats, logits, teacher_feats,
                                           teacher_logits))
        return self.add_aux_losses(losses, record.stats, data_samples)

    def _distill_losses(self, feats: List[Tensor], logits: Tensor,
                        teacher_feats: List[Tensor],
                        teacher_logits: Tensor) -> Dict[str, Tensor]:
        temp = self.distill['temperature']
        kl = F.kl_div(
            F.log_softmax(logits / temp, dim=1),
            F.log_softmax(teacher_logits / temp, dim=1),
            reduction='none', log_target=True).sum(1).mean()
        feature = sum(F.mse_loss(s, t) for s, t in zip(feats, teacher_feats))
        return dict(
            loss_distill_kl=self.distill['kl_weight'] * temp * temp * kl,
            loss_distill_feat=self.distill['feature_weight'] * feature /
            len(feats))
