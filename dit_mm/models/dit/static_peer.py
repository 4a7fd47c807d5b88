"""The static peers of the two DiT families: mmdet's
``PyramidVisionTransformerV2`` for :class:`DiT` (its weights converted back
to mmdet's layout, the inverse of ``pvt_weights``) and mmpretrain's
``SwinTransformerV2`` for :class:`DiTSwinV2` (the same key names)."""
from collections import OrderedDict
from typing import List, Tuple

import torch
from torch import Tensor, nn

from ..common.static_peer import PeerBuild, left_out, with_same_names
from ..common.weights import StateDict
from .archs import resolve_arch
from .pvt_weights import _mmdet_key


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


def _pvt_class():
    from mmdet.models.backbones import PyramidVisionTransformerV2

    class PVTv2Peer(PyramidVisionTransformerV2):
        """mmdet's PVTv2, returning a tuple."""

        def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
            return tuple(super().forward(x))

    return PVTv2Peer


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


def pvt_peer(backbone: nn.Module) -> PeerBuild:
    """mmdet's PVTv2 built with the settings of the DiT ``backbone``."""
    qkv_bias = backbone.stages[0].blocks[0].attn.q.bias is not None
    peer = _pvt_class()(in_channels=backbone.in_channels,
                        out_indices=tuple(backbone.out_indices),
                        qkv_bias=qkv_bias, **pvt_kwargs(backbone.arch))
    own, template = backbone.state_dict(), peer.state_dict()
    used = {name for key, value in template.items()
            for name in _dit_keys(key, value)}
    return peer, pvt_state_from_dit(own, template), left_out(
        backbone, set(own) - used, 'mmdet PVTv2')


def swin_peer(backbone: nn.Module) -> PeerBuild:
    """mmpretrain's Swin-v2 built with the settings of the DiT-Swin-v2
    ``backbone``."""
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
    return with_same_names(backbone, peer, "mmpretrain's SwinTransformerV2")
