"""Average budgets of the learned decisions, calibrated on data.

``set_budget(r)`` makes every image spend ``r``. The other mode lets each
image spend what its decisions ask and meets ``r`` on average: the
backbone's one monotone control (``AverageBudget``: DiT's offset on the gate
logits, token pass's stop threshold, MSViT's offset on the scale gate's fine
logits) is solved by bisection so that the mean executed FLOPs fraction over
calibration images is ``r``. The values are kept in a JSON file beside the
checkpoint, which ``dit_mm.models.builder.build_task_model`` hands to the
backbone (``budget_calibration``) when it is there.
"""
import json
import os.path as osp
import statistics
from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn



@torch.no_grad()
def executed_fractions(backbone: nn.Module, images: Sequence[Tensor],
                       control: float) -> List[float]:
    """Each image's executed FLOPs fraction of the static network under the
    learned decisions moved by ``control`` (one image per forward)."""
    backbone.set_budget(None)
    backbone.set_average_control(control)
    fractions = []
    for image in images:
        fractions.extend(backbone(image).stats.flops_fraction.tolist())
    return fractions


def calibrate_average_control(backbone: nn.Module, images: Sequence[Tensor],
                              budget: float, steps: int = 30,
                              tolerance: float = 1e-3) -> Dict:
    """The control value whose mean executed FLOPs fraction over ``images``
    (``(1, C, H, W)`` each) is ``budget``, with the per-image fractions it
    gives: the largest control found that spends at most ``budget``, the
    bisection stopping once that is within ``tolerance`` of it (the
    spending is a step function of the control, so more steps refine the
    control, not what it spends) or after ``steps``. A budget outside what
    the control reaches is a ``ValueError`` that names the reachable range.
    The backbone's control is restored."""
    was_training, before = backbone.training, backbone.average_control
    backbone.eval()
    try:
        low, high = backbone.control_range
        fractions = executed_fractions(backbone, images, low)
        reach = (statistics.fmean(fractions), statistics.fmean(
            executed_fractions(backbone, images, high)))
        if not reach[0] <= budget <= reach[1]:
            raise ValueError(
                f'an average budget of {budget:g} is out of reach of '
                f'{type(backbone).__name__}\'s control: from {reach[0]:.3f} '
                f'(the least its decisions spend) to {reach[1]:.3f} (the '
                'most)')
        for _ in range(steps):  # the largest control that spends <= budget
            mid = (low + high) / 2
            spent = executed_fractions(backbone, images, mid)
            mean = statistics.fmean(spent)
            if mean <= budget:
                low, fractions = mid, spent
                if budget - mean <= tolerance:
                    break
            else:
                high = mid
    finally:
        backbone.set_average_control(before)
        backbone.train(was_training)
    return dict(budget=budget, control=low, images=len(fractions),
                mean_fraction=statistics.fmean(fractions),
                min_fraction=min(fractions), max_fraction=max(fractions),
                std_fraction=statistics.pstdev(fractions))


def save_calibration(path: str, checkpoint: str, results: List[Dict]) -> None:
    with open(path, 'w') as f:
        json.dump(dict(checkpoint=osp.basename(checkpoint),
                       budgets=results), f, indent=2)
