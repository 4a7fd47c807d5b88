"""The static model a dynamic backbone replaces, with the same weights.

A dynamic backbone's *static peer* is the stock backbone of the same size:
mmdet's ``PyramidVisionTransformerV2`` for :class:`DiT`, mmpretrain's
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
from collections import OrderedDict
from typing import List, Tuple

import torch
from torch import Tensor, nn

from ..models.backbones.dit import DiT
from ..models.backbones.dit_archs import resolve_arch
from ..models.backbones.dit_swinv2 import DiTSwinV2
from ..models.backbones.pvt_weights import _mmdet_key
from ..models.backbones.token_pass_vit import TokenPassViT
from ..models.backbones.weights import StateDict, load_checked

PEER_NAMES = {
    'DiT': 'mmdet PyramidVisionTransformerV2',
    'DiTSwinV2': 'mmpretrain SwinTransformerV2',
    'TokenPassViT': 'mmseg VisionTransformer',
}


def pvt_kwargs(arch) -> dict:
    """mmdet ``PyramidVisionTransformerV2`` arguments of a DiT ``arch`` (a
    name or a dict, see ``resolve_arch``). mmdet's class fixes PVTv2's patch
    sizes and widths of ``embed_dims * num_heads[i]``: an arch outside that
    family has no mmdet peer (``ValueError``)."""
    setting = resolve_arch(arch)
    dims, heads = setting['embed_dims'], setting['num_heads']
    width = dims[0] // heads[0]
    if any(d != width * h for d, h in zip(dims, heads)):
        raise ValueError(f'mmdet PVTv2 widths are embed_dims * num_heads; '
                         f'DiT arch embed_dims {dims} with num_heads {heads} '
                         'has no mmdet peer')
    if list(setting['patch_sizes']) != [7, 3, 3, 3]:
        raise ValueError(f"mmdet PVTv2's patch sizes are [7, 3, 3, 3]; DiT "
                         f"arch patch_sizes {setting['patch_sizes']} has no "
                         'mmdet peer')
    return dict(
        embed_dims=width,
        num_layers=list(setting['depths']),
        num_heads=list(heads),
        strides=list(setting['strides']),
        sr_ratios=list(setting['sr_ratios']),
        mlp_ratios=list(setting['mlp_ratios']),
        drop_path_rate=0.1)


def peer_name(backbone: nn.Module) -> str:
    """The peer's name for reports: ``'mmdet PyramidVisionTransformerV2'``
    or ``'mmseg VisionTransformer'``."""
    for cls in type(backbone).__mro__:
        if cls.__name__ in PEER_NAMES:
            return PEER_NAMES[cls.__name__]
    raise TypeError(f'{type(backbone).__name__} has no static peer: dit_mm '
                    'knows the peers of DiT, DiTSwinV2, TokenPassViT and '
                    'MixedScaleViT')


def _pvt_class():
    from mmdet.models.backbones import PyramidVisionTransformerV2

    class PVTv2Peer(PyramidVisionTransformerV2):
        """mmdet's PVTv2, returning a tuple."""

        def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
            return tuple(super().forward(x))

    return PVTv2Peer


def _vit_class():
    from mmseg.models.backbones import VisionTransformer

    class ViTPeer(VisionTransformer):
        """mmseg's ViT; with ``output_cls_token`` only the class tokens."""

        def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
            outs = super().forward(inputs)
            if self.output_cls_token:
                return tuple(out[1] for out in outs)
            return outs

    return ViTPeer


def _dit_keys(key: str, value: Tensor) -> List[str]:
    """The DiT keys ``pvt_weights`` makes of mmdet PVTv2's ``key`` (two for
    an attention's ``in_proj``: q and kv)."""
    names: StateDict = OrderedDict()
    _mmdet_key(key, value, names)
    return list(names)


def pvt_state_from_dit(state: StateDict, template: StateDict) -> StateDict:
    """DiT weights ``state`` in the key layout of an mmdet PVTv2 state dict
    ``template``: the inverse of ``pvt_weights``' mmdet-to-DiT conversion,
    derived from it (each template key is converted and the DiT tensors it
    names are put back: q and kv concatenated into ``in_proj``, linear weights
    reshaped to the 1x1 convolutions mmdet uses). A key DiT lacks is a
    ``KeyError``."""
    out: StateDict = OrderedDict()
    for key, value in template.items():
        names = _dit_keys(key, value)
        missing = [name for name in names if name not in state]
        if missing:
            raise KeyError(f'mmdet PVTv2 key {key} needs DiT keys {missing}, '
                           'which the DiT state dict lacks')
        parts = [state[name] for name in names]
        merged = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
        out[key] = merged.reshape(value.shape)
    return out


def _left_out(backbone: nn.Module, keys, peer_name: str) -> List[str]:
    """``keys`` of ``backbone`` the peer has no place for, sorted: only its
    optional weights (the backbone's checkpoint rule) may be left out."""
    stray = sorted(k for k in keys if not backbone.is_optional_weight(k))
    if stray:
        raise ValueError(f'{type(backbone).__name__} tensors {stray[:8]} have '
                         f'no place in {peer_name} (only the weights a stock '
                         'checkpoint lacks may be left out)')
    return sorted(keys)


def _same_names(backbone: nn.Module, peer: nn.Module, peer_name: str
                ) -> Tuple[StateDict, List[str]]:
    """A peer with ``backbone``'s key names: its tensors, and the keys left
    out."""
    own = backbone.state_dict()
    left = _left_out(backbone, set(own) - set(peer.state_dict()), peer_name)
    return OrderedDict((k, v) for k, v in own.items() if k not in left), left


def _pvt_peer(backbone: DiT) -> Tuple[nn.Module, StateDict, List[str]]:
    qkv_bias = backbone.stages[0].blocks[0].attn.q.bias is not None
    peer = _pvt_class()(in_channels=backbone.in_channels,
                        out_indices=tuple(backbone.out_indices),
                        qkv_bias=qkv_bias, **pvt_kwargs(backbone.arch))
    own, template = backbone.state_dict(), peer.state_dict()
    used = {name for key, value in template.items()
            for name in _dit_keys(key, value)}
    return peer, pvt_state_from_dit(own, template), _left_out(
        backbone, set(own) - used, 'mmdet PVTv2')


def _vit_settings(backbone: TokenPassViT) -> dict:
    """mmseg ``VisionTransformer`` arguments that rebuild ``backbone``'s ViT
    (read from its modules: the constructor's arguments are not kept)."""
    layer = backbone.layers[0]
    mha = layer.attn.attn
    norm = layer.ln1
    if not isinstance(norm, nn.LayerNorm):
        raise TypeError(f'the peer ViT is built with LayerNorm; '
                        f'{type(backbone).__name__} uses {type(norm).__name__}')
    ffn_parts = list(layer.ffn.layers.modules())
    linears = [m for m in ffn_parts if isinstance(m, nn.Linear)]
    embed = backbone.patch_embed
    dims = backbone.pos_embed.shape[-1]
    mlp_ratio = linears[0].out_features / dims
    adaptive = getattr(embed, 'adap_padding', None)
    return dict(
        img_size=tuple(backbone.img_size),
        patch_size=backbone.patch_size,
        patch_pad=(adaptive.padding if adaptive is not None else
                   embed.projection.padding[0]),
        in_channels=embed.projection.in_channels,
        embed_dims=dims,
        num_layers=len(backbone.layers),
        num_heads=mha.num_heads,
        mlp_ratio=int(mlp_ratio) if mlp_ratio.is_integer() else mlp_ratio,
        out_indices=list(backbone.out_indices),
        qkv_bias=mha.in_proj_bias is not None,
        with_cls_token=backbone.with_cls_token,
        output_cls_token=getattr(backbone, 'out_type', 'featmap') ==
        'cls_token',
        norm_cfg=dict(type='LN', eps=norm.eps),
        act_cfg=dict(type=type(layer.ffn.layers[0][1]).__name__),
        patch_norm=embed.norm is not None,
        patch_bias=embed.projection.bias is not None,
        pre_norm=backbone.pre_norm,
        final_norm=backbone.final_norm,
        interpolate_mode=backbone.interpolate_mode,
        num_fcs=len(linears),
        with_cp=backbone.with_cp)


def _swin_peer(backbone: DiTSwinV2
               ) -> Tuple[nn.Module, StateDict, List[str]]:
    from mmpretrain.models.backbones import SwinTransformerV2
    arch = backbone.arch
    if arch['mlp_ratio'] != 4:
        raise ValueError(f"mmpretrain's SwinTransformerV2 has MLP ratio 4; "
                         f"DiTSwinV2 arch mlp_ratio {arch['mlp_ratio']} has "
                         'no peer')
    peer = SwinTransformerV2(
        arch=dict(embed_dims=arch['embed_dims'], depths=arch['depths'],
                  num_heads=arch['num_heads'], extra_norm_every_n_blocks=0),
        img_size=backbone.img_size, patch_size=backbone.patch_size,
        in_channels=backbone.in_channels,
        window_size=backbone.window_sizes,
        pretrained_window_sizes=backbone.pretrained_window_sizes,
        out_indices=backbone.out_indices, drop_path_rate=0.,
        pad_small_map=backbone.pad_small_map)
    return peer, *_same_names(backbone, peer, "mmpretrain's SwinTransformerV2")


def _vit_peer(backbone: TokenPassViT
              ) -> Tuple[nn.Module, StateDict, List[str]]:
    peer = _vit_class()(**_vit_settings(backbone))
    return peer, *_same_names(backbone, peer, "mmseg's VisionTransformer")


def static_peer_backbone(backbone: nn.Module) -> nn.Module:
    """The stock backbone of ``backbone``'s size with its weights, on its
    device, in eval mode. ``peer.dynamic_only_keys`` lists the tensors of
    ``backbone`` that were not carried (gates, stop heads, scale gate); every
    other tensor is, and every tensor of the peer is loaded (a mismatch is a
    ``ValueError`` naming the keys)."""
    from mmengine.registry import DefaultScope
    if isinstance(backbone, DiT):
        scope, build = 'mmdet', _pvt_peer
    elif isinstance(backbone, DiTSwinV2):
        scope, build = 'mmpretrain', _swin_peer
    elif isinstance(backbone, TokenPassViT):
        scope, build = 'mmseg', _vit_peer
    else:
        peer_name(backbone)  # raises TypeError
    with DefaultScope.overwrite_default_scope(scope):
        peer, state, dynamic = build(backbone)
    load_checked(peer, state, f'{type(backbone).__name__} weights',
                 type(backbone).__name__)
    reference = next(backbone.parameters())
    peer.to(device=reference.device, dtype=reference.dtype)
    peer.eval()  # mmseg's ViT returns None from train()
    peer.dynamic_only_keys = dynamic
    return peer


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
    theirs = peer(inputs)
    if len(ours) != len(theirs):
        raise ValueError(f'{type(backbone).__name__} gives {len(ours)} '
                         f'outputs, its peer {len(theirs)}')
    return max(float((a.float() - b.float()).abs().max())
               for a, b in zip(ours, theirs))
