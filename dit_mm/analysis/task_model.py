"""A config's whole model in eval mode, the batches it predicts on and the
budget it runs at: what the measuring tools (FLOPs, latency, budget sweeps)
share.

Every library (mmdet, mmseg, mmpretrain) is handled the same way: the model is
built by ``dit_mm.models.builder.build_task_model``, a batch is a data dict as
the val dataloader gives it (``inputs`` uint8 images, ``data_samples`` with
their metainfo), :func:`preprocess` runs the model's own data preprocessor and
:func:`predict_preprocessed` then ``mode='predict'``, so post-processing (NMS,
resizing the logits back) is part of what is measured, as it is of what a
user runs.
"""
import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from torch import nn

from ..registry import config_scope, config_scope_of
from ..models.common.dynamic import DynamicBackbone
from ..models.builder import model_cfg

DATA_SAMPLES = {
    'mmdet': ('mmdet.structures', 'DetDataSample'),
    'mmseg': ('mmseg.structures', 'SegDataSample'),
    'mmpretrain': ('mmpretrain.structures', 'DataSample'),
}


def data_sample_type(cfg: Config) -> type:
    module, name = DATA_SAMPLES[config_scope(cfg)]
    return getattr(__import__(module, fromlist=[name]), name)


def synthetic_batch(cfg: Config, shape: Sequence[int], batch_size: int = 1,
                    seed: int = 0) -> Dict[str, list]:
    """A data dict of ``batch_size`` random uint8 images of ``shape`` (H, W),
    each with the metainfo a test pipeline would give an image of that size
    (no resize: scale factor 1)."""
    height, width = (int(v) for v in shape)
    if height < 1 or width < 1:
        raise ValueError(f'shape must be positive (H, W), got {tuple(shape)}')
    if batch_size < 1:
        raise ValueError(f'batch size must be at least 1, got {batch_size}')
    generator = torch.Generator().manual_seed(seed)
    sample_type = data_sample_type(cfg)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(torch.randint(0, 256, (3, height, width),
                                    generator=generator, dtype=torch.uint8))
        samples.append(sample_type(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width),
            pad_shape=(height, width), scale_factor=(1.0, 1.0),
            flip=False, flip_direction=None)))
    return dict(inputs=inputs, data_samples=samples)


def _pair(value) -> tuple:
    if isinstance(value, int):
        return (value, value)
    return tuple(int(v) for v in value)


def config_input_shape(cfg: Config,
                     default: Sequence[int] = (512, 512)) -> tuple:
    """``((H, W), where)``: the size a test image reaches the model at, as
    the config says it: the sliding window of an mmseg ``test_cfg`` in
    ``slide`` mode, else the data preprocessor's ``size`` (mmseg's crop),
    else the test pipeline's crop (``CenterCrop``: mmpretrain) or its
    ``Resize`` scale (with ``keep_ratio``, the short and long bounds: mmdet's
    ``(1333, 800)`` gives 800 x 1333); ``default`` when none is found."""
    model = model_cfg(cfg)
    test_cfg = model.get('test_cfg') or {}
    if test_cfg.get('mode') == 'slide' and test_cfg.get('crop_size'):
        return _pair(test_cfg['crop_size']), 'model.test_cfg.crop_size (slide)'
    size = (model.get('data_preprocessor') or {}).get('size')
    if size:
        return _pair(size), 'model.data_preprocessor.size'
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader') or {}
    pipeline = (loader.get('dataset') or {}).get('pipeline') or []
    for step in reversed(pipeline):
        if 'Crop' in step.get('type', '') and step.get('crop_size'):
            return _pair(step['crop_size']), f"test pipeline {step['type']}"
    for step in reversed(pipeline):
        scale = step.get('scale')
        if step.get('type') == 'Resize' and scale:
            if isinstance(scale, int):
                return (scale, scale), 'test pipeline Resize'
            if step.get('keep_ratio'):
                return (min(scale), max(scale)), 'test pipeline Resize'
            return (int(scale[1]), int(scale[0])), 'test pipeline Resize'
    return tuple(int(v) for v in default), 'default'


def val_batches(cfg: Config, num_images: int,
                batch_size: int = 1) -> List[Dict[str, list]]:
    """The first ``num_images`` images of the config's val set, through its
    test pipeline, in batches of ``batch_size`` (no workers, no shuffling)."""
    if num_images < 1:
        raise ValueError(f'num_images must be at least 1, got {num_images}')
    if not cfg.get('val_dataloader'):
        raise ValueError(f'{cfg.filename} has no val_dataloader; give '
                         '--shape H W to measure on random input')
    loader_cfg = copy.deepcopy(cfg.val_dataloader)
    loader_cfg.update(batch_size=batch_size, num_workers=0,
                      persistent_workers=False,
                      sampler=dict(type='DefaultSampler', shuffle=False))
    with config_scope_of(cfg):
        loader = Runner.build_dataloader(loader_cfg)
        batches, seen = [], 0
        for batch in loader:
            batches.append(batch)
            seen += len(batch['inputs'])
            if seen >= num_images:
                break
    if seen == 0:
        raise ValueError(f'the val set of {cfg.filename} is empty')
    return batches


def predict_preprocessed(model: nn.Module, data: dict):
    """The model's predictions on a data dict its preprocessor made."""
    with torch.no_grad():
        return model(**data, mode='predict')


def preprocess(model: nn.Module, batch: Dict[str, list]) -> dict:
    """The data dict after the model's preprocessor (normalised, padded,
    on the model's device): what ``model(**data, mode='predict')`` takes."""
    with torch.no_grad():
        return model.data_preprocessor(batch, False)


def is_dynamic(backbone: nn.Module) -> bool:
    """A backbone that takes a run-time budget (DiT, token pass, MSViT)."""
    return isinstance(backbone, DynamicBackbone)


@dataclass(frozen=True)
class AverageRoute:
    """A route: the learned decisions calibrated to spend ``value`` on
    average (``backbone.set_average_budget``), each image what it needs."""
    value: float


@contextmanager
def budget(model: nn.Module, value) -> Iterator[None]:
    """The backbone runs at budget ``value`` inside (``'config'``: leave it
    as it is; an :class:`AverageRoute`: the calibrated average mode), and
    returns to its former budget after."""
    backbone = getattr(model, 'backbone', None)
    if value == 'config' or not is_dynamic(backbone):
        yield
        return
    before, control = backbone.budget, backbone.average_control
    if isinstance(value, AverageRoute):
        backbone.set_average_budget(value.value)
    else:
        backbone.set_budget(value)
    try:
        yield
    finally:
        backbone.set_budget(before)
        backbone.set_average_control(control)
