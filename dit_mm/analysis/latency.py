"""Wall-clock latency and peak memory of named callables.

Timing (:func:`interleaved_latency`): untimed warm-up rounds, then rounds
that call every configuration once, round-robin and rotated each round, so
that all of them see the same drift of a shared machine's load; garbage
collection off while timing; on a GPU a ``synchronize`` before the clock
starts and before it stops. :func:`latency_stats` summarises the seconds of
one configuration (median, spread, throughput), :func:`paired_ratio` compares
two configurations round by round.

Peak memory (:func:`peak_memory`), measured in a separate untimed call: the
most bytes the call had live at once *above* what was live before it
(activations, workspaces, outputs; not the weights or the input, which the
caller adds with :func:`tensor_bytes`).

- CUDA: ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats``, minus ``memory_allocated`` before the call.
- CPU: the allocation and free events of torch's CPU allocator, recorded by
  ``torch.profiler.profile(profile_memory=True)``, summed in time order; the
  peak of that running sum (:func:`peak_live_bytes`). Memory allocated before
  the call and freed inside it does not lower the peak (the profiler reports
  no event for it). Allocations made outside torch's allocator (oneDNN /
  MKL internal scratch, thread stacks) are not seen.
"""
import argparse
import gc
import statistics
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

CPU_DEVICE_TYPES = ('CPU', 'MKLDNN', 'IDEEP')


def count_arg(minimum: int):
    """An argparse type for a count of at least ``minimum``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f'must be >= {minimum}, got '
                                             f'{text}')
        return value
    return parse


def add_timing_args(parser: argparse.ArgumentParser, repeats: int = 10,
                    warmup: int = 2) -> None:
    """The options every timing tool takes: ``--repeats``, ``--warmup``,
    ``--threads`` and ``--seed``."""
    parser.add_argument('--repeats', type=count_arg(1), default=repeats,
                        help='timed round-robin rounds')
    parser.add_argument('--warmup', type=count_arg(0), default=warmup,
                        help='untimed rounds before timing')
    parser.add_argument('--threads', type=count_arg(1), default=None,
                        help="torch threads (default: leave torch's setting)")
    parser.add_argument('--seed', type=int, default=0)


def interleaved_latency(fns: Dict[str, Callable[[], object]], repeats: int,
                        warmup: int = 1,
                        synchronize: Optional[Callable[[], None]] = None,
                        progress: bool = False) -> Dict[str, List[float]]:
    """Seconds per call of every callable, measured round-robin.

    ``warmup`` untimed rounds first; then ``repeats`` rounds, each calling
    every callable once; round ``r`` starts at the ``r``-th callable (a
    rotation, so none is always first after the others). Garbage collection is
    off while timing. ``synchronize`` (e.g. ``torch.cuda.synchronize``) is
    called before the clock starts and before it stops. ``progress`` shows an
    mmengine progress bar over the rounds (warm-up included).
    """
    names = list(fns)
    sync = synchronize or (lambda: None)
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(warmup + repeats)
    for _ in range(warmup):
        for name in names:
            fns[name]()
        if bar is not None:
            bar.update()
    times: Dict[str, List[float]] = {name: [] for name in names}
    gc.collect()
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                sync()
                start = time.perf_counter()
                fns[name]()
                sync()
                times[name].append(time.perf_counter() - start)
            if bar is not None:
                bar.update()
    finally:
        if gc_was_on:
            gc.enable()
        if bar is not None:
            bar.file.write('\n')
    return times


def paired_ratio(times: Dict[str, List[float]], num: str, den: str) -> float:
    """Median over rounds of ``times[num][r] / times[den][r]``: a ratio that
    slow drifts of the machine's load (same round, similar load) cancel in."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def latency_stats(times: Sequence[float], batch_size: int = 1) -> dict:
    """Median, spread and throughput of one configuration's seconds per call
    (values in ms): ``median_ms``, ``mean_ms``, ``min_ms``, ``max_ms``,
    ``p10_ms``, ``p90_ms``, ``q1_ms``, ``q3_ms``, ``iqr_ms`` (quantiles with
    linear interpolation between the measurements), ``images_per_s``
    (``batch_size`` / median) and ``repeats``."""
    if not times:
        raise ValueError('no times to summarise')
    ms = sorted(t * 1e3 for t in times)
    if len(ms) == 1:
        deciles = quartiles = [ms[0]] * 9
    else:
        deciles = statistics.quantiles(ms, n=10, method='inclusive')
        quartiles = statistics.quantiles(ms, n=4, method='inclusive')
    median = statistics.median(ms)
    return dict(
        median_ms=median, mean_ms=statistics.fmean(ms), min_ms=ms[0],
        max_ms=ms[-1], p10_ms=deciles[0], p90_ms=deciles[-1],
        q1_ms=quartiles[0], q3_ms=quartiles[-1],
        iqr_ms=quartiles[-1] - quartiles[0],
        images_per_s=batch_size / (median / 1e3), repeats=len(ms))


def cuda_synchronizer(device) -> Optional[Callable[[], None]]:
    """``torch.cuda.synchronize`` of ``device`` for a CUDA device, else
    None."""
    device = torch.device(device)
    if device.type != 'cuda':
        return None
    return lambda: torch.cuda.synchronize(device)


def peak_live_bytes(events: Iterable[Tuple[int, int]]) -> int:
    """The peak of the running sum of ``(time, bytes)`` events (allocations
    positive, frees negative) taken in time order (ties in the given order),
    counted from zero: the most bytes live at once."""
    live = peak = 0
    for _, nbytes in sorted(events, key=lambda event: event[0]):
        live += nbytes
        peak = max(peak, live)
    return peak


def cpu_peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes live above the start during ``fn()`` on the CPU, from the
    profiler's allocator events (see the module docstring)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU],
                 profile_memory=True) as prof:
        fn()
    events = prof.profiler.kineto_results.events()
    return peak_live_bytes(
        (event.start_ns(), event.nbytes()) for event in events
        if event.name() == '[memory]'
        and str(event.device_type()).split('.')[-1] in CPU_DEVICE_TYPES)


def cuda_peak_memory(fn: Callable[[], object], device='cuda') -> int:
    """Peak bytes allocated above the start during ``fn()`` on a CUDA
    device (``max_memory_allocated`` after ``reset_peak_memory_stats``)."""
    device = torch.device(device)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - before)


def peak_memory(fn: Callable[[], object], device='cpu') -> int:
    """Peak bytes live above the start during one call of ``fn`` on
    ``device`` (CUDA: the allocator's peak statistics; CPU: profiler memory
    events). Garbage collection is off during the call."""
    gc.collect()
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        if torch.device(device).type == 'cuda':
            return cuda_peak_memory(fn, device)
        return cpu_peak_memory(fn)
    finally:
        if gc_was_on:
            gc.enable()


def tensor_bytes(*items) -> int:
    """Bytes of the given modules' parameters and buffers and of the given
    tensors (a tensor shared between items is counted once)."""
    seen, total = set(), 0
    for item in items:
        if isinstance(item, nn.Module):
            tensors = list(item.parameters()) + list(item.buffers())
        else:
            tensors = [item]
        for tensor in tensors:
            key = (tensor.data_ptr(), tensor.numel(), tensor.dtype)
            if key in seen:
                continue
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total
