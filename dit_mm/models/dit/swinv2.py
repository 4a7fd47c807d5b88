"""DiT on a Swin-v2 routing space: the second family of the DiT paper.

The routing space is the grid of Swin-v2's blocks over its four scales
(strides 4 ... 32): the same gates, budget, budget loss and early stopping as
the PVTv2 family (:class:`RoutedBackbone`). A token that goes down reaches the
next scale through Swin-v2's patch merging, which runs on the whole (dense)
map. The blocks are mmpretrain's ``SwinBlockV2`` with skippable tokens
(``dit/swin_blocks.py``); the module names are mmpretrain's
``SwinTransformerV2``'s, so its state dicts load as they are, and
``set_budget(1.0)`` computes it exactly.
"""
from typing import List, Optional, Sequence, Union

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.utils import PatchMerging
from torch import Tensor, nn

from ...core.stage_cost import StageCost
from ...core.swin_cost import swin_stage_costs
from ...registry import register_model
from ..common.checks import (UnknownArchError, check_keywords,
                             check_only_built, check_out_indices,
                             stock_check)
from ..common.gates import RoutingGate
from ..common.static_peer import PeerBuild
from ..common.weights import StateDict, pretrained_to_init_cfg
from .routed_backbone import RoutedBackbone
from .static_peer import swin_peer
from .swin_blocks import RoutedSwinV2Block

# mmpretrain's SwinTransformerV2.arch_zoo, less the extra norms of h and g
SWINV2_ARCHS = {
    't': dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    's': dict(embed_dims=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
    'b': dict(embed_dims=128, depths=[2, 2, 18, 2],
              num_heads=[4, 8, 16, 32]),
    'l': dict(embed_dims=192, depths=[2, 2, 18, 2],
              num_heads=[6, 12, 24, 48]),
}
LONG_NAMES = {'tiny': 't', 'small': 's', 'base': 'b', 'large': 'l',
              'huge': 'h', 'giant': 'g'}
EXTRA_NORM_ARCHS = ('h', 'g')  # mmpretrain's, with a norm every 6 blocks
ARCH_KEYS = ('embed_dims', 'depths', 'num_heads')
# buffers mmpretrain recomputes for the window size instead of loading
RECOMPUTED = ('relative_position_index', 'relative_coords_table')


def resolve_swinv2_arch(arch: Union[str, dict]) -> dict:
    """mmpretrain's arch names (``'t'``/``'tiny'``, ``'s'``, ``'b'``,
    ``'l'``) or a dict of ``embed_dims``, ``depths`` (4), ``num_heads`` (4)
    and optionally ``mlp_ratio`` (4) and ``extra_norm_every_n_blocks``
    (only 0: the extra norms of mmpretrain's ``h`` and ``g`` archs are not
    built here). Bad ones raise the ``AssertionError`` kind mmpretrain
    raises."""
    if isinstance(arch, str):
        name = LONG_NAMES.get(arch.lower(), arch.lower())
        stock_check(name not in EXTRA_NORM_ARCHS, f'DiTSwinV2 does not build '
                    f'the extra norms (every 6 blocks) of mmpretrain\'s '
                    f'{arch!r} arch')
        if name not in SWINV2_ARCHS:
            raise UnknownArchError(
                f'Unknown Swin-v2 arch {arch!r}: not in the default archs '
                f'{sorted(SWINV2_ARCHS)} (or their long names); or give a '
                'dict')
        return dict(SWINV2_ARCHS[name], mlp_ratio=4)
    stock_check(isinstance(arch, dict),
                f'arch must be a name or a dict, got {arch!r}')
    stock_check(not arch.get('extra_norm_every_n_blocks', 0),
                "DiTSwinV2 does not build the extra norms of mmpretrain's "
                'huge and giant archs: extra_norm_every_n_blocks must be 0, '
                f"got {arch.get('extra_norm_every_n_blocks')}")
    arch = {k: v for k, v in arch.items() if k != 'extra_norm_every_n_blocks'}
    missing = [k for k in ARCH_KEYS if k not in arch]
    unknown = sorted(set(arch) - set(ARCH_KEYS) - {'mlp_ratio'})
    stock_check(not missing and not unknown,
                f'a Swin-v2 arch dict needs {list(ARCH_KEYS)} (and may give '
                f'mlp_ratio); missing {missing}, unknown {unknown}')
    stock_check(len(arch['depths']) == 4 and len(arch['num_heads']) == 4,
                'a Swin-v2 arch has 4 stages: depths and num_heads of length '
                f'4, got {arch}')
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
    """DiT backbone on Swin-v2: mmpretrain's ``SwinTransformerV2`` with
    routing gates.

    It takes mmpretrain's arguments with mmpretrain's defaults, so a stock
    config's backbone needs only ``type='DiTSwinV2'``. Arguments it cannot
    honour raise the ``AssertionError`` mmpretrain's checks raise
    (:class:`StockArgumentError`): ``use_abs_pos_embed=True``, a norm other
    than LayerNorm, non-empty ``stage_cfgs`` / ``patch_cfg``, the ``h`` and
    ``g`` archs (extra norms).

    Args:
        arch: mmpretrain's names (``'tiny'`` ... ``'large'``, or ``'t'``
            ...) or a dict (``resolve_swinv2_arch``).
        img_size: the patch embedding's nominal input size (any size runs).
        patch_size: the patch embedding's patch (and stride).
        in_channels: image channels.
        window_size: window side of every stage, or one per stage
            (mmpretrain's ``window_size``).
        drop_rate, drop_path_rate: as in mmpretrain.
        out_indices: stages whose (normalised) maps are returned
            (mmpretrain's default: the last; the detection and segmentation
            configs take all four).
        use_abs_pos_embed, interpolate_mode, norm_cfg, stage_cfgs,
            patch_cfg: mmpretrain's; only their defaults are built.
        pad_small_map: pad a map smaller than the window, and keep the
            shift where a map is as large as its window (the detection and
            segmentation configs set it); False (mmpretrain's default)
            refuses maps smaller than a window and drops the shift of one
            window's size.
        pretrained_window_sizes: the window sizes the weights were trained
            with (mmpretrain's; 0: the same as ``window_size``).
        window_mode: the sparse windowed attention, ``'packed'`` (measured
            the faster, see the README) or ``'whole'``
            (``dit/swin_blocks.py``).
        gate_init: initial logit of both gates (3.0: 95% on the Swin-v2
            route).
        **routing: the routing keywords of :class:`RoutedBackbone`, as for
            :class:`DiT`, mmpretrain's ``with_cp``, ``frozen_stages`` (0
            also freezes the patch embedding) and ``norm_eval`` among them.
        pretrained, init_cfg: a local checkpoint of mmpretrain's
            ``SwinTransformerV2`` (a classifier's, or a detector's or
            segmentor's with ``backbone.`` keys) or of this model.
    """

    # mmpretrain's class attributes, for the archs built here
    arch_zoo = {name: dict(SWINV2_ARCHS[LONG_NAMES.get(name, name)],
                           extra_norm_every_n_blocks=0)
                for name in [*SWINV2_ARCHS, 'tiny', 'small', 'base', 'large']}
    num_extra_tokens = 0

    peer_scope = 'mmpretrain'
    peer_name = 'mmpretrain SwinTransformerV2'
    unskippable_parts = 'the patch embedding and merging'

    def build_static_peer(self) -> PeerBuild:
        return swin_peer(self)

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: int = 256,
                 patch_size: int = 4,
                 in_channels: int = 3,
                 window_size: Union[int, Sequence[int]] = 8,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = (3, ),
                 use_abs_pos_embed: bool = False,
                 interpolate_mode: str = 'bicubic',
                 norm_cfg: dict = dict(type='LN'),
                 stage_cfgs: dict = dict(),
                 patch_cfg: dict = dict(),
                 pad_small_map: bool = False,
                 pretrained_window_sizes: Sequence[int] = (0, 0, 0, 0),
                 window_mode: str = 'packed',
                 gate_init: float = 3.0,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None,
                 **routing):
        check_keywords(self, routing)
        check_only_built('DiTSwinV2 builds Swin-v2',
                         use_abs_pos_embed=(use_abs_pos_embed, False),
                         norm_cfg=(norm_cfg, dict(type='LN')),
                         stage_cfgs=(stage_cfgs, dict()),
                         patch_cfg=(patch_cfg, dict()))
        init_cfg = pretrained_to_init_cfg('DiTSwinV2', pretrained, init_cfg)
        super().__init__(init_cfg=init_cfg, **routing)
        self.arch = resolve_swinv2_arch(arch)
        self.out_indices = check_out_indices(out_indices, 4)
        windows = [window_size] * 4 if isinstance(window_size, int) else \
            list(window_size)
        stock_check(len(windows) == 4 and len(pretrained_window_sizes) == 4,
                    'window_size and pretrained_window_sizes give one size '
                    f'per stage (4), got {window_size} and '
                    f'{pretrained_window_sizes}')
        self.window_sizes = windows
        self.pretrained_window_sizes = list(pretrained_window_sizes)
        self.img_size = img_size
        self.patch_size = patch_size
        self.pad_small_map = pad_small_map
        self.in_channels = in_channels
        # the attributes mmpretrain's class sets that user code reads
        self.arch_settings = dict(
            {k: self.arch[k] for k in ARCH_KEYS}, extra_norm_every_n_blocks=0,
            **({} if self.arch['mlp_ratio'] == 4 else
               dict(mlp_ratio=self.arch['mlp_ratio'])))  # ours only
        self.embed_dims = self.arch['embed_dims']
        self.depths = self.arch['depths']
        self.num_heads = self.arch['num_heads']
        self.num_layers = len(self.depths)
        self.extra_norm_every_n_blocks = 0
        self.use_abs_pos_embed = use_abs_pos_embed
        self.interpolate_mode = interpolate_mode
        self.patch_embed = PatchEmbed(
            in_channels=in_channels, input_size=img_size,
            embed_dims=self.arch['embed_dims'], conv_type='Conv2d',
            kernel_size=patch_size, stride=patch_size,
            norm_cfg=dict(type='LN'))
        self.patch_resolution = self.patch_embed.init_out_size
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
        self._register_learned_keep()
        self._freeze_stages()
        self.register_load_state_dict_pre_hook(_keep_recomputed_buffers)

    @property
    def window_mode(self) -> str:
        """The sparse windowed attention the blocks run (one for all)."""
        return self.stages[0].blocks[0].window_mode

    def set_window_mode(self, mode: str) -> None:
        """The sparse windowed attention of every block (``'whole'`` or
        ``'packed'``), at run time."""
        for stage in self.stages:
            for block in stage.blocks:
                block.window_mode = mode

    # ------------------------------------------------------------ the family
    def stage_costs(self, img_hw: Sequence[int]) -> List[StageCost]:
        return swin_stage_costs(self.arch, self.window_sizes, img_hw,
                                self.in_channels, self.patch_size)

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
        """As mmpretrain's: the patch embedding, the stages up to
        ``frozen_stages`` and the output norms of those stages."""
        stem = [self.patch_embed] if self.frozen_stages >= 0 else []
        norms = [getattr(self, f'norm{i}') for i in self.out_indices
                 if i <= self.frozen_stages]
        return stem + super()._frozen_modules() + norms

    # ------------------------------------------------------------------- init
    def _init_from_scratch(self) -> None:
        """mmpretrain's initialisation (truncated normal linears)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    own_layout = 'mmpretrain SwinTransformerV2'

    @staticmethod
    def is_optional_weight(key: str) -> bool:
        """The routing's (gates, learned allocation), and the
        relative-position buffers: recomputed for this window size, as
        mmpretrain does, not loaded."""
        return RoutedBackbone.is_optional_weight(key) or \
            key.endswith(RECOMPUTED)

    def to_own_layout(self, state: StateDict) -> StateDict:
        return {k: v for k, v in state.items() if not k.endswith(RECOMPUTED)}


def _keep_recomputed_buffers(module: DiTSwinV2, state_dict: dict,
                             prefix: str, *args) -> None:
    """mmpretrain rebuilds the relative-position buffers for its windows and
    never loads them (a checkpoint made with other ``window_size`` or
    ``pretrained_window_sizes`` holds others): ``load_state_dict`` and
    mmengine's ``load_from`` keep this model's too. Its own are put in the
    checkpoint's place rather than dropped, so a strict load stays strict."""
    for key, buffer in module.state_dict(keep_vars=True).items():
        if key.endswith(RECOMPUTED):
            state_dict[prefix + key] = buffer
