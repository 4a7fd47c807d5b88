"""DiT on the Swin-v2 routing space (DiTSwinV2): equal to mmpretrain's
SwinTransformerV2 at set_budget(1.0), loading its weights; the sparse
windowed forms equal the masked training form; budgets, gates, the budget
loss and bad arguments as for the PVTv2 family; the configs."""
import glob

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.models import SwinTransformerV2

import dit_mm  # noqa: F401  (registers DiTSwinV2)
from conftest import ROOT
from test_dit_configs import sandwich
from dit_mm.analysis.flop_counter import count_flops
from dit_mm.analysis.static_peer import backbone_difference, static_peer_backbone
from dit_mm.core.swin_cost import swin_stage_costs
from dit_mm.models.backbones import DiTSwinV2, resolve_swinv2_arch
from dit_mm.models.common.gates import randomize_gates
from dit_mm.models.dit.swin_blocks import RoutedSwinV2Block
from test_dit_backbone import _masks, assert_sparse_equals_masked
from test_stock_peers import perturb

SMALL = dict(embed_dims=32, depths=[1, 2, 2, 1], num_heads=[1, 2, 4, 8])


def swin(arch=SMALL, **kwargs):
    """A DiTSwinV2 as the detection configs set it: four maps, any size."""
    torch.manual_seed(0)
    kwargs.setdefault('drop_path_rate', 0.)
    kwargs.setdefault('window_size', 4)
    kwargs.setdefault('out_indices', (0, 1, 2, 3))
    kwargs.setdefault('pad_small_map', True)
    model = DiTSwinV2(arch, **kwargs)
    model.init_weights()
    return model.eval()


def mmpretrain_swin(arch='tiny', **kwargs):
    torch.manual_seed(0)
    model = SwinTransformerV2(arch=arch, out_indices=(0, 1, 2, 3),
                              pad_small_map=True, drop_path_rate=0.,
                              **kwargs)
    model.init_weights()
    perturb(model)  # norms and biases off 1 and 0 too
    model.eval()  # mmpretrain's train() returns None
    return model


# ---------------------------------------------------- equality and weights
@pytest.mark.parametrize('size', [(128, 160), (100, 132)])
def test_static_route_equals_mmpretrain_swinv2_t(size, tmp_path):
    ref = mmpretrain_swin('tiny', window_size=8)
    path = tmp_path / 'swinv2_t.pth'
    # an mmpretrain classifier's checkpoint: backbone. keys, and a head
    state = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(1000, 768)
    torch.save(dict(state_dict=state, meta=dict()), path)
    model = DiTSwinV2('t', window_size=8, drop_path_rate=0.,
                      out_indices=(0, 1, 2, 3), pad_small_map=True,
                      init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval().set_budget(1.0)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected, got = ref(x), model(x)
    assert len(got) == 4
    for a, b in zip(expected, got):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    # the static peer is mmpretrain's class with the same weights
    peer = static_peer_backbone(model)
    assert type(peer).__name__ == 'SwinTransformerV2'
    assert backbone_difference(model, peer, x) < 1e-4
    # the gates and the learned allocation
    assert len(peer.dynamic_only_keys) == 2 * sum(model.arch['depths']) + 2


def test_params_are_mmpretrains_plus_the_gates():
    for arch, name in (('t', 'tiny'), ('s', 'small'), ('b', 'base')):
        ours = sum(p.numel() for p in DiTSwinV2(
            arch, out_indices=(0, 1, 2, 3)).parameters())
        theirs = sum(p.numel() for p in SwinTransformerV2(
            arch=name, out_indices=(0, 1, 2, 3)).parameters())
        dims = resolve_swinv2_arch(arch)['embed_dims']
        gates = sum(d * (dims * 2**i * 2 + 2) for i, d in enumerate(
            resolve_swinv2_arch(arch)['depths']))
        assert ours == theirs + gates, arch


def test_a_checkpoint_of_another_arch_is_refused_and_nothing_changes(
        tmp_path):
    path = tmp_path / 'swinv2_s.pth'
    torch.save(mmpretrain_swin('small').state_dict(), path)
    model = swin('t', window_size=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    with pytest.raises(ValueError, match='unexpected keys.*stages.2.blocks'):
        model.init_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


# ----------------------------------------------------- sparse and budgets
@pytest.mark.parametrize('budget, bounded', [(None, False), (0.5, False),
                                             (0.5, True)])
@pytest.mark.parametrize('mode', ['whole', 'packed'])
def test_sparse_windows_equal_the_masked_form(budget, bounded, mode):
    """Odd sizes (padded windows) and shifted windows in every stage; under
    a fixed budget with the windows read back (the CPU's way) or bounded by
    the kept count (a GPU's: empty windows and padded queries computed)."""
    model = swin(window_mode=mode)
    randomize_gates(model)
    for block in model.modules():
        if isinstance(block, RoutedSwinV2Block):
            block.bounded_windows = bounded
    model.set_budget(budget)
    sparse_r = assert_sparse_equals_masked(model, torch.randn(2, 3, 76, 100))
    kept = torch.cat([m.flatten() for m in _masks(sparse_r)])
    assert kept.any() and not kept.all()
    assert not torch.equal(sparse_r.keep_masks[0][0][0],
                           sparse_r.keep_masks[0][0][1])


def test_set_budget_meets_the_flops_and_the_packed_windows_run_fewer():
    model = swin('t', window_size=8)
    randomize_gates(model)
    x = torch.randn(1, 3, 128, 128)
    executed = {}
    for budget, mode in ((1.0, 'packed'), (0.5, 'whole'), (0.5, 'packed')):
        model.set_budget(budget)
        model.set_window_mode(mode)
        with torch.no_grad(), model.recording() as record:
            counter = count_flops(model, lambda: model(x))
        executed[budget, mode] = counter.total
        assert record.stats.flops_fraction.item() == pytest.approx(
            budget, abs=0.01)
    route = record.stats.route_flops
    # the analytic route against what ran (norms etc. not in the analytic)
    assert executed[1.0, 'packed'] == pytest.approx(route, rel=0.01)
    # the analytic count is an upper bound of what runs (windows without a
    # kept token, and the padding's projections, are skipped); the packed
    # windows run fewer queries than whole ones
    assert 0.4 * route < executed[0.5, 'whole'] <= 0.505 * route
    assert executed[0.5, 'packed'] < 0.9 * executed[0.5, 'whole']


def test_a_budget_under_the_minimum_names_swins_unskippable_parts():
    model = swin().eval()
    floor = model.minimum_budget((64, 64))
    model.set_budget(floor / 2)
    with pytest.raises(ValueError, match=(
            rf'below what DiTSwinV2 must spend at this input size '
            rf'\({floor:.3f} of the static route: the patch embedding and '
            r'merging\)')):
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))


def test_route_flops_match_mmpretrains_published_figure():
    # mmpretrain's swinv2-tiny-w8 at 256 px: 5.94 GFLOPs
    costs = swin_stage_costs(resolve_swinv2_arch('t'), [8] * 4, (256, 256))
    assert sum(c.route for c in costs) / 1e9 == pytest.approx(5.94, abs=0.01)


# --------------------------------------------------------------- training
def test_training_gates_and_budget_loss_get_gradients():
    model = swin(budget_loss=dict(target=0.5), gate_init=0.5).train()
    x = torch.randn(2, 3, 64, 64)
    outs = model(x)
    losses = model.aux_losses(outs.stats)
    assert {'loss_budget', 'flops_ratio', 'budget_weight',
            'gumbel_tau'} <= set(losses)
    (sum(o.mean() for o in outs) + losses['loss_budget']).backward()
    for stage in model.stages:
        for gate in stage.gates:
            assert gate.fc.weight.grad.abs().sum() > 0
    assert model.stages[0].blocks[0].ffn.layers[0][0].weight.grad is not None


def test_frozen_stages_freeze_the_stem_too():
    model = swin(frozen_stages=0).train()
    assert not any(p.requires_grad for p in model.patch_embed.parameters())
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    assert all(p.requires_grad for p in model.stages[1].parameters())


@pytest.mark.parametrize('frozen', [-1, 0, 2, 3])
def test_frozen_stages_freeze_what_mmpretrain_freezes(frozen):
    """The stem, the stages and their output norms (a defect: the norms
    stayed trainable), and nothing else but the frozen stages' gates."""
    kwargs = dict(arch='tiny', frozen_stages=frozen, out_indices=(0, 1, 2, 3))
    theirs = SwinTransformerV2(**kwargs)
    theirs.train()
    ours = DiTSwinV2(**kwargs).train()
    assert {n for n, p in ours.named_parameters() if not p.requires_grad
            and '.gates.' not in n} == {
                n for n, p in theirs.named_parameters() if not p.requires_grad}


# ------------------------------------------------------------ bad arguments
@pytest.mark.parametrize('kwargs,error,message', [
    # mmpretrain asserts: AssertionError for its arguments
    (dict(arch='x'), AssertionError, "Unknown Swin-v2 arch 'x'"),
    (dict(arch='huge'), AssertionError, "extra norms.*'huge' arch"),
    (dict(arch=dict(embed_dims=32)), AssertionError, 'needs'),
    (dict(use_abs_pos_embed=True), AssertionError,
     'use_abs_pos_embed=False only'),
    (dict(window_mode='sliding'), ValueError, 'window_mode must be one of'),
    (dict(window_size=[8, 8]), AssertionError, 'one size per stage'),
    (dict(out_indices=(4, )), AssertionError, 'out_indices must name'),
    (dict(budget=1.5), ValueError, 'budget must be in'),
])
def test_bad_arguments_name_the_problem(kwargs, error, message):
    with pytest.raises(error, match=message):
        DiTSwinV2(**kwargs)


def test_a_map_under_its_window_needs_pad_small_map_as_in_mmpretrain():
    """mmpretrain's default refuses it with an AssertionError: the same
    type here; with pad_small_map any image runs, down to one pixel."""
    with pytest.raises(AssertionError, match=r'a 4x10 map is smaller than the '
                       r'window \(8\); set pad_small_map=True'):
        swin(window_size=8, pad_small_map=False)(torch.randn(1, 3, 16, 40))
    model = swin()
    for size in ((1, 1), (16, 40), (31, 33)):
        assert len(model(torch.randn(1, 3, *size))) == 4


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize('path', sorted(
    glob.glob(str(ROOT / 'configs/*_ditswinv2_*.py')) +
    glob.glob(str(ROOT / 'configs/toy/*_ditswinv2_*.py'))))
def test_every_swinv2_config_builds_with_matching_widths(path):
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    assert backbone.type == 'DiTSwinV2' and cfg.model.type.startswith(
        'Dynamic')
    # the sandwich, fixed budgets from 0.3 (docs/budgets.md, DiT on Swin-v2)
    assert backbone.budget_sampling == sandwich(path)
    dims = resolve_swinv2_arch(backbone.arch)['embed_dims']
    widths = [dims * 2**i for i in range(4)]
    if 'neck' in cfg.model:
        assert cfg.model.neck.in_channels == widths
    else:
        assert cfg.model.decode_head.in_channels == widths
        assert cfg.model.auxiliary_head.in_channels == widths[2]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = DiTSwinV2(**{k: v for k, v in backbone.items()
                             if k != 'type'})
    assert model.out_channels == widths
