"""Measure DiT's wall-clock latency under compute budgets against its static
network (PVTv2, or Swin-v2 for the ``swinv2-*`` archs).

    python tools/analysis_tools/benchmark_dit_latency.py [--arch b2]
        [--size 512 512] [--budgets 1.0 0.75 0.5] [--learned] [--batch 1]
        [--gates new|random] [--window-modes packed whole]
        [--repeats 10] [--warmup 2] [--threads N] [--profile [ROWS]]
        [--max-ratio R] [--json OUT]

Why it exists: dynamic-token models are often fast only on paper (fewer FLOPs,
no fewer milliseconds). dit_mm claims a wall-clock saving, so this script
measures it, in one run on this machine's CPU, against the static baseline --
mmdet's ``PyramidVisionTransformerV2`` of the same arch carrying the same weights,
or for ``--arch swinv2-t`` / ``-s`` / ``-b`` mmpretrain's ``SwinTransformerV2`` --
and DiT at ``set_budget(1.0)`` (the static route, which equals the peer).

The gates: ``random`` (the default) spreads the kept tokens over the image
as trained gates do; ``new`` scores every token alike, so a budget keeps a
contiguous prefix of the map, the best case for gathers and scatters (and
for windowed attention, where a window with no kept token costs nothing):
timed only on request, as a bound. For Swin-v2 every budget
below 1 is timed with each ``--window-modes`` form of the sparse windowed
attention (``layers/swin_blocks.py``).

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
from dit_mm.models.layers import randomize_gates
from dit_mm.engine.cli import budget_type, positive_int
from bench_common import (build_pair, build_swin_pair, environment, fmt,
                          forward_calls, interleaved_latency, load_average,
                          markdown_table, num_params, paired_ratio,
                          ratio_exit_code, write_json)

PEERS = {'pvt': 'mmdet PVTv2', 'swinv2': 'mmpretrain Swin-v2'}
SWIN_ARCHS = ['swinv2-t', 'swinv2-s', 'swinv2-b']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--arch', default='b2',
                        choices=['b0', 'b1', 'b2', 'b3', 'b4', 'b5'] +
                        SWIN_ARCHS)
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
    parser.add_argument('--gates', choices=['new', 'random'],
                        default='random',
                        help='random gates (kept tokens spread over the '
                        'image, as trained ones; the default) or new ones '
                        '(ties: a prefix of tokens is kept, the best case)')
    parser.add_argument('--window-modes', nargs='+', default=['packed',
                        'whole'], choices=['packed', 'whole'],
                        help='Swin-v2: the sparse windowed attention forms '
                        'timed at each budget below 1')
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


def config_name(budget, mode=None) -> str:
    name = 'DiT learned' if budget is None else f'DiT budget={budget}'
    return name if mode is None else f'{name} ({mode})'


def dit_configs(budgets, learned: bool, modes) -> list:
    """``(budget, window mode or None)`` to time: budget 1.0 once (it runs
    the static blocks), the others in each window mode (PVTv2: none)."""
    configs = []
    for budget in budgets + ([None] if learned else []):
        if budget == 1.0 or not modes:
            configs.append((budget, None))
        else:
            configs.extend((budget, mode) for mode in modes)
    return configs


def profile_configs(dit, x, configs, rows: int) -> dict:
    """Top operators by self CPU time of one forward per DiT configuration."""
    from torch.profiler import ProfilerActivity, profile
    tables = {}
    for budget, mode in configs:
        dit.set_budget(budget)
        if mode is not None:
            dit.set_window_mode(mode)
        with torch.no_grad():
            dit(x)  # warm
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                dit(x)
        table = prof.key_averages().table(sort_by='self_cpu_time_total',
                                          row_limit=rows)
        tables[config_name(budget, mode)] = table
        print(f'\n### torch.profiler: {config_name(budget, mode)}\n\n```\n'
              f'{table}\n```')
    return tables


def main(argv=None):
    args = parse_args(argv)
    env = environment(args.threads)
    torch.manual_seed(args.seed)
    budgets = sorted(set(args.budgets) | {1.0}, reverse=True)
    family = 'swinv2' if args.arch in SWIN_ARCHS else 'pvt'
    peer = PEERS[family]
    if family == 'swinv2':
        dit, static = build_swin_pair(args.arch.split('-')[1], args.seed)
    else:
        dit, static = build_pair(args.arch, args.seed)
    gates = args.gates
    if gates == 'random':
        randomize_gates(dit, args.seed)
    x = torch.randn(args.batch, 3, *args.size)
    diff = backbone_difference(dit, static, x)

    configs = dit_configs(budgets, args.learned,
                          args.window_modes if family == 'swinv2' else [])
    fns, flops = {}, {}
    static_call, dit_call = forward_calls(dit, static, x)
    fns[peer] = static_call
    for budget, mode in configs:
        name = config_name(budget, mode)
        fns[name] = dit_call(budget, mode)
        fns[name]()
        info = dit.routing
        flops[name] = (float(info.flops_fraction.mean()),
                       float(info.flops.mean()) / 1e9)
    route_gflops = dit.routing.route_flops / 1e9
    flops[peer] = (1.0, route_gflops)

    times = interleaved_latency(fns, args.repeats, args.warmup)
    ref = config_name(1.0)
    med = {k: statistics.median(v) for k, v in times.items()}
    results = []
    for name in fns:
        budget = mode = None
        if name != peer:
            budget, mode = next(c for c in configs if config_name(*c) == name)
        results.append(dict(
            name=name, kind='pvt' if name == peer else 'dit', budget=budget,
            window_mode=mode,
            flops_fraction=flops[name][0], gflops=flops[name][1],
            median_ms=med[name] * 1e3, min_ms=min(times[name]) * 1e3,
            mean_ms=statistics.fmean(times[name]) * 1e3,
            ratio_to_budget1=med[name] / med[ref],
            ratio_to_pvt=med[name] / med[peer],
            min_ratio_to_budget1=min(times[name]) / min(times[ref]),
            paired_ratio_to_budget1=paired_ratio(times, name, ref),
            times_ms=[t * 1e3 for t in times[name]]))

    title = (f'DiT-{args.arch} vs {peer} of the same arch, CPU, input '
             f'{args.batch}x3x{args.size[0]}x{args.size[1]}, '
             f'{env["threads"]} threads, {args.repeats} interleaved rounds '
             f'after {args.warmup} warm-up, {gates} gates')
    print(f'## {title}\n')
    headers = ['config', 'FLOPs frac', 'GFLOPs', 'median ms', 'min ms',
               'median / DiT 1.0', 'min / DiT 1.0', 'paired / DiT 1.0',
               f'median / {peer}']
    rows = [[r['name'], fmt(r['flops_fraction']), fmt(r['gflops'], 2),
             fmt(r['median_ms'], 1), fmt(r['min_ms'], 1),
             fmt(r['ratio_to_budget1']), fmt(r['min_ratio_to_budget1']),
             fmt(r['paired_ratio_to_budget1']), fmt(r['ratio_to_pvt'])]
            for r in results]
    print(markdown_table(headers, rows))
    params = dict(dit=num_params(dit) / 1e6, peer=num_params(static) / 1e6)
    print(f'\nparameters (M): DiT {params["dit"]:.2f}, {peer} '
          f'{params["peer"]:.2f} (the difference: the routing gates)')
    print(f'static-route GFLOPs (MACs) at this size: {route_gflops:.3f}; '
          f'max |DiT budget 1.0 - {peer}| over the outputs: {diff:.2e}')
    env['load_average_end'] = load_average()
    print(f'load average (1, 5, 15 min) at start {env["load_average_start"]}, '
          f'at end {env["load_average_end"]}')

    lowest = min(budgets)
    key = None
    if lowest < 1.0:  # the fastest form of the lowest budget
        row = min((r for r in results if r['budget'] == lowest),
                  key=lambda r: r['ratio_to_budget1'])
        key = dict(budget=lowest, window_mode=row['window_mode'],
                   median_ratio=row['ratio_to_budget1'],
                   paired_ratio=row['paired_ratio_to_budget1'],
                   min_ratio=row['min_ratio_to_budget1'],
                   max_ratio=args.max_ratio)
        form = f' ({key["window_mode"]})' if key['window_mode'] else ''
        print(f'\nDiT-{args.arch} budget {lowest}{form} / budget 1.0 latency: '
              f'{key["median_ratio"]:.3f} (medians), '
              f'{key["paired_ratio"]:.3f} (paired), '
              f'{key["min_ratio"]:.3f} (minima)')

    profiles = None
    if args.profile:
        profiles = profile_configs(dit, x, configs, args.profile)

    if args.json:
        out = dict(arch=args.arch, gates=gates, size=list(args.size),
                   batch=args.batch,
                   repeats=args.repeats, warmup=args.warmup, seed=args.seed,
                   route_gflops=route_gflops, params_m=params,
                   max_abs_diff_route_vs_pvt=diff,
                   environment=env, results=results, key_ratio=key,
                   profiles=profiles)
        write_json(args.json, out)
    return ratio_exit_code(key, args.max_ratio)

if __name__ == '__main__':
    sys.exit(main())
