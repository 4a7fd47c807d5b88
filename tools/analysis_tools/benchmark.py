"""Latency, throughput and peak memory of a dynamic backbone and of its whole
model against the static peer, in one run: the project's one timing tool.

    python tools/analysis_tools/benchmark.py CONFIG [--checkpoint CKPT]
    python tools/analysis_tools/benchmark.py --backbone FAMILY:ARCH
        [--budget R ...] [--batch-size B] [--shape H W] [--device cpu|cuda]
        [--repeats N] [--warmup N] [--threads N] [--seed S] [--out JSON]
        [--dtype fp32|bf16] [--peer-attention stock|sdpa] [--skip-infeasible]
        [--window-modes packed whole] [--gates random|new] [--max-ratio R]
        [--profile [ROWS]] [--cfg-options k=v ...] [--no-progress]

What is timed, for batch 1 and batch ``--batch-size`` (default 4):

- *backbone*: ``model.backbone(x)`` on the preprocessed images;
- *model* (a CONFIG only): ``model(**data, mode='predict')`` on an already
  preprocessed batch (the data preprocessor is left out; post-processing,
  NMS, resizing the logits back to the image, is in);

each for the static peer (mmdet ``PyramidVisionTransformerV2`` for DiT,
mmpretrain ``SwinTransformerV2`` for DiT on Swin-v2, mmseg
``VisionTransformer`` for the token-pass and mixed-scale ViTs, built with the
backbone's settings and carrying its weights; the peer model is the config's
model with the backbone swapped, ``dit_mm.analysis.static_peer``) and for
every ``--budget`` (``set_budget(r)``; ``none``: the learned decisions or
threshold; default ``1.0 0.5``). At budget 1.0 the dynamic backbone computes
the peer's function: the largest difference of their outputs is printed as a
check.

``--backbone FAMILY:ARCH`` times a backbone alone, built with its defaults
and initialisation (``dit:b2``, ``dit-swinv2:t``, ``token-pass:b``,
``mixed-scale:b``; the Swin-v2 and ViT families with the settings the
detection and segmentation configs give them: four outputs, any input size;
DeiT-style ViTs), at ``--shape`` (default 512x512).
``--window-modes`` times every budget below 1 of a DiT-Swin-v2 backbone in
each sparse windowed-attention form (default: the backbone's own).
``--gates``: without a checkpoint DiT's routing gates are drawn at random
(``random``, the default: the kept tokens spread over the image as trained
gates' do) or left new (``new``: they tie, and a budget keeps a contiguous
prefix of tokens, the best case for gathers and windows; a bound).
``--max-ratio R`` exits with status 1 when, for the backbone at any batch
size, the lowest budget below 1 (its fastest window form) takes more than R
times the median time of budget 1.0 (which is then always timed).
``--profile ROWS`` prints the top operators (torch.profiler) of one backbone
forward of every configuration at batch 1.

``--dtype bf16`` runs every timed call (peer too) under bfloat16 autocast.
``--peer-attention sdpa`` has the peer's ``nn.MultiheadAttention`` modules
skip their attention weights, so the peer attends through the same SDPA
kernels as the dynamic backbones (``static_peer.attend_with_sdpa``); the
default, ``stock``, times the peer as the libraries build it.

Input (a CONFIG): random uint8 images of ``--shape`` (default: the size the
config's test images reach the model at: an mmseg sliding window, the data
preprocessor's crop, the test pipeline's crop or resize scale; 512x512 when
the config names none), one seed. The weights are the config's
initialisation or ``--checkpoint``; budgets fix how much is computed, so
random weights time them fairly, but ``none`` depends on trained weights.

Method: eval mode, ``torch.no_grad``, garbage collection off, ``--warmup``
untimed rounds, then ``--repeats`` rounds that call every configuration once
each, round-robin and rotated (``dit_mm.analysis.latency``), with
``torch.cuda.synchronize`` around each call on a GPU. Reported per
configuration: median and spread (min, max, p10, p90, quartiles) in ms,
images/s (batch / median), the ratio of medians to the peer and to budget 1.0
at the same part and batch, and the medians of the per-round ratios (paired:
load drifts cancel within a round), the executed FLOPs fraction of the
static network and the fraction of its token work that ran (the backbone's
``RouteStats``, means over the batch) and the peak memory.

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
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

import torch
from mmengine.config import DictAction
from torch import nn

import dit_mm
from dit_mm.analysis.latency import (add_timing_args, cuda_synchronizer,
                                     interleaved_latency, latency_stats,
                                     paired_ratio, peak_memory, tensor_bytes)
from dit_mm.analysis.report import (check_json_target, device_name,
                                    environment, fmt, load_average,
                                    markdown_table, quiet_mmengine,
                                    write_json)
from dit_mm.analysis.static_peer import (attend_with_sdpa,
                                         backbone_difference, peer_name,
                                         with_static_peer)
from dit_mm.analysis.task_model import (budget, config_input_shape,
                                        is_dynamic, preprocess,
                                        synthetic_batch)
from dit_mm.engine.cli import budget_type, load_config, positive_int
from dit_mm.models.backbones import (DiT, DiTSwinV2, MixedScaleViT,
                                     TokenPassViT, resolve_vit_arch)
from dit_mm.models.dit.routed_backbone import RoutedBackbone
from dit_mm.models.builder import build_task_model
from dit_mm.registry import config_scope_of
from dit_mm.models.common.gates import randomize_gates

PEER = 'peer'
MB = 2**20
DEFAULT_SHAPE = (512, 512)
WINDOW_MODES = ('packed', 'whole')


def _swin_settings(arch: str, shape) -> dict:
    return dict(arch=arch, drop_path_rate=0., out_indices=(0, 1, 2, 3),
                pad_small_map=True)


def _vit_settings(arch: str, shape) -> dict:
    layers = resolve_vit_arch(arch)['num_layers']
    return dict(arch=arch, img_size=tuple(shape), patch_bias=True,
                out_indices=tuple(range(layers // 4 - 1, layers, layers // 4)),
                norm_cfg=dict(type='LN', eps=1e-6))


# --backbone FAMILY:ARCH: the class and its settings (arch, input size)
FAMILIES = {
    'dit': (DiT, lambda arch, shape: dict(arch=arch)),
    'dit-swinv2': (DiTSwinV2, _swin_settings),
    'token-pass': (TokenPassViT, _vit_settings),
    'mixed-scale': (MixedScaleViT, _vit_settings),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config', nargs='?', help='a config of a task model '
                        'with a dynamic backbone (or give --backbone)')
    parser.add_argument('--backbone', metavar='FAMILY:ARCH',
                        help='time a backbone alone; FAMILY is one of '
                        f'{", ".join(FAMILIES)}')
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
    parser.add_argument('--window-modes', nargs='+', choices=WINDOW_MODES,
                        help='DiT-Swin-v2: time each budget below 1 in each '
                        "of these forms (default: the backbone's own)")
    parser.add_argument('--gates', choices=['random', 'new'],
                        default='random', help='DiT without a checkpoint: '
                        'random gates (kept tokens spread, as trained ones) '
                        'or new ones (a prefix kept: the best case)')
    parser.add_argument('--max-ratio', type=float, metavar='R',
                        help="exit 1 if the lowest budget's backbone median "
                        "is more than R times budget 1.0's")
    parser.add_argument('--profile', type=int, nargs='?', const=15,
                        default=0, metavar='ROWS', help='print the top ROWS '
                        'operators of one backbone forward per configuration')
    add_timing_args(parser)
    parser.add_argument('--out', metavar='JSON', help='write the results as '
                        'JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if (args.config is None) == (args.backbone is None):
        parser.error('give a CONFIG or --backbone FAMILY:ARCH (one of them)')
    if args.backbone and (args.checkpoint or args.cfg_options):
        parser.error('--checkpoint and --cfg-options go with a CONFIG')
    if args.max_ratio is not None:
        args.budget = [1.0] + args.budget  # the reference of the ratio
    args.budget = list(dict.fromkeys(args.budget))  # once each, in order
    return args


class BackboneOnly(nn.Module):
    """A backbone alone where a task model is expected (``.backbone``)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone


@dataclass
class Subject:
    """What is timed: the task model (or :class:`BackboneOnly`), the parts
    timed, the input size and where it came from, the scope its peer is
    built in, and the preprocessed batch of each batch size."""
    model: nn.Module
    parts: Tuple[str, ...]
    shape: Tuple[int, int]
    shape_source: str
    scope: Callable[[], ContextManager]
    batch: Callable[[int], dict]


def config_subject(args) -> Subject:
    try:
        cfg = load_config(args.config, args.cfg_options)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f'error: {error}')
    if args.shape:
        shape, shape_source = tuple(args.shape), '--shape'
    else:
        shape, shape_source = config_input_shape(cfg)
    model = build_task_model(cfg, args.checkpoint, args.device)
    backbone = getattr(model, 'backbone', None)
    if not is_dynamic(backbone):
        raise SystemExit(
            f'error: the backbone of {args.config} '
            f'({type(backbone).__name__}) takes no budget; benchmark.py '
            'compares a dynamic backbone (DiT, TokenPassViT, MixedScaleViT) '
            "with its static peer. Time a stock model with its library's "
            'own tools.')
    return Subject(model, ('backbone', 'model'), shape,
                   shape_source, functools.partial(config_scope_of, cfg),
                   lambda size: preprocess(model, synthetic_batch(
                       cfg, shape, size, seed=args.seed)))


def build_backbone(spec: str, shape) -> nn.Module:
    """The backbone ``FAMILY:ARCH`` names, initialised, in eval mode."""
    family, _, arch = spec.partition(':')
    if family not in FAMILIES or not arch:
        raise SystemExit(f'error: --backbone {spec!r}: give FAMILY:ARCH, '
                         f'FAMILY one of {", ".join(FAMILIES)}')
    cls, settings = FAMILIES[family]
    try:
        backbone = cls(**settings(arch, shape))
    except (KeyError, ValueError, TypeError, AssertionError) as error:
        raise SystemExit(f'error: --backbone {spec!r}: {error}')
    backbone.init_weights()
    return backbone.eval()


def backbone_subject(args) -> Subject:
    shape = tuple(args.shape or DEFAULT_SHAPE)
    model = BackboneOnly(build_backbone(args.backbone, shape)).to(args.device)

    def batch(size: int) -> dict:
        gen = torch.Generator().manual_seed(args.seed)
        return dict(inputs=torch.randn(size, 3, *shape, generator=gen).to(
            args.device))

    return Subject(model.eval(), ('backbone', ), shape,
                   '--shape' if args.shape else 'default',
                   contextlib.nullcontext, batch)


def config_label(value, mode: Optional[str] = None) -> str:
    if value == PEER:
        return PEER
    label = 'learned' if value is None else f'budget {value}'
    return label if mode is None else f'{label} ({mode})'


def routes_of(backbone: nn.Module, budgets, modes) -> List[tuple]:
    """``(budget, window mode or None)`` of every dynamic configuration:
    budget 1.0 once (it runs the static blocks), any other in each mode."""
    if modes and not isinstance(backbone, DiTSwinV2):
        raise SystemExit('error: --window-modes applies to DiT-Swin-v2 '
                         f'backbones, not {type(backbone).__name__}')
    return [(value, mode) for value in budgets
            for mode in ([None] if value == 1.0 or not modes else modes)]


@contextlib.contextmanager
def window_mode(backbone: nn.Module, mode: Optional[str]):
    """DiT-Swin-v2's sparse windows in ``mode`` inside (``None``: as set)."""
    if mode is None:
        yield
        return
    before = backbone.window_mode
    backbone.set_window_mode(mode)
    try:
        yield
    finally:
        backbone.set_window_mode(before)


def drop_caches(model: nn.Module) -> None:
    """Empty the memory modules keep between calls (DiT's scratch grid)."""
    for module in model.modules():
        scratch = getattr(module, '_scratch', None)
        if isinstance(scratch, dict):
            scratch.clear()


def make_call(part: str, model: nn.Module, data: dict, value,
              mode: Optional[str], precision: Callable[[], ContextManager]
              ) -> Callable[[], object]:
    """A no-grad call of ``model``'s backbone or of the whole model at
    budget ``value`` (``'config'``: as it is) and window ``mode``, under
    ``precision()``."""
    inputs = data['inputs']

    @contextlib.contextmanager
    def route():
        with torch.no_grad(), precision(), budget(model, value), \
                window_mode(model.backbone, mode):
            yield

    if part == 'backbone':
        def call():
            with route():
                return model.backbone(inputs)
        return call
    # predictions are written into the samples: each configuration its own
    samples = [sample.clone() for sample in data['data_samples']]

    def call():
        with route():
            return model(inputs=inputs, data_samples=samples, mode='predict')
    return call


def precision_of(device: str, dtype: str) -> Callable[[], ContextManager]:
    """What each timed call runs under: nothing, or bfloat16 autocast."""
    if dtype == 'fp32':
        return contextlib.nullcontext
    return functools.partial(torch.autocast, device_type=device,
                             dtype=torch.bfloat16)


def configurations(model, peer_model, data: Dict[int, dict], routes,
                   precision: Callable[[], ContextManager] =
                   contextlib.nullcontext,
                   parts=('backbone', 'model')) -> List[dict]:
    """Every (part, batch, peer or route) to time, in table order;
    ``routes``: ``(budget, window mode)`` pairs."""
    configs = []
    for part in parts:
        for batch, batch_data in data.items():
            for value, mode in [(PEER, None)] + list(routes):
                peer = value == PEER
                target = peer_model if peer else model
                configs.append(dict(
                    part=part, batch=batch, config=config_label(value, mode),
                    budget=None if peer else value, window_mode=mode,
                    peer=peer, target=target,
                    call=make_call(part, target, batch_data,
                                   'config' if peer else value, mode,
                                   precision),
                    resident=(target.backbone if part == 'backbone'
                              else target),
                    inputs=batch_data['inputs']))
    return configs


def key_of(config: dict, label: Optional[str] = None) -> str:
    return (f'{config["part"]} | batch {config["batch"]} | '
            f'{label or config["config"]}')


def check_and_measure(configs: List[dict], device: str,
                      skip: bool = False) -> List[dict]:
    """One call of each configuration, its executed FLOPs, then its peak
    memory. A budget the backbone refuses stops here, named, or with
    ``skip`` is left out with that message printed. Returns those kept."""
    kept = []
    for config in configs:
        record = None if config['peer'] else \
            config['target'].backbone.recording()
        try:
            with record or contextlib.nullcontext():
                config['call']()
        except ValueError as error:
            if not skip:
                raise SystemExit(f'error: {key_of(config)} failed: {error}')
            print(f'skipped: {key_of(config)}: {error}', file=sys.stderr)
            continue
        stats = None if record is None else record.stats
        config.update(
            flops_fraction=None if stats is None else float(
                stats.flops_fraction.float().mean()),
            gflops=None if stats is None else float(
                stats.flops.double().mean()) / 1e9,
            kept_fraction=None if stats is None else float(
                stats.kept_fraction.float().mean()))
        kept.append(config)
    for config in kept:
        drop_caches(config['target'])
        resident = tensor_bytes(config['resident'], config['inputs'])
        during = peak_memory(config['call'], device)
        config.update(resident_bytes=resident, call_peak_bytes=during,
                      peak_bytes=resident + during)
    return kept


def _ratios(times: Dict[str, List[float]], key: str, ref: str) -> tuple:
    """(ratio of medians, paired ratio) of ``key`` to ``ref``; ``None``s
    when ``ref`` was not timed."""
    if ref not in times:
        return None, None
    return (statistics.median(times[key]) / statistics.median(times[ref]),
            paired_ratio(times, key, ref))


def results_of(configs: List[dict], times: Dict[str, List[float]]) -> list:
    rows = []
    for config in configs:
        key = key_of(config)
        stats = latency_stats(times[key], config['batch'])
        to_peer = _ratios(times, key, key_of(config, PEER))
        to_full = _ratios(times, key, key_of(config, config_label(1.0)))
        rows.append(dict(
            part=config['part'], batch=config['batch'],
            config=config['config'], budget=config['budget'],
            window_mode=config['window_mode'], peer=config['peer'], **stats,
            ratio_to_peer=to_peer[0], paired_ratio_to_peer=to_peer[1],
            ratio_to_budget1=to_full[0], paired_ratio_to_budget1=to_full[1],
            flops_fraction=config['flops_fraction'],
            gflops=config['gflops'], kept_fraction=config['kept_fraction'],
            peak_mb=config['peak_bytes'] / MB,
            resident_mb=config['resident_bytes'] / MB,
            call_peak_mb=config['call_peak_bytes'] / MB,
            times_ms=[t * 1e3 for t in times[key]]))
    return rows


def key_ratios(rows: list, budgets) -> list:
    """Per backbone batch size, the lowest budget below 1 in its fastest
    window form against budget 1.0."""
    lowest = min((b for b in budgets if b is not None and b < 1), default=None)
    keys = []
    for batch in sorted({r['batch'] for r in rows}):
        forms = [r for r in rows if r['part'] == 'backbone' and
                 r['batch'] == batch and r['budget'] == lowest and
                 r['ratio_to_budget1'] is not None]
        if forms:
            best = min(forms, key=lambda r: r['ratio_to_budget1'])
            keys.append(dict(batch=batch, budget=lowest,
                             window_mode=best['window_mode'],
                             median_ratio=best['ratio_to_budget1'],
                             paired_ratio=best['paired_ratio_to_budget1']))
    return keys


def table_of(rows: list, peer: str) -> str:
    """The markdown table of ``rows``; ``peer`` names the peer."""
    headers = ['part', 'batch', 'config', 'median ms',
               'spread ms: min-max (IQR)', 'images/s', 'median / peer',
               'paired / peer', 'median / budget 1.0', 'paired / budget 1.0',
               'peak MB', 'FLOPs frac', 'kept']
    body = [[
        r['part'], r['batch'], f'{r["config"]} ({peer})' if r['peer']
        else r['config'], fmt(r['median_ms'], 1),
        f'{r["min_ms"]:.1f}-{r["max_ms"]:.1f} ({r["iqr_ms"]:.1f})',
        fmt(r['images_per_s'], 2), fmt(r['ratio_to_peer']),
        fmt(r['paired_ratio_to_peer']), fmt(r['ratio_to_budget1']),
        fmt(r['paired_ratio_to_budget1']), fmt(r['peak_mb'], 1),
        fmt(r['flops_fraction']), fmt(r['kept_fraction'])
    ] for r in rows]
    return markdown_table(headers, body)


def profile_tables(configs: List[dict], device: str, rows: int) -> dict:
    """The top ``rows`` operators by self time of one backbone call per
    configuration at the smallest batch."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if device == 'cuda' else [])
    sort = 'self_cuda_time_total' if device == 'cuda' else \
        'self_cpu_time_total'
    smallest = min(c['batch'] for c in configs)
    tables = {}
    for config in configs:
        if config['part'] == 'backbone' and config['batch'] == smallest:
            with profile(activities=activities) as prof:
                config['call']()
            tables[key_of(config)] = prof.key_averages().table(
                sort_by=sort, row_limit=rows)
    return tables


def library_versions() -> dict:
    versions = dict(dit_mm=getattr(dit_mm, '__version__', None),
                    python=platform.python_version())
    for name in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain'):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure(args) -> dict:
    """Everything ``args`` asks for, timed: the JSON's content."""
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('error: --device cuda, but torch sees no CUDA device')
    env = environment(args.threads)
    quiet_mmengine()
    torch.manual_seed(args.seed)
    subject = config_subject(args) if args.config else backbone_subject(args)
    model, backbone = subject.model, subject.model.backbone
    gates = None  # DiT's routing gates: trained, random or new
    if isinstance(backbone, RoutedBackbone):
        gates = 'checkpoint' if args.checkpoint else args.gates
        if gates == 'random':
            randomize_gates(backbone, args.seed)
    routes = routes_of(backbone, args.budget, args.window_modes)
    with subject.scope():
        peer_model = with_static_peer(model)
        if args.peer_attention == 'sdpa':
            attend_with_sdpa(peer_model)
        data = {size: subject.batch(size)
                for size in sorted({1, args.batch_size})}
        difference = backbone_difference(backbone, peer_model.backbone,
                                         data[1]['inputs'])
        configs = configurations(model, peer_model, data, routes,
                                 precision_of(args.device, args.dtype),
                                 subject.parts)
        configs = check_and_measure(configs, args.device,
                                    args.skip_infeasible)
        print(f'timing {len(configs)} configurations: {args.warmup} warm-up '
              f'+ {args.repeats} timed rounds', file=sys.stderr)
        times = interleaved_latency(
            {key_of(c): c['call'] for c in configs}, args.repeats,
            args.warmup, synchronize=cuda_synchronizer(args.device),
            progress=not args.no_progress)
        profiles = profile_tables(configs, args.device, args.profile) \
            if args.profile else None
    env.update(load_average_end=load_average(), device=args.device,
               device_name=device_name(args.device), **library_versions())
    rows = results_of(configs, times)
    return dict(
        config=args.config, backbone_spec=args.backbone,
        checkpoint=args.checkpoint, model=type(model).__name__,
        backbone=type(backbone).__name__, peer=peer_name(backbone),
        dynamic_only_keys=peer_model.backbone.dynamic_only_keys,
        params_m=dict(dynamic=num_params(backbone) / 1e6,
                      peer=num_params(peer_model.backbone) / 1e6),
        gates=gates, shape=list(subject.shape),
        shape_source=subject.shape_source, batch_sizes=sorted(data),
        budgets=args.budget, window_modes=args.window_modes,
        max_abs_diff_budget1_vs_peer=difference,
        memory_method=(
            'cuda max_memory_allocated' if args.device == 'cuda' else
            'torch.profiler allocator events, peak of the running sum'),
        environment=env, args=vars(args), results=rows,
        key_ratios=key_ratios(rows, args.budget), profiles=profiles)


def report(result: dict) -> None:
    args, env = result['args'], result['environment']
    name = args['config'] or args['backbone']
    print(f'\n## {name}: {result["backbone"]} vs {result["peer"]}, '
          f'{args["device"]} ({env["threads"]} threads), input '
          f'{result["shape"][0]}x{result["shape"][1]} '
          f'({result["shape_source"]}), {args["dtype"]}, peer attention '
          f'{args["peer_attention"]}, '
          + (f'{result["gates"]} gates, ' if result['gates'] else '') +
          f'{args["repeats"]} interleaved rounds after {args["warmup"]} '
          'warm-up\n')
    print(table_of(result['results'], result['peer']))
    params = result['params_m']
    print(f'\nparameters (M): {result["backbone"]} {params["dynamic"]:.2f}, '
          f'{result["peer"]} {params["peer"]:.2f}')
    print(f'max |{result["backbone"]} budget 1.0 - {result["peer"]}| over '
          f'the backbone outputs (batch 1): '
          f'{result["max_abs_diff_budget1_vs_peer"]:.2e}')
    print('peak MB: parameters and buffers of what is called + the input + '
          'the most bytes the call had live above its start ('
          + ('torch.cuda.max_memory_allocated' if args['device'] == 'cuda'
             else 'torch.profiler allocator events') + ')')
    print(f'load average (1, 5, 15 min) at start '
          f'{env["load_average_start"]}, at end {env["load_average_end"]}')
    for key in result['key_ratios']:
        form = f' ({key["window_mode"]})' if key['window_mode'] else ''
        print(f'backbone, batch {key["batch"]}: budget {key["budget"]}{form} '
              f'/ budget 1.0 latency: {key["median_ratio"]:.3f} (medians), '
              f'{key["paired_ratio"]:.3f} (paired)')
    for title, table in (result['profiles'] or {}).items():
        print(f'\n### torch.profiler: {title}\n\n```\n{table}\n```')


def ratio_exit_code(result: dict) -> int:
    """1 (with a message) when a key ratio exceeds ``--max-ratio``."""
    limit = result['args']['max_ratio']
    failed = [k for k in result['key_ratios']
              if limit is not None and k['median_ratio'] > limit]
    for key in failed:
        print(f'FAIL: budget {key["budget"]:g} takes {key["median_ratio"]:.3f}'
              f' of budget 1.0\'s time at batch {key["batch"]}, more than '
              f'--max-ratio {limit}', file=sys.stderr)
    return 1 if failed else 0


def main(argv=None):
    args = parse_args(argv)
    check_json_target(args.out)
    result = measure(args)
    report(result)
    if result['args']['out']:
        write_json(result['args']['out'], result)
    return ratio_exit_code(result)


if __name__ == '__main__':
    sys.exit(main())
