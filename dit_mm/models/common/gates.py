"""Per-token routing gates of DiT: hard decisions, straight-through gradients."""
import math

import torch
from torch import Tensor, nn


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
