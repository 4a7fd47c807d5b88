"""Counting what makes a forward wait for the device (issue 19).

On a GPU the host queues kernels ahead of the device; an op that copies a
value to the host (``.item()``, ``int(t)``, ``bool(t)``, ``.tolist()``) or
whose output size depends on the data (``nonzero``, ``masked_select``,
``repeat_interleave`` with a tensor of counts, ``unique``, ``bincount``)
stalls that queue until the device has caught up. On a CPU nothing waits, but
the same ops run, so they can be counted here: ``tolist`` at the Python level
(it reads memory without an aten op), the rest at the dispatcher.

    with HostSyncCounter() as syncs:
        backbone(images)
    syncs.total, syncs.counts, syncs.places
"""
import traceback
from collections import Counter
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

# aten ops (overload packets) that read a value on the host or size their
# output by the data; ``item`` / ``int`` / ``bool`` / ``float`` of a tensor
# all reach ``_local_scalar_dense``
SYNC_OPS = frozenset({
    '_local_scalar_dense', 'nonzero', 'masked_select', 'unique_dim',
    '_unique', '_unique2', 'unique_consecutive', 'equal', 'bincount'
})
PACKAGE = str(Path(__file__).resolve().parents[1])


def _data_dependent(func, args) -> str:
    """The name to count ``func`` under, or '' when it does not sync."""
    name = func.overloadpacket.__name__
    if name == 'repeat_interleave':  # with a tensor of counts, not an int
        counts = args[1] if len(args) > 1 else args[0]
        return name if isinstance(counts, torch.Tensor) else ''
    if name in ('index', 'index_put', 'index_put_'):  # x[mask]: a nonzero
        masks = [i for i in args[1] if isinstance(i, torch.Tensor)
                 and i.dtype == torch.bool]
        return f'{name} (bool mask)' if masks else ''
    return name if name in SYNC_OPS else ''


class _Dispatch(TorchDispatchMode):

    def __init__(self, record):
        super().__init__()
        self.record = record

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = _data_dependent(func, args)
        if name:
            self.record(name)
        return func(*args, **(kwargs or {}))


class _Function(TorchFunctionMode):

    def __init__(self, record):
        super().__init__()
        self.record = record

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, '__name__', None) == 'tolist':
            self.record('tolist')
        return func(*args, **(kwargs or {}))


class HostSyncCounter:
    """Counts the host-synchronising ops run inside the ``with`` block:
    ``counts`` by op, ``places`` by op and the innermost line of this package
    that ran it (``'op file:line'``), ``total``."""

    def __init__(self):
        self.counts = Counter()
        self.places = Counter()
        self._modes = (_Function(self._record), _Dispatch(self._record))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _record(self, op: str) -> None:
        self.counts[op] += 1
        ours = [f for f in traceback.extract_stack()
                if f.filename.startswith(PACKAGE)
                and not f.filename.endswith('host_sync.py')]
        if ours:
            where = Path(ours[-1].filename).relative_to(PACKAGE)
            self.places[f'{op} {where}:{ours[-1].lineno}'] += 1

    def __enter__(self):
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        return False
