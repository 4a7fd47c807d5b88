"""Executed FLOPs of a whole task model, per image, on its static route and
on its dynamic one, split by module group, backbone stage and op kind.

Images run one at a time (batch 1), so each image's own routing is measured,
through the model's data preprocessor (not counted) and ``mode='predict'``
(counted: post-processing is part of the cost).
"""
import contextlib
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from mmengine.utils import ProgressBar
from torch import nn

from .flop_counter import (FlopCounter, count_flops, module_groups, stages,
                           subtotal)
from .task_model import budget, is_dynamic, predict_preprocessed, preprocess

# Transformer blocks of the backbones measured here: ours and the static
# peers' (mmdet PVTv2, mmpretrain Swin-v2, mmseg / mmpretrain ViT).
BLOCK_TYPES = ('RoutedPVTBlock', 'PVTEncoderLayer', 'RoutedSwinV2Block',
               'SwinBlockV2', 'TransformerEncoderLayer')


@dataclass
class ImageFlops:
    """One image's MACs: ``parts`` maps a part name (``'total'``, a module
    group, a backbone stage, ``'backbone blocks'``) to its count; ``kinds``
    the op kinds; ``own_account`` the backbone's own FLOPs figure
    (``routing.flops``) when it reports one."""
    parts: Dict[str, int]
    kinds: Dict[str, int]
    own_account: Optional[float] = None
    input_shape: Optional[tuple] = None


@dataclass
class FlopsReport:
    """Per-image results of one route (static or dynamic) and what the
    counter left out over all of them."""
    images: List[ImageFlops] = field(default_factory=list)
    left_out: Dict[str, int] = field(default_factory=dict)
    outside: Dict[str, int] = field(default_factory=dict)

    def mean(self, part: str) -> float:
        return statistics.fmean(i.parts.get(part, 0) for i in self.images)

    def mean_kind(self, kind: str) -> float:
        return statistics.fmean(i.kinds.get(kind, 0) for i in self.images)

    def spread(self, part: str = 'total') -> tuple:
        values = [i.parts.get(part, 0) for i in self.images]
        return min(values), max(values)

    @property
    def kinds(self) -> List[str]:
        return sorted({k for i in self.images for k in i.kinds})

    def mean_own_account(self) -> Optional[float]:
        values = [i.own_account for i in self.images
                  if i.own_account is not None]
        return statistics.fmean(values) if values else None


def part_names(model: nn.Module) -> List[str]:
    """The rows of a report, in order: the total, each module group, and the
    backbone's stages under it."""
    names = ['total']
    for group in module_groups(model):
        names.append(group)
        if group == 'backbone':
            names.extend(stages(model.backbone, 'backbone'))
            names.append('backbone blocks')
    return names


def block_names(model: nn.Module) -> List[str]:
    """Names of the backbone's transformer blocks (:data:`BLOCK_TYPES`)."""
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        return []
    return [f'backbone.{name}' for name, m in backbone.named_modules()
            if type(m).__name__ in BLOCK_TYPES]


def image_flops(counter: FlopCounter, names: Sequence[str],
                blocks: Sequence[str]) -> Dict[str, int]:
    parts = {'total': counter.total}
    for name in names:
        if name not in ('total', 'backbone blocks'):
            parts[name] = subtotal(counter.by_module, name)
    if blocks:
        parts['backbone blocks'] = sum(
            subtotal(counter.by_module, b) for b in blocks)
    return parts


def measure(model: nn.Module, batches: Sequence[dict], route='config',
            progress: bool = True) -> FlopsReport:
    """Executed MACs of ``model`` on every image of ``batches`` (each a data
    dict of one image) at budget ``route`` (``'config'``: as the model is;
    see :func:`task_model.budget`)."""
    names, blocks = part_names(model), block_names(model)
    report = FlopsReport()
    left_out, outside = {}, {}
    bar = ProgressBar(len(batches)) if progress else None
    backbone = getattr(model, 'backbone', None)
    with budget(model, route):
        for batch in batches:
            if len(batch['inputs']) != 1:
                raise ValueError('measure FLOPs image by image: batches of '
                                 f'one image, got {len(batch["inputs"])}')
            data = preprocess(model, batch)
            record = backbone.recording() if is_dynamic(backbone) else None
            with record or contextlib.nullcontext():
                counter = count_flops(
                    model, lambda: predict_preprocessed(model, data))
            own = None if record is None else float(record.stats.flops[0])
            report.images.append(ImageFlops(
                image_flops(counter, names, blocks), dict(counter.by_kind),
                own, tuple(data['inputs'].shape[-2:])))
            for name, calls in counter.left_out.items():
                left_out[name] = left_out.get(name, 0) + calls
            for name, calls in counter.outside.items():
                outside[name] = outside.get(name, 0) + calls
            if bar is not None:
                bar.update()
    if bar is not None:
        print()
    report.left_out, report.outside = left_out, outside
    return report


def static_and_dynamic(model: nn.Module, batches: Sequence[dict],
                       route='config', progress: bool = True):
    """``(static, dynamic)`` reports: the static route (``set_budget(1.0)``)
    and ``route``; for a backbone without a budget, one report for both."""
    if not is_dynamic(getattr(model, 'backbone', None)):
        report = measure(model, batches, 'config', progress)
        return report, report
    return (measure(model, batches, 1.0, progress),
            measure(model, batches, route, progress))


