"""TokenPassViT: a ViT whose easy tokens stop early (DoViT, WACV 2024).

Light stop heads (a norm and a linear classifier per token) sit after some
layers (by default after layers 2, 5 and 8 of 12, spread the same way for
other depths). A patch token whose top softmax confidence exceeds the
threshold stops there: later layers run only on the tokens that are still
going (packed per image, no mask multiplied in) and the stopped ones keep the
value they had. Stopping is cumulative. During training the threshold follows
a schedule from 1.0 (nothing stops) down to its configured value, read from
the runner's iteration so that it survives ``--resume``. The class token never
stops. The token reconstruction module puts the tokens back in place and gives
every ``out_indices`` level as a dense map, so mmseg's decode heads and necks
(Segmenter, SETR, UperNet with ``MultiLevelNeck``) take it unchanged.

The weights are mmseg's ``VisionTransformer`` (this class extends it), so its
state dicts load as they are; timm / DeiT checkpoints are converted.
``set_budget(1.0)`` runs every token through every layer and equals mmseg's
``VisionTransformer``. ``set_budget(r)`` stops, at each head, the most confident
tokens, keeping the least confident ones, so many that at most fraction ``r``
of the plain ViT's FLOPs is spent (the heads' own cost included).
``set_budget(None)`` returns to the threshold.

An image's tokens are computed on their own (attention never mixes images,
nothing is padded), so its result does not depend on the rest of its batch.
"""
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS as MMSEG_MODELS
from torch import Tensor, nn

from ...core.deciders import lowest_mask
from ...core.tokens import gather_tokens, scatter_tokens, select_tokens
from ...core.vit_cost import ViTCost, budget_keep_counts
from ...registry import register_model
from ..budget_sampling import build_budget_sampler
from ..common.checks import (check_budget, check_keywords,
                             checked_images, stock_check)
from ..common.dynamic import DynamicBackbone
from ..common.static_peer import PeerBuild
from ..common.weights import (CheckpointRule, StateDict,
                              pretrained_to_init_cfg, read_init_checkpoint)
from ..data_parallel import mean_over_ranks
from ..routing import RoutedFeatures, TokenPassInfo
from ..schedule import check_schedule, scheduled
from .static_peer import vit_peer
from .stop_head import StopHead
from .tokenizer import PassState, PatchTokenizer
from .vit_archs import VIT_ARCH_KEYS, resolve_vit_arch
from .vit_blocks import run_packed_layer
from .vit_weights import (detect_vit_layout, resize_pos_embed,
                          to_mmseg_vit_layout)


def build_mmseg_module(cfg: dict) -> nn.Module:
    """``cfg`` built from mmseg's registry in the mmseg scope, whatever scope
    the caller is in (an mmpretrain model, or a process whose latest scope is
    mmengine's), so a loss like ``CrossEntropyLoss`` is mmseg's."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MMSEG_MODELS.build(cfg)


def default_head_layers(num_layers: int) -> List[int]:
    """Layers followed by a stop head: 2, 5, 8 of 12, i.e. after each of the
    first three quarters of the depth (5, 11, 17 of 24). mmseg builds any
    depth: under 4 layers the quarters that fall on the same layer, before
    the first or on the last are left out (0, 1 of 3; 0 of 2; none of 1)."""
    quarters = {round((j + 1) * num_layers / 4) - 1 for j in range(3)}
    return sorted(quarters & set(range(num_layers - 1)))


@register_model
class TokenPassViT(VisionTransformer, CheckpointRule, DynamicBackbone):
    """A ViT (patch 16) with token pass.

    Args:
        arch: ``'s'``, ``'b'``, ``'l'`` (``'t'`` too) or a dict with
            ``embed_dims``, ``num_layers``, ``num_heads`` (``mlp_ratio``).
        img_size: the training size; fixes the position-embedding grid, which
            is resized for other inputs.
        out_indices: layers whose output is returned.
        out_type: ``'featmap'``: dense NCHW maps (for decode heads and
            necks); ``'cls_token'``: the ``(B, C)`` class token (normalised
            at the last layer), as mmpretrain's ``VisionTransformerClsHead``
            takes it.
        num_classes: classes of the stop heads (those of the decode head).
        head_layers: layers followed by a stop head (default: 2, 5, 8 of 12).
        stop_threshold: confidence above which a token stops.
        threshold_schedule: ``dict(start=1.0, begin=0, end=N)``: in training
            the threshold goes linearly from ``start`` at iteration ``begin``
            to ``stop_threshold`` at ``end``. ``None``: always the threshold.
        aux_loss: loss of the stop heads against the labels (mmseg loss
            config); one ``loss_aux_l{layer}`` per head. The labels of tokens
            stopped before a head are ignored by it.
        budget: see :meth:`set_budget`.
        budget_sampling: ``dict(learned=, full=, low=, sandwich=)`` of
            :class:`~dit_mm.models.budget_sampling.BudgetSampler`: each
            training iteration stops by the threshold, runs (nearly) every
            token or a fixed budget from ``[low, 1)`` (training for every
            budget); None: the threshold in every iteration.
        reconstruction: config of the registered token reconstruction module.
        norm_cfg, patch_bias: mmseg's defaults (LayerNorm eps 1e-5, no
            patch-embedding bias), so a stock config and its checkpoints fit
            as they are; the timm / DeiT choices (eps 1e-6, a bias) are set
            in this project's configs.
        pretrained: as mmseg's: a path or URL loaded like ``init_cfg`` by
            ``init_weights``.
        **kwargs: mmseg ``VisionTransformer`` arguments (``drop_path_rate``,
            ``final_norm``, ``with_cp``, ``norm_eval``, ``interpolate_mode``...).
            ``embed_dims``, ``num_layers``, ``num_heads`` and ``mlp_ratio``
            override ``arch``, so a stock mmseg ViT config needs only its
            backbone ``type`` changed.
    """

    peer_scope = 'mmseg'
    peer_name = 'mmseg VisionTransformer'

    def build_static_peer(self) -> PeerBuild:
        return vit_peer(self)

    def __init__(self,
                 arch='b',
                 img_size=224,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 out_indices=-1,
                 out_type: str = 'featmap',
                 num_classes: int = 150,
                 head_layers: Optional[Sequence[int]] = None,
                 stop_threshold: float = 0.985,
                 threshold_schedule: Optional[dict] = None,
                 aux_loss: Optional[dict] = dict(
                     type='CrossEntropyLoss', loss_weight=0.4,
                     avg_non_ignore=True),
                 ignore_index: int = 255,
                 budget: Optional[float] = None,
                 budget_sampling: Optional[dict] = None,
                 reconstruction: dict = dict(type='TokenReconstruction'),
                 norm_cfg: dict = dict(type='LN'),
                 patch_bias: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        check_keywords(self, kwargs)
        owner = type(self).__name__
        stock_check(not kwargs.pop('output_cls_token', False),
                    f"{owner} does not support output_cls_token=True "
                    "(out_type='cls_token' returns the class token)")
        stock_check(not kwargs.pop('out_origin', False),
                    f'{owner} does not support out_origin=True (the maps '
                    'before the layers)')
        # a stock mmseg ViT config names the widths itself: they override arch
        overrides = {k: kwargs.pop(k) for k in VIT_ARCH_KEYS if k in kwargs}
        setting = resolve_vit_arch(arch)
        if overrides:
            setting = resolve_vit_arch(dict(setting, **overrides))
        num_layers = setting['num_layers']
        if isinstance(out_indices, int):
            out_indices = [num_layers - 1 if out_indices == -1 else out_indices]
        elif not isinstance(out_indices, (list, tuple)):
            raise TypeError('out_indices must be type of int, list or tuple, '
                            f'got {out_indices!r}')  # mmseg's words
        stock_check(out_indices and all(i in range(num_layers)
                                        for i in out_indices),
                    f'out_indices {out_indices} out of range for a '
                    f'{num_layers}-layer ViT (0 ... {num_layers - 1})')
        head_layers = sorted(default_head_layers(num_layers)
                             if head_layers is None else head_layers)
        if (len(set(head_layers)) != len(head_layers) or
                any(i not in range(num_layers - 1) for i in head_layers)):
            raise ValueError(f'head_layers {head_layers} must be distinct '
                             f'layers in 0 ... {num_layers - 2}')
        if out_type not in ('featmap', 'cls_token'):
            raise ValueError(f"out_type must be 'featmap' or 'cls_token', got "
                             f'{out_type!r}')
        if out_type == 'cls_token' and not kwargs.get('with_cls_token', True):
            raise ValueError("out_type='cls_token' needs with_cls_token=True")
        if not 0 < stop_threshold <= 1:
            raise ValueError(f'stop_threshold must be in (0, 1], got '
                             f'{stop_threshold}')
        init_cfg = pretrained_to_init_cfg(owner, pretrained, init_cfg)
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            embed_dims=setting['embed_dims'],
            num_layers=num_layers,
            num_heads=setting['num_heads'],
            mlp_ratio=setting['mlp_ratio'],
            out_indices=out_indices,
            norm_cfg=norm_cfg,
            patch_bias=patch_bias,
            init_cfg=init_cfg,
            **kwargs)
        dims = setting['embed_dims']
        self.in_channels = in_channels
        self.out_type = out_type
        self.head_layers = head_layers
        self.stop_threshold = stop_threshold
        self.threshold_schedule = check_schedule(
            threshold_schedule, 'threshold_schedule', default_start=1.0)
        self.ignore_index = ignore_index
        self.stop_heads = nn.ModuleList(
            StopHead(dims, num_classes, norm_cfg.get('eps', 1e-5))
            for _ in head_layers)
        self.aux_loss = None if aux_loss is None or not head_layers \
            else build_mmseg_module(aux_loss)
        cls_tokens = 1 if self.with_cls_token else 0
        self.reconstruct = build_mmseg_module(
            dict(reconstruction, cls_tokens=cls_tokens))
        self.cost = ViTCost(dims, setting['mlp_ratio'] * dims, num_layers,
                            patch_size, in_channels, num_classes, cls_tokens)
        self.pretrained = pretrained
        self.out_channels = [dims] * len(out_indices)
        # how the patch tokens are made (MixedScaleViT composes its own)
        self.tokenizer = PatchTokenizer()
        self.accept_foreign_layouts()
        self._init_average_budget()
        self.budget = check_budget(budget)
        self.budget_sampler = build_budget_sampler(budget_sampling)
        self._minimums: Dict[Tuple[int, int], float] = {}  # per patch grid
        # mmseg's frozen_exclude freezes every parameter it does not name:
        # the stop heads' too (name 'stop_heads' to train them)
        self._freeze()

    def train(self, mode: bool = True) -> 'TokenPassViT':
        """mmseg's ``train`` (``norm_eval``), returning the module as torch's
        does (mmseg's returns ``None``, which breaks ``model.eval()`` chains)."""
        super().train(mode)
        return self

    # ------------------------------------------------------------------ budget
    def set_budget(self, budget: Optional[float]) -> None:
        """Fix the compute budget at run time (no retraining).

        ``1.0``: every token through every layer (the plain ViT; the heads do
        not run). ``r`` in (0, 1): each head stops its most confident tokens,
        keeping ``floor(q^j * N)`` after the j-th head with the largest ``q``
        that spends at most ``r`` of the plain ViT's FLOPs. ``None``: stop by
        the confidence threshold.
        """
        super().set_budget(budget)

    @property
    def control_range(self) -> Tuple[float, float]:
        """The average-budget control's range: the tokenizer's if it owns
        one, else the test-time stop threshold's (a higher one stops fewer
        tokens; 0 stops all a head sees, above 1 none)."""
        return self.tokenizer.control_range or (0.0, 1.0 + 1e-6)

    def threshold(self) -> float:
        """The stop threshold now: scheduled in training, final otherwise
        (or the average-budget control, when one is set and the tokenizer
        does not own it)."""
        if not self.training and self.tokenizer.control_range is None and \
                self.average_control is not None:
            return self.average_control
        return scheduled(self.stop_threshold, self.threshold_schedule,
                         self.training)

    def minimum_budget(self, img_hw: Sequence[int]) -> float:
        """The smallest budget met at an input of ``img_hw`` (to 1e-6):
        what the layers before the first head (and the scale gate) cost
        whatever is stopped, as a fraction of the plain ViT. Kept per patch
        grid: budget sampling asks it in every training iteration, and the
        bisection takes milliseconds."""
        hw = self._grid(img_hw)
        if hw not in self._minimums:
            low, high = 0., 1.
            while high - low > 1e-6:
                mid = (low + high) / 2
                low, high = (low, mid) if self._meets(mid, hw) else (mid,
                                                                     high)
            self._minimums[hw] = high
        return self._minimums[hw]

    def _grid(self, img_hw: Sequence[int]) -> Tuple[int, int]:
        """The patch grid of an ``img_hw`` input (padded up, as mmseg's
        patch embedding pads, unless it has no padding)."""
        p = self.patch_size
        if self.patch_embed.adap_padding is None:
            return img_hw[0] // p, img_hw[1] // p
        return -(-img_hw[0] // p), -(-img_hw[1] // p)

    def _meets(self, budget: float, hw: Tuple[int, int]) -> bool:
        """Whether ``budget`` can be met on an ``hw`` patch grid: by the
        tokenizer, then the stop heads with what it left."""
        if budget >= 1.0:
            return True
        with self.budget_scope(budget):
            try:
                self._head_counts(*self.tokenizer.plan(self, hw), hw)
            except ValueError:
                return False
        return True

    # ----------------------------------------------------------------- forward
    def forward(self, inputs: Tensor) -> RoutedFeatures:
        with checked_images(inputs, type(self).__name__, self.in_channels):
            if self.training and self.budget_sampler is not None:
                drawn = self.budget_sampler.draw(
                    minimum=self.minimum_budget(inputs.shape[-2:]))
                with self.budget_scope(drawn):
                    return self._pass(inputs)
            return self._pass(inputs)

    def _pass(self, inputs: Tensor) -> RoutedFeatures:
        """The forward under ``self.budget``."""
        state = self.tokenizer.start(self, inputs)
        threshold, counts = self._plan(state)
        stopping = threshold is not None or counts is not None
        outs = []
        for i, layer in enumerate(self.layers):
            state.tokens = self._run_layer(layer, state.tokens, state.lengths)
            if stopping and i in self.head_layers:
                j = self.head_layers.index(i)
                self._stop_tokens(state, i, j, threshold,
                                  None if counts is None else counts[j])
            if i in self.out_indices:
                last = i == len(self.layers) - 1
                norm = self.norm1 if last and self.final_norm else None
                outs.append(self._output(state, norm))
        return RoutedFeatures(outs, self._info(state, threshold))

    def embed_patches(self, inputs: Tensor) -> PassState:
        """The embedded tokens of every patch (mmseg ViT's embedding)."""
        batch = inputs.shape[0]
        x, hw = self.patch_embed(inputs)
        x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        x = self._pos_embeding(x, hw, self.pos_embed)
        if not self.with_cls_token:
            x = x[:, 1:]
        if self.pre_norm:
            x = self.pre_ln(x)
        return PassState(x, hw, len(self.layers))

    def _output(self, state: PassState, norm: Optional[nn.Module]) -> Tensor:
        """One ``out_indices`` level: the dense map, or the class token."""
        if self.out_type == 'cls_token':
            cls = self.reconstruct.sequence(state.frozen, state.tokens,
                                            state.sel)[:, 0]
            return cls if norm is None else norm(cls)
        return self.reconstruct(state.frozen, state.tokens, state.sel,
                                state.hw, norm, state.source)

    def _plan(self, state: PassState
              ) -> Tuple[Optional[float], Optional[list]]:
        """``(threshold, None)``, ``(None, keep counts)`` or ``(None, None)``
        (no stopping: the plain ViT)."""
        if not self.head_layers:
            return None, None
        if self.budget is None:
            return self.threshold(), None
        if self.budget >= 1.0:
            return None, None
        # the tokens the first layer got (equal for all images here)
        return None, self._head_counts(state.entered[0],
                                       state.tokenizer_flops, state.hw)

    def _head_counts(self, tokens: int, tokenizer_flops: float,
                     hw: Tuple[int, int]) -> Optional[List[int]]:
        """The stop heads' keep counts under ``self.budget`` (below 1) when
        the first layer gets ``tokens`` patch tokens of an ``hw`` grid and
        the tokenizer spent ``tokenizer_flops`` (None: no stopping needed).
        ``ValueError`` when the heads cannot meet it."""
        patches = hw[0] * hw[1]
        if (tokens, tokenizer_flops) == (patches, 0.0):
            head_budget = self.budget  # the plain ViT's tokens
        else:
            head_budget = ((self.budget * self.cost.full(patches) -
                            tokenizer_flops) / self.cost.full(tokens))
        if head_budget >= 1.0 - 1e-9:
            return None
        if not self.head_layers:
            raise ValueError(f'budget {self.budget:g} needs stop heads')
        return budget_keep_counts(self.cost, tokens, self.head_layers,
                                  head_budget)

    def _run_layer(self, layer: nn.Module, tokens: Tensor,
                   lengths: List[int]) -> Tensor:
        if self.with_cp and self.training and tokens.requires_grad:
            return cp.checkpoint(run_packed_layer, layer, tokens, lengths,
                                 use_reentrant=False)
        return run_packed_layer(layer, tokens, lengths)

    def _stop_tokens(self, state: PassState, layer: int, j: int,
                     threshold: Optional[float],
                     count: Optional[int]) -> None:
        """Run head ``j`` on the tokens still computed (``state.keep``) and
        stop those it settles: they leave ``keep`` and their values stay in
        ``state.frozen``."""
        batch, length, _ = state.frozen.shape
        offset = length - state.stop_layer.shape[1]  # class tokens
        logits = self.stop_heads[j](state.tokens)
        if self.training and self.aux_loss is not None:
            state.head_maps.append(
                (layer, self._logit_map(logits, state),
                 state.dense(state.keep[:, offset:]).view(batch, *state.hw)))
        with torch.no_grad():
            confidence = logits.detach().float().softmax(-1).amax(-1)
            score = confidence.new_full((batch * length, ), float('inf'))
            score[self._flat_index(state)] = confidence
            score = score.view(batch, length)[:, offset:]
            if count is None:
                keep_patches = state.keep[:, offset:] & ~(score > threshold)
            else:
                keep_patches = lowest_mask(score, count)
            kept_now = keep_patches.sum(1)
            # what the data decided is read back once; a budget's is known
            counts = ([count] * batch if count is not None
                      else kept_now.tolist())
            keep = torch.cat([state.keep[:, :offset], keep_patches], dim=1)
            state.stop_layer.masked_fill_(
                state.keep[:, offset:] & ~keep_patches, layer)
            state.kept.append(kept_now)
            state.kept_counts.append(counts)
        lengths = [n + offset for n in counts]
        if lengths == state.lengths:  # none stopped (keep only shrinks)
            return
        dense = self.reconstruct.sequence(state.frozen, state.tokens,
                                          state.sel)
        sel = select_tokens(keep, lengths)
        state.frozen = dense
        state.tokens = gather_tokens(dense, sel)
        state.sel, state.keep, state.lengths = sel, keep, lengths

    @staticmethod
    def _flat_index(state: PassState) -> Tensor:
        if state.sel is not None:
            return state.sel.flat_index
        return torch.arange(state.tokens.shape[0], device=state.tokens.device)

    def _logit_map(self, logits: Tensor, state: PassState) -> Tensor:
        """Head logits of the going tokens as a ``(B, K, H, W)`` map (zeros
        where tokens had stopped before this head)."""
        batch, length, _ = state.frozen.shape
        dense = logits.new_zeros(batch, length, logits.shape[-1])
        if state.sel is not None:
            dense = scatter_tokens(dense, logits, state.sel)
        else:
            dense = logits.view_as(dense)
        offset = length - state.stop_layer.shape[1]
        grid = state.dense(dense[:, offset:])
        return grid.transpose(1, 2).reshape(batch, -1, *state.hw)

    def _info(self, state: PassState,
              threshold: Optional[float]) -> TokenPassInfo:
        batch, patches = state.stop_layer.shape
        full = self.cost.full(patches)
        if state.kept:
            kept = torch.stack(state.kept, dim=1)
            flops = [self.cost.token_pass(n, self.head_layers, row)
                     for n, row in zip(state.entered,
                                       zip(*state.kept_counts))]
        else:
            kept = state.stop_layer.new_zeros((batch, 0))
            flops = [self.cost.full(n) for n in state.entered]
        info = TokenPassInfo(
            stop_layer=state.dense(state.stop_layer).view(batch, *state.hw),
            kept=kept,
            flops=torch.tensor(flops, dtype=torch.float64),
            full_flops=full,
            num_layers=len(self.layers),
            threshold=threshold,
            head_maps=state.head_maps,
            head_layers=tuple(self.head_layers))
        return self.tokenizer.stats(info, state)

    # ------------------------------------------------------------------ losses
    def aux_losses(self, stats: Optional[TokenPassInfo],
                   data_samples=None) -> Dict[str, Tensor]:
        """The stop heads' ``loss_aux_l{layer}`` of the training forward
        that returned ``stats``, against the labels of ``data_samples``, and
        (logged only) ``keep_fraction``, ``flops_ratio`` and
        ``stop_threshold``."""
        if not self.training or stats is None:
            return {}
        losses: Dict[str, Tensor] = {}
        if stats.head_maps:
            labels = self._labels(data_samples)
            for layer, logits, seen in stats.head_maps:
                losses[f'loss_aux_l{layer}'] = self._head_loss(
                    logits, seen, labels)
        if self.head_layers:
            losses['keep_fraction'] = stats.keep_fraction.mean().float()
        losses['flops_ratio'] = stats.flops_fraction.mean().float()
        if stats.threshold is not None:
            losses['stop_threshold'] = torch.tensor(float(stats.threshold))
        losses.update(self.tokenizer.losses(self, stats))
        return losses

    def _labels(self, data_samples) -> Tensor:
        if not data_samples or not all(
                hasattr(s, 'gt_sem_seg') for s in data_samples):
            raise ValueError('TokenPassViT trains its stop heads on semantic '
                             'labels: every data sample needs gt_sem_seg')
        return torch.stack([s.gt_sem_seg.data[0] for s in data_samples]).long()

    def _head_loss(self, logits: Tensor, seen: Tensor,
                   labels: Tensor) -> Tensor:
        size = labels.shape[-2:]
        logits = F.interpolate(logits.float(), size=size, mode='bilinear',
                               align_corners=False)  # float32 under AMP
        seen = F.interpolate(seen[:, None].float(), size=size,
                             mode='nearest')[:, 0].bool()
        labels = labels.to(logits.device).masked_fill(~seen,
                                                      self.ignore_index)
        avg_factor = None
        if getattr(self.aux_loss, 'avg_non_ignore', False):
            # the mean over the labelled pixels of the global batch: in a
            # data-parallel run each process divides by the processes' mean
            # count, so DDP's gradient average is that of one process
            valid = (labels != self.ignore_index).sum().float()
            avg_factor = float(mean_over_ranks(dict(n=valid))['n'])
        return self.aux_loss(logits, labels, avg_factor=avg_factor,
                             ignore_index=self.ignore_index)

    # ----------------------------------------------------------------- weights
    def init_weights(self) -> None:
        """mmseg ViT's initialisation, or weights from ``init_cfg``'s
        checkpoint (mmseg or timm / DeiT layout; stop heads keep theirs)."""
        if not self._init_from_checkpoint():
            super().init_weights()  # it redraws every Linear
            self.tokenizer.reset_parameters(self)
            return
        state = read_init_checkpoint(self.init_cfg)
        MMLogger.get_current_instance().info(
            self.load_weights(state, str(self.init_cfg['checkpoint'])))

    def _init_from_checkpoint(self) -> bool:
        return (isinstance(self.init_cfg, dict)
                and self.init_cfg.get('type') == 'Pretrained')

    own_layout = 'mmseg'

    @staticmethod
    def is_optional_weight(key: str) -> bool:
        """The stop heads: a plain ViT checkpoint has none."""
        return key.startswith('stop_heads.')

    def weight_layout(self, state: StateDict) -> str:
        """``'mmseg'`` or ``'timm'`` (DeiT included)."""
        return detect_vit_layout(state)

    def to_own_layout(self, state: StateDict) -> StateDict:
        """mmseg keys; without ``final_norm`` no final norm; without a
        patch-embedding bias none (mmseg's converter keeps timm's, and its
        ViT, loading non-strictly, drops it: said with a warning here); the
        position embedding resized to this model's grid."""
        state = to_mmseg_vit_layout(state)
        if not self.final_norm:
            state = {k: v for k, v in state.items() if not k.startswith('ln1.')}
        bias = 'patch_embed.projection.bias'
        if bias in state and self.patch_embed.projection.bias is None:
            warnings.warn(f'{type(self).__name__} drops the checkpoint\'s '
                          f'{bias}: built with patch_bias=False (mmseg\'s '
                          'default), as mmseg\'s ViT drops it; set '
                          'patch_bias=True to keep it')
            state = {k: v for k, v in state.items() if k != bias}
        pos_embed = state.get('pos_embed')
        if (pos_embed is not None and pos_embed.dim() == 3
                and pos_embed.shape[-1] == self.pos_embed.shape[-1]
                and pos_embed.shape != self.pos_embed.shape):
            grid = (self.img_size[0] // self.patch_size,
                    self.img_size[1] // self.patch_size)
            state['pos_embed'] = resize_pos_embed(pos_embed, grid, 1,
                                                  self.interpolate_mode)
        return state
