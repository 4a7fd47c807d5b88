"""Checked loading of backbone weights, shared by every backbone of dit_mm.

A checkpoint file may hold a bare state dict, an mmengine checkpoint
(``state_dict``), a timm / DeiT one (``model``), or a whole detector / segmentor
(``backbone.`` keys). Loading is strict: keys that do not fit are named and
nothing is copied, so a wrong checkpoint leaves the model as it was.
"""
import os
from collections import OrderedDict
from typing import (Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple)

import torch
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

from .checks import stock_check

StateDict = Dict[str, Tensor]


def unwrap_state_dict(checkpoint: Mapping, prefix: str = 'backbone.'
                      ) -> StateDict:
    """The tensors of a checkpoint file's content, without a model prefix."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'checkpoint holds a {type(checkpoint).__name__}, '
                        'not a state dict')
    for key in ('state_dict', 'model'):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    state = OrderedDict((k[7:] if k.startswith('module.') else k, v)
                        for k, v in checkpoint.items())
    if prefix and any(k.startswith(prefix) for k in state):
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items()
                            if k.startswith(prefix))
    return state


def pretrained_to_init_cfg(owner: str, pretrained: Optional[str],
                           init_cfg: Optional[dict]) -> Optional[dict]:
    """``init_cfg`` with the stock ``pretrained`` argument folded in, as
    mmdet's PVT and mmseg's ViT do (mmseg's ``EncoderDecoder`` hands its own
    to the backbone): a path, model-zoo name or URL becomes a ``Pretrained``
    init that ``init_weights`` reads. Nothing is opened here, so a config
    naming a file that is not on this machine builds (``tools/test.py``
    with a checkpoint needs none)."""
    stock_check(not (init_cfg and pretrained),
                f'{owner}: init_cfg and pretrained cannot be set at the same '
                'time')
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise TypeError(f'{owner}: pretrained must be a str or None, got '
                        f'{pretrained!r}')
    return dict(type='Pretrained', checkpoint=pretrained)


def layout_of(state: StateDict, markers: Sequence[Tuple[str, str, str]],
              what: str) -> str:
    """The layout of ``state``: the first of ``markers`` (``(layout, key
    prefix, description)``) whose prefix one of its keys has; a
    ``KeyError`` that names every known layout otherwise."""
    keys = list(state)
    for layout, prefix, _ in markers:
        if any(k.startswith(prefix) for k in keys):
            return layout
    known = ', '.join(f'{name} ({prefix}*)' for _, prefix, name in markers)
    raise KeyError(f'not a {what} state dict: none of its keys looks like '
                   f'{known}; first keys: {keys[:5]}')


def is_remote(path) -> bool:
    """A URL or model-zoo name (``https://``, ``open-mmlab://``...), which
    mmengine's loader fetches, not a local file."""
    return '://' in str(path)


def read_init_checkpoint(init_cfg: dict) -> StateDict:
    """The backbone tensors of ``init_cfg``'s checkpoint (``prefix``
    ``'backbone.'`` unless the config names another)."""
    path = init_cfg.get('checkpoint')
    if not path:
        raise ValueError(f'init_cfg {init_cfg} names no checkpoint')
    path = str(path)
    remote = is_remote(path)
    if not remote and not os.path.isfile(path):
        raise FileNotFoundError(
            f'pretrained backbone checkpoint {path} does not exist (the '
            "backbone's init_cfg, or the model's pretrained): give the file, "
            'or set it to None to train from scratch')
    try:
        checkpoint = CheckpointLoader.load_checkpoint(
            path, map_location='cpu', logger=MMLogger.get_current_instance())
    except OSError as error:  # a download that failed (URLError)
        if not remote:
            raise
        raise OSError(f'pretrained backbone checkpoint {path} could not be '
                      f'fetched ({error}): give a local file, or set the '
                      "backbone's init_cfg (or the model's pretrained) to "
                      'None to train from scratch') from error
    prefix = init_cfg.get('prefix', 'backbone.')
    if prefix and not prefix.endswith('.'):
        prefix += '.'  # mmengine's PretrainedInit takes 'backbone' too
    return unwrap_state_dict(checkpoint, prefix)


def check_finite_weights(state: Mapping[str, Tensor], source: str) -> None:
    """A checkpoint with a NaN or infinite weight (a training that
    diverged) gives NaN features and metrics of 0 without a word: refuse
    it, naming the tensors."""
    bad = [k for k, v in state.items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f'{source} holds NaN or infinite values in '
                         f'{len(bad)} tensor(s): {_listed(bad)} (a training '
                         'that diverged?)')


def _listed(keys, limit: int = 8) -> str:
    return f'{keys[:limit]}{" ..." if len(keys) > limit else ""}'


def key_differences(own: Mapping[str, Tuple[int, ...]],
                    state: Mapping[str, Tensor],
                    optional: Callable[[str], bool] = lambda key: False
                    ) -> Tuple[List[str], List[str], List[tuple]]:
    """How a checkpoint's ``state`` differs from a model's key shapes
    ``own``: the model's keys it lacks (``optional`` ones may be missing),
    the keys the model has not (both sorted), and ``(key, checkpoint
    shape, model shape)`` for each shape mismatch, in ``state``'s order."""
    missing = sorted(k for k in own if k not in state and not optional(k))
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [(k, tuple(v.shape), own[k]) for k, v in state.items()
                  if k in own and tuple(v.shape) != own[k]]
    return missing, unexpected, mismatched


class CheckpointRule:
    """What a backbone standing for a stock network takes from a checkpoint,
    declared once: which weights a stock checkpoint lacks
    (:meth:`is_optional_weight`), which layouts it converts
    (:meth:`weight_layout`, :meth:`to_own_layout`). Its ``init_cfg`` loader,
    mmengine's ``load_from`` (through :meth:`accept_foreign_layouts`), the
    run guards' checkpoint checks and the static peer all read this rule."""

    own_layout = 'own'

    @staticmethod
    def is_optional_weight(key: str) -> bool:
        """A weight only the dynamic network has (a gate, a head)."""
        return False

    def weight_layout(self, state: StateDict) -> str:
        """The layout of a checkpoint's backbone tensors (``KeyError``: none
        the family knows)."""
        return self.own_layout

    def to_own_layout(self, state: StateDict) -> StateDict:
        """A checkpoint's backbone tensors as this backbone loads them."""
        return OrderedDict(state)

    def load_weights(self, state: StateDict, source: str) -> str:
        """Load a checkpoint's backbone tensors in any layout the family
        knows, strictly but for the optional weights (they keep theirs).
        Wrong keys or shapes are named and nothing is copied. Returns a
        one-line report."""
        return load_checked(self, self.to_own_layout(state), source,
                            self.weight_layout(state),
                            optional=self.is_optional_weight)

    def accept_foreign_layouts(self) -> None:
        """Convert a checkpoint of another layout the family knows while
        ``load_state_dict`` (mmengine's ``load_from``) reads it."""
        self.register_load_state_dict_pre_hook(_convert_foreign_layout)


def _convert_foreign_layout(module: CheckpointRule, state_dict: dict,
                            prefix: str, *args) -> None:
    """The entries under ``prefix`` in another layout ``module`` knows are
    replaced in place by their conversion; in its own layout only what the
    conversion changes (a resized position embedding) is, nothing is
    dropped (a strict load of its own state stays strict). Entries in no
    layout it knows are left to the load's own checks."""
    entries = {k[len(prefix):]: k for k in state_dict if k.startswith(prefix)}
    if not entries:
        return
    state = OrderedDict((k, state_dict[full]) for k, full in entries.items())
    try:
        foreign = module.weight_layout(state) != module.own_layout
    except KeyError:
        return
    converted = module.to_own_layout(state)
    if foreign:
        for full in entries.values():
            del state_dict[full]
    for key, value in converted.items():
        if state.get(key) is not value:
            state_dict[prefix + key] = value


def load_checked(module: nn.Module, state: StateDict, source: str,
                 layout: str,
                 optional: Callable[[str], bool] = lambda key: False) -> str:
    """Copy ``state`` (already in ``module``'s key layout) into ``module``.

    Every key of the module must be in ``state`` except those ``optional``
    accepts (parts a plain checkpoint cannot have: gates, heads); every key of
    ``state`` must be in the module, with its shape. Otherwise a ``ValueError``
    names the keys before anything is copied. Returns a one-line report.
    """
    own = module.state_dict()
    missing, unexpected, shapes = key_differences(
        {k: tuple(v.shape) for k, v in own.items()}, state, optional)
    mismatched = [f'{k}: checkpoint {theirs} vs model {ours}'
                  for k, theirs, ours in shapes]
    problems = []
    if missing:
        problems.append(f'missing keys {_listed(missing)}')
    if unexpected:
        problems.append(f'unexpected keys {_listed(unexpected)}')
    if mismatched:
        problems.append(f'shape mismatches {_listed(mismatched, 4)} '
                        '(another arch?)')
    if problems:
        raise ValueError(f'{source} ({layout} layout) does not fit '
                         f'{type(module).__name__}: ' + '; '.join(problems))
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)
    kept = len(set(own) - set(state))
    return (f'loaded {len(state)} tensors from {source} ({layout} layout)' +
            (f'; {kept} tensors a plain checkpoint has not (gates, heads) keep '
             'their initial values' if kept else ''))
