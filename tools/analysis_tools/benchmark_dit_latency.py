"""Measure DiT's wall-clock latency under compute budgets against static PVTv2.

    python tools/analysis_tools/benchmark_dit_latency.py [--arch b2]
        [--size 512 512] [--budgets 1.0 0.75 0.5] [--learned] [--batch 1]
        [--repeats 10] [--warmup 2] [--threads N] [--profile [ROWS]]
        [--max-ratio R] [--json OUT]

Why it exists: dynamic-token models are often fast only on paper (fewer FLOPs,
no fewer milliseconds). dit_mm claims a wall-clock saving, so this script
measures it, in one run on this machine's CPU, against the static baseline --
mmdet's ``PyramidVisionTransformerV2`` of the same arch carrying the same weights
-- and DiT at ``set_budget(1.0)`` (the PVTv2 route, which equals PVTv2).

Method for a shared, noisy machine: eval mode, ``torch.no_grad``, one random
input; ``--warmup`` untimed rounds, then ``--repeats`` rounds that call every
configuration once each (round-robin, rotated each round), so all of them see
the same load. Reported per configuration: median and minimum latency, the
ratio of medians to DiT at budget 1.0 and to mmdet PVTv2, the median of the
per-round ratios to budget 1.0 (load drifts cancel within a round), and the
realized FLOPs (multiply-accumulates, as the papers count them) and their
fraction of the PVTv2 route. ``--profile`` adds a torch.profiler table of
every DiT budget; ``--max-ratio R`` exits with status 1 when the smallest
budget's median latency exceeds R times that of budget 1.0.
"""
import argparse
import statistics
import sys

import torch

from dit_mm.analysis.latency import add_timing_args
from dit_mm.analysis.static_peer import backbone_difference
from dit_mm.engine.cli import budget_type, positive_int
from bench_common import (build_pair, environment, fmt, forward_calls,
                          interleaved_latency, load_average, markdown_table,
                          paired_ratio, ratio_exit_code, write_json)

PVT = 'mmdet PVTv2'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--arch', default='b2',
                        choices=['b0', 'b1', 'b2', 'b3', 'b4', 'b5'])
    parser.add_argument('--size', type=positive_int, nargs=2, default=[512, 512],
                        metavar=('H', 'W'), help='input height and width')
    parser.add_argument('--budgets', type=budget_type(), nargs='+',
                        default=[1.0, 0.75, 0.5],
                        help='DiT set_budget values (1.0 is always added: it '
                        'is the reference)')
    parser.add_argument('--learned', action='store_true',
                        help='also time set_budget(None), the learned gate '
                        'decisions (random-init gates: near the PVTv2 route)')
    parser.add_argument('--batch', type=positive_int, default=1)
    add_timing_args(parser)
    parser.add_argument('--profile', type=int, nargs='?', const=15, default=0,
                        metavar='ROWS', help='after timing, print the top ROWS '
                        'operators (torch.profiler, self CPU time) of one '
                        'forward of every DiT configuration')
    parser.add_argument('--max-ratio', type=float, default=None,
                        help='exit 1 if the smallest budget\'s median latency '
                        'is more than this times budget 1.0\'s')
    parser.add_argument('--json', metavar='OUT', help='also write the results '
                        'as JSON to OUT')
    return parser.parse_args(argv)


def config_name(budget) -> str:
    return 'DiT learned' if budget is None else f'DiT budget={budget}'


def profile_configs(dit, x, budgets, rows: int) -> dict:
    """Top operators by self CPU time of one forward per DiT budget."""
    from torch.profiler import ProfilerActivity, profile
    tables = {}
    for budget in budgets:
        dit.set_budget(budget)
        with torch.no_grad():
            dit(x)  # warm
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                dit(x)
        table = prof.key_averages().table(sort_by='self_cpu_time_total',
                                          row_limit=rows)
        tables[config_name(budget)] = table
        print(f'\n### torch.profiler: {config_name(budget)}\n\n```\n{table}\n```')
    return tables


def main(argv=None):
    args = parse_args(argv)
    env = environment(args.threads)
    torch.manual_seed(args.seed)
    budgets = sorted(set(args.budgets) | {1.0}, reverse=True)
    dit, pvt = build_pair(args.arch, args.seed)
    x = torch.randn(args.batch, 3, *args.size)
    diff = backbone_difference(dit, pvt, x)

    configs = [None] if args.learned else []
    configs = budgets + configs
    fns, flops = {}, {}
    pvt_call, dit_call = forward_calls(dit, pvt, x)
    fns[PVT] = pvt_call
    for budget in configs:
        fns[config_name(budget)] = dit_call(budget)
        fns[config_name(budget)]()
        info = dit.routing
        flops[config_name(budget)] = (float(info.flops_fraction.mean()),
                                      float(info.flops.mean()) / 1e9)
    route_gflops = dit.routing.route_flops / 1e9
    flops[PVT] = (1.0, route_gflops)

    times = interleaved_latency(fns, args.repeats, args.warmup)
    ref = config_name(1.0)
    med = {k: statistics.median(v) for k, v in times.items()}
    results = []
    for name in fns:
        budget = None
        if name != PVT:
            budget = next(b for b in configs if config_name(b) == name)
        results.append(dict(
            name=name, kind='pvt' if name == PVT else 'dit', budget=budget,
            flops_fraction=flops[name][0], gflops=flops[name][1],
            median_ms=med[name] * 1e3, min_ms=min(times[name]) * 1e3,
            mean_ms=statistics.fmean(times[name]) * 1e3,
            ratio_to_budget1=med[name] / med[ref],
            ratio_to_pvt=med[name] / med[PVT],
            min_ratio_to_budget1=min(times[name]) / min(times[ref]),
            paired_ratio_to_budget1=paired_ratio(times, name, ref),
            times_ms=[t * 1e3 for t in times[name]]))

    title = (f'DiT-{args.arch} vs mmdet PVTv2-{args.arch}, CPU, input '
             f'{args.batch}x3x{args.size[0]}x{args.size[1]}, '
             f'{env["threads"]} threads, {args.repeats} interleaved rounds '
             f'after {args.warmup} warm-up')
    print(f'## {title}\n')
    headers = ['config', 'FLOPs frac', 'GFLOPs', 'median ms', 'min ms',
               'median / DiT 1.0', 'min / DiT 1.0', 'paired / DiT 1.0',
               'median / PVTv2']
    rows = [[r['name'], fmt(r['flops_fraction']), fmt(r['gflops'], 2),
             fmt(r['median_ms'], 1), fmt(r['min_ms'], 1),
             fmt(r['ratio_to_budget1']), fmt(r['min_ratio_to_budget1']),
             fmt(r['paired_ratio_to_budget1']), fmt(r['ratio_to_pvt'])]
            for r in results]
    print(markdown_table(headers, rows))
    print(f'\nPVTv2-route GFLOPs (MACs) at this size: {route_gflops:.3f}; '
          f'max |DiT budget 1.0 - PVTv2| over the outputs: {diff:.2e}')
    env['load_average_end'] = load_average()
    print(f'load average (1, 5, 15 min) at start {env["load_average_start"]}, '
          f'at end {env["load_average_end"]}')

    lowest = min(budgets)
    key = None
    if lowest < 1.0:
        name = config_name(lowest)
        row = next(r for r in results if r['name'] == name)
        key = dict(budget=lowest, median_ratio=row['ratio_to_budget1'],
                   paired_ratio=row['paired_ratio_to_budget1'],
                   min_ratio=row['min_ratio_to_budget1'],
                   max_ratio=args.max_ratio)
        print(f'\nDiT-{args.arch} budget {lowest} / budget 1.0 latency: '
              f'{key["median_ratio"]:.3f} (medians), '
              f'{key["paired_ratio"]:.3f} (paired), '
              f'{key["min_ratio"]:.3f} (minima)')

    profiles = None
    if args.profile:
        profiles = profile_configs(dit, x, configs, args.profile)

    if args.json:
        out = dict(arch=args.arch, size=list(args.size), batch=args.batch,
                   repeats=args.repeats, warmup=args.warmup, seed=args.seed,
                   route_gflops=route_gflops, max_abs_diff_route_vs_pvt=diff,
                   environment=env, results=results, key_ratio=key,
                   profiles=profiles)
        write_json(args.json, out)
    return ratio_exit_code(key, args.max_ratio)

if __name__ == '__main__':
    sys.exit(main())
