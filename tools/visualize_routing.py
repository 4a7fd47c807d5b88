"""Draw how a dynamic backbone routed each image, over the image.

    python tools/visualize_routing.py CONFIG CHECKPOINT IMAGE [IMAGE ...]
        [--out-dir DIR] [--budget {none,1.0,0.5,...}] [--cfg-options ...]

Runs each image through the model on the CPU (mmdet, mmseg and mmpretrain
configs, chosen by ``default_scope``; see ``dit_mm.visualization.inference``)
and writes ``DIR/<image stem>_routing.png`` (default DIR: work_dirs/routing):
the image at its own size with the routing blended over it and a legend
(``dit_mm.visualization.draw_routing_overlay``): for DiT the scale and depth
each location's tokens went through, for token pass the layer each token
stopped after, for MSViT the coarse and fine regions. Prints each image's
realized FLOPs as a fraction of the static model's. Only those PNGs are
written, and never over one of the inputs.
"""
import argparse
import sys

from mmengine.config import DictAction
from mmengine.utils import ProgressBar

# importing dit_mm registers its modules and loads checkpoints safely
from dit_mm.engine.cli import budget_type, load_config
from dit_mm.visualization import routing_summary
from dit_mm.visualization.inference import (build_model, check_images,
                                            check_inputs, output_paths,
                                            read_image, routed_backbone,
                                            run_once, sample_picture,
                                            write_png)

DEFAULT_OUT_DIR = 'work_dirs/routing'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file (mmdet, mmseg or '
                        'mmpretrain)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('images', nargs='+', metavar='IMAGE',
                        help='image files')
    parser.add_argument('--out-dir', default=DEFAULT_OUT_DIR,
                        help='folder of the pictures (default: '
                        f'{DEFAULT_OUT_DIR})')
    parser.add_argument(
        '--budget', type=budget_type(allow_none=True), default=argparse.SUPPRESS,
        help="'none': learned decisions (DiT gates, token-pass threshold, "
        "MSViT gate); 1.0: the static route; r < 1: the backbone's "
        "set_budget(r) (default: the config's)")
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, xxx=yyy in key=value form')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_inputs(config=args.config, checkpoint=args.checkpoint)
    check_images(args.images)
    outs = output_paths(args.images, args.out_dir,
                        [args.config, args.checkpoint, *args.images])
    cfg = load_config(args.config, args.cfg_options)
    model, infer = build_model(cfg, args.checkpoint)
    backbone = routed_backbone(model, cfg)
    if 'budget' in vars(args):
        backbone.set_budget(args.budget)
    budget = 'learned' if backbone.budget is None else backbone.budget
    progress = (ProgressBar(len(outs), file=sys.stdout) if len(outs) > 1
                else None)
    lines = []
    try:
        for image_path, out in zip(args.images, outs):
            try:
                image = read_image(image_path)
            except ValueError as error:
                raise SystemExit(f'error: {error}')
            routing, input_shape, meta = run_once(backbone, infer, image_path)
            write_png(sample_picture(image, routing, 0, meta, input_shape,
                                     getattr(backbone, 'head_layers', None)),
                      out)
            lines.append(f'{image_path}: realized {routing_summary(routing)} '
                         f'(budget: {budget}) -> {out}')
            if progress is not None:
                progress.update()
    finally:
        if progress is not None:
            print()
        if lines:
            print('\n'.join(lines))


if __name__ == '__main__':
    sys.exit(main())
