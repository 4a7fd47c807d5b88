"""Training-time schedules read from the runner's iteration.

The runner writes its iteration into mmengine's message hub before every
training step and restores it on ``--resume``, so a schedule computed from it
continues where an interrupted run stopped, with no state of its own.
"""
from typing import Optional

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


def check_schedule(schedule: Optional[dict], name: str,
                   default_start: Optional[float] = None) -> Optional[dict]:
    """``schedule`` as ``dict(start, begin, end)`` (``begin`` 0 and ``start``
    ``default_start`` when not given), or ``None``; other keys are errors."""
    if schedule is None:
        return None
    unknown = set(schedule) - {'start', 'begin', 'end'}
    required = {'end'} if default_start is not None else {'start', 'end'}
    if unknown or not required <= set(schedule):
        raise KeyError(f'{name} takes start, begin and end '
                       f'({" and ".join(sorted(required))} required), got '
                       f'{sorted(schedule)}')
    defaults = dict(begin=0)
    if default_start is not None:
        defaults['start'] = default_start
    return dict(defaults, **schedule)


def scheduled(final: float, schedule: Optional[dict], training: bool) -> float:
    """A value that follows ``schedule`` (from its ``start`` to ``final``) in
    training and is ``final`` otherwise."""
    if not training or schedule is None:
        return final
    return linear_ramp(schedule['start'], final, schedule['begin'],
                       schedule['end'], current_iter())
