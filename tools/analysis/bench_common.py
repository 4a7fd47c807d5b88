"""Helpers shared by the analysis scripts beside this file (not a script).

Builds a DiT backbone and the static baseline, mmdet's
``PyramidVisionTransformerV2`` of the same arch, with the same weights; times
callables interleaved round-robin (the only fair way on a shared, noisy
machine: every configuration sees the same load drift); formats markdown
tables. The scripts import it as ``bench_common`` (their folder is on
``sys.path`` when they run).
"""
import gc
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import MMLogger

import dit_mm  # noqa: F401  (registers modules)
from dit_mm.models.backbones.dit import DiT
from dit_mm.models.backbones.dit_archs import resolve_arch
from dit_mm.models.backbones.pvt_weights import load_pvt_weights


def forward_calls(dynamic, static, x):
    """``(static_call, dynamic_call)``: a no-grad forward of the static model
    (PVTv2, ViT) on ``x``, and a factory of no-grad forwards of the dynamic one
    at a given budget, for timing."""

    def dynamic_call(budget):
        def call():
            dynamic.set_budget(budget)
            with torch.no_grad():
                dynamic(x)
        return call

    def static_call():
        with torch.no_grad():
            static(x)

    return static_call, dynamic_call


def write_json(path: str, data: dict) -> None:
    """``data`` as indented JSON at ``path`` (folders made as needed)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(f'\nwrote {out}')


def ratio_exit_code(key: Optional[dict], max_ratio: Optional[float]) -> int:
    """1 (with a message) when the lowest budget's median latency ratio
    ``key['median_ratio']`` exceeds ``max_ratio``; 0 otherwise."""
    if key is None or max_ratio is None or key['median_ratio'] <= max_ratio:
        return 0
    print(f'FAIL: budget {key["budget"]:g} takes {key["median_ratio"]:.3f} of '
          f'budget 1.0\'s time, more than --max-ratio {max_ratio}',
          file=sys.stderr)
    return 1


def quiet_mmengine() -> None:
    """Only errors from mmengine's logger (its 'no pre-trained weights' and
    'unsupported operator' warnings are expected here)."""
    MMLogger.get_current_instance().setLevel(logging.ERROR)


def pvt_kwargs(arch: str) -> dict:
    """mmdet ``PyramidVisionTransformerV2`` arguments of DiT's ``arch``."""
    setting = resolve_arch(arch)
    return dict(
        embed_dims=setting['embed_dims'][0],
        num_layers=setting['depths'],
        num_heads=setting['num_heads'],
        sr_ratios=setting['sr_ratios'],
        mlp_ratios=setting['mlp_ratios'],
        drop_path_rate=0.1)


def build_pvt(arch: str) -> torch.nn.Module:
    """mmdet's PVTv2 (the static baseline), PVTv2-initialised, in eval mode."""
    from mmdet.models.backbones import PyramidVisionTransformerV2
    quiet_mmengine()
    pvt = PyramidVisionTransformerV2(**pvt_kwargs(arch))
    pvt.init_weights()
    return pvt.eval()


def build_pair(arch: str, seed: int = 0) -> Tuple[DiT, torch.nn.Module]:
    """A DiT and mmdet's PVTv2 of ``arch`` carrying the same weights (DiT's
    routing gates keep their initial values), both in eval mode."""
    torch.manual_seed(seed)
    pvt = build_pvt(arch)
    dit = DiT(arch)
    dit.init_weights()
    load_pvt_weights(dit, pvt.state_dict(), f'mmdet PVTv2-{arch}')
    return dit.eval(), pvt


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def max_route_difference(dit: DiT, pvt: torch.nn.Module,
                         x: torch.Tensor) -> float:
    """Largest absolute difference of DiT at ``set_budget(1.0)`` and PVTv2
    over all output maps (both carry the same weights: should be ~1e-5)."""
    budget = dit.budget
    dit.set_budget(1.0)
    try:
        ours, theirs = dit(x), pvt(x)
    finally:
        dit.set_budget(budget)
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs))


def interleaved_latency(fns: Dict[str, Callable[[], object]], repeats: int,
                        warmup: int = 1) -> Dict[str, List[float]]:
    """Seconds per call of every callable, measured round-robin.

    ``warmup`` untimed rounds first; then ``repeats`` rounds, each calling
    every callable once; round ``r`` starts at the ``r``-th callable (a
    rotation, so none is always first after the others). Garbage collection is
    off while timing.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    gc.collect()
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                fns[name]()
                times[name].append(time.perf_counter() - start)
    finally:
        if gc_was_on:
            gc.enable()
    return times


def paired_ratio(times: Dict[str, List[float]], num: str, den: str) -> float:
    """Median over rounds of ``times[num][r] / times[den][r]``: a ratio that
    slow drifts of the machine's load (same round, similar load) cancel in."""
    return statistics.median(a / b for a, b in zip(times[num], times[den]))


def load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not on every platform
        return None


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; numbers as they were formatted by the caller."""
    def line(cells):
        return '| ' + ' | '.join(str(c) for c in cells) + ' |'
    out = [line(headers), line(['---'] * len(headers))]
    out.extend(line(row) for row in rows)
    return '\n'.join(out)


def fmt(value: Optional[float], digits: int = 3) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def environment(threads: Optional[int]) -> dict:
    """Sets torch's threads when given; describes what the run used."""
    if threads is not None:
        torch.set_num_threads(threads)
    return dict(torch=torch.__version__, threads=torch.get_num_threads(),
                cpu_count=os.cpu_count(), load_average_start=load_average())
