"""FLOPs of a mixed-scale ViT and the number of coarse regions that meets a
budget.

Counted as multiply-accumulates, as in :mod:`vit_cost`. Only the tokens that
exist are embedded and run through the layers: a coarse region (2x2 fine
patches) is one token instead of four. The scale gate runs on every complete
coarse region.
"""
import bisect
from typing import Sequence

from .vit_cost import ViTCost


def mlp_flops(in_dims: int, hidden_dims: Sequence[int], out_dims: int) -> int:
    """Multiply-accumulates of an MLP's linears on one input."""
    dims = [in_dims, *hidden_dims, out_dims]
    return sum(a * b for a, b in zip(dims, dims[1:]))


def mixed_scale_flops(cost: ViTCost, fine_patches: int, coarse: int,
                      regions: int, gate: float) -> float:
    """A ViT on ``fine_patches`` positions of which ``coarse`` complete 2x2
    regions (of ``regions``) are one token each; ``gate`` per region."""
    return cost.full(fine_patches - 3 * coarse) + regions * gate


def budget_coarse_count(cost: ViTCost, fine_patches: int, regions: int,
                        gate: float, budget: float) -> int:
    """The fewest coarse regions whose ViT spends at most ``budget`` of the
    all-fine ViT's FLOPs (the gate included). ``ValueError`` names the
    smallest budget that can be met when even all-coarse spends more."""
    full = cost.full(fine_patches)
    fractions = [
        -mixed_scale_flops(cost, fine_patches, c, regions, gate) / full
        for c in range(regions + 1)
    ]  # increasing in c
    count = bisect.bisect_left(fractions, -budget)
    if count > regions:
        raise ValueError(
            f'budget {budget:g} is below what a mixed-scale ViT spends with '
            f'every one of its {regions} regions coarse '
            f'({-fractions[-1]:.3f} of the all-fine ViT)')
    return count
