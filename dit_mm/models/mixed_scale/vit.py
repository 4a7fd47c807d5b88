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

It is a :class:`TokenPassViT` without stop heads by default (a plain ViT);
given ``head_layers``, the two savings compose: stop heads run on the mixed
tokens.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.mixed_scale_cost import budget_coarse_count
from ...core.tokens import (gather_tokens, lowest_mask, scatter_tokens,
                            select_tokens)
from ...core.vit_cost import budget_keep_counts
from ...registry import register_model
from ..budget_sampling import FULL
from ..common.gates import straight_through_bernoulli
from ..data_parallel import global_batch
from ..routing import MixedScaleInfo
from ..schedule import check_schedule, scheduled
from ..token_pass.vit import TokenPassViT, _PassState, build_mmseg_module
from .scale_gate import ScaleGate
from .tokens import (RegionLayout, coarse_pixels, on_fine_grid, patch_pixels,
                     region_layout)


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
        self.gate_temperature = gate_temperature
        self.gate_temperature_schedule = check_schedule(
            gate_temperature_schedule, 'gate_temperature_schedule')
        self.gumbel_noise = gumbel_noise
        self.scale_loss = None if scale_loss is None else build_mmseg_module(
            scale_loss)
        self.budget_scale_share = budget_scale_share
        self._coarse_probs: Optional[Tensor] = None

    def init_weights(self) -> None:
        """As :class:`TokenPassViT`; without a checkpoint the gate returns to
        its all-fine start (mmseg's ViT initialisation redraws every
        ``Linear``), with one it keeps what the checkpoint gave it."""
        super().init_weights()
        if not self._init_from_checkpoint():
            self.scale_gate.reset_parameters()

    # the average-budget control: an offset on the gate's fine logits (a
    # larger one leaves more regions fine); the stop heads keep their
    # threshold
    control_range = (-30.0, 30.0)

    def _threshold_control(self) -> Optional[float]:
        return None

    @staticmethod
    def is_optional_weight(key: str) -> bool:
        """The stop heads and the scale gate (and its loss's buffers)."""
        return key.startswith(('stop_heads.', 'scale_gate.', 'scale_loss.'))

    # ----------------------------------------------------------------- tokens
    def _start(self, inputs: Tensor) -> _PassState:
        """Mixed-scale tokens (``set_budget(1.0)``, or an image with no
        complete coarse region, under two patches a side: the plain
        ViT's)."""
        self._coarse_probs = None
        embed = self.patch_embed
        images = embed.adap_padding(inputs) if embed.adap_padding else inputs
        p = self.patch_size
        hw = (images.shape[2] // p, images.shape[3] // p)
        layout = region_layout(hw, inputs.device)
        if (self.budget is not None and self.budget >= 1.0) or \
                not layout.num_regions:
            state = super()._start(inputs)
            state.layout = layout
            state.coarse = torch.zeros(inputs.shape[0], *layout.coarse_hw,
                                       dtype=torch.bool, device=inputs.device)
            state.gate_flops = 0.0
            return state
        images = images[..., :hw[0] * p, :hw[1] * p]
        regions = coarse_pixels(images, p, layout)
        coarse, fine_gate, num_coarse = self._decide(regions, layout)

        fine_patches = hw[0] * hw[1]
        positions = torch.arange(fine_patches, device=inputs.device)
        covered = layout.covered(coarse)
        keep = ~covered | (layout.anchor == positions)
        source = torch.where(covered, layout.anchor, positions)
        # a coarse region's token stands for its four positions
        lengths = None if num_coarse is None else fine_patches - 3 * num_coarse
        sel = select_tokens(keep, lengths)
        pixels = torch.where(covered[..., None],
                             on_fine_grid(regions, layout),
                             patch_pixels(images, p))
        tokens = F.linear(gather_tokens(pixels, sel),
                          embed.projection.weight.flatten(1),
                          embed.projection.bias)
        if embed.norm is not None:
            tokens = embed.norm(tokens)
        if fine_gate is not None:  # straight-through: 1 forward, soft grad
            chosen = torch.where(covered, 1 - on_fine_grid(fine_gate, layout),
                                 on_fine_grid(fine_gate, layout))
            chosen = torch.where(layout.region >= 0, chosen, 1.0)
            tokens = tokens * gather_tokens(chosen[..., None], sel)
        pos = self._grid_pos_embed(hw)
        pos_patches = torch.where(covered[..., None],
                                  on_fine_grid(self._region_pos(pos, layout),
                                               layout), pos[:, 1:])
        tokens = self.drop_after_pos(tokens + gather_tokens(pos_patches, sel))
        x = scatter_tokens(tokens.new_zeros(*keep.shape, tokens.shape[-1]),
                           tokens, sel)
        if self.with_cls_token:
            cls = self.drop_after_pos(self.cls_token + pos[:, :1])
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
            keep = torch.cat([keep.new_ones(keep.shape[0], 1), keep], dim=1)
        if self.pre_norm:
            x = self.pre_ln(x)
        state = _PassState(x, hw, len(self.layers), keep=keep, source=source,
                           lengths=[n + int(self.with_cls_token)
                                    for n in sel.lengths])
        state.layout, state.coarse = layout, coarse
        state.gate_flops = (layout.num_regions *
                            self.scale_gate.flops_per_region)
        return state

    def _decide(self, regions: Tensor, layout: RegionLayout
                ) -> Tuple[Tensor, Optional[Tensor], Optional[int]]:
        """``(coarse (B, H_c, W_c) bool, fine gate values for the
        straight-through estimator or None, coarse regions per image when a
        budget fixes them or None)``."""
        logits = self.scale_gate(regions)  # (B, R) fine logits
        shape = (regions.shape[0], *layout.coarse_hw)
        count = None
        if self.budget is not None:
            count = self._budget_coarse(layout)
            coarse = lowest_mask(logits.detach(), count)
            fine_gate = None
            if self.training:  # budget sampling: the gate learns to rank
                fine = torch.sigmoid(logits.float())
                fine_gate = (~coarse).to(fine) + (fine - fine.detach())
        elif self.training:
            fine_gate = straight_through_bernoulli(
                logits, self.current_temperature(), self.gumbel_noise)
            coarse = fine_gate.detach() < 0.5
            self._coarse_probs = torch.sigmoid(-logits.float()).view(shape)
        else:  # the average-budget control offsets the fine logits
            coarse = logits + (self.average_control or 0.0) < 0
            fine_gate = None
        return coarse.view(shape), fine_gate, count

    def current_temperature(self) -> float:
        """The gate's temperature now: scheduled in training, final
        otherwise."""
        return scheduled(self.gate_temperature,
                         self.gate_temperature_schedule, self.training)

    def _meets(self, budget: float, hw: Tuple[int, int]) -> bool:
        """Whether ``budget`` can be met on an ``hw`` fine grid: the gate's
        share by coarse regions, the heads' (if any) by stopping."""
        layout = region_layout(hw, 'cpu')
        if not layout.num_regions:
            return budget >= 1.0
        with self.budget_scope(budget):
            try:
                coarse = self._budget_coarse(layout)
                self._head_counts(hw[0] * hw[1] - 3 * coarse, hw,
                                  layout.num_regions *
                                  self.scale_gate.flops_per_region)
            except ValueError:
                return False
        return True

    def _budget_coarse(self, layout: RegionLayout) -> int:
        """Coarse regions per image that meet the budget (with stop heads,
        the gate's share of it; :meth:`_plan` gives the heads the rest)."""
        if self.training and self.budget >= FULL:
            return 0  # budget sampling's static route: all fine, gate run
        share = self.budget_scale_share if self.head_layers else 1.0
        return budget_coarse_count(self.cost,
                                   layout.fine_hw[0] * layout.fine_hw[1],
                                   layout.num_regions,
                                   self.scale_gate.flops_per_region,
                                   self.budget**share)

    def _grid_pos_embed(self, hw: Tuple[int, int]) -> Tensor:
        """``(1, 1 + H * W, C)`` position embedding of an ``hw`` fine grid
        (resized as mmseg's ViT does)."""
        pos = self.pos_embed
        if pos.shape[1] != hw[0] * hw[1] + 1:
            grid = (self.img_size[0] // self.patch_size,
                    self.img_size[1] // self.patch_size)
            pos = self.resize_pos_embed(pos, hw, grid, self.interpolate_mode)
        return pos

    @staticmethod
    def _region_pos(pos: Tensor, layout: RegionLayout) -> Tensor:
        """``(1, regions, C)``: the mean of each region's four fine position
        embeddings."""
        height, width = layout.fine_hw
        grid = pos[:, 1:].transpose(1, 2).reshape(1, -1, height, width)
        grid = grid[..., :2 * layout.coarse_hw[0], :2 * layout.coarse_hw[1]]
        return F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2)

    def _plan(self, state: _PassState
              ) -> Tuple[Optional[float], Optional[list]]:
        """Under a budget below 1 with stop heads, the heads get what the
        mixed tokens and the gate left of it."""
        if not self.head_layers or self.budget is None or self.budget >= 1.0:
            return super()._plan(state)
        tokens = state.entered[0]  # equal for all images here
        return None, self._head_counts(tokens, state.hw, state.gate_flops)

    def _head_counts(self, tokens: int, hw: Tuple[int, int],
                     gate_flops: float) -> Optional[List[int]]:
        """The stop heads' keep counts under ``self.budget`` for ``tokens``
        mixed tokens on an ``hw`` grid (None: no stopping needed)."""
        if not self.head_layers:
            return None
        full = self.cost.full(hw[0] * hw[1])
        head_budget = ((self.budget * full - gate_flops) /
                       self.cost.full(tokens))
        if head_budget >= 1.0:
            return None
        return budget_keep_counts(self.cost, tokens, self.head_layers,
                                  head_budget)

    # ------------------------------------------------------------ statistics
    def _info(self, state: _PassState,
              threshold: Optional[float]) -> MixedScaleInfo:
        base = super()._info(state, threshold)
        fields = dict(vars(base), flops=base.flops + state.gate_flops)
        layout = state.layout
        return MixedScaleInfo(
            **fields,
            coarse=state.coarse,
            scale_map=layout.covered(state.coarse).view(-1, *state.hw),
            num_tokens=state.patches_in,
            fine_patches=state.hw[0] * state.hw[1])

    def aux_losses(self, data_samples=None) -> Dict[str, Tensor]:
        """The token-pass ones (stop heads, if any), ``loss_scale`` of the
        gate's coarse probabilities (of the global batch in a data-parallel
        run), and ``coarse_fraction`` and ``gate_temperature`` for the
        log."""
        losses = super().aux_losses(data_samples)
        info = self.routing
        if not self.training or not isinstance(info, MixedScaleInfo):
            return losses
        if self.scale_loss is not None and self._coarse_probs is not None:
            losses['loss_scale'] = self.scale_loss(
                global_batch(self._coarse_probs))
        losses['coarse_fraction'] = info.coarse_fraction.mean().float()
        losses['gate_temperature'] = torch.tensor(self.current_temperature())
        return losses
