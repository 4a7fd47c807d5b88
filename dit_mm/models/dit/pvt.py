"""DiT: a PVTv2 whose tokens route themselves through scales and depths.

The routing space is the grid of PVTv2's blocks (``sum(depths)`` layers) over its
four scales (strides 4 ... 32); a token that goes down reaches the next scale
through the overlapping patch embedding. The routing itself (gates, budget,
budget loss, early stopping) is :class:`RoutedBackbone`'s (``routed_backbone.py``),
shared with the Swin-v2 family. ``set_budget(1.0)`` computes PVTv2 exactly.
"""
import math
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ...core.pvt_cost import pvt_stage_costs
from ...core.stage_cost import StageCost
from ...registry import register_model
from ..common.checks import (check_keywords, check_only_built,
                             check_out_indices, stock_check)
from ..common.gates import RoutingGate
from ..common.static_peer import PeerBuild
from ..common.weights import StateDict, pretrained_to_init_cfg
from .archs import arch_of_pvtv2_args
from .pvt_blocks import OverlapPatchEmbed, RoutedPVTBlock, tokens_to_map
from .pvt_weights import detect_layout, to_dit_layout
from .routed_backbone import RoutedBackbone
from .static_peer import pvt_peer


class DiTStage(nn.Module):
    """One scale of the routing space: patch embedding, blocks with their gates,
    and the closing norm."""

    def __init__(self, in_channels: int, dims: int, depth: int, num_heads: int,
                 sr_ratio: int, mlp_ratio: int, patch_size: int, stride: int,
                 drop_paths: Sequence[float], qkv_bias: bool, drop: float,
                 attn_drop: float, gate_init: float):
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_channels, dims, patch_size,
                                             stride)
        self.blocks = nn.ModuleList(
            RoutedPVTBlock(dims, num_heads, sr_ratio, mlp_ratio, qkv_bias, drop,
                           attn_drop, drop_paths[j]) for j in range(depth))
        self.gates = nn.ModuleList(
            RoutingGate(dims, gate_init) for _ in range(depth))
        self.norm = nn.LayerNorm(dims, eps=1e-6)


@register_model
class DiT(RoutedBackbone):
    """DiT backbone (Ma et al., 2023) on PVTv2: mmdet's
    ``PyramidVisionTransformerV2`` with routing gates.

    It takes mmdet's arguments with mmdet's defaults (PVTv2-b2), so a stock
    config's backbone needs only ``type='DiT'``; or ``arch`` (``'b0'`` ...
    ``'b5'`` or a dict, see ``resolve_arch``) instead of the network
    arguments. mmdet arguments it cannot honour raise the
    ``AssertionError`` mmdet's checks raise (:class:`StockArgumentError`):
    ``num_stages`` other than 4, ``use_abs_pos_embed=True`` (PVTv1),
    ``norm_after_stage=False``, ``use_conv_ffn=False``, an activation other
    than GELU, a norm other than LayerNorm (eps 1e-6), paddings other than
    half the patch size.

    Args:
        arch: ``'b0'`` ... ``'b5'`` or a dict; None (default): from
            ``embed_dims`` ... ``mlp_ratios`` as mmdet reads them.
        pretrain_img_size, convert_weights: taken for mmdet's signature
            (no absolute position embedding to size; every weight layout is
            converted, whatever ``convert_weights`` says).
        in_channels, out_indices, qkv_bias, drop_rate, attn_drop_rate,
            drop_path_rate: as in mmdet.
        gate_init: initial logit of both gates (3.0: 95% on the PVTv2 route).
        **routing: the routing keywords of :class:`RoutedBackbone`
            (``budget``, ``budget_loss``, ``gumbel_tau``,
            ``gumbel_tau_schedule``, ``gumbel_noise``, ``stop_threshold``,
            ``sparse_inference``, ``frozen_stages``, ``norm_eval``,
            ``with_cp``).
        pretrained: as mmdet's: a path or URL loaded like ``init_cfg`` by
            ``init_weights`` (mmseg's ``EncoderDecoder`` hands its own here: a
            stock config's ResNet weights must be set to None, or they are
            refused as not PVTv2's).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads DiT, mmdet
            PVTv2 or original PVTv2 weights (key layouts converted).
    """

    peer_scope = 'mmdet'
    peer_name = 'mmdet PyramidVisionTransformerV2'
    unskippable_parts = 'the patch embeddings'

    def build_static_peer(self) -> PeerBuild:
        return pvt_peer(self)

    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 pretrain_img_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 embed_dims: int = 64,
                 num_stages: int = 4,
                 num_layers: Sequence[int] = (3, 4, 6, 3),
                 num_heads: Sequence[int] = (1, 2, 5, 8),
                 patch_sizes: Sequence[int] = (7, 3, 3, 3),
                 strides: Sequence[int] = (4, 2, 2, 2),
                 paddings: Sequence[int] = (3, 1, 1, 1),
                 sr_ratios: Sequence[int] = (8, 4, 2, 1),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 mlp_ratios: Sequence[int] = (8, 8, 4, 4),
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 use_abs_pos_embed: bool = False,
                 norm_after_stage: bool = True,
                 use_conv_ffn: bool = True,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 pretrained: Optional[str] = None,
                 convert_weights: bool = True,
                 init_cfg: Optional[dict] = None,
                 gate_init: float = 3.0,
                 **routing):
        check_keywords(self, routing)
        stock_check(isinstance(pretrain_img_size, int) or
                    len(pretrain_img_size) in (1, 2),
                    'The size of image should have length 1 or 2, but got '
                    f'{pretrain_img_size}')  # mmdet's check
        stock_check(num_stages == 4, f'DiT builds 4 stages, got num_stages='
                    f'{num_stages}')
        check_only_built('DiT builds PVTv2',
                         use_abs_pos_embed=(use_abs_pos_embed, False),
                         norm_after_stage=(norm_after_stage, True),
                         use_conv_ffn=(use_conv_ffn, True),
                         act_cfg=(act_cfg, dict(type='GELU')),
                         norm_cfg=(norm_cfg, dict(type='LN', eps=1e-6)))
        init_cfg = pretrained_to_init_cfg('DiT', pretrained, init_cfg)
        super().__init__(init_cfg=init_cfg, **routing)
        self.arch = arch_of_pvtv2_args(
            arch, embed_dims=embed_dims, num_layers=num_layers,
            num_heads=num_heads, patch_sizes=patch_sizes, strides=strides,
            paddings=paddings, sr_ratios=sr_ratios, mlp_ratios=mlp_ratios)
        self.out_indices = check_out_indices(out_indices, 4)
        self.in_channels = in_channels
        # the attributes mmdet's class sets that user code reads
        self.embed_dims = self.arch['embed_dims'][0]
        self.num_stages = 4
        self.num_layers = self.arch['depths']
        self.num_heads = self.arch['num_heads']
        self.patch_sizes = self.arch['patch_sizes']
        self.strides = self.arch['strides']
        self.sr_ratios = self.arch['sr_ratios']
        self.convert_weights = convert_weights
        self.pretrained = pretrained

        depths = self.arch['depths']
        drop_paths = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        channels, start = in_channels, 0
        for i, depth in enumerate(depths):
            dims = self.arch['embed_dims'][i]
            self.stages.append(
                DiTStage(channels, dims, depth, self.arch['num_heads'][i],
                         self.arch['sr_ratios'][i], self.arch['mlp_ratios'][i],
                         self.arch['patch_sizes'][i], self.arch['strides'][i],
                         drop_paths[start:start + depth], qkv_bias, drop_rate,
                         attn_drop_rate, gate_init))
            channels, start = dims, start + depth
        self.out_channels = [self.arch['embed_dims'][i]
                             for i in self.out_indices]
        self._register_learned_keep()
        self._freeze_stages()

    # ------------------------------------------------------------ the family
    def stage_costs(self, img_hw: Sequence[int]) -> List[StageCost]:
        return pvt_stage_costs(self.arch, img_hw, self.in_channels)

    def _enter_stage(self, index: int, carry: Tensor):
        return self.stages[index].patch_embed(carry)

    def _leave_stage(self, index: int, tokens: Tensor, hw, output: bool):
        x = tokens_to_map(self.stages[index].norm(tokens), hw)
        return x, (x if output else None)

    # ------------------------------------------------------------------- init
    own_layout = 'dit'

    def weight_layout(self, state: StateDict) -> str:
        """``'dit'``, ``'mmdet'`` (PVTv2) or ``'original'`` (the release)."""
        return detect_layout(state)

    def to_own_layout(self, state: StateDict) -> StateDict:
        return to_dit_layout(state)

    def _init_from_scratch(self) -> None:
        """PVTv2's initialisation."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                fan_out = (module.kernel_size[0] * module.kernel_size[1] *
                           module.out_channels) // module.groups
                nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
