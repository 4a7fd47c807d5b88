from .pvt_cost import StageCost, pvt_stage_costs, route_flops

__all__ = ['StageCost', 'pvt_stage_costs', 'route_flops']
