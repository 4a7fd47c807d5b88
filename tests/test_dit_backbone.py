"""The DiT backbone: building in every scope, shapes, FLOPs and parameters of
the PVTv2 route, fixed budgets, learned routing (sparse vs masked dense),
early stopping, freezing, checkpointing and input errors."""
import math

import pytest
import torch
from mmengine.registry import DefaultScope

import dit_mm  # noqa: F401  (registers DiT)
from dit_mm.core.pvt_cost import pvt_stage_costs, route_flops
from dit_mm.models import RoutedFeatures, RoutingInfo
from dit_mm.models.backbones import ARCHS, DiT, resolve_arch
from dit_mm.models.common.gates import randomize_gates
from dit_mm.registry import LIBRARIES, library_registries


# PVTv2 paper (Table 2 of arXiv:2106.13797): GFLOPs at 224x224 and parameters
# (M) of the ImageNet models, i.e. with a 1000-class linear head. The b0 row of
# the paper says 3.4M, which is the backbone alone; the official release
# (github.com/whai362/PVT, classification README) lists 3.7M with the head,
# consistent with the other rows, so 3.7 is used here.
PAPER_GFLOPS = dict(b0=0.6, b1=2.1, b2=4.0, b3=6.9, b4=10.1, b5=11.8)
PAPER_PARAMS_M = dict(b0=3.7, b1=14.0, b2=25.4, b3=45.2, b4=62.6, b5=82.0)


def _dit(arch='b0', **kwargs):
    kwargs.setdefault('drop_path_rate', 0.)
    model = DiT(arch, **kwargs)
    model.init_weights()
    return model


def _open_gates(model, logit=50.):
    """Gates that always keep every token, Gumbel noise or not."""
    with torch.no_grad():
        for stage in model.stages:
            for gate in stage.gates:
                gate.fc.weight.zero_()
                gate.fc.bias.fill_(logit)


def _masks(routing):
    return [m for stage in routing.keep_masks for m in stage]


def _assert_same_masks(a, b):
    masks_a, masks_b = _masks(a), _masks(b)
    assert len(masks_a) == len(masks_b)
    for x, y in zip(masks_a, masks_b):
        assert torch.equal(x, y)


def _expected_hw(size):
    h, w = size
    out = []
    for _ in range(4):
        h, w = math.ceil(h / 2 if out else h / 4), math.ceil(
            w / 2 if out else w / 4)
        out.append((h, w))
    return out


# ------------------------------------------------------------------ building
@pytest.mark.parametrize('scope', LIBRARIES)
@pytest.mark.parametrize('arch', list(ARCHS))
def test_every_arch_builds_in_every_scope(arch, scope):
    registry = dict(zip(LIBRARIES, library_registries('MODELS')))[scope]
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(type='DiT', arch=arch))
    assert type(model) is DiT
    setting = ARCHS[arch]
    assert model.out_channels == setting['embed_dims']
    assert [len(s.blocks) for s in model.stages] == setting['depths']
    assert [len(s.gates) for s in model.stages] == setting['depths']
    for stage, dims, heads, sr in zip(model.stages, setting['embed_dims'],
                                      setting['num_heads'],
                                      setting['sr_ratios']):
        assert stage.patch_embed.proj.out_channels == dims
        attn = stage.blocks[0].attn
        assert attn.num_heads == heads and attn.sr_ratio == sr
        assert hasattr(attn, 'sr') == (sr > 1)


def test_arch_table_matches_pvtv2():
    assert ARCHS['b0']['embed_dims'] == [32, 64, 160, 256]
    for arch in ('b1', 'b2', 'b3', 'b4', 'b5'):
        assert ARCHS[arch]['embed_dims'] == [64, 128, 320, 512]
    assert [ARCHS[a]['depths'] for a in ARCHS] == [
        [2, 2, 2, 2], [2, 2, 2, 2], [3, 4, 6, 3], [3, 4, 18, 3],
        [3, 8, 27, 3], [3, 6, 40, 3]]
    assert ARCHS['b5']['mlp_ratios'] == [4, 4, 4, 4]
    assert ARCHS['b2']['mlp_ratios'] == [8, 8, 4, 4]
    # resolve_arch hands out copies: editing one does not edit the table
    setting = resolve_arch('B0')
    setting['depths'][0] = 99
    assert ARCHS['b0']['depths'][0] == 2


@pytest.mark.parametrize('arch', ['b0', 'b2'])
@pytest.mark.parametrize('size', [(224, 224), (203, 301)])
def test_forward_shapes_on_pvtv2_route(arch, size):
    torch.manual_seed(0)
    model = _dit(arch).eval()
    model.set_budget(1.0)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert isinstance(outs, tuple) and isinstance(outs, RoutedFeatures)
    assert len(outs) == 4
    hws = _expected_hw(size)
    if size == (203, 301):
        assert hws == [(51, 76), (26, 38), (13, 19), (7, 10)]
    for out, dims, hw in zip(outs, ARCHS[arch]['embed_dims'], hws):
        assert out.shape == (1, dims, *hw)
        assert torch.isfinite(out).all()
    routing = outs.stats
    assert isinstance(routing, RoutingInfo)
    assert routing.route_flops == route_flops(resolve_arch(arch), size)
    assert routing.flops_fraction.tolist() == [1.0]  # exactly the route
    assert routing.expected_fraction is None
    for stage_masks, depth, hw in zip(routing.keep_masks,
                                      ARCHS[arch]['depths'], hws):
        assert len(stage_masks) == depth
        for mask in stage_masks:
            assert mask.dtype == torch.bool and mask.shape == (1, *hw)
            assert mask.all()
    for density, hw in zip(routing.density, hws):
        assert density.shape == (1, *hw)
        assert torch.equal(density, torch.ones_like(density))


def test_forward_shapes_learned_routing_batch2_and_out_indices():
    torch.manual_seed(0)
    model = _dit('b0', out_indices=(1, 3)).eval()
    assert model.out_channels == [64, 256]
    randomize_gates(model)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 203, 301))
    assert [o.shape for o in outs] == [(2, 64, 26, 38), (2, 256, 7, 10)]
    assert [m.shape for m in outs.stats.keep_masks[0]] == [(2, 51, 76)] * 2
    assert outs.stats.flops.shape == (2, )


@pytest.mark.parametrize('arch', ['b1', 'b3', 'b4', 'b5'])
def test_other_archs_forward_224_on_pvtv2_route(arch):
    model = DiT(arch, drop_path_rate=0.).eval()
    model.set_budget(1.0)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 56, 56),
                                              (1, 128, 28, 28),
                                              (1, 320, 14, 14),
                                              (1, 512, 7, 7)]
    assert [len(m) for m in outs.stats.keep_masks] == \
        ARCHS[arch]['depths']
    assert outs.stats.route_flops == route_flops(
        resolve_arch(arch), (224, 224))
    assert outs.stats.flops_fraction.tolist() == [1.0]


@pytest.mark.parametrize('size', [(1, 1), (5, 7), (16, 20), (32, 32),
                                  (33, 47)])
def test_tiny_images_run(size):
    """Images of any size run in every mode, down to one pixel: the padded
    patch embeddings give every grid a cell (a 32-px minimum was needless:
    mmdet's PVTv2 runs 31x31, see tests/test_stock_peers.py)."""
    torch.manual_seed(0)
    model = _dit('b0')
    hws = _expected_hw(size)
    x = torch.randn(2, 3, *size)
    for budget, train in ((1.0, False), (None, False), (0.5, False),
                          (None, True)):
        model.set_budget(budget)
        model.train(train)
        with torch.set_grad_enabled(train):
            outs = model(x)
        for out, dims, hw in zip(outs, [32, 64, 160, 256], hws):
            assert out.shape == (2, dims, *hw)
            assert torch.isfinite(out).all()


# --------------------------------------------------------- FLOPs and params
@pytest.mark.parametrize('arch', list(ARCHS))
def test_route_flops_match_pvtv2_paper(arch):
    gflops = route_flops(resolve_arch(arch), (224, 224)) / 1e9
    paper = PAPER_GFLOPS[arch]
    if arch == 'b0':
        # 0.566 G; the paper gives one decimal, so 3% is finer than its figure
        assert round(gflops, 1) == paper
    else:
        assert abs(gflops - paper) / paper < 0.03, gflops
    costs = pvt_stage_costs(resolve_arch(arch), (224, 224))
    assert [c.hw for c in costs] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert sum(c.route for c in costs) == route_flops(
        resolve_arch(arch), (224, 224))


def test_route_flops_grow_with_image_size():
    arch = resolve_arch('b0')
    small = route_flops(arch, (224, 224))
    big = route_flops(arch, (448, 448))
    # linear layers scale with tokens (4x), attention with tokens^2 (16x)
    assert 4 * small < big < 16 * small


@pytest.mark.parametrize('arch', list(ARCHS))
def test_params_match_mmdet_pvtv2_and_paper(arch):
    from mmdet.registry import MODELS
    setting = ARCHS[arch]
    model = DiT(arch)
    gates = sum(p.numel() for n, p in model.named_parameters()
                if '.gates.' in n)
    total = sum(p.numel() for p in model.parameters())
    assert gates == sum(d * (2 * c + 2) for d, c in zip(
        setting['depths'], setting['embed_dims']))
    with DefaultScope.overwrite_default_scope('mmdet'):
        pvt = MODELS.build(
            dict(
                type='PyramidVisionTransformerV2',
                embed_dims=setting['embed_dims'][0],
                num_layers=setting['depths'],
                mlp_ratios=setting['mlp_ratios']))
    assert total - gates == sum(p.numel() for p in pvt.parameters())
    width = setting['embed_dims'][-1]
    with_head = (total - gates + width * 1000 + 1000) / 1e6
    assert abs(with_head - PAPER_PARAMS_M[arch]) / PAPER_PARAMS_M[arch] < 0.01
    if arch == 'b0':
        assert round((total - gates) / 1e6, 1) == 3.4  # the paper's b0 row


# ------------------------------------------------------------------ budgets
def test_set_budget_meets_the_flops_fraction():
    torch.manual_seed(0)
    model = _dit('b0').eval()
    randomize_gates(model)
    x = torch.randn(1, 3, 512, 512)
    fractions = []
    for budget in (0.3, 0.5, 0.8):
        model.set_budget(budget)
        assert model.budget == budget
        with torch.no_grad():
            stats = model(x).stats
        fraction = stats.flops_fraction.item()
        assert abs(fraction - budget) < 0.02, (budget, fraction)
        fractions.append(fraction)
        kept = torch.stack([m.float().mean() for m in _masks(stats)])
        assert (kept < 1).all() and (kept > 0).all()
    assert fractions == sorted(fractions)


def test_set_budget_none_returns_to_learned_and_tiny_budget_is_refused():
    torch.manual_seed(0)
    model = _dit('b0').eval()
    x = torch.randn(1, 3, 64, 64)
    floor = model.minimum_budget((64, 64))
    assert 0.01 < floor < 1
    model.set_budget(0.01)  # below what no token can skip (it was clamped)
    with pytest.raises(ValueError, match=rf'budget 0.01 is below what DiT '
                       rf'must spend at this input size \({floor:.3f} of'):
        with torch.no_grad():
            model(x)
    model.set_budget(floor)  # the minimum itself: no token is kept
    with torch.no_grad():
        stats = model(x).stats
    assert not any(m.any() for m in _masks(stats))
    assert stats.flops_fraction.item() == pytest.approx(floor)
    model.set_budget(None)
    assert model.budget is None
    with torch.no_grad():
        stats = model(x).stats
    # new gates keep every token (logit 3); the gates' own cost is extra
    assert all(m.all() for m in _masks(stats))
    assert 1 < stats.flops_fraction.item() < 1.01


def test_fixed_budget_keeps_the_most_certain_tokens():
    torch.manual_seed(0)
    model = _dit('b0').eval()
    randomize_gates(model)
    model.set_budget(0.5)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        stats = model(x).stats
        stage = model.stages[0]
        tokens, _ = stage.patch_embed(x)
        logits = stage.gates[0](stage.blocks[0].norm1(tokens))
    score = logits.min(-1).values  # how sure "stay" and "transform" are
    keep = stats.keep_masks[0][0].flatten(1)
    counts = keep.sum(1).tolist()
    assert counts[0] == counts[1] and 0 < counts[0] < keep.shape[1]
    for img in range(2):
        assert score[img][keep[img]].min() >= score[img][~keep[img]].max()


@pytest.mark.parametrize('bad', [0, 1.5, -1, float('nan'), 'x'])
def test_invalid_budgets_raise(bad):
    model = DiT('b0')
    model.set_budget(0.5)
    with pytest.raises(ValueError):
        model.set_budget(bad)
    assert model.budget == 0.5
    with pytest.raises(ValueError):
        DiT('b0', budget=bad)


# ---------------------------------------------------- sparse vs masked dense
def assert_sparse_equals_masked(model, x):
    """The sparse inference form of ``model`` on ``x`` gives the masked dense
    form's routing, FLOPs and outputs; returns the routing."""
    results = {}
    for sparse in (True, False):
        model.sparse_inference = sparse
        with torch.no_grad():
            out = model(x)
            results[sparse] = (out, out.stats)
    (sparse_out, sparse_r), (dense_out, dense_r) = results[True], results[
        False]
    _assert_same_masks(sparse_r, dense_r)
    for a, b in zip(sparse_out, dense_out):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sparse_r.flops, dense_r.flops)
    return sparse_r


@pytest.mark.parametrize('budget', [None, 0.5])
@pytest.mark.parametrize('batch', [2, 1])
def test_sparse_inference_equals_masked_dense(budget, batch):
    torch.manual_seed(0)
    model = _dit('b0').eval()
    randomize_gates(model)
    model.set_budget(budget)
    sparse_r = assert_sparse_equals_masked(model,
                                           torch.randn(batch, 3, 75, 99))
    # the decisions do vary per token, so the comparison means something
    kept = torch.cat([m.flatten() for m in _masks(sparse_r)])
    assert kept.any() and not kept.all()
    assert (sparse_r.flops_fraction < 0.95).all()
    if batch == 2:  # and the two images are routed differently
        assert not torch.equal(sparse_r.keep_masks[0][0][0],
                               sparse_r.keep_masks[0][0][1])


def test_training_with_open_gates_is_pvtv2():
    torch.manual_seed(0)
    model = _dit('b0')
    x = torch.randn(2, 3, 67, 45)
    model.eval()
    model.set_budget(1.0)
    with torch.no_grad():
        reference = model(x)
    # route in train mode
    model.train()
    with torch.no_grad():
        route_train = model(x)
    # learned routing, train mode: masked dense compute, every gate open
    _open_gates(model)
    model.set_budget(None)
    learned = model(x)
    assert all(m.all() for m in _masks(learned.stats))
    expected = learned.stats.expected_fraction
    assert expected is not None and expected.requires_grad
    torch.testing.assert_close(expected.detach().double(),
                               learned.stats.flops_fraction, rtol=1e-4,
                               atol=1e-4)
    for ref, a, b in zip(reference, route_train, learned):
        torch.testing.assert_close(a, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.detach(), ref, atol=1e-4, rtol=1e-4)


def test_task_loss_gradient_reaches_both_gate_decisions():
    """Straight-through: the task loss trains the stay and transform logits."""
    torch.manual_seed(0)
    model = _dit('b0')
    randomize_gates(model, bias=2.0)
    model.train()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in outs).backward()
    for i, stage in enumerate(model.stages):
        for j, gate in enumerate(stage.gates):
            stay, transform = gate.fc.weight.grad.abs().sum(1)
            assert stay > 0 and transform > 0, (i, j)


@pytest.mark.parametrize('budget', [0.5, 0.2])
def test_fixed_budget_train_masked_equals_eval_sparse(budget):
    """Also under the blocks' whole-map parts (0.2 here), where the budget
    drops whole blocks: in eval they run nothing, in training they take part
    at weight 0, every parameter in the graph (as DDP wants)."""
    torch.manual_seed(0)
    model = _dit('b0')
    randomize_gates(model)
    model.set_budget(budget)
    x = torch.randn(2, 3, 75, 99)
    model.train()
    train_out = model(x)
    train_r = train_out.stats
    assert train_r.expected_fraction is None  # budget loss is for learning
    model.eval()
    with torch.no_grad():
        eval_out = model(x)
    _assert_same_masks(train_r, eval_out.stats)
    for a, b in zip(train_out, eval_out):
        torch.testing.assert_close(a.detach(), b, atol=1e-4, rtol=1e-4)
    # the gates get a gradient through the straight-through top-k weight
    sum(o.mean() for o in train_out).backward()
    assert model.stages[0].gates[0].fc.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())
    dropped = [not m.any() for m in _masks(eval_out.stats)]
    assert any(dropped) == (budget < 0.3) and not all(dropped)
    assert eval_out.stats.flops_fraction.tolist() == pytest.approx(
        [budget] * 2, abs=0.01)


# ----------------------------------------------------------- early stopping
def test_early_stopping_stops_after_the_first_computed_block():
    torch.manual_seed(0)
    model = _dit('b0').eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = model(x).stats.flops_fraction.item()
    model.stop_threshold = 10.0
    with torch.no_grad():
        stopped = model(x).stats
    for stage in stopped.keep_masks:
        assert stage[0].all() and not stage[1].any()
    for density in stopped.density:
        assert torch.equal(density, torch.full_like(density, 0.5))
    assert stopped.flops_fraction.item() < full - 0.2
    # a fixed budget ignores the threshold
    model.set_budget(0.5)
    with torch.no_grad():
        with_threshold = model(x).stats.flops_fraction.item()
    model.stop_threshold = 0.
    with torch.no_grad():
        assert with_threshold == model(x).stats.flops_fraction.item()


def test_early_stopping_sparse_equals_dense():
    torch.manual_seed(0)
    model = _dit('b0').eval()
    randomize_gates(model)
    x = torch.randn(2, 3, 75, 99)
    with torch.no_grad():
        no_stop = model(x).stats.flops
    model.stop_threshold = 0.05
    results = {}
    for sparse in (True, False):
        model.sparse_inference = sparse
        with torch.no_grad():
            out = model(x)
            results[sparse] = (out, out.stats)
    _assert_same_masks(results[True][1], results[False][1])
    for a, b in zip(results[True][0], results[False][0]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert (results[True][1].flops < no_stop).all()


# ------------------------------------------------- freezing, checkpointing
def test_frozen_stages():
    model = DiT('b0', frozen_stages=1)
    model.train()
    for i, stage in enumerate(model.stages):
        frozen = i <= 1
        assert all(p.requires_grad != frozen for p in stage.parameters())
        assert all(m.training != frozen for m in stage.modules())
    model.eval()
    model.train()
    assert not model.stages[1].training and model.stages[2].training
    # a frozen stage still runs and gets no gradient
    torch.manual_seed(0)
    outs = model(torch.randn(1, 3, 64, 64))
    sum(o.mean() for o in outs).backward()
    assert model.stages[0].patch_embed.proj.weight.grad is None
    assert model.stages[2].patch_embed.proj.weight.grad is not None
    none_frozen = DiT('b0', frozen_stages=-1)
    assert all(p.requires_grad for p in none_frozen.parameters())


def _grads(model, x, seed):
    model.zero_grad()
    torch.manual_seed(seed)  # Gumbel noise and drop path draw from torch RNG
    outs = model(x)
    loss = sum(o.square().mean() for o in outs)
    aux = model.aux_losses(outs.stats)
    if aux:
        loss = loss + aux['loss_budget']
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()
            if p.grad is not None}


@pytest.mark.parametrize('budget', [None, 1.0])
def test_with_cp_gives_the_same_gradients(budget):
    torch.manual_seed(0)
    kwargs = dict(drop_path_rate=0.1, budget=budget,
                  budget_loss=dict(target=0.5, weight=1.0))
    plain = _dit('b0', **kwargs)
    randomize_gates(plain, bias=1.0)
    ckpt = _dit('b0', with_cp=True, **kwargs)
    ckpt.load_state_dict(plain.state_dict())
    plain.train()
    ckpt.train()
    x = torch.randn(2, 3, 64, 64)
    grads_plain = _grads(plain, x, seed=3)
    grads_ckpt = _grads(ckpt, x, seed=3)
    assert grads_plain.keys() == grads_ckpt.keys()
    assert 'stages.0.blocks.0.attn.q.weight' in grads_plain
    if budget is None:
        assert 'stages.3.gates.1.fc.weight' in grads_plain
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[name], grad, atol=1e-6,
                                   rtol=1e-5, msg=name)
    # and a different seed gives different Gumbel samples / drop paths
    grads_other = _grads(plain, x, seed=4)
    assert any(not torch.allclose(grads_other[n], g)
               for n, g in grads_plain.items())


# ------------------------------------------------------------------- errors
def test_unknown_arch_name():
    with pytest.raises(KeyError, match=r"'b9'.*b0.*b5"):
        DiT('b9')


_CUSTOM = dict(
    embed_dims=[8, 16, 24, 32],
    depths=[1, 1, 2, 1],
    num_heads=[1, 2, 3, 4],
    sr_ratios=[8, 4, 2, 1],
    mlp_ratios=[2, 2, 2, 2])


def test_custom_arch_dict():
    model = _dit(dict(_CUSTOM)).eval()
    assert model.out_channels == [8, 16, 24, 32]
    assert model.arch['patch_sizes'] == [7, 3, 3, 3]
    assert model.arch['strides'] == [4, 2, 2, 2]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 40, 40))
    assert [o.shape[1] for o in outs] == [8, 16, 24, 32]
    assert [len(m) for m in outs.stats.keep_masks] == [1, 1, 2, 1]


@pytest.mark.parametrize('change, error, message', [
    (dict(depths=None), KeyError, 'lacks'),
    (dict(mlp_ratios=None, num_heads=None), KeyError, 'lacks'),
    (dict(foo=[1, 2, 3, 4]), KeyError, 'Unknown DiT arch keys'),
    (dict(depths=[1, 1, 1]), ValueError, '4 stages'),
    (dict(strides=[4, 2, 2, 2, 2]), ValueError, '4 stages'),
    (dict(num_heads=[1, 3, 3, 4]), ValueError, 'divisible'),
])
def test_bad_arch_dicts(change, error, message):
    arch = dict(_CUSTOM)
    for key, value in change.items():
        if value is None:
            arch.pop(key)
        else:
            arch[key] = value
    with pytest.raises(error, match=message):
        DiT(arch)


def test_bad_arch_type_and_out_indices():
    with pytest.raises(TypeError, match='name or a dict'):
        DiT(2)
    for bad in ((), (0, 4), (-5, )):  # mmdet asserts: the same type
        with pytest.raises(AssertionError, match='out_indices'):
            DiT('b0', out_indices=bad)
    assert DiT('b0', out_indices=(-1, )).out_indices == (3, )  # as mmpretrain


def test_bad_inputs_have_clear_errors():
    model = DiT('b0').eval()
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\).*\(1, 1, 64, 64\)'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match='got shape'):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match='empty batch'):
        model(torch.randn(0, 3, 64, 64))
    nan = torch.randn(1, 3, 32, 32)
    nan[0, 1, 5, 5] = float('nan')
    with pytest.raises(ValueError, match='NaN'):
        model(nan)
    inf = torch.randn(1, 3, 32, 32)
    inf[0, 0, 0, 0] = float('inf')
    with pytest.raises(ValueError, match='infinite'):
        model(inf)
    single_channel = DiT('b0', in_channels=1).eval()
    with torch.no_grad():
        outs = single_channel(torch.randn(1, 1, 32, 32))
    assert outs[0].shape == (1, 32, 8, 8)


def test_init_cfg_of_another_type_and_a_list_as_mmengine_takes_them():
    """mmengine's init configs, alone or in a list (a list crashed before
    with an AttributeError), apply after PVTv2's init; the gates stay open
    (on the PVTv2 route)."""
    for init_cfg in (dict(type='Constant', layer='Linear', val=0.5),
                     [dict(type='Constant', layer='Linear', val=0.5),
                      dict(type='Constant', layer='LayerNorm', val=2.0)]):
        model = _dit('b0', init_cfg=init_cfg)
        qkv = model.stages[0].blocks[0].attn.q.weight
        assert (qkv == 0.5).all()
        gate = model.stages[0].gates[0].fc
        assert (gate.weight == 0).all() and gate.bias.tolist() == [3.0, 3.0]
    assert (model.stages[0].norm.weight == 2.0).all()
    with pytest.raises(TypeError, match='a dict with a type, or a list'):
        DiT('b0', init_cfg=['Pretrained'])
    model = DiT('b0', init_cfg=dict(type='Pretrained'))
    with pytest.raises(ValueError, match='names no checkpoint'):
        model.init_weights()


def test_outputs_are_nchw_contiguous_for_mmcv_ops():
    """The blocks work on channels-last views; what leaves the backbone must be
    plain NCHW memory, because mmcv's RoIAlign reads it raw (a channels-last
    map gives wrong RoI features without an error)."""
    from mmcv.ops import roi_align
    model = DiT('b0').eval()
    model.set_budget(1.0)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    for out in outs:
        assert out.is_contiguous()
    rois = torch.tensor([[0, 1., 1., 10., 12.]])
    expected = roi_align(outs[0].clone(memory_format=torch.contiguous_format),
                         rois, (4, 4), 1.0, 0, 'avg', True)
    assert torch.equal(roi_align(outs[0], rois, (4, 4), 1.0, 0, 'avg', True),
                       expected)
