"""Measure a dynamic ViT's wall-clock latency under compute budgets against
the full ViT (mmseg ``VisionTransformer``) in the same run: the token-pass ViT
(DoViT) or the mixed-scale ViT (MSViT).

    python tools/analysis_tools/benchmark_vit_latency.py [--method token-pass]
        [--arch b] [--size 512 512] [--budgets 1.0 0.75 0.5] [--batch 1]
        [--repeats 10] [--warmup 2] [--threads N] [--max-ratio R]
        [--json OUT]

The backbones carry the same weights (random, ViT-initialised): mmseg's
``VisionTransformer`` is the static baseline, and the dynamic ViT at
``set_budget(1.0)`` equals it (the largest output difference is printed).
``set_budget(r)`` spends at most fraction ``r`` of the full ViT's FLOPs: the
token-pass ViT stops the most confident tokens at each stop head, the
mixed-scale ViT makes its lowest-scoring regions coarse tokens. Which tokens
depends on the weights, how many does not, so random weights time it fairly.
Eval mode, ``torch.no_grad``, one random input; the configurations are timed
round-robin (see ``bench_common.interleaved_latency``). ``--max-ratio R`` exits
with status 1 when the smallest budget's median latency exceeds R times that
of budget 1.0.
"""
import argparse
import statistics
import sys

import torch

from dit_mm.analysis.latency import add_timing_args
from dit_mm.analysis.static_peer import backbone_difference
from dit_mm.engine.cli import budget_type, positive_int
from dit_mm.models.backbones import (MixedScaleViT, TokenPassViT,
                                     resolve_vit_arch)
from bench_common import (environment, fmt, forward_calls,
                          interleaved_latency, load_average, markdown_table,
                          num_params, paired_ratio, quiet_mmengine,
                          ratio_exit_code, write_json)

VIT = 'mmseg ViT'
METHODS = {'token-pass': TokenPassViT, 'mixed-scale': MixedScaleViT}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--method', default='token-pass',
                        choices=sorted(METHODS))
    parser.add_argument('--arch', default='b', choices=['t', 's', 'b', 'l'])
    parser.add_argument('--size', type=positive_int, nargs=2, default=[512, 512],
                        metavar=('H', 'W'), help='input height and width')
    parser.add_argument('--budgets', type=budget_type(), nargs='+',
                        default=[1.0, 0.75, 0.5],
                        help='set_budget values (1.0 is always added)')
    parser.add_argument('--batch', type=positive_int, default=1)
    add_timing_args(parser)
    parser.add_argument('--max-ratio', type=float, default=None)
    parser.add_argument('--json', metavar='OUT')
    return parser.parse_args(argv)


def build_pair(method: str, arch: str, size, seed: int):
    """The ``method``'s dynamic ViT and mmseg's ``VisionTransformer`` with the
    same weights, four outputs (layers at each quarter), eval mode."""
    from mmseg.models.backbones import VisionTransformer
    quiet_mmengine()
    setting = resolve_vit_arch(arch)
    layers = setting['num_layers']
    out = tuple(range(layers // 4 - 1, layers, layers // 4))
    deit = dict(patch_bias=True, norm_cfg=dict(type='LN', eps=1e-6))
    torch.manual_seed(seed)
    vit = VisionTransformer(
        img_size=tuple(size), embed_dims=setting['embed_dims'],
        num_layers=layers, num_heads=setting['num_heads'],
        mlp_ratio=setting['mlp_ratio'], out_indices=out, **deit)
    vit.init_weights()
    vit.eval()
    ours = METHODS[method](arch, img_size=tuple(size), out_indices=out,
                           **deit)
    ours.init_weights()
    ours.load_weights(vit.state_dict(), 'mmseg ViT')
    return ours.eval(), vit


def config_name(method: str, budget: float) -> str:
    return f'{method} budget={budget}'

def main(argv=None):
    args = parse_args(argv)
    env = environment(args.threads)
    budgets = sorted(set(args.budgets) | {1.0}, reverse=True)
    ours, vit = build_pair(args.method, args.arch, args.size, args.seed)
    title = f'{type(ours).__name__}-{args.arch.upper()}'

    def config_name(budget: float) -> str:
        return f'{args.method} budget={budget}'
    x = torch.randn(args.batch, 3, *args.size)
    diff = backbone_difference(ours, vit, x)

    vit_call, call = forward_calls(ours, vit, x)

    fns, flops = {VIT: vit_call}, {}
    for budget in budgets:
        fns[config_name(budget)] = call(budget)
        fns[config_name(budget)]()
        info = ours.routing
        kept = getattr(info, 'token_fraction', info.keep_fraction)
        flops[config_name(budget)] = (float(info.flops_fraction.mean()),
                                      float(info.flops.mean()) / 1e9,
                                      float(kept.mean()))
    full_gflops = ours.routing.full_flops / 1e9
    flops[VIT] = (1.0, full_gflops, 1.0)

    times = interleaved_latency(fns, args.repeats, args.warmup)
    ref = config_name(1.0)
    med = {k: statistics.median(v) for k, v in times.items()}
    results = [
        dict(name=name, budget=None if name == VIT else budgets[i - 1],
             flops_fraction=flops[name][0], gflops=flops[name][1],
             keep_fraction=flops[name][2], median_ms=med[name] * 1e3,
             min_ms=min(times[name]) * 1e3,
             ratio_to_budget1=med[name] / med[ref],
             ratio_to_vit=med[name] / med[VIT],
             paired_ratio_to_budget1=paired_ratio(times, name, ref),
             times_ms=[t * 1e3 for t in times[name]])
        for i, name in enumerate(fns)
    ]
    print(f'## {title} vs mmseg ViT, CPU, input '
          f'{args.batch}x3x{args.size[0]}x{args.size[1]}, {env["threads"]} '
          f'threads, {args.repeats} interleaved rounds after {args.warmup} '
          'warm-up\n')
    kept = ('tokens kept' if args.method == 'mixed-scale' else
            'token-layers kept')
    headers = ['config', 'FLOPs frac', 'GFLOPs', kept,
               'median ms', 'min ms', 'median / budget 1.0',
               'paired / budget 1.0', 'median / ViT']
    print(markdown_table(headers, [
        [r['name'], fmt(r['flops_fraction']), fmt(r['gflops'], 2),
         fmt(r['keep_fraction']), fmt(r['median_ms'], 1), fmt(r['min_ms'], 1),
         fmt(r['ratio_to_budget1']), fmt(r['paired_ratio_to_budget1']),
         fmt(r['ratio_to_vit'])] for r in results]))
    params = dict(dynamic=num_params(ours) / 1e6, vit=num_params(vit) / 1e6)
    params['added'] = params['dynamic'] - params['vit']
    print(f'\nfull-ViT GFLOPs (MACs) at this size: {full_gflops:.3f}; max '
          f'|budget 1.0 - mmseg ViT| over the outputs: {diff:.2e}; params '
          f'(M): {args.method} {params["dynamic"]:.2f} = ViT '
          f'{params["vit"]:.2f} + {params["added"]:.2f} (stop heads, gate)')
    env['load_average_end'] = load_average()
    lowest = min(budgets)
    key = None
    if lowest < 1.0:
        row = next(r for r in results if r['name'] == config_name(lowest))
        key = dict(budget=lowest, median_ratio=row['ratio_to_budget1'],
                   paired_ratio=row['paired_ratio_to_budget1'],
                   max_ratio=args.max_ratio)
        print(f'\n{title} budget {lowest} / budget '
              f'1.0 latency: {key["median_ratio"]:.3f} (medians), '
              f'{key["paired_ratio"]:.3f} (paired)')
    if args.json:
        write_json(args.json, dict(
            method=args.method, arch=args.arch, size=list(args.size),
            batch=args.batch,
            repeats=args.repeats, full_gflops=full_gflops,
            max_abs_diff_budget1_vs_vit=diff, params_m=params,
            environment=env, results=results, key_ratio=key))
    return ratio_exit_code(key, args.max_ratio)

if __name__ == '__main__':
    sys.exit(main())
