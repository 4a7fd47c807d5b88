"""Count the FLOPs a forward pass really executes, op by op.

A dynamic model's cost is what its kernels compute, so this counter sits at
torch's dispatcher (``TorchDispatchMode``) and sees every aten op with the
shapes it actually ran on: a token that was not kept never reaches a matmul
and costs nothing; attention is counted whichever kernel runs it
(``scaled_dot_product_attention``'s fused CPU and CUDA kernels, or the
``bmm`` / ``baddbmm`` of mmcv's attention), and so are norms, upsampling and
the gates' linears.

Units and conventions are mmengine's analyser's (fvcore's), so figures agree
with it on the ops it supports and with papers that count multiply-accumulates:
a matmul or convolution is its multiply-accumulates (bias left out), a norm
5 per element with an affine part (4 without; eval batch norm 2 / 1), nearest
upsampling 1 and bilinear 4 per output element, an adaptive average pool (and
a ``mean`` over the spatial dims) 1 per input element. Beyond the analyser:
fused attention ``B·H·Lq·Lk·(E + Ev)``, bicubic upsampling 16 per output
element, average pooling 1 per input element.

Left out, and named in :attr:`FlopCounter.left_out`: element-wise arithmetic
(activations, residual additions, softmax, scaling), which no analyser here
counts; ops that move memory without arithmetic (views, copies, gathers,
scatters, concatenation) are ignored. mmcv's compiled ops (RoIAlign, NMS) run
outside torch's dispatcher: they are not seen, and the modules of them that
ran are named in :attr:`FlopCounter.outside`.

Each op is booked to a module: the innermost module whose ``forward`` is
running (hooks), or, when the op uses a parameter of a module deeper than that
(our sparse blocks call their sub-modules' weights directly), that module; an
op without parameters (attention, upsampling) goes with the last module used
inside the same running module (its parameter, or its finished forward).
"""
import math
from collections import Counter, defaultdict
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _numel(shape) -> int:
    return math.prod(int(v) for v in shape)


def _mm(args, out) -> int:  # (n, k) @ (k, m)
    return _numel(args[0].shape) * int(args[1].shape[-1])


def _addmm(args, out) -> int:  # bias + (n, k) @ (k, m)
    return _numel(args[1].shape) * int(args[2].shape[-1])


def _bmm(args, out) -> int:  # (b, n, k) @ (b, k, m)
    return _numel(args[0].shape) * int(args[1].shape[-1])


def _baddbmm(args, out) -> int:
    return _numel(args[1].shape) * int(args[2].shape[-1])


def _convolution(args, out) -> int:
    """Output positions x weight size (a transposed conv: input positions)."""
    x, weight, transposed = args[0], args[1], args[6]
    positions = x.shape[2:] if transposed else out.shape[2:]
    return int(x.shape[0]) * _numel(positions) * _numel(weight.shape)


def _attention(args, out) -> int:
    """q (B, H, Lq, E), k (B, H, Lk, E), v (B, H, Lk, Ev): QK^T then AV."""
    q, k, v = args[:3]
    batch_heads = _numel(q.shape[:-2])
    return batch_heads * int(q.shape[-2]) * int(k.shape[-2]) * (
        int(q.shape[-1]) + int(v.shape[-1]))


def _norm(affine_index: int) -> Callable:
    def count(args, out) -> int:
        affine = len(args) > affine_index and args[affine_index] is not None
        return _numel(args[0].shape) * (5 if affine else 4)
    return count


def _batch_norm(training_index: Optional[int]) -> Callable:
    """2 per element with an affine part in eval (a scale and a shift), the
    full norm's 5 when it computes batch statistics."""
    def count(args, out) -> int:
        training = True if training_index is None else bool(
            args[training_index])
        affine = args[1] is not None
        if training:
            return _numel(args[0].shape) * (5 if affine else 4)
        return _numel(args[0].shape) * (2 if affine else 1)
    return count


def _per_output(scale: int) -> Callable:
    def count(args, out) -> int:
        first = out[0] if isinstance(out, (tuple, list)) else out
        return scale * _numel(first.shape)
    return count


def _per_input(args, out) -> int:
    return _numel(args[0].shape)


def _formulas() -> Dict[object, Tuple[str, Callable]]:
    """aten op overload packet -> (kind, MACs of one call)."""
    table = {
        'mm': ('matmul', _mm), 'addmm': ('matmul', _addmm),
        'bmm': ('matmul', _bmm), 'baddbmm': ('matmul', _baddbmm),
        'convolution': ('conv', _convolution),
        '_scaled_dot_product_flash_attention_for_cpu': ('attention',
                                                        _attention),
        '_scaled_dot_product_flash_attention': ('attention', _attention),
        '_scaled_dot_product_efficient_attention': ('attention', _attention),
        '_scaled_dot_product_cudnn_attention': ('attention', _attention),
        'native_layer_norm': ('norm', _norm(2)),
        'native_group_norm': ('norm', _norm(1)),
        'native_batch_norm': ('norm', _batch_norm(5)),
        '_native_batch_norm_legit': ('norm', _batch_norm(5)),
        '_native_batch_norm_legit_no_training': ('norm', _batch_norm(None)),
        'cudnn_batch_norm': ('norm', _batch_norm(5)),
        'upsample_nearest2d': ('upsample', _per_output(1)),
        '_upsample_nearest_exact2d': ('upsample', _per_output(1)),
        'upsample_bilinear2d': ('upsample', _per_output(4)),
        'upsample_bicubic2d': ('upsample', _per_output(16)),
        'grid_sampler_2d': ('upsample', _per_output(4)),
        '_adaptive_avg_pool2d': ('pool', _per_input),
        'avg_pool2d': ('pool', _per_input),
        'mean': ('pool', _per_input),
    }
    formulas = {}
    for name, entry in table.items():
        packet = getattr(aten, name, None)
        if packet is not None:  # some kernels exist only in some builds
            formulas[packet] = entry
    return formulas


FORMULAS = _formulas()

# Ops with no arithmetic: shape, memory and bookkeeping.
NO_ARITHMETIC = {
    'view', '_unsafe_view', 'reshape', 'permute', 't', 'transpose',
    'expand', 'squeeze', 'unsqueeze', 'select', 'slice', 'split',
    'split_with_sizes', 'unbind', 'narrow', 'as_strided', 'alias', 'detach',
    'clone', 'copy_', '_to_copy', 'contiguous', 'cat', 'stack', 'index',
    'index_select', 'gather', 'scatter', 'scatter_', 'index_put_',
    'index_put', 'masked_fill', 'masked_fill_', 'masked_select',
    'nonzero', 'empty', 'empty_like', 'empty_strided', 'zeros', 'zeros_like',
    'ones', 'ones_like', 'full', 'full_like', 'new_zeros', 'new_ones',
    'new_empty', 'new_full', 'fill_', 'zero_', 'arange', 'lift_fresh',
    '_local_scalar_dense', 'constant_pad_nd', 'repeat', 'repeat_interleave',
    'flip', 'roll', 'unfold', 'im2col', 'item', 'sort', 'topk', 'argsort',
    'argmax', 'max', 'min', 'eq', 'ne', 'lt', 'le', 'gt', 'ge',
    'logical_and', 'logical_or', 'logical_not', 'bitwise_and', 'bitwise_or',
    'bitwise_not', 'where', 'any', 'all', 'randn', 'rand', 'randint',
    'uniform_', 'normal_', 'bernoulli_', 'resize_', 'set_', 'is_nonzero',
    'sym_size', 'sym_stride', 'sym_numel', 'to', 'scalar_tensor',
    '_unsafe_index', 'unfold_backward', 'nonzero_static', 'count_nonzero',
    'max_pool2d_with_indices',
}


class FlopCounter(TorchDispatchMode):
    """Counts multiply-accumulates of what runs inside ``with counter:``.

    ``model``: its named modules are what ops are booked to (names as in
    ``model.named_modules()``; ``''`` is the model itself, for ops outside
    every sub-module).

    After the block: :attr:`total`, :attr:`by_module` (MACs per module name,
    each op booked once, to the innermost module), :attr:`by_kind` (matmul,
    conv, attention, norm, upsample, pool), :attr:`left_out` (calls of the
    arithmetic ops not counted, by op name) and :attr:`outside` (calls of
    modules that run outside torch's dispatcher, by class name).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.by_module: Dict[str, int] = defaultdict(int)
        self.by_kind: Dict[str, int] = defaultdict(int)
        self.left_out: Counter = Counter()
        self.outside: Counter = Counter()
        self._names = {m: name for name, m in model.named_modules()}
        self._owners = {}
        for name, module in model.named_modules():
            for param in module.parameters(recurse=False):
                self._owners[param.untyped_storage().data_ptr()] = name
        self._stack: List[str] = ['']
        self._sticky: Optional[str] = None  # last parameter owner in the frame
        self._handles = []

    @property
    def total(self) -> int:
        return sum(self.by_module.values())

    # ---------------------------------------------------------- module frames
    def __enter__(self):
        for module, name in self._names.items():
            if not name:
                continue
            self._handles.append(module.register_forward_pre_hook(
                self._pre_hook(name, module)))
            self._handles.append(module.register_forward_hook(
                self._post_hook()))
        return super().__enter__()

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return super().__exit__(*exc)

    def _pre_hook(self, name: str, module: nn.Module):
        outside = type(module).__module__.startswith('mmcv.ops')

        def hook(mod, inputs):
            if outside:
                self.outside[type(mod).__name__] += 1
            self._stack.append(name)
            self._sticky = None
        return hook

    def _post_hook(self):
        def hook(mod, inputs, output):
            if len(self._stack) > 1:
                self._sticky = self._stack.pop()
        return hook

    def _owner(self, args) -> str:
        """The module an op is booked to (see the module docstring)."""
        frame = self._stack[-1]
        for arg in args:
            if isinstance(arg, torch.Tensor) and arg.device.type != 'meta':
                try:
                    owner = self._owners.get(
                        arg.untyped_storage().data_ptr())
                except (RuntimeError, NotImplementedError):
                    owner = None
                if owner is not None and _inside(owner, frame):
                    self._sticky = owner
                    return owner
        if self._sticky is not None and _inside(self._sticky, frame):
            return self._sticky
        return frame

    # --------------------------------------------------------------- dispatch
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        entry = FORMULAS.get(packet)
        if entry is not None:
            kind, formula = entry
            if packet is aten.mean and not _is_pool_mean(args):
                entry = None
            else:
                macs = int(formula(args, out))
                self.by_module[self._owner(args)] += macs
                self.by_kind[kind] += macs
        if entry is None:
            name = packet.__name__
            if name.rstrip('_') not in NO_ARITHMETIC and \
                    name not in NO_ARITHMETIC:
                self.left_out[name] += 1
        return out


def _inside(name: str, frame: str) -> bool:
    return frame == '' or name == frame or name.startswith(frame + '.')


def _is_pool_mean(args) -> bool:
    """``mean`` over the two spatial dims of an NCHW map (what
    ``adaptive_avg_pool2d(x, 1)`` becomes)."""
    if len(args) < 2 or not isinstance(args[0], torch.Tensor):
        return False
    dims = args[1]
    if args[0].dim() != 4 or not isinstance(dims, (list, tuple)):
        return False
    return sorted(d % 4 for d in dims) == [2, 3]


def count_flops(model: nn.Module, fn: Callable[[], object]) -> FlopCounter:
    """Run ``fn()`` (a forward of ``model``, under ``torch.no_grad`` or
    not) and return the counter of what it executed."""
    counter = FlopCounter(model)
    with counter:
        fn()
    return counter


def subtotal(by_module: Dict[str, int], prefix: str) -> int:
    """MACs booked to the module ``prefix`` and everything inside it."""
    return sum(v for k, v in by_module.items() if _inside(k, prefix))


def module_groups(model: nn.Module) -> List[str]:
    """The model's direct children, minus its data preprocessor (it runs
    before the forward): backbone, neck, heads..."""
    return [name for name, _ in model.named_children()
            if name != 'data_preprocessor']


def stages(module: nn.Module, prefix: str) -> List[str]:
    """The parts of a backbone one level down, a module list's items each:
    ``backbone.stages.0``, ``backbone.layers.11``, ``backbone.patch_embed``."""
    names = []
    for name, child in module.named_children():
        full = f'{prefix}.{name}'
        if isinstance(child, nn.ModuleList):
            names.extend(f'{full}.{i}' for i in range(len(child)))
        else:
            names.append(full)
    return names
