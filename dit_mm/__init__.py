"""dit_mm: dynamic-token vision transformers for OpenMMLab detection and
segmentation.

Importing the package registers every module of the project into the mmdet,
mmseg and mmpretrain registries (see :mod:`dit_mm.registry`) and makes
mmengine load checkpoints safely on torch >= 2.6 (see
:mod:`dit_mm.engine.checkpoint`), so a config needs only
``custom_imports=dict(imports=['dit_mm'], allow_failed_imports=False)``.
"""
from . import engine, models  # noqa: F401  (registration side effects)
from .version import __version__

__all__ = ['__version__']
