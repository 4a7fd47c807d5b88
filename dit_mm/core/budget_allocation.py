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


def allocate_counts(sizes: Sequence[int], token_costs: Sequence[float],
                    whole_map_costs: Sequence[float], target: float,
                    profile: Optional[Sequence[float]] = None) -> List[int]:
    """Per-block kept token counts that cost ``target``.

    A block keeping ``f * size`` tokens costs ``whole_map_cost +
    f * size * token_cost``, but a block that keeps no token is skipped whole
    and costs nothing. The blocks share what is left after the whole-map
    parts as :func:`allocate_keep` does; while that is negative, or a block's
    count rounds to 0 (a whole-map part paid for nothing), the block the
    profile values least (its smallest fraction; among equal ones the
    deepest, where stochastic depth trained the network to be skipped most)
    is dropped and its whole-map part goes to the others. Budgets under the
    sum of the whole-map parts are met by dropping blocks.

    Args:
        sizes: tokens per block.
        token_costs: one block's cost per computed token.
        whole_map_costs: what a block costs for its map once it computes
            any token.
        target: what the blocks may cost in all.
        profile: the learned per-block keep fractions, or None.
    """
    blocks = len(sizes)
    value = list(profile) if profile is not None else [0.0] * blocks
    active = list(range(blocks))
    while True:
        spend = target - sum(whole_map_costs[b] for b in active)
        shares = allocate_keep(
            [sizes[b] * token_costs[b] for b in active], spend,
            None if profile is None else [value[b] for b in active])
        counts = {b: round(f * sizes[b]) for b, f in zip(active, shares)}
        short = [b for b in active if counts[b] == 0]
        if not short:
            return [counts.get(b, 0) for b in range(blocks)]
        active.remove(min(short, key=lambda b: (value[b], -b)))
