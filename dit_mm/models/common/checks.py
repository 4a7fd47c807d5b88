"""Input and budget checks every dynamic backbone makes, with messages that
name the problem."""
import difflib
import inspect
import math
from contextlib import contextmanager
from typing import Iterable, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor


class StockArgumentError(AssertionError, ValueError):
    """A bad argument of a stock network's constructor. An
    ``AssertionError``, as the stock OpenMMLab classes raise (their checks
    assert), so code written for them catches ours; a ``ValueError`` too."""


class UnknownArchError(AssertionError, KeyError):
    """An arch name the stock class does not know (it asserts): also a
    ``KeyError``, a missing entry of the arch table."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ''


def stock_check(condition: bool, message: str) -> None:
    """Raise :class:`StockArgumentError` with ``message`` unless
    ``condition`` (an ``assert`` that survives ``python -O``)."""
    if not condition:
        raise StockArgumentError(message)


def check_only_built(builds: str, **arguments) -> None:
    """Each stock argument ``name=(value, built)`` must be the one setting
    that is built (``builds``: 'DiT builds PVTv2', say); another raises
    :class:`StockArgumentError` naming it."""
    for name, (value, built) in arguments.items():
        stock_check(value == built, f'{builds} with {name}={built} only, got '
                    f'{value} (left from a stock config\'s other backbone? '
                    'replace it: backbone=dict(_delete_=True, type=...))')


def check_keywords(module, given: Iterable[str]) -> None:
    """Keywords no ``__init__`` of ``module``'s classes takes raise the
    ``TypeError`` Python would, naming ``module``'s class (not the base class
    the keyword reached) and the closest keyword it takes."""
    taken = set()
    for cls in type(module).__mro__:
        if '__init__' in vars(cls):
            taken |= {name for name, param in inspect.signature(
                cls.__init__).parameters.items() if param.kind in (
                    param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)}
    taken.discard('self')
    unknown = [key for key in given if key not in taken]
    if unknown:
        named = []
        for key in unknown:
            close = difflib.get_close_matches(key, taken, n=1)
            named.append(repr(key) + (f' (did you mean {close[0]!r}?)'
                                      if close else ''))
        raise TypeError(f'{type(module).__name__} got unexpected keyword '
                        f'argument(s) {", ".join(named)}')


def check_out_indices(out_indices: Union[int, Sequence[int]], stages: int
                      ) -> Tuple[int, ...]:
    """``out_indices`` as the stock classes take it: an index or several,
    negative ones counted from the end; each must name a stage."""
    indices = [out_indices] if isinstance(out_indices, int) else \
        list(out_indices)
    stock_check(len(indices) > 0 and all(
        isinstance(i, int) and -stages <= i < stages for i in indices),
        f'out_indices must name stages 0..{stages - 1} (or count back from '
        f'-1), got {out_indices}')
    return tuple(i % stages for i in indices)


def check_images(x: Tensor, owner: str, in_channels: int) -> Tensor:
    """``x`` must be a non-empty ``(B, in_channels, H, W)`` batch of
    non-empty images. Any size is taken: the patch embeddings pad (ceil),
    so a one-pixel image has a cell on every grid, as in the stock
    networks. Returns whether every value is finite, still on ``x``'s
    device (reading it is a host sync: :func:`checked_images` chooses
    when)."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f'{owner} expects (B, {in_channels}, H, W) images, '
                         f'got shape {tuple(x.shape)}')
    if x.shape[0] == 0:
        raise ValueError(f'{owner} got an empty batch (0 images)')
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f'{owner} got empty images of size '
                         f'{tuple(x.shape[2:])}')
    return torch.isfinite(x).all()


def _require_finite(finite: Tensor, owner: str) -> None:
    if not finite:
        raise ValueError(f'{owner} input contains NaN or infinite values')


@contextmanager
def checked_images(x: Tensor, owner: str, in_channels: int,
                   defer: Optional[bool] = None) -> Iterator[None]:
    """:func:`check_images` around a forward. The finiteness test is read
    before the forward on a CPU, and after it when ``defer`` (default: on a
    GPU), once the forward has queued its kernels: the one host sync of the
    check then waits at the end instead of stalling the device before any
    work (issue 19). A bad batch raises the same error either way."""
    finite = check_images(x, owner, in_channels)
    if defer is None:
        defer = x.is_cuda
    if not defer:
        _require_finite(finite, owner)
    try:
        yield
    finally:  # a NaN the forward tripped over is named as the cause
        if defer:
            _require_finite(finite, owner)


def check_batch(data, owner: str) -> None:
    """A model step's data batch (mmengine's collated dict with ``inputs``,
    or a list of samples) must hold at least one image: the libraries' data
    preprocessors otherwise fail on it with an error that names nothing."""
    if isinstance(data, dict):
        if 'inputs' not in data:
            return  # not a batch layout this check knows: leave it alone
        data = data['inputs']
    if data is None:
        raise ValueError(f'{owner} got no batch (None instead of images)')
    try:
        size = len(data)
    except TypeError:  # a 0-dim tensor or another object: not ours to judge
        return
    if size == 0:
        raise ValueError(f'{owner} got an empty batch (0 images); a data '
                         'loader yields none, so check the code that made it')


def check_budget(budget: Optional[float]) -> Optional[float]:
    """``budget`` as a float in (0, 1], or ``None`` (learned decisions)."""
    if budget is None:
        return None
    budget = float(budget)
    if not 0 < budget <= 1 or math.isnan(budget):
        raise ValueError(f'budget must be in (0, 1] or None, got {budget}')
    return budget
