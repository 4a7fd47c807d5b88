from .pvt_cost import StageCost, pvt_stage_costs, route_flops
from .vit_cost import ViTCost, budget_keep_counts

__all__ = ['StageCost', 'ViTCost', 'budget_keep_counts', 'pvt_stage_costs',
           'route_flops']
