"""The one-shot GPU benchmark: every dynamic backbone against its static peer,
bf16, at the sizes users run, into one JSON and one table.

    python tools/gpu/benchmark_kit.py [--out-dir DIR] [--time-limit S]
        [--device cuda|cpu] [--tiny] [--repeats N] [--warmup N]

For each model (DiT-b2 and DiT-Swin-v2-T Mask R-CNN, token-pass ViT-B and
MSViT ViT-B Segmenter) and each input size (1024x2048, then 512x512) it runs
``tools/analysis_tools/benchmark.py`` once: backbone and whole model, batch 1
and 8, the static peer and budgets 1.0, 0.75, 0.5 and the learned / threshold
route, under bfloat16 autocast, the peer attending through the same SDPA
kernels as ours (``--peer-attention sdpa``), peak memory included. Random
weights: a budget fixes what is computed, so it times fairly; the learned
route of random gates is only a shape of one.

First it checks the token core's one-call packed attention (FlashAttention's
``varlen`` on the GPU) against the per-image loop, bf16, unequal counts
(``attention_check`` in the JSON). Each run's JSON is written as it ends, and the combined ``kit.json`` and
``kit.md`` after every run, so a run cut short keeps what it measured. A run
that fails is recorded with its error and the next one starts. Runs that
would start after ``--time-limit`` seconds are recorded as skipped (the
benchmark must fit in a few minutes of a lent GPU).

``--device cpu --tiny`` is the rehearsal the test suite runs: the same runs
at 64x128, batch 1 alone, one round.

The table gives, per model, size, part and batch, the peer's median and each
route's median over budget 1.0's (and 1.0's over the peer's); a budget below
what the backbone must spend at that size is left out (``--skip-infeasible``). Issue 19's
goal, read off it: backbone budget 0.5 at most 0.6 of budget 1.0 at
1024x2048, batch 1 and 8, and budget 1.0 within 3% of the peer.
"""
import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools' / 'analysis_tools'))

import benchmark  # noqa: E402  (tools/analysis_tools/benchmark.py)
from dit_mm.analysis.report import markdown_table  # noqa: E402

MODELS = [
    ('DiT-b2 Mask R-CNN', 'configs/maskrcnn_dit_b2_coco.py'),
    ('DiT-Swin-v2-T Mask R-CNN', 'configs/maskrcnn_ditswinv2_t_coco.py'),
    ('token-pass ViT-B Segmenter', 'configs/segmenter_dovit_b_cityscapes.py'),
    ('MSViT ViT-B Segmenter', 'configs/segmenter_msvit_b_ade20k.py'),
]
SHAPES = [(1024, 2048), (512, 512)]
TINY_SHAPES = [(64, 128)]
BUDGETS = ['1.0', '0.75', '0.5', 'none']
ROUTES = ['budget 1.0', 'budget 0.75', 'budget 0.5', 'learned']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', default='work_dirs/gpu_kit')
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda')
    parser.add_argument('--tiny', action='store_true',
                        help='64x128, batch 1, one round: the CPU rehearsal')
    parser.add_argument('--time-limit', type=float, default=420,
                        help='seconds after which no further run starts')
    parser.add_argument('--repeats', type=int, default=None)
    parser.add_argument('--warmup', type=int, default=None)
    return parser.parse_args(argv)


def run_argv(config: str, shape, args, out: Path) -> list:
    """benchmark.py's arguments for one (model, size)."""
    repeats = args.repeats or (1 if args.tiny else 10)
    warmup = args.warmup if args.warmup is not None else (0 if args.tiny
                                                          else 3)
    return [str(ROOT / config), '--device', args.device, '--dtype', 'bf16',
            '--peer-attention', 'sdpa', '--skip-infeasible', '--shape',
            str(shape[0]), str(shape[1]), '--batch-size',
            '1' if args.tiny else '8',
            '--budget', *BUDGETS, '--repeats', str(repeats), '--warmup',
            str(warmup), '--no-progress', '--out', str(out)]


def summary_rows(runs: list) -> list:
    """Per (model, size, part, batch): the peer's median and the ratios."""
    rows = []
    for run in runs:
        if run['status'] != 'done':
            rows.append([run['model'], run['shape'], '-', '-',
                         run['status'], *['-'] * (len(ROUTES) + 1)])
            continue
        groups = {}
        for r in run['results']:
            groups.setdefault((r['part'], r['batch']), {})[r['config']] = r
        for (part, batch), by_config in groups.items():
            full = by_config['budget 1.0']['median_ms']
            half = by_config.get('budget 0.5', {})
            rows.append([
                run['model'], run['shape'], part, batch,
                f"{by_config['peer']['median_ms']:.2f}",
                f"{full / by_config['peer']['median_ms']:.3f}",
                *[f"{by_config[c]['median_ms'] / full:.3f}"
                  if c in by_config else 'below its minimum'
                  for c in ROUTES[1:]],
                f"{half['flops_fraction']:.3f}" if half else '-'])
    return rows


def attention_check(device: str) -> dict:
    """The largest difference between the core's one-call packed attention
    (``varlen`` on a GPU, else ``nested``) and its per-image loop, bf16, at
    unequal counts per image: self-attention as in the ViTs, and packed
    queries over whole images' keys as in DiT's PVT blocks."""
    from dit_mm.core.tokens import attend_packed, varlen_usable
    torch.manual_seed(0)
    lengths = [4096, 2500, 8192, 700]  # ViT-B at 1024x2048: 8192 in all
    if device == 'cpu':  # the rehearsal: a CPU attends densely per image
        lengths = [n // 100 for n in lengths]
    q, k, v = torch.randn(3, sum(lengths), 12, 64, device=device,
                          dtype=torch.bfloat16)
    one_call = 'varlen' if varlen_usable(q) else 'nested'
    checks = dict(method=one_call)
    for name, k_lengths in (('self', lengths), ('pvt', [512] * 4)):
        if one_call == 'nested' and name == 'pvt':
            continue  # a CPU's nested SDPA takes equal lengths only
        kk, vv = k[:sum(k_lengths)], v[:sum(k_lengths)]
        loop = attend_packed(q, kk, vv, lengths, k_lengths, 'loop')
        other = attend_packed(q, kk, vv, lengths, k_lengths, one_call)
        checks[name] = float((loop.float() - other.float()).abs().max())
    return checks


def write_summary(out_dir: Path, runs: list, meta: dict) -> str:
    """``kit.md`` (the table, returned) and ``kit.json`` (everything)."""
    table = markdown_table(
        ['model', 'input', 'part', 'batch', 'peer ms', '1.0 / peer',
         '0.75 / 1.0', '0.5 / 1.0', 'learned / 1.0', 'FLOPs frac at 0.5'],
        summary_rows(runs))
    (out_dir / 'kit.md').write_text(table + '\n')
    (out_dir / 'kit.json').write_text(json.dumps(dict(meta, runs=runs),
                                                 indent=1))
    return table


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    meta = dict(device=args.device, tiny=args.tiny, torch=torch.__version__,
                cuda=torch.version.cuda, gpu=torch.cuda.get_device_name(0)
                if args.device == 'cuda' else None,
                started=time.strftime('%Y-%m-%d %H:%M:%S'))
    meta['attention_check'] = attention_check(args.device)
    print(f'packed attention, one call vs per image: '
          f'{meta["attention_check"]}', flush=True)
    runs, table = [], ''
    shapes = TINY_SHAPES if args.tiny else SHAPES
    for shape in shapes:
        for name, config in MODELS:
            label = f'{shape[0]}x{shape[1]}'
            out = out_dir / (Path(config).stem + f'_{label}.json')
            run = dict(model=name, config=config, shape=label,
                       json=str(out), results=None)
            if time.monotonic() - start > args.time_limit:
                run['status'] = 'skipped (time limit)'
            else:
                print(f'== {name}, {label}', flush=True)
                began = time.monotonic()
                try:
                    benchmark.main(run_argv(config, shape, args, out))
                    run['status'] = 'done'
                    run['results'] = json.loads(out.read_text())['results']
                except (Exception, SystemExit) as error:  # keep the others
                    run['status'] = f'failed: {type(error).__name__}: '
                    run['status'] += str(error)[:300].replace('|', '/')
                    print(run['status'], flush=True)
                run['seconds'] = round(time.monotonic() - began, 1)
                gc.collect()
                if args.device == 'cuda':
                    torch.cuda.empty_cache()
            runs.append(run)
            meta['seconds'] = round(time.monotonic() - start, 1)
            table = write_summary(out_dir, runs, meta)
    print('\n' + table)
    print(f'\n{meta["seconds"]} s; {out_dir / "kit.json"}')
    return 0 if all(r['status'] == 'done' for r in runs) else 1


if __name__ == '__main__':
    os.chdir(ROOT)
    sys.exit(main())
