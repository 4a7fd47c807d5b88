"""Latency, throughput and peak memory of a dynamic backbone and of its whole
model against the static peer, in one run.

    python tools/analysis_tools/benchmark.py CONFIG [--checkpoint CKPT]
        [--budget R ...] [--batch-size B] [--shape H W] [--device cpu|cuda]
        [--repeats N] [--warmup N] [--threads N] [--seed S] [--out JSON]
        [--dtype fp32|bf16] [--peer-attention stock|sdpa] [--skip-infeasible]
        [--cfg-options k=v ...] [--no-progress]

What is timed, for batch 1 and batch ``--batch-size`` (default 4):

- *backbone*: ``model.backbone(x)`` on the preprocessed images;
- *model*: ``model(**data, mode='predict')`` on an already preprocessed batch
  (the data preprocessor is left out; post-processing, NMS, resizing the
  logits back to the image, is in);

each for the static peer (mmdet ``PyramidVisionTransformerV2`` for DiT,
mmseg ``VisionTransformer`` for the token-pass and mixed-scale ViTs, built
with the backbone's settings and carrying its weights; the peer model is the
config's model with the backbone swapped, ``dit_mm.analysis.static_peer``)
and for every ``--budget`` (``set_budget(r)``; ``none``: the learned
decisions or threshold; default ``1.0 0.5``). At budget 1.0 the dynamic
backbone computes the peer's function: the largest difference of their
outputs is printed as a check.

``--dtype bf16`` runs every timed call (peer too) under bfloat16 autocast.
``--peer-attention sdpa`` has the peer's ``nn.MultiheadAttention`` modules
skip their attention weights, so the peer attends through the same SDPA
kernels as the dynamic backbones (``static_peer.attend_with_sdpa``); the
default, ``stock``, times the peer as the libraries build it.

Input: random uint8 images of ``--shape`` (default: the size the config's
test images reach the model at: an mmseg sliding window, the data
preprocessor's crop, the test pipeline's crop or resize scale; 512x512 when
the config names none), one seed. The weights are the config's
initialisation or ``--checkpoint``; budgets fix how much is computed, so
random weights time them fairly, but ``none`` depends on trained weights.
Without a checkpoint, DiT's routing gates are drawn at random (fresh ones tie,
and a budget would keep a contiguous prefix of tokens: the best case for
gathers), so the kept tokens spread over the image as trained gates' do.

Method: eval mode, ``torch.no_grad``, garbage collection off, ``--warmup``
untimed rounds, then ``--repeats`` rounds that call every configuration once
each, round-robin and rotated (``dit_mm.analysis.latency``), with
``torch.cuda.synchronize`` around each call on a GPU. Reported per
configuration: median and spread (min, max, p10, p90, quartiles) in ms,
images/s (batch / median), the ratio of medians to the peer at the same part
and batch and the median of the per-round ratios (paired), the realized FLOPs
fraction of the dynamic backbone (``backbone.routing.flops_fraction``, mean
over the batch) and the peak memory.

Peak memory, from one extra untimed call per configuration: the parameters
and buffers of what is called (backbone or whole model) plus the input
tensor, plus the most bytes live at once during the call above what was live
before it. On CUDA that is ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``; on the CPU, the allocation and free events of
torch's allocator recorded by ``torch.profiler`` (``profile_memory=True``),
summed in time order (``dit_mm.analysis.latency.peak_memory``; memory outside
torch's allocator, oneDNN scratch say, is not seen). Caches a module keeps
between calls (DiT's sparse-inference scratch grid) are emptied before that
call, so the memory they need is counted.

A config whose backbone takes no budget is refused (SystemExit): there is no
peer to compare with; time such a model with mmdet's / mmseg's own tools.
"""
import argparse
import contextlib
import functools
import platform
import statistics
import sys
from typing import Callable, ContextManager, Dict, List

import torch
from mmengine.config import DictAction

import dit_mm
from dit_mm.analysis.latency import (add_timing_args, cuda_synchronizer,
                                     interleaved_latency, latency_stats,
                                     paired_ratio, peak_memory, tensor_bytes)
from dit_mm.analysis.report import (device_name, environment, fmt,
                                    load_average, markdown_table,
                                    quiet_mmengine, write_json)
from dit_mm.analysis.static_peer import (attend_with_sdpa,
                                         backbone_difference, peer_name,
                                         with_static_peer)
from dit_mm.analysis.task_model import (budget, build_task_model,
                                        config_input_shape, config_scope_of,
                                        is_dynamic, preprocess,
                                        synthetic_batch)
from dit_mm.engine.cli import budget_type, load_config, positive_int
from dit_mm.models.backbones.dit_routing import RoutedBackbone
from dit_mm.models.layers import randomize_gates

PEER = 'peer'
MB = 2**20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--checkpoint', help='weights of the whole model '
                        "(default: the config's initialisation)")
    parser.add_argument('--budget', type=budget_type(allow_none=True),
                        nargs='+', default=[1.0, 0.5], metavar='R',
                        help="set_budget values in (0, 1]; 'none': the "
                        'learned decisions / threshold')
    parser.add_argument('--batch-size', type=positive_int, default=4,
                        help='the second batch size timed (batch 1 always)')
    parser.add_argument('--shape', type=positive_int, nargs=2,
                        metavar=('H', 'W'), help='input size (default: the '
                        "config's test size, else 512 512)")
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', choices=['fp32', 'bf16'], default='fp32',
                        help='bf16: every timed call under bfloat16 autocast')
    parser.add_argument('--peer-attention', choices=['stock', 'sdpa'],
                        default='stock', help="sdpa: the peer's attention "
                        'through scaled_dot_product_attention, as ours')
    parser.add_argument('--skip-infeasible', action='store_true',
                        help='leave out, with a message, a budget the '
                        'backbone cannot meet at this size (default: stop)')
    add_timing_args(parser)
    parser.add_argument('--out', metavar='JSON', help='write the results as '
                        'JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    args.budget = list(dict.fromkeys(args.budget))  # once each, in order
    return args


def config_label(value) -> str:
    if value == PEER:
        return PEER
    return 'learned' if value is None else f'budget {value}'


def drop_caches(model: torch.nn.Module) -> None:
    """Empty the memory modules keep between calls (DiT's scratch grid)."""
    for module in model.modules():
        scratch = getattr(module, '_scratch', None)
        if isinstance(scratch, dict):
            scratch.clear()


def make_call(part: str, model: torch.nn.Module, data: dict, value,
              precision: Callable[[], ContextManager]
              ) -> Callable[[], object]:
    """A no-grad call of ``model``'s backbone or of the whole model at
    budget ``value`` (``'config'``: as it is), under ``precision()``."""
    inputs = data['inputs']
    if part == 'backbone':
        def call():
            with torch.no_grad(), precision(), budget(model, value):
                return model.backbone(inputs)
        return call
    # predictions are written into the samples: each configuration its own
    samples = [sample.clone() for sample in data['data_samples']]

    def call():
        with torch.no_grad(), precision(), budget(model, value):
            return model(inputs=inputs, data_samples=samples, mode='predict')
    return call


def precision_of(device: str, dtype: str) -> Callable[[], ContextManager]:
    """What each timed call runs under: nothing, or bfloat16 autocast."""
    if dtype == 'fp32':
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device_type=device,
                             dtype=torch.bfloat16)


def configurations(model, peer_model, data: Dict[int, dict], budgets,
                   precision: Callable[[], ContextManager] =
                   contextlib.nullcontext) -> List[dict]:
    """Every (part, batch, peer or budget) to time, in table order."""
    configs = []
    for part in ('backbone', 'model'):
        for batch, batch_data in data.items():
            for value in [PEER] + list(budgets):
                target = peer_model if value == PEER else model
                configs.append(dict(
                    part=part, batch=batch, config=config_label(value),
                    budget=None if value == PEER else value,
                    peer=value == PEER, target=target,
                    call=make_call(part, target, batch_data,
                                   'config' if value == PEER else value,
                                   precision),
                    resident=(target.backbone if part == 'backbone'
                              else target),
                    inputs=batch_data['inputs']))
    return configs


def key_of(config: dict) -> str:
    return f'{config["part"]} | batch {config["batch"]} | {config["config"]}'


def check_and_measure(configs: List[dict], device: str,
                      skip: bool = False) -> List[dict]:
    """One call of each configuration, its realized FLOPs, then its peak
    memory. A budget the backbone refuses stops here, named, or with
    ``skip`` is left out with that message printed. Returns those kept."""
    kept = []
    for config in configs:
        try:
            config['call']()
        except ValueError as error:
            if not skip:
                raise SystemExit(f'error: {key_of(config)} failed: {error}')
            print(f'skipped: {key_of(config)}: {error}', file=sys.stderr)
            continue
        routing = None if config['peer'] else config['target'].backbone.routing
        config['flops_fraction'] = None if routing is None else float(
            routing.flops_fraction.float().mean())
        config['gflops'] = None if routing is None else float(
            routing.flops.double().mean()) / 1e9
        kept.append(config)
    for config in kept:
        drop_caches(config['target'])
        resident = tensor_bytes(config['resident'], config['inputs'])
        during = peak_memory(config['call'], device)
        config.update(resident_bytes=resident, call_peak_bytes=during,
                      peak_bytes=resident + during)
    return kept


def results_of(configs: List[dict], times: Dict[str, List[float]]) -> list:
    rows = []
    for config in configs:
        key = key_of(config)
        peer_key = key_of(dict(config, config=PEER))
        stats = latency_stats(times[key], config['batch'])
        peer_median = statistics.median(times[peer_key])
        rows.append(dict(
            part=config['part'], batch=config['batch'],
            config=config['config'], budget=config['budget'],
            peer=config['peer'], **stats,
            ratio_to_peer=stats['median_ms'] / (peer_median * 1e3),
            paired_ratio_to_peer=paired_ratio(times, key, peer_key),
            flops_fraction=config['flops_fraction'],
            gflops=config['gflops'],
            peak_mb=config['peak_bytes'] / MB,
            resident_mb=config['resident_bytes'] / MB,
            call_peak_mb=config['call_peak_bytes'] / MB,
            times_ms=[t * 1e3 for t in times[key]]))
    return rows


def table_of(rows: list, peer: str) -> str:
    """The markdown table of ``rows``; ``peer`` names the peer's class."""
    headers = ['part', 'batch', 'config', 'median ms',
               'spread ms: min-max (IQR)', 'images/s', 'median / peer',
               'paired / peer', 'peak MB', 'FLOPs frac']
    body = [[
        r['part'], r['batch'], f'{r["config"]} ({peer})' if r['peer']
        else r['config'], fmt(r['median_ms'], 1),
        f'{r["min_ms"]:.1f}-{r["max_ms"]:.1f} ({r["iqr_ms"]:.1f})',
        fmt(r['images_per_s'], 2), fmt(r['ratio_to_peer']),
        fmt(r['paired_ratio_to_peer']), fmt(r['peak_mb'], 1),
        fmt(r['flops_fraction'])
    ] for r in rows]
    return markdown_table(headers, body)


def library_versions() -> dict:
    versions = dict(dit_mm=getattr(dit_mm, '__version__', None),
                    python=platform.python_version())
    for name in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain'):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def main(argv=None):
    args = parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('error: --device cuda, but torch sees no CUDA device')
    try:
        cfg = load_config(args.config, args.cfg_options)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f'error: {error}')
    env = environment(args.threads)
    quiet_mmengine()
    if args.shape:
        shape, shape_source = tuple(args.shape), '--shape'
    else:
        shape, shape_source = config_input_shape(cfg)
    torch.manual_seed(args.seed)
    model = build_task_model(cfg, args.checkpoint, args.device)
    backbone = getattr(model, 'backbone', None)
    if not is_dynamic(backbone):
        raise SystemExit(
            f'error: the backbone of {args.config} '
            f'({type(backbone).__name__}) takes no budget; benchmark.py '
            'compares a dynamic backbone (DiT, TokenPassViT, MixedScaleViT) '
            "with its static peer. Time a stock model with its library's "
            'own tools.')
    if args.checkpoint is None and isinstance(backbone, RoutedBackbone):
        randomize_gates(backbone, args.seed)
    with config_scope_of(cfg):
        peer_model = with_static_peer(model)
        if args.peer_attention == 'sdpa':
            attend_with_sdpa(peer_model)
        data = {batch: preprocess(model, synthetic_batch(
                    cfg, shape, batch, seed=args.seed))
                for batch in sorted({1, args.batch_size})}
        difference = backbone_difference(backbone, peer_model.backbone,
                                         data[1]['inputs'])
        configs = configurations(model, peer_model, data, args.budget,
                                 precision_of(args.device, args.dtype))
        configs = check_and_measure(configs, args.device,
                                    args.skip_infeasible)
        print(f'timing {len(configs)} configurations: {args.warmup} warm-up '
              f'+ {args.repeats} timed rounds')
        times = interleaved_latency(
            {key_of(c): c['call'] for c in configs}, args.repeats,
            args.warmup, synchronize=cuda_synchronizer(args.device),
            progress=not args.no_progress)
    env.update(load_average_end=load_average(), device=args.device,
               device_name=device_name(args.device), **library_versions())
    rows = results_of(configs, times)
    peer = peer_name(backbone)
    print(f'\n## {args.config}: {type(backbone).__name__} vs {peer}, '
          f'{args.device} ({env["threads"]} threads), input '
          f'{shape[0]}x{shape[1]} ({shape_source}), {args.dtype}, peer '
          f'attention {args.peer_attention}, {args.repeats} interleaved '
          f'rounds after {args.warmup} warm-up\n')
    print(table_of(rows, type(peer_model.backbone).__mro__[1].__name__))
    print(f'\nmax |{type(backbone).__name__} budget 1.0 - {peer}| over the '
          f'backbone outputs (batch 1): {difference:.2e}')
    print('peak MB: parameters and buffers of what is called + the input + '
          'the most bytes the call had live above its start ('
          + ('torch.cuda.max_memory_allocated' if args.device == 'cuda'
             else 'torch.profiler allocator events') + ')')
    print(f'load average (1, 5, 15 min) at start '
          f'{env["load_average_start"]}, at end {env["load_average_end"]}')
    if args.out:
        write_json(args.out, dict(
            config=args.config, checkpoint=args.checkpoint,
            model=type(model).__name__, backbone=type(backbone).__name__,
            peer=peer,
            dynamic_only_keys=peer_model.backbone.dynamic_only_keys,
            shape=list(shape), shape_source=shape_source,
            batch_sizes=sorted(data), budgets=args.budget,
            max_abs_diff_budget1_vs_peer=difference,
            memory_method=(
                'cuda max_memory_allocated' if args.device == 'cuda' else
                'torch.profiler allocator events, peak of the running sum'),
            environment=env, args=vars(args), results=rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
