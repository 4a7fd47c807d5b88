"""What ``tools/train.py`` and ``tools/test.py`` do to a config, for any library.

The tools mirror mmdet's; the few places where mmdet, mmseg and mmpretrain
differ (turning visualisation on, dumping results) are chosen by the config's
``default_scope``. Kept here, out of the scripts, so it can be tested.
"""
import argparse
import datetime
import difflib
import inspect
import math
import os
import os.path as osp
from typing import Callable

import torch
from mmengine.config import Config, DictAction
from mmengine.dist import master_only
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..registry import config_scope


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The options train.py and test.py share, as in mmdet's tools."""
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, xxx=yyy in key=value form')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def tool_parser(description: str, config_help: str,
                work_dir_help: str) -> argparse.ArgumentParser:
    """The parser of train.py / test.py with what both take first: the
    config and ``--work-dir``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help=config_help)
    parser.add_argument('--work-dir', help=work_dir_help)
    return parser


def parse_tool_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse with the common options added, and give torch.distributed the
    local rank a launcher passed."""
    add_common_args(parser)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def tool_config(args: argparse.Namespace,
                apply: Callable[[Config, argparse.Namespace], None]) -> Config:
    """The config a train.py / test.py run asks for: read, with
    ``--cfg-options`` and the launcher, then the tool's own options applied
    (``apply_train_args`` or ``apply_test_args``)."""
    cfg = load_config(args.config, args.cfg_options, args.launcher)
    apply(cfg, args)
    return cfg


class EvaluationRunner(Runner):
    """mmengine's runner for a run that evaluates (``tools/test.py``, the
    sweeps): it writes its config into its own timestamped folder of the
    work dir, not over ``<work dir>/<config>.py``, the record of the
    training run that works there (``test.py``'s default work dir is
    ``train.py``'s)."""

    @master_only
    def dump_config(self) -> None:
        name = osp.basename(self.cfg.filename) if self.cfg.filename else \
            f'{self.timestamp}.py'
        self.cfg.dump(osp.join(self.log_dir, name))


def build_runner(cfg: Config, evaluation: bool = False) -> Runner:
    """The config's runner (``runner_type`` or mmengine's; for an
    ``evaluation`` run :class:`EvaluationRunner`), in its process group."""
    start_cpu_process_group(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return (EvaluationRunner if evaluation else Runner).from_cfg(cfg)


# what mmengine's Runner.from_cfg reads from a config, present or not
RUNNER_KEYS = {
    name for name in inspect.signature(Runner.__init__).parameters
    if name != 'self'} | {'runner_type', 'custom_imports', 'model_wrapper_cfg',
                          'find_unused_parameters', 'compile'}


def load_config(path: str, cfg_options=None, launcher='none') -> Config:
    """Read a config, apply ``--cfg-options`` and the launcher."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        check_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    config_scope(cfg)
    return cfg


class UnknownConfigKeyError(ValueError):
    """A ``--cfg-options`` key that nothing would read."""


def check_option_keys(cfg: Config, cfg_options: dict) -> None:
    """Each ``--cfg-options`` key must start with a key of the config or an
    argument of mmengine's runner: mmengine adds any other top-level key
    and nothing reads it (``train_cfgg.max_iters=1`` trained the config's
    schedule, ``load_fromm=X`` from scratch)."""
    known = set(cfg.keys()) | RUNNER_KEYS
    for key in cfg_options:
        top = key.split('.')[0]
        if top not in known:
            close = difflib.get_close_matches(top, known, n=1)
            raise UnknownConfigKeyError(
                f'--cfg-options {key}: {top!r} is not a key of the config '
                'nor an argument of the runner, so nothing would read it' +
                (f' (did you mean {close[0]!r}?)' if close else ''))


def set_work_dir(cfg: Config, config_path: str, work_dir=None) -> None:
    """CLI ``--work-dir`` > the config's ``work_dir`` > ./work_dirs/<config name>."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])


def use_cpu_distributed(cfg: Config) -> None:
    """Without CUDA, distributed runs use gloo and DDP without device ids."""
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {cfg.launcher} needs CUDA (mmengine binds each '
            'process to a GPU); on a CPU use --launcher pytorch '
            '(tools/dist_train.sh)')
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    # mmengine's default wrapper passes device_ids=[LOCAL_RANK], which DDP
    # rejects for a CPU module; an explicit None wins over that default.
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper
    synced = _sync_bn_to_bn(cfg.model)
    if synced:
        print_log(f'{synced} SyncBN norm config(s) of the model run as BN on '
                  'the CPU (each process its own statistics): SyncBatchNorm '
                  'works with GPU modules only', logger='current')


def _sync_bn_to_bn(node) -> int:
    """``type='SyncBN'`` made ``'BN'`` throughout a config tree, as mmengine
    reverts SyncBN in a run of one process; how many were changed."""
    changed = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            changed += 1
        nodes = node.values()
    elif isinstance(node, (list, tuple)):
        nodes = node
    else:
        return 0
    return changed + sum(_sync_bn_to_bn(child) for child in nodes)


def start_cpu_process_group(cfg: Config) -> None:
    """Join the torchrun process group on gloo before the runner is built.

    mmengine 0.10.7 binds every process to a GPU while it initialises the
    group (``torch.cuda.set_device``), which fails without CUDA; it skips
    that step when a group already exists.
    """
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if not dist.is_initialized():
        timeout = cfg.env_cfg.dist_cfg.get('timeout')
        kwargs = {} if timeout is None else dict(
            timeout=datetime.timedelta(seconds=timeout))
        dist.init_process_group(backend='gloo', **kwargs)


def apply_train_args(cfg: Config, args) -> None:
    """``--work-dir``, ``--amp``, ``--auto-scale-lr`` and ``--resume``, as mmdet."""
    set_work_dir(cfg, args.config, args.work_dir)
    if args.amp:
        # a GPU: mmengine's AmpOptimWrapper (fp16 and dynamic loss scaling, or
        # the config's optim_wrapper.dtype='bfloat16'); mmengine 0.10.7's
        # asserts a GPU, so a CPU gets bf16 autocast (dit_mm.engine.amp)
        if not torch.cuda.is_available():
            cfg.optim_wrapper.type = 'BF16OptimWrapper'
            cfg.optim_wrapper.pop('loss_scale', None)
        elif cfg.optim_wrapper.get('type') != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        scale_cfg = cfg.get('auto_scale_lr')
        if not scale_cfg or 'base_batch_size' not in scale_cfg:
            raise RuntimeError(
                '--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) '
                'in the config')
        scale_cfg.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(
                f'--resume checkpoint {args.resume} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume
    use_cpu_distributed(cfg)
    add_iteration_seed_hook(cfg)


def add_iteration_seed_hook(cfg: Config) -> None:
    """Every training run seeds each iteration (an exact ``--resume``)."""
    hooks = cfg.get('custom_hooks') or []
    if not any(str(h.get('type')).endswith('IterationSeedHook') for h in hooks):
        cfg.custom_hooks = list(hooks) + [dict(type='IterationSeedHook')]


def enable_visualization(cfg: Config, show_dir=None, show=False,
                         wait_time=2.0, interval=1) -> None:
    """Turn on the library's visualisation hook, drawing every ``interval``-th
    test batch into ``show_dir`` (mmseg's and mmpretrain's hooks otherwise
    draw only every 50th, so a small test set gives no picture)."""
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise RuntimeError(
            'default_hooks.visualization is missing from the config; '
            '--show/--show-dir need the library\'s visualisation hook')
    hook = hooks.visualization
    scope = config_scope(cfg)
    if scope == 'mmpretrain':
        hook.update(enable=True, show=show, wait_time=wait_time,
                    interval=interval)
        if show_dir:
            hook.out_dir = show_dir
        return
    hook.update(draw=True, show=show, wait_time=wait_time, interval=interval)
    if show_dir and scope == 'mmdet':
        hook.test_out_dir = show_dir
    elif show_dir:  # mmseg writes through the visualizer's save_dir
        cfg.visualizer.save_dir = show_dir


def apply_test_args(cfg: Config, args) -> None:
    """``--work-dir``, the checkpoint and ``--show``/``--show-dir``."""
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    set_work_dir(cfg, args.config, args.work_dir)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show_dir, args.show, args.wait_time,
                             args.interval)
    use_cpu_distributed(cfg)


def add_result_dump(runner, out_file: str) -> None:
    """Append a metric that pickles every prediction to ``out_file``."""
    if not out_file.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got {out_file}')
    if config_scope(runner.cfg) == 'mmdet':
        from mmdet.evaluation import DumpDetResults as Dump  # masks as RLE
    else:
        from mmengine.evaluator import DumpResults as Dump
    runner.test_evaluator.metrics.append(Dump(out_file_path=out_file))


def budget_type(allow_none: bool = False, allow_one: bool = True):
    """An argparse type for a ``set_budget`` value: a fraction in (0, 1] (or
    (0, 1) without ``allow_one``), and ``'none'`` (learned decisions) with
    ``allow_none``."""

    def parse(text: str):
        if allow_none and text.lower() == 'none':
            return None
        try:
            value = float(text)
        except ValueError:
            value = float('nan')
        if not (0 < value <= 1 if allow_one else 0 < value < 1):
            top = '1]' if allow_one else '1)'
            none = "'none' or " if allow_none else ''
            raise argparse.ArgumentTypeError(
                f'a budget is {none}a number in (0, {top}, got {text!r}')
        return value

    return parse


def positive_int(text: str) -> int:
    """An argparse type for a count of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {text}')
    return value


def non_negative_float(text: str) -> float:
    """An argparse type for a finite amount of at least 0 (a tolerance)."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f'must be a number >= 0, got {text}')
    return value
