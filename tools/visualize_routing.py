"""Draw how a dynamic backbone routed each image, over the image.

    python tools/visualize_routing.py CONFIG CHECKPOINT IMAGE [IMAGE ...]
        [--out-dir DIR] [--budget BUDGET [BUDGET ...]] [--cfg-options ...]

Runs each image through the model on the CPU (mmdet, mmseg and mmpretrain
configs, chosen by ``default_scope``; see ``dit_mm.visualization.inference``)
and writes ``DIR/<image stem>_routing.png`` (default DIR: work_dirs/routing):
the image at its own size with the routing blended over it and a legend
(``dit_mm.visualization.draw_routing_overlay``): for DiT the scale and depth
each location's tokens went through, for token pass the layer each token
stopped after, for MSViT the coarse and fine regions. Prints each image's
realized FLOPs as a fraction of the static model's. Several budgets draw
each image at each (one model, loaded once): the first budget's pictures go
to DIR, budget r's to DIR/budget_<r>/ (``--budget none 1.0 0.5``: the
learned decisions in DIR, the static route in DIR/budget_1.0/). Only those
PNGs are written, and never over one of the inputs.
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
CONFIG_BUDGET = "the config's"  # no --budget: the backbone keeps its own


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
        '--budget', type=budget_type(allow_none=True), nargs='+',
        default=argparse.SUPPRESS,
        help="'none': learned decisions (DiT gates, token-pass threshold, "
        "MSViT gate); 1.0: the static route; r < 1: the backbone's "
        "set_budget(r) (default: the config's); several: the first to "
        '--out-dir, the others to --out-dir/budget_<r>/')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, xxx=yyy in key=value form')
    return parser.parse_args(argv)


def budget_folders(args) -> list:
    """(budget, folder) for each budget asked: the first draws to --out-dir,
    budget r to --out-dir/budget_<r>/; without --budget, the config's."""
    budgets = vars(args).get('budget', [CONFIG_BUDGET])
    return [(b, args.out_dir if i == 0 else
             f'{args.out_dir}/budget_{str(b).lower()}')
            for i, b in enumerate(budgets)]


def main(argv=None):
    args = parse_args(argv)
    check_inputs(config=args.config, checkpoint=args.checkpoint)
    check_images(args.images)
    inputs = [args.config, args.checkpoint, *args.images]
    jobs = [(b, output_paths(args.images, folder, inputs))
            for b, folder in budget_folders(args)]
    cfg = load_config(args.config, args.cfg_options)
    model, infer = build_model(cfg, args.checkpoint)
    backbone = routed_backbone(model, cfg)
    total = len(jobs) * len(args.images)
    progress = ProgressBar(total, file=sys.stdout) if total > 1 else None
    lines = []
    try:
        for chosen, outs in jobs:
            if chosen is not CONFIG_BUDGET:
                backbone.set_budget(chosen)
            budget = 'learned' if backbone.budget is None else backbone.budget
            for image_path, out in zip(args.images, outs):
                try:
                    image = read_image(image_path)
                except ValueError as error:
                    raise SystemExit(f'error: {error}')
                routing, input_shape, meta = run_once(backbone, infer,
                                                      image_path)
                write_png(sample_picture(image, routing, 0, meta,
                                         input_shape), out)
                lines.append(f'{image_path}: realized '
                             f'{routing_summary(routing)} (budget: {budget}) '
                             f'-> {out}')
                if progress is not None:
                    progress.update()
    finally:
        if progress is not None:
            print()
        if lines:
            print('\n'.join(lines))


if __name__ == '__main__':
    sys.exit(main())
