"""RoutedFPN is mmdet's FPN on the PVTv2 route, and fuses by density off it."""
import pytest
import torch
from mmengine.registry import DefaultScope
from mmdet.models.necks import FPN

import dit_mm  # noqa: F401  (registers RoutedFPN)
from dit_mm.models.backbones import DiT
from dit_mm.models.dit.routed_fpn import RoutedFPN


IN_CHANNELS = [32, 64, 160, 256]  # DiT-b0


@pytest.fixture(scope='module')
def backbone():
    torch.manual_seed(0)
    model = DiT('b0', drop_path_rate=0.)
    model.init_weights()
    return model.eval()


@pytest.fixture(scope='module')
def image():
    torch.manual_seed(1)
    return torch.randn(2, 3, 96, 136)


def _features(backbone, image, budget):
    backbone.set_budget(budget)
    with torch.no_grad():
        return backbone(image)


def _pair(alpha=(0.5, -0.7, 1.3), **kwargs):
    """mmdet's FPN and a RoutedFPN with the same weights and ``alpha``."""
    torch.manual_seed(2)
    fpn = FPN(IN_CHANNELS, 16, num_outs=5, **kwargs).eval()
    with torch.no_grad():
        for param in fpn.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    routed = RoutedFPN(IN_CHANNELS, 16, num_outs=5, **kwargs).eval()
    result = routed.load_state_dict(fpn.state_dict(), strict=False)
    assert result.missing_keys == ['fusion_alpha']
    assert result.unexpected_keys == []
    assert torch.equal(routed.fusion_alpha,
                       torch.zeros_like(routed.fusion_alpha))
    if alpha is not None:
        with torch.no_grad():
            routed.fusion_alpha.copy_(
                torch.tensor(alpha[:routed.fusion_alpha.numel()]))
    return fpn, routed


def _run(neck, feats):
    with torch.no_grad():
        return neck(feats)


def _equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_equals_fpn_on_the_pvtv2_route(backbone, image):
    fpn, routed = _pair()
    feats = _features(backbone, image, 1.0)
    assert feats.stats is not None
    expected = _run(fpn, feats)
    out = _run(routed, feats)
    assert len(out) == 5
    assert [o.shape[-2:] for o in out] == [(24, 34), (12, 17), (6, 9),
                                           (3, 5), (2, 3)]
    assert _equal(out, expected)


def test_differs_from_fpn_off_the_route_when_alpha_is_set(backbone, image):
    fpn, routed = _pair()
    feats = _features(backbone, image, 0.5)
    expected = _run(fpn, feats)
    out = _run(routed, feats)
    # the coarsest level has nothing above it; finer levels are reweighted
    assert torch.equal(out[3], expected[3])
    for level in range(3):
        assert not torch.allclose(out[level], expected[level], atol=1e-4)
    # by exactly the documented factor at the level below the top
    density = feats.stats.density[2].unsqueeze(1)
    assert (density < 1).any()
    routed_alpha = routed.fusion_alpha.detach()
    lateral = [conv(f) for conv, f in zip(routed.lateral_convs, feats)]
    top = torch.nn.functional.interpolate(
        lateral[3], size=lateral[2].shape[2:])
    fused = lateral[2] + top * (1 + routed_alpha[2] * (1 - density))
    torch.testing.assert_close(out[2], routed.fpn_convs[2](fused).detach())


@pytest.mark.parametrize('budget', [1.0, 0.5, 0.3, None])
def test_zero_alpha_is_fpn_at_any_budget(backbone, image, budget):
    fpn, routed = _pair(alpha=None)
    feats = _features(backbone, image, budget)
    assert _equal(_run(routed, feats), _run(fpn, feats))


def test_plain_tuple_input_is_plain_fpn(backbone, image):
    fpn, routed = _pair()
    feats = _features(backbone, image, 0.5)
    plain = tuple(t.clone() for t in feats)
    assert not hasattr(plain, 'routing')
    assert _equal(_run(routed, plain), _run(fpn, plain))
    assert not _equal(_run(routed, feats), _run(fpn, feats))


def test_retinanet_style_extra_convs_and_start_level(backbone, image):
    kwargs = dict(start_level=1, add_extra_convs='on_input')
    fpn, routed = _pair(**kwargs)
    assert routed.fusion_alpha.numel() == 2
    route = _features(backbone, image, 1.0)
    expected = _run(fpn, route)
    out = _run(routed, route)
    assert [o.shape[-2:] for o in out] == [(12, 17), (6, 9), (3, 5), (2, 3),
                                           (1, 2)]
    assert _equal(out, expected)
    half = _features(backbone, image, 0.5)
    out, expected = _run(routed, half), _run(fpn, half)
    assert not torch.allclose(out[0], expected[0], atol=1e-4)
    assert torch.equal(out[2], expected[2])  # top level and extra convs
    assert torch.equal(out[4], expected[4])
    fpn, routed = _pair(alpha=None, **kwargs)
    assert _equal(_run(routed, half), _run(fpn, half))


@pytest.mark.parametrize('extra', ['on_lateral', 'on_output'])
def test_other_extra_convs(backbone, image, extra):
    fpn, routed = _pair(add_extra_convs=extra, relu_before_extra_convs=True)
    feats = _features(backbone, image, 1.0)
    assert _equal(_run(routed, feats), _run(fpn, feats))


def test_alpha_is_learned(backbone, image):
    _, routed = _pair(alpha=(0., 0., 0.))
    routed.train()
    feats = _features(backbone, image, 0.5)
    sum(o.mean() for o in routed(feats)).backward()
    assert routed.fusion_alpha.grad is not None
    assert (routed.fusion_alpha.grad != 0).all()


def test_wrong_number_of_maps(backbone, image):
    _, routed = _pair()
    feats = _features(backbone, image, 1.0)
    with pytest.raises(ValueError, match='expects 4 maps, got 3'):
        routed(tuple(feats[:3]))


def test_registered_in_mmdet():
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        neck = MODELS.build(
            dict(type='RoutedFPN', in_channels=IN_CHANNELS, out_channels=8,
                 num_outs=5))
    assert isinstance(neck, RoutedFPN) and isinstance(neck, FPN)
