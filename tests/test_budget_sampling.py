"""Training for every budget: the route each training iteration draws, and
what a backbone runs under each draw."""
import pytest
import torch
from mmengine.logging import MessageHub

from dit_mm.models.backbones import DiT, MixedScaleViT, TokenPassViT
from dit_mm.core.budget_allocation import allocate_counts, allocate_keep
from dit_mm.models.budget_sampling import (FULL, LEARNED, BudgetSampler,
                                           build_budget_sampler)
from dit_mm.models.common.gates import randomize_gates
from dit_mm.core.deciders import keep_top


def test_the_draw_depends_on_the_iteration_alone_and_has_every_kind():
    sampler = BudgetSampler(learned=0.5, full=0.25, low=0.3)
    draws = [sampler.draw(i) for i in range(400)]
    assert draws == [sampler.draw(i) for i in range(400)]  # any process
    learned = sum(d is LEARNED for d in draws) / 400
    full = sum(d == FULL for d in draws) / 400
    fixed = [d for d in draws if d is not LEARNED and d != FULL]
    assert 0.4 < learned < 0.6 and 0.17 < full < 0.33
    assert min(fixed) >= 0.3 and max(fixed) < FULL
    assert max(fixed) - min(fixed) > 0.5  # the range is covered
    # a backbone's minimum raises the fixed draws
    assert all(d is LEARNED or d >= 0.6
               for d in (sampler.draw(i, minimum=0.6) for i in range(100)))
    # high bounds the fixed draws (the static route's share is kept)
    capped = BudgetSampler(learned=0.5, full=0.25, low=0.3, high=0.75)
    draws = [capped.draw(i) for i in range(400)]
    fixed = [d for d in draws if d is not LEARNED and d != FULL]
    assert min(fixed) >= 0.3 and max(fixed) < 0.75
    assert max(fixed) - min(fixed) > 0.4
    assert sum(d == FULL for d in draws) == sum(
        d == FULL for d in (sampler.draw(i) for i in range(400)))
    # a minimum above high: the minimum (fixed draws never go under it)
    assert all(d is LEARNED or d == FULL or d == 0.8
               for d in (capped.draw(i, minimum=0.8) for i in range(100)))
    # inside a runner: the message hub's iteration
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', 7)
    try:
        assert sampler.draw() == sampler.draw(7)
    finally:
        hub.update_info('iter', 0)


@pytest.mark.parametrize('cfg, error', [
    (dict(learned=0.8, full=0.4), ValueError),
    (dict(low=0.), ValueError),
    (dict(low=1.2), ValueError),
    (dict(low=0.5, high=0.4), ValueError),
    (dict(high=1.5), ValueError),
    (dict(learnt=0.5), KeyError),
])
def test_bad_sampling_configs_name_the_problem(cfg, error):
    with pytest.raises(error, match='budget_sampling'):
        build_budget_sampler(cfg)
    with pytest.raises(error, match='budget_sampling'):
        DiT('b0', budget_sampling=cfg)


def _iteration_with(draw):
    """An iteration whose draw under the default sampler is ``draw``
    ('learned', 'full' or 'fixed')."""
    sampler = BudgetSampler()
    for i in range(100):
        d = sampler.draw(i)
        kind = 'learned' if d is LEARNED else 'full' if d == FULL else 'fixed'
        if kind == draw:
            return i, d
    raise AssertionError(draw)


@pytest.mark.parametrize('draw', ['learned', 'full', 'fixed'])
def test_a_training_forward_runs_the_drawn_route_and_trains_every_gate(draw):
    torch.manual_seed(0)
    model = DiT('b0', drop_path_rate=0., budget_sampling=dict(),
                budget_loss=dict(target=0.5, weight=1.))
    model.init_weights()
    randomize_gates(model, seed=0)
    model.train()
    iteration, budget = _iteration_with(draw)
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', iteration)
    try:
        out = model(torch.randn(2, 3, 64, 64))
        losses = model.aux_losses(out.stats)
    finally:
        hub.update_info('iter', 0)
    fraction = out.stats.flops_fraction
    if draw == 'learned':
        assert 'loss_budget' in losses  # the learned route's budget loss
    else:
        assert losses == {}
        # a fixed draw spends its budget (top-k rounding aside); 1.0 keeps
        # every token (and counts the gates it ran)
        assert fraction.min().item() == pytest.approx(
            budget, abs=0.03) if draw == 'fixed' else fraction.min() >= 1.0
    loss = sum(o.float().square().mean() for o in out)
    if 'loss_budget' in losses:
        loss = loss + losses['loss_budget']
    loss.backward()
    gates = [p for n, p in model.named_parameters() if '.gates.' in n]
    # data-parallel training needs every gate in every iteration's graph
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gates)
    # evaluation ignores the sampler: the budget set is what runs
    model.eval()
    model.set_budget(0.5)
    with torch.no_grad():
        stats = model(torch.randn(1, 3, 64, 64)).stats
    assert stats.flops_fraction.item() == pytest.approx(0.5, abs=0.03)


# ------------------------------------------------ the fixed budget's allocation
def test_allocate_keep_meets_the_target_and_follows_the_profile():
    weights = [4., 4., 2., 1.]
    profile = [0.9, 0.2, 0.6, 0.05]
    own = sum(w * p for w, p in zip(weights, profile))
    # at the profile's own cost: the profile
    assert allocate_keep(weights, own, profile) == pytest.approx(profile)
    previous = None
    for target in (0.5, 2., own, 8., 10.5):
        shares = allocate_keep(weights, target, profile)
        assert sum(w * f for w, f in zip(weights, shares)) == \
            pytest.approx(target)
        # one offset moves every block the same way, the order kept
        assert sorted(range(4), key=shares.__getitem__) == [3, 1, 2, 0]
        if previous:
            assert all(a > b for a, b in zip(shares, previous))
        previous = shares
    assert allocate_keep(weights, 5.5) == [0.5] * 4  # no profile: uniform
    assert allocate_keep(weights, 99., profile) == [1.] * 4
    assert allocate_keep(weights, 0., profile) == [0.] * 4
    with pytest.raises(ValueError, match='profile of 3 blocks for 4'):
        allocate_keep(weights, 2., profile[:3])


def test_allocate_counts_drops_whole_blocks_the_profile_values_least():
    """A block that keeps no token costs nothing, its whole-map part
    included: a target under the whole-map parts drops blocks, those the
    profile values least first (equal ones: the deepest)."""
    sizes, token, whole = [10, 10, 10, 10], [1.] * 4, [5.] * 4
    profile = [0.9, 0.2, 0.6, 0.5]

    def spent(counts, token=token, whole=whole):
        return sum(w + n * t for n, t, w in zip(counts, token, whole) if n)

    # nothing to drop: allocate_keep's shares, rounded
    counts = allocate_counts(sizes, token, whole, 40., profile)
    assert counts == [round(10 * f) for f in allocate_keep(
        [10.] * 4, 20., profile)]
    assert allocate_counts(sizes, token, whole, 60., profile) == [10] * 4
    # under the four whole-map parts (20): block 1, then 3, then 2 dropped
    assert allocate_counts(sizes, token, whole, 19., profile)[1] == 0
    counts = allocate_counts(sizes, token, whole, 15., profile)
    assert counts[1] == counts[3] == 0 and counts[0] > counts[2] > 0
    assert spent(counts) == 15.
    assert allocate_counts(sizes, token, whole, 12., profile) == [7, 0, 0, 0]
    assert allocate_counts(sizes, token, whole, 4., profile) == [0] * 4
    # a block whose count rounds to 0 gives its part to the others
    counts = allocate_counts([10, 10, 100], [1.] * 3, [5., 5., 1.], 13.,
                             [0.01, 0.5, 0.5])
    assert counts == [0, 1, 6]
    assert spent(counts, [1.] * 3, [5., 5., 1.]) == 13.
    assert allocate_counts(sizes, token, whole, 12.) == [1, 1, 0, 0]


def test_keep_top_cuts_nearest_the_learned_rule():
    score = torch.tensor([[3., 1., -0.5, -2., float('-inf')]])
    for k, cut in [(2, 0.), (1, 1.), (3, -0.5), (0, 3.), (4, -2.)]:
        keep, c = keep_top(score, k)
        assert keep.tolist() == [[i < k for i in range(5)]]
        assert c.item() == cut
    keep, _ = keep_top(score, 5)  # -inf (went down) never kept
    assert keep.tolist() == [[True] * 4 + [False]]


def test_a_token_that_went_down_stays_down_under_a_fixed_budget():
    from dit_mm.models.dit.routed_backbone import RoutedBackbone, _StageRun
    run = _StageRun(torch.zeros(1, 4, 8))
    keep = RoutedBackbone._fixed_keep(          # token 1 goes down (stay < 0)
        torch.tensor([[2., -1., 3., 1.]]), torch.tensor([[2., 5., -1., 1.]]),
        run, 2)
    assert keep.tolist() == [[True, False, False, True]]
    assert run.down.tolist() == [[False, True, False, False]]
    keep = RoutedBackbone._fixed_keep(          # however sure it is later
        torch.tensor([[2., 9., 3., 1.]]), torch.tensor([[2., 9., 3., 1.]]),
        run, 4)
    assert keep.tolist() == [[True, False, True, True]]


def _learned_masks(model, x):
    """The keep masks of an eval forward of ``model`` on ``x``, and its
    statistics."""
    with torch.no_grad():
        stats = model(x).stats
    return [m for stage in stats.keep_masks for m in stage], stats


def test_learned_keep_follows_training_and_the_budget_at_its_share_is_it():
    torch.manual_seed(0)
    model = DiT('b0', drop_path_rate=0., gumbel_noise=False,
                budget_loss=dict(target=0.5, weight=1.))
    model.init_weights()
    randomize_gates(model, seed=3, bias=0.)
    x = torch.randn(1, 3, 96, 64)
    model.eval()
    masks, stats = _learned_masks(model, x)
    shares = [m.float().mean().item() for m in masks]
    learned = stats.flops_fraction.item()
    assert 0.3 < learned < 0.9 and len(set(shares)) > 3
    # one training forward of the learned route (no noise: the test-time
    # decisions) records what each block keeps
    assert model.learned_keep_steps.item() == 0
    model.train()
    model(x)
    assert model.learned_keep_steps.item() == 1
    assert model.learned_keep.tolist() == pytest.approx(shares, abs=1e-6)
    # a fixed budget at the learned decisions' own cost runs them
    model.eval()
    model.set_budget(learned)
    fixed, stats = _learned_masks(model, x)
    assert all(torch.equal(a, b) for a, b in zip(fixed, masks))
    assert stats.flops_fraction.item() == pytest.approx(learned)
    # the allocation rides in the checkpoint; a stock one has none
    state = model.state_dict()
    assert {'learned_keep', 'learned_keep_steps'} <= set(state)
    assert DiT.is_optional_weight('backbone.learned_keep')
    fresh = DiT('b0', drop_path_rate=0.)
    fresh.load_state_dict(dict(
        state, learned_keep=torch.zeros(8),
        learned_keep_steps=torch.zeros((), dtype=torch.long)))
    fresh.eval().set_budget(learned)
    # without the profile every block keeps the same share: another route
    uniform, _ = _learned_masks(fresh, x)
    assert not all(torch.equal(a, b) for a, b in zip(uniform, masks))
    fresh.load_state_dict(state)  # a new profile: not the allocation cached
    again, _ = _learned_masks(fresh, x)
    assert all(torch.equal(a, b) for a, b in zip(again, masks))


# ------------------------------------------------------------- the two ViTs
def _vit(cls, **kwargs):
    torch.manual_seed(0)
    model = cls(img_size=64, patch_size=16, embed_dims=64, num_layers=4,
                num_heads=2, budget_sampling=dict(), **kwargs)
    model.init_weights()
    return model.train()


@pytest.mark.parametrize('cls, kwargs', [
    (TokenPassViT, {}),
    (MixedScaleViT, {}),
    (MixedScaleViT, dict(head_layers=(1, ))),
])
def test_the_vits_refuse_below_their_minimum_and_sample_above_it(cls, kwargs):
    model = _vit(cls, **kwargs).eval()
    minimum = model.minimum_budget((64, 80))
    assert 0.2 < minimum < 0.6
    x = torch.randn(1, 3, 64, 80)
    model.set_budget(minimum + 1e-4)
    with torch.no_grad():
        stats = model(x).stats
    assert stats.flops_fraction.item() <= minimum + 1e-4
    model.set_budget(minimum - 1e-3)
    with pytest.raises(ValueError, match='below what'), torch.no_grad():
        model(x)
    # training draws every kind of route, never below the minimum, and the
    # budget set for evaluation is back after each training forward
    model.train()
    hub = MessageHub.get_current_instance()
    for draw in ('learned', 'full', 'fixed'):
        iteration, budget = _iteration_with(draw)
        hub.update_info('iter', iteration)
        try:
            out = model(x)
        finally:
            hub.update_info('iter', 0)
        assert model.budget == minimum - 1e-3
        fraction = out.stats.flops_fraction.item()
        if draw == 'fixed':
            budget = BudgetSampler().draw(iteration, minimum)
            assert minimum <= budget and budget - 0.1 < fraction <= budget
        elif draw == 'full':
            assert fraction > 0.95
        if cls is MixedScaleViT and draw != 'learned':
            # the scale gate learns to rank under a drawn budget too
            model.zero_grad()
            sum(o.square().mean() for o in out).backward()
            assert any(p.grad is not None and p.grad.abs().sum() > 0
                       for p in model.scale_gate.parameters()), draw


# ------------------------------------------------------------------ sandwich
def test_a_sandwich_iteration_trains_the_learned_route_and_a_drawn_one():
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    sampler = BudgetSampler(sandwich=True, full=0.25, low=0.3)
    draws = [sampler.draw(i) for i in range(50)]
    assert draws == [LEARNED] * 50  # the first route: learned, always
    with sampler.second_route():
        second = [sampler.draw(i, minimum=0.4) for i in range(200)]
    assert LEARNED not in second and 0.15 < second.count(FULL) / 200 < 0.35
    assert min(second) >= 0.4 and sampler.draw(3) is LEARNED  # restored
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='DynamicImageClassifier',
            backbone=dict(type='DiT', arch='b0', drop_path_rate=0.,
                          budget_loss=dict(target=0.5, weight=1.0),
                          budget_sampling=dict(sandwich=True)),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=5, in_channels=256,
                      loss=dict(type='CrossEntropyLoss'))))
    model.init_weights()
    randomize_gates(model.backbone, seed=0)
    model.train()
    iteration = next(i for i, d in enumerate(second) if d != FULL)
    with sampler.second_route():
        budget = sampler.draw(iteration,
                              model.backbone.minimum_budget((64, 64)))
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', iteration)
    samples = [DataSample().set_gt_label(label) for label in (1, 3)]
    try:
        with model.backbone.recording() as record:
            losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    finally:
        hub.update_info('iter', 0)
    # the learned route's losses, its budget loss, and the second route's
    assert {'loss', 'loss_budget', 'fixed_loss'} <= set(losses)
    assert losses['fixed_loss'].item() != losses['loss'].item()
    # the second forward ran the drawn budget
    assert record.stats.flops_fraction.min().item() == \
        pytest.approx(budget, abs=0.05)
    model.parse_losses(losses)[0].backward()  # both routes train
