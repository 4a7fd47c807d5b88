"""The budget loss: BudgetLoss itself, DiT.aux_losses(), and the Dynamic*
models that add it to the task losses."""
import uuid

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

import dit_mm  # noqa: F401  (registers the models)
from dit_mm.models.backbones import DiT
from dit_mm.models.dit.budget_loss import BudgetLoss


@pytest.fixture
def message_hub():
    """A message hub of this test's own, the current one while it runs;
    afterwards the hub that was current before is current again."""
    name = f'test_budget_loss_{uuid.uuid4().hex}'
    hub = MessageHub.get_instance(name)
    assert MessageHub.get_current_instance() is hub
    yield hub
    MessageHub._instance_dict.pop(name)  # current = the latest created


def _dit(**kwargs):
    kwargs.setdefault('drop_path_rate', 0.)
    model = DiT('b0', **kwargs)
    model.init_weights()
    return model


# --------------------------------------------------------------- BudgetLoss
def test_budget_loss_value():
    loss = BudgetLoss(target=0.5, weight=2.0)
    value = loss(torch.tensor([0.7, 0.9]))  # mean 0.8
    torch.testing.assert_close(value, torch.tensor(2.0 * 0.3**2))
    assert loss(torch.tensor([0.5])).item() == 0.0
    # symmetric: below the target costs as much as above
    torch.testing.assert_close(
        loss(torch.tensor([0.2])), loss(torch.tensor([0.8])))
    assert 'target=0.5' in repr(loss)


def test_budget_loss_gradient():
    fraction = torch.tensor([0.9, 0.7], requires_grad=True)
    BudgetLoss(target=0.6, weight=1.0)(fraction).backward()
    # d/dx_i of (mean(x) - t)^2 = 2 (mean - t) / n
    torch.testing.assert_close(fraction.grad, torch.full((2, ), 0.2))


def test_budget_loss_warmup_reads_message_hub_iter(message_hub):
    loss = BudgetLoss(target=0.5, weight=1.0, warmup_iters=100)
    fraction = torch.tensor([0.9])
    full = 0.4**2
    for it, ramp in ((0, 0.0), (25, 0.25), (50, 0.5), (100, 1.0),
                     (1000, 1.0)):
        message_hub.update_info('iter', it)
        assert loss.ramp() == ramp
        torch.testing.assert_close(loss(fraction),
                                   torch.tensor(ramp * full))
    # no warm-up: the full weight from the first iteration
    message_hub.update_info('iter', 0)
    assert BudgetLoss(target=0.5, warmup_iters=0).ramp() == 1.0


@pytest.mark.parametrize('kwargs', [
    dict(target=0.), dict(target=1.5), dict(target=-0.2),
    dict(weight=-1.), dict(warmup_iters=-5)
])
def test_budget_loss_bad_settings(kwargs):
    with pytest.raises(ValueError, match='budget'):
        BudgetLoss(**kwargs)


def test_dit_budget_loss_config_errors():
    with pytest.raises(ValueError, match='BudgetLoss'):
        DiT('b0', budget_loss=dict(type='L1Loss'))
    with pytest.raises(ValueError, match='target'):
        DiT('b0', budget_loss=dict(target=2.0))
    model = DiT('b0', budget_loss=dict(type='BudgetLoss', target=0.4,
                                       weight=3.0, warmup_iters=7))
    assert (model.budget_loss.target, model.budget_loss.weight,
            model.budget_loss.warmup_iters) == (0.4, 3.0, 7)


# ------------------------------------------------------------ aux_losses
def test_aux_losses_in_training_only():
    torch.manual_seed(0)
    model = _dit(budget_loss=dict(target=0.5, weight=2.0))
    x = torch.randn(2, 3, 64, 64)
    assert model.aux_losses(None) == {}  # no forward yet
    model.train()
    stats = model(x).stats
    aux = model.aux_losses(stats)
    assert set(aux) == {'loss_budget', 'flops_ratio', 'budget_weight',
                        'gumbel_tau'}
    assert aux['budget_weight'].item() == 2.0 and aux['gumbel_tau'] == 1.0
    expected = stats.expected_fraction
    assert expected.shape == (2, )
    torch.testing.assert_close(aux['loss_budget'],
                               2.0 * (expected.mean() - 0.5)**2)
    assert aux['loss_budget'].requires_grad
    assert not aux['flops_ratio'].requires_grad
    torch.testing.assert_close(
        aux['flops_ratio'], stats.flops_fraction.mean().float())
    # new gates keep ~95% of the tokens: well above the 0.5 target
    assert aux['loss_budget'].item() > 0.05

    model.eval()
    with torch.no_grad():
        stats = model(x).stats
    assert model.aux_losses(stats) == {}
    # a fixed budget in training gives no budget loss either
    model.train()
    model.set_budget(0.5)
    assert model.aux_losses(model(x).stats) == {}

    plain = _dit()
    plain.train()
    stats = plain(x).stats
    assert stats.expected_fraction is not None
    assert plain.aux_losses(stats) == {}


def test_gumbel_temperature_follows_its_schedule_in_training(message_hub):
    model = _dit(budget_loss=dict(target=0.5), gumbel_tau=1.0,
                 gumbel_tau_schedule=dict(start=5.0, begin=2, end=6))
    model.train()
    taus = []
    for it in (0, 2, 4, 6, 9):
        message_hub.update_info('iter', it)
        taus.append(model.gate_tau())
    assert taus == [5.0, 5.0, 3.0, 1.0, 1.0]
    message_hub.update_info('iter', 4)
    stats = model(torch.randn(1, 3, 64, 64)).stats
    assert model.aux_losses(stats)['gumbel_tau'].item() == 3.0
    assert model.eval().gate_tau() == 1.0  # the final one at test time
    with pytest.raises(KeyError, match='gumbel_tau_schedule takes'):
        _dit(gumbel_tau_schedule=dict(end=5))  # no start
    with pytest.raises(ValueError, match='gumbel_tau must be > 0'):
        _dit(gumbel_tau=0)


def test_without_gumbel_noise_training_decisions_repeat():
    x = torch.randn(2, 3, 64, 64)
    for noise, same in ((False, True), (True, False)):
        torch.manual_seed(0)
        model = _dit(gumbel_noise=noise, gate_init=0.5).train()
        masks = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            stats = model(x).stats
            masks.append(torch.cat([m.flatten() for stage in
                                    stats.keep_masks for m in stage]))
        assert torch.equal(masks[0], masks[1]) == same, noise


def test_budget_loss_gradient_reaches_every_gate():
    torch.manual_seed(0)
    model = _dit(budget_loss=dict(target=0.3, weight=1.0))
    model.train()
    stats = model(torch.randn(2, 3, 64, 64)).stats
    model.aux_losses(stats)['loss_budget'].backward()
    for i, stage in enumerate(model.stages):
        for j, gate in enumerate(stage.gates):
            assert gate.fc.weight.grad is not None, (i, j)
            assert gate.fc.weight.grad.abs().sum() > 0, (i, j)
            assert gate.fc.bias.grad.abs().sum() > 0, (i, j)
            # pushing the FLOPs down means lowering the keep logits
            assert (gate.fc.bias.grad > 0).all(), (i, j)
    # the loss is about the gates: the blocks get nothing from it
    grad = model.stages[0].blocks[0].mlp.fc2.weight.grad
    assert grad is None or grad.abs().sum() == 0


def test_budget_loss_lowers_flops_when_trained():
    """A few steps on the budget loss alone bring the expected FLOPs down."""
    torch.manual_seed(0)
    model = _dit(budget_loss=dict(target=0.3, weight=10.0))
    model.train()
    gates = [p for n, p in model.named_parameters() if '.gates.' in n]
    optim = torch.optim.SGD(gates, lr=5.0)
    x = torch.randn(1, 3, 32, 32)
    start = model(x).stats.expected_fraction.item()
    for _ in range(5):
        optim.zero_grad()
        stats = model(x).stats
        model.aux_losses(stats)['loss_budget'].backward()
        optim.step()
    assert model(x).stats.expected_fraction.item() < start - 0.05


# --------------------------------------------------------- dynamic models
def _classifier():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(
            dict(
                type='DynamicImageClassifier',
                backbone=dict(
                    type='DiT', arch='b0', drop_path_rate=0.,
                    budget_loss=dict(target=0.5, weight=1.0)),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(
                    type='LinearClsHead', num_classes=5, in_channels=256,
                    loss=dict(type='CrossEntropyLoss', loss_weight=1.0))))


def _samples(labels):
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(label) for label in labels]


def test_dynamic_image_classifier_adds_budget_loss():
    from mmpretrain.models.classifiers import ImageClassifier
    torch.manual_seed(0)
    model = _classifier()
    assert isinstance(model, ImageClassifier)
    model.train()
    losses = model.loss(torch.randn(2, 3, 64, 64), _samples([1, 3]))
    assert {'loss', 'loss_budget', 'flops_ratio'} <= set(losses)
    assert losses['loss_budget'].item() > 0
    assert 0 < losses['flops_ratio'].item() <= 1.01
    total = losses['loss'] + losses['loss_budget']
    total.backward()
    assert model.backbone.stages[3].gates[1].fc.bias.grad is not None


def test_aux_loss_name_clash_raises(monkeypatch):
    torch.manual_seed(0)
    model = _classifier()
    # a backbone's own loss that reuses the head's loss name
    monkeypatch.setattr(model.backbone, 'aux_losses',
                        lambda stats, data_samples=None: dict(
                            loss=torch.tensor(0.)))
    model.train()
    with pytest.raises(KeyError, match="'loss' of DiT clashes"):
        model.loss(torch.randn(2, 3, 64, 64), _samples([0, 1]))


def test_dynamic_models_registered_as_stock_subclasses():
    from mmdet.models.detectors import MaskRCNN, RetinaNet
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    from mmseg.models.segmentors import EncoderDecoder
    from mmseg.registry import MODELS as MMSEG_MODELS
    assert issubclass(MMDET_MODELS.get('DynamicMaskRCNN'), MaskRCNN)
    assert issubclass(MMDET_MODELS.get('DynamicRetinaNet'), RetinaNet)
    assert issubclass(MMSEG_MODELS.get('DynamicEncoderDecoder'),
                      EncoderDecoder)
    assert MMPRETRAIN_MODELS.get('DynamicImageClassifier') is not None
