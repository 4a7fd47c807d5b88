"""What a dynamic backbone tells the rest of the model about its last forward."""
from dataclasses import dataclass, field
from typing import List, Optional

from torch import Tensor


@dataclass
class RoutingInfo:
    """Per-image routing statistics of one forward pass.

    keep_masks: ``[stage][block]`` ``(B, H, W)`` bool, the tokens that went
        through that block (node of the routing grid).
    density: ``[stage]`` ``(B, H, W)``, the fraction of the stage's blocks each
        token went through (1 everywhere on the PVTv2 route).
    flops: ``(B,)`` FLOPs realized for each image (skipped tokens cost nothing).
    route_flops: FLOPs of the PVTv2 route at this input size.
    expected_fraction: ``(B,)`` expected FLOPs / route FLOPs under the gates'
        probabilities, differentiable (training with learned gates only).
    """
    keep_masks: List[List[Tensor]]
    density: List[Tensor]
    flops: Tensor
    route_flops: float
    expected_fraction: Optional[Tensor] = field(default=None)

    @property
    def flops_fraction(self) -> Tensor:
        """``(B,)`` realized FLOPs relative to the PVTv2 route."""
        return self.flops / self.route_flops


class RoutedFeatures(tuple):
    """The backbone's feature maps (a plain tuple to every neck and head) that
    also carry the :class:`RoutingInfo` they were made with, for routing-aware
    necks."""

    routing: Optional[RoutingInfo]

    def __new__(cls, maps, routing: Optional[RoutingInfo] = None):
        obj = super().__new__(cls, maps)
        obj.routing = routing
        return obj
