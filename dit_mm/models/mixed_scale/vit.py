"""MixedScaleViT: a ViT whose flat regions are one coarse token (MSViT).

The image is cut into fine patches (16) and coarse regions (32, i.e. 2x2 fine
patches). A light gate (an MLP on each region's pixels) decides per region:
*fine* makes four fine tokens, *coarse* one token of the region shrunk to the
fine patch size by area averaging, so one patch embedding serves both scales.
A coarse token's position embedding is the mean of its four fine ones (the
position embedding lives on the fine grid). Tokens of coarse-made positions are
never created: the layers run on each image's own tokens, packed with no
padding (as in the token-pass ViT), so token counts may differ between the
images of a batch without changing any image's result. The dense outputs copy
each coarse token's output back to its four fine positions through the shared
reconstruction core, so dense decoders take them unchanged.

Training: a Gumbel-sigmoid sample of the gate with a straight-through
estimator (the chosen tokens are scaled by the hard decision, 1 in the forward
pass, whose gradient is the relaxed one's), and a loss on the gate's coarse
probabilities (``scale_loss``: generalised batch shaping by default). Test: a
region is coarse when its fine probability is below 0.5.

It is the token-pass ViT composed with the mixed-scale tokenizer
(:class:`~dit_mm.models.mixed_scale.tokenizer.MixedScaleTokenizer`), without
stop heads by default (a plain ViT); given ``head_layers``, the two savings
compose: stop heads run on the mixed tokens. This class only builds them: the
gate and its loss are its modules (``scale_gate``, ``scale_loss``, the
checkpoint keys), the tokenizer uses them.
"""
from typing import Optional

from ...registry import register_model
from ..schedule import check_schedule
from ..token_pass.vit import TokenPassViT, build_mmseg_module
from .scale_gate import ScaleGate
from .tokenizer import MixedScaleTokenizer


@register_model
class MixedScaleViT(TokenPassViT):
    """A ViT (fine patch 16, coarse 32) with a learned coarse / fine gate.

    Args:
        scale_gate: ``ScaleGate`` arguments (``hidden_dims``, ``init_logit``:
            the fine logit every region starts with).
        gate_temperature: temperature of the Gumbel-sigmoid in training
            (the final one, with ``gate_temperature_schedule``).
        gate_temperature_schedule: ``dict(start=, begin=0, end=N)``: in
            training the temperature goes linearly from ``start`` at
            iteration ``begin`` to ``gate_temperature`` at ``end`` (read from
            the runner's iteration, so ``--resume`` continues it).
        gumbel_noise: draw the Gumbel-sigmoid's noise; False gives the
            deterministic straight-through estimator.
        scale_loss: the registered loss on the coarse probabilities
            (``GeneralizedBatchShapingLoss``, ``BatchShapingLoss``,
            ``L1SparsityLoss``) or ``None``; reported as ``loss_scale``.
        budget_scale_share: with stop heads, the share of a budget the gate
            spends (it meets ``budget ** share``, the heads the rest).
        head_layers: stop heads (token pass on top); none by default.
        **kwargs: :class:`TokenPassViT` (and so mmseg ``VisionTransformer``)
            arguments.
    """

    def __init__(self,
                 arch='b',
                 scale_gate: Optional[dict] = None,
                 gate_temperature: float = 1.0,
                 gate_temperature_schedule: Optional[dict] = None,
                 gumbel_noise: bool = True,
                 scale_loss: Optional[dict] = dict(
                     type='GeneralizedBatchShapingLoss', target=0.5),
                 budget_scale_share: float = 0.5,
                 head_layers=(),
                 **kwargs):
        super().__init__(arch, head_layers=head_layers, **kwargs)
        if gate_temperature <= 0:
            raise ValueError(f'gate_temperature must be > 0, got '
                             f'{gate_temperature}')
        if not 0 < budget_scale_share <= 1:
            raise ValueError(f'budget_scale_share must be in (0, 1], got '
                             f'{budget_scale_share}')
        projection = self.patch_embed.projection
        if (tuple(projection.kernel_size) != (self.patch_size, ) * 2 or
                tuple(projection.stride) != (self.patch_size, ) * 2):
            raise ValueError('MixedScaleViT needs a patch embedding whose '
                             'kernel and stride equal patch_size')
        self.scale_gate = ScaleGate(self.in_channels * self.patch_size**2,
                                    **(scale_gate or {}))
        self.scale_loss = None if scale_loss is None else build_mmseg_module(
            scale_loss)
        self.tokenizer = MixedScaleTokenizer(
            gate_temperature,
            check_schedule(gate_temperature_schedule,
                           'gate_temperature_schedule'),
            gumbel_noise, budget_scale_share)
        self._freeze()  # frozen_exclude: the scale gate too

    @staticmethod
    def is_optional_weight(key: str) -> bool:
        """The stop heads and the scale gate (and its loss's buffers)."""
        return key.startswith(('stop_heads.', 'scale_gate.', 'scale_loss.'))

