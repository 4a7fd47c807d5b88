"""Gather / scatter of selected tokens: the core every dynamic-token model shares.

A dense token grid ``(B, N, C)`` plus a boolean keep mask ``(B, N)`` becomes a
packed tensor ``(K, C)`` of the kept tokens of the whole batch, so per-token layers
(norms, linears) run on kept tokens only. Attention, which needs the tokens of one
image together, gets them padded to ``(B, K_max, C)``. Results go back into the
dense grid; tokens that were not selected keep their value (identity), so every
map stays dense for FPN / UperNet.
"""
from typing import NamedTuple, Sequence, Tuple, Union

import torch
from torch import Tensor


class TokenSelection(NamedTuple):
    """Where the kept tokens of a batch are.

    flat_index: ``(K,)`` positions in the batch flattened to ``B * N``.
    batch_index: ``(K,)`` image of each kept token.
    slot: ``(K,)`` position of each kept token among its image's kept tokens.
    counts: ``(B,)`` kept tokens per image.
    max_count: the largest of ``counts`` (a Python int: the padded length).
    lengths: ``counts`` as Python ints (what a per-image split needs).
    """
    flat_index: Tensor
    batch_index: Tensor
    slot: Tensor
    counts: Tensor
    max_count: int
    lengths: Tuple[int, ...]


def select_tokens(keep: Tensor,
                  lengths: Union[None, int, Sequence[int]] = None
                  ) -> TokenSelection:
    """The selection of the ``True`` entries of a ``(B, N)`` keep mask.

    The packed length must be known on the host. A caller that knows how
    many tokens each image keeps (a fixed budget: ``lengths`` an int, the
    same for every image) gives it, and nothing waits for the device; else
    the counts are read back in one copy, the one host sync of a decision
    the data made (issue 19). ``lengths`` is trusted, not checked (a check
    would be the sync it saves)."""
    if keep.dim() != 2 or keep.dtype != torch.bool:
        raise ValueError(
            f'keep must be a (B, N) bool mask, got {tuple(keep.shape)} '
            f'{keep.dtype}')
    batch, num_tokens = keep.shape
    counts = keep.sum(1)
    if lengths is None:
        lengths = counts.tolist()
    elif isinstance(lengths, int):
        lengths = [lengths] * batch
    total = sum(lengths)
    # the j-th kept token of the flattened batch is where the running count
    # first exceeds j: a search, not a data-sized nonzero
    running = keep.reshape(-1).cumsum(0)
    flat_index = torch.searchsorted(
        running, torch.arange(total, device=keep.device), right=True)
    batch_index = torch.div(flat_index, num_tokens, rounding_mode='floor')
    slot = (keep.cumsum(1) - 1).reshape(-1)[flat_index]
    return TokenSelection(flat_index, batch_index, slot, counts,
                          max(lengths, default=0), tuple(lengths))


def count_each(index: Tensor, size: int) -> Tensor:
    """How often each of ``0 .. size - 1`` occurs in ``index``: ``bincount``
    with the size known, which (unlike ``bincount``) does not read the
    largest index back to the host first."""
    return index.new_zeros(size).scatter_add_(0, index,
                                              torch.ones_like(index))


def gather_tokens(x: Tensor, sel: TokenSelection) -> Tensor:
    """The kept tokens of ``x`` ``(B, N, C)`` packed as ``(K, C)``."""
    return x.reshape(-1, x.shape[-1]).index_select(0, sel.flat_index)


def scatter_tokens(x: Tensor, values: Tensor, sel: TokenSelection) -> Tensor:
    """``x`` with the kept tokens replaced by ``values`` ``(K, C')``.

    ``x`` may be a ``(B, N, C')`` grid or ``None``-like zeros made by the caller;
    the result is a new tensor (autograd-safe), ``x`` is left unchanged.
    """
    flat = x.reshape(-1, values.shape[-1])
    return flat.index_copy(0, sel.flat_index, values).view_as(x)


def add_to_tokens(x: Tensor, values: Tensor, sel: TokenSelection) -> Tensor:
    """``x`` ``(B, N, C)`` with ``values`` ``(K, C)`` added to its kept tokens.

    Out of place when autograd records (``x`` may be saved for backward), in
    place under ``torch.no_grad``. The in-place form reads, adds and writes back
    the kept rows (they are unique) rather than ``index_add_``, whose CPU kernel
    stalls badly with several threads on a loaded machine.
    """
    flat = x.reshape(-1, x.shape[-1])
    if torch.is_grad_enabled():
        return flat.index_add(0, sel.flat_index, values).view_as(x)
    rows = flat.index_select(0, sel.flat_index).add_(values)
    return flat.index_copy_(0, sel.flat_index, rows).view_as(x)


def pad_tokens(values: Tensor, sel: TokenSelection) -> Tensor:
    """Packed ``(K, C)`` tokens as ``(B, K_max, C)``, zero-padded per image."""
    batch = sel.counts.shape[0]
    if batch == 1:
        return values.unsqueeze(0)
    padded = values.new_zeros(batch, sel.max_count, values.shape[-1])
    padded[sel.batch_index, sel.slot] = values
    return padded


def unpad_tokens(padded: Tensor, sel: TokenSelection) -> Tensor:
    """The inverse of :func:`pad_tokens`."""
    if padded.shape[0] == 1:
        return padded[0]
    return padded[sel.batch_index, sel.slot]


def fill_tokens(x: Tensor, source: Tensor) -> Tensor:
    """``x`` ``(B, N, ...)`` with every position ``n`` of image ``b`` taking
    the value of position ``source[b, n]``: how the token that stands for a
    region (a mixed-scale coarse token) is copied back to the positions it
    covers."""
    index = source.view(*source.shape, *([1] * (x.dim() - 2)))
    return x.gather(1, index.expand(*source.shape, *x.shape[2:]))


def keep_top(score: Tensor, k: int, prefer: float = 0.) -> Tuple[Tensor, Tensor]:
    """The ``k`` highest-scoring entries of each row of ``score`` ``(B, N)``
    as a bool mask (``-inf`` entries never), and per row the cut: the value
    between the kept and the rest that is closest to ``prefer`` (so scores
    ``> cut`` are the kept ones; a rule "keep what scores above ``prefer``"
    that keeps ``k`` has ``cut == prefer``)."""
    batch, num = score.shape
    k = max(0, min(int(k), num))
    keep = torch.zeros_like(score, dtype=torch.bool)
    ranked, order = score.topk(min(k + 1, num), dim=1)  # highest first
    inf = score.new_full((batch, 1), float('inf'))
    above = torch.cat([inf, ranked], 1)[:, k]  # k-th highest (inf: none)
    below = ranked[:, k] if k < num else -inf[:, 0]  # (k+1)-th
    if k:
        keep.scatter_(1, order[:, :k], True)
        keep &= score > float('-inf')
    cut = torch.minimum(torch.clamp(below, min=prefer), above)
    return keep, cut
