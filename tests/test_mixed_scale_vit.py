"""MixedScaleViT: equality with mmseg's VisionTransformer when every region is
fine, the mixed-scale tokens (coarse regions shrunk to one token, copied back
to their fine positions), batch independence with unequal token counts, the
budget, the straight-through gate, composition with stop heads, the
batch-shaping losses against direct computations, and train_only."""
import math

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as MMSEG_MODELS
from scipy import stats

from dit_mm.core.mixed_scale_cost import (budget_coarse_count,
                                              mixed_scale_flops)
from dit_mm.models.backbones import MixedScaleViT
from dit_mm.models.dynamic_models import freeze_all_but
from dit_mm.models.mixed_scale.tokens import region_layout
from dit_mm.models.mixed_scale.batch_shaping import (BatchShapingLoss,
                                                     GeneralizedBatchShapingLoss,
                                                     L1SparsityLoss)
from test_token_pass_vit import SMALL, _samples, mmseg_vit, spread_heads


def small_model(**kwargs):
    torch.manual_seed(0)
    args = dict(arch=SMALL, img_size=64, out_indices=(1, 3, 5))
    args.update(kwargs)
    model = MixedScaleViT(**args)
    model.init_weights()
    spread_gate(model)
    return model.eval()


def spread_gate(model):
    """A gate whose decisions differ between regions and images (a new one
    makes every region fine)."""
    torch.manual_seed(1)
    torch.nn.init.normal_(model.scale_gate.fc.weight, std=2.0)
    torch.nn.init.zeros_(model.scale_gate.fc.bias)


@pytest.mark.parametrize('arch,dims,heads', [('s', 384, 6), ('b', 768, 12)])
def test_all_fine_equals_mmseg_vit(arch, dims, heads):
    vit = mmseg_vit(dims, heads)
    ours = MixedScaleViT(arch, img_size=224, out_indices=(2, 5, 8, 11),
                         final_norm=True)
    ours.init_weights()
    ours.load_weights(vit.state_dict(), 'mmseg')
    ours.eval().set_budget(1.0)
    x = torch.randn(2, 3, 100, 132)
    with torch.no_grad():
        expected, got = vit(x), ours(x)
    for a, b in zip(expected, got):
        assert b.shape == a.shape == (2, dims, 7, 9)
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    info = got.stats
    assert info.flops_fraction.tolist() == [1.0, 1.0]
    assert not info.coarse.any() and info.coarse.shape == (2, 3, 4)
    assert info.num_tokens.tolist() == [63, 63]


def test_a_new_gate_keeps_every_region_fine_like_the_plain_vit():
    vit = mmseg_vit(48, 3, layers=6, img_size=64, out=(1, 3, 5))
    ours = MixedScaleViT(SMALL, img_size=64, out_indices=(1, 3, 5),
                         final_norm=True)
    ours.init_weights()  # the gate starts at fine logit 3 everywhere
    ours.load_weights(vit.state_dict(), 'mmseg')
    ours.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():  # the learned gate's path, not the budget's
        got = ours(x)
        for a, b in zip(vit(x), got):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    assert got.stats.coarse_fraction.tolist() == [0.0, 0.0]
    assert got.stats.flops_fraction[0] > 1.0  # the gate costs a little


def test_region_layout_keeps_an_odd_last_row_and_column_fine():
    layout = region_layout((3, 5))
    assert layout.coarse_hw == (1, 2) and layout.num_regions == 2
    assert layout.region.view(3, 5).tolist() == [[0, 0, 1, 1, -1],
                                                 [0, 0, 1, 1, -1],
                                                 [-1, -1, -1, -1, -1]]
    anchor = layout.anchor.view(3, 5)
    assert anchor[1, 1] == 0 and anchor[1, 3] == 2 and anchor[2, 4] == 14


def test_coarse_tokens_cover_their_fine_positions():
    model = small_model(out_indices=(5, ), final_norm=True)
    x = torch.randn(2, 3, 80, 96)  # 5 x 6 fine grid: the last row stays fine
    with torch.no_grad():
        outs = model(x)
    out, = outs
    info = outs.stats
    assert out.shape == (2, 48, 5, 6)
    assert 0 < float(info.coarse_fraction.mean()) < 1
    coarse = info.coarse  # (2, 2, 3)
    assert not info.scale_map[:, 4].any()
    expected_tokens = 30 - 3 * coarse.flatten(1).sum(1)
    assert info.num_tokens.tolist() == expected_tokens.tolist()
    for b, i, j in coarse.nonzero().tolist():
        block = out[b, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].flatten(1)
        assert info.scale_map[b, 2 * i:2 * i + 2, 2 * j:2 * j + 2].all()
        torch.testing.assert_close(block, block[:, :1].expand_as(block))
    fine = (~info.scale_map[0]).nonzero()[0].tolist()
    assert not torch.equal(out[0, :, fine[0], fine[1]],
                           out[0, :, fine[0], fine[1] + 1])


def test_a_coarse_token_embeds_the_shrunk_region_at_its_mean_position():
    model = small_model(out_indices=(0, ))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        state = model.tokenizer.start(model, x)
    coarse = state.tokenizer_state.coarse
    assert coarse.any()
    i, j = coarse[0].nonzero()[0].tolist()
    region = x[:, :, 32 * i:32 * i + 32, 32 * j:32 * j + 32]
    token = model.patch_embed.projection(
        torch.nn.functional.avg_pool2d(region, 2)).flatten(1)[0]
    pos = model.pos_embed[0, 1:].view(4, 4, -1)[2 * i:2 * i + 2,
                                                2 * j:2 * j + 2]
    anchor = (2 * i) * 4 + 2 * j
    torch.testing.assert_close(state.frozen[0, 1 + anchor],
                               token + pos.mean((0, 1)), atol=1e-5,
                               rtol=1e-5)


def test_an_image_gives_the_same_result_alone_and_in_any_batch():
    model = small_model(head_layers=[1, 3], num_classes=5)
    spread_heads(model)
    model.stop_threshold = 0.6
    images = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        batch_out = model(images)
        batch_info = batch_out.stats
        assert len(set(batch_info.num_tokens.tolist())) > 1  # unequal counts
        for i in range(3):
            alone = model(images[i:i + 1])
            for a, b in zip(alone, batch_out):
                torch.testing.assert_close(a[0], b[i], atol=1e-5, rtol=1e-5)
            assert torch.equal(alone.stats.scale_map[0],
                               batch_info.scale_map[i])
            assert torch.equal(alone.stats.stop_layer[0],
                               batch_info.stop_layer[i])


@pytest.mark.parametrize('budget', [0.75, 0.5, 0.35])
def test_set_budget_makes_the_lowest_scoring_regions_coarse(budget):
    model = small_model()
    model.set_budget(budget)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        info = model(x).stats
        logits = model.scale_gate(model_regions(x))
    assert (info.flops_fraction <= budget + 1e-9).all()
    layout = region_layout((8, 8))
    count = budget_coarse_count(model.cost, 64, 16,
                                model.scale_gate.flops_per_region, budget)
    assert info.coarse.flatten(1).sum(1).tolist() == [count, count]
    assert count < 16
    for b in range(2):
        chosen = logits[b][info.coarse[b].flatten()]
        rest = logits[b][~info.coarse[b].flatten()]
        assert chosen.max() <= rest.min()
    flops = mixed_scale_flops(model.cost, 64, count, layout.num_regions,
                              model.scale_gate.flops_per_region)
    assert info.flops[0] == pytest.approx(flops)


def model_regions(x):
    from dit_mm.models.mixed_scale.tokens import coarse_pixels
    return coarse_pixels(x, 16, region_layout((8, 8)))


def test_a_budget_below_all_coarse_names_the_minimum():
    model = small_model()
    model.set_budget(0.05)
    with pytest.raises(ValueError, match='every one of its 16 regions coarse'):
        model(torch.randn(1, 3, 128, 128))


def test_budget_composes_with_stop_heads():
    model = small_model(head_layers=[1, 3], num_classes=5)
    spread_heads(model)
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        for budget in (0.8, 0.5, 0.3):
            model.set_budget(budget)
            info = model(x).stats
            assert (info.flops_fraction <= budget + 1e-9).all(), budget
            assert info.coarse.any() and info.kept.shape == (2, 2)
            assert (info.kept[:, 0] < info.num_tokens).all()


def test_training_gate_is_straight_through_and_losses_reach_it():
    model = small_model(head_layers=[1], num_classes=5).train()
    torch.manual_seed(0)
    outs = model(torch.randn(4, 3, 64, 64))
    losses = model.aux_losses(outs.stats, _samples(4, 64))
    assert {'loss_scale', 'loss_aux_l1', 'coarse_fraction',
            'flops_ratio'} <= set(losses)
    gate = model.scale_gate.fc.weight
    (outs[-1].square().mean()).backward(retain_graph=True)
    task_grad = gate.grad.clone()
    assert task_grad.abs().sum() > 0  # through the hard decisions
    gate.grad = None
    losses['loss_scale'].backward()
    assert gate.grad.abs().sum() > 0
    assert model.scale_loss.mean_logits.grad.abs().sum() > 0
    model.eval()
    assert model.aux_losses(outs.stats) == {}


def test_gate_temperature_schedule_and_deterministic_straight_through():
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    old = hub.get_info('iter', 0)
    model = small_model(gate_temperature=0.5, gumbel_noise=False,
                        gate_temperature_schedule=dict(start=2.5, end=4))
    model.train()
    x = torch.randn(2, 3, 64, 64)
    try:
        hub.update_info('iter', 2)
        assert model.tokenizer.temperature(model.training) == 1.5
        coarse = []
        for seed in (1, 2):  # no noise: the draws do not matter
            torch.manual_seed(seed)
            info = model(x).stats
            coarse.append(info.coarse.clone())
        assert torch.equal(coarse[0], coarse[1])
        assert 0 < coarse[0].float().mean() < 1
        losses = model.aux_losses(info)
        assert losses['gate_temperature'].item() == 1.5
        hub.update_info('iter', 10)
        assert model.tokenizer.temperature(model.training) == 0.5
    finally:
        hub.update_info('iter', old)
    with pytest.raises(KeyError, match='gate_temperature_schedule takes'):
        small_model(gate_temperature_schedule=dict(start=2.0, stop=3))


def test_weights_load_without_the_gate_and_bad_arguments_are_named():
    vit = mmseg_vit(48, 3, layers=6, img_size=64, out=(1, 3, 5))
    model = small_model()
    gate = model.scale_gate.fc.weight.clone()
    message = model.load_weights(vit.state_dict(), 'mmseg')
    assert 'keep their initial values' in message
    assert torch.equal(model.scale_gate.fc.weight, gate)
    with pytest.raises(ValueError, match='gate_temperature'):
        MixedScaleViT(SMALL, gate_temperature=0)
    with pytest.raises(ValueError, match='budget_scale_share'):
        MixedScaleViT(SMALL, budget_scale_share=1.5)
    with pytest.raises(KeyError, match='Unknown ViT arch'):
        MixedScaleViT('huge')
    with pytest.raises(ValueError, match='empty batch'):
        model(torch.zeros(0, 3, 64, 64))
    with pytest.raises(ValueError, match='NaN'):
        model(torch.full((1, 3, 64, 64), float('nan')))


def test_a_checkpoint_with_a_trained_gate_restores_it(tmp_path):
    model = small_model()
    path = tmp_path / 'msvit.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    again = MixedScaleViT(SMALL, img_size=64, out_indices=(1, 3, 5),
                          init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    again.init_weights()
    assert torch.equal(again.scale_gate.fc.weight, model.scale_gate.fc.weight)
    fresh = MixedScaleViT(SMALL, img_size=64, out_indices=(1, 3, 5))
    fresh.init_weights()
    assert not fresh.scale_gate.fc.weight.any()
    assert (fresh.scale_gate.fc.bias == 3.0).all()


def test_class_token_output_for_classification():
    model = small_model(out_type='cls_token', out_indices=-1,
                        final_norm=True)
    with torch.no_grad():
        cls, = model(torch.randn(2, 3, 64, 64))
    assert cls.shape == (2, 48)
    with pytest.raises(ValueError, match='out_type'):
        MixedScaleViT(SMALL, out_type='tokens')


# ------------------------------------------------------------------- losses
PROBS = torch.tensor([[[0.9, 0.2], [0.6, 0.05]],
                      [[0.3, 0.8], [0.99, 0.5]],
                      [[0.1, 0.7], [0.4, 0.95]]])


def ecdf_gap(values, cdf):
    n = len(values)
    return float(np.mean((np.arange(1, n + 1) / (n + 1) - cdf)**2))


def test_l1_sparsity_loss_is_the_distance_of_the_mean_to_the_target():
    loss = L1SparsityLoss(target=0.3, weight=2.0)
    assert float(loss(PROBS)) == pytest.approx(
        2.0 * abs(PROBS.mean().item() - 0.3))


def test_batch_shaping_loss_matches_a_beta_cdf_computed_by_scipy():
    loss = BatchShapingLoss(target=0.3, weight=1.5)
    values = np.sort(PROBS.flatten().numpy().astype(np.float64))
    expected = 1.5 * ecdf_gap(values, stats.beta.cdf(values, 0.3, 0.7))
    assert float(loss(PROBS)) == pytest.approx(expected, rel=1e-5)
    probs = PROBS.clone().requires_grad_()
    loss(probs).backward()
    # d/dx of the gap through the Beta density, by finite differences
    eps = 1e-4
    bumped = PROBS.clone()
    bumped[0, 0, 0] += eps
    numeric = (float(loss(bumped)) - float(loss(PROBS))) / eps
    assert float(probs.grad[0, 0, 0]) == pytest.approx(numeric, rel=1e-2)


def rb_cdf(x, mean, temp):
    x = np.clip(x, 1e-3, 1 - 1e-3)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    return 1 / (1 + np.exp(-(temp * np.log(x / (1 - x)) - logit(mean))))


def test_generalized_batch_shaping_loss_matches_a_direct_computation():
    loss = GeneralizedBatchShapingLoss(target=0.4, weight=2.0, grid=(2, 2),
                                       hyperprior_std=0.2,
                                       temperature_weight=0.1)
    with torch.no_grad():
        loss.mean_logits.copy_(torch.tensor([[0.0, 1.0], [-1.0, 0.5]]))
        loss.temperature_logits.copy_(torch.tensor([[0.0, -1.0], [2.0, 0.3]]))
    means = 1 / (1 + np.exp(-loss.mean_logits.detach().numpy().flatten()))
    temps = 1 / (1 + np.exp(-loss.temperature_logits.detach().numpy()
                            .flatten()))
    probs = PROBS.numpy().reshape(3, 4).astype(np.float64)
    prior = np.mean([
        ecdf_gap(np.sort(probs[:, k]), rb_cdf(np.sort(probs[:, k]),
                                              means[k], temps[k]))
        for k in range(4)
    ])
    learned = np.sort(means)
    hyper = ecdf_gap(learned, stats.norm.cdf(learned, 0.4, 0.2))
    expected = 2.0 * (prior + hyper + 0.1 * temps.mean())
    assert float(loss(PROBS)) == pytest.approx(expected, rel=1e-5)
    loss(PROBS).backward()
    assert loss.mean_logits.grad.abs().min() > 0
    assert loss.temperature_logits.grad.abs().min() > 0
    # another grid: the priors are resized, not refused
    assert loss(torch.rand(3, 4, 6)).isfinite()


def test_relaxed_bernoulli_prior_puts_mass_mean_above_one_half():
    from dit_mm.models.mixed_scale.batch_shaping import relaxed_bernoulli_cdf
    cdf = relaxed_bernoulli_cdf(torch.tensor(0.5), torch.tensor(0.3),
                                torch.tensor(0.7))
    assert float(1 - cdf) == pytest.approx(0.3)


@pytest.mark.parametrize('loss_type', ['L1SparsityLoss', 'BatchShapingLoss',
                                       'GeneralizedBatchShapingLoss'])
def test_every_scale_loss_is_registered_and_checks_its_target(loss_type):
    with DefaultScope.overwrite_default_scope('mmseg'):
        loss = MMSEG_MODELS.build(dict(type=loss_type, target=0.25))
        assert loss.target == 0.25
        with pytest.raises(ValueError, match='target coarse fraction'):
            MMSEG_MODELS.build(dict(type=loss_type, target=1.0))
    with pytest.raises(ValueError, match=r'\(B, H, W\)'):
        loss(torch.rand(4, 16))
    model = small_model(scale_loss=dict(type=loss_type, target=0.25)).train()
    info = model(torch.randn(2, 3, 64, 64)).stats
    model.aux_losses(info)['loss_scale'].backward()
    assert model.scale_gate.fc.weight.grad.abs().sum() > 0


# --------------------------------------------------------------- train_only
def test_train_only_freezes_everything_else_and_names_unknown_prefixes():
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MMSEG_MODELS.build(dict(
            type='DynamicEncoderDecoder',
            train_only=['backbone.scale_gate', 'decode_head'],
            backbone=dict(type='MixedScaleViT', arch=SMALL, img_size=64,
                          out_indices=(5, )),
            decode_head=dict(type='FCNHead', in_channels=48, channels=16,
                             num_convs=1, num_classes=5,
                             norm_cfg=dict(type='BN'))))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(('backbone.scale_gate.',
                                           'decode_head.')) for n in trainable)
    assert not model.backbone.pos_embed.requires_grad
    with pytest.raises(KeyError, match=r"\['backbone.gate'\] match no"):
        freeze_all_but(model, ['backbone.gate'])
    with pytest.raises(TypeError, match='non-empty list'):
        freeze_all_but(model, 'backbone')
