"""dit_mm's models; importing this package registers them in every library."""
from . import (backbones, dynamic_models, layers, losses, necks,  # noqa: F401
               token_pass_segmentor)
from .routing import RoutedFeatures, RoutingInfo

__all__ = ['RoutedFeatures', 'RoutingInfo']
