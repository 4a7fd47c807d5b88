"""The one place that makes dit_mm's classes visible to mmdet, mmseg and mmpretrain.

Each class is registered once in code (``@register_model`` and friends) and lands
in the registry of the same kind of every library, so a stock config of any of
them needs only ``custom_imports=dict(imports=['dit_mm'])`` and ``type='Name'``
(or the scoped ``'mmdet.Name'``).
"""
import importlib
from contextlib import contextmanager
from typing import Callable, Iterator, List

from mmengine.registry import DefaultScope, Registry

LIBRARIES = ('mmdet', 'mmseg', 'mmpretrain')


def config_scope(cfg) -> str:
    """The library a config belongs to, from its ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in LIBRARIES:
        raise ValueError(
            f'config default_scope is {scope!r}; dit_mm tools run configs of '
            f'{", ".join(LIBRARIES)} (set default_scope in the config)')
    return scope


@contextmanager
def config_scope_of(cfg) -> Iterator[str]:
    """The config's ``default_scope`` as the current mmengine scope."""
    scope = config_scope(cfg)
    with DefaultScope.overwrite_default_scope(scope):
        yield scope


def library_registries(kind: str) -> List[Registry]:
    """The ``kind`` registry (``'MODELS'``, ``'HOOKS'``, ...) of each library."""
    return [
        getattr(importlib.import_module(f'{lib}.registry'), kind)
        for lib in LIBRARIES
    ]


def register(kind: str) -> Callable[[type], type]:
    """A class decorator that registers into every library's ``kind`` registry."""

    def decorator(cls: type) -> type:
        for registry in library_registries(kind):
            registry.register_module(module=cls)
        return cls

    return decorator


register_model = register('MODELS')
register_hook = register('HOOKS')
