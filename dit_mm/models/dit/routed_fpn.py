"""An FPN that fuses scales by where the backbone routed its tokens."""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.necks import FPN
from torch import Tensor, nn

from ...registry import register_model
from ..routing import RoutedFeatures, RoutingInfo


@register_model
class RoutedFPN(FPN):
    """mmdet's FPN, plus routing-aware top-down fusion.

    In the top-down path a level adds the upsampled coarser level. Here that
    term is weighted per position by ``1 + alpha_l * (1 - density_l)``, where
    ``density_l`` is the fraction of the level's blocks the token there went
    through (from the backbone's :class:`RoutingInfo`, carried by its output
    tuple) and ``alpha_l`` a learned scalar per level, zero at start. Tokens that
    went down a scale early carry little of their own at this level, so they
    can lean on the coarser map, which is where their computation went.

    On the PVTv2 route (``set_budget(1.0)``) every density is 1 and the neck is
    exactly FPN, whatever ``alpha``; with ``alpha = 0`` (new, or FPN weights
    loaded) it is FPN at any budget. Inputs without routing (another backbone)
    get the plain FPN.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int,
                 num_outs: int, **kwargs):
        super().__init__(in_channels, out_channels, num_outs, **kwargs)
        levels = self.backbone_end_level - self.start_level
        self.fusion_alpha = nn.Parameter(torch.zeros(max(levels - 1, 0)))

    def _density(self, routing: Optional[RoutingInfo], like: Tensor
                 ) -> Optional[Tensor]:
        """The density map of the backbone stage with ``like``'s grid."""
        if routing is None:
            return None
        for density in routing.density:
            if density.shape[-2:] == like.shape[-2:] and \
                    density.shape[0] == like.shape[0]:
                return density.unsqueeze(1).to(like.dtype)
        return None

    def forward(self, inputs: Tuple[Tensor]) -> tuple:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f'RoutedFPN expects {len(self.in_channels)} '
                             f'maps, got {len(inputs)}')
        routing = inputs.stats if isinstance(inputs, RoutedFeatures) and \
            isinstance(inputs.stats, RoutingInfo) else None
        laterals = [
            conv(inputs[i + self.start_level])
            for i, conv in enumerate(self.lateral_convs)
        ]
        for i in range(len(laterals) - 1, 0, -1):
            if 'scale_factor' in self.upsample_cfg:
                up = F.interpolate(laterals[i], **self.upsample_cfg)
            else:
                up = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                   **self.upsample_cfg)
            density = self._density(routing, inputs[i - 1 + self.start_level])
            if density is not None:
                up = up * (1 + self.fusion_alpha[i - 1] * (1 - density))
            laterals[i - 1] = laterals[i - 1] + up
        return self._outputs(inputs, laterals)

    def _outputs(self, inputs, laterals) -> tuple:
        """FPN's output convolutions and extra levels, as mmdet's FPN does."""
        used = len(laterals)
        outs = [self.fpn_convs[i](laterals[i]) for i in range(used)]
        if self.num_outs > len(outs):
            if not self.add_extra_convs:
                for _ in range(self.num_outs - used):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                source = {
                    'on_input': inputs[self.backbone_end_level - 1],
                    'on_lateral': laterals[-1],
                    'on_output': outs[-1],
                }[self.add_extra_convs]
                outs.append(self.fpn_convs[used](source))
                for i in range(used + 1, self.num_outs):
                    extra = F.relu(outs[-1]) if self.relu_before_extra_convs \
                        else outs[-1]
                    outs.append(self.fpn_convs[i](extra))
        return tuple(outs)
