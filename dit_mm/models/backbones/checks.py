"""Input and budget checks every dynamic backbone makes, with messages that
name the problem."""
import math
from typing import Optional

import torch
from torch import Tensor


def check_images(x: Tensor, owner: str, in_channels: int,
                 min_size: int = 1) -> None:
    """``x`` must be a non-empty, finite ``(B, in_channels, H, W)`` batch of
    images at least ``min_size`` pixels high and wide (a backbone's largest
    stride: a smaller image has no cell on the coarsest grid)."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f'{owner} expects (B, {in_channels}, H, W) images, '
                         f'got shape {tuple(x.shape)}')
    if x.shape[0] == 0:
        raise ValueError(f'{owner} got an empty batch (0 images)')
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f'{owner} got empty images of size '
                         f'{tuple(x.shape[2:])}')
    if x.shape[2] < min_size or x.shape[3] < min_size:
        raise ValueError(f'{owner} needs images of at least {min_size}x'
                         f'{min_size} (its largest stride), got '
                         f'{x.shape[2]}x{x.shape[3]}; resize or pad them '
                         'in the data pipeline')
    if not torch.isfinite(x).all():
        raise ValueError(f'{owner} input contains NaN or infinite values')


def check_batch(data, owner: str) -> None:
    """A model step's data batch (mmengine's collated dict with ``inputs``,
    or a list of samples) must hold at least one image: the libraries' data
    preprocessors otherwise fail on it with an error that names nothing."""
    if isinstance(data, dict):
        if 'inputs' not in data:
            return  # not a batch layout this check knows: leave it alone
        data = data['inputs']
    if data is None:
        raise ValueError(f'{owner} got no batch (None instead of images)')
    try:
        size = len(data)
    except TypeError:  # a 0-dim tensor or another object: not ours to judge
        return
    if size == 0:
        raise ValueError(f'{owner} got an empty batch (0 images); a data '
                         'loader yields none, so check the code that made it')


def check_budget(budget: Optional[float]) -> Optional[float]:
    """``budget`` as a float in (0, 1], or ``None`` (learned decisions)."""
    if budget is None:
        return None
    budget = float(budget)
    if not 0 < budget <= 1 or math.isnan(budget):
        raise ValueError(f'budget must be in (0, 1] or None, got {budget}')
    return budget
