"""The calibrated average-budget mode every dynamic backbone shares.

``set_budget(r)`` makes every image spend ``r``. In this mode the backbone
keeps its learned decisions (gates, stop threshold) and moves them with one
monotone control, decided per token: an image spends what it needs and the
same alone as in a batch. ``calibrate_average_control``
(``dit_mm/analysis/budget_calibration.py``) solves the control so that the
mean executed FLOPs fraction over calibration images is ``r``; the results
(``budget_calibration``) come from the file beside the checkpoint.
"""
import json
import math
import os.path as osp
from typing import Dict, Optional, Tuple

from torch import nn


class AverageBudget:
    """Mixin: ``control_range`` (the control's lowest and highest useful
    values: spending rises with it) and how the family applies
    ``average_control`` (None: the learned decisions as trained) are the
    family's; the rest is here."""

    control_range: Tuple[float, float]
    average_control: Optional[float] = None

    def _init_average_budget(self) -> None:
        self.average_control = None
        # average budget -> control value, from calibrate_budget.py's file
        self.budget_calibration: Dict[float, float] = {}

    def set_average_control(self, value: Optional[float]) -> None:
        """Move the learned test-time decisions by ``value`` (None: as
        trained); training ignores it."""
        if value is not None:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f'the average-budget control must be '
                                 f'finite, got {value}')
        self.average_control = value

    def set_average_budget(self, budget: float) -> None:
        """The learned decisions, moved by the control calibrated to spend
        ``budget`` on average (``tools/analysis_tools/calibrate_budget.py``).
        Only a calibrated budget is taken."""
        if budget not in self.budget_calibration:
            calibrated = sorted(self.budget_calibration)
            raise ValueError(
                f'no calibration for an average budget of {budget:g}: '
                + (f'calibrated are {calibrated}' if calibrated else
                   'run tools/analysis_tools/calibrate_budget.py CONFIG '
                   'CHECKPOINT --budgets ... first'))
        self.set_budget(None)
        self.set_average_control(self.budget_calibration[budget])


def calibration_path(checkpoint: str) -> str:
    """Where the calibration of ``checkpoint`` is kept: beside it."""
    return f'{checkpoint}.calibration.json'


def attach_calibration(backbone: nn.Module, checkpoint: str) -> bool:
    """Hand the calibration beside ``checkpoint``, if there is one, to a
    backbone with an average-budget mode; whether one was handed."""
    calibration = load_calibration(checkpoint)
    if not calibration or not isinstance(backbone, AverageBudget):
        return False
    backbone.budget_calibration = calibration
    return True


def load_calibration(checkpoint: str) -> Dict[float, float]:
    """Average budget -> control value from the file beside
    ``checkpoint`` (empty when there is none)."""
    path = calibration_path(checkpoint)
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        data = json.load(f)
    try:
        return {float(r['budget']): float(r['control'])
                for r in data['budgets']}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f'{path} is not a budget calibration of this '
                         f'project ({error!r}); remove it or run '
                         'calibrate_budget.py --force') from None
