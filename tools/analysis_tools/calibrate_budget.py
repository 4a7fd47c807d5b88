"""Calibrate average budgets of a trained dynamic model on its val images.

    python tools/analysis_tools/calibrate_budget.py CONFIG CHECKPOINT
        [--budgets 0.5 0.75] [--num-images 16] [--force]
        [--cfg-options k=v ...]

``set_budget(r)`` makes every image spend ``r`` of the static network. This
tool solves, for each ``r``, the backbone's control (DiT: an offset on the
gate logits; token pass: the stop threshold; MSViT: an offset on the scale
gate's fine logits) whose learned decisions spend ``r`` *on average* over the
first ``--num-images`` val images (test pipeline, one image at a time), each
image what its decisions ask (``dit_mm.analysis.budget_calibration``). It
prints, per budget, the control value,
the mean executed FLOPs fraction against ``r`` and the spread of the
per-image fractions, and writes ``CHECKPOINT.calibration.json``, which the
tools' model builder hands to the backbone: then
``backbone.set_average_budget(r)``. An existing calibration is kept unless
``--force``.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

import dit_mm  # noqa: F401  (registers modules, safe checkpoint loading)
from dit_mm.analysis.budget_calibration import (calibrate_average_control,
                                                save_calibration)
from dit_mm.analysis.report import fmt, markdown_table, quiet_mmengine
from dit_mm.analysis.task_model import preprocess, val_batches
from dit_mm.engine.cli import budget_type, load_config, positive_int
from dit_mm.engine.run_guards import check_test_checkpoint
from dit_mm.models.common.average_budget import calibration_path
from dit_mm.models.common.dynamic import DynamicBackbone
from dit_mm.models.builder import build_task_model


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--budgets', type=budget_type(allow_one=False),
                        nargs='+', default=[0.5, 0.75])
    parser.add_argument('--num-images', type=positive_int, default=16)
    parser.add_argument('--force', action='store_true',
                        help='replace an existing calibration file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for path, what in ((args.config, 'config'),
                       (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise SystemExit(f'error: {what} {path} does not exist')
    out = calibration_path(args.checkpoint)
    if osp.exists(out) and not args.force:
        raise SystemExit(f'error: {out} exists; --force replaces it')
    cfg = load_config(args.config, args.cfg_options)
    cfg.load_from = args.checkpoint
    check_test_checkpoint(cfg)  # mmengine would load a misfit non-strictly
    quiet_mmengine()
    # the file this run writes is not read: with --force it may be stale
    model = build_task_model(cfg, args.checkpoint, calibration=False)
    if not isinstance(getattr(model, 'backbone', None), DynamicBackbone):
        raise SystemExit(f'error: the backbone of {args.config} '
                         f'({type(model.backbone).__name__}) takes no budget; '
                         'average budgets are calibrated for DiT, '
                         'TokenPassViT and MixedScaleViT')
    images = [preprocess(model, batch)['inputs']
              for batch in val_batches(cfg, args.num_images)]
    results = []
    for budget in sorted(set(args.budgets)):
        try:
            results.append(calibrate_average_control(model.backbone,
                                                     images, budget))
        except ValueError as error:
            raise SystemExit(f'error: {error}') from None
    print(f'\n## {args.checkpoint}: average budgets over the first '
          f'{len(images)} val images\n')
    print(markdown_table(
        ['average budget', 'control', 'mean FLOPs fraction',
         'per image: min', 'max', 'std'],
        [[fmt(r['budget']), fmt(r['control'], 3), fmt(r['mean_fraction']),
          fmt(r['min_fraction']), fmt(r['max_fraction']),
          fmt(r['std_fraction'])] for r in results]))
    save_calibration(out, args.checkpoint, results)
    print(f'\nwrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
