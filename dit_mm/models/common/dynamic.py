"""The protocol every dynamic backbone of dit_mm implements (DiT on PVTv2
and on Swin-v2, the token-pass ViT, the mixed-scale ViT).

The tools, guards, hooks and task models ask ``isinstance(backbone,
DynamicBackbone)`` and use what is declared here, never ``hasattr``: a
backbone that is not one is a stock backbone, run as it is.
"""
from abc import ABCMeta, abstractmethod
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence

from mmengine.registry import DefaultScope
from torch import Tensor, nn

from ..routing import ForwardRecord, RouteStats
from .average_budget import AverageBudget
from .checks import check_budget
from .static_peer import PeerBuild
from .weights import load_checked


class DynamicBackbone(AverageBudget, metaclass=ABCMeta):
    """Mixin of a backbone whose compute is chosen at run time.

    * ``budget``: ``None`` (the learned decisions or threshold), or the
      fraction of the static network's FLOPs every image spends, 1.0 being
      the static network itself; ``set_budget`` and ``budget_scope`` set it,
      ``minimum_budget`` says how low it can go at an input size.
    * ``forward`` returns a :class:`~dit_mm.models.routing.RoutedFeatures`:
      the feature maps of the stock class, carrying their
      :class:`~dit_mm.models.routing.RouteStats` (``.stats``: executed
      FLOPs per image against the static network's, the kept fraction).
      Nothing of a forward is left on the module; a caller that runs the
      whole task model reads them through ``recording()``.
    * ``aux_losses(stats, data_samples)``: the method's own losses of the
      training forward that returned ``stats``, which the ``Dynamic*`` task
      models add.
    * ``budget_sampler``: the training recipe's draw of a route per
      iteration (``None``: the learned route at the target only).
    * ``static_peer()``: the stock backbone it stands for (``peer_name``,
      of the library ``peer_scope``), with its settings and weights.
    * The average-budget mode (:class:`AverageBudget`) and the checkpoint
      rule (``is_optional_weight``: the weights a stock checkpoint lacks).
    """

    budget: Optional[float] = None
    peer_scope: str  # the library of the stock class: 'mmdet', ...
    peer_name: str  # its name in reports: 'mmdet PyramidVisionTransformerV2'

    def set_budget(self, budget: Optional[float]) -> None:
        """Fix the compute budget at run time (no retraining): see the
        family's docstring for how its decisions meet it."""
        self.budget = check_budget(budget)

    @contextmanager
    def budget_scope(self, budget: Optional[float]) -> Iterator[None]:
        """``set_budget(budget)`` for the ``with`` block only."""
        old = self.budget
        self.set_budget(budget)
        try:
            yield
        finally:
            self.budget = old

    @abstractmethod
    def minimum_budget(self, img_hw: Sequence[int]) -> float:
        """The smallest budget the backbone meets at an input of
        ``img_hw``: what it computes whatever its decisions."""

    def recording(self) -> ForwardRecord:
        """``with backbone.recording() as record:``: ``record.stats`` is the
        :class:`RouteStats` of the last forward inside the block (and
        ``record.shapes`` the input sizes), however deep in a task model the
        backbone was called."""
        return ForwardRecord(self)

    @abstractmethod
    def aux_losses(self, stats: Optional[RouteStats],
                   data_samples=None) -> Dict[str, Tensor]:
        """The method's losses (and logged values) of the training forward
        that returned ``stats``; empty when there is nothing to add."""

    @abstractmethod
    def build_static_peer(self) -> PeerBuild:
        """The stock module built with this backbone's settings, the state
        dict that gives it these weights, and the keys left out."""

    def static_peer(self) -> nn.Module:
        """The stock backbone of this size with these weights, on this
        backbone's device, in eval mode. ``peer.dynamic_only_keys`` lists
        the tensors that were not carried (gates, stop heads, scale gate);
        every other tensor is, and every tensor of the peer is loaded (a
        mismatch is a ``ValueError`` naming the keys)."""
        with DefaultScope.overwrite_default_scope(self.peer_scope):
            peer, state, dynamic = self.build_static_peer()
        load_checked(peer, state, f'{type(self).__name__} weights',
                     type(self).__name__)
        reference = next(self.parameters())
        peer.to(device=reference.device, dtype=reference.dtype)
        peer.eval()  # mmseg's ViT returns None from train()
        peer.dynamic_only_keys = dynamic
        return peer
