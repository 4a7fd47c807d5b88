"""Evaluate a trained dynamic model at several budgets and draw its
trade-off: the metric against measured FLOPs and against measured latency,
with the static peer marked.

    python tools/analysis_tools/sweep_budget.py CONFIG CHECKPOINT
        [--budgets 1.0 0.75 0.5 none] [--metric KEY] [--flops-images N]
        [--repeats N] [--warmup N] [--threads N] [--out-dir DIR]
        [--tolerance T] [--cfg-options k=v ...]

For every budget the config's own test loop runs (real dataset, real metric,
``Runner.test``) with ``backbone.set_budget(r)``; then once more with the
backbone swapped for its static peer carrying the same weights (mmdet PVTv2
for DiT, mmseg ViT for token pass and MSViT). FLOPs are the executed
multiply-accumulates of the whole model per image (``get_flops.py``'s
counter), mean over the first ``--flops-images`` val images; beside them,
what the backbone spent on *every* test image by its own cost model (the
executed fraction of its static network: mean, min and max, ``spending`` in
``sweep.json``), which is what a learned or average route costs, since its
images spend unequally (a few images' mean can be 0.1 off); latency is the
whole model's (``mode='predict'``, batch 1, the first val image, CPU), the
budgets and the peer timed round-robin in the same run. ``none`` among the
budgets adds the learned decisions (or the stop threshold). Writes
``OUT_DIR/sweep.png`` and ``OUT_DIR/sweep.json`` (default OUT_DIR:
``work_dirs/sweep_<config name>``) and prints a table.

Without ``--budgets`` the grid is 1.0, 0.75, 0.6, 0.5, 0.4, 0.3 and the
learned decisions. Every budget is tried on the ``--flops-images`` val images
before any is evaluated: one the backbone cannot meet at their sizes (below
what it must spend) is refused up front, with the minimum the backbone
names; a point of the default grid is skipped with that message instead. Each
budget's metrics go into ``sweep.json`` as soon as they are measured
(``"complete": false`` until the end), so a run stopped half-way keeps them.
With a calibration beside the checkpoint (``calibrate_budget.py``), its
average budgets are swept too: the learned decisions spending ``r`` on
average, each image what it needs (``average r`` in the table and plot).
Under the table: the largest fall of the metric from a fixed budget to a
larger one, against ``--tolerance`` (default 0.02 of the metric's scale:
0.02 mAP, 2 points of mIoU or accuracy), in ``sweep.json`` as
``largest_fall``.
"""
import argparse
import os.path as osp
import statistics
import sys
from contextlib import nullcontext

import torch
from mmengine.config import DictAction

import dit_mm  # noqa: F401  (registers modules, safe checkpoint loading)
from dit_mm.analysis.latency import (count_arg, interleaved_latency,
                                    latency_stats)
from dit_mm.analysis.model_flops import measure
from dit_mm.analysis.report import (environment, fmt, markdown_table,
                                    write_json)
from dit_mm.analysis.static_peer import peer_name, with_static_peer
from dit_mm.models.common.average_budget import attach_calibration
from dit_mm.analysis.task_model import (AverageRoute, budget, is_dynamic,
                                        predict_preprocessed, preprocess,
                                        val_batches)
from dit_mm.engine.cli import (budget_type, build_runner, load_config,
                               non_negative_float, positive_int)
from dit_mm.engine.run_guards import check_test_checkpoint

PREFERRED_METRICS = ('coco/bbox_mAP', 'mIoU', 'accuracy/top1')
DEFAULT_GRID = (1.0, 0.75, 0.6, 0.5, 0.4, 0.3, None)


def label_arg(route) -> str:
    return 'none' if route is None else f'{route:g}'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--budgets', type=budget_type(allow_none=True),
                        nargs='+', default=None,
                        help="set_budget values; 'none': the learned "
                        'decisions (or threshold); default: '
                        f'{" ".join(map(label_arg, DEFAULT_GRID))} (points '
                        'below what the model must spend are skipped)')
    parser.add_argument('--metric', help='metric key to plot (default: '
                        f'the first of {", ".join(PREFERRED_METRICS)} the '
                        "test loop reports, else its first)")
    parser.add_argument('--flops-images', type=positive_int, default=4)
    parser.add_argument('--repeats', type=positive_int, default=5)
    parser.add_argument('--warmup', type=count_arg(0), default=1)
    parser.add_argument('--threads', type=positive_int)
    parser.add_argument('--out-dir')
    parser.add_argument('--tolerance', type=non_negative_float, default=None,
                        help='largest fall of the metric from a budget to a '
                        'larger one that counts as monotone (default: 0.02 '
                        'for COCO mAP, 2 for metrics in percent)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def choose_metric(metrics: dict, wanted=None) -> str:
    if wanted is not None:
        if wanted not in metrics:
            raise SystemExit(f'error: --metric {wanted} is not among the '
                             f'metrics the test loop reports: '
                             f'{", ".join(metrics)}')
        return wanted
    return next((k for k in PREFERRED_METRICS if k in metrics),
                next(iter(metrics)))


def evaluate(runner, route=None, peer=None) -> tuple:
    """The test loop's metrics at budget ``route``, or with ``peer`` as
    backbone (numbers as Python floats), and (own backbone only) what every
    test image spent: :func:`spending` of the backbone's own executed FLOPs
    fractions."""
    model = runner.model
    own = model.backbone
    recording = own.recording() if peer is None else nullcontext()
    if peer is not None:
        model.backbone = peer  # takes no budget: ``route`` does nothing
    try:
        with budget(model, route), recording as record:
            metrics = runner.test()
    finally:
        model.backbone = own
    metrics = {k: float(v) if isinstance(v, (int, float)) or hasattr(
        v, 'item') else v for k, v in metrics.items()}
    return metrics, None if record is None else spending(
        record.flops_fractions())


def spending(fractions: torch.Tensor) -> dict:
    """Mean, min and max of per-image executed FLOPs fractions (of the
    static network, the backbone's own cost model) and how many images: the
    learned and average routes spend per image, so their mean over the
    whole test set, not over the few images the counter measures, is what
    they cost."""
    return dict(mean=float(fractions.mean()), min=float(fractions.min()),
                max=float(fractions.max()), images=len(fractions))


def feasible_budgets(model, batches, budgets, skip: bool = False) -> list:
    """``budgets`` the backbone meets on every input size of ``batches``,
    tried once each (eval, no gradients) before anything is evaluated. One it
    refuses stops the sweep with the backbone's own message (it names the
    minimum), or with ``skip`` is left out with that message printed."""
    model.eval()
    shapes = {}  # one input per size: what a budget must spend depends on it
    for batch in batches:
        inputs = preprocess(model, batch)['inputs']
        shapes.setdefault(tuple(inputs.shape[-2:]), inputs[:1])
    kept = []
    for route in budgets:
        try:
            for inputs in shapes.values():
                with budget(model, route), torch.no_grad():
                    model.backbone(inputs)
        except ValueError as error:
            message = (f'{label(route)} cannot be met on the val images '
                       f'({tuple(inputs.shape[-2:])}): {error}')
            if not skip:
                raise SystemExit(f'error: {message}') from None
            print(f'skipped: {message}', file=sys.stderr)
            continue
        kept.append(route)
    return kept


def default_tolerance(metric: str) -> float:
    """0.02 of the metric's scale: COCO's mAP is a fraction, mmseg's mIoU
    and mmpretrain's accuracy are percentages."""
    return 0.02 if metric.startswith('coco/') else 2.0


def largest_fall(points, tolerance: float) -> dict:
    """The largest drop of the metric from a fixed budget to a larger one
    (negative: it rises all the way), the two budgets, and whether it is
    within ``tolerance``; None below two fixed budgets."""
    fixed = sorted((p for p in points if p['mode'] == 'fixed'),
                   key=lambda p: p['budget'])
    pairs = [(low['metric'] - high['metric'], low['budget'], high['budget'])
             for i, low in enumerate(fixed) for high in fixed[i + 1:]]
    if not pairs:
        return None
    fall, low, high = max(pairs)
    return dict(fall=fall, low=low, high=high, tolerance=tolerance,
                within=fall <= tolerance)


def mean_flops(model, batches, route) -> tuple:
    """Mean executed GFLOPs per image: (whole model, backbone)."""
    report = measure(model, batches, route, progress=False)
    return report.mean('total') / 1e9, report.mean('backbone') / 1e9


def label(route) -> str:
    if isinstance(route, AverageRoute):
        return f'average {route.value:g}'
    return 'learned' if route is None else f'budget {route:g}'


def mode(route) -> str:
    return ('average' if isinstance(route, AverageRoute) else
            'learned' if route is None else 'fixed')


def latencies(model, peer_model, data, budgets, repeats, warmup):
    """Median ms of the whole model at each budget and of the peer model."""
    def call(target, route):
        def run():
            with budget(target, route):
                predict_preprocessed(target, data)
        return run
    fns = {label(b): call(model, b) for b in budgets}
    fns['peer'] = call(peer_model, 'config')
    times = interleaved_latency(fns, repeats, warmup, progress=True)
    return {name: latency_stats(t) for name, t in times.items()}


def draw(points, peer, metric: str, title: str, path: str) -> None:
    """Metric against the backbone's spending (mean over the test images,
    the static peer at 1) and against latency: the fixed budgets a labelled
    line, the learned decisions a green diamond, the static peer a red
    star."""
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    fixed = [p for p in points if p['mode'] == 'fixed']
    learned = [p for p in points if p['mode'] == 'learned']
    average = sorted((p for p in points if p['mode'] == 'average'),
                     key=lambda p: p['budget'])
    images = points[0]['spending']['images']
    spent = f'backbone FLOPs / static (mean of {images} test images)'
    for ax, x, label in (
            (axes[0], lambda p: p['spending']['mean'] if p is not peer
             else 1.0, spent),
            (axes[1], lambda p: p['latency_ms'], 'latency, ms per image')):
        ax.plot([x(p) for p in fixed], [p['metric'] for p in fixed], 'o-',
                color='tab:blue', label='set_budget(r)')
        if learned:
            ax.plot([x(learned[0])], [learned[0]['metric']], 'D',
                    color='tab:green', markersize=8, label='learned')
        if average:
            ax.plot([x(p) for p in average], [p['metric'] for p in average],
                    's--', color='tab:orange',
                    label='learned, calibrated average')
        for p in points:
            ax.annotate(p['label'].replace('budget ', ''),
                        (x(p), p['metric']),
                        textcoords='offset points', xytext=(4, 4),
                        fontsize=8)
        ax.plot([x(peer)], [peer['metric']], '*', color='tab:red',
                markersize=14, label=peer['name'])
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    env = environment(args.threads)
    for path, what in ((args.config, 'config'),
                       (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise SystemExit(f'error: {what} {path} does not exist')
    name = osp.splitext(osp.basename(args.config))[0]
    out_dir = args.out_dir or osp.join('work_dirs', f'sweep_{name}')
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = osp.join(out_dir, 'test_runs')
    cfg.load_from = args.checkpoint
    check_test_checkpoint(cfg)  # mmengine would load a misfit non-strictly
    runner = build_runner(cfg, evaluation=True)
    model = runner.model
    if not is_dynamic(getattr(model, 'backbone', None)):
        raise SystemExit(f'error: the backbone of {name} takes no budget; '
                         'sweep_budget sweeps DiT, TokenPassViT and '
                         'MixedScaleViT models')
    requested = DEFAULT_GRID if args.budgets is None else args.budgets
    budgets = sorted({b for b in requested if b is not None},
                     reverse=True) + ([None] if None in requested else [])
    batches = val_batches(cfg, args.flops_images)
    budgets = feasible_budgets(model, batches, budgets,
                               skip=args.budgets is None)
    if attach_calibration(model.backbone, args.checkpoint):
        budgets += [AverageRoute(r) for r in sorted(
            model.backbone.budget_calibration, reverse=True)]
    if not budgets:
        raise SystemExit('error: no budget of the grid can be met on the val '
                         'images (see the messages above)')
    json_path = osp.join(out_dir, 'sweep.json')
    metrics, spent = {}, {}
    for b in budgets:
        # the first loads the weights
        metrics[b], spent[b] = evaluate(runner, b)
        # a --metric the loop does not report stops here, before a sweep
        # already in the out dir is replaced
        key = choose_metric(metrics[budgets[0]], args.metric)
        write_json(json_path, dict(
            config=args.config, checkpoint=args.checkpoint, complete=False,
            metrics={label(k): v for k, v in metrics.items()},
            spending={label(k): v for k, v in spent.items()}))
    model.eval()
    peer_model = with_static_peer(model)
    peer_metrics, _ = evaluate(runner, peer=peer_model.backbone)

    gflops = {b: mean_flops(model, batches, b) for b in budgets}
    peer_gflops = mean_flops(peer_model, batches, 'config')
    data = preprocess(model, batches[0])
    stats = latencies(model, peer_model, data, budgets, args.repeats,
                      args.warmup)

    points = [dict(budget=getattr(b, 'value', b), mode=mode(b), label=label(b),
                   metric=float(metrics[b][key]),
                   gflops=gflops[b][0], backbone_gflops=gflops[b][1],
                   latency_ms=stats[label(b)]['median_ms'],
                   spending=spent[b], metrics=metrics[b]) for b in budgets]
    peer_point = dict(name=f'{peer_name(model.backbone)} (static)',
                      metric=float(peer_metrics[key]),
                      gflops=peer_gflops[0], backbone_gflops=peer_gflops[1],
                      latency_ms=stats['peer']['median_ms'],
                      metrics=peer_metrics)
    rows = [[p['label'], fmt(p['metric'], 4), fmt(p['gflops'], 3),
             fmt(p['backbone_gflops'], 3),
             f"{p['spending']['mean']:.3f} ({p['spending']['min']:.2f}-"
             f"{p['spending']['max']:.2f})", fmt(p['latency_ms'], 1),
             fmt(p['latency_ms'] / peer_point['latency_ms'])]
            for p in points]
    rows.append([peer_point['name'], fmt(peer_point['metric'], 4),
                 fmt(peer_gflops[0], 3), fmt(peer_gflops[1], 3), '1',
                 fmt(peer_point['latency_ms'], 1), '1.000'])
    print(f'\n## {name}: {key} against executed GFLOPs and latency '
          f'(whole model, batch 1, {env["threads"]} threads, medians of '
          f'{args.repeats} rounds)\n')
    images = points[0]['spending']['images']
    print(markdown_table(['route', key, 'GFLOPs / image', 'backbone',
                          f'backbone fraction, {images} test images: mean '
                          '(min-max)', 'latency ms', 'latency / peer'],
                         rows))
    tolerance = (default_tolerance(key) if args.tolerance is None else
                 args.tolerance)
    fall = largest_fall(points, tolerance)
    if fall is not None:
        print(f"\nlargest fall from a budget to a larger one: "
              f"{fall['fall']:.4g} (budget {fall['low']:g} -> "
              f"{fall['high']:g}), "
              f"{'within' if fall['within'] else 'beyond'} the tolerance "
              f'{tolerance:g}')
    png = osp.join(out_dir, 'sweep.png')
    draw(points, peer_point, key,
         f'{name}: {osp.basename(args.checkpoint)}', png)
    write_json(json_path, dict(
        config=args.config, checkpoint=args.checkpoint, complete=True,
        metric=key, largest_fall=fall,
        flops_images=len(batches), points=points, peer=peer_point,
        latency=stats, environment=env,
        median_latency_ms=statistics.median(p['latency_ms']
                                            for p in points)))
    print(f'trade-off plot: {png}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
