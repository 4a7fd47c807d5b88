"""Per-token routing gates of DiT: hard decisions, straight-through gradients."""
import torch
from torch import Tensor, nn


def straight_through_bernoulli(logits: Tensor, tau: float = 1.0) -> Tensor:
    """A hard 0/1 sample of ``sigmoid(logits)`` whose gradient is the soft one's.

    Binary Gumbel-softmax: logistic noise, a temperature, then the hard value in
    the forward pass and the relaxed sample's gradient in the backward pass. It is
    written ``hard + (soft - soft.detach())`` so the forward value is exactly 0 or
    1 (a skipped token then gets exactly no update, as in sparse inference).
    """
    uniform = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
    noise = torch.log(uniform) - torch.log1p(-uniform)
    soft = torch.sigmoid((logits + noise) / tau)
    hard = (soft > 0.5).to(soft.dtype)
    return hard + (soft - soft.detach())


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
