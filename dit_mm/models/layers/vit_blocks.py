"""mmseg ViT encoder layers run on packed tokens of images of unequal length.

The token-pass ViT keeps, per image, a different number of tokens. Its layers
run on them packed as ``(T, C)`` (the kept tokens of the whole batch, image by
image) with ``lengths`` saying how many belong to each image: norms, linears
and the MLP see only real tokens, and attention runs per image, batched when
the lengths are equal and image by image otherwise. No padding enters any
sum, so an image's result does not depend on the other images of its batch.

The weights are those of mmseg's ``TransformerEncoderLayer`` (mmcv
``MultiheadAttention`` and ``FFN``), used as they are, so mmseg state dicts
load unchanged.
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from torch import Tensor, nn


def packed_attention(qkv: Tensor, lengths: Sequence[int], num_heads: int,
                     dropout: float = 0.0) -> Tensor:
    """Self-attention of packed ``(T, 3C)`` query/key/value rows, each image
    attending only to its own ``lengths[b]`` tokens. Returns ``(T, C)``."""
    dims = qkv.shape[-1] // 3
    head_dims = dims // num_heads

    def attend(rows: Tensor) -> Tensor:  # (B, L, 3C) -> (B, L, C)
        batch, length = rows.shape[:2]
        q, k, v = rows.view(batch, length, 3, num_heads,
                            head_dims).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        return out.transpose(1, 2).reshape(batch, length, dims)

    if len(set(lengths)) == 1:
        return attend(qkv.view(len(lengths), lengths[0], -1)).view(-1, dims)
    return torch.cat([attend(rows.unsqueeze(0))[0]
                      for rows in qkv.split(list(lengths))])


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
