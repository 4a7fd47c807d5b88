"""The static model a dynamic backbone replaces, with the same weights, and
what the measuring tools do with it.

A dynamic backbone's *static peer* (``DynamicBackbone.static_peer``; each
family builds its own, in its folder: ``dit_mm/models/dit/static_peer.py``,
``dit_mm/models/token_pass/static_peer.py``) is the stock backbone of the
same size: mmdet's ``PyramidVisionTransformerV2`` for :class:`DiT`, mmpretrain's
``SwinTransformerV2`` for :class:`DiTSwinV2`, mmseg's ``VisionTransformer``
for :class:`TokenPassViT` and :class:`MixedScaleViT`. It
is built with the dynamic backbone's settings (read from the module, so an
arch dict or a stock config's overrides carry over) and loaded strictly with
its weights, except for the tensors only the dynamic backbone has (DiT's
routing gates, the stop heads, the scale gate and its loss's priors), which
are listed on the peer as ``dynamic_only_keys``. At ``set_budget(1.0)`` the two
compute the same function (:func:`backbone_difference`).

The peer returns a tuple, as every dit_mm backbone does (mmdet's PVTv2 returns
a list, which mmpretrain's necks refuse), and the class token for a ViT built
with ``out_type='cls_token'`` (mmseg's ``output_cls_token``, final norm
applied); otherwise it is the stock class. Dropout and drop-path rates are not
carried: the peer is built for inference (eval mode).
"""
import copy
import functools

import torch
from torch import Tensor, nn

from ..models.common.dynamic import DynamicBackbone


def _dynamic(backbone: nn.Module) -> DynamicBackbone:
    if not isinstance(backbone, DynamicBackbone):
        raise TypeError(f'{type(backbone).__name__} has no static peer: dit_mm '
                        'knows the peers of DiT, DiTSwinV2, TokenPassViT and '
                        'MixedScaleViT')
    return backbone


def peer_name(backbone: nn.Module) -> str:
    """The peer's name for reports: ``'mmdet PyramidVisionTransformerV2'``
    or ``'mmseg VisionTransformer'``."""
    return _dynamic(backbone).peer_name


def static_peer_backbone(backbone: nn.Module) -> nn.Module:
    """The stock backbone of ``backbone``'s size with its weights
    (``DynamicBackbone.static_peer``); a ``TypeError`` for a backbone that
    is not a dynamic one."""
    return _dynamic(backbone).static_peer()


def with_static_peer(model: nn.Module) -> nn.Module:
    """A deep copy of the task model ``model`` whose ``backbone`` is the static
    peer (the rest, preprocessor, neck and heads included, copied with its
    weights), in eval mode. ``model`` itself is left as it is."""
    backbone = model.backbone
    peer = static_peer_backbone(backbone)
    # the memo makes the copy take ``peer`` wherever ``model`` has ``backbone``
    copied = copy.deepcopy(model, memo={id(backbone): peer})
    copied.eval()
    return copied


def attend_with_sdpa(model: nn.Module) -> int:
    """Make every torch ``nn.MultiheadAttention`` in ``model`` skip the
    attention weights, so torch attends through ``scaled_dot_product_attention``
    (FlashAttention, cuDNN or memory-efficient kernels), as the dynamic
    backbones do. mmcv's wrapper, in the stock PVTv2 and ViT, asks for the
    weights, which forces the explicit softmax: a peer slowed by that is not a
    fair baseline on a GPU. The function is unchanged (its output is the same
    up to the kernels' rounding). Returns how many modules it changed."""
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            module.forward = functools.partial(
                type(module).forward, module, need_weights=False)
            changed += 1
    return changed


@torch.no_grad()
def backbone_difference(backbone: nn.Module, peer: nn.Module,
                        inputs: Tensor) -> float:
    """The largest absolute difference between ``backbone`` at
    ``set_budget(1.0)`` and ``peer`` over all their outputs on ``inputs``
    (the backbone's budget is restored after)."""
    before = backbone.budget
    backbone.set_budget(1.0)
    try:
        ours = backbone(inputs)
    finally:
        backbone.set_budget(before)
    try:
        theirs = peer(inputs)
    except RuntimeError as error:  # mmdet's PVTv2 under 31x31, say
        raise ValueError(
            f'the static peer ({peer_name(backbone)}) cannot run on '
            f'{tuple(inputs.shape[-2:])} inputs, which '
            f'{type(backbone).__name__} takes: {error}; give a larger size'
        ) from error
    if len(ours) != len(theirs):
        raise ValueError(f'{type(backbone).__name__} gives {len(ours)} '
                         f'outputs, its peer {len(theirs)}')
    return max(float((a.float() - b.float()).abs().max())
               for a, b in zip(ours, theirs))
