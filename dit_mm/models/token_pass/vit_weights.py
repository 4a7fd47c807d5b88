"""ViT state dicts in mmseg's layout or in the timm / DeiT release layout.

mmseg's ``VisionTransformer`` (``layers.0.attn.attn.in_proj_weight``) is the
layout of the token-pass ViT itself; timm / DeiT checkpoints
(``blocks.0.attn.qkv.weight``) are converted to it. Classifier heads and
DeiT's distillation token are dropped; a position embedding of another grid
(pretraining at 224) is resized to the model's.
"""
import re
from collections import OrderedDict
from typing import Tuple

import torch
from torch import Tensor

from ..common.weights import StateDict, layout_of

_TIMM_LAYER = {
    'norm1.': 'ln1.',
    'norm2.': 'ln2.',
    'attn.qkv.weight': 'attn.attn.in_proj_weight',
    'attn.qkv.bias': 'attn.attn.in_proj_bias',
    'attn.proj.': 'attn.attn.out_proj.',
    'mlp.fc1.': 'ffn.layers.0.0.',
    'mlp.fc2.': 'ffn.layers.1.',
}
_TIMM_DROPPED = ('head.', 'head_dist.', 'fc_norm.', 'pre_logits.')


def detect_vit_layout(state: StateDict) -> str:
    """``'mmseg'`` or ``'timm'``; a clear error for anything else."""
    return layout_of(state, [
        ('mmseg', 'patch_embed.projection.', 'mmseg ViT'),
        ('timm', 'blocks.0.', 'timm / DeiT')], 'ViT')


def _timm_key(key: str) -> str:
    if key == 'patch_embed.proj.weight' or key == 'patch_embed.proj.bias':
        return key.replace('.proj.', '.projection.')
    if key.startswith('norm.'):
        return 'ln1.' + key[len('norm.'):]
    m = re.match(r'blocks\.(\d+)\.(.*)', key)
    if m is None:
        return key
    index, rest = m.groups()
    for old, new in _TIMM_LAYER.items():
        if rest.startswith(old):
            rest = new + rest[len(old):]
            break
    return f'layers.{index}.{rest}'


def to_mmseg_vit_layout(state: StateDict) -> StateDict:
    """``state`` in mmseg ViT keys, whichever of the two layouts it came in."""
    if detect_vit_layout(state) == 'mmseg':
        return OrderedDict(state)
    out: StateDict = OrderedDict()
    for key, value in state.items():
        if key.startswith(_TIMM_DROPPED) or key == 'dist_token':
            continue
        if key == 'pos_embed' and 'dist_token' in state:
            value = torch.cat([value[:, :1], value[:, 2:]], dim=1)
        out[_timm_key(key)] = value
    return out


def resize_pos_embed(pos_embed: Tensor, grid: Tuple[int, int],
                     cls_tokens: int = 1, mode: str = 'bicubic') -> Tensor:
    """``pos_embed`` ``(1, cls + h*w, C)`` of a square grid resized to
    ``grid``; the class-token entries are kept as they are."""
    count = pos_embed.shape[1] - cls_tokens
    side = int(round(count**0.5))
    if side * side != count:
        raise ValueError(f'pos_embed has {count} patch entries, not a square '
                         'grid')
    if (side, side) == tuple(grid):
        return pos_embed
    patches = pos_embed[:, cls_tokens:].reshape(1, side, side, -1).permute(
        0, 3, 1, 2)
    patches = torch.nn.functional.interpolate(
        patches.float(), size=tuple(grid), mode=mode,
        align_corners=False).to(pos_embed.dtype)
    return torch.cat(
        [pos_embed[:, :cls_tokens],
         patches.flatten(2).transpose(1, 2)], dim=1)
