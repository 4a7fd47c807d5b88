"""Training for every budget: which route a training iteration runs.

A model trained only on its learned route is off that path at any other
budget (issue 18: ``set_budget(1.0)`` scored least). With ``budget_sampling``
each training iteration runs one route drawn from the iteration alone: the
learned decisions (with their budget loss), the static route (budget 1.0), or
a fixed budget drawn uniformly from ``[low, high)`` (``low`` raised to the
backbone's minimum at the input size). So the necks and heads learn every
route the run-time knob can ask for, and the gates learn to rank tokens for
the fixed budgets. docs/budgets.md ("Training for every budget") measures the
recipes; the DiT configs use the sandwich with ``high=0.75`` (the PVTv2
Mask R-CNN configs with ``low=0.15``: the toy detector fell fast under budgets
it never trained), the token-pass configs one route an iteration (``learned=0.75,
full=0.15``).

With ``sandwich=True`` every iteration trains the learned decisions *and*
one drawn fixed route (the static one or a budget from ``[low, high)``) on the
same batch, their task losses added (the second route's prefixed
``fixed_``): the learned route gets every update, as in the single-target
recipe, at the cost of a second forward and backward.

The draw depends on the iteration alone: every process of a data-parallel run
runs the same route (the budget loss gathers across them), and a resumed run
draws what the uninterrupted one drew.
"""
import random
from contextlib import contextmanager
from typing import Iterator, Optional

from .schedule import current_iter

LEARNED = None  # the draw that means "the learned decisions"
# the draw of the static route: a fixed budget just under 1, which keeps every
# token (every decision too) and runs the gates and heads, so that they are in
# the graph of every iteration, as data-parallel training needs
FULL = 1 - 1e-6


class BudgetSampler:
    """Draws the route of a training iteration.

    Args:
        learned: probability of the learned decisions.
        full: probability of the static route (``FULL``).
        low: the smallest fixed budget drawn (the rest of the probability
            draws a budget uniformly from ``[low, high)``; the backbone
            raises it to what it must spend at the input size).
        high: the fixed budgets' upper end (1: up to the static route,
            which ``full`` draws on its own; lower puts the fixed draws on
            the cheaper routes, which train least).
        sandwich: the learned decisions in every iteration, and a second
            route (``learned`` is not read) in :meth:`second_route`.
    """

    def __init__(self, learned: float = 0.5, full: float = 0.25,
                 low: float = 0.3, sandwich: bool = False,
                 high: float = 1.0):
        if not (0 <= learned <= 1 and 0 <= full <= 1
                and learned + full <= 1):
            raise ValueError('budget_sampling takes probabilities learned and '
                             f'full that sum to at most 1, got learned='
                             f'{learned}, full={full}')
        if not 0 < low < high <= 1:
            raise ValueError(f'budget_sampling takes 0 < low < high <= 1, '
                             f'got low={low}, high={high}')
        self.learned, self.full = learned, full
        self.low, self.high = low, high
        self.sandwich = bool(sandwich)
        self._second = False

    @contextmanager
    def second_route(self) -> Iterator[None]:
        """The second forward of a sandwich iteration draws a fixed route."""
        self._second = True
        try:
            yield
        finally:
            self._second = False

    def draw(self, iteration: Optional[int] = None,
             minimum: float = 0.) -> Optional[float]:
        """The budget of ``iteration`` (the runner's now when None):
        ``LEARNED``, ``FULL``, or a fixed budget in ``[minimum, FULL]``."""
        if self.sandwich and not self._second:
            return LEARNED
        step = current_iter() if iteration is None else iteration
        rng = random.Random(0x5eed_b0d6 ^ step)
        u = rng.random()
        learned = 0. if self.sandwich else self.learned
        if u < learned:
            return LEARNED
        if u < learned + self.full:
            return FULL
        low = max(self.low, minimum)
        high = max(self.high, low)
        return min(FULL, low + (high - low) * rng.random())


def build_budget_sampler(cfg: Optional[dict]) -> Optional[BudgetSampler]:
    """:class:`BudgetSampler` from ``budget_sampling`` (None: the learned
    route in every iteration, the single-target recipe)."""
    if cfg is None:
        return None
    known = {'learned', 'full', 'low', 'high', 'sandwich'}
    unknown = set(cfg) - known
    if unknown:
        raise KeyError(f'budget_sampling takes {", ".join(sorted(known))}, '
                       f'got {sorted(unknown)}')
    return BudgetSampler(**cfg)
