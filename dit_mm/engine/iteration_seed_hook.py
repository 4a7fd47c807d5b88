"""Seed every training iteration from (seed, iteration), so a resumed run draws
exactly what the uninterrupted run drew.

mmengine's resume re-seeds from the config's seed, so after a resume the
model's random draws (RPN/R-CNN samplers, dropout, Gumbel noise of routing
gates) differ from those of the uninterrupted run. Storing generator states in
checkpoints would need every rank's state, but mmengine writes checkpoints on
rank 0 alone. Seeding the python, numpy and torch generators before each
iteration from the run's seed, the iteration and (with ``diff_rank_seed``) the
rank needs nothing stored and holds for any number of processes. The data
pipeline's randomness lives in the dataloader workers, which mmengine seeds
per worker and replays when it skips the batches already trained, so a resume
is exact when ``num_workers >= 1``.
"""
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from ..registry import register_hook


def iteration_seed(seed: int, iteration: int, rank: int = 0) -> int:
    """A 32-bit seed mixed from the run's seed, the iteration and the rank."""
    entropy = [int(seed) % 2**32, int(iteration), int(rank)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA generators too


@register_hook
class IterationSeedHook(Hook):
    """Re-seed the generators before each training iteration.

    ``tools/train.py`` adds this hook to every run, so configs need not name it.
    """
    priority = 'VERY_HIGH'  # before any other hook draws a number

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        randomness = runner.cfg.get('randomness') or {}
        rank = get_rank() if randomness.get('diff_rank_seed') else 0
        seed_everything(iteration_seed(runner.seed, runner.iter, rank))
