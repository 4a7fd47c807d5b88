"""How a fixed budget is shared among a routed network's blocks.

The learned decisions do not spend alike at every block: a model trained
toward a budget computes most tokens in some blocks and few in others (the
"learned allocation"). A fixed budget follows it: every block keeps the
fraction its learned decisions keep on average (the profile), all moved by
one offset on their logits, solved so that the kept tokens cost the budget.
At offset 0 each block keeps what the learned decisions keep; without a
profile every block keeps the same fraction.
"""
import math
from typing import List, Optional, Sequence

_EDGE = 1e-3  # a profile's fractions are clipped to [EDGE, 1 - EDGE]


def _logit(p: float) -> float:
    p = min(max(p, _EDGE), 1 - _EDGE)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else \
        math.exp(z) / (1 + math.exp(z))


def allocate_keep(weights: Sequence[float], target: float,
                  profile: Optional[Sequence[float]] = None,
                  steps: int = 60) -> List[float]:
    """Per-block keep fractions ``f`` with ``sum(w * f) == target``.

    Args:
        weights: what each block costs when it keeps every token.
        target: what the kept tokens may cost (clipped to ``[0, sum(w)]``).
        profile: the learned per-block keep fractions, or None (the same
            fraction everywhere).
        steps: bisection steps on the offset (60 reach float precision).
    """
    total = float(sum(weights))
    if target >= total:
        return [1.0] * len(weights)
    if target <= 0:
        return [0.0] * len(weights)
    if profile is None:
        return [target / total] * len(weights)
    if len(profile) != len(weights):
        raise ValueError(f'a keep profile of {len(profile)} blocks for '
                         f'{len(weights)} blocks')
    logits = [_logit(p) for p in profile]

    def spent(offset: float) -> float:
        return sum(w * _sigmoid(z + offset) for w, z in zip(weights, logits))

    low, high = -60.0, 60.0  # spent() is increasing in the offset
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if spent(mid) < target else (low, mid)
    return [_sigmoid(z + (low + high) / 2) for z in logits]
