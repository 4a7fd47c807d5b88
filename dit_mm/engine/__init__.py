"""Runner-side pieces: checkpoint loading that works on torch >= 2.6, seeding
per iteration for exact resume, routing pictures during validation, bf16
mixed precision without a GPU, sharded training (FSDP) on a GPU or a CPU, and
what the tools do to a config."""
from .amp import BF16OptimWrapper, install_float32_ops
from .checkpoint import UnsafeCheckpointError, install, load_from_local_safely
from .data_errors import install as install_data_errors
from .fsdp import DitFSDPStrategy
from .iteration_seed_hook import IterationSeedHook
from .routing_visualization_hook import RoutingVisualizationHook

install()
install_data_errors()  # an unreadable image or an empty data set is named
install_float32_ops()  # mmcv's NMS and RoIAlign under bfloat16 autocast

__all__ = [
    'BF16OptimWrapper', 'DitFSDPStrategy', 'IterationSeedHook',
    'RoutingVisualizationHook', 'UnsafeCheckpointError',
    'load_from_local_safely'
]
