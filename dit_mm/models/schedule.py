"""Training-time schedules read from the runner's iteration.

The runner writes its iteration into mmengine's message hub before every
training step and restores it on ``--resume``, so a schedule computed from it
continues where an interrupted run stopped, with no state of its own.
"""
from mmengine.logging import MessageHub


def current_iter() -> int:
    """The runner's current training iteration (0 outside a runner)."""
    return int(MessageHub.get_current_instance().get_info('iter', 0))


def linear_ramp(start: float, end: float, begin_iter: int, end_iter: int,
                iteration: int) -> float:
    """``start`` until ``begin_iter``, then linearly to ``end`` at
    ``end_iter``, and ``end`` from then on (at once if ``end_iter <=
    begin_iter``)."""
    if iteration >= end_iter:
        return end
    if iteration <= begin_iter:
        return start
    return start + (end - start) * (iteration - begin_iter) / (end_iter -
                                                                begin_iter)
