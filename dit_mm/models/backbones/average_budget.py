"""The calibrated average-budget mode every dynamic backbone shares.

``set_budget(r)`` makes every image spend ``r``. In this mode the backbone
keeps its learned decisions (gates, stop threshold) and moves them with one
monotone control, decided per token: an image spends what it needs and the
same alone as in a batch. ``calibrate_average_control``
(``dit_mm/analysis/budget_calibration.py``) solves the control so that the
mean executed FLOPs fraction over calibration images is ``r``; the results
(``budget_calibration``) come from the file beside the checkpoint.
"""
import math
from typing import Dict, Optional, Tuple


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
