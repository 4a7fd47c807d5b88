"""bfloat16 mixed precision without loss scaling, on a CPU as on a GPU.

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU (its ``GradScaler`` is
CUDA's), so ``tools/train.py --amp`` uses this wrapper where no GPU is
visible. bf16 has float32's exponent range: gradients do not underflow, so
no loss scaling is needed, and the optimizer steps on the float32 weights as
usual. Registered in mmengine's ``OPTIM_WRAPPERS``, the parent of mmdet's,
mmseg's and mmpretrain's, so a config of any of them may name it.
"""
import functools
import sys
from contextlib import contextmanager

import torch
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner.amp import autocast
from torch import Tensor, nn


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


def _in_float32(op):
    """``op`` computed in float32 when a tensor argument is bfloat16, autocast
    off inside, its floating results cast back to bfloat16."""
    if getattr(op, 'runs_in_float32', False):
        return op

    def cast(value, source=torch.bfloat16, target=torch.float32):
        if isinstance(value, Tensor) and value.dtype == source:
            return value.to(target)
        if isinstance(value, tuple):
            return tuple(cast(v, source, target) for v in value)
        return value

    @functools.wraps(op)
    def run(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values())
                   if isinstance(a, Tensor)]
        if not any(t.dtype == torch.bfloat16 for t in tensors):
            return op(*args, **kwargs)
        with torch.autocast(tensors[0].device.type, enabled=False):
            out = op(*map(cast, args),
                     **{k: cast(v) for k, v in kwargs.items()})
        return cast(out, torch.float32, torch.bfloat16)

    run.runs_in_float32 = True
    return run


def install_float32_ops() -> None:
    """Run mmcv 2.1.0's compiled NMS and RoIAlign in float32 on bfloat16
    inputs. They have float (and, on CUDA, half) kernels only, so a Mask
    R-CNN or RetinaNet under bfloat16 autocast failed in its first NMS
    ("expected scalar type Float but found BFloat16"), on a CPU as on a GPU.
    float32 inputs are passed through untouched. Idempotent."""
    import mmcv.ops  # noqa: F401  (loads the submodules patched here)
    nms_module = sys.modules['mmcv.ops.nms']  # batched_nms looks nms up here
    nms_module.nms = _in_float32(nms_module.nms)
    roi_align = sys.modules['mmcv.ops.roi_align'].RoIAlign
    roi_align.forward = _in_float32(roi_align.forward)
