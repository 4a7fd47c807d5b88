"""Swin-v2 blocks that a token can go through or skip.

:class:`RoutedSwinV2Block` is mmpretrain's ``SwinBlockV2`` (same modules, so
its state dicts load as they are) with the three forms DiT's routing needs:
``forward`` (the static block), ``forward_masked`` (training: every token
computed, the per-token gate applied to both residual branches) and
``forward_sparse`` (inference: only the kept tokens' updates are computed).

Swin-v2 attends inside windows, and a kept token needs the keys and values of
its whole window (as DiT's PVTv2 blocks take keys and values from the whole
map). Two sparse forms, chosen by ``window_mode``:

* ``'whole'``: every window that holds a kept token is computed whole
  (queries, keys, values and attention for all its positions), and only the
  kept tokens' results are copied back;
* ``'packed'``: keys and values for the windows that hold a kept token,
  queries and attention rows only for the kept tokens, packed per window
  (padded to the fullest window).

Which windows those are is read back once per block. On a GPU under a
fixed budget nothing is read back (``bounded_windows``): each image's ``k``
kept tokens lie in at most ``min(windows, k)`` windows, so that many are
computed (empty ones too) and the packed windows are padded to
``min(window size, k)`` queries, so a fixed budget's forward waits for
nothing and has the same sizes every time. On a CPU the read-back costs
nothing and the bound's padding costs compute (once ``k`` reaches the window
size, packed windows are padded to whole ones), so there the windows are
read.

Both then run the output projection, the post-norms and the MLP on the kept
tokens only. ``'packed'`` is the default: at 512x512 on a CPU it measured
faster at every budget (``tools/analysis_tools/benchmark.py --backbone
dit-swinv2:t --window-modes packed whole`` times both; figures in the
README).
"""
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmpretrain.models.backbones.swin_transformer_v2 import SwinBlockV2
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ...core.tokens import (TokenSelection, count_each, gather_tokens,
                            scatter_tokens, select_tokens)

HW = Tuple[int, int]
WINDOW_MODES = ('whole', 'packed')


class WindowLayout(NamedTuple):
    """Where the tokens of an ``H x W`` map sit in a block's windows.

    source: ``(windows, size**2)`` token index of every window position
    (-1: padding). window / position: ``(H * W,)`` the window of each token
    and its position in it. mask: the shifted windows' ``(windows, size**2,
    size**2)`` attention mask, or None.
    """
    source: Tensor
    window: Tensor
    position: Tensor
    mask: Optional[Tensor]


def window_layout(block: 'RoutedSwinV2Block', hw: HW,
                  device: torch.device) -> WindowLayout:
    """The windows ``block``'s attention uses on an ``hw`` map, with the
    padding and shift rules of mmpretrain's ``ShiftWindowMSA``."""
    msa = block.attn
    size, shift = msa.window_size, msa.shift_size
    height, width = hw
    if min(height, width) == size and not msa.pad_small_map:
        shift = 0
    elif min(height, width) < size and not msa.pad_small_map:
        # mmpretrain's ShiftWindowMSA asserts it: the same exception type
        raise AssertionError(f'a {height}x{width} map is smaller than the '
                             f'window ({size}); set pad_small_map=True or '
                             'a smaller window_size')
    pad_h, pad_w = (-height) % size, (-width) % size
    grid = torch.arange(height * width, device=device).view(height, width)
    grid = F.pad(grid, (0, pad_w, 0, pad_h), value=-1)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(0, 1))
    padded = (height + pad_h, width + pad_w)
    source = grid.view(padded[0] // size, size, padded[1] // size,
                       size).permute(0, 2, 1, 3).reshape(-1, size * size)
    valid = source >= 0
    window = torch.empty(height * width, dtype=torch.long, device=device)
    position = torch.empty_like(window)
    rows, cols = valid.nonzero(as_tuple=True)
    window[source[valid]] = rows
    position[source[valid]] = cols
    mask = msa.get_attn_mask(padded, size, shift, device) if shift else None
    return WindowLayout(source, window, position, mask)


def _cached_layout(block, hw: HW, device, scratch: Optional[dict]
                   ) -> WindowLayout:
    if scratch is None:
        return window_layout(block, hw, device)
    msa = block.attn
    key = ('swin_window', hw, msa.window_size, msa.shift_size,
           msa.pad_small_map, str(device))
    if key not in scratch:
        scratch[key] = window_layout(block, hw, device)
    return scratch[key]


class WindowPlan(NamedTuple):
    """The windows a sparse block attends in, over the batch: ``active``
    ``(A,)`` their indices (image-major, ascending), ``slot`` ``(B *
    windows,)`` where each of them sits among the active ones, and ``most``
    the kept tokens a window may hold (what sizes the packed queries)."""
    active: Tensor
    slot: Tensor
    most: int


def _active_windows(held: Tensor, counts: Optional[Tensor] = None):
    """The windows that hold kept tokens, from the kept tokens each window
    of the batch holds ``held``; how many they are and the most one holds,
    with ``counts`` as Python ints, read back in one copy (the learned
    decisions: the data sized them)."""
    active_so_far = (held > 0).cumsum(0)
    wanted = [active_so_far[-1:], held.max().reshape(1)]
    if counts is not None:
        wanted.append(counts)
    read = torch.cat(wanted).tolist()
    active = torch.searchsorted(
        active_so_far, torch.arange(read[0], device=held.device), right=True)
    return WindowPlan(active, active_so_far - 1, read[1]), read[2:]


def _bounded_windows(held: Tensor, batch: int, count: int,
                     window_tokens: int) -> WindowPlan:
    """Under a fixed budget (``count`` kept tokens per image), with nothing
    read back: per image the ``min(windows, count)`` windows holding the most
    kept tokens, which include every window that holds one (empty ones are
    computed and dropped), and ``most`` the bound ``min(window_tokens,
    count)``: a fixed forward makes no host sync, so it can be captured."""
    per_image = held.numel() // batch
    take = min(per_image, count)
    chosen = held.view(batch, per_image).topk(take, dim=1).indices
    offsets = torch.arange(batch, device=held.device)[:, None] * per_image
    active = (chosen.sort(dim=1).values + offsets).reshape(-1)
    slot = torch.full_like(held, -1)
    slot[active] = torch.arange(active.numel(), device=held.device)
    return WindowPlan(active, slot, min(window_tokens, count))


class RoutedSwinV2Block(SwinBlockV2):
    """mmpretrain's ``SwinBlockV2`` (post-norm) that a token may skip.

    A skipped token keeps its value: ``x + w * norm1(attn(x))`` and then
    ``x + w * norm2(ffn(x))`` with ``w`` 0 or 1. The gate reads the tokens
    through a LayerNorm without parameters (the block's own norms come after
    its branches). The extra norm of mmpretrain's huge and giant archs would
    change skipped tokens too, so it is not taken.
    """

    # the windows under a fixed budget bounded by the kept count, not read
    # back: True, False, or None (on CUDA only; see the module docstring)
    bounded_windows: Optional[bool] = None

    def __init__(self, *args, window_mode: str = 'packed', **kwargs):
        if kwargs.get('extra_norm'):
            raise ValueError('RoutedSwinV2Block does not take extra_norm '
                             '(a norm of every token, skipped ones too)')
        super().__init__(*args, **kwargs)
        self.window_mode = window_mode

    @property
    def window_mode(self) -> str:
        """The sparse windowed attention, ``'packed'`` or ``'whole'``."""
        return self._window_mode

    @window_mode.setter
    def window_mode(self, mode: str) -> None:
        if mode not in WINDOW_MODES:
            raise ValueError(f'window_mode must be one of {WINDOW_MODES}, got '
                             f'{mode!r}')
        self._window_mode = mode

    def gate_input(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:])

    # ------------------------------------------------------------- training
    def forward_masked(self, x: Tensor, hw: HW, normed: Tensor, keep: Tensor,
                       with_cp: bool = False) -> Tensor:
        if with_cp and x.requires_grad:
            return checkpoint(self._masked, x, hw, keep, use_reentrant=False)
        return self._masked(x, hw, keep)

    def _masked(self, x: Tensor, hw: HW, keep: Tensor) -> Tensor:
        x = x + self.norm1(self.attn(x, hw)) * keep
        return x + self.norm2(self.ffn(x)) * keep

    # ------------------------------------------------------------ inference
    def select(self, keep: Tensor, count: Optional[int], hw: HW,
               scratch: Optional[dict] = None) -> TokenSelection:
        """The tokens :meth:`forward_sparse` computes and the windows that
        hold them: one read-back (how many windows are active, the fullest,
        and each image's kept count unless ``count`` gives it), or with
        ``count`` known and the windows bounded, none."""
        layout = _cached_layout(self, hw, keep.device, scratch)
        batch = keep.shape[0]
        per_image = layout.source.shape[0]
        window = (torch.arange(batch, device=keep.device)[:, None] * per_image
                  + layout.window)  # (B, N) the window of every token
        held = keep.new_zeros(batch * per_image, dtype=torch.long)
        held.scatter_add_(0, window.reshape(-1), keep.reshape(-1).long())
        bounded = keep.is_cuda if self.bounded_windows is None \
            else self.bounded_windows
        if count is not None and bounded:
            plan = _bounded_windows(held, batch, count,
                                    layout.source.shape[1])
            return select_tokens(keep, count)._replace(plan=plan)
        plan, lengths = _active_windows(
            held, keep.sum(1) if count is None else None)
        return select_tokens(keep, count if count is not None else
                             lengths)._replace(plan=plan)

    def forward_sparse(self, x: Tensor, hw: HW, normed: Tensor,
                       sel: TokenSelection,
                       scratch: Optional[dict] = None) -> Tensor:
        if sel.flat_index.numel() == 0:
            return x
        layout = _cached_layout(self, hw, x.device, scratch)
        attend = (self._attend_whole if self.window_mode == 'whole' else
                  self._attend_packed)
        kept = gather_tokens(x, sel)
        kept = kept + self.norm1(self.attn.drop(attend(x, sel, layout)))
        kept = kept + self.norm2(self.ffn(kept))
        return scatter_tokens(x, kept, sel)

    def _windows(self, x: Tensor, sel: TokenSelection, layout: WindowLayout
                 ) -> Tuple[Tensor, Tensor, Tensor, Tensor, int]:
        """The active windows ``(A, size**2, C)`` of ``sel.plan`` (padding
        zero, as in mmpretrain), their index within their image (for the
        shift mask), each kept token's active window and position in it, and
        the most kept tokens a window holds."""
        batch, num, dims = x.shape
        per_image = layout.source.shape[0]
        token = sel.flat_index % num
        window = sel.batch_index * per_image + layout.window[token]
        plan = sel.plan
        if plan is None:  # a selection not made by :meth:`select`
            plan, _ = _active_windows(count_each(window, batch * per_image))
        active, most = plan.active, plan.most
        slot = plan.slot[window]
        source = layout.source[active % per_image]  # (A, size**2)
        image = torch.div(active, per_image, rounding_mode='floor')
        rows = (image[:, None] * num + source.clamp(min=0)).reshape(-1)
        windows = x.reshape(-1, dims).index_select(0, rows).view(
            *source.shape, dims)
        windows = windows * (source >= 0).unsqueeze(-1).to(x.dtype)
        return (windows, active % per_image, slot, layout.position[token],
                most)

    def _bias(self, mask: Optional[Tensor], windows: Tensor) -> Tensor:
        """Relative position bias ``(1 or A, heads, N, N)`` plus the shifted
        windows' mask for the active ``windows``."""
        msa = self.attn.w_msa
        n = msa.window_size[0] * msa.window_size[1]
        table = msa.cpb_mlp(msa.relative_coords_table).view(-1, msa.num_heads)
        bias = table[msa.relative_position_index.view(-1)].view(n, n, -1)
        bias = 16 * torch.sigmoid(bias.permute(2, 0, 1)).unsqueeze(0)
        if mask is not None:
            bias = bias + mask[windows].unsqueeze(1)
        return bias

    def _qkv(self, tokens: Tensor, part: slice) -> Tensor:
        """Rows ``part`` (q: :C, k: C:2C, v: 2C:) of Swin-v2's qkv projection
        (its bias: q_bias, none for k, v_bias)."""
        msa = self.attn.w_msa
        weight = msa.qkv.weight[part]
        bias = None
        if msa.q_bias is not None:
            bias = torch.cat((msa.q_bias, torch.zeros_like(msa.v_bias),
                              msa.v_bias))[part]
        return F.linear(tokens, weight, bias)

    def _scores(self, q: Tensor, k: Tensor) -> Tensor:
        """Scaled cosine attention logits of Swin-v2."""
        msa = self.attn.w_msa
        scale = torch.clamp(msa.logit_scale, max=np.log(1. / 0.01)).exp()
        return (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(
            -2, -1)) * scale

    def _heads(self, t: Tensor) -> Tensor:
        heads = self.attn.w_msa.num_heads
        return t.view(*t.shape[:-1], heads, -1).transpose(-3, -2)

    def _attend_whole(self, x: Tensor, sel: TokenSelection,
                      layout: WindowLayout) -> Tensor:
        windows, which, slot, position, _ = self._windows(x, sel, layout)
        q, k, v = map(self._heads,
                      self._qkv(windows, slice(None)).chunk(3, dim=-1))
        attn = self._scores(q, k) + self._bias(layout.mask, which)
        out = (attn.softmax(-1) @ v).transpose(1, 2).flatten(2)
        return self.attn.w_msa.proj(out[slot, position])

    def _attend_packed(self, x: Tensor, sel: TokenSelection,
                       layout: WindowLayout) -> Tensor:
        windows, which, slot, position, most = self._windows(x, sel, layout)
        dims = x.shape[-1]
        k, v = map(self._heads,
                   self._qkv(windows, slice(dims, None)).chunk(2, dim=-1))
        # the kept tokens of each active window together, padded to the
        # fullest: (A, M) slots
        order = torch.argsort(slot, stable=True)
        counts = count_each(slot, windows.shape[0])
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(slot)
        rank[order] = torch.arange(slot.numel(), device=slot.device) - \
            starts[slot[order]]
        q = x.new_zeros(windows.shape[0], most, dims)
        q[slot, rank] = self._qkv(gather_tokens(x, sel), slice(0, dims))
        rows = position.new_zeros(windows.shape[0], most)
        rows[slot, rank] = position
        bias = self._bias(layout.mask, which).expand(
            windows.shape[0], -1, -1, -1)
        bias = bias.gather(2, rows[:, None, :, None].expand(
            -1, bias.shape[1], -1, bias.shape[3]))
        attn = self._scores(self._heads(q), k) + bias
        out = (attn.softmax(-1) @ v).transpose(1, 2).flatten(2)
        return self.attn.w_msa.proj(out[slot, rank])

