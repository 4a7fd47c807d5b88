"""DiT: a PVTv2 whose tokens route themselves through scales and depths.

The routing space is the grid of PVTv2's blocks (``sum(depths)`` layers) over its
four scales (strides 4 ... 32). Before each block a gate looks at every token of
that scale and makes two decisions:

* scaling path: *stay* at this scale, or *go down* now. A token that goes down
  skips the rest of its scale's blocks; its value there is final, and it reaches
  the next scale through the patch-embedding block (every map stays dense, so a
  coarse token is made of its fine tokens, gone down early or late);
* transformation path: the block, or identity for this layer.

A token goes through a block when it has stayed so far and its transformation
gate is open. In training the decisions are hard Gumbel samples with
straight-through gradients, and the blocks run on every token with the gate
applied to their residual branches; at test time the decisions are
deterministic and only the selected tokens are computed (gathered, run,
scattered back). A token whose update has become smaller than
``stop_threshold`` (relative) stops for the rest of its scale (early stopping).

``set_budget(1.0)`` puts every token on the PVTv2 route, and the model computes
PVTv2 exactly. ``set_budget(r)`` keeps, at every block, the tokens the gates
score highest, as many as bring the FLOPs to fraction ``r`` of the PVTv2 route.
``set_budget(None)`` returns to the learned decisions.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...analysis.pvt_cost import StageCost, pvt_stage_costs
from ...registry import register_model
from ..layers import (OverlapPatchEmbed, RoutedPVTBlock, RoutingGate,
                      straight_through_bernoulli)
from ..layers.pvt_blocks import tokens_to_map
from ..losses import BudgetLoss
from ..data_parallel import global_batch
from ..routing import RoutedFeatures, RoutingInfo
from ..schedule import check_schedule, scheduled
from ..tokens import select_tokens
from .checks import check_budget, check_images
from .dit_archs import resolve_arch
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


class _StageRun:
    """The routing state of one image batch inside one stage."""

    def __init__(self, tokens: Tensor):
        batch, num = tokens.shape[:2]
        self.alive: Optional[Tensor] = None      # ST product of stay gates
        self.p_alive: Optional[Tensor] = None    # its probability
        self.stopped = tokens.new_zeros(batch, num, dtype=torch.bool)
        # float32 whatever the tokens' dtype (fp16 / bf16 autocast): a sum of
        # FLOPs overflows fp16 and loses its small terms in bf16
        self.count = tokens.new_zeros(batch, num, dtype=torch.float32)
        self.expected = tokens.new_zeros(batch, dtype=torch.float32)
        self.masks: List[Tensor] = []


@register_model
class DiT(BaseModule):
    """DiT backbone (Ma et al., 2023) on PVTv2 ``b0`` ... ``b5``.

    Args:
        arch: ``'b0'`` ... ``'b5'`` or a dict (see ``resolve_arch``).
        in_channels: image channels.
        out_indices: stages whose maps are returned (strides 4, 8, 16, 32).
        qkv_bias, drop_rate, attn_drop_rate, drop_path_rate: as in PVTv2.
        budget: the initial ``set_budget`` value (None: learned decisions).
        budget_loss: ``dict(target=, weight=, warmup_iters=)`` of
            :class:`BudgetLoss`, or None for no budget loss.
        gate_init: initial logit of both gates (3.0: 95% on the PVTv2 route).
        gumbel_tau: temperature of the training-time Gumbel samples (the
            final one, with ``gumbel_tau_schedule``).
        gumbel_tau_schedule: ``dict(start=, begin=0, end=N)``: in training
            the temperature goes linearly from ``start`` at iteration
            ``begin`` to ``gumbel_tau`` at ``end`` (read from the runner's
            iteration, so ``--resume`` continues it). ``None``: constant.
        gumbel_noise: draw the logistic noise of the Gumbel samples; False
            gives the deterministic straight-through estimator (the hard
            decision of the logits), for runs that must not depend on how a
            batch is split across processes.
        stop_threshold: early stopping: a computed token whose relative update
            ``|dx| / |x|`` falls below this stops for the rest of its scale
            (0 turns it off). Applies to learned decisions.
        sparse_inference: compute only the kept tokens at test time (set False
            to run the masked dense form, e.g. to compare the two).
        frozen_stages: stages up to this index are frozen (-1: none).
        norm_eval: keep BatchNorm layers (none in DiT itself) in eval mode.
        with_cp: gradient checkpointing of the blocks in training.
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
                 budget: Optional[float] = None,
                 budget_loss: Optional[dict] = None,
                 gate_init: float = 3.0,
                 gumbel_tau: float = 1.0,
                 gumbel_tau_schedule: Optional[dict] = None,
                 gumbel_noise: bool = True,
                 stop_threshold: float = 0.,
                 sparse_inference: bool = True,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        init_cfg = pretrained_to_init_cfg('DiT', pretrained, init_cfg)
        super().__init__(init_cfg=init_cfg)
        self.arch = resolve_arch(arch)
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f'out_indices must be a non-empty subset of '
                             f'0..3, got {out_indices}')
        if init_cfg is not None and init_cfg.get('type') != 'Pretrained':
            raise ValueError("DiT's init_cfg must be dict(type='Pretrained', "
                             f'checkpoint=...), got {init_cfg}')
        self.in_channels = in_channels
        self.out_indices = tuple(out_indices)
        if gumbel_tau <= 0:
            raise ValueError(f'gumbel_tau must be > 0, got {gumbel_tau}')
        self.gumbel_tau = gumbel_tau
        self.gumbel_tau_schedule = check_schedule(gumbel_tau_schedule,
                                                  'gumbel_tau_schedule')
        self.gumbel_noise = gumbel_noise
        self.stop_threshold = stop_threshold
        self.sparse_inference = sparse_inference
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.budget_loss = None
        if budget_loss is not None:
            budget_loss = dict(budget_loss)
            loss_type = budget_loss.pop('type', 'BudgetLoss')
            if loss_type != 'BudgetLoss':
                raise ValueError(f'budget_loss type must be BudgetLoss, got '
                                 f'{loss_type}')
            self.budget_loss = BudgetLoss(**budget_loss)

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
        self.budget: Optional[float] = None
        self.set_budget(budget)
        self.routing: Optional[RoutingInfo] = None
        self._scratch: dict = {}  # reused memory of sparse inference
        self._freeze_stages()

    # ------------------------------------------------------------------ budget
    def set_budget(self, budget: Optional[float]) -> None:
        """Fix the compute budget at run time (no retraining).

        ``1.0``: the PVTv2 route, exactly. ``r`` in (0, 1): at every block keep
        the highest-scoring tokens, as many as make the FLOPs fraction ``r`` of
        the PVTv2 route (at least the part no token can skip: patch embeddings,
        keys and values). ``None``: the learned decisions.
        """
        self.budget = check_budget(budget)

    def gate_tau(self) -> float:
        """The Gumbel temperature now: scheduled in training, final
        otherwise."""
        return scheduled(self.gumbel_tau, self.gumbel_tau_schedule,
                         self.training)

    def aux_losses(self, data_samples=None) -> Dict[str, Tensor]:
        """``loss_budget`` of the last training forward, and for the log the
        realized ``flops_ratio`` and the schedules' values now
        (``budget_weight``: the loss weight after the warm-up ramp;
        ``gumbel_tau``); empty when there is nothing to add. In a
        data-parallel run the budget is met by the global batch. It needs no
        labels: ``data_samples`` is not read."""
        info = self.routing
        if (not self.training or self.budget_loss is None or info is None
                or info.expected_fraction is None):
            return {}
        return dict(
            loss_budget=self.budget_loss(
                global_batch(info.expected_fraction)),
            flops_ratio=info.flops_fraction.detach().mean().float(),
            budget_weight=torch.tensor(self.budget_loss.current_weight()),
            gumbel_tau=torch.tensor(self.gate_tau()))

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        check_images(x, 'DiT', self.in_channels,
                     math.prod(self.arch['strides']))
        batch = x.shape[0]
        costs = pvt_stage_costs(self.arch, x.shape[-2:], self.in_channels)
        route = sum(c.route for c in costs)
        mode = self._mode()
        keep_ratio = self._keep_ratio(costs, route) if mode == 'fixed' else 1.0
        learning = mode == 'learned' and self.training
        flops = x.new_zeros(batch, dtype=torch.float64)
        expected = x.new_zeros(batch, dtype=torch.float32) if learning \
            else None
        outs, masks, density = [], [], []
        for i, (stage, cost) in enumerate(zip(self.stages, costs)):
            tokens, hw = stage.patch_embed(x)
            fixed = cost.fixed(gated=mode != 'route')
            flops += fixed
            if expected is not None:
                expected = expected + fixed / route
            tokens, run = self._run_stage(stage, tokens, hw, cost, mode,
                                          keep_ratio)
            flops += run.count.sum(1).double() * cost.block_token
            if expected is not None:
                expected = expected + run.expected / route
            x = tokens_to_map(stage.norm(tokens), hw)
            masks.append([m.view(batch, *hw) for m in run.masks])
            density.append((run.count / cost.depth).view(batch, *hw))
            if i in self.out_indices:
                # NCHW-contiguous: mmcv's compiled ops (RoIAlign) read the raw
                # memory as NCHW and silently misread a channels-last map
                outs.append(x.contiguous())
        self.routing = RoutingInfo(masks, density, flops, route, expected)
        return RoutedFeatures(outs, self.routing)

    def _mode(self) -> str:
        if self.budget is None:
            return 'learned'
        return 'route' if self.budget >= 1.0 else 'fixed'

    def _keep_ratio(self, costs: List[StageCost], route: float) -> float:
        """Fraction of tokens each block keeps so the total meets the budget."""
        fixed = sum(c.fixed(gated=True) for c in costs)
        savable = sum(c.savable for c in costs)
        return min(1.0, max(0.0, (self.budget * route - fixed) / savable))

    def _run_stage(self, stage: DiTStage, tokens: Tensor, hw, cost: StageCost,
                   mode: str, keep_ratio: float):
        run = _StageRun(tokens)
        for block, gate in zip(stage.blocks, stage.gates):
            if mode == 'route':
                tokens = self._route_block(block, tokens, hw)
                keep = torch.ones_like(run.stopped)
            else:
                normed = block.norm1(tokens)
                weight, keep = self._decide(gate(normed), run, cost, mode,
                                            keep_ratio)
                tokens = self._routed_block(block, tokens, hw, normed, weight,
                                            keep, run)
            run.masks.append(keep.detach())
            run.count = run.count + keep.detach().to(run.count.dtype)
        return tokens, run

    def _route_block(self, block: RoutedPVTBlock, tokens: Tensor, hw) -> Tensor:
        if self.with_cp and self.training and tokens.requires_grad:
            return torch.utils.checkpoint.checkpoint(
                block, tokens, hw, use_reentrant=False)
        return block(tokens, hw)

    def _decide(self, logits: Tensor, run: _StageRun, cost: StageCost,
                mode: str, keep_ratio: float):
        """The per-token weight of the block (float with gradient in training,
        else None) and the boolean keep mask ``(B, N)``."""
        p_stay, p_depth = torch.sigmoid(logits.float()).unbind(-1)  # AMP-safe
        run.p_alive = p_stay if run.p_alive is None else run.p_alive * p_stay
        score = run.p_alive * p_depth
        if mode == 'fixed':
            num = round(keep_ratio * score.shape[1])
            keep = torch.zeros_like(run.stopped)
            if num:
                keep.scatter_(1, score.topk(num, dim=1).indices, True)
            weight = None
            if self.training:
                weight = keep.to(score.dtype) + (score - score.detach())
            return weight, keep
        z_stay, z_depth = logits.unbind(-1)
        if self.training:
            tau = self.gate_tau()
            stay = straight_through_bernoulli(z_stay, tau, self.gumbel_noise)
            run.alive = stay if run.alive is None else run.alive * stay
            weight = run.alive * straight_through_bernoulli(
                z_depth, tau, self.gumbel_noise)
            weight = weight * (~run.stopped).to(weight.dtype)
            run.expected = run.expected + (
                score * (~run.stopped).to(score.dtype)).sum(1) * cost.block_token
            return weight, weight.detach() > 0.5
        alive = z_stay > 0
        run.alive = alive if run.alive is None else run.alive & alive
        return None, run.alive & (z_depth > 0) & ~run.stopped

    def _routed_block(self, block: RoutedPVTBlock, tokens: Tensor, hw,
                      normed: Tensor, weight: Optional[Tensor], keep: Tensor,
                      run: _StageRun) -> Tensor:
        early_stop = self.stop_threshold > 0 and self.budget is None
        if weight is None and self.sparse_inference:
            # the sparse form may update ``tokens`` in place (no_grad)
            before = tokens.clone() if early_stop else tokens
            out = block.forward_sparse(tokens, hw, normed, select_tokens(keep),
                                       self._scratch)
        else:
            before = tokens
            if weight is None:
                weight = keep.to(tokens.dtype)
            out = block.forward_masked(tokens, hw, normed, weight.unsqueeze(-1),
                                       self.with_cp and self.training)
        if early_stop:
            with torch.no_grad():
                change = (out - before).float().norm(dim=-1) / (
                    before.float().norm(dim=-1) + 1e-6)
                run.stopped = run.stopped | (keep & (change < self.stop_threshold))
        return out

    # ---------------------------------------------------------- train / init
    def _freeze_stages(self) -> None:
        for i in range(min(self.frozen_stages + 1, len(self.stages))):
            self.stages[i].eval()
            for param in self.stages[i].parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

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
