"""How the three methods decide which tokens go on: a sampled hard
decision with a soft gradient (training on learned gates), and the top-k
masks of a fixed budget (the ``k`` a budget solver gave). The threshold rules
are one comparison each and stay in the methods. Pure functions of
tensors."""
from typing import Tuple

import torch
from torch import Tensor


def straight_through_bernoulli(logits: Tensor, tau: float = 1.0,
                               noise: bool = True) -> Tensor:
    """A hard 0/1 sample of ``sigmoid(logits)`` whose gradient is the soft one's.

    Binary Gumbel-softmax: logistic noise, a temperature, then the hard value in
    the forward pass and the relaxed sample's gradient in the backward pass. It is
    written ``hard + (soft - soft.detach())`` so the forward value is exactly 0 or
    1 (a skipped token then gets exactly no update, as in sparse inference).
    ``noise=False`` is the deterministic straight-through estimator (the hard
    value of the logits themselves), for runs that must not depend on random
    draws, e.g. data-parallel training checked against one process.

    The noise, the temperature and the sigmoid are computed in float32
    whatever the logits' dtype: under bf16 autocast uniform draws have 8
    significant bits (the clamp's ``1 - 1e-6`` is 1), so the noise would take
    a few hundred values and never exceed 5.5 (a gate at logit -6 would never
    open), and a half-precision sigmoid saturates early. The sample is
    returned in the logits' dtype, where 0 and 1 are exact, with the float32
    gradient cast back.
    """
    z = logits.float()
    if noise:
        uniform = torch.rand_like(z).clamp_(1e-6, 1 - 1e-6)
        z = z + (torch.log(uniform) - torch.log1p(-uniform))
    soft = torch.sigmoid(z / tau)
    hard = (soft > 0.5).to(soft.dtype)
    return (hard + (soft - soft.detach())).to(logits.dtype)


def lowest_mask(score: Tensor, k: int) -> Tensor:
    """``(B, N)`` bool mask of the ``k`` lowest entries of each row of
    ``score``: a fixed budget's "these ``k`` go on" (the least confident
    tokens, the least fine-worthy regions)."""
    mask = torch.zeros_like(score, dtype=torch.bool)
    return mask.scatter_(1, score.topk(k, dim=1, largest=False).indices, True)


def keep_top(score: Tensor, k: int, prefer: float = 0.) -> Tuple[Tensor, Tensor]:
    """The ``k`` highest-scoring entries of each row of ``score`` ``(B, N)``
    as a bool mask (``-inf`` entries never), and per row the cut: the value
    between the kept and the rest that is closest to ``prefer`` (so scores
    ``> cut`` are the kept ones; a rule "keep what scores above ``prefer``"
    that keeps ``k`` has ``cut == prefer``)."""
    batch, num = score.shape
    k = max(0, min(int(k), num))
    keep = torch.zeros_like(score, dtype=torch.bool)
    ranked, order = score.topk(min(k + 1, num), dim=1)  # highest first
    inf = score.new_full((batch, 1), float('inf'))
    above = torch.cat([inf, ranked], 1)[:, k]  # k-th highest (inf: none)
    below = ranked[:, k] if k < num else -inf[:, 0]  # (k+1)-th
    if k:
        keep.scatter_(1, order[:, :k], True)
        keep &= score > float('-inf')
    cut = torch.minimum(torch.clamp(below, min=prefer), above)
    return keep, cut
