"""Where the tokens of a mixed-scale ViT come from: fine patches, coarse
regions of 2x2 fine patches, and how a coarse region maps onto the fine grid.

A token grid of ``(H, W)`` fine positions has ``(H // 2, W // 2)`` complete
coarse regions; an odd last row or column has none and stays fine. A coarse
region's token sits at the region's top-left fine position (its
*representative*); the other three positions point to it, so the shared
gather / scatter / fill core rebuilds the dense fine grid.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


class RegionLayout(NamedTuple):
    """The coarse regions of a fine grid.

    fine_hw / coarse_hw: the two grids. region: ``(N_fine,)`` the region of
    each fine position (``-1`` outside every complete region). anchor:
    ``(N_fine,)`` the representative position of each fine position's region
    (itself outside).
    """
    fine_hw: Tuple[int, int]
    coarse_hw: Tuple[int, int]
    region: Tensor
    anchor: Tensor

    @property
    def num_regions(self) -> int:
        return self.coarse_hw[0] * self.coarse_hw[1]

    def covered(self, coarse: Tensor) -> Tensor:
        """``(B, N_fine)`` bool: the fine positions inside the regions marked
        in ``coarse`` ``(B, H_c, W_c)``."""
        if not self.num_regions:  # a grid under two patches a side
            return coarse.new_zeros(coarse.shape[0], self.region.numel())
        return (self.region >= 0) & on_fine_grid(coarse.flatten(1), self)


class MixedTokens(NamedTuple):
    """What the mixed-scale tokenizer hands the token-pass forward besides
    the tokens, for the statistics and the scale loss: the ``layout``, the
    ``coarse`` ``(B, H_c, W_c)`` decisions, the gate's FLOPs per image
    (``gate_flops``, 0 when it did not run) and in training on the learned
    gate its ``coarse_probs``."""
    layout: RegionLayout
    coarse: Tensor
    gate_flops: float = 0.0
    coarse_probs: Optional[Tensor] = None


def region_layout(fine_hw: Tuple[int, int], device=None) -> RegionLayout:
    height, width = fine_hw
    coarse_hw = (height // 2, width // 2)
    rows = torch.arange(height, device=device)[:, None].expand(height, width)
    cols = torch.arange(width, device=device)[None, :].expand(height, width)
    inside = (rows < 2 * coarse_hw[0]) & (cols < 2 * coarse_hw[1])
    region = torch.where(inside, (rows // 2) * coarse_hw[1] + cols // 2, -1)
    anchor = torch.where(inside, (rows // 2 * 2) * width + cols // 2 * 2,
                         rows * width + cols)
    return RegionLayout(fine_hw, coarse_hw, region.flatten(), anchor.flatten())


def patch_pixels(images: Tensor, patch: int) -> Tensor:
    """``(B, C, H, W)`` images (``H``, ``W`` multiples of ``patch``) as
    ``(B, N, C * patch * patch)`` patch vectors, ordered as a convolution's
    weight ``(C, patch, patch)``, so ``conv.weight.flatten(1)`` embeds them."""
    return F.unfold(images, patch, stride=patch).transpose(1, 2)


def coarse_pixels(images: Tensor, patch: int, layout: RegionLayout) -> Tensor:
    """Every complete coarse region (``2 patch`` square) shrunk to ``patch``
    by area averaging, as ``(B, regions, C * patch * patch)``."""
    height, width = (2 * patch * n for n in layout.coarse_hw)
    return patch_pixels(F.avg_pool2d(images[..., :height, :width], 2), patch)


def on_fine_grid(values: Tensor, layout: RegionLayout) -> Tensor:
    """Per-region values ``(B, regions, ...)`` spread over the fine grid
    ``(B, N_fine, ...)`` (positions outside every region get region 0's:
    callers mask them)."""
    return values[:, layout.region.clamp(min=0)]
