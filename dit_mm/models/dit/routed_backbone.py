"""The routing of DiT, whatever the network it routes through.

A routing space is a stack of scales, each a run of blocks; before each block
a gate looks at every token of that scale and makes two decisions:

* scaling path: *stay* at this scale, or *go down* now. A token that goes down
  skips the rest of its scale's blocks; its value there is final, and it reaches
  the next scale through the down-sampling step (patch embedding or merging), so
  every map stays dense;
* transformation path: the block, or identity for this layer.

A token goes through a block when it has stayed so far and its transformation
gate is open. In training the decisions are hard Gumbel samples with
straight-through gradients, and the blocks run on every token with the gate
applied to their residual branches; at test time the decisions are
deterministic and only the selected tokens are computed. A token whose update
has become smaller than ``stop_threshold`` (relative) stops for the rest of its
scale (early stopping).

``set_budget(1.0)`` runs the static network exactly. ``set_budget(r)`` moves
the learned decisions until the FLOPs are fraction ``r`` of the static
network: each block keeps the share of tokens its learned decisions keep on
average (``learned_keep``, followed during training), all shares moved by one
offset (``core/budget_allocation.py``), and picks the tokens whose decisions are
the most certain (the smaller of the depth gate's logit and every stay logit
so far); a token that went down stays down. At the learned decisions' own
share every block keeps exactly what they keep. ``set_budget(None)`` returns
to the learned decisions.

:class:`RoutedBackbone` holds all of that: the gates' decisions, the budget,
the budget loss, the schedules and the statistics. A family (PVTv2 in
``pvt.py``, Swin-v2 in ``swinv2.py``) gives its stages, how a stage is
entered and left, its cost model, and blocks with ``forward(x, hw)`` (the
static block), ``gate_input(x)`` (what the gate reads), ``forward_masked`` and
``forward_sparse``.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.model.weight_init import initialize
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...core.budget_allocation import allocate_counts
from ...core.deciders import keep_top, straight_through_bernoulli
from ...core.stage_cost import StageCost
from ..budget_sampling import build_budget_sampler
from ..common.checks import checked_images
from ..common.dynamic import DynamicBackbone
from ..common.gates import RoutingGate
from ..common.weights import CheckpointRule, read_init_checkpoint
from ..data_parallel import global_batch
from ..routing import RoutedFeatures, RoutingInfo
from ..schedule import check_schedule, scheduled
from .budget_loss import BudgetLoss

# what one stage hands the next: the NCHW map (PVTv2), or the tokens and their
# grid (Swin-v2)
Carry = Union[Tensor, Tuple[Tensor, Tuple[int, int]]]


def _known_count(counts: Optional[List[int]], j: int) -> Optional[int]:
    """What block ``j`` of a scale keeps per image under a fixed budget, when
    that is known without reading the mask: the allocation's count, unless
    it is more than the last block that kept any kept (then tokens that went
    down there may leave fewer to keep than it asks, and the count is read
    back from the device; a dropped block sends no token down)."""
    if not counts:
        return None
    before = [c for c in counts[:j] if c]
    if before and counts[j] > before[-1]:
        return None
    return counts[j]


class _StageRun:
    """The routing state of one image batch inside one stage."""

    def __init__(self, tokens: Tensor):
        batch, num = tokens.shape[:2]
        # still at this scale (not gone down): the straight-through product
        # of the stay gates so far, and its probability
        self.staying: Optional[Tensor] = None
        self.p_staying: Optional[Tensor] = None
        self.stopped = tokens.new_zeros(batch, num, dtype=torch.bool)
        # fixed budgets: the smallest stay logit so far, and who went down
        self.stay_margin: Optional[Tensor] = None
        self.down = tokens.new_zeros(batch, num, dtype=torch.bool)
        # training: the test-time decisions, and per block what they keep
        self.learned_staying: Optional[Tensor] = None
        self.learned_keep: List[Tensor] = []
        # float32 whatever the tokens' dtype (fp16 / bf16 autocast): a sum of
        # FLOPs overflows fp16 and loses its small terms in bf16
        self.count = tokens.new_zeros(batch, num, dtype=torch.float32)
        # per image, the blocks that computed any token (and paid their
        # whole-map part)
        self.blocks_run = tokens.new_zeros(batch, dtype=torch.float32)
        self.gates_run = 0
        self.expected = tokens.new_zeros(batch, dtype=torch.float32)
        self.masks: List[Tensor] = []


def build_budget_loss(budget_loss: Optional[dict]) -> Optional[BudgetLoss]:
    """:class:`BudgetLoss` from its config (``type`` may be left out)."""
    if budget_loss is None:
        return None
    budget_loss = dict(budget_loss)
    loss_type = budget_loss.pop('type', 'BudgetLoss')
    if loss_type != 'BudgetLoss':
        raise ValueError(f'budget_loss type must be BudgetLoss, got '
                         f'{loss_type}')
    return BudgetLoss(**budget_loss)


def _unskippable(costs: List[StageCost]) -> float:
    """FLOPs a fixed budget cannot skip: the down-sampling (a block it drops
    skips its gate and its whole-map part too)."""
    return sum(c.embed for c in costs)


class RoutedBackbone(BaseModule, CheckpointRule, DynamicBackbone):
    """DiT's routing over ``self.stages`` (each with ``blocks`` and ``gates``).

    Subclasses build ``self.stages`` and set ``in_channels`` and
    ``out_indices``, then implement
    :meth:`stage_costs`, :meth:`_enter_stage` and :meth:`_leave_stage`.

    Args (the routing keywords every family takes):
        budget: the initial ``set_budget`` value (None: learned decisions).
        budget_loss: ``dict(target=, weight=, warmup_iters=)`` of
            :class:`BudgetLoss`, or None for no budget loss.
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
        budget_sampling: ``dict(learned=, full=, low=, sandwich=)`` of
            :class:`~dit_mm.models.budget_sampling.BudgetSampler`: each
            training iteration runs the learned decisions, the static route
            or a fixed budget from ``[low, 1)`` (training for every budget);
            None: the learned decisions in every iteration.
        stop_threshold: early stopping: a computed token whose relative update
            ``|dx| / |x|`` falls below this stops for the rest of its scale
            (0 turns it off). Applies to learned decisions.
        sparse_inference: compute only the kept tokens at test time (set False
            to run the masked dense form, e.g. to compare the two).
        frozen_stages: stages up to this index are frozen (-1: none).
        norm_eval: keep BatchNorm layers (none in DiT itself) in eval mode.
        with_cp: gradient checkpointing of the blocks in training.
        init_cfg: an mmengine init config, a dict or a list of them (see
            :meth:`init_weights`); ``dict(type='Pretrained', checkpoint=PATH)``
            is loaded by the family, its weight layouts converted.
    """

    def __init__(self,
                 budget: Optional[float] = None,
                 budget_loss: Optional[dict] = None,
                 gumbel_tau: float = 1.0,
                 gumbel_tau_schedule: Optional[dict] = None,
                 gumbel_noise: bool = True,
                 budget_sampling: Optional[dict] = None,
                 stop_threshold: float = 0.,
                 sparse_inference: bool = True,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Union[dict, List[dict], None] = None):
        super().__init__(init_cfg=init_cfg)
        self._init_entries()  # refuses a malformed one now
        self.accept_foreign_layouts()
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
        self.budget_loss = build_budget_loss(budget_loss)
        self.budget_sampler = build_budget_sampler(budget_sampling)
        self.budget: Optional[float] = None
        self.set_budget(budget)
        self._init_average_budget()
        self._scratch: dict = {}  # reused memory of sparse inference

    # ------------------------------------------------------------ the family
    def stage_costs(self, img_hw: Sequence[int]) -> List[StageCost]:
        """Per-stage costs at an input of ``img_hw`` (``StageCost``)."""
        raise NotImplementedError

    def _enter_stage(self, index: int, carry: Carry) -> Tuple[Tensor, tuple]:
        """The ``(B, N, C)`` tokens and grid stage ``index`` starts from:
        ``carry`` is the image batch for the first stage, then what
        :meth:`_leave_stage` handed on."""
        raise NotImplementedError

    def _leave_stage(self, index: int, tokens: Tensor, hw: tuple,
                     output: bool) -> Tuple[Carry, Optional[Tensor]]:
        """What the next stage is entered from, and (when ``output``) the
        stage's ``(B, C, H, W)`` output map."""
        raise NotImplementedError

    def _init_from_scratch(self) -> None:
        """The static network's own initialisation (the gates excluded)."""
        raise NotImplementedError

    @staticmethod
    def is_optional_weight(key: str) -> bool:
        """The routing gates and the learned allocation: a checkpoint of the
        stock network has none."""
        return '.gates.' in key or key.rsplit('.', 1)[-1] in (
            'learned_keep', 'learned_keep_steps')

    # what a family's forward computes whichever tokens are kept, as a fixed
    # budget's refusal names it (``pvt.py`` and ``swinv2.py`` say theirs)
    unskippable_parts = 'the down-sampling'

    # the average-budget control: an offset on both gate logits (a token
    # that went down still stays down); +-30 saturates the sigmoid
    control_range = (-30.0, 30.0)

    # ------------------------------------------------------------------- init
    def _register_learned_keep(self) -> None:
        """Buffers of the learned allocation: per block, the fraction of
        tokens the test-time decisions keep, averaged over the training
        forwards on the learned route (``learned_keep_steps`` of them; 0:
        none yet, a fixed budget then keeps the same share at every block).
        The family calls it once its stages are built."""
        blocks = sum(len(stage.blocks) for stage in self.stages)
        self.register_buffer('learned_keep', torch.zeros(blocks))
        self.register_buffer('learned_keep_steps',
                             torch.zeros((), dtype=torch.long))
        self._allocations: dict = {}

    def _learn_keep(self, fractions: List[Tensor]) -> None:
        """Fold one forward's per-block keep fractions (``(B,)`` each) into
        ``learned_keep``: their mean over the global batch (every process of
        a data-parallel run holds the same), averaged over the first 100
        forwards, then with momentum 0.99 (no host synchronisation)."""
        with torch.no_grad():
            self.learned_keep_steps += 1
            rate = (1.0 / self.learned_keep_steps.float()).clamp(min=0.01)
            now = global_batch(torch.stack(fractions, 1)).mean(0)
            self.learned_keep.add_(rate * (now.to(self.learned_keep) -
                                           self.learned_keep))

    def _init_entries(self) -> List[dict]:
        """``init_cfg`` as a list of init configs (a dict, a list of dicts,
        or None: empty). An entry with a ``checkpoint`` and no ``type`` is
        ``Pretrained``, as mmdet's PVT reads it (its stock configs write
        ``init_cfg=dict(checkpoint=...)``)."""
        cfg = self.init_cfg
        entries = list(cfg) if isinstance(cfg, (list, tuple)) else \
            [] if cfg is None else [cfg]
        entries = [dict(e, type='Pretrained') if isinstance(e, dict) and
                   'type' not in e and 'checkpoint' in e else e
                   for e in entries]
        if not all(isinstance(e, dict) and 'type' in e for e in entries):
            raise TypeError(f"{type(self).__name__}'s init_cfg is a dict with "
                            'a type, or a list of them (as mmengine takes '
                            f'it), got {cfg}')
        return entries

    def init_weights(self) -> None:
        """The static network's initialisation, then ``init_cfg``'s entries
        in order, as mmengine applies a list: ``Pretrained`` through the
        family's checked loader, the others through mmengine's
        ``initialize``. The gates start on the static route (open) unless a
        checkpoint brings them. A checkpoint that cannot be read or does not
        fit raises with every weight as it was before the call."""
        entries = self._init_entries()
        pretrained = [(read_init_checkpoint(e), str(e['checkpoint']))
                      for e in entries if e['type'] == 'Pretrained']
        before = {k: v.clone() for k, v in self.state_dict().items()}
        try:
            self._init_from_scratch()
            others = [e for e in entries if e['type'] != 'Pretrained']
            if others:
                initialize(self, others)
            for module in self.modules():  # after any Linear init
                if isinstance(module, RoutingGate):
                    module.reset_parameters()
            self.learned_keep.zero_()
            self.learned_keep_steps.zero_()
            for state, source in pretrained:
                MMLogger.get_current_instance().info(
                    self.load_weights(state, source))
        except BaseException:
            self.load_state_dict(before)
            raise

    def _frozen_modules(self) -> List[nn.Module]:
        """The modules ``frozen_stages`` freezes."""
        return list(self.stages[:max(self.frozen_stages + 1, 0)])

    # ------------------------------------------------------------------ budget
    def set_budget(self, budget: Optional[float]) -> None:
        """Fix the compute budget at run time (no retraining).

        ``1.0``: the static network, exactly. ``r`` in (0, 1): the learned
        decisions moved until the FLOPs are fraction ``r`` of the static
        network (see the module's docstring); a budget below the part no
        token can skip (down-sampling, what a block computes for the whole
        map, the gates) is refused with that minimum. ``None``: the learned
        decisions.
        """
        super().set_budget(budget)

    def gate_tau(self) -> float:
        """The Gumbel temperature now: scheduled in training, final
        otherwise."""
        return scheduled(self.gumbel_tau, self.gumbel_tau_schedule,
                         self.training)

    def aux_losses(self, stats: Optional[RoutingInfo],
                   data_samples=None) -> Dict[str, Tensor]:
        """``loss_budget`` of the training forward that returned ``stats``
        (on the learned gates), and for the log the realized ``flops_ratio``
        and the schedules' values now (``budget_weight``: the loss weight
        after the warm-up ramp; ``gumbel_tau``); empty when there is nothing
        to add. In a data-parallel run the budget is met by the global
        batch. It needs no labels: ``data_samples`` is not read."""
        if (not self.training or self.budget_loss is None or stats is None
                or stats.expected_fraction is None):
            return {}
        return dict(
            loss_budget=self.budget_loss(
                global_batch(stats.expected_fraction)),
            flops_ratio=stats.flops_fraction.detach().mean().float(),
            budget_weight=torch.tensor(self.budget_loss.current_weight()),
            gumbel_tau=torch.tensor(self.gate_tau()))

    # ----------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        with checked_images(x, type(self).__name__, self.in_channels):
            return self._routed_forward(x)

    def _routed_forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        batch = x.shape[0]
        costs = self.stage_costs(x.shape[-2:])
        route = sum(c.route for c in costs)
        budget = self._forward_budget(costs, route)
        mode = self._mode(budget)
        counts = self._keep_counts(costs, route, budget, x.shape[-2:]) \
            if mode == 'fixed' else [None] * len(costs)
        learning = mode == 'learned' and self.training
        flops = x.new_zeros(batch, dtype=torch.float64)
        expected = x.new_zeros(batch, dtype=torch.float32) if learning \
            else None
        outs, masks, density, learned_keep = [], [], [], []
        carry = x
        for i, (stage, cost) in enumerate(zip(self.stages, costs)):
            tokens, hw = self._enter_stage(i, carry)
            if expected is not None:
                expected = expected + cost.fixed(gated=True) / route
            tokens, run = self._run_stage(stage, tokens, hw, cost, mode,
                                          counts[i])
            learned_keep += run.learned_keep
            # a block that computes no token of an image skips its whole-map
            # part (for that image alone: in a batch it runs for all)
            flops += cost.embed + run.gates_run * cost.block_gate + \
                run.blocks_run.double() * cost.block_fixed + \
                run.count.sum(1).double() * cost.block_token
            if expected is not None:
                expected = expected + run.expected / route
            masks.append([m.view(batch, *hw) for m in run.masks])
            density.append((run.count / cost.depth).view(batch, *hw))
            carry, out = self._leave_stage(i, tokens, hw,
                                           i in self.out_indices)
            if out is not None:
                # NCHW-contiguous: mmcv's compiled ops (RoIAlign) read the raw
                # memory as NCHW and silently misread a channels-last map
                outs.append(out.contiguous())
        if learning:
            self._learn_keep(learned_keep)
        return RoutedFeatures(
            outs, RoutingInfo(masks, density, flops, route, expected))

    def _forward_budget(self, costs: List[StageCost],
                        route: float) -> Optional[float]:
        """The budget of this forward: ``self.budget``, or in training with
        ``budget_sampling`` the iteration's draw."""
        if not (self.training and self.budget_sampler is not None):
            return self.budget
        return self.budget_sampler.draw(minimum=_unskippable(costs) / route)

    @staticmethod
    def _mode(budget: Optional[float]) -> str:
        if budget is None:
            return 'learned'
        return 'route' if budget >= 1.0 else 'fixed'

    def minimum_budget(self, img_hw: Sequence[int]) -> float:
        """The smallest budget met at an input of ``img_hw``: the part no
        token can skip (``unskippable_parts``), as a fraction of the static
        route."""
        costs = self.stage_costs(img_hw)
        return _unskippable(costs) / sum(c.route for c in costs)

    def _keep_counts(self, costs: List[StageCost], route: float,
                     budget: float, img_hw) -> List[List[int]]:
        """Per stage, the tokens each block keeps under ``budget``: the
        learned allocation moved to meet it, blocks dropped whole where it
        leaves them no token (``allocate_counts``), cached per budget, input
        size and state of ``learned_keep`` (its memory and in-place version:
        loading, training or moving it misses). A budget below what no
        block skips is refused with the minimum (as the token-pass and
        mixed-scale ViTs refuse theirs)."""
        fixed = _unskippable(costs)
        if budget * route < fixed * (1 - 1e-9):
            raise ValueError(
                f'budget {budget:g} is below what '
                f'{type(self).__name__} must spend at this input size '
                f'({fixed / route:.3f} of the static route: '
                f'{self.unskippable_parts})')
        profile = self.learned_keep
        key = (budget, tuple(img_hw), profile.data_ptr(), profile._version)
        if key not in self._allocations:
            if len(self._allocations) > 64:  # training draws many budgets
                self._allocations.clear()
            blocks = [c for c in costs for _ in range(c.depth)]
            learned = profile.tolist() if self.learned_keep_steps.item() \
                else None
            counts = iter(allocate_counts(
                [c.num_tokens for c in blocks],
                [c.block_token for c in blocks],
                [c.block_fixed + c.block_gate for c in blocks],
                budget * route - fixed,
                learned))
            self._allocations[key] = [[next(counts) for _ in range(c.depth)]
                                      for c in costs]
        return self._allocations[key]

    def _run_stage(self, stage: nn.Module, tokens: Tensor, hw,
                   cost: StageCost, mode: str, counts: Optional[List[int]]):
        run = _StageRun(tokens)
        for j, (block, gate) in enumerate(zip(stage.blocks, stage.gates)):
            if mode == 'route':
                tokens = self._route_block(block, tokens, hw)
                keep = torch.ones_like(run.stopped)
            elif mode == 'fixed' and not counts[j]:
                # dropped by the budget: no gate, no token, no token sent
                # down (in training its gate and block still take part, at
                # weight 0: every parameter in the graph, as DDP wants)
                keep = torch.zeros_like(run.stopped)
                if self.training:
                    tokens = self._dropped_in_training(block, gate, tokens, hw,
                                                       run)
            else:
                normed = block.gate_input(tokens)
                weight, keep = self._decide(gate(normed), run, cost, mode,
                                            counts and counts[j])
                tokens = self._routed_block(block, tokens, hw, normed, weight,
                                            keep, run, mode,
                                            _known_count(counts, j))
                run.gates_run += 1
            run.masks.append(keep.detach())
            run.count = run.count + keep.detach().to(run.count.dtype)
            run.blocks_run = run.blocks_run + keep.detach().any(1).to(
                run.blocks_run.dtype)
        return tokens, run

    def _dropped_in_training(self, block: nn.Module, gate: nn.Module,
                             tokens: Tensor, hw, run: _StageRun) -> Tensor:
        """A block the budget dropped, in training: ``tokens`` unchanged in
        value; the gate's straight-through gradient says what computing them
        would have given, as for the tokens a kept block leaves out."""
        normed = block.gate_input(tokens)
        p_stay, p_depth = torch.sigmoid(gate(normed).float()).unbind(-1)
        score = p_depth * (p_stay if run.p_staying is None
                           else run.p_staying * p_stay)
        return block.forward_masked(
            tokens, hw, normed, (score - score.detach()).unsqueeze(-1),
            self.with_cp)

    def _route_block(self, block: nn.Module, tokens: Tensor, hw) -> Tensor:
        if self.with_cp and self.training and tokens.requires_grad:
            return torch.utils.checkpoint.checkpoint(
                block, tokens, hw, use_reentrant=False)
        return block(tokens, hw)

    def _decide(self, logits: Tensor, run: _StageRun, cost: StageCost,
                mode: str, count: Optional[int]):
        """The per-token weight of the block (float with gradient in training,
        else None) and the boolean keep mask ``(B, N)``; under a fixed budget
        the block keeps ``count`` tokens."""
        z_stay, z_depth = logits.unbind(-1)
        if not self.training:  # the decisions alone, no probabilities
            if mode == 'fixed':
                return None, self._fixed_keep(z_stay.float(), z_depth.float(),
                                              run, count)
            run.staying, keep = self._test_time_keep(
                z_stay, z_depth, run.staying, run.stopped,
                self.average_control or 0.0)
            return None, keep
        p_stay, p_depth = torch.sigmoid(logits.float()).unbind(-1)  # AMP-safe
        run.p_staying = p_stay if run.p_staying is None \
            else run.p_staying * p_stay
        score = run.p_staying * p_depth
        if mode == 'fixed':
            keep = self._fixed_keep(z_stay.float(), z_depth.float(), run, count)
            return keep.to(score.dtype) + (score - score.detach()), keep
        with torch.no_grad():  # what the test-time decisions keep here
            run.learned_staying, kept = self._test_time_keep(
                z_stay, z_depth, run.learned_staying, run.stopped)
            run.learned_keep.append(kept.float().mean(1))
        tau = self.gate_tau()
        stay = straight_through_bernoulli(z_stay, tau, self.gumbel_noise)
        run.staying = stay if run.staying is None else run.staying * stay
        weight = run.staying * straight_through_bernoulli(
            z_depth, tau, self.gumbel_noise)
        weight = weight * (~run.stopped).to(weight.dtype)
        run.expected = run.expected + (
            score * (~run.stopped).to(score.dtype)).sum(1) * cost.block_token
        return weight, weight.detach() > 0.5

    @staticmethod
    def _test_time_keep(z_stay: Tensor, z_depth: Tensor,
                        staying: Optional[Tensor], stopped: Tensor,
                        offset: float = 0.0) -> Tuple[Tensor, Tensor]:
        """The learned decisions at test time, the gate logits moved by
        ``offset``: a token stays while every stay logit of the scale so far
        is positive, and goes through the block when it stays, its depth
        logit is positive and it has not stopped. ``(staying, keep)``."""
        stay = z_stay + offset > 0
        staying = stay if staying is None else staying & stay
        return staying, staying & (z_depth + offset > 0) & ~stopped

    @staticmethod
    def _fixed_keep(z_stay: Tensor, z_depth: Tensor, run: _StageRun,
                    count: int) -> Tensor:
        """The ``count`` tokens whose learned decision to go through the
        block is the most certain: the smaller of the depth logit and every
        stay logit of the scale so far, tokens that went down excluded. The
        cut between kept and not is taken nearest 0, the learned rule's, and
        a token not kept whose stay logits fell below it goes down: when
        ``count`` is what the learned decisions keep, this is them."""
        run.stay_margin = z_stay if run.stay_margin is None \
            else torch.minimum(run.stay_margin, z_stay)
        margin = torch.minimum(run.stay_margin, z_depth).masked_fill(
            run.down, float('-inf'))
        keep, cut = keep_top(margin, count)
        run.down |= ~keep & (run.stay_margin <= cut.unsqueeze(1))
        return keep

    def _routed_block(self, block: nn.Module, tokens: Tensor, hw,
                      normed: Tensor, weight: Optional[Tensor], keep: Tensor,
                      run: _StageRun, mode: str,
                      count: Optional[int] = None) -> Tensor:
        early_stop = self.stop_threshold > 0 and mode == 'learned'
        if weight is None and self.sparse_inference:
            # the sparse form may update ``tokens`` in place (no_grad)
            before = tokens.clone() if early_stop else tokens
            out = block.forward_sparse(
                tokens, hw, normed,
                block.select(keep, count, hw, self._scratch), self._scratch)
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

    # ------------------------------------------------------------------ train
    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
