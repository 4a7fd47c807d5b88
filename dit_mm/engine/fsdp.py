"""Sharded training (FSDP) through mmengine's ``FlexibleRunner``, on GPUs and
on a CPU with gloo.

mmengine 0.10.7's ``FSDPStrategy`` hands FSDP ``device_id=LOCAL_RANK``, a CUDA
device; torch's FSDP also runs on a CPU, but only when told so
(``device_id=torch.device('cpu')``: with no device it looks for an
accelerator and fails). :class:`DitFSDPStrategy` is mmengine's strategy with:

- the device: ``LOCAL_RANK``'s GPU where CUDA is visible, else the CPU;
- ``wrap_modules``: FSDP units named by module path. FSDP gathers a unit's
  weights in the unit's ``forward``, and the dynamic backbones read most block
  weights directly instead (``run_packed_layer`` runs mmseg's
  ``TransformerEncoderLayer`` on packed tokens; DiT calls ``block.norm1`` and
  ``block.forward_masked``; MSViT embeds with ``patch_embed.projection.weight``),
  so wrapping whole blocks by class fails with sharded (1-D) weights. Only
  modules entered through ``forward`` can be units (the MLP of a ViT layer, the
  neck, the heads' convolutions); the rest stays in the root unit, whose
  weights are gathered for the whole forward and backward and sharded between
  steps, as are all gradients and optimizer states;
- every rank starts from rank 0's weights, as under DDP
  (``sync_module_states=True`` on GPUs; FSDP syncs GPU tensors only, so on a
  CPU the strategy broadcasts them before wrapping);
- gradient clipping by norm over the whole model (FSDP's
  ``clip_grad_norm_``): mmengine's ``OptimWrapper`` would clip each rank's
  shard by the shard's own norm;
- full state dicts gathered without ``offload_to_cpu`` on a CPU (torch 2.13's
  FSDP segfaults "offloading" CPU tensors to the CPU);
- ``--resume`` that works on this torch (see :meth:`load_optim_state_dict`);
- one log line with every rank's share of the parameters;
- without a process group (``tools/test.py`` in one process) no wrapping: the
  model runs as under ``SingleDeviceStrategy``, so the FSDP config tests a
  checkpoint as it is.

Registered in mmengine's ``STRATEGIES``, which ``FlexibleRunner`` builds from.
"""
import fnmatch
import itertools
import os
from functools import partial
from typing import Iterable, List, Optional, Sequence

import torch
import torch.distributed as dist
from mmengine._strategy import FSDPStrategy
from mmengine._strategy.base import BaseStrategy
from mmengine.device import get_device
from mmengine.dist import all_gather_object
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import STRATEGIES
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP


def fsdp_device() -> torch.device:
    """The device FSDP computes on: ``LOCAL_RANK``'s GPU, or the CPU."""
    if torch.cuda.is_available():
        return torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
    return torch.device('cpu')


def broadcast_module_states(model: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (FSDP's
    ``sync_module_states`` on a CPU)."""
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            dist.broadcast(tensor, src=0)


def match_module_paths(model: nn.Module, patterns: Sequence[str]
                       ) -> List[nn.Module]:
    """The modules of ``model`` whose dotted path matches one of ``patterns``.

    A pattern matches a path of as many parts, part by part with shell
    wildcards (``'backbone.layers.*.ffn.layers'``: ``*`` stands for one part,
    never for a dot). Modules without parameters are left out (no unit to
    shard). Every pattern must match a module with parameters: a typo would
    otherwise leave the model in one unit without a word.
    """
    found, unmatched = [], []
    named = [(name.split('.'), module) for name, module in model.named_modules()
             if name and any(True for _ in module.parameters())]
    for pattern in patterns:
        parts = pattern.split('.')
        hits = [module for path, module in named if len(path) == len(parts)
                and all(fnmatch.fnmatchcase(p, q) for p, q in zip(path, parts))]
        if not hits:
            unmatched.append(pattern)
        found.extend(m for m in hits if all(m is not f for f in found))
    if unmatched:
        raise ValueError(
            f'wrap_modules: {unmatched} match no module with parameters of '
            f'{type(model).__name__} (patterns match dotted module paths part '
            'by part, e.g. backbone.layers.*.ffn.layers)')
    return found


def module_set_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int,
                      units: Iterable[nn.Module] = ()) -> bool:
    """An FSDP ``auto_wrap_policy``: a unit for each module of ``units``."""
    return recurse or any(module is unit for unit in units)


@STRATEGIES.register_module()
class DitFSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` on a GPU or a CPU, with units by path.

    Args:
        wrap_modules: dotted module paths (shell wildcards per part) of the
            modules that become FSDP units of their own; each must be called
            through its ``forward``. Mutually exclusive with
            ``model_wrapper.auto_wrap_policy``. ``None``: one unit (the root).
        **kwargs: :class:`mmengine._strategy.FSDPStrategy`'s (``model_wrapper``,
            ``state_dict_cfg``, ``skip_init_weights``,
            ``activation_checkpointing``) and its base's.
    """

    def __init__(self, *, wrap_modules: Optional[Sequence[str]] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(wrap_modules, str):
            wrap_modules = [wrap_modules]
        self.wrap_modules = list(wrap_modules or [])
        if fsdp_device().type == 'cpu':
            # nothing to offload, and torch 2.13's FSDP segfaults cloning a
            # full state dict that it "offloads" from a CPU to the CPU
            for config in (self.state_dict_config,
                           self.optim_state_dict_config):
                if getattr(config, 'offload_to_cpu', False):
                    config.offload_to_cpu = False
        if self.wrap_modules and (self.model_wrapper or {}).get(
                'auto_wrap_policy') is not None:
            raise ValueError('give FSDP units either as wrap_modules or as '
                             'model_wrapper.auto_wrap_policy, not both')

    # ------------------------------------------------------------- wrapping
    def _wrap_model(self, model: nn.Module) -> nn.Module:
        if not self.distributed:  # one process: nothing to shard
            return revert_sync_batchnorm(model).to(get_device())
        total = sum(p.numel() for p in model.parameters())
        wrapper = dict(self.model_wrapper or
                       dict(type='MMFullyShardedDataParallel'))
        device = fsdp_device()
        wrapper.setdefault('device_id', device)
        if device.type == 'cpu':  # FSDP syncs GPU tensors only
            broadcast_module_states(model)
        else:
            wrapper.setdefault('sync_module_states', True)
        if self.wrap_modules:
            wrapper['auto_wrap_policy'] = partial(
                module_set_policy,
                units=match_module_paths(model, self.wrap_modules))
        configured, self.model_wrapper = self.model_wrapper, wrapper
        try:
            model = super()._wrap_model(self.convert_model(model))
        finally:
            self.model_wrapper = configured
        self._log_shares(model, total)
        return model

    def _log_shares(self, model: nn.Module, total: int) -> None:
        """Log how many of the ``total`` parameters each rank holds."""
        local = sum(p.numel() for p in model.parameters())
        units = sum(1 for m in model.modules() if isinstance(m, FSDP))
        shares = all_gather_object(local)
        self.logger.info(
            f'FSDP: {len(shares)} ranks hold '
            f'{", ".join(map(str, shares))} of {total} parameters '
            f'({", ".join(f"{100 * s / total:.1f}%" for s in shares)}) '
            f'in {units} units')

    # ----------------------------------------------------------- optimizer
    def build_optim_wrapper(self, optim_wrapper, model=None):
        if not isinstance(self.model, FSDP):
            return BaseStrategy.build_optim_wrapper(self, optim_wrapper, model)
        wrapper = super().build_optim_wrapper(optim_wrapper, model)
        wrappers = (wrapper.values() if isinstance(wrapper, OptimWrapperDict)
                    else [wrapper])
        for each in wrappers:
            if (isinstance(each, OptimWrapper) and getattr(
                    each, 'clip_func', None) is torch.nn.utils.clip_grad_norm_):
                if len(wrappers) > 1:
                    raise ValueError(
                        'clipping gradients by norm under FSDP clips over the '
                        'whole model; give it to a single optimizer')
                each.clip_func = self._clip_grad_norm
        return wrapper

    def _clip_grad_norm(self, params, max_norm: float, norm_type: float = 2.0,
                        **kwargs) -> torch.Tensor:
        """``clip_grad_norm_`` over the sharded gradients of every rank."""
        return self.model.clip_grad_norm_(max_norm, norm_type)

    def optim_state_dict(self) -> dict:
        if not isinstance(self.model, FSDP):
            return BaseStrategy.optim_state_dict(self)
        return super().optim_state_dict()

    def load_optim_state_dict(self, state_dict: dict) -> None:
        """mmengine's, with the arguments of ``optim_state_dict_to_load``
        named: mmengine 0.10.7 passes ``(state_dict, model, optimizer)``
        positionally, and torch 2.13 takes ``(model, optim,
        optim_state_dict)``, so ``--resume`` failed."""
        if not isinstance(self.model, FSDP):
            return BaseStrategy.load_optim_state_dict(self, state_dict)
        self.optim_wrapper.load_state_dict(FSDP.optim_state_dict_to_load(
            model=self.model, optim=self.optim_wrapper.optimizer,
            optim_state_dict=state_dict))
