from .routed_fpn import RoutedFPN

__all__ = ['RoutedFPN']
