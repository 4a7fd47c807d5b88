"""The backbones, gathered from their families (``dit``, ``token_pass``,
``mixed_scale``), as ``mmdet.models.backbones`` gathers its own."""
from ..common import DynamicBackbone, StockArgumentError, UnknownArchError
from ..dit import ARCHS, DiT, DiTSwinV2, resolve_arch, resolve_swinv2_arch
from ..mixed_scale import MixedScaleViT
from ..token_pass import VIT_ARCHS, TokenPassViT, resolve_vit_arch

__all__ = ['ARCHS', 'DiT', 'DiTSwinV2', 'DynamicBackbone', 'MixedScaleViT',
           'StockArgumentError', 'TokenPassViT', 'UnknownArchError',
           'VIT_ARCHS', 'resolve_arch', 'resolve_swinv2_arch',
           'resolve_vit_arch']
