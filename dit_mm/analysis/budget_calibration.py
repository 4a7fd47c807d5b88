"""An average budget for DiT's learned decisions, calibrated on data.

``set_budget(r)`` makes every image spend ``r``. The other mode lets each
image spend what its gates ask and meets ``r`` on average: one offset on the
gate logits (``RoutedBackbone.set_gate_offset``: monotone, a token that went
down stays down, decided per token) is solved by bisection so that the mean
executed FLOPs fraction over calibration images is ``r``. The offsets are
kept in a JSON file beside the checkpoint, which ``build_task_model`` hands
to the backbone (``budget_calibration``) when it is there.
"""
import json
import os.path as osp
import statistics
from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn

OFFSET_RANGE = (-30.0, 30.0)  # logits: sigmoid is 0 or 1 to float precision


def calibration_path(checkpoint: str) -> str:
    """Where the calibration of ``checkpoint`` is kept: beside it."""
    return f'{checkpoint}.calibration.json'


@torch.no_grad()
def executed_fractions(backbone: nn.Module, images: Sequence[Tensor],
                       offset: float) -> List[float]:
    """Each image's executed FLOPs fraction of the static route under the
    learned decisions shifted by ``offset`` (one image per forward)."""
    backbone.set_budget(None)
    backbone.set_gate_offset(offset)
    fractions = []
    for image in images:
        backbone(image)
        fractions.extend(backbone.routing.flops_fraction.tolist())
    return fractions


def calibrate_gate_offset(backbone: nn.Module, images: Sequence[Tensor],
                          budget: float, steps: int = 30) -> Dict:
    """The gate offset whose mean executed FLOPs fraction over ``images``
    (``(1, C, H, W)`` each) is ``budget``, with the per-image fractions it
    gives. A budget outside what the offsets reach is a ``ValueError`` that
    names the reachable range. The backbone's offset is left at 0."""
    was_training, before = backbone.training, backbone.gate_offset
    backbone.eval()
    try:
        low, high = OFFSET_RANGE
        reach = [statistics.fmean(executed_fractions(backbone, images, o))
                 for o in (low, high)]
        if not reach[0] <= budget <= reach[1]:
            raise ValueError(
                f'an average budget of {budget:g} is out of reach of the '
                f'gate offset: from {reach[0]:.3f} (every token that can '
                f'skip does) to {reach[1]:.3f} (every block runs)')
        for _ in range(steps):  # the largest offset that spends <= budget
            mid = (low + high) / 2
            if statistics.fmean(executed_fractions(backbone, images,
                                                   mid)) <= budget:
                low = mid
            else:
                high = mid
        fractions = executed_fractions(backbone, images, low)
    finally:
        backbone.set_gate_offset(before)
        backbone.train(was_training)
    return dict(budget=budget, offset=low, images=len(fractions),
                mean_fraction=statistics.fmean(fractions),
                min_fraction=min(fractions), max_fraction=max(fractions),
                std_fraction=statistics.pstdev(fractions))


def save_calibration(path: str, checkpoint: str, results: List[Dict]) -> None:
    with open(path, 'w') as f:
        json.dump(dict(checkpoint=osp.basename(checkpoint),
                       budgets=results), f, indent=2)


def load_calibration(checkpoint: str) -> Dict[float, float]:
    """Average budget -> gate offset from the file beside ``checkpoint``
    (empty when there is none)."""
    path = calibration_path(checkpoint)
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    try:
        return {float(r['budget']): float(r['offset'])
                for r in data['budgets']}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f'{path} is not a budget calibration of this '
                         f'project ({error!r}); remove it or run '
                         'calibrate_budget.py again') from None
