from .gates import (RoutingGate, randomize_gates,
                    straight_through_bernoulli)
from .mixed_scale_tokens import RegionLayout, region_layout
from .pvt_blocks import MixFFN, OverlapPatchEmbed, RoutedPVTBlock, SRAttention
from .scale_gate import ScaleGate
from .stop_head import StopHead
from .swin_blocks import RoutedSwinV2Block
from .token_reconstruction import TokenReconstruction
from .vit_blocks import packed_attention, run_packed_layer

__all__ = [
    'MixFFN', 'OverlapPatchEmbed', 'RegionLayout', 'RoutedPVTBlock',
    'RoutedSwinV2Block', 'RoutingGate', 'ScaleGate', 'SRAttention',
    'StopHead',
    'TokenReconstruction', 'packed_attention', 'randomize_gates',
    'region_layout',
    'run_packed_layer', 'straight_through_bernoulli'
]
