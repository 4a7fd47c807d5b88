from .dit import DiT
from .dit_archs import ARCHS, resolve_arch

__all__ = ['ARCHS', 'DiT', 'resolve_arch']
