"""Where a token-pass forward's tokens come from: the state the stopper runs
on (:class:`PassState`) and the seam a tokenizer composes through
(:class:`PatchTokenizer`, mmseg ViT's one token per patch; the mixed-scale
tokenizer is the other).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ...core.tokens import (TokenSelection, fill_tokens, gather_tokens,
                            select_tokens)
from ..routing import TokenPassInfo


class PassState:
    """The tokens of one forward on a ``hw`` grid of patch positions:
    ``frozen`` ``(B, N, C)`` holds every token as it was when it stopped,
    ``tokens`` ``(T, C)`` the kept ones packed (``sel`` says where; ``None``
    while all are kept). ``keep`` may start partial (mixed-scale tokens: a
    coarse region's token sits at one of its positions and ``source`` points
    the others to it); ``patches_in`` ``(B,)`` counts the patch tokens that
    entered the first layer. ``head_maps`` collects, in training, what the
    stop heads' loss reads; ``tokenizer_flops`` is what the tokenizer spent
    per image beyond the patch embedding, and ``tokenizer_state`` what else
    it reports (the mixed-scale one's
    :class:`~dit_mm.models.mixed_scale.tokens.MixedTokens`)."""

    def __init__(self, x: Tensor, hw: Tuple[int, int], num_layers: int,
                 keep: Optional[Tensor] = None,
                 source: Optional[Tensor] = None,
                 lengths: Optional[Sequence[int]] = None,
                 tokenizer_flops: float = 0.0,
                 tokenizer_state=None):
        batch, length, dims = x.shape
        patches = hw[0] * hw[1]
        self.hw, self.source = hw, source
        self.frozen = x
        self.stop_layer = torch.full((batch, patches), num_layers - 1,
                                     dtype=torch.long, device=x.device)
        self.kept: List[Tensor] = []
        if keep is None:
            self.tokens = x.reshape(batch * length, dims)
            self.sel: Optional[TokenSelection] = None
            self.lengths = [length] * batch
            self.keep = torch.ones(batch, length, dtype=torch.bool,
                                   device=x.device)
        else:
            self.sel = select_tokens(keep, lengths)
            self.tokens = gather_tokens(x, self.sel)
            self.lengths = list(self.sel.lengths)
            self.keep = keep
        self.patches_in = self.keep[:, length - patches:].sum(1)
        # the same counts on the host, for the cost model: patch tokens that
        # entered the first layer, and that went on after each head
        self.entered = [n - (length - patches) for n in self.lengths]
        self.kept_counts: List[List[int]] = []
        self.head_maps: List[Tuple[int, Tensor, Tensor]] = []
        self.tokenizer_flops = tokenizer_flops
        self.tokenizer_state = tokenizer_state

    def dense(self, values: Tensor) -> Tensor:
        """Per-position values ``(B, patches, ...)`` with every covered
        position given the value of the token that stands for it."""
        return values if self.source is None else fill_tokens(
            values, self.source)


class PatchTokenizer:
    """One token per patch, mmseg ViT's embedding: the token-pass ViT's
    tokenizer unless it is given another. A tokenizer composes with the
    stopper through these and nothing else:

    * ``start(vit, inputs)``: the forward's first :class:`PassState`;
    * ``plan(vit, hw)``: under ``vit.budget`` (below 1) on an ``hw`` grid,
      the patch tokens each image starts with and the tokenizer's own FLOPs
      per image, which the stop heads leave room for (a budget it cannot
      meet is a ``ValueError``);
    * ``stats(info, state)``: the forward's statistics with its own added;
    * ``losses(vit, stats)``: its losses and logged values in training;
    * ``control_range``: the range of the average-budget control it owns
      (``None``: the stop threshold is the control);
    * ``reset_parameters(vit)``: the start of its weights when no checkpoint
      gives them (they are the ViT's modules, so checkpoint keys do not
      depend on the tokenizer, and a tokenizer holds settings only).
    """

    control_range: Optional[Tuple[float, float]] = None

    def start(self, vit, inputs: Tensor) -> PassState:
        return vit.embed_patches(inputs)

    def plan(self, vit, hw: Tuple[int, int]) -> Tuple[int, float]:
        return hw[0] * hw[1], 0.0

    def stats(self, info: TokenPassInfo, state: PassState) -> TokenPassInfo:
        return info

    def losses(self, vit, stats: TokenPassInfo) -> Dict[str, Tensor]:
        return {}

    def reset_parameters(self, vit) -> None:
        pass
