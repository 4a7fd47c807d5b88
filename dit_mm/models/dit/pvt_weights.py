"""PVTv2 / DiT state dicts in any of the three layouts, converted to DiT's.

Layouts: DiT's own (``stages.0.blocks.0.attn.q.weight``), mmdet's
``PyramidVisionTransformerV2`` (``layers.0.1.0.attn.attn.in_proj_weight``) and the
original PVTv2 release (``block1.0.attn.q.weight``). A whole-model checkpoint
(detector, segmentor, classifier) is reduced to its ``backbone.`` entries first.
"""
import re
from collections import OrderedDict

from torch import Tensor

from ..common.weights import StateDict, layout_of


def detect_layout(state: StateDict) -> str:
    """``'dit'``, ``'mmdet'`` or ``'original'``; a clear error otherwise."""
    return layout_of(state, [
        ('dit', 'stages.', 'DiT'),
        ('mmdet', 'layers.0.0.projection', 'mmdet PVTv2'),
        ('original', 'patch_embed1.', 'the original PVTv2')], 'PVTv2 / DiT')


_MMDET_FFN = {'0': 'fc1', '1': 'dwconv', '4': 'fc2'}


def _mmdet_key(key: str, value: Tensor, out: StateDict) -> None:
    m = re.match(r'layers\.(\d+)\.(\d)\.(.*)', key)
    if m is None:
        out[key] = value
        return
    stage, part, rest = m.groups()
    if part == '0':
        rest = rest.replace('projection.', 'proj.')
        out[f'stages.{stage}.patch_embed.{rest}'] = value
        return
    if part == '2':
        out[f'stages.{stage}.norm.{rest}'] = value
        return
    block, rest = rest.split('.', 1)
    prefix = f'stages.{stage}.blocks.{block}.'
    if rest.startswith('attn.attn.in_proj_'):
        kind = rest.rsplit('_', 1)[1]
        dims = value.shape[0] // 3
        out[prefix + f'attn.q.{kind}'] = value[:dims]
        out[prefix + f'attn.kv.{kind}'] = value[dims:]
    elif rest.startswith('attn.attn.out_proj.'):
        out[prefix + 'attn.proj.' + rest.rsplit('.', 1)[1]] = value
    elif rest.startswith('ffn.layers.'):
        index, kind = rest[len('ffn.layers.'):].split('.')
        name = _MMDET_FFN.get(index, f'layers{index}')
        if name in ('fc1', 'fc2') and value.dim() == 4:
            value = value.flatten(1)
        out[prefix + f'mlp.{name}.{kind}'] = value
    else:
        out[prefix + rest] = value


def _original_key(key: str, value: Tensor, out: StateDict) -> None:
    if key.startswith('head.'):
        return
    m = re.match(r'(patch_embed|block|norm)(\d)\.(.*)', key)
    if m is None:
        out[key] = value
        return
    kind, stage, rest = m.groups()
    stage = int(stage) - 1
    if kind == 'patch_embed':
        out[f'stages.{stage}.patch_embed.{rest}'] = value
    elif kind == 'norm':
        out[f'stages.{stage}.norm.{rest}'] = value
    else:
        rest = rest.replace('mlp.dwconv.dwconv.', 'mlp.dwconv.')
        out[f'stages.{stage}.blocks.{rest}'] = value


def to_dit_layout(state: StateDict) -> StateDict:
    """``state`` in DiT's key layout, whichever of the three it came in."""
    layout = detect_layout(state)
    if layout == 'dit':
        return OrderedDict(state)
    convert = _mmdet_key if layout == 'mmdet' else _original_key
    out: StateDict = OrderedDict()
    for key, value in state.items():
        convert(key, value, out)
    return out
