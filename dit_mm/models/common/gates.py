"""Per-token routing gates of DiT (their decisions are sampled by
:func:`dit_mm.core.deciders.straight_through_bernoulli`)."""
import math

import torch
from torch import Tensor, nn


def randomize_gates(model: nn.Module, seed: int = 1, scale: float = 2.0,
                    bias: float = 0.5) -> None:
    """Random weights for every :class:`RoutingGate` of ``model`` (normal,
    ``scale / sqrt(C)``; biases ``bias``), for measuring and testing: new
    gates score every token alike, so a budget keeps the first tokens of the
    map (a few windows of a Swin-v2 map); trained gates spread their picks
    over the image, and so do random ones."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in (m for m in model.modules() if isinstance(m, RoutingGate)):
            weight = gate.fc.weight
            weight.copy_(torch.randn(weight.shape, generator=gen) * scale /
                         math.sqrt(weight.shape[1]))
            gate.fc.bias.fill_(bias)


class RoutingGate(nn.Module):
    """Two logits per token: *stay* at this scale, and *transform* (block vs identity).

    The weights start at zero and the biases at ``init_logit``, so a new model
    begins on the PVTv2 route (every token stays and is transformed with
    probability ``sigmoid(init_logit)``) and learns to leave it.
    """

    def __init__(self, embed_dims: int, init_logit: float = 3.0):
        super().__init__()
        self.fc = nn.Linear(embed_dims, 2)
        self.init_logit = init_logit
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.fc.weight)
        nn.init.constant_(self.fc.bias, self.init_logit)

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, N, C)`` normalised tokens to ``(B, N, 2)`` logits (stay, transform)."""
        return self.fc(tokens)
