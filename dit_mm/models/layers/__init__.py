from .gates import RoutingGate, straight_through_bernoulli
from .pvt_blocks import MixFFN, OverlapPatchEmbed, RoutedPVTBlock, SRAttention

__all__ = [
    'MixFFN', 'OverlapPatchEmbed', 'RoutedPVTBlock', 'RoutingGate',
    'SRAttention', 'straight_through_bernoulli'
]
