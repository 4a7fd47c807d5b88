"""DiT on a Swin-v2 routing space: the second family of the DiT paper.

The routing space is the grid of Swin-v2's blocks over its four scales
(strides 4 ... 32): the same gates, budget, budget loss and early stopping as
the PVTv2 family (:class:`RoutedBackbone`). A token that goes down reaches the
next scale through Swin-v2's patch merging, which runs on the whole (dense)
map. The blocks are mmpretrain's ``SwinBlockV2`` with skippable tokens
(``layers/swin_blocks.py``); the module names are mmpretrain's
``SwinTransformerV2``'s, so its state dicts load as they are, and
``set_budget(1.0)`` computes it exactly.
"""
from typing import List, Optional, Sequence, Union

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.logging import MMLogger
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.utils import PatchMerging
from torch import Tensor, nn

from ...analysis.pvt_cost import StageCost
from ...analysis.swin_cost import swin_stage_costs
from ...registry import register_model
from ..layers import RoutedSwinV2Block, RoutingGate
from .dit_routing import RoutedBackbone
from .weights import (StateDict, load_checked, pretrained_to_init_cfg,
                      read_init_checkpoint)

SWINV2_ARCHS = {
    't': dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    's': dict(embed_dims=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
    'b': dict(embed_dims=128, depths=[2, 2, 18, 2],
              num_heads=[4, 8, 16, 32]),
}
ARCH_KEYS = ('embed_dims', 'depths', 'num_heads')
# buffers mmpretrain recomputes for the window size instead of loading
RECOMPUTED = ('relative_position_index', 'relative_coords_table')


def resolve_swinv2_arch(arch: Union[str, dict]) -> dict:
    """``'t'``, ``'s'``, ``'b'`` (also ``'tiny'``, ``'small'``, ``'base'``,
    mmpretrain's widths, depths and heads) or a dict of ``embed_dims``,
    ``depths`` (4), ``num_heads`` (4) and optionally ``mlp_ratio`` (4)."""
    if isinstance(arch, str):
        name = {'tiny': 't', 'small': 's', 'base': 'b'}.get(arch.lower(),
                                                           arch.lower())
        if name not in SWINV2_ARCHS:
            raise KeyError(f'Unknown Swin-v2 arch {arch!r}; choose one of '
                           f'{sorted(SWINV2_ARCHS)} or give a dict')
        return dict(SWINV2_ARCHS[name], mlp_ratio=4)
    if not isinstance(arch, dict):
        raise TypeError(f'arch must be a name or a dict, got {arch!r}')
    missing = [k for k in ARCH_KEYS if k not in arch]
    unknown = sorted(set(arch) - set(ARCH_KEYS) - {'mlp_ratio'})
    if missing or unknown:
        raise KeyError(f'a Swin-v2 arch dict needs {list(ARCH_KEYS)} (and '
                       f'may give mlp_ratio); missing {missing}, unknown '
                       f'{unknown}')
    if len(arch['depths']) != 4 or len(arch['num_heads']) != 4:
        raise ValueError('a Swin-v2 arch has 4 stages: depths and num_heads '
                         f'of length 4, got {arch}')
    return dict(arch, mlp_ratio=arch.get('mlp_ratio', 4))


class SwinV2Stage(nn.Module):
    """One scale of the routing space: patch merging (from the second stage
    on), the blocks with their gates."""

    def __init__(self, in_dims: int, dims: int, depth: int, num_heads: int,
                 window_size: int, drop_paths: Sequence[float],
                 mlp_ratio: float, pad_small_map: bool,
                 pretrained_window_size: int, gate_init: float,
                 window_mode: str, downsample: bool):
        super().__init__()
        self.downsample = PatchMerging(
            in_channels=in_dims, out_channels=dims, norm_cfg=dict(type='LN'),
            use_post_norm=True) if downsample else None
        self.blocks = nn.ModuleList(
            RoutedSwinV2Block(
                dims, num_heads, window_size=window_size, shift=j % 2 == 1,
                ffn_ratio=mlp_ratio, drop_path=drop_paths[j],
                pad_small_map=pad_small_map,
                pretrained_window_size=pretrained_window_size,
                window_mode=window_mode) for j in range(depth))
        self.gates = nn.ModuleList(
            RoutingGate(dims, gate_init) for _ in range(depth))


@register_model
class DiTSwinV2(RoutedBackbone):
    """DiT backbone on Swin-v2 ``t``, ``s``, ``b``.

    Args:
        arch: ``'t'``, ``'s'``, ``'b'`` or a dict (``resolve_swinv2_arch``).
        img_size: the patch embedding's nominal input size (any size runs).
        in_channels: image channels.
        window_size: window side of every stage, or one per stage
            (mmpretrain's ``window_size``).
        pretrained_window_sizes: the window sizes the weights were trained
            with (mmpretrain's; 0: the same as ``window_size``).
        out_indices: stages whose (normalised) maps are returned.
        drop_rate, drop_path_rate: as in mmpretrain.
        pad_small_map: pad a map smaller than the window (detection,
            segmentation); False shrinks nothing and refuses such maps.
        window_mode: the sparse windowed attention, ``'packed'`` (measured
            the faster, see the README) or ``'whole'``
            (``layers/swin_blocks.py``).
        gate_init: initial logit of both gates (3.0: 95% on the Swin-v2
            route).
        **routing: the routing keywords of :class:`RoutedBackbone`, as for
            :class:`DiT` (``frozen_stages`` 0 also freezes the patch
            embedding).
        pretrained, init_cfg: a local checkpoint of mmpretrain's
            ``SwinTransformerV2`` (a classifier's, or a detector's or
            segmentor's with ``backbone.`` keys) or of this model.
    """

    def __init__(self,
                 arch: Union[str, dict] = 't',
                 img_size: int = 256,
                 in_channels: int = 3,
                 window_size: Union[int, Sequence[int]] = 8,
                 pretrained_window_sizes: Sequence[int] = (0, 0, 0, 0),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 pad_small_map: bool = True,
                 window_mode: str = 'packed',
                 gate_init: float = 3.0,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None,
                 **routing):
        init_cfg = pretrained_to_init_cfg('DiTSwinV2', pretrained, init_cfg)
        super().__init__(init_cfg=init_cfg, **routing)
        self.arch = resolve_swinv2_arch(arch)
        self.out_indices = self._check_out_indices(out_indices, 4)
        windows = [window_size] * 4 if isinstance(window_size, int) else \
            list(window_size)
        if len(windows) != 4 or len(pretrained_window_sizes) != 4:
            raise ValueError('window_size and pretrained_window_sizes give one '
                             f'size per stage (4), got {window_size} and '
                             f'{pretrained_window_sizes}')
        self.window_sizes = windows
        self.pretrained_window_sizes = list(pretrained_window_sizes)
        self.img_size = img_size
        self.pad_small_map = pad_small_map
        self.in_channels = in_channels
        self.largest_stride = 32
        self.patch_embed = PatchEmbed(
            in_channels=in_channels, input_size=img_size,
            embed_dims=self.arch['embed_dims'], conv_type='Conv2d',
            kernel_size=4, stride=4, norm_cfg=dict(type='LN'))
        self.drop_after_pos = nn.Dropout(p=drop_rate)
        depths = self.arch['depths']
        drop_paths = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        dims, start = self.arch['embed_dims'], 0
        self.out_channels = []
        for i, depth in enumerate(depths):
            out = dims * 2 if i else dims
            self.stages.append(SwinV2Stage(
                dims, out, depth, self.arch['num_heads'][i], windows[i],
                drop_paths[start:start + depth], self.arch['mlp_ratio'],
                pad_small_map, pretrained_window_sizes[i], gate_init,
                window_mode, downsample=i > 0))
            dims, start = out, start + depth
            if i in self.out_indices:
                self.add_module(f'norm{i}',
                                build_norm_layer(dict(type='LN'), dims)[1])
                self.out_channels.append(dims)
        self._freeze_stages()

    def set_window_mode(self, mode: str) -> None:
        """The sparse windowed attention of every block (``'whole'`` or
        ``'packed'``), at run time."""
        for stage in self.stages:
            for block in stage.blocks:
                block.window_mode = mode

    # ------------------------------------------------------------ the family
    def stage_costs(self, img_hw: Sequence[int]) -> List[StageCost]:
        return swin_stage_costs(self.arch, self.window_sizes, img_hw,
                                self.in_channels)

    def _enter_stage(self, index: int, carry):
        if index == 0:
            tokens, hw = self.patch_embed(carry)
            return self.drop_after_pos(tokens), tuple(hw)
        tokens, hw = self.stages[index].downsample(*carry)
        return tokens, tuple(hw)

    def _leave_stage(self, index: int, tokens: Tensor, hw, output: bool):
        if not output:
            return (tokens, hw), None
        out = getattr(self, f'norm{index}')(tokens)
        return (tokens, hw), out.view(-1, *hw, out.shape[-1]).permute(
            0, 3, 1, 2)

    def _frozen_modules(self) -> List[nn.Module]:
        stem = [self.patch_embed] if self.frozen_stages >= 0 else []
        return stem + super()._frozen_modules()

    # ------------------------------------------------------------------- init
    def init_weights(self) -> None:
        """mmpretrain's initialisation (truncated normal linears), or
        weights from ``init_cfg``'s checkpoint; the gates start on the
        Swin-v2 route either way unless the checkpoint has them."""
        if self.init_cfg is None:
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    trunc_normal_(module.weight, std=.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            for module in self.modules():  # after the Linear init above
                if isinstance(module, RoutingGate):
                    module.reset_parameters()
            return
        state = read_init_checkpoint(self.init_cfg)
        MMLogger.get_current_instance().info(load_swinv2_weights(
            self, state, str(self.init_cfg['checkpoint'])))


def load_swinv2_weights(model: DiTSwinV2, state: StateDict,
                        source: str) -> str:
    """Load mmpretrain ``SwinTransformerV2`` (or DiTSwinV2) weights, strictly:
    only the gates may be missing. The relative-position buffers are
    recomputed for this window size, as mmpretrain does, not loaded."""
    state = {k: v for k, v in state.items() if not k.endswith(RECOMPUTED)}
    return load_checked(
        model, state, source, 'mmpretrain SwinTransformerV2',
        optional=lambda key: '.gates.' in key or key.endswith(RECOMPUTED))
