"""Routing pictures of the first val (and test) images, written to every
visualisation backend of the run while it validates.

``custom_hooks=[dict(type='RoutingVisualizationHook', interval=1,
max_images=4)]`` draws, at the 1st, ``1 + interval``-th, ``1 + 2 *
interval``-th ... validation (and test), the pictures of the first
``max_images`` images the loop sees (the val set's first images with its
unshuffled sampler) as ``tools/visualize_routing.py`` draws them
(:func:`dit_mm.visualization.draw_routing_overlay`), each over the image read
from its ``img_path``, and hands them to ``runner.visualizer.add_image(
'routing_<image stem>', picture, step=runner.iter)``; mmengine's
``LocalVisBackend`` writes them as
``<work_dir>/<timestamp>/vis_data/vis_image/routing_<stem>_<iter>.png``.
Only the main process draws. A backbone that reports no routing, or one that
runs more than once on a batch (sliding-window test), gets one warning and no
pictures.
"""
import logging
from pathlib import Path
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..models.common.dynamic import DynamicBackbone
from ..models.routing import ForwardRecord
from ..registry import register_hook
from ..visualization.inference import (ran_once_message, read_image,
                                       sample_picture)

MODES = ('val', 'test')


@register_hook
class RoutingVisualizationHook(Hook):
    """Draw the routing of the first ``max_images`` images of every
    ``interval``-th validation and test (the first one included) into the
    runner's visualiser. ``alpha``: weight of the routing colours."""
    priority = 'LOW'

    def __init__(self, interval: int = 1, max_images: int = 4,
                 alpha: float = 0.5):
        for name, value in dict(interval=interval,
                                max_images=max_images).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be an int >= 1, got {value!r}')
        if not 0 < alpha <= 1:
            raise ValueError(f'alpha must be in (0, 1], got {alpha}')
        self.interval = interval
        self.max_images = max_images
        self.alpha = alpha
        self._loops = dict.fromkeys(MODES, 0)
        self._record: Optional[ForwardRecord] = None
        self._drawn = 0
        self._warned = set()

    # ------------------------------------------------------------ stages
    def _before_epoch(self, runner, mode: str = 'train') -> None:
        if mode not in MODES:
            return
        self._loops[mode] += 1
        if (self._loops[mode] - 1) % self.interval or not is_main_process():
            return
        backbone = self._backbone(runner)
        if backbone is not None:
            self._record = backbone.recording()
            self._drawn = 0

    def _before_iter(self, runner, batch_idx: int, data_batch=None,
                     mode: str = 'train') -> None:
        if self._record is not None:
            self._record.clear()

    def _after_iter(self, runner, batch_idx: int, data_batch=None,
                    outputs=None, mode: str = 'train') -> None:
        if self._record is None or mode not in MODES:
            return
        samples = outputs if _have_metainfo(outputs) else \
            (data_batch or {}).get('data_samples')
        routing = self._record.stats
        calls = len(self._record.shapes)
        if routing is None:
            return self._give_up(runner, 'no-routing',
                                 'the backbone reported no routing')
        if calls != 1:
            return self._give_up(runner, 'calls', ran_once_message(calls))
        if not _have_metainfo(samples) or len(samples) != len(routing.flops):
            return self._give_up(
                runner, 'batch', f'the routing is of {len(routing.flops)} images and '
                f'the batch has {len(samples or [])} data samples')
        for index, sample in enumerate(samples):
            if self._drawn >= self.max_images:
                break
            self._draw(runner, routing, index, sample.metainfo)
        if self._drawn >= self.max_images:
            self._close()

    def _after_epoch(self, runner, mode: str = 'train') -> None:
        if mode in MODES:
            self._close()

    # ----------------------------------------------------------- helpers
    def _draw(self, runner, routing, index: int, meta: dict) -> None:
        path = meta.get('img_path')
        try:
            image = read_image(path)
        except (ValueError, TypeError):
            self._warn(runner, 'image', f'cannot read the val image {path!r} '
                       '(data sample metainfo img_path); not drawn')
            return
        picture = sample_picture(image, routing, index, meta,
                                 self._record.shapes[0])
        runner.visualizer.add_image(f'routing_{Path(path).stem}', picture,
                                    step=runner.iter)
        self._drawn += 1

    def _backbone(self, runner):
        """The model's backbone if it reports its routing, else None (after
        one warning)."""
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        backbone = getattr(model, 'backbone', None)
        if isinstance(backbone, DynamicBackbone):
            return backbone
        self._warn(runner, 'no-routing', f'the backbone {type(backbone).__name__} reports '
                   'no routing; nothing is drawn')
        return None

    def _give_up(self, runner, kind: str, why: str) -> None:
        self._warn(runner, kind, f'no routing pictures this time: {why}')
        self._close()

    def _warn(self, runner, kind: str, message: str) -> None:
        """Log ``message``, once a run for each ``kind`` of trouble."""
        if kind not in self._warned:
            print_log(f'RoutingVisualizationHook: {message}',
                      logger=runner.logger, level=logging.WARNING)
            self._warned.add(kind)

    def _close(self) -> None:
        if self._record is not None:
            self._record.close()
            self._record = None


def _have_metainfo(samples) -> bool:
    return isinstance(samples, (list, tuple)) and bool(samples) and all(
        hasattr(sample, 'metainfo') for sample in samples)
