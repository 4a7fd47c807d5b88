"""PVTv2 layers that also run on a subset of the tokens.

Each layer has the PVTv2 computation (``forward_dense``) and a packed one that
computes only the selected tokens (``forward_packed``). Keys and values of the
attention always come from the whole (dense) map, so a kept token sees the same
context either way; the depth-wise convolution of the MLP sees the hidden values of
the kept tokens and zeros elsewhere in both forms. With every token kept the two
forms compute exactly PVTv2.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ...core.tokens import (TokenSelection, add_to_tokens, attend_packed,
                            gather_tokens, pad_tokens, scatter_tokens,
                            select_tokens, unpad_tokens, varlen_usable)

HW = Tuple[int, int]


def tokens_to_map(x: Tensor, hw: HW) -> Tensor:
    """``(B, N, C)`` to ``(B, C, H, W)`` without a copy: the map is a
    channels-last view, which convolutions take as it is."""
    return x.reshape(x.shape[0], hw[0], hw[1], x.shape[2]).permute(0, 3, 1, 2)


def map_to_tokens(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` to ``(B, N, C)`` (a view for a channels-last map)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


class OverlapPatchEmbed(nn.Module):
    """PVTv2's overlapping patch embedding: a strided convolution and a LayerNorm.

    Padding ``kernel // 2`` gives ``ceil(H / stride)`` rows for any ``H``, so
    images of odd sizes need no padding here.
    """

    def __init__(self, in_channels: int, embed_dims: int, kernel_size: int,
                 stride: int):
        super().__init__()
        self.proj = nn.Conv2d(
            in_channels, embed_dims, kernel_size, stride, kernel_size // 2)
        self.norm = nn.LayerNorm(embed_dims, eps=1e-6)

    def forward(self, x: Tensor) -> Tuple[Tensor, HW]:
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(map_to_tokens(x)), hw


class SRAttention(nn.Module):
    """Spatial-reduction attention (PVTv2): queries per token, keys and values
    from the map reduced by a strided convolution of ``sr_ratio``."""

    def __init__(self, embed_dims: int, num_heads: int, sr_ratio: int,
                 qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by '
                             f'num_heads {num_heads}')
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.attn_drop = attn_drop
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.kv = nn.Linear(embed_dims, embed_dims * 2, bias=qkv_bias)
        # mmdet's PVTv2 (nn.MultiheadAttention's ``bias``) drops the output
        # projection's bias with the input projections'
        self.proj = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(embed_dims, embed_dims, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(embed_dims, eps=1e-6)

    def reduced_tokens(self, x: Tensor, hw: HW) -> Tensor:
        """The tokens keys and values are made of. A map smaller than the
        reduction window is zero-padded up to it (PVTv2 would fail there)."""
        if self.sr_ratio == 1:
            return x
        fmap = tokens_to_map(x, hw)
        pad_h = max(self.sr_ratio - hw[0], 0)
        pad_w = max(self.sr_ratio - hw[1], 0)
        if pad_h or pad_w:
            fmap = F.pad(fmap, (0, pad_w, 0, pad_h))
        return self.norm(map_to_tokens(self.sr(fmap)))

    def _heads(self, x: Tensor) -> Tensor:
        batch, length, dims = x.shape
        return x.view(batch, length, self.num_heads,
                      dims // self.num_heads).transpose(1, 2)

    def _attend(self, q: Tensor, x: Tensor, hw: HW) -> Tensor:
        k, v = self.kv(self.reduced_tokens(x, hw)).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(
            self._heads(q), self._heads(k), self._heads(v),
            dropout_p=self.attn_drop if self.training else 0.)
        return out.transpose(1, 2).flatten(2)

    def forward_dense(self, x: Tensor, hw: HW) -> Tensor:
        """Attention output for every token of ``x`` ``(B, N, C)``."""
        out = self._attend(self.q(x), x, hw)
        return self.proj_drop(self.proj(out))

    def forward_packed(self, x: Tensor, hw: HW, sel: TokenSelection,
                       method: str = 'auto') -> Tensor:
        """Attention output ``(K, C)`` for the selected tokens only: their
        queries padded per image (``padded``), or packed, attending in one
        variable-length call (``varlen``, the ``auto`` choice where it runs;
        ``loop`` and ``nested`` are the core's other forms)."""
        q = self.q(gather_tokens(x, sel))
        dropout = self.attn_drop if self.training else 0.
        if method == 'auto':
            method = 'varlen' if varlen_usable(q, dropout) else 'padded'
        if method == 'padded':
            out = unpad_tokens(self._attend(pad_tokens(q, sel), x, hw), sel)
        else:
            k, v = self.kv(self.reduced_tokens(x, hw)).chunk(2, dim=-1)
            heads = self.num_heads
            out = attend_packed(
                q.view(q.shape[0], heads, -1),
                k.reshape(-1, heads, k.shape[-1] // heads),
                v.reshape(-1, heads, v.shape[-1] // heads), sel.lengths,
                [k.shape[1]] * len(sel.lengths), method, dropout).flatten(1)
        return self.proj_drop(self.proj(out))


class MixFFN(nn.Module):
    """PVTv2's MLP: linear, 3x3 depth-wise convolution, GELU, linear."""

    def __init__(self, embed_dims: int, hidden_dims: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.dwconv = nn.Conv2d(
            hidden_dims, hidden_dims, 3, 1, 1, groups=hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)
        self.drop = nn.Dropout(drop)

    def _tail(self, hidden: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(hidden))))

    def forward_dense(self, x: Tensor, hw: HW,
                      keep: Optional[Tensor] = None) -> Tensor:
        """MLP output for every token; ``keep`` ``(B, N, 1)`` zeroes the hidden
        values of skipped tokens before the convolution, as the packed form does."""
        hidden = self.fc1(x)
        if keep is not None:
            hidden = hidden * keep
        hidden = map_to_tokens(self.dwconv(tokens_to_map(hidden, hw)))
        return self._tail(hidden)

    def forward_packed(self, x: Tensor, hw: HW, sel: TokenSelection,
                       batch: int, scratch: Optional[dict] = None) -> Tensor:
        """MLP output ``(K, C)`` for the packed selected tokens ``x`` ``(K, C)``.

        The convolution needs the hidden values on the grid (zeros where no
        token was kept). Under ``torch.no_grad`` the grid is written in place
        into ``scratch`` (a dict the caller keeps between calls), so inference
        does not allocate and page in a fresh grid per block.
        """
        hidden = self.fc1(x)
        shape = (batch, hw[0] * hw[1], hidden.shape[-1])
        size = math.prod(shape)
        if scratch is not None and not torch.is_grad_enabled():
            grid = scratch.get('mlp_grid')
            if grid is None or grid.numel() < size or \
                    grid.dtype != hidden.dtype or grid.device != hidden.device:
                grid = scratch['mlp_grid'] = hidden.new_empty(size)
            grid = grid[:size].view(shape).zero_()
            grid.view(-1, shape[-1]).index_copy_(0, sel.flat_index, hidden)
        else:
            grid = scatter_tokens(hidden.new_zeros(shape), hidden, sel)
        grid = map_to_tokens(self.dwconv(tokens_to_map(grid, hw)))
        return self._tail(gather_tokens(grid, sel))


class RoutedPVTBlock(nn.Module):
    """A PVTv2 encoder block that a token can go through or skip (identity).

    ``forward(x, hw)`` is PVTv2's block. ``forward_masked`` computes every token
    and applies a per-token gate ``(B, N, 1)`` to both residual branches (training:
    the gate carries the straight-through gradient). ``forward_sparse`` computes
    only the selected tokens and leaves the others as they are (inference). For a
    0/1 gate the two give the same result.
    """

    def __init__(self, embed_dims: int, num_heads: int, sr_ratio: int,
                 mlp_ratio: int, qkv_bias: bool = True, drop: float = 0.,
                 attn_drop: float = 0., drop_path: float = 0.):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = SRAttention(embed_dims, num_heads, sr_ratio, qkv_bias,
                                attn_drop, drop)
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.mlp = MixFFN(embed_dims, embed_dims * mlp_ratio, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor, hw: HW, normed: Optional[Tensor] = None
                ) -> Tensor:
        normed = self.norm1(x) if normed is None else normed
        x = x + self.drop_path(self.attn.forward_dense(normed, hw))
        return x + self.drop_path(self.mlp.forward_dense(self.norm2(x), hw))

    def gate_input(self, x: Tensor) -> Tensor:
        """What the routing gate reads: the block's first norm of ``x``, which
        the block then reuses (``normed``)."""
        return self.norm1(x)

    def forward_masked(self, x: Tensor, hw: HW, normed: Tensor, keep: Tensor,
                       with_cp: bool = False) -> Tensor:
        if with_cp and x.requires_grad:
            return checkpoint(
                self._masked, x, hw, normed, keep, use_reentrant=False)
        return self._masked(x, hw, normed, keep)

    def _masked(self, x: Tensor, hw: HW, normed: Tensor, keep: Tensor
                ) -> Tensor:
        x = x + self.drop_path(self.attn.forward_dense(normed, hw)) * keep
        mlp = self.mlp.forward_dense(self.norm2(x), hw, keep)
        return x + self.drop_path(mlp) * keep

    @staticmethod
    def select(keep: Tensor, count: Optional[int], hw: HW,
               scratch: Optional[dict] = None) -> TokenSelection:
        """The tokens :meth:`forward_sparse` computes: the core's selection
        (``count`` per image when known, else read back once)."""
        return select_tokens(keep, count)

    def forward_sparse(self, x: Tensor, hw: HW, normed: Tensor,
                       sel: TokenSelection,
                       scratch: Optional[dict] = None) -> Tensor:
        if sel.flat_index.numel() == 0:
            return x
        x = add_to_tokens(
            x, self.drop_path(self.attn.forward_packed(normed, hw, sel)), sel)
        kept = self.norm2(gather_tokens(x, sel))
        mlp = self.mlp.forward_packed(kept, hw, sel, x.shape[0], scratch)
        return add_to_tokens(x, self.drop_path(mlp), sel)
