"""Run a config's model on image files and draw its routing: the parts
``tools/visualize_routing.py`` and :class:`RoutingVisualizationHook` share.

The model is built by ``dit_mm.models.builder.build_task_model``; mmdet
configs then run through ``inference_detector``, mmseg configs through
``inference_model`` and mmpretrain configs through their test pipeline and
``test_step`` (chosen by ``default_scope``), all on the CPU and in the
config's scope.
"""
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmengine.registry import DefaultScope
from torch import nn

from ..models.common.dynamic import DynamicBackbone
from ..models.builder import build_task_model, load_task_weights
from ..registry import config_scope
from .routing_overlay import Box, draw_routing_overlay

Infer = Callable[[str], dict]  # an image file -> its prediction's metainfo


# ----------------------------------------------------------------- files
def check_inputs(**paths: str) -> None:
    """Every named path is an existing file (``name`` in the message)."""
    for name, path in paths.items():
        if not Path(path).is_file():
            raise SystemExit(f'error: {name} {path} does not exist or is not '
                             'a file')


def check_images(images: Sequence[str]) -> None:
    """Every image exists and has a format OpenCV reads (by its header)."""
    for image in images:
        check_inputs(image=image)
        if not cv2.haveImageReader(str(image)):
            raise SystemExit(f'error: image {image} is not an image OpenCV '
                             'can read')


def output_paths(images: Sequence[str], out_dir: str,
                 inputs: Sequence[str]) -> List[Path]:
    """``<out_dir>/<image stem>_routing.png`` for each image, refused when
    ``out_dir`` is not a folder, two images share a stem, or a picture would
    replace one of ``inputs`` or something that is not a plain file."""
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise SystemExit(f'error: --out-dir {folder} exists and is not a '
                         'folder')
    outs, seen = [], {}
    for image in images:
        out = folder / f'{Path(image).stem}_routing.png'
        if out in seen:
            raise SystemExit(f'error: images {seen[out]} and {image} would '
                             f'both be drawn to {out}; draw them apart')
        seen[out] = image
        if out.is_symlink() or (out.exists() and not out.is_file()):
            raise SystemExit(f'error: {out} exists and is not a plain file')
        if out.exists() and any(out.resolve() == Path(p).resolve()
                                for p in inputs):
            raise SystemExit(f'error: the picture {out} would replace one of '
                             'the inputs')
        outs.append(out)
    return outs


def read_image(path: str) -> np.ndarray:
    """The image as RGB uint8 (what the routing is drawn over); ValueError
    if it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'cannot read image {path}')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_png(picture: np.ndarray, path: Path) -> None:
    """An RGB picture as a PNG file (its folder made)."""
    ok, png = cv2.imencode('.png', cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f'could not encode the picture for {path} as PNG')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png.tobytes())


# ----------------------------------------------------------------- model
def config_name(cfg) -> str:
    return Path(cfg.filename).name if cfg.filename else 'the config'


def without_annotations(pipeline):
    """A test pipeline minus LoadAnnotations (a lone image has none)."""
    return [t for t in pipeline if 'LoadAnnotations' not in str(t.get('type'))]


def build_model(cfg, checkpoint: str) -> Tuple[nn.Module, Infer]:
    """The config's model with the checkpoint (``build_task_model``), on
    the CPU (a backbone that reports no routing is refused first), and a
    function that runs it on one image file through its library's own
    inference path and returns the prediction's metainfo; both in the
    config's scope."""
    scope = config_scope(cfg)
    model = build_task_model(cfg, initialise=False)
    routed_backbone(model, cfg)  # refused before the checkpoint is read
    load_task_weights(model, checkpoint)
    model.cfg = cfg  # what mmdet's and mmseg's inference functions read
    if scope == 'mmdet':
        from mmcv.transforms import Compose
        from mmdet.apis import inference_detector
        from mmdet.utils import get_test_pipeline_cfg
        with DefaultScope.overwrite_default_scope(scope):
            pipeline = Compose(without_annotations(get_test_pipeline_cfg(cfg)))

        def run(img):
            return inference_detector(model, img, pipeline).metainfo
    elif scope == 'mmseg':  # its inference_model drops LoadAnnotations
        from mmseg.apis import inference_model

        def run(img):
            return inference_model(model, img).metainfo
    else:  # mmpretrain: the config's test pipeline and test_step
        from mmengine.dataset import Compose, pseudo_collate
        with DefaultScope.overwrite_default_scope(scope):
            pipeline = Compose(without_annotations(
                cfg.test_dataloader.dataset.pipeline))

        def run(img):
            data = pseudo_collate([pipeline(dict(img_path=str(img)))])
            return model.test_step(data)[0].metainfo

    def infer(img: str) -> dict:
        with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
            return run(img)

    return model, infer


def routed_backbone(model: nn.Module, cfg) -> nn.Module:
    """The model's backbone if it reports its routing (DiT, TokenPassViT,
    MixedScaleViT), else exit naming the backbone's type."""
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, DynamicBackbone):
        name = cfg.model.get('backbone', {}).get('type',
                                                 type(backbone).__name__)
        raise SystemExit(
            f'error: the backbone of {config_name(cfg)} is {name}, which '
            'reports no routing; routing pictures are drawn for DiT, '
            'TokenPassViT and MixedScaleViT backbones')
    return backbone


def ran_once_message(calls: int) -> str:
    return (f'the backbone ran {calls} times on one batch (a sliding-window '
            'or test-time-augmented test?); routing pictures need a '
            'whole-image test, e.g. --cfg-options model.test_cfg.mode=whole')


def run_once(backbone: nn.Module, infer: Infer, image_path: str):
    """Run one image; its routing, the backbone's input (H, W) and the
    prediction's metainfo."""
    with backbone.recording() as record:
        meta = infer(image_path)
    if len(record.shapes) != 1:
        raise SystemExit(f'error: {ran_once_message(len(record.shapes))}')
    return record.stats, record.shapes[0], meta


# --------------------------------------------------------------- picture
def model_box(meta: Dict, image_shape: Sequence[int]) -> Box:
    """The part ``(y0, x0, y1, x1)`` of the original image (of
    ``image_shape``) that the model's image (``meta['img_shape']``) shows:
    all of it when the test pipeline resized the image (``scale_factor``
    (w, h) in ``meta``, or none), its centre when it then cropped it
    (mmpretrain's ``CenterCrop``: ``img_shape`` smaller than the resized
    image)."""
    height, width = image_shape[:2]
    h, w = meta['img_shape'][:2]
    scale = meta.get('scale_factor')
    if scale is None:
        return 0, 0, height, width
    sx, sy = (float(v) for v in np.asarray(scale).ravel()[:2])
    resized_h, resized_w = height * sy, width * sx
    if h >= resized_h - 1 and w >= resized_w - 1:
        return 0, 0, height, width
    top = max(0, round((resized_h - h) / 2)) if h < resized_h - 1 else 0
    left = max(0, round((resized_w - w) / 2)) if w < resized_w - 1 else 0
    y0, x0 = min(round(top / sy), height - 1), min(round(left / sx), width - 1)
    return (y0, x0, min(height, max(y0 + 1, round((top + h) / sy))),
            min(width, max(x0 + 1, round((left + w) / sx))))


def sample_picture(image: np.ndarray, routing, index: int, meta: Dict,
                   input_shape: Sequence[int]) -> np.ndarray:
    """The routing picture of image ``index`` of a batch whose backbone
    input was ``input_shape``, from the sample's metainfo (``img_shape``,
    ``scale_factor``)."""
    return draw_routing_overlay(
        image, routing, index, meta['img_shape'][:2], input_shape,
        box=model_box(meta, image.shape))
