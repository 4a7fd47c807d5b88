"""Mixed-scale tokens (MSViT): a scale gate makes regions one coarse token
on the token-pass ViT, with its region layout and batch-shaping losses."""
from .batch_shaping import (BatchShapingLoss, GeneralizedBatchShapingLoss,
                            L1SparsityLoss)
from .scale_gate import ScaleGate
from .tokens import RegionLayout, region_layout
from .vit import MixedScaleViT

__all__ = ['BatchShapingLoss', 'GeneralizedBatchShapingLoss',
           'L1SparsityLoss', 'MixedScaleViT', 'RegionLayout', 'ScaleGate',
           'region_layout']
