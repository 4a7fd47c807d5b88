"""bfloat16 mixed precision without loss scaling, on a CPU as on a GPU.

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU (its ``GradScaler`` is
CUDA's), so ``tools/train.py --amp`` uses this wrapper where no GPU is
visible. bf16 has float32's exponent range: gradients do not underflow, so
no loss scaling is needed, and the optimizer steps on the float32 weights as
usual. Registered in mmengine's ``OPTIM_WRAPPERS``, the parent of mmdet's,
mmseg's and mmpretrain's, so a config of any of them may name it.
"""
from contextlib import contextmanager

import torch
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner.amp import autocast
from torch import nn


@OPTIM_WRAPPERS.register_module()
class BF16OptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` whose forward runs under bfloat16 autocast.

    The device is mmengine's current one (``cpu`` without a GPU). Its state
    dict is the plain wrapper's; one of ``AmpOptimWrapper`` (an fp16 run on a
    GPU) resumes here with its loss scaler's state dropped.

    Args:
        dtype: only ``'bfloat16'`` (or ``torch.bfloat16``): fp16 needs loss
            scaling (``AmpOptimWrapper`` on a GPU) and is slow on a CPU.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, dtype='bfloat16', **kwargs):
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(
                f'BF16OptimWrapper trains in bfloat16, got dtype={dtype!r}; '
                'float16 needs loss scaling: use AmpOptimWrapper on a GPU')
        super().__init__(**kwargs)
        self.device_type = get_device()
        print_log(f'BF16OptimWrapper: training under bfloat16 autocast on '
                  f'{self.device_type} (no loss scaling)', logger='current')

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Gradient-accumulation context of ``OptimWrapper`` and bf16
        autocast."""
        with super().optim_context(model), autocast(
                device_type=self.device_type, dtype=torch.bfloat16):
            yield

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)
