"""mmseg ViT encoder layers run on packed tokens of images of unequal length.

The token-pass ViT keeps, per image, a different number of tokens. Its layers
run on them packed as ``(T, C)`` (the kept tokens of the whole batch, image by
image) with ``lengths`` saying how many belong to each image: norms, linears
and the MLP see only real tokens, and attention runs per image: batched when
the lengths are equal, else in one variable-length call on a GPU and image by
image on a CPU. No padding enters any sum, so an image's result does not
depend on the other images of its batch.

The weights are those of mmseg's ``TransformerEncoderLayer`` (mmcv
``MultiheadAttention`` and ``FFN``), used as they are, so mmseg state dicts
load unchanged.
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from torch import Tensor, nn

from ...core.tokens import attend_packed


def packed_attention(qkv: Tensor, lengths: Sequence[int], num_heads: int,
                     dropout: float = 0.0) -> Tensor:
    """Self-attention of packed ``(T, 3C)`` query/key/value rows, each image
    attending only to its own ``lengths[b]`` tokens (the core's
    :func:`~dit_mm.core.tokens.attend_packed`). Returns ``(T, C)``."""
    dims = qkv.shape[-1] // 3
    q, k, v = qkv.view(qkv.shape[0], 3, num_heads, -1).unbind(1)
    return attend_packed(q, k, v, lengths, lengths,
                         dropout=dropout).reshape(-1, dims)


def per_image(dropout_layer: nn.Module, out: Tensor,
              lengths: Sequence[int]) -> Tensor:
    """``dropout_layer(out)`` with mmcv's ``DropPath`` dropping whole images
    (as on an unpacked batch), not single tokens."""
    if not (isinstance(dropout_layer, DropPath) and dropout_layer.training):
        return dropout_layer(out)
    scale = dropout_layer(out.new_ones(len(lengths), 1))
    index = torch.repeat_interleave(
        torch.arange(len(lengths), device=out.device),
        torch.as_tensor(list(lengths), device=out.device))
    return out * scale[index]


def run_packed_layer(layer: nn.Module, x: Tensor,
                     lengths: Sequence[int]) -> Tensor:
    """mmseg ``TransformerEncoderLayer.forward`` on packed tokens ``(T, C)``."""
    mha = layer.attn.attn  # torch's nn.MultiheadAttention inside mmcv's
    qkv = F.linear(layer.ln1(x), mha.in_proj_weight, mha.in_proj_bias)
    out = packed_attention(qkv, lengths, mha.num_heads,
                           mha.dropout if layer.training else 0.0)
    out = F.linear(out, mha.out_proj.weight, mha.out_proj.bias)
    x = x + per_image(layer.attn.dropout_layer, layer.attn.proj_drop(out),
                      lengths)
    ffn = layer.ffn
    out = ffn.gamma2(ffn.layers(layer.ln2(x)))
    return x + per_image(ffn.dropout_layer, out, lengths)
