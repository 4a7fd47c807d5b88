"""Mixed precision: every dynamic backbone under bf16 and fp16 autocast on a
CPU, or on a GPU with ``DIT_MM_TEST_DEVICE=cuda`` (outputs, auxiliary losses and every gradient finite, the gates' samples
exactly 0/1, a fixed budget at test time), the straight-through gate on
half-precision logits, the bf16 optimizer wrapper in every library's scope,
and a short ``tools/train.py --amp`` run on the CPU."""
import math
import os

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

from dit_mm.core.deciders import straight_through_bernoulli
from dit_mm.engine import BF16OptimWrapper
from dit_mm.models.backbones import DiT, MixedScaleViT, TokenPassViT
from dit_mm.models.dit import routed_backbone as dit_module
from dit_mm.models.mixed_scale import tokenizer as msvit_module
from dit_mm.models.common.gates import randomize_gates
from dit_mm.registry import LIBRARIES, library_registries
from conftest import run_tool
from test_mixed_scale_vit import spread_gate
from test_token_pass_vit import SMALL, _samples, spread_heads
from test_tools import logged_losses, short_run

DTYPES = [torch.bfloat16, torch.float16]
SIZE = 64
# the device of the two model tests below: the GPU kit runs them on CUDA
# (DIT_MM_TEST_DEVICE=cuda, tools/gpu/run_kit.sh); the suite on the CPU
DEVICE = os.environ.get('DIT_MM_TEST_DEVICE', 'cpu')


def _dit(**kwargs):
    torch.manual_seed(0)
    model = DiT('b0', drop_path_rate=0., budget_loss=dict(target=0.5),
                **kwargs)
    model.init_weights()
    randomize_gates(model)
    return model


def _token_pass():
    torch.manual_seed(0)
    model = TokenPassViT(
        arch=SMALL, img_size=SIZE, out_indices=(1, 3, 5), head_layers=[1, 3],
        num_classes=5, stop_threshold=0.5,
        threshold_schedule=dict(start=1.0, begin=0, end=10))
    model.init_weights()
    spread_heads(model)
    return model


def _mixed_scale(**kwargs):
    torch.manual_seed(0)
    model = MixedScaleViT(arch=SMALL, img_size=SIZE, out_indices=(1, 3, 5),
                          **kwargs)
    model.init_weights()
    spread_gate(model)
    if model.head_layers:
        spread_heads(model)
    return model


# name -> (builder, whose losses need labels, a gate sampled in training)
MODELS = {
    'dit_budget': (lambda: _dit(), False, True),
    'dit_early_stop': (lambda: _dit(stop_threshold=0.05), False, True),
    'token_pass': (_token_pass, True, False),
    'msvit_gbs': (lambda: _mixed_scale(scale_loss=dict(
        type='GeneralizedBatchShapingLoss', target=0.5, grid=(2, 2))),
                  False, True),
    'msvit_stop_heads': (lambda: _mixed_scale(
        head_layers=[1, 3], num_classes=5, stop_threshold=0.5),
                         True, True),
}


def _finite(tensor: torch.Tensor) -> bool:
    return bool(torch.isfinite(tensor.float()).all())


@pytest.fixture
def mid_schedule():
    """The runner's iteration at the end of the threshold schedule, so the
    stop heads stop tokens (at iteration 0 the threshold is 1.0)."""
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', 10)
    yield
    hub.update_info('iter', 0)


@pytest.fixture
def gate_samples(monkeypatch):
    """Every straight-through sample the backbones draw, with its logits'
    dtype."""
    samples = []

    def recording(logits, *args, **kwargs):
        sample = straight_through_bernoulli(logits, *args, **kwargs)
        samples.append((logits.dtype, sample))
        return sample

    for module in (dit_module, msvit_module):
        monkeypatch.setattr(module, 'straight_through_bernoulli', recording)
    return samples


@pytest.mark.parametrize('dtype', DTYPES, ids=['bf16', 'fp16'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_training_under_autocast_stays_finite(name, dtype, mid_schedule,
                                              gate_samples):
    build, labelled, gated = MODELS[name]
    model = build().to(DEVICE).train()
    samples = _samples(2, SIZE) if labelled else None
    torch.manual_seed(1)
    x = torch.randn(2, 3, SIZE, SIZE).to(DEVICE)
    with torch.autocast(DEVICE, dtype=dtype):
        outs = model(x)
        losses = model.aux_losses(outs.stats, samples)
    assert all(_finite(o) for o in outs)
    loss_names = [k for k in losses if k.startswith('loss')]
    assert loss_names, losses
    for key, value in losses.items():
        assert _finite(value), (key, value)
    for key in loss_names:
        assert losses[key].dtype == torch.float32, key
    total = sum(o.float().mean() for o in outs) + sum(
        losses[k] for k in loss_names)
    total.backward()
    assert _finite(total)
    grads = {n: p.grad for n, p in model.named_parameters()
             if p.grad is not None}
    assert grads
    bad = [n for n, g in grads.items() if not _finite(g)]
    assert not bad, bad

    if gated:
        assert gate_samples
        for logits_dtype, sample in gate_samples:
            assert logits_dtype == dtype and sample.dtype == dtype
            assert ((sample == 0) | (sample == 1)).all()
        gate = ('stages.0.gates.0.fc.weight' if name.startswith('dit')
                else 'scale_gate.fc.weight')
        assert grads[gate].abs().sum() > 0
    info = outs.stats
    if name.startswith('dit'):
        assert info.expected_fraction.dtype == torch.float32
        assert 0 < float(info.expected_fraction.detach().min()) <= 1
    if name in ('token_pass', 'msvit_stop_heads'):
        assert float(losses['keep_fraction']) < 1  # the heads stopped tokens
    if name.startswith('msvit'):
        assert info.coarse.any() and not info.coarse.all()


@pytest.mark.parametrize('dtype', DTYPES, ids=['bf16', 'fp16'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_fixed_budget_inference_under_autocast_is_finite(name, dtype):
    model = MODELS[name][0]().to(DEVICE).eval()
    model.set_budget(0.5)
    torch.manual_seed(1)
    with torch.no_grad(), torch.autocast(DEVICE, dtype=dtype):
        outs = model(torch.randn(2, 3, SIZE, SIZE).to(DEVICE))
    assert all(_finite(o) for o in outs)
    assert (outs.stats.flops_fraction < 1).all()


@pytest.mark.parametrize('dtype', DTYPES, ids=['bf16', 'fp16'])
def test_straight_through_bernoulli_on_half_precision_logits(dtype):
    values = torch.tensor([-50., -6., -3., 0., 3., 6., 50.])
    logits = values.repeat(4000, 1).to(dtype).requires_grad_()
    torch.manual_seed(0)
    sample = straight_through_bernoulli(logits, tau=0.5)
    assert sample.dtype == dtype
    assert ((sample == 0) | (sample == 1)).all()
    assert (sample[:, 0] == 0).all() and (sample[:, -1] == 1).all()
    # the float32 logistic noise: P(1) = sigmoid(logit) (4000 draws)
    expected = torch.sigmoid(values)
    assert torch.allclose(sample.float().mean(0), expected, atol=0.03)
    # the noise's tail beyond 5.5, which bf16 uniform draws cannot reach
    assert sample[:, 1].any() and not sample[:, 5].all()
    sample.backward(torch.ones_like(sample))
    assert logits.grad.dtype == dtype and _finite(logits.grad)
    assert (logits.grad[:, 3] > 0).float().mean() > 0.5
    deterministic = straight_through_bernoulli(logits.detach(), noise=False)
    assert torch.equal(deterministic, (logits.detach() > 0).to(dtype))
    with torch.autocast('cpu', dtype=torch.bfloat16):  # float32 logits
        kept = straight_through_bernoulli(values)
    assert kept.dtype == torch.float32
    assert ((kept == 0) | (kept == 1)).all()


@pytest.mark.parametrize('scope', LIBRARIES)
def test_bf16_wrapper_builds_in_every_scope_and_autocasts(scope):
    registries = dict(zip(LIBRARIES, library_registries('OPTIM_WRAPPERS')))
    assert registries[scope].get('BF16OptimWrapper') is BF16OptimWrapper
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    with DefaultScope.overwrite_default_scope(scope):
        wrapper = build_optim_wrapper(model, dict(
            type='BF16OptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    assert type(wrapper) is BF16OptimWrapper
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().square().mean())
    assert model.weight.dtype == torch.float32
    assert not torch.equal(model.weight, before)
    # an fp16 run's state (AmpOptimWrapper on a GPU) resumes here
    state = dict(wrapper.state_dict(), loss_scaler=dict(scale=512.))
    wrapper.load_state_dict(state)
    with pytest.raises(ValueError, match='bfloat16'):
        BF16OptimWrapper(dtype='float16',
                         optimizer=torch.optim.SGD(model.parameters(), 0.1))


@pytest.mark.slow
def test_train_amp_on_a_cpu_uses_bf16_and_logs_finite_losses(
        toy_data, tmp_path):
    out = run_tool(
        'tools/train.py', 'configs/toy/cls_dit_b0_toy_imagenet.py', '--amp',
        '--work-dir', tmp_path, *short_run(3, 3),
        'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        env=dict(CUDA_VISIBLE_DEVICES=''))
    assert ('BF16OptimWrapper: training under bfloat16 autocast on cpu'
            in out)
    assert 'AmpOptimWrapper' not in out
    for key in ('loss', 'loss_budget'):
        logged = logged_losses(tmp_path, key)
        assert sorted(logged) == [1, 2, 3], key
        assert all(math.isfinite(v) for v in logged.values()), (key, logged)
