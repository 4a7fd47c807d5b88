"""Gather / scatter of kept tokens (dit_mm.core.tokens) and the PVTv2 layers
built on them (dense vs packed forms, gates)."""
import pytest
import torch

from dit_mm.models.dit.pvt_blocks import (MixFFN, OverlapPatchEmbed,
                                          RoutedPVTBlock, SRAttention)
from dit_mm.core.deciders import straight_through_bernoulli
from dit_mm.models.common.gates import RoutingGate
from dit_mm.core.tokens import (add_to_tokens, gather_tokens, pad_tokens,
                                  scatter_tokens, select_tokens, unpad_tokens)


def _keep_batch3():
    """Three images of 6 tokens keeping 3, 0 and 6 of them."""
    return torch.tensor([[1, 0, 1, 0, 0, 1],
                         [0, 0, 0, 0, 0, 0],
                         [1, 1, 1, 1, 1, 1]], dtype=torch.bool)


def test_select_tokens_indices():
    sel = select_tokens(_keep_batch3())
    assert sel.flat_index.tolist() == [0, 2, 5, 12, 13, 14, 15, 16, 17]
    assert sel.batch_index.tolist() == [0, 0, 0, 2, 2, 2, 2, 2, 2]
    assert sel.slot.tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5]
    assert sel.counts.tolist() == [3, 0, 6]
    assert sel.max_count == 6 and isinstance(sel.max_count, int)
    assert sel.lengths == (3, 0, 6)


def test_select_tokens_with_known_lengths_reads_nothing_back():
    """Given the lengths (a fixed budget), the selection is the one read back
    from the mask, and no op waits for the device."""
    from dit_mm.analysis.host_sync import HostSyncCounter
    torch.manual_seed(0)
    keep = torch.rand(3, 50).argsort(1) < 17  # 17 per image, scattered
    with HostSyncCounter() as syncs:
        known = select_tokens(keep, 17)
    assert syncs.total == 0
    read = select_tokens(keep)
    for a, b in zip(known, read):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    reference = keep.reshape(-1).nonzero().squeeze(1)
    assert torch.equal(read.flat_index, reference)
    assert select_tokens(keep, [17, 17, 17]).lengths == (17,) * 3


def test_select_tokens_nothing_kept():
    sel = select_tokens(torch.zeros(2, 5, dtype=torch.bool))
    assert sel.flat_index.numel() == 0
    assert sel.counts.tolist() == [0, 0]
    assert sel.max_count == 0


@pytest.mark.parametrize('bad', [
    torch.ones(2, 5, dtype=torch.uint8),
    torch.ones(2, 5),
    torch.ones(2, 5, dtype=torch.long),
    torch.ones(10, dtype=torch.bool),
    torch.ones(1, 2, 5, dtype=torch.bool),
])
def test_select_tokens_rejects_non_bool_or_wrong_rank(bad):
    with pytest.raises(ValueError, match='bool mask'):
        select_tokens(bad)


def test_gather_scatter_round_trip_batch3():
    keep = _keep_batch3()
    sel = select_tokens(keep)
    x = torch.randn(3, 6, 4)
    packed = gather_tokens(x, sel)
    assert packed.shape == (9, 4)
    torch.testing.assert_close(packed, x[keep], rtol=0, atol=0)
    # scatter back new values: kept positions replaced, the rest untouched
    values = torch.randn(9, 4)
    out = scatter_tokens(x, values, sel)
    expected = x.clone()
    expected[keep] = values
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert not torch.equal(out, x)  # x itself is left unchanged
    torch.testing.assert_close(scatter_tokens(x, packed, sel), x, rtol=0,
                               atol=0)


def test_gather_scatter_round_trip_batch1():
    keep = torch.tensor([[0, 1, 1, 0, 1]], dtype=torch.bool)
    sel = select_tokens(keep)
    x = torch.randn(1, 5, 3)
    packed = gather_tokens(x, sel)
    torch.testing.assert_close(packed, x[0, [1, 2, 4]], rtol=0, atol=0)
    out = scatter_tokens(torch.zeros_like(x), packed * 2, sel)
    torch.testing.assert_close(out[0, [1, 2, 4]], x[0, [1, 2, 4]] * 2)
    assert out[0, [0, 3]].abs().sum() == 0


def test_scatter_tokens_is_differentiable():
    keep = _keep_batch3()
    sel = select_tokens(keep)
    x = torch.randn(3, 6, 4, requires_grad=True)
    values = torch.randn(9, 4, requires_grad=True)
    scatter_tokens(x, values, sel).sum().backward()
    # replaced positions get no gradient from x, kept ones from values
    assert torch.equal(x.grad[keep], torch.zeros(9, 4))
    assert torch.equal(x.grad[~keep], torch.ones(int((~keep).sum()), 4))
    assert torch.equal(values.grad, torch.ones(9, 4))


def test_pad_unpad_batch3_with_an_empty_image():
    keep = _keep_batch3()
    sel = select_tokens(keep)
    values = torch.arange(9 * 2, dtype=torch.float32).view(9, 2) + 1
    padded = pad_tokens(values, sel)
    assert padded.shape == (3, 6, 2)
    torch.testing.assert_close(padded[0, :3], values[:3], rtol=0, atol=0)
    assert padded[0, 3:].abs().sum() == 0  # padding is zero
    assert padded[1].abs().sum() == 0  # the image with no kept token
    torch.testing.assert_close(padded[2], values[3:], rtol=0, atol=0)
    torch.testing.assert_close(unpad_tokens(padded, sel), values, rtol=0,
                               atol=0)


def test_pad_unpad_batch1_shortcut():
    keep = torch.tensor([[1, 0, 1, 1]], dtype=torch.bool)
    sel = select_tokens(keep)
    values = torch.randn(3, 5)
    padded = pad_tokens(values, sel)
    assert padded.shape == (1, 3, 5)
    torch.testing.assert_close(padded[0], values, rtol=0, atol=0)
    torch.testing.assert_close(unpad_tokens(padded, sel), values, rtol=0,
                               atol=0)


def test_add_to_tokens_in_place_only_under_no_grad():
    keep = _keep_batch3()
    sel = select_tokens(keep)
    values = torch.randn(9, 4)
    x = torch.randn(3, 6, 4)
    expected = x.clone()
    expected[keep] += values

    original = x.clone()
    out = add_to_tokens(x, values, sel)  # grad mode: out of place
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x, original, rtol=0, atol=0)
    assert out.data_ptr() != x.data_ptr()

    with torch.no_grad():
        out = add_to_tokens(x, values, sel)  # in place
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x, expected)
    assert out.data_ptr() == x.data_ptr()


def test_add_to_tokens_gradients():
    keep = _keep_batch3()
    sel = select_tokens(keep)
    x = torch.randn(3, 6, 4, requires_grad=True)
    values = torch.randn(9, 4, requires_grad=True)
    (add_to_tokens(x * 1, values, sel) * 3).sum().backward()
    assert torch.equal(x.grad, torch.full((3, 6, 4), 3.))
    assert torch.equal(values.grad, torch.full((9, 4), 3.))


# ------------------------------------------------------------------ layers
def test_straight_through_bernoulli_hard_values_soft_gradient():
    torch.manual_seed(0)
    logits = torch.zeros(4000, requires_grad=True)
    sample = straight_through_bernoulli(logits)
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    assert 0.45 < sample.detach().mean().item() < 0.55  # sigmoid(0) = 0.5
    sample.sum().backward()
    assert (logits.grad > 0).all()  # d soft / d logit of a sigmoid
    # a far-away logit is deterministic despite the noise
    assert torch.equal(straight_through_bernoulli(torch.full((100,), 50.)),
                       torch.ones(100))
    assert torch.equal(straight_through_bernoulli(torch.full((100,), -50.)),
                       torch.zeros(100))


def test_routing_gate_init():
    gate = RoutingGate(8, init_logit=2.5)
    assert torch.equal(gate.fc.weight, torch.zeros(2, 8))
    assert torch.equal(gate.fc.bias, torch.full((2, ), 2.5))
    logits = gate(torch.randn(3, 7, 8))
    assert logits.shape == (3, 7, 2)
    assert torch.equal(logits, torch.full((3, 7, 2), 2.5))
    with torch.no_grad():
        gate.fc.weight.normal_()
    gate.reset_parameters()
    assert torch.equal(gate.fc.weight, torch.zeros(2, 8))


def test_overlap_patch_embed_ceil_sizes():
    embed = OverlapPatchEmbed(3, 16, 7, 4)
    tokens, hw = embed(torch.randn(2, 3, 203, 301))
    assert hw == (51, 76)
    assert tokens.shape == (2, 51 * 76, 16)


def test_sr_attention_divisibility_and_small_maps():
    with pytest.raises(ValueError, match='not divisible'):
        SRAttention(10, 3, 1)
    attn = SRAttention(16, 2, sr_ratio=8)
    x = torch.randn(2, 3 * 5, 16)  # a 3x5 map, smaller than the 8x8 window
    assert attn.reduced_tokens(x, (3, 5)).shape == (2, 1, 16)
    assert attn.forward_dense(x, (3, 5)).shape == (2, 15, 16)


def _random_block(seed=0, sr_ratio=2):
    torch.manual_seed(seed)
    block = RoutedPVTBlock(16, 2, sr_ratio, 4).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return block


@pytest.mark.parametrize('sr_ratio', [1, 2])
def test_block_sparse_equals_masked_equals_dense(sr_ratio):
    block = _random_block(sr_ratio=sr_ratio)
    hw = (5, 7)
    x = torch.randn(3, 35, 16)
    keep = torch.rand(3, 35) > 0.5
    keep[1] = False  # an image with nothing kept
    keep[2] = True  # an image with everything kept
    sel = select_tokens(keep)
    with torch.no_grad():
        normed = block.norm1(x)
        dense = block(x, hw)
        masked = block.forward_masked(x, hw, normed,
                                      keep.unsqueeze(-1).float())
        sparse = block.forward_sparse(x.clone(), hw, normed, sel, {})
        all_kept = block.forward_sparse(
            x.clone(), hw, normed, select_tokens(torch.ones_like(keep)))
    torch.testing.assert_close(sparse, masked, atol=1e-5, rtol=1e-5)
    # skipped tokens are the identity, the fully-kept image is PVTv2
    torch.testing.assert_close(masked[~keep], x[~keep], rtol=0, atol=0)
    torch.testing.assert_close(masked[2], dense[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(all_kept, dense, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(masked[0], dense[0], atol=1e-3)


def test_block_sparse_with_grad_matches_no_grad_and_keeps_input():
    block = _random_block()
    hw = (4, 4)
    x = torch.randn(2, 16, 16)
    keep = torch.rand(2, 16) > 0.3
    sel = select_tokens(keep)
    x_before = x.clone()
    out = block.forward_sparse(x, hw, block.norm1(x), sel)
    torch.testing.assert_close(x, x_before, rtol=0, atol=0)  # out of place
    with torch.no_grad():
        ref = block.forward_sparse(x.clone(), hw, block.norm1(x), sel, {})
    torch.testing.assert_close(out.detach(), ref, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert block.attn.q.weight.grad.abs().sum() > 0


def test_mix_ffn_packed_scratch_reuse():
    torch.manual_seed(0)
    ffn = MixFFN(8, 16).eval()
    hw = (3, 4)
    x = torch.randn(2, 12, 8)
    scratch = {}
    for _ in range(2):  # the second call reuses (and re-zeroes) the grid
        keep = torch.rand(2, 12) > 0.5
        sel = select_tokens(keep)
        with torch.no_grad():
            packed = ffn.forward_packed(gather_tokens(x, sel), hw, sel, 2,
                                        scratch)
            dense = ffn.forward_dense(x, hw, keep.unsqueeze(-1).float())
        torch.testing.assert_close(packed, dense[keep], atol=1e-5, rtol=1e-5)
    assert 'mlp_grid' in scratch


@pytest.mark.parametrize('same_keys', [True, False])
def test_the_packed_attention_forms_are_one_function(same_keys):
    """Unequal counts per image: the per-image loop is one SDPA per image,
    and one call on nested tensors equals it (self-attention: on a CPU
    torch's nested SDPA takes equal query and key lengths only); equal
    counts, the batched call too. ``varlen`` is the GPU's one call: it needs
    CUDA and half precision, and is checked there by the GPU kit."""
    from dit_mm.core.tokens import attend_packed
    torch.manual_seed(0)
    q_lengths = [5, 9, 1]
    k_lengths = q_lengths if same_keys else [7, 7, 7]
    q = torch.randn(sum(q_lengths), 2, 8)
    k, v = torch.randn(2, sum(k_lengths), 2, 8)
    loop = attend_packed(q, k, v, q_lengths, k_lengths, 'loop')
    if same_keys:
        nested = attend_packed(q, k, v, q_lengths, k_lengths, 'nested')
        torch.testing.assert_close(nested, loop, atol=1e-5, rtol=1e-5)
    alone = torch.nn.functional.scaled_dot_product_attention(
        q[5:14].transpose(0, 1), k[sum(k_lengths[:1]):sum(k_lengths[:2])]
        .transpose(0, 1), v[sum(k_lengths[:1]):sum(k_lengths[:2])]
        .transpose(0, 1)).transpose(0, 1)
    torch.testing.assert_close(loop[5:14], alone, atol=1e-6, rtol=1e-6)
    assert torch.equal(attend_packed(q, k, v, q_lengths, k_lengths), loop)
    q, k, v = torch.randn(3, 12, 2, 8)  # 3 images, 4 tokens each
    torch.testing.assert_close(
        attend_packed(q, k, v, [4] * 3, [4] * 3, 'batched'),
        attend_packed(q, k, v, [4] * 3, [4] * 3, 'loop'), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match='method must be'):
        attend_packed(q, k, v, [4] * 3, [4] * 3, 'flash')


def test_pvt_packed_queries_attend_as_the_padded_ones():
    """SRAttention's packed form (the shape the GPU's varlen call takes)
    equals its padded one, unequal counts per image."""
    torch.manual_seed(0)
    attn = SRAttention(32, 2, sr_ratio=2).eval()
    x, hw = torch.randn(3, 64, 32), (8, 8)
    keep = torch.rand(3, 64) < torch.tensor([[0.2], [0.6], [0.9]])
    sel = select_tokens(keep)
    with torch.no_grad():
        padded = attn.forward_packed(x, hw, sel, 'padded')
        packed = attn.forward_packed(x, hw, sel, 'loop')
        assert torch.equal(attn.forward_packed(x, hw, sel), padded)  # CPU
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
