"""FLOPs of a whole model as it executes, per image, static route beside
dynamic.

    python tools/analysis_tools/get_flops.py CONFIG [--checkpoint CKPT]
        [--num-images N] [--shape H W] [--budget R|none] [--out JSON]
        [--cfg-options k=v ...] [--no-progress]

Runs the config's model (built in its library's scope, eval mode, CPU) on the
first N images of its val set through the test pipeline, or on N random
images of ``--shape``, one image at a time, and counts what every aten op
executed (``dit_mm.analysis.flop_counter``: only computed tokens count;
attention, norms, upsampling and the gates do). Prints the mean per image
(GFLOPs = 1e9 multiply-accumulates, as mmengine's analyser and the papers
count) of the whole model, of each module group (backbone, neck, heads), of
each backbone stage and of the backbone's transformer blocks, on the static
route (``set_budget(1.0)``: the PVTv2 / ViT the model replaces) and at
``--budget`` (default: as the config has it; ``none``: the learned decisions
or threshold). Then what was left out: element-wise ops (by name, with their
calls) and modules that run outside torch's dispatcher (mmcv's RoIAlign).
Stock mmdet / mmseg / mmpretrain models work too (one route).
"""
import argparse
import sys

import torch
from mmengine.config import DictAction

import dit_mm  # noqa: F401  (registers modules, safe checkpoint loading)
from dit_mm.analysis.model_flops import part_names, static_and_dynamic
from dit_mm.analysis.task_model import (is_dynamic, synthetic_batch,
                                        val_batches)
from dit_mm.models.builder import build_task_model
from dit_mm.engine.cli import budget_type, load_config, positive_int
from dit_mm.analysis.report import (check_json_target, fmt, markdown_table,
                                    quiet_mmengine, write_json)

G = 1e9


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--checkpoint', help='weights (default: the '
                        "config's initialisation; the routing of learned "
                        'decisions depends on them)')
    parser.add_argument('--num-images', type=positive_int, default=8)
    parser.add_argument('--shape', type=positive_int, nargs=2,
                        metavar=('H', 'W'),
                        help='random images of this size instead of the '
                        'val set')
    parser.add_argument('--budget', type=budget_type(allow_none=True),
                        default=argparse.SUPPRESS,
                        help="'none': learned decisions; r in (0, 1]: "
                        "set_budget(r) (default: the config's)")
    parser.add_argument('--out', metavar='JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if 'budget' not in vars(args):  # argparse would parse a str default
        args.budget = 'config'
    return args


def batches_of(cfg, args):
    if args.shape:
        return [synthetic_batch(cfg, args.shape, 1, seed=i)
                for i in range(args.num_images)]
    return val_batches(cfg, args.num_images, batch_size=1)


def route_name(value) -> str:
    if value == 'config':
        return 'config budget'
    return 'learned' if value is None else f'budget {value:g}'


def rows_of(names, static, dynamic, dynamic_model: bool):
    rows = []
    for name in names:
        if name != 'total' and static.mean(name) == 0 and \
                dynamic.mean(name) == 0:
            continue
        label = name if name in ('total', 'backbone blocks') or \
            '.' not in name else '  ' + name
        row = [label, fmt(static.mean(name) / G, 3)]
        if dynamic_model:
            ratio = dynamic.mean(name) / static.mean(name) \
                if static.mean(name) else None
            row += [fmt(dynamic.mean(name) / G, 3), fmt(ratio)]
        rows.append(row)
    return rows


def main(argv=None):
    args = parse_args(argv)
    check_json_target(args.out)
    torch.manual_seed(0)
    cfg = load_config(args.config, args.cfg_options)
    quiet_mmengine()
    model = build_task_model(cfg, args.checkpoint)
    dynamic_model = is_dynamic(getattr(model, 'backbone', None))
    if args.budget != 'config' and not dynamic_model:
        raise SystemExit(f'error: --budget needs a dynamic backbone; '
                         f'{type(model.backbone).__name__} has no budget')
    batches = batches_of(cfg, args)
    source = (f'{len(batches)} random images of {args.shape[0]}x'
              f'{args.shape[1]}' if args.shape else
              f'the first {len(batches)} val images (test pipeline)')
    static, dynamic = static_and_dynamic(model, batches, args.budget,
                                         not args.no_progress)
    names = part_names(model)
    route = route_name(args.budget)
    print(f'\n## {args.config}: executed GFLOPs (1e9 multiply-accumulates) '
          f'per image, mean over {source}\n')
    headers = ['part', 'static route' if dynamic_model else 'GFLOPs']
    if dynamic_model:
        headers += [route, f'{route} / static']
    print(markdown_table(headers, rows_of(names, static, dynamic,
                                          dynamic_model)))
    low, high = dynamic.spread()
    print(f'\nper image, total: {low / G:.3f} ... {high / G:.3f} GFLOPs'
          f' ({route if dynamic_model else "static"})')
    kinds = ', '.join(f'{k} {dynamic.mean_kind(k) / G:.3f}'
                      for k in dynamic.kinds)
    print(f'by op kind: {kinds}')
    own = dynamic.mean_own_account()
    if own is not None:
        print(f"the backbone's own account (routing.flops, analytic, no "
              f'norms): {own / G:.3f} GFLOPs; counted: '
              f'{dynamic.mean("backbone") / G:.3f}')
    left = ', '.join(f'{k} x{v}' for k, v in sorted(dynamic.left_out.items()))
    print(f'left out (element-wise arithmetic, counted by no analyser here): '
          f'{left or "nothing"}')
    outside = ', '.join(f'{k} x{v}' for k, v in sorted(dynamic.outside.items()))
    print('not seen (compiled ops outside torch\'s dispatcher; mmcv NMS is '
          f'one too): {outside or "none ran"}')
    if args.out:
        write_json(args.out, dict(
            config=args.config, checkpoint=args.checkpoint, source=source,
            route=route, unit='GMACs',
            static={n: static.mean(n) / G for n in names},
            dynamic={n: dynamic.mean(n) / G for n in names},
            per_image=[dict(static=s.parts['total'] / G,
                            dynamic=d.parts['total'] / G,
                            input_shape=list(d.input_shape))
                       for s, d in zip(static.images, dynamic.images)],
            kinds={k: dynamic.mean_kind(k) / G for k in dynamic.kinds},
            own_account=None if own is None else own / G,
            left_out=dynamic.left_out, outside=dynamic.outside))
    return 0


if __name__ == '__main__':
    sys.exit(main())
