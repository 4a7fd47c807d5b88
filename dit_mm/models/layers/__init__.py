from .gates import RoutingGate, straight_through_bernoulli
from .pvt_blocks import MixFFN, OverlapPatchEmbed, RoutedPVTBlock, SRAttention
from .stop_head import StopHead
from .token_reconstruction import TokenReconstruction
from .vit_blocks import packed_attention, run_packed_layer

__all__ = [
    'MixFFN', 'OverlapPatchEmbed', 'RoutedPVTBlock', 'RoutingGate',
    'SRAttention', 'StopHead', 'TokenReconstruction', 'packed_attention',
    'run_packed_layer', 'straight_through_bernoulli'
]
