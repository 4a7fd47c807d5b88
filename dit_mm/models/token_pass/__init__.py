"""Token pass (DoViT): mmseg's ViT whose easy tokens stop at stop heads,
with its packed layers, weight converter, token reconstruction and the
segmentor that distils from the full route."""
from .segmentor import TokenPassEncoderDecoder
from .stop_head import StopHead
from .token_reconstruction import TokenReconstruction
from .vit import TokenPassViT
from .vit_archs import VIT_ARCHS, resolve_vit_arch

__all__ = ['StopHead', 'TokenPassEncoderDecoder', 'TokenPassViT',
           'TokenReconstruction', 'VIT_ARCHS', 'resolve_vit_arch']
