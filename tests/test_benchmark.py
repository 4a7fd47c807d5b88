"""benchmark.py end to end on the toy configs, the static peers, the timing
helpers and the peak-memory measurement.

No timing is asserted: the machines running the tests are shared and noisy.
"""
import json

import pytest
import torch
from mmengine.config import Config
from torch import nn

from conftest import ROOT, load_tool, run_tool
from dit_mm.analysis.latency import (cpu_peak_memory, interleaved_latency,
                                     latency_stats, paired_ratio, peak_memory,
                                     peak_live_bytes, tensor_bytes)
from dit_mm.analysis.static_peer import (backbone_difference,
                                         static_peer_backbone,
                                         with_static_peer)
from dit_mm.analysis.task_model import (budget, config_input_shape,
                                        preprocess, synthetic_batch)
from dit_mm.models.backbones import DiT, MixedScaleViT, TokenPassViT
from dit_mm.models.dit.pvt_weights import to_dit_layout
from dit_mm.models.dit.static_peer import pvt_kwargs, pvt_state_from_dit
from dit_mm.models.builder import build_task_model
from dit_mm.registry import config_scope_of
from test_stock_peers import perturb

TOOL = 'tools/analysis_tools/benchmark.py'
TOY = dict(
    dit='configs/toy/maskrcnn_dit_b0_toy_coco.py',
    token_pass='configs/toy/segmenter_dovit_toy_ade20k.py',
    mixed_scale='configs/toy/segmenter_msvit_toy_ade20k.py')
SMALL_VIT = dict(arch=dict(embed_dims=96, num_layers=6, num_heads=3),
                 img_size=(64, 64))
MB = 2**20


# ------------------------------------------------------------------ the tool
@pytest.fixture(scope='module', params=sorted(TOY))
def tool_run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp('bench') / f'{request.param}.json'
    budgets = ['1.0', '0.5', '0.05'] + (
        ['none'] if request.param == 'token_pass' else [])
    text = run_tool(TOOL, TOY[request.param], '--shape', '64', '64',
                    '--batch-size', '2', '--budget', *budgets, '--repeats',
                    '2', '--warmup', '1', '--threads', '1',
                    '--skip-infeasible', '--out', out)
    return request.param, json.loads(out.read_text()), text


def test_tool_writes_every_configuration(tool_run):
    method, data, text = tool_run
    backbone = dict(dit='DiT', token_pass='TokenPassViT',
                    mixed_scale='MixedScaleViT')[method]
    peer = ('mmdet PyramidVisionTransformerV2' if method == 'dit' else
            'mmseg VisionTransformer')
    assert data['backbone'] == backbone and data['peer'] == peer
    assert data['shape'] == [64, 64] and data['batch_sizes'] == [1, 2]
    configs = ['peer', 'budget 1.0', 'budget 0.5'] + (
        ['learned'] if method == 'token_pass' else [])
    rows = {(r['part'], r['batch'], r['config']): r for r in data['results']}
    assert list(rows) == [(part, batch, config) for part in ('backbone',
                                                             'model')
                          for batch in (1, 2) for config in configs]
    for (part, batch, config), row in rows.items():
        assert row['median_ms'] > 0 and len(row['times_ms']) == 2
        assert row['min_ms'] <= row['median_ms'] <= row['max_ms']
        assert row['images_per_s'] == pytest.approx(
            batch * 1e3 / row['median_ms'])
        assert row['ratio_to_peer'] > 0 and row['paired_ratio_to_peer'] > 0
        assert row['peak_mb'] > 0 and row['call_peak_mb'] > 0
        assert row['peak_mb'] == pytest.approx(row['resident_mb'] +
                                               row['call_peak_mb'])
        if config == 'peer':
            assert row['ratio_to_peer'] == 1.0
            assert row['flops_fraction'] is None
        else:
            assert 0 < row['flops_fraction'] <= 1.1  # the heads' cost
    for part in ('backbone', 'model'):
        for batch in (1, 2):
            # budget 1.0 is the static route; budget 0.5 spends less
            assert rows[(part, batch, 'budget 1.0')]['flops_fraction'] == \
                pytest.approx(1.0, abs=1e-3)
            assert rows[(part, batch, 'budget 0.5')]['flops_fraction'] <= 0.51
    # the whole model holds more than its backbone
    assert rows[('model', 2, 'peer')]['resident_mb'] > \
        rows[('backbone', 2, 'peer')]['resident_mb']
    assert data['max_abs_diff_budget1_vs_peer'] < 1e-4
    assert data['dynamic_only_keys']
    env = data['environment']
    assert env['threads'] == 1 and env['device'] == 'cpu'
    assert env['torch'] == torch.__version__
    assert 'load_average_start' in env and 'load_average_end' in env
    assert data['args']['repeats'] == 2 and data['args']['batch_size'] == 2
    assert '| part | batch | config | median ms |' in text
    assert '| model | 2 | budget 0.5 |' in text
    assert '3/3' in text  # the progress bar over warm-up + timed rounds
    # under every backbone's minimum at 64x64: left out, and said so
    assert 'budget 0.05' not in {r['config'] for r in data['results']}
    assert 'skipped: ' in text and 'budget 0.05 is below what' in text
    assert 'over the backbone outputs' in text


def test_tool_refuses_a_budget_out_of_range(capsys):
    with pytest.raises(SystemExit) as error:
        load_tool(TOOL, 'benchmark_tool').parse_args([TOY['dit'], '--budget', '1.5'])
    assert error.value.code == 2
    assert "a budget is 'none' or a number in (0, 1], got '1.5'" in \
        capsys.readouterr().err


def test_tool_refuses_a_missing_config():
    with pytest.raises(SystemExit, match='does not exist'):
        load_tool(TOOL, 'benchmark_tool').main(['configs/no_such_config.py'])


def test_tool_refuses_a_static_backbone(tmp_path):
    config = tmp_path / 'static_vit.py'
    config.write_text(
        f"_base_ = '{ROOT / TOY['token_pass']}'\n"
        "model = dict(backbone=dict(_delete_=True, type='VisionTransformer',"
        " img_size=(128, 128), embed_dims=96, num_layers=6, num_heads=3,"
        " final_norm=True))\n")
    with pytest.raises(SystemExit, match='VisionTransformer.*takes no budget'):
        load_tool(TOOL, 'benchmark_tool').main([str(config), '--shape', '64', '64'])


def test_config_input_shape():
    shapes = {name: config_input_shape(Config.fromfile(ROOT / path))[0]
              for name, path in TOY.items()}
    assert shapes == dict(dit=(224, 224), token_pass=(128, 128),
                          mixed_scale=(128, 128))
    cfg = Config.fromfile(ROOT / 'configs/segmenter_dovit_b_ade20k.py')
    assert config_input_shape(cfg) == ((512, 512),
                                       'model.test_cfg.crop_size (slide)')
    cfg = Config.fromfile(ROOT / 'configs/maskrcnn_dit_b0_coco.py')
    assert config_input_shape(cfg)[0] == (800, 1333)


# -------------------------------------------------------------- static peers
def test_dit_peer_is_mmdet_pvtv2_with_the_same_weights():
    from mmdet.models.backbones import PyramidVisionTransformerV2
    torch.manual_seed(0)
    dit = DiT('b0', out_indices=(1, 2, 3))
    dit.init_weights()
    perturb(dit)  # a swapped norm or bias shows
    dit.eval().set_budget(0.5)
    peer = static_peer_backbone(dit)
    assert isinstance(peer, PyramidVisionTransformerV2) and not peer.training
    assert peer.out_indices == (1, 2, 3)
    # only the routing stays behind: the gates (weight and bias, one per
    # block) and the learned allocation (two buffers)
    assert len(peer.dynamic_only_keys) == 2 * sum(dit.arch['depths']) + 2
    assert all('.gates.' in key or key.startswith('learned_keep')
               for key in peer.dynamic_only_keys)
    x = torch.randn(2, 3, 64, 80)
    assert backbone_difference(dit, peer, x) < 1e-4
    assert dit.budget == 0.5  # restored
    outs = peer(x)
    assert isinstance(outs, tuple) and len(outs) == 3
    # the inverse key conversion: back to DiT's layout it is DiT's state
    state = dit.state_dict()
    back = to_dit_layout(pvt_state_from_dit(state, peer.state_dict()))
    assert set(back) == set(state) - set(peer.dynamic_only_keys)
    assert all(torch.equal(back[k], state[k]) for k in back)


def test_dit_arch_outside_mmdet_pvtv2_has_no_peer():
    arch = dict(embed_dims=[32, 64, 96, 128], depths=[1, 1, 1, 1],
                num_heads=[1, 2, 2, 4], sr_ratios=[8, 4, 2, 1],
                mlp_ratios=[4, 4, 4, 4])
    with pytest.raises(ValueError, match='embed_dims \\* num_heads'):
        pvt_kwargs(arch)


@pytest.mark.parametrize('cls,kwargs', [
    (TokenPassViT, dict(SMALL_VIT, head_layers=[1, 3], out_indices=[2, 5],
                        final_norm=True, num_classes=7)),
    (TokenPassViT, dict(SMALL_VIT, head_layers=[2], out_indices=[5],
                        qkv_bias=False, patch_bias=False,
                        with_cls_token=False, interpolate_mode='bilinear',
                        norm_cfg=dict(type='LN', eps=1e-5))),
    (MixedScaleViT, dict(SMALL_VIT, out_indices=[3, 5], final_norm=True)),
    (MixedScaleViT, dict(SMALL_VIT, out_type='cls_token', final_norm=True)),
])
def test_vit_peer_is_mmseg_vit_with_the_same_weights(cls, kwargs):
    from mmseg.models.backbones import VisionTransformer
    torch.manual_seed(0)
    vit = cls(**kwargs)
    vit.init_weights()
    perturb(vit)
    vit.eval()
    vit.set_budget(None)
    peer = static_peer_backbone(vit)
    assert isinstance(peer, VisionTransformer) and not peer.training
    assert peer.out_indices == vit.out_indices
    assert peer.with_cls_token == vit.with_cls_token
    assert peer.interpolate_mode == vit.interpolate_mode
    assert peer.layers[0].ln1.eps == vit.layers[0].ln1.eps
    dynamic = peer.dynamic_only_keys
    assert dynamic and all(
        k.startswith(('stop_heads.', 'scale_gate.', 'scale_loss.'))
        for k in dynamic)
    assert set(peer.state_dict()) == set(vit.state_dict()) - set(dynamic)
    x = torch.randn(2, 3, 80, 64)  # another grid than img_size
    assert backbone_difference(vit, peer, x) < 1e-4
    assert vit.budget is None
    if kwargs.get('out_type') == 'cls_token':
        assert [tuple(o.shape) for o in peer(x)] == [(2, 96)]


@pytest.mark.parametrize('config', [
    'configs/toy/segmenter_dovit_toy_ade20k.py',
    'configs/toy/upernet_dit_b0_toy_ade20k.py'])
def test_with_static_peer_predicts_as_budget_one(config):
    cfg = Config.fromfile(ROOT / config)
    torch.manual_seed(0)
    model = build_task_model(cfg)
    backbone = model.backbone
    with config_scope_of(cfg):
        peer_model = with_static_peer(model)
        data = preprocess(model, synthetic_batch(cfg, (64, 64), 2))
        with torch.no_grad(), budget(model, 1.0):
            ours = model(**data, mode='predict')
        data = preprocess(model, synthetic_batch(cfg, (64, 64), 2))
        with torch.no_grad():
            theirs = peer_model(**data, mode='predict')
    assert model.backbone is backbone  # the model itself is left alone
    assert type(peer_model.backbone).__name__ in ('PVTv2Peer', 'ViTPeer')
    assert not peer_model.training
    head, peer_head = model.decode_head, peer_model.decode_head
    assert head is not peer_head
    for a, b in zip(head.parameters(), peer_head.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    for a, b in zip(ours, theirs):
        assert torch.allclose(a.seg_logits.data, b.seg_logits.data,
                              atol=1e-4)
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)


# ------------------------------------------------------------------- timing
def test_interleaved_latency_rotates_and_times_every_callable():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in 'abc'}
    synced = []
    times = interleaved_latency(fns, repeats=3, warmup=1,
                                synchronize=lambda: synced.append(1))
    assert calls == list('abc' 'abc' 'bca' 'cab')
    assert {k: len(v) for k, v in times.items()} == dict(a=3, b=3, c=3)
    assert len(synced) == 2 * 9
    times = dict(a=[2.0, 4.0, 9.0], b=[1.0, 1.0, 3.0])
    assert paired_ratio(times, 'a', 'b') == 3.0


def test_latency_stats():
    stats = latency_stats([0.004, 0.001, 0.002, 0.003, 0.005], batch_size=4)
    assert stats['median_ms'] == pytest.approx(3.0)
    assert (stats['min_ms'], stats['max_ms']) == pytest.approx((1.0, 5.0))
    assert (stats['q1_ms'], stats['q3_ms']) == pytest.approx((2.0, 4.0))
    assert stats['iqr_ms'] == pytest.approx(2.0)
    assert stats['p10_ms'] == pytest.approx(1.4)
    assert stats['images_per_s'] == pytest.approx(4 / 0.003)
    one = latency_stats([0.01])
    assert one['median_ms'] == one['p90_ms'] == one['iqr_ms'] + 10.0


# ------------------------------------------------------------- peak memory
def test_peak_live_bytes_sums_events_in_time_order():
    assert peak_live_bytes([]) == 0
    assert peak_live_bytes([(0, 10), (1, -10), (2, 5), (3, 3)]) == 10
    assert peak_live_bytes([(3, 3), (2, 5), (0, 10), (1, -10)]) == 10
    assert peak_live_bytes([(0, -7), (1, 4)]) == 0  # freed what was there


def test_cpu_peak_memory_sees_a_known_allocation():
    def transient():
        a = torch.empty(8 * MB, dtype=torch.uint8)
        a.fill_(1)
        del a
        return torch.ones(2 * MB, dtype=torch.uint8)

    def two_live():
        a = torch.ones(3 * MB, dtype=torch.uint8)
        b = torch.ones(5 * MB, dtype=torch.uint8)
        return a, b

    for fn, size in ((transient, 8 * MB), (two_live, 8 * MB)):
        for measured in (cpu_peak_memory(fn), peak_memory(fn, 'cpu')):
            assert size <= measured <= size + MB // 4
    # memory live before the call is not counted
    held = torch.ones(16 * MB, dtype=torch.uint8)
    assert peak_memory(lambda: held + 1, 'cpu') == \
        pytest.approx(16 * MB, abs=MB // 4)


def test_tensor_bytes():
    linear = nn.Linear(10, 20)
    assert tensor_bytes(linear) == (200 + 20) * 4
    x = torch.zeros(3, 5, dtype=torch.float16)
    assert tensor_bytes(linear, x, linear.weight) == (200 + 20) * 4 + 30
