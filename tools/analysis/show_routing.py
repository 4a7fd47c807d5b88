"""Draw how a DiT backbone routed one image.

    python tools/analysis/show_routing.py CONFIG CHECKPOINT IMAGE --out OUT.png
        [--budget {none,1.0,0.5,...}] [--blocks] [--cfg-options ...]

Runs the image through the model on the CPU (mmdet configs with
``init_detector``/``inference_detector``, mmseg configs with
``init_model``/``inference_model``; chosen by ``default_scope``), draws the
image beside each stage's routing density (``dit_mm.visualization``), writes
OUT.png and prints the image's realized FLOPs as a fraction of the PVTv2 route.
Only OUT.png is written, and never over one of the inputs.
"""
import argparse
import sys
from pathlib import Path

import cv2
from mmengine.config import DictAction

import dit_mm  # noqa: F401  (registers modules, safe checkpoint loading)
from dit_mm.engine.cli import budget_type, config_scope, load_config
from dit_mm.visualization import (draw_keep_masks, draw_routing,
                                  stack_pictures)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file (mmdet or mmseg)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out', required=True, help='the picture (.png)')
    parser.add_argument(
        '--budget', type=budget_type(allow_none=True), default=argparse.SUPPRESS,
        help="'none': learned decisions; 1.0: the PVTv2 route; r < 1: keep "
        "the top tokens to FLOPs fraction r (default: the config's)")
    parser.add_argument('--blocks', action='store_true',
                        help='also draw every block\'s keep mask below')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, xxx=yyy in key=value form')
    return parser.parse_args(argv)


def check_paths(args) -> Path:
    """The inputs exist; OUT is a .png that is none of them. Returns OUT."""
    inputs = dict(config=args.config, checkpoint=args.checkpoint,
                  image=args.image)
    for name, path in inputs.items():
        if not Path(path).is_file():
            raise SystemExit(f'error: {name} {path} does not exist or is not '
                             'a file')
    out = Path(args.out)
    if out.suffix.lower() != '.png':
        raise SystemExit(f'error: --out must name a .png file, got {out}')
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise SystemExit(f'error: --out {out} exists and is not a plain file')
    if out.exists() and any(out.resolve() == Path(p).resolve()
                            for p in inputs.values()):
        raise SystemExit(f'error: --out {out} is one of the inputs')
    return out


def read_image(path: str):
    """The image as RGB uint8 (what the heat maps are drawn over)."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f'error: cannot read image {path}')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def without_annotations(pipeline):
    """A test pipeline minus LoadAnnotations (a lone image has none)."""
    return [t for t in pipeline if 'LoadAnnotations' not in str(t.get('type'))]


def build_model(cfg, checkpoint: str):
    """The model of the config's library with the checkpoint, and a function
    that runs it on one image file and returns the result's metainfo."""
    scope = config_scope(cfg)
    if scope == 'mmdet':
        from mmcv.transforms import Compose
        from mmdet.apis import inference_detector, init_detector
        from mmdet.utils import get_test_pipeline_cfg
        model = init_detector(cfg, checkpoint, palette='random', device='cpu')
        pipeline = Compose(without_annotations(get_test_pipeline_cfg(cfg)))
        return model, lambda img: inference_detector(model, img,
                                                     pipeline).metainfo
    if scope == 'mmseg':  # its inference_model drops LoadAnnotations itself
        from mmseg.apis import inference_model, init_model
        model = init_model(cfg, checkpoint, device='cpu')
        return model, lambda img: inference_model(model, img).metainfo
    raise SystemExit(f'error: show_routing runs mmdet and mmseg configs; '
                     f'{config_name(cfg)} has default_scope {scope!r}')


def config_name(cfg) -> str:
    return Path(cfg.filename).name if cfg.filename else 'the config'


def routed_backbone(model, cfg):
    """The model's backbone if it reports its routing (DiT), else exit."""
    backbone = getattr(model, 'backbone', None)
    if not (hasattr(backbone, 'routing') and hasattr(backbone, 'set_budget')):
        name = cfg.model.get('backbone', {}).get('type',
                                                 type(backbone).__name__)
        raise SystemExit(
            f'error: the backbone of {config_name(cfg)} is {name}, which '
            "reports no routing; show_routing draws DiT backbones "
            "(backbone=dict(type='DiT', ...))")
    return backbone


def run_once(backbone, infer, image_path: str):
    """Run one image; the routing, the backbone's input (H, W) and the
    image's (h, w) inside it."""
    shapes = []
    handle = backbone.register_forward_hook(
        lambda module, inputs, output: shapes.append(inputs[0].shape[-2:]))
    try:
        meta = infer(image_path)
    finally:
        handle.remove()
    if len(shapes) != 1:
        raise SystemExit(
            f'error: the backbone ran {len(shapes)} times on one image (a '
            'sliding-window or test-time-augmented test?); draw with a '
            "whole-image test, e.g. --cfg-options model.test_cfg.mode=whole")
    return backbone.routing, tuple(shapes[0]), tuple(meta['img_shape'][:2])


def main(argv=None):
    args = parse_args(argv)
    out = check_paths(args)
    image = read_image(args.image)
    cfg = load_config(args.config, args.cfg_options)
    model, infer = build_model(cfg, args.checkpoint)
    backbone = routed_backbone(model, cfg)
    if 'budget' in vars(args):
        backbone.set_budget(args.budget)
    routing, input_shape, img_shape = run_once(backbone, infer, args.image)
    picture = draw_routing(image, routing, 0, img_shape, input_shape)
    if args.blocks:
        picture = stack_pictures(
            [picture, draw_keep_masks(routing, 0, img_shape, input_shape)])
    ok, png = cv2.imencode('.png', cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SystemExit('error: could not encode the picture as PNG')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png.tobytes())
    budget = 'learned' if backbone.budget is None else backbone.budget
    print(f'realized FLOPs: {float(routing.flops_fraction[0]):.3f} of the '
          f'PVTv2 route (budget: {budget})')
    print(f'routing picture: {out}')


if __name__ == '__main__':
    sys.exit(main())
