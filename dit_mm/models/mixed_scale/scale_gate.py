"""The scale gate of a mixed-scale ViT: one decision per coarse region."""
from typing import Sequence

from torch import Tensor, nn

from ...core.mixed_scale_cost import mlp_flops


class ScaleGate(nn.Module):
    """An MLP on a coarse region's pixels (resized to the fine patch size) that
    gives the logit of *fine* (split the region into fine tokens).

    The last layer starts at zero weight and bias ``init_logit``, so a new gate
    makes every region fine with probability ``sigmoid(init_logit)``: a
    pretrained ViT starts from its own behaviour and learns where coarse
    tokens do no harm.
    """

    def __init__(self, in_dims: int, hidden_dims: Sequence[int] = (64, 64),
                 init_logit: float = 3.0):
        super().__init__()
        dims = [in_dims, *hidden_dims]
        layers = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.GELU()]
        self.mlp = nn.Sequential(*layers)
        self.fc = nn.Linear(dims[-1], 1)
        self.init_logit = init_logit
        self.flops_per_region = mlp_flops(in_dims, hidden_dims, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.fc.weight)
        nn.init.constant_(self.fc.bias, self.init_logit)

    def forward(self, pixels: Tensor) -> Tensor:
        """``(..., in_dims)`` region pixels to ``(...)`` fine logits."""
        return self.fc(self.mlp(pixels)).squeeze(-1)
