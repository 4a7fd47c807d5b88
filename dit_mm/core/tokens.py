"""Gather / scatter of selected tokens: the core every dynamic-token model shares.

A dense token grid ``(B, N, C)`` plus a boolean keep mask ``(B, N)`` becomes a
packed tensor ``(K, C)`` of the kept tokens of the whole batch, so per-token layers
(norms, linears) run on kept tokens only. Attention, which needs the tokens of one
image together, gets them padded to ``(B, K_max, C)`` or attends over the packed
tokens (:func:`attend_packed`: batched, per image, or one variable-length call
on a GPU). Results go back into the dense grid; tokens that were not selected
keep their value (identity), so every map stays dense for FPN / UperNet.
"""
import functools
import importlib.util
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor


class TokenSelection(NamedTuple):
    """Where the kept tokens of a batch are.

    flat_index: ``(K,)`` positions in the batch flattened to ``B * N``.
    batch_index: ``(K,)`` image of each kept token.
    slot: ``(K,)`` position of each kept token among its image's kept tokens.
    counts: ``(B,)`` kept tokens per image.
    max_count: the largest of ``counts`` (a Python int: the padded length).
    lengths: ``counts`` as Python ints (what a per-image split needs).
    plan: what a block worked out alongside (Swin-v2's active windows), or
        None.
    """
    flat_index: Tensor
    batch_index: Tensor
    slot: Tensor
    counts: Tensor
    max_count: int
    lengths: Tuple[int, ...]
    plan: Optional[object] = None


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


# ------------------------------------------------------------------ attention
ATTENTION_METHODS = ('batched', 'loop', 'nested', 'varlen')


def varlen_usable(q: Tensor, dropout: float = 0.) -> bool:
    """Whether FlashAttention's variable-length kernel can take ``q``: on a
    GPU, half or bfloat16 (under autocast), head size a multiple of 8 up to
    256, no dropout, and a torch that has ``torch.nn.attention.varlen``."""
    return (q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
            and dropout == 0. and q.shape[-1] % 8 == 0
            and q.shape[-1] <= 256 and _has_varlen())


@functools.lru_cache(maxsize=None)
def _has_varlen() -> bool:
    return importlib.util.find_spec('torch.nn.attention.varlen') is not None


def _offsets(lengths: Sequence[int], device: torch.device) -> Tensor:
    """``(B + 1,)`` int32 start of each image and the end, on ``device``:
    copied from pinned memory without waiting (a plain copy to a GPU would
    synchronise the stream)."""
    starts = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(
        0, dtype=torch.int32)
    if device.type != 'cuda':
        return starts
    return starts.pin_memory().to(device, non_blocking=True)


def attend_packed(q: Tensor, k: Tensor, v: Tensor, q_lengths: Sequence[int],
                  k_lengths: Sequence[int], method: str = 'auto',
                  dropout: float = 0.) -> Tensor:
    """Attention of packed tokens, each image's queries over its own keys.

    ``q`` ``(Tq, H, D)`` holds ``q_lengths[b]`` queries of image ``b`` after
    those of image ``b - 1``; ``k``, ``v`` ``(Tk, H, D)`` likewise with
    ``k_lengths``. Returns ``(Tq, H, D)``. The methods compute the same
    function (to rounding; ``tests/test_tokens.py``):

    - ``batched``: one SDPA over ``(B, H, L, D)``; every image the same
      lengths;
    - ``loop``: one SDPA per image (the CPU default for unequal lengths);
    - ``nested``: SDPA on nested jagged tensors, one call (a CPU takes it
      for self-attention only, query and key lengths alike);
    - ``varlen``: FlashAttention over the images' offsets, one call (a GPU,
      half / bfloat16: :func:`varlen_usable`).

    ``auto``: ``batched`` when the lengths allow it, else ``varlen`` where it
    runs, else ``loop`` (on an H200, ``tools/gpu/probe_packed_attention.py``
    timed the per-image loop and ``varlen`` alike at 8192 tokens, batch 8,
    and nested tensors two to five times slower)."""
    batch = len(q_lengths)
    if method == 'auto':
        if len(set(q_lengths)) == 1 and len(set(k_lengths)) == 1:
            method = 'batched'
        elif varlen_usable(q, dropout):
            method = 'varlen'
        else:
            method = 'loop'
    if method not in ATTENTION_METHODS:
        raise ValueError(f'method must be auto or one of {ATTENTION_METHODS}, '
                         f'got {method!r}')

    def sdpa(qb: Tensor, kb: Tensor, vb: Tensor) -> Tensor:  # (.., L, H, D)
        out = F.scaled_dot_product_attention(
            qb.transpose(-3, -2), kb.transpose(-3, -2), vb.transpose(-3, -2),
            dropout_p=dropout)
        return out.transpose(-3, -2)

    if method == 'batched':
        shape = lambda t, n: t.view(batch, n, *t.shape[1:])  # noqa: E731
        return sdpa(shape(q, q_lengths[0]), shape(k, k_lengths[0]),
                    shape(v, k_lengths[0])).reshape(q.shape)
    if method == 'loop':
        return torch.cat([
            sdpa(qb, kb, vb) for qb, kb, vb in zip(
                q.split(list(q_lengths)), k.split(list(k_lengths)),
                v.split(list(k_lengths)))])
    q_starts = _offsets(q_lengths, q.device)
    k_starts = q_starts if list(k_lengths) == list(q_lengths) else \
        _offsets(k_lengths, k.device)
    if method == 'nested':
        def nested(t: Tensor, starts: Tensor) -> Tensor:
            return torch.nested.nested_tensor_from_jagged(
                t, starts.long()).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            nested(q, q_starts), nested(k, k_starts), nested(v, k_starts),
            dropout_p=dropout)
        return out.transpose(1, 2).values()
    from torch.nn.attention.varlen import varlen_attn
    return varlen_attn(q, k, v, q_starts, k_starts, max(q_lengths),
                       max(k_lengths))
