"""The light auxiliary head that decides which tokens of a token-pass ViT stop."""
from torch import Tensor, nn


class StopHead(nn.Module):
    """LayerNorm and a linear classifier per token: class logits whose softmax
    confidence says whether the token's class is already settled."""

    def __init__(self, embed_dims: int, num_classes: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dims, eps=eps)
        self.fc = nn.Linear(embed_dims, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.fc(self.norm(tokens))
