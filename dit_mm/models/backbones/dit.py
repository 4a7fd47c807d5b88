"""DiT: a PVTv2 whose tokens route themselves through scales and depths.

The routing space is the grid of PVTv2's blocks (``sum(depths)`` layers) over its
four scales (strides 4 ... 32); a token that goes down reaches the next scale
through the overlapping patch embedding. The routing itself (gates, budget,
budget loss, early stopping) is :class:`RoutedBackbone`'s (``dit_routing.py``),
shared with the Swin-v2 family. ``set_budget(1.0)`` computes PVTv2 exactly.
"""
import math
from typing import List, Optional, Sequence, Union

import torch
from mmengine.logging import MMLogger
from torch import Tensor, nn

from ...analysis.pvt_cost import StageCost, pvt_stage_costs
from ...registry import register_model
from ..layers import OverlapPatchEmbed, RoutedPVTBlock, RoutingGate
from ..layers.pvt_blocks import tokens_to_map
from .dit_archs import resolve_arch
from .dit_routing import RoutedBackbone
from .pvt_weights import load_pvt_weights
from .weights import pretrained_to_init_cfg, read_init_checkpoint


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
    """DiT backbone (Ma et al., 2023) on PVTv2 ``b0`` ... ``b5``.

    Args:
        arch: ``'b0'`` ... ``'b5'`` or a dict (see ``resolve_arch``).
        in_channels: image channels.
        out_indices: stages whose maps are returned (strides 4, 8, 16, 32).
        qkv_bias, drop_rate, attn_drop_rate, drop_path_rate: as in PVTv2.
        gate_init: initial logit of both gates (3.0: 95% on the PVTv2 route).
        **routing: the routing keywords of :class:`RoutedBackbone`
            (``budget``, ``budget_loss``, ``gumbel_tau``,
            ``gumbel_tau_schedule``, ``gumbel_noise``, ``stop_threshold``,
            ``sparse_inference``, ``frozen_stages``, ``norm_eval``,
            ``with_cp``).
        pretrained: mmseg's ``EncoderDecoder`` hands its ``pretrained`` to the
            backbone. A local file is loaded like ``init_cfg``; a model-zoo
            name or URL (a stock config's ResNet weights, say) is skipped with a
            warning, since it names another backbone and nothing is downloaded.
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads DiT, mmdet
            PVTv2 or original PVTv2 weights (key layouts converted).
    """

    def __init__(self,
                 arch: Union[str, dict] = 'b2',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 gate_init: float = 3.0,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None,
                 **routing):
        init_cfg = pretrained_to_init_cfg('DiT', pretrained, init_cfg)
        super().__init__(init_cfg=init_cfg, **routing)
        self.arch = resolve_arch(arch)
        self.out_indices = self._check_out_indices(out_indices, 4)
        self.in_channels = in_channels
        self.largest_stride = math.prod(self.arch['strides'])

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
        self.out_channels = [self.arch['embed_dims'][i] for i in out_indices]
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
    def init_weights(self) -> None:
        """PVTv2's initialisation, or weights from ``init_cfg``'s checkpoint."""
        if self.init_cfg is None:
            self._init_from_scratch()
            return
        state = read_init_checkpoint(self.init_cfg)
        MMLogger.get_current_instance().info(load_pvt_weights(
            self, state, str(self.init_cfg['checkpoint'])))

    def _init_from_scratch(self) -> None:
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
        for module in self.modules():  # after the Linear init above
            if isinstance(module, RoutingGate):
                module.reset_parameters()
