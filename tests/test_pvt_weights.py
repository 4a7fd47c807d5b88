"""DiT on the PVTv2 route is mmdet's PyramidVisionTransformerV2, and loads its
weights in mmdet's, the original release's and its own layout."""
import re
from collections import OrderedDict

import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.config import ConfigDict
from mmdet.models.backbones.pvt import PyramidVisionTransformerV2
from mmdet.registry import MODELS

import dit_mm  # noqa: F401  (registers DiT)
from dit_mm.models.backbones import ARCHS, DiT
from dit_mm.models.dit.pvt_weights import detect_layout, to_dit_layout
from dit_mm.models.common.weights import unwrap_state_dict
from test_stock_peers import perturb


def _mmdet_pvt(arch, **kwargs):
    setting = ARCHS[arch]
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(
            dict(
                type='PyramidVisionTransformerV2',
                embed_dims=setting['embed_dims'][0],
                num_layers=setting['depths'],
                mlp_ratios=setting['mlp_ratios'],
                drop_path_rate=0.,
                **kwargs))


def _randomize(model, seed):
    """Init, then move every weight off its init value (norms and biases
    included), so a weight that is not loaded shows in the outputs."""
    model.init_weights()
    return perturb(model, seed)


def _dit_from(path, arch='b0', **kwargs):
    model = DiT(arch, drop_path_rate=0.,
                init_cfg=dict(type='Pretrained', checkpoint=str(path),
                              **kwargs))
    model.init_weights()
    model.set_budget(1.0)
    return model.eval()


def _run(model, x):
    with torch.no_grad():
        return [o.clone() for o in model(x)]


def _assert_outputs_close(a, b, atol=1e-4):
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-4)


def _original_layout(dit_state, head_dims):
    """DiT keys mapped back to the original PVTv2 release's names."""
    out = OrderedDict()
    for key, value in dit_state.items():
        if DiT.is_optional_weight(key):
            continue
        stage, part, rest = re.match(
            r'stages\.(\d)\.(patch_embed|blocks|norm)\.(.*)', key).groups()
        num = int(stage) + 1
        if part == 'patch_embed':
            out[f'patch_embed{num}.{rest}'] = value
        elif part == 'norm':
            out[f'norm{num}.{rest}'] = value
        else:
            rest = rest.replace('mlp.dwconv.', 'mlp.dwconv.dwconv.')
            out[f'block{num}.{rest}'] = value
    out['head.weight'] = torch.randn(1000, head_dims)
    out['head.bias'] = torch.randn(1000)
    return out


@pytest.mark.parametrize('arch', ['b0', 'b2'])
def test_route_equals_mmdet_pvtv2(arch, tmp_path):
    torch.manual_seed(0)
    pvt = _randomize(_mmdet_pvt(arch), seed=1).eval()
    path = tmp_path / f'pvt_{arch}.pth'
    torch.save(pvt.state_dict(), path)
    model = _dit_from(path, arch)
    # the routing gates keep their initial values (zero weights)
    assert all(torch.equal(g.fc.weight, torch.zeros_like(g.fc.weight))
               for s in model.stages for g in s.gates)
    with model.recording() as record:
        for size in ((224, 224), (203, 301)):
            x = torch.randn(1, 3, *size)
            _assert_outputs_close(_run(model, x), _run(pvt, x))
    assert record.stats.flops_fraction.item() == 1.0


def test_original_release_layout_loads_like_mmdet(tmp_path):
    torch.manual_seed(0)
    source = _randomize(DiT('b0', drop_path_rate=0.), seed=2)
    original = _original_layout(source.state_dict(), 256)
    assert detect_layout(original) == 'original'
    assert 'block1.0.mlp.dwconv.dwconv.weight' in original
    assert 'block1.0.attn.sr.weight' in original
    assert 'block4.0.attn.sr.weight' not in original  # sr_ratio 1
    path = tmp_path / 'pvt_v2_b0.pth'
    torch.save(original, path)

    # (mmdet's PVT reads init_cfg.checkpoint as an attribute: a ConfigDict)
    pvt = _mmdet_pvt('b0', init_cfg=ConfigDict(type='Pretrained',
                                               checkpoint=str(path))).eval()
    pvt.init_weights()  # mmdet's own pvt_convert
    model = _dit_from(path)
    source.set_budget(1.0)
    source.eval()
    x = torch.randn(2, 3, 99, 67)
    expected = _run(source, x)
    _assert_outputs_close(_run(model, x), expected, atol=1e-5)
    _assert_outputs_close(_run(pvt, x), expected)
    # every non-gate tensor was taken from the file, the head ignored
    converted = to_dit_layout(original)
    assert not any(k.startswith('head') for k in converted)
    assert sorted(converted) == sorted(
        k for k in model.state_dict() if not DiT.is_optional_weight(k))


def test_mmdet_layout_conversion_keys():
    pvt = _mmdet_pvt('b0')
    state = pvt.state_dict()
    assert detect_layout(state) == 'mmdet'
    converted = to_dit_layout(state)
    own = DiT('b0').state_dict()
    assert sorted(converted) == sorted(k for k in own if not DiT.is_optional_weight(k))
    for key, value in converted.items():
        assert value.shape == own[key].shape, key
    # q and kv are the two parts of nn.MultiheadAttention's in_proj
    in_proj = state['layers.0.1.0.attn.attn.in_proj_weight']
    assert torch.equal(converted['stages.0.blocks.0.attn.q.weight'],
                       in_proj[:32])
    assert torch.equal(converted['stages.0.blocks.0.attn.kv.weight'],
                       in_proj[32:])


def test_whole_detector_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    pvt = _randomize(_mmdet_pvt('b0'), seed=3).eval()
    state = {f'backbone.{k}': v for k, v in pvt.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.randn(8, 32, 1, 1)
    state['rpn_head.rpn_conv.weight'] = torch.randn(8, 8, 3, 3)
    path = tmp_path / 'detector.pth'
    torch.save(dict(state_dict=state, meta=dict(epoch=12, iter=100)), path)
    model = _dit_from(path)
    x = torch.randn(1, 3, 64, 96)
    _assert_outputs_close(_run(model, x), _run(pvt, x))
    # DataParallel's module. prefix and a 'model' wrapper as well
    wrapped = {'model': {f'module.{k}': v for k, v in state.items()}}
    assert sorted(unwrap_state_dict(wrapped)) == sorted(pvt.state_dict())


def test_dit_layout_round_trip_keeps_gates(tmp_path):
    torch.manual_seed(0)
    source = _randomize(DiT('b0', drop_path_rate=0.), seed=4)
    path = tmp_path / 'dit.pth'
    torch.save(dict(state_dict=source.state_dict()), path)
    model = _dit_from(path)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_another_arch_is_refused_and_nothing_is_copied(tmp_path):
    b2 = DiT('b2')
    path = tmp_path / 'b2.pth'
    torch.save(b2.state_dict(), path)
    model = DiT('b0', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match='shape mismatch') as info:
        model.init_weights()
    assert 'b2.pth' in str(info.value)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # also straight from an mmdet b2 state dict
    with pytest.raises(ValueError, match='shape mismatch'):
        model.load_weights(_mmdet_pvt('b2').state_dict(), 'mmdet b2')
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_missing_and_unexpected_keys_are_refused():
    model = DiT('b0')
    state = model.state_dict()
    del state['stages.1.blocks.0.attn.q.weight']
    with pytest.raises(ValueError, match='missing keys.*attn.q.weight'):
        model.load_weights(state, 'partial')
    state = model.state_dict()
    state['stages.0.extra.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match='unexpected keys.*extra'):
        model.load_weights(state, 'extra')


@pytest.mark.parametrize('damage', ['truncate', 'garbage'])
def test_corrupt_checkpoint_error_names_the_file(tmp_path, damage):
    path = tmp_path / 'broken_pvt.pth'
    torch.save(DiT('b0').state_dict(), path)
    data = path.read_bytes()
    if damage == 'truncate':
        path.write_bytes(data[:len(data) // 2])
    else:
        path.write_bytes(b'not a checkpoint at all' * 10)
    model = DiT('b0', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(
            RuntimeError,
            match=r'broken_pvt.pth is (truncated or corrupt|not a (readable )?'
            r'torch checkpoint)'):
        model.init_weights()


def test_not_a_pvt_state_dict(tmp_path):
    state = OrderedDict(
        [('conv1.weight', torch.zeros(64, 3, 7, 7)),
         ('layer1.0.conv1.weight', torch.zeros(64, 64, 3, 3))])
    with pytest.raises(KeyError, match='not a PVTv2'):
        detect_layout(state)
    path = tmp_path / 'resnet.pth'
    torch.save(state, path)
    model = DiT('b0', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(KeyError, match='conv1.weight'):
        model.init_weights()
    with pytest.raises(TypeError, match='not a state dict'):
        unwrap_state_dict([1, 2, 3])


def test_mmdet_pvtv2_is_the_class_compared_against():
    assert isinstance(_mmdet_pvt('b0'), PyramidVisionTransformerV2)
