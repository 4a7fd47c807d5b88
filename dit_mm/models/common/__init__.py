"""What every dynamic backbone family shares: the protocol
(``DynamicBackbone``), the average-budget mode, the input and budget checks,
checked weight loading, and the straight-through gates."""
from .checks import StockArgumentError, UnknownArchError
from .dynamic import DynamicBackbone
from .gates import RoutingGate, randomize_gates, straight_through_bernoulli

__all__ = ['DynamicBackbone', 'RoutingGate', 'StockArgumentError',
           'UnknownArchError', 'randomize_gates', 'straight_through_bernoulli']
