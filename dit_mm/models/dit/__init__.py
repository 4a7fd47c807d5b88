"""DiT, dynamic token routing over scales and depths, on two static
networks: PVTv2 (``DiT``: its blocks, weight converter and cost model) and
Swin-v2 (``DiTSwinV2``), with the routing they share
(``RoutedBackbone``), its budget loss and the routing-aware FPN."""
from .archs import ARCHS, resolve_arch
from .budget_loss import BudgetLoss
from .pvt import DiT
from .routed_backbone import RoutedBackbone
from .routed_fpn import RoutedFPN
from .swinv2 import DiTSwinV2, resolve_swinv2_arch

__all__ = ['ARCHS', 'BudgetLoss', 'DiT', 'DiTSwinV2', 'RoutedBackbone',
           'RoutedFPN', 'resolve_arch', 'resolve_swinv2_arch']
