"""What every dynamic backbone family shares: the protocol
(``DynamicBackbone``), the average-budget mode, the input and budget checks,
checked weight loading, and DiT's routing gates."""
from .checks import StockArgumentError, UnknownArchError
from .dynamic import DynamicBackbone
from .gates import RoutingGate, randomize_gates

__all__ = ['DynamicBackbone', 'RoutingGate', 'StockArgumentError',
           'UnknownArchError', 'randomize_gates']
