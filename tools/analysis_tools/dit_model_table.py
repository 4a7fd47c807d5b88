"""Tabulate DiT b0-b5: parameters, FLOPs (counted and measured) and CPU latency.

    python tools/analysis_tools/dit_model_table.py [--archs b0 ... b5]
        [--budget 0.5] [--latency-size H W] [--repeats 5] [--warmup 1]
        [--no-latency] [--no-jit-count] [--threads N] [--json OUT]

Why it exists: the figures the README and the papers quote (parameters, GFLOPs
at 224x224, GFLOPs at detection size, the saving of a budget) should come from
one reproducible run, each checked against an independent source: the PVTv2
paper's table, mmengine's jit-trace FLOP counter on mmdet's
``PyramidVisionTransformerV2``, and the FLOPs DiT itself realizes in a forward.

Per arch it reports
* parameters of DiT (with its routing gates) and of mmdet's PVTv2 backbone, the
  latter plus a 1000-class ImageNet head (``C4 * 1000 + 1000``), next to the
  paper's figure;
* GFLOPs (multiply-accumulates, as the papers count them) of the PVTv2 route from
  the analytic counter (``dit_mm.core.pvt_cost``) at 224x224 and 800x1333,
  the paper's 224 figure, and mmengine's ``FlopAnalyzer`` on mmdet's PVTv2 at 224
  (with the part it gives to LayerNorms, which the analytic counter leaves out);
* realized FLOPs of a forward at 224 under ``set_budget(--budget)`` and under the
  learned decisions of freshly initialised gates;
* CPU latency at ``--latency-size`` (eval, ``torch.no_grad``, batch 1) of mmdet's
  PVTv2 and DiT at budgets 1.0 and ``--budget``, timed by ``benchmark.py
  --backbone dit:ARCH`` (interleaved round-robin, medians of ``--repeats``
  rounds, in the same run) with random gates: the kept tokens spread over the
  map as trained gates' do (fresh gates tie and keep a contiguous prefix, the
  best case for gathers).
"""
import argparse
import sys
import warnings

import torch

import benchmark  # tools/analysis_tools/benchmark.py: the timing
from dit_mm.analysis.report import (check_json_target, environment, fmt,
                                    load_average, markdown_table,
                                    quiet_mmengine, write_json)
from dit_mm.analysis.static_peer import static_peer_backbone
from dit_mm.core.pvt_cost import route_flops
from dit_mm.engine.cli import budget_type, positive_int
from dit_mm.models.backbones import DiT
from dit_mm.models.dit.archs import ARCHS, resolve_arch

# PVTv2 paper (Wang et al., 2022), Table 3: ImageNet-1k classification models.
PAPER_PARAMS_M = dict(b0=3.4, b1=14.0, b2=25.4, b3=45.2, b4=62.6, b5=82.0)
PAPER_GFLOPS_224 = dict(b0=0.6, b1=2.1, b2=4.0, b3=6.9, b4=10.1, b5=11.8)
DET_SIZE = (800, 1333)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--archs', nargs='+', default=sorted(ARCHS),
                        choices=sorted(ARCHS))
    parser.add_argument('--budget', type=budget_type(allow_one=False), default=0.5,
                        help='the set_budget value measured beside 1.0')
    parser.add_argument('--latency-size', type=positive_int, nargs=2,
                        default=[224, 224], metavar=('H', 'W'))
    parser.add_argument('--repeats', type=positive_int, default=5,
                        help='timed round-robin rounds per arch')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed rounds per arch before timing')
    parser.add_argument('--no-latency', action='store_true',
                        help='skip the latency measurement')
    parser.add_argument('--no-jit-count', action='store_true',
                        help="skip mmengine's FlopAnalyzer cross-check")
    parser.add_argument('--threads', type=positive_int, default=None,
                        help="torch threads (default: leave torch's setting)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', metavar='OUT',
                        help='also write the results as JSON to OUT')
    return parser.parse_args(argv)


def jit_count(pvt, size) -> dict:
    """mmengine's FlopAnalyzer on mmdet's PVTv2: total and per operator."""
    from mmengine.analysis import FlopAnalyzer
    quiet_mmengine()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analyzer = FlopAnalyzer(pvt, (torch.randn(1, 3, *size), ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        total = analyzer.total()
        by_op = dict(analyzer.by_operator())
    return dict(gflops=total / 1e9,
                by_operator_gflops={k: v / 1e9 for k, v in by_op.items()})


@torch.no_grad()
def realized(dit, budget, size) -> tuple:
    """(FLOPs fraction of the PVTv2 route, GFLOPs) of one forward."""
    dit.set_budget(budget)
    info = dit(torch.randn(1, 3, *size)).stats
    return float(info.flops_fraction.mean()), float(info.flops.mean()) / 1e9


def latency(arch: str, args) -> dict:
    """``benchmark.py --backbone dit:ARCH`` at batch 1: mmdet's PVTv2, DiT at
    budgets 1.0 and ``--budget``, random gates."""
    h, w = args.latency_size
    argv = ['--backbone', f'dit:{arch}', '--shape', str(h), str(w),
            '--budget', '1.0', str(args.budget), '--batch-size', '1',
            '--repeats', str(args.repeats), '--warmup', str(args.warmup),
            '--seed', str(args.seed), '--no-progress']
    if args.threads:
        argv += ['--threads', str(args.threads)]
    rows = {r['config']: r for r in benchmark.measure(
        benchmark.parse_args(argv))['results']}
    pvt, full, low = (rows[benchmark.PEER], rows['budget 1.0'],
                      rows[f'budget {args.budget}'])
    return dict(
        size=[h, w], repeats=args.repeats, warmup=args.warmup,
        pvt_ms=pvt['median_ms'], dit_1_ms=full['median_ms'],
        dit_budget_ms=low['median_ms'],
        dit_1_over_pvt=full['ratio_to_peer'],
        dit_budget_over_pvt=low['ratio_to_peer'],
        dit_budget_over_dit_1=low['ratio_to_budget1'],
        paired_budget_over_dit_1=low['paired_ratio_to_budget1'],
        times_ms={name: rows[name]['times_ms'] for name in rows})


def measure_arch(arch: str, args) -> dict:
    torch.manual_seed(args.seed)
    quiet_mmengine()
    dit = DiT(arch)
    dit.init_weights()
    pvt = static_peer_backbone(dit.eval())
    setting = resolve_arch(arch)
    pvt_params = benchmark.num_params(pvt)
    dit_params = benchmark.num_params(dit)
    gate_params = sum(benchmark.num_params(s.gates) for s in dit.stages)
    head = setting['embed_dims'][-1] * 1000 + 1000
    row = dict(
        arch=arch,
        params_dit_m=dit_params / 1e6,
        params_gates_m=gate_params / 1e6,
        params_pvt_m=pvt_params / 1e6,
        params_pvt_with_head_m=(pvt_params + head) / 1e6,
        paper_params_m=PAPER_PARAMS_M[arch],
        route_gflops_224=route_flops(setting, (224, 224)) / 1e9,
        route_gflops_800x1333=route_flops(setting, DET_SIZE) / 1e9,
        paper_gflops_224=PAPER_GFLOPS_224[arch])
    if not args.no_jit_count:
        count = jit_count(pvt, (224, 224))
        norms = count['by_operator_gflops'].get('layer_norm', 0.)
        row.update(
            jit_gflops_224=count['gflops'],
            jit_layer_norm_gflops_224=norms,
            jit_by_operator_gflops_224=count['by_operator_gflops'],
            jit_minus_norms_minus_route_gflops=(
                count['gflops'] - norms - row['route_gflops_224']))
    fraction, gflops = realized(dit, args.budget, (224, 224))
    row.update(budget=args.budget, budget_fraction_224=fraction,
               budget_gflops_224=gflops)
    fraction, gflops = realized(dit, 1.0, (224, 224))
    row.update(route_fraction_224=fraction)
    fraction, gflops = realized(dit, None, (224, 224))
    row.update(learned_fraction_224=fraction, learned_gflops_224=gflops)
    row['latency'] = None if args.no_latency else latency(arch, args)
    print(f'{arch}: done', file=sys.stderr, flush=True)
    return row


def print_tables(rows, args) -> None:
    print('## Parameters (M) and PVTv2-route GFLOPs (multiply-accumulates)\n')
    headers = ['arch', 'DiT', 'of which gates', 'mmdet PVTv2',
               'PVTv2 + IN-1k head', 'paper', 'GFLOPs 224 (analytic)',
               'paper GFLOPs 224', 'GFLOPs 800x1333 (analytic)']
    if not args.no_jit_count:
        headers[8:8] = ['GFLOPs 224 (mmengine jit)', 'of which LayerNorm']
    table = []
    for r in rows:
        line = [r['arch'], fmt(r['params_dit_m'], 2), fmt(r['params_gates_m'], 4),
                fmt(r['params_pvt_m'], 2), fmt(r['params_pvt_with_head_m'], 2),
                fmt(r['paper_params_m'], 1), fmt(r['route_gflops_224']),
                fmt(r['paper_gflops_224'], 1)]
        if not args.no_jit_count:
            line += [fmt(r['jit_gflops_224']),
                     fmt(r['jit_layer_norm_gflops_224'])]
        table.append(line + [fmt(r['route_gflops_800x1333'], 1)])
    print(markdown_table(headers, table))

    print('\n## Realized FLOPs of a forward at 224x224 (fraction of the '
          'PVTv2 route, GFLOPs)\n')
    headers = ['arch', 'budget 1.0 frac', f'budget {args.budget} frac',
               f'budget {args.budget} GFLOPs', 'learned (fresh gates) frac',
               'learned GFLOPs']
    print(markdown_table(headers, [
        [r['arch'], fmt(r['route_fraction_224']),
         fmt(r['budget_fraction_224']), fmt(r['budget_gflops_224']),
         fmt(r['learned_fraction_224']), fmt(r['learned_gflops_224'])]
        for r in rows]))

    if args.no_latency:
        return
    h, w = args.latency_size
    print(f'\n## CPU latency at {h}x{w}, batch 1, random gates (medians of '
          f'{args.repeats} interleaved rounds, ms)\n')
    headers = ['arch', 'mmdet PVTv2', 'DiT 1.0', f'DiT {args.budget}',
               'DiT 1.0 / PVTv2', f'DiT {args.budget} / PVTv2',
               f'DiT {args.budget} / DiT 1.0', 'paired']
    print(markdown_table(headers, [
        [r['arch'], fmt(r['latency']['pvt_ms'], 1),
         fmt(r['latency']['dit_1_ms'], 1),
         fmt(r['latency']['dit_budget_ms'], 1),
         fmt(r['latency']['dit_1_over_pvt']),
         fmt(r['latency']['dit_budget_over_pvt']),
         fmt(r['latency']['dit_budget_over_dit_1']),
         fmt(r['latency']['paired_budget_over_dit_1'])] for r in rows]))


def main(argv=None):
    args = parse_args(argv)
    check_json_target(args.json)
    env = environment(args.threads)
    rows = [measure_arch(arch, args) for arch in args.archs]
    env['load_average_end'] = load_average()
    print_tables(rows, args)
    print(f'\n{env["threads"]} torch threads; load average (1, 5, 15 min) at '
          f'start {env["load_average_start"]}, at end {env["load_average_end"]}')
    if not args.no_jit_count:
        worst = max(abs(r['jit_minus_norms_minus_route_gflops']) for r in rows)
        print(f'mmengine jit count - its LayerNorm part - analytic route: at '
              f'most {worst:.4f} GFLOPs in magnitude')
    if args.json:
        write_json(args.json, dict(budget=args.budget,
                                   det_size=list(DET_SIZE), environment=env,
                                   rows=rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
