"""What every layer of dit_mm stands on and nothing of dit_mm's is below:
the token core (``tokens.py``: select / gather / scatter / pad / fill / the
packed attention), the deciders (``deciders.py``: straight-through sampling,
the top-k masks of a fixed budget), the cost models the backbones
solve their budgets with at run time and the analysis tools count with (one
per family: PVT, Swin, ViT, mixed-scale ViT), and how DiT shares a fixed
budget among its blocks. Pure functions of tensors, sizes and counts; no
module, no state."""
from .mixed_scale_cost import (budget_coarse_count, mixed_scale_flops,
                               mlp_flops)
from .pvt_cost import pvt_stage_costs, route_flops
from .stage_cost import StageCost
from .vit_cost import ViTCost, budget_keep_counts

__all__ = ['StageCost', 'ViTCost', 'budget_coarse_count', 'budget_keep_counts',
           'mixed_scale_flops', 'mlp_flops', 'pvt_stage_costs', 'route_flops']
