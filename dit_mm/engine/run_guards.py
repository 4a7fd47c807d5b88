"""Checks ``tools/train.py`` and ``tools/test.py`` make before a run touches
anything, so that a wrong work dir or checkpoint is refused by name and the
files already there stay as they are.

* A work dir that holds checkpoints (``last_checkpoint``, ``*.pth``) of an
  earlier run: training there without ``--resume`` would overwrite its
  ``iter_N.pth``; with ``--resume`` the run there must be of this config
  (mmengine dumps ``<config name>.py`` into the work dir it trains in).
* A checkpoint whose keys do not fit the model: mmengine 0.10.7 loads
  non-strictly and only warns, so ``tools/test.py`` would evaluate, and
  ``--resume`` continue, a partly random model. Testing and resuming need
  every key with its shape; ``load_from`` (fine-tuning, where a new head is
  normal) needs the backbone's.

The checks run before the runner is built (the runner dumps its config into
the work dir and joins the process group): every process of a distributed run
sees the same files, comes to the same decision and raises before any
collective call, so none waits for another.
"""
import os
import os.path as osp
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner.checkpoint import find_latest_checkpoint

from ..models.common.weights import (CheckpointRule, check_finite_weights,
                                     is_remote, key_differences)
from ..models.builder import build_task_model
from ..models.dynamic_models import AuxLossMixin
from ..registry import config_scope_of
from .checkpoint import allowed_globals, load_from_local_safely

Shapes = Dict[str, Tuple[int, ...]]
PREFIX = 'backbone.'


class WorkDirInUseError(FileExistsError):
    """The work dir holds another run that this one would overwrite."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the config's model."""


class UnusedLossError(ValueError):
    """A loss the config sets that its model type never adds to training."""


# ------------------------------------------------------------------ work dir
def work_dir_checkpoints(work_dir: str) -> List[str]:
    """The checkpoint files mmengine leaves in ``work_dir`` (top level)."""
    if not osp.isdir(work_dir):
        return []
    return sorted(name for name in os.listdir(work_dir)
                  if name == 'last_checkpoint' or name.endswith('.pth'))


def _listed(names, limit: int = 5) -> str:
    names = list(names)
    shown = ', '.join(names[:limit])
    return shown + (f', ... ({len(names)} in all)'
                    if len(names) > limit else '')


def check_work_dir(cfg: Config) -> None:
    """Refuse a work dir whose checkpoints this training run would overwrite:
    any without ``resume``; with it, those of another config's run (or ones
    that ``--resume`` alone cannot find: no ``last_checkpoint``)."""
    work_dir = cfg.work_dir
    found = work_dir_checkpoints(work_dir)
    if not found:
        return
    if not cfg.get('resume'):
        raise WorkDirInUseError(
            f'work dir {work_dir} holds the checkpoints of an earlier run '
            f'({_listed(found)}); training there would overwrite them. Pass '
            '--resume to continue that run, or --work-dir another/dir to '
            'start a new one')
    if cfg.filename:
        config_name = osp.basename(cfg.filename)
        if not osp.isfile(osp.join(work_dir, config_name)):
            configs = sorted(n for n in os.listdir(work_dir)
                             if n.endswith('.py'))
            held = (f'its config is {_listed(configs)}' if configs else
                    'it has no config file')
            raise WorkDirInUseError(
                f'work dir {work_dir} holds a run of another config, not of '
                f'{config_name} ({held}; checkpoints {_listed(found)}); '
                '--resume there would continue it with another model and '
                'overwrite its checkpoints. Use --work-dir another/dir, or '
                'resume with the config of that run')
    if cfg.get('load_from') is None and 'last_checkpoint' not in found:
        raise WorkDirInUseError(
            f'work dir {work_dir} holds checkpoints ({_listed(found)}) but no '
            'last_checkpoint, so --resume finds nothing to continue and '
            'would train from scratch over them. Pass --resume PATH of the '
            'checkpoint to continue, or --work-dir another/dir')


# --------------------------------------------------------------- checkpoints
def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The model tensors of a checkpoint file (``state_dict`` or the whole
    file, a ``module.`` prefix removed), as mmengine would load them.

    Read memory-mapped where the file allows (only shapes are needed); any
    failure goes through the project's safe loader, whose errors name the
    problem (a truncated file, a pickled object that is not allowed)."""
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            checkpoint = torch.load(path, map_location='cpu',
                                    weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001  (the safe loader says what is wrong)
        checkpoint = load_from_local_safely(path, map_location='cpu')
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(
            f'checkpoint {path} holds a {type(checkpoint).__name__}, not a '
            'state dict')
    state = checkpoint.get('state_dict', checkpoint.get('model', checkpoint))
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(
            f'checkpoint {path}: its state_dict is a '
            f'{type(state).__name__}, not a mapping of tensors')
    return {(k[7:] if k.startswith('module.') else k): v
            for k, v in state.items() if isinstance(v, torch.Tensor)}


def build_model_shapes(cfg: Config) -> Tuple[str, Shapes, CheckpointRule]:
    """The config's model as the runner builds it (on the CPU, not
    initialised): its description, the shape of every state-dict entry, and
    its backbone's checkpoint rule (the layouts it converts, the weights a
    stock checkpoint lacks; a backbone of another library: its own layout,
    nothing optional)."""
    model = build_task_model(cfg, initialise=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    backbone = getattr(model, 'backbone', None)
    name = type(model).__name__
    if backbone is not None:
        name += f' with a {type(backbone).__name__} backbone'
    rule = backbone if isinstance(backbone, CheckpointRule) else \
        CheckpointRule()
    return name, shapes, rule


def backbone_entries(state: Mapping[str, torch.Tensor],
                     rule: CheckpointRule) -> Dict[str, torch.Tensor]:
    """A checkpoint's ``backbone.`` entries as the backbone loads them (its
    layout converted, as its ``init_cfg`` loader and its ``load_state_dict``
    hook do); a layout it does not know stays as it is, to be named."""
    state = {k[len(PREFIX):]: v for k, v in state.items()
             if k.startswith(PREFIX)}
    try:
        state = rule.to_own_layout(state) if state else state
    except KeyError:
        pass
    return {PREFIX + k: v for k, v in state.items()}


def key_mismatches(own: Shapes, state: Mapping[str, torch.Tensor],
                   optional: Callable[[str], bool] = lambda key: False,
                   limit: int = 5) -> List[str]:
    """What does not fit, one phrase per kind with a count and the first
    ``limit`` keys (shapes for mismatches); empty when everything fits.
    ``optional`` keys may be missing on either side."""
    missing, unexpected, mismatched = key_differences(own, state, optional)
    unexpected = [k for k in unexpected if not optional(k)]
    shapes = [f'{k} (checkpoint {theirs} vs model {ours})'
              for k, theirs, ours in sorted(mismatched)]
    problems = []
    for keys, what in ((missing, 'keys of the model missing from the '
                        'checkpoint'),
                       (unexpected, 'keys the model does not have'),
                       (shapes, 'shape mismatches')):
        if keys:
            problems.append(f'{len(keys)} {what}: {_listed(keys, limit)}')
    return problems


def _backbone_mismatches(own: Shapes, state: Mapping[str, torch.Tensor],
                         rule: CheckpointRule) -> Optional[List[str]]:
    """:func:`key_mismatches` of the model's ``backbone.`` entries against
    ``state``'s, in any layout the backbone converts (a file of backbone
    weights alone is taken as the backbone's; its optional weights may be
    missing); None when the model has no backbone."""
    own = {k: v for k, v in own.items() if k.startswith(PREFIX)}
    if not own:
        return None
    if not any(k.startswith(PREFIX) for k in state):
        state = {PREFIX + k: v for k, v in state.items()}
    return key_mismatches(
        own, backbone_entries(state, rule),
        lambda key: rule.is_optional_weight(key[len(PREFIX):]))


def check_checkpoint_fits(cfg: Config, path: Optional[str], role: str,
                          backbone_only: bool = False) -> bool:
    """Refuse ``path`` (the ``role`` it plays: 'checkpoint', '--resume
    checkpoint', 'load_from checkpoint') unless its keys fit the config's
    model: every key with its shape, or with ``backbone_only`` those under
    ``backbone.`` in any layout the backbone converts (its optional weights
    may be missing). With ``backbone_only`` a file of backbone weights
    alone (no ``backbone.`` key) is judged as the backbone's: the return
    value says it was. A remote checkpoint (``://``) is left to mmengine."""
    if path is None or is_remote(path):
        return False
    path = str(path)
    if osp.isdir(path):
        return False  # FSDP's state_dict_cfg='local': a folder of rank shards
    if not osp.isfile(path):
        raise FileNotFoundError(f'{role} {path} does not exist')
    state = read_state_dict(path)
    name, own, rule = build_model_shapes(cfg)
    backbone_file = not any(k.startswith(PREFIX) for k in state)
    if backbone_only:
        problems = _backbone_mismatches(own, state, rule)
        if problems is None:
            return False  # no backbone: mmengine's to judge
    else:
        problems = key_mismatches(own, state)
    if not problems:
        check_finite_weights(
            {k: v for k, v in state.items() if not backbone_only
             or backbone_file or k.startswith(PREFIX)}, f'{role} {path}')
        return backbone_only and backbone_file
    config = osp.basename(cfg.filename) if cfg.filename else 'the config'
    part = 'the backbone of ' if backbone_only else ''
    if backbone_only:
        advice = ('A fine-tuning start may differ in its heads, not in its '
                  'backbone: start from a checkpoint of this backbone (a '
                  'whole model, or the backbone weights alone, in a layout '
                  'the backbone converts)')
    elif backbone_file and _backbone_mismatches(own, state, rule) == []:
        advice = ("It holds this backbone's weights alone: a whole model's "
                  'checkpoint is needed here (as a training run of this '
                  'config saves it); to train from these weights give them '
                  'as load_from or the backbone\'s init_cfg')
    else:
        advice = ('It is a checkpoint of another arch or model: give the '
                  'config (and --cfg-options) it was trained with, or a '
                  'checkpoint of this model')
    raise CheckpointMismatchError(
        f'{role} {path} does not fit {part}the model {config} builds '
        f'({name}): '
        + '; '.join(problems) + f'. Nothing was loaded (mmengine would load '
        f'the keys that fit and only warn). {advice}')


def resume_checkpoint(cfg: Config) -> Optional[str]:
    """The checkpoint a resuming run continues: ``load_from``, or the one
    the work dir's ``last_checkpoint`` names (None: there is none)."""
    if cfg.get('load_from'):
        return cfg.load_from
    if not osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint')):
        return None
    return find_latest_checkpoint(cfg.work_dir)


def check_budget_loss_is_added(cfg: Config) -> None:
    """A backbone's ``budget_loss`` reaches training only through a task
    model that adds the backbone's losses (``DynamicMaskRCNN``,
    ``DynamicEncoderDecoder``...): with the stock type it would train
    without it and say nothing."""
    from mmengine.registry import MODELS
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    if not isinstance(backbone, dict) or backbone.get('budget_loss') is None:
        return
    with config_scope_of(cfg), \
            MODELS.switch_scope_and_registry(None) as registry:
        task_type = model.get('type')
        if not isinstance(task_type, type):
            task_type = registry.get(task_type)
    if task_type is None or issubclass(task_type, AuxLossMixin):
        return
    raise UnusedLossError(
        f"model.backbone.budget_loss is set, but model type "
        f"{model.get('type')!r} never adds the backbone's losses: use its "
        f"dynamic form (type='Dynamic{task_type.__name__}' where dit_mm has "
        'one: DynamicMaskRCNN, DynamicRetinaNet, DynamicEncoderDecoder, '
        'DynamicImageClassifier), or set budget_loss=None')


def check_train_run(cfg: Config) -> None:
    """What ``tools/train.py`` checks once the arguments are applied: the
    model's losses, the work dir, then the checkpoint it resumes (every key)
    or starts from (``load_from``: the backbone's keys)."""
    check_budget_loss_is_added(cfg)
    check_work_dir(cfg)
    if cfg.get('resume'):
        path = resume_checkpoint(cfg)
        role = ('--resume checkpoint' if cfg.get('load_from') else
                f'--resume checkpoint (named in {cfg.work_dir}/'
                'last_checkpoint)')
        check_checkpoint_fits(cfg, path, role)
    elif cfg.get('load_from') and check_checkpoint_fits(
            cfg, cfg.load_from, 'load_from checkpoint', backbone_only=True):
        # backbone weights alone: mmengine's load_from would find no key of
        # the model in them and load nothing; the backbone's init_cfg takes
        # them (the same file as model.backbone.init_cfg)
        print_log(f'load_from {cfg.load_from} holds backbone weights alone: '
                  'loading them as model.backbone.init_cfg=dict('
                  "type='Pretrained')", logger='current')
        cfg.model.backbone.init_cfg = dict(type='Pretrained',
                                           checkpoint=cfg.load_from)
        cfg.load_from = None


def check_test_checkpoint(cfg: Config) -> None:
    """What ``tools/test.py`` checks: the checkpoint fits the model, key for
    key and shape for shape."""
    check_checkpoint_fits(cfg, cfg.get('load_from'), 'checkpoint')
