"""The ops of an eval forward that would make a GPU wait for the host
(``dit_mm/analysis/host_sync.py``): the counter counts each kind, and each
backbone runs exactly as many as the design leaves (issue 19): at a fixed
budget none but the input's finiteness check (read after the forward on a
GPU), in the learned modes one read-back per decision the data made.
Swin's windowed blocks read how many windows hold kept tokens, once per
block, except at a fixed budget with the windows bounded by the kept count
(what a GPU does)."""
import pytest
import torch

from dit_mm.analysis.host_sync import HostSyncCounter
from dit_mm.models.common.checks import checked_images
from dit_mm.models.backbones import (DiT, DiTSwinV2, MixedScaleViT,
                                     TokenPassViT)
from dit_mm.models.dit.swin_blocks import RoutedSwinV2Block


def test_the_counter_counts_each_kind_of_host_sync():
    x = torch.tensor([0, 2, 0, 1])
    with HostSyncCounter() as syncs:
        x.nonzero()
        x.tolist()
        int(x.sum())
        bool(x.any())
        x.max().item()
        torch.repeat_interleave(torch.arange(4), x)
        x[x > 0]
        torch.equal(x, x)
        y = x + 1  # none of these waits for the device
        y.topk(2)
        y.repeat_interleave(2)
        y[torch.tensor([1, 2])] = 0
        y.masked_fill_(x > 0, 0)
        torch.bincount(x)
    assert syncs.counts == {
        'nonzero': 1, 'tolist': 1, '_local_scalar_dense': 3,
        'repeat_interleave': 1, 'index (bool mask)': 1, 'equal': 1,
        'bincount': 1}
    assert syncs.total == 9
    assert not syncs.places  # none of them ran in dit_mm


# host syncs of one eval forward of two images after a first one, besides
# the input check (random weights; the budget: fixed 0.5, static 1.0,
# learned None). 2026-11-30 they were 17/1/17, 49/1/49, 18/2/9, 7/2/7 (the
# check included).
# DiT's 0.2 and 0.3 drop whole blocks (under the blocks' whole-map parts).
SYNCS = {
    'DiT b0': {0.5: 0, 0.2: 0, 1.0: 0, None: 8},  # 8 gated blocks
    'DiTSwinV2 tiny': {0.5: 12, 1.0: 0, None: 12},  # 12 gated blocks
    'DiTSwinV2 tiny, bounded windows': {0.5: 0, 0.3: 0, 1.0: 0, None: 12},
    'TokenPassViT s': {0.5: 0, 1.0: 0, None: 3},  # 3 stop heads
    'MixedScaleViT s': {0.5: 0, 1.0: 0, None: 1},  # the scale gate
}


def build(name):
    torch.manual_seed(0)
    if name == 'DiT b0':
        return DiT(arch='b0'), 224
    if name.startswith('DiTSwinV2 tiny'):
        backbone = DiTSwinV2(arch='tiny')
        for block in backbone.modules():
            if isinstance(block, RoutedSwinV2Block):
                block.bounded_windows = name.endswith('bounded windows')
        return backbone, 256
    if name == 'TokenPassViT s':
        return TokenPassViT(arch='s', img_size=(224, 224)), 224
    return MixedScaleViT(arch='s', img_size=(224, 224),
                         scale_gate=dict(hidden_dims=(64, 64))), 224


@pytest.mark.parametrize('name', sorted(SYNCS))
def test_an_eval_forward_syncs_only_where_the_data_decides(name):
    backbone, size = build(name)
    backbone.eval()
    images = torch.randn(2, 3, size, size)
    for budget, expected in SYNCS[name].items():
        backbone.set_budget(budget)
        with torch.no_grad():
            backbone(images)  # fills the caches (allocation, window layouts)
            with HostSyncCounter() as syncs:
                backbone(images)
        check = {p: n for p, n in syncs.places.items() if 'checks.py' in p}
        assert sum(check.values()) == 1, (budget, syncs.places)
        assert syncs.total - 1 == expected, (budget, syncs.places)


def test_on_a_gpu_the_input_check_is_read_after_the_forward():
    """Deferred (as on CUDA), a NaN batch still raises the check's error,
    once the forward has run, and names it as the cause of what the forward
    itself raised."""
    bad = torch.full((1, 3, 8, 8), float('nan'))
    ran = []
    with pytest.raises(ValueError, match='NaN or infinite'):
        with checked_images(bad, 'DiT', 3, defer=True):
            ran.append(True)
    assert ran
    with pytest.raises(ValueError, match='NaN or infinite') as caught:
        with checked_images(bad, 'DiT', 3, defer=True):
            raise RuntimeError('a kernel tripped over the NaN')
    assert isinstance(caught.value.__context__, RuntimeError)
    with pytest.raises(ValueError, match='NaN or infinite'):  # the CPU way
        with checked_images(bad, 'DiT', 3):
            ran.append(False)
    assert ran == [True]
