"""dit_mm's models, one folder per family (``dit``, ``token_pass``,
``mixed_scale``) over what they share (``common``); importing this package
registers them in every library."""
from . import (backbones, common, dit, dynamic_models,  # noqa: F401
               mixed_scale, token_pass)
from .routing import RoutedFeatures, RoutingInfo

__all__ = ['RoutedFeatures', 'RoutingInfo']
