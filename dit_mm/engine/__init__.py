"""Runner-side pieces: checkpoint loading that works on torch >= 2.6, seeding
per iteration for exact resume, routing pictures during validation, and what
the tools do to a config."""
from .checkpoint import UnsafeCheckpointError, install, load_from_local_safely
from .iteration_seed_hook import IterationSeedHook
from .routing_visualization_hook import RoutingVisualizationHook

install()

__all__ = [
    'IterationSeedHook', 'RoutingVisualizationHook', 'UnsafeCheckpointError',
    'load_from_local_safely'
]
