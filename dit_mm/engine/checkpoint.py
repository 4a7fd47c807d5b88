"""Load mmengine checkpoints on torch >= 2.6 with ``weights_only`` kept on.

mmengine 0.10.7 calls ``torch.load`` with torch's default, which became
``weights_only=True`` in torch 2.6; its own full checkpoints (message hub,
numpy arrays in the logs) then fail to load, so ``--resume`` and ``load_from``
break. Turning ``weights_only`` off would let any checkpoint run code. Instead
the local-file loader of mmengine's ``CheckpointLoader`` is replaced by one that
allows exactly the objects mmengine itself saves, and refuses any other pickled
object with an error that names it.
"""
import os.path as osp
import pickle
from typing import List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object outside the allowed set."""


def _numpy_globals() -> List[object]:
    """numpy's array/scalar reconstruction, as found in mmengine's log buffers."""
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    dtype_classes = [
        type(np.dtype(t))
        for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                  np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                  np.float64)
    ]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype
            ] + dtype_classes


# Filled into HistoryBuffer._statistics_methods only once a buffer exists.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def history_buffer_getattr(owner, name):
    """Stands in for ``builtins.getattr`` while unpickling.

    A HistoryBuffer pickles its statistics methods as ``getattr(HistoryBuffer,
    'mean')``; allowing the real getattr would hand a crafted file any
    attribute of any allowed object, so only those look-ups are served.
    """
    if owner is HistoryBuffer and (name in HISTORY_BUFFER_STATISTICS or
                                   name in HistoryBuffer._statistics_methods):
        return getattr(owner, name)
    raise UnsafeCheckpointError(
        f'checkpoint asks for getattr({owner!r}, {name!r}); only the '
        'statistics methods of mmengine\'s HistoryBuffer are allowed')


def allowed_globals() -> List[object]:
    """Every non-tensor global that an mmengine runner puts in a checkpoint."""
    return [HistoryBuffer, (history_buffer_getattr, 'builtins.getattr')
            ] + _numpy_globals()


def _allowed_names() -> set:
    return {
        g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
        for g in allowed_globals()
    }


def _unsafe_globals(filename: str) -> List[str]:
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # the file may be too broken to list
        return []
    allowed = _allowed_names()
    return [name for name in found if name not in allowed]


def _unpickler_reason(err: Exception) -> str:
    """The one line of torch's long weights_only message that says what failed."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if 'WeightsUnpickler error:' in line:
            rest = line.split('WeightsUnpickler error:', 1)[1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else line)
    return 'an object torch does not name'


def _not_a_checkpoint(filename: str, err: Exception) -> RuntimeError:
    return RuntimeError(f'checkpoint {filename} is not a torch checkpoint '
                        f'(corrupt or another format): '
                        f'{type(err).__name__}: {err}')


def load_from_local_safely(filename: str, map_location=None) -> dict:
    """``torch.load`` with ``weights_only=True`` plus mmengine's own objects."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found')
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        names = _unsafe_globals(filename)
        if not names and 'Unsupported operand' in str(err):
            # not a pickle that names something unsafe: bytes that are none
            raise _not_a_checkpoint(filename, err) from err
        names = names or [_unpickler_reason(err)]
        raise UnsafeCheckpointError(
            f'refusing to load checkpoint {filename}: it holds pickled '
            f'object(s) of type {", ".join(names)}, which are none of the '
            'tensors, containers and mmengine objects a checkpoint is made '
            'of; unpickling them could run arbitrary code. If you trust the '
            'file, load it yourself with torch.load(..., weights_only=False) '
            'and save only its state_dict.') from err
    except RuntimeError as err:
        if 'zip archive' in str(err) or 'central directory' in str(err):
            raise RuntimeError(
                f'checkpoint {filename} is truncated or corrupt and cannot be '
                f'read ({err})') from err
        raise
    except (IndexError, KeyError, EOFError, ValueError,
            AttributeError) as err:
        # bytes that are no pickle, read as opcodes, fail the weights-only
        # unpickler wherever they lead it (b'a...' pops an empty stack)
        raise _not_a_checkpoint(filename, err) from err


def install() -> None:
    """Make mmengine load local checkpoints through :func:`load_from_local_safely`."""
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_safely, force=True)
