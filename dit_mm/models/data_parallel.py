"""Batch quantities of a data-parallel run seen over the global batch.

With N processes each holding B images, a loss on a *batch statistic* (the
budget loss on the batch's mean FLOPs, the batch-shaping losses on the batch's
distribution of gate values) would otherwise see only the B local images, so
it would differ from the loss of one process training on the N·B images
(and with one or two images per GPU the shaping losses see almost nothing).
:func:`global_batch` hands such a loss the whole batch, and
:func:`mean_over_ranks` logs what a single process would log. Without a
process group both return their input.
"""
from typing import Dict

import torch
import torch.distributed as dist
from mmengine.dist import get_rank, get_world_size
from torch import Tensor


def global_batch(local: Tensor) -> Tensor:
    """``(B, ...)`` values of this process, concatenated in rank order with
    those of every other process (batches may differ in size, the other
    dimensions may not).

    Only the local rows carry gradient, scaled by the number of processes:
    every process then computes the same loss value, and DDP's average of the
    processes' gradients is the gradient of that loss on the global batch.
    """
    world = get_world_size()  # 1 without a process group
    if world == 1:
        return local
    shape = torch.tensor(local.shape, device=local.device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    if any(not torch.equal(s[1:], shape[1:]) for s in shapes):
        raise ValueError(
            'a batch-level loss got values of different shapes on different '
            f'processes ({[tuple(s.tolist()) for s in shapes]}); only the '
            'batch size may differ (use the same crop size on every process)')
    sizes = [int(s[0]) for s in shapes]
    padded = local.new_zeros((max(sizes), *local.shape[1:]),
                             dtype=torch.float32)
    padded[:local.shape[0]] = local.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    parts = [part[:size].to(local.dtype) for part, size in zip(parts, sizes)]
    parts[get_rank()] = local.detach() + world * (local - local.detach())
    return torch.cat(parts)


def mean_over_ranks(values: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Scalar log values averaged over the processes (detached), so the log
    of a data-parallel run shows the global batch's losses; one all-reduce."""
    world = get_world_size()
    if world == 1 or not values:
        return values
    names = list(values)
    stacked = torch.stack([values[n].detach().float().reshape(())
                           for n in names])
    count = torch.tensor([len(names), -len(names)], device=stacked.device)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)  # the most and the fewest
    if count[0] != -count[1]:
        raise RuntimeError(
            f'the processes log different values (this one: {names}); a '
            'data-parallel model must report the same losses on every rank')
    dist.all_reduce(stacked)
    stacked /= world
    return {n: v for n, v in zip(names, stacked)}
