"""dit_mm's models; importing this package registers them in every library."""
from . import backbones, dynamic_models, losses, necks  # noqa: F401
from .routing import RoutedFeatures, RoutingInfo

__all__ = ['RoutedFeatures', 'RoutingInfo']
