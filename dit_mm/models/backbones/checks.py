"""Input and budget checks every dynamic backbone makes, with messages that
name the problem."""
import math
from typing import Optional

import torch
from torch import Tensor


def check_images(x: Tensor, owner: str, in_channels: int) -> None:
    """``x`` must be a non-empty, finite ``(B, in_channels, H, W)`` batch."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f'{owner} expects (B, {in_channels}, H, W) images, '
                         f'got shape {tuple(x.shape)}')
    if x.shape[0] == 0:
        raise ValueError(f'{owner} got an empty batch (0 images)')
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f'{owner} got empty images of size '
                         f'{tuple(x.shape[2:])}')
    if not torch.isfinite(x).all():
        raise ValueError(f'{owner} input contains NaN or infinite values')


def check_budget(budget: Optional[float]) -> Optional[float]:
    """``budget`` as a float in (0, 1], or ``None`` (learned decisions)."""
    if budget is None:
        return None
    budget = float(budget)
    if not 0 < budget <= 1 or math.isnan(budget):
        raise ValueError(f'budget must be in (0, 1] or None, got {budget}')
    return budget
