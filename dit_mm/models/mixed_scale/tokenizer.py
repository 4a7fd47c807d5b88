"""The mixed-scale tokenizer: the tokens of a ViT whose flat regions are one
coarse token, composed with the token-pass stopper through the tokenizer
seam of :class:`~dit_mm.models.token_pass.tokenizer.PatchTokenizer`.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...core.mixed_scale_cost import budget_coarse_count
from ...core.deciders import lowest_mask, straight_through_bernoulli
from ...core.tokens import gather_tokens, scatter_tokens, select_tokens
from ..budget_sampling import FULL
from ..data_parallel import global_batch
from ..routing import MixedScaleInfo, TokenPassInfo
from ..schedule import scheduled
from ..token_pass.tokenizer import PassState, PatchTokenizer
from .tokens import (MixedTokens, RegionLayout, coarse_pixels, on_fine_grid,
                     patch_pixels, region_layout)


class MixedScaleTokenizer(PatchTokenizer):
    """Fine tokens, or one coarse token per 2x2 region where the ViT's
    ``scale_gate`` says so (see
    :class:`~dit_mm.models.mixed_scale.vit.MixedScaleViT`).

    It holds settings only: the gate and the scale loss are modules of the
    ViT (``scale_gate``, ``scale_loss``: their checkpoint keys), reached
    through the ``vit`` of each call, so whatever wraps them (FSDP) is what
    runs. The average-budget control is an offset on the gate's fine logits
    (a larger one leaves more regions fine); the stop heads keep their
    threshold.
    """

    control_range = (-30.0, 30.0)

    def __init__(self, temperature: float,
                 temperature_schedule: Optional[dict], gumbel_noise: bool,
                 budget_share: float):
        self.final_temperature = temperature
        self.temperature_schedule = temperature_schedule
        self.gumbel_noise = gumbel_noise
        self.budget_share = budget_share

    def temperature(self, training: bool) -> float:
        """The gate's temperature now: scheduled in training, final
        otherwise."""
        return scheduled(self.final_temperature, self.temperature_schedule,
                         training)

    def reset_parameters(self, vit) -> None:
        vit.scale_gate.reset_parameters()  # the all-fine start

    # ----------------------------------------------------------------- tokens
    def start(self, vit, inputs: Tensor) -> PassState:
        """Mixed-scale tokens (``set_budget(1.0)``, or an image with no
        complete coarse region, under two patches a side: the plain
        ViT's)."""
        embed = vit.patch_embed
        images = embed.adap_padding(inputs) if embed.adap_padding else inputs
        p = vit.patch_size
        hw = (images.shape[2] // p, images.shape[3] // p)
        layout = region_layout(hw, inputs.device)
        if (vit.budget is not None and vit.budget >= 1.0) or \
                not layout.num_regions:
            state = vit.embed_patches(inputs)
            state.tokenizer_state = MixedTokens(layout, torch.zeros(
                inputs.shape[0], *layout.coarse_hw, dtype=torch.bool,
                device=inputs.device))
            return state
        images = images[..., :hw[0] * p, :hw[1] * p]
        regions = coarse_pixels(images, p, layout)
        coarse, fine_gate, num_coarse, coarse_probs = self._decide(
            vit, regions, layout)

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
        pos = self._grid_pos_embed(vit, hw)
        pos_patches = torch.where(covered[..., None],
                                  on_fine_grid(self._region_pos(pos, layout),
                                               layout), pos[:, 1:])
        tokens = vit.drop_after_pos(tokens + gather_tokens(pos_patches, sel))
        x = scatter_tokens(tokens.new_zeros(*keep.shape, tokens.shape[-1]),
                           tokens, sel)
        if vit.with_cls_token:
            cls = vit.drop_after_pos(vit.cls_token + pos[:, :1])
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
            keep = torch.cat([keep.new_ones(keep.shape[0], 1), keep], dim=1)
        if vit.pre_norm:
            x = vit.pre_ln(x)
        gate_flops = layout.num_regions * vit.scale_gate.flops_per_region
        return PassState(x, hw, len(vit.layers), keep=keep, source=source,
                         lengths=[n + int(vit.with_cls_token)
                                  for n in sel.lengths],
                         tokenizer_flops=gate_flops,
                         tokenizer_state=MixedTokens(layout, coarse,
                                                     gate_flops, coarse_probs))

    def _decide(self, vit, regions: Tensor, layout: RegionLayout
                ) -> Tuple[Tensor, Optional[Tensor], Optional[int],
                           Optional[Tensor]]:
        """``(coarse (B, H_c, W_c) bool, fine gate values for the
        straight-through estimator or None, coarse regions per image when a
        budget fixes them or None, the coarse probabilities the scale loss
        reads or None)``."""
        logits = vit.scale_gate(regions)  # (B, R) fine logits
        shape = (regions.shape[0], *layout.coarse_hw)
        count = probs = None
        if vit.budget is not None:
            count = self._budget_coarse(vit, layout)
            coarse = lowest_mask(logits.detach(), count)
            fine_gate = None
            if vit.training:  # budget sampling: the gate learns to rank
                fine = torch.sigmoid(logits.float())
                fine_gate = (~coarse).to(fine) + (fine - fine.detach())
        elif vit.training:
            fine_gate = straight_through_bernoulli(
                logits, self.temperature(vit.training), self.gumbel_noise)
            coarse = fine_gate.detach() < 0.5
            probs = torch.sigmoid(-logits.float()).view(shape)
        else:  # the average-budget control offsets the fine logits
            coarse = logits + (vit.average_control or 0.0) < 0
            fine_gate = None
        return coarse.view(shape), fine_gate, count, probs

    @staticmethod
    def _grid_pos_embed(vit, hw: Tuple[int, int]) -> Tensor:
        """``(1, 1 + H * W, C)`` position embedding of an ``hw`` fine grid
        (resized as mmseg's ViT does)."""
        pos = vit.pos_embed
        if pos.shape[1] != hw[0] * hw[1] + 1:
            grid = (vit.img_size[0] // vit.patch_size,
                    vit.img_size[1] // vit.patch_size)
            pos = vit.resize_pos_embed(pos, hw, grid, vit.interpolate_mode)
        return pos

    @staticmethod
    def _region_pos(pos: Tensor, layout: RegionLayout) -> Tensor:
        """``(1, regions, C)``: the mean of each region's four fine position
        embeddings."""
        height, width = layout.fine_hw
        grid = pos[:, 1:].transpose(1, 2).reshape(1, -1, height, width)
        grid = grid[..., :2 * layout.coarse_hw[0], :2 * layout.coarse_hw[1]]
        return F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2)

    # ----------------------------------------------------------------- budget
    def plan(self, vit, hw: Tuple[int, int]) -> Tuple[int, float]:
        """The tokens and gate FLOPs of ``vit.budget`` (with stop heads, the
        gate meets ``budget ** budget_share`` and the heads the rest)."""
        layout = region_layout(hw, 'cpu')
        if not layout.num_regions:
            return super().plan(vit, hw)
        coarse = self._budget_coarse(vit, layout)
        return (hw[0] * hw[1] - 3 * coarse,
                layout.num_regions * vit.scale_gate.flops_per_region)

    def _budget_coarse(self, vit, layout: RegionLayout) -> int:
        """Coarse regions per image that meet the gate's share of
        ``vit.budget``."""
        if vit.training and vit.budget >= FULL:
            return 0  # budget sampling's static route: all fine, gate run
        share = self.budget_share if vit.head_layers else 1.0
        return budget_coarse_count(vit.cost,
                                   layout.fine_hw[0] * layout.fine_hw[1],
                                   layout.num_regions,
                                   vit.scale_gate.flops_per_region,
                                   vit.budget**share)

    # ------------------------------------------------------------ statistics
    def stats(self, info: TokenPassInfo, state: PassState) -> MixedScaleInfo:
        mixed = state.tokenizer_state
        fields = dict(vars(info), flops=info.flops + mixed.gate_flops)
        return MixedScaleInfo(
            **fields,
            coarse=mixed.coarse,
            scale_map=mixed.layout.covered(mixed.coarse).view(-1, *state.hw),
            num_tokens=state.patches_in,
            fine_patches=state.hw[0] * state.hw[1],
            coarse_probs=mixed.coarse_probs)

    def losses(self, vit, stats: MixedScaleInfo) -> Dict[str, Tensor]:
        """``loss_scale`` of the gate's coarse probabilities (of the global
        batch in a data-parallel run), and ``coarse_fraction`` and
        ``gate_temperature`` for the log."""
        losses = {}
        if vit.scale_loss is not None and stats.coarse_probs is not None:
            losses['loss_scale'] = vit.scale_loss(
                global_batch(stats.coarse_probs))
        losses['coarse_fraction'] = stats.coarse_fraction.mean().float()
        losses['gate_temperature'] = torch.tensor(
            self.temperature(vit.training))
        return losses
