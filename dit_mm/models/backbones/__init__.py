from .checks import StockArgumentError, UnknownArchError
from .dit import DiT
from .dit_archs import ARCHS, resolve_arch
from .dit_swinv2 import DiTSwinV2, resolve_swinv2_arch
from .dynamic import DynamicBackbone
from .mixed_scale_vit import MixedScaleViT
from .token_pass_vit import TokenPassViT
from .vit_archs import VIT_ARCHS, resolve_vit_arch

__all__ = ['ARCHS', 'DiT', 'DiTSwinV2', 'DynamicBackbone', 'MixedScaleViT',
           'StockArgumentError', 'TokenPassViT', 'UnknownArchError',
           'VIT_ARCHS', 'resolve_arch', 'resolve_swinv2_arch',
           'resolve_vit_arch']
