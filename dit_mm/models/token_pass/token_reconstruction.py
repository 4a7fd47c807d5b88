"""The token reconstruction module of the token-pass ViT (DoViT's TRM)."""
from typing import Optional, Tuple

from torch import Tensor, nn

from ...core.tokens import TokenSelection, fill_tokens, scatter_tokens
from ...registry import register_model


@register_model
class TokenReconstruction(nn.Module):
    """Puts the kept tokens, computed packed, back among the stopped ones.

    Stopped tokens hold the value they had when they stopped; kept tokens come
    from the packed ``(T, C)`` tensor the later layers ran on. The result is
    the dense sequence ``(B, N, C)`` in the original order, or (``forward``)
    the dense ``(B, C, H, W)`` map a decode head or neck expects, with the
    class tokens (the first ``cls_tokens`` of each image) left out.

    ``source`` ``(B, N_patches)``, when given, says for each patch position
    which position's token stands for it (a mixed-scale coarse token covers
    several fine positions); the dense map copies that token there.
    """

    def __init__(self, cls_tokens: int = 1):
        super().__init__()
        if cls_tokens not in (0, 1):
            raise ValueError(f'cls_tokens must be 0 or 1, got {cls_tokens}')
        self.cls_tokens = cls_tokens

    def sequence(self, frozen: Tensor, kept: Tensor,
                 sel: Optional[TokenSelection]) -> Tensor:
        """The dense ``(B, N, C)`` sequence. ``sel`` ``None`` means no token has
        stopped yet: ``kept`` holds all of them, image after image."""
        if sel is None:
            return kept.view_as(frozen)
        return scatter_tokens(frozen, kept, sel)

    def forward(self, frozen: Tensor, kept: Tensor,
                sel: Optional[TokenSelection], hw_shape: Tuple[int, int],
                norm: Optional[nn.Module] = None,
                source: Optional[Tensor] = None) -> Tensor:
        """The dense map ``(B, C, H, W)``; ``norm`` (the final norm) is applied
        to every token, stopped or kept."""
        tokens = self.sequence(frozen, kept, sel)[:, self.cls_tokens:]
        if source is not None:
            tokens = fill_tokens(tokens, source)
        if norm is not None:
            tokens = norm(tokens)
        batch, _, dims = tokens.shape
        return tokens.reshape(batch, *hw_shape, dims).permute(0, 3, 1,
                                                             2).contiguous()

    def extra_repr(self) -> str:
        return f'cls_tokens={self.cls_tokens}'
