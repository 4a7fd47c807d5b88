"""At ``set_budget(1.0)`` each dynamic backbone is the stock network it
stands for, built from the *same* constructor arguments, with every weight
moved off its initial value (default inits leave norms at 1 and biases at 0,
which would hide a swapped or missing norm), at input sizes that exercise
the shape logic: square, odd, not a multiple of a stride or patch, and maps
smaller than, equal to and larger than a window or reduction ratio.

- mmpretrain ``SwinTransformerV2``: ``DiTSwinV2`` with the stock defaults
  (``pad_small_map=False``, ``out_indices=(3, )``). A map as large as its
  window keeps no shift in the stock class; DiTSwinV2 kept it (its default
  was ``pad_small_map=True``) and differed by 0.35 at 256x256 with windows
  of 8, the configuration of mmpretrain's w8 release.
- mmseg ``VisionTransformer``: a stock UperNet-ViT config with only the
  backbone type changed to ``TokenPassViT`` / ``MixedScaleViT`` loads a
  checkpoint of the stock model (no patch-embedding bias: our default had
  one, so the checkpoint was refused).
- mmdet ``PyramidVisionTransformerV2``: DiT from the same widths, depths and
  heads, down to 31x31 (refused before: a needless 32-px minimum).
"""
import inspect
from pathlib import Path

import mmdet
import mmseg
import pytest
import torch
from mmdet.models.backbones.pvt import (PyramidVisionTransformer,
                                       PyramidVisionTransformerV2)
from mmengine.config import Config
from mmpretrain.models import SwinTransformerV2
from mmseg.models.backbones import VisionTransformer

from dit_mm.models.backbones import (DiT, DiTSwinV2, MixedScaleViT,
                                     TokenPassViT)
from dit_mm.models.dit.archs import resolve_arch

MMSEG_CONFIGS = Path(mmseg.__file__).parent / '.mim' / 'configs'


def perturb(model, seed=1, scale=0.05):
    """Every parameter moved off its initial value, in place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    return model


def assert_same_outputs(ours, theirs, sizes, atol=1e-4):
    """Both models (eval, ours at budget 1.0) on random images of each size:
    the same number of maps, the same shapes, the same values."""
    ours.eval().set_budget(1.0)
    theirs.eval()
    for size in sizes:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            got, expected = ours(x), theirs(x)
        assert len(got) == len(expected), size
        for a, b in zip(got, expected):
            assert a.shape == b.shape, size
            torch.testing.assert_close(a, b, atol=atol, rtol=1e-4,
                                       msg=lambda m: f'{size}: {m}')


# ---------------------------------------------------------------- Swin-v2
SWIN_SMALL = dict(embed_dims=32, depths=[1, 2, 2, 1], num_heads=[1, 2, 4, 8],
                  extra_norm_every_n_blocks=0)


@pytest.mark.parametrize('kwargs, sizes', [
    # the stock defaults: stage 4 equal to (256), larger than (320, 384 x
    # 512) the window of 8; smaller maps are refused by both
    (dict(arch='tiny', drop_path_rate=0.), [(256, 256), (320, 320),
                                           (384, 512)]),
    # padded maps: smaller than the window, odd, not a multiple of 32
    (dict(arch=SWIN_SMALL, window_size=4, pad_small_map=True,
          out_indices=(0, 1, 2, 3), drop_path_rate=0.),
     [(224, 224), (201, 263), (31, 33), (1, 1), (128, 128)]),
    (dict(arch=SWIN_SMALL, window_size=[8, 8, 4, 4], drop_path_rate=0.,
          out_indices=(1, 3), pretrained_window_sizes=[8, 8, 8, 4]),
     [(256, 256), (320, 384)]),
])
def test_ditswinv2_is_mmpretrains_swinv2(kwargs, sizes):
    torch.manual_seed(0)
    theirs = perturb(SwinTransformerV2(**kwargs))
    ours = DiTSwinV2(**kwargs)
    ours.load_weights(theirs.state_dict(), 'the stock model')
    assert_same_outputs(ours, theirs, sizes)


@pytest.mark.parametrize('window_size, pretrained_window_sizes', [
    (4, [0, 0, 0, 0]), (4, [8, 8, 8, 8]), (8, [4, 4, 4, 4])])
def test_ditswinv2_rebuilds_its_position_buffers_as_mmpretrain_does(
        window_size, pretrained_window_sizes, tmp_path):
    """A stock checkpoint made for other windows (here 4, pretrained at 4)
    through ``load_from`` (mmengine's non-strict loading) and a strict
    ``load_state_dict``: mmpretrain rebuilds the relative-position buffers
    for its own windows, and so does ours (it copied the checkpoint's:
    0.19 off with other pretrained windows, a size error with other
    windows)."""
    from mmengine.runner.checkpoint import load_checkpoint
    kwargs = dict(arch=SWIN_SMALL, pad_small_map=True, drop_path_rate=0.,
                  out_indices=(0, 1, 2, 3))
    torch.manual_seed(0)
    source = perturb(SwinTransformerV2(
        **kwargs, window_size=4, pretrained_window_sizes=[4, 4, 4, 4]))
    path = tmp_path / 'stock_w4.pth'
    torch.save(source.state_dict(), path)
    kwargs.update(window_size=window_size,
                  pretrained_window_sizes=pretrained_window_sizes)
    theirs, ours = SwinTransformerV2(**kwargs), DiTSwinV2(**kwargs)
    for model in (theirs, ours):
        load_checkpoint(model, str(path), map_location='cpu')
    assert_same_outputs(ours, theirs, [(64, 64), (40, 72)])
    state = dict(source.state_dict())
    state.update({k: v for k, v in ours.state_dict().items()
                  if ours.is_optional_weight(k)
                  and k not in state})  # the gates: ours only
    ours.load_state_dict(state, strict=True)
    assert_same_outputs(ours, theirs, [(64, 64)])


def test_ditswinv2_arch_tables_are_mmpretrains():
    """``arch_zoo`` and ``arch_settings`` as mmpretrain's class has them
    (``arch_settings`` held an extra key, which mmpretrain refuses)."""
    for name, setting in DiTSwinV2.arch_zoo.items():
        assert SwinTransformerV2.arch_zoo[name] == setting
    assert set(DiTSwinV2.arch_zoo) == set(SwinTransformerV2.arch_zoo) - {
        'h', 'huge', 'g', 'giant'}  # the extra norms, not built
    assert DiTSwinV2.num_extra_tokens == SwinTransformerV2.num_extra_tokens
    ours = DiTSwinV2(arch=SWIN_SMALL)
    assert SwinTransformerV2(arch=ours.arch_settings).arch_settings == \
        ours.arch_settings


def test_ditswinv2_refuses_what_mmpretrain_refuses_with_its_type():
    kwargs = dict(arch=SWIN_SMALL, window_size=8)
    x = torch.randn(1, 3, 224, 224)  # stage 4: 7x7, under the window
    for model in (SwinTransformerV2(**kwargs), DiTSwinV2(**kwargs)):
        model.eval()  # mmpretrain's train() returns None: no chaining
        with pytest.raises(AssertionError, match='pad_small_map=True'):
            model(x)


# -------------------------------------------------------------- mmseg ViT
def stock_upernet_vit_backbone(**changes) -> dict:
    """The backbone of mmseg's stock UperNet-ViT-B base config."""
    cfg = Config.fromfile(MMSEG_CONFIGS / '_base_/models/'
                          'upernet_vit-b16_ln_mln.py')
    return dict(cfg.model.backbone, **changes)


@pytest.mark.parametrize('cls', [TokenPassViT, MixedScaleViT])
def test_a_stock_vit_config_with_our_type_loads_a_stock_checkpoint(
        cls, tmp_path):
    """The stock config's backbone with only ``type`` changed (and 4 layers
    instead of 12, to keep the test small), loading what the stock model
    saved: outputs equal at budget 1.0, at the training size and others."""
    kwargs = stock_upernet_vit_backbone(num_layers=4, out_indices=(1, 3))
    kwargs.pop('type')
    torch.manual_seed(0)
    theirs = perturb(VisionTransformer(**kwargs))
    path = tmp_path / 'stock_upernet_vit.pth'  # as a runner saves it
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in
                                theirs.state_dict().items()}, meta={}), path)
    ours = cls(**kwargs, init_cfg=dict(type='Pretrained',
                                       checkpoint=str(path)))
    ours.init_weights()
    assert ours.patch_embed.projection.bias is None  # mmseg's default
    assert_same_outputs(ours, theirs, [(64, 64), (50, 70), (16, 16),
                                       (97, 33)])


def test_pretrained_is_read_by_init_weights_as_mmseg_reads_it(tmp_path):
    """A stock config's model-level ``pretrained`` (mmseg's
    ``EncoderDecoder`` hands it to the backbone): a file that is not here
    builds (``tools/test.py`` with a checkpoint needs none) and fails in
    ``init_weights``, as in mmseg (ours refused to build); a checkpoint made
    by mmseg's ``vit2mmseg`` (it keeps timm's patch bias, which a stock
    config's ViT has not) loads (ours refused its extra key)."""
    kwargs = dict(embed_dims=96, num_layers=2, num_heads=3, img_size=64,
                  pretrained=str(tmp_path / 'absent.pth'))
    for cls in (VisionTransformer, TokenPassViT, MixedScaleViT):
        with pytest.raises(FileNotFoundError):
            cls(**kwargs).init_weights()
    torch.manual_seed(0)
    source = perturb(VisionTransformer(**dict(kwargs, pretrained=None,
                                              patch_bias=True)))
    torch.save(source.state_dict(), kwargs['pretrained'])
    theirs = VisionTransformer(**kwargs)
    theirs.init_weights()
    for cls in (TokenPassViT, MixedScaleViT):
        ours = cls(**kwargs)
        with pytest.warns(UserWarning, match='patch_bias=True'):
            ours.init_weights()
        assert ours.pretrained == theirs.pretrained
        assert_same_outputs(ours, theirs, [(64, 64), (50, 70)])


@pytest.mark.parametrize('exclude', [['pos_embed'], ['ln1', 'norm1'], []])
@pytest.mark.parametrize('cls', [TokenPassViT, MixedScaleViT])
def test_frozen_exclude_freezes_what_mmseg_freezes(cls, exclude):
    """mmseg's ``frozen_exclude`` freezes every parameter it does not name;
    ours froze the ViT's and left the stop heads and the scale gate
    trainable."""
    kwargs = dict(embed_dims=96, num_layers=4, num_heads=3, img_size=64,
                  frozen_exclude=exclude)

    def trainable(model):
        return {k for k, v in model.named_parameters() if v.requires_grad}
    ours, theirs = cls(**kwargs), VisionTransformer(**kwargs)
    assert trainable(ours) == trainable(theirs)
    extra = 'stop_heads' if cls is TokenPassViT else 'scale_gate'
    assert trainable(cls(**dict(kwargs, frozen_exclude=[*exclude, extra]))) \
        - trainable(theirs)  # named, they train


@pytest.mark.parametrize('num_layers', [4, 3, 1])
@pytest.mark.parametrize('cls', [TokenPassViT, MixedScaleViT])
def test_vits_take_mmsegs_defaults(cls, num_layers):
    """Built from the same few arguments, ours is mmseg's ViT: its norm eps,
    patch bias, image size and outputs (the defaults that differed), at any
    depth mmseg builds (TokenPassViT refused 3 layers: its default stop
    heads fell twice on one layer)."""
    kwargs = dict(embed_dims=96, num_layers=num_layers, num_heads=3)
    torch.manual_seed(0)
    theirs = perturb(VisionTransformer(**kwargs))
    ours = cls(**kwargs)
    ours.load_weights(theirs.state_dict(), 'mmseg')
    assert ours.img_size == theirs.img_size == (224, 224)
    assert ours.layers[0].ln1.eps == theirs.layers[0].ln1.eps == 1e-5
    assert_same_outputs(ours, theirs, [(224, 224), (48, 80), (17, 17)])


# ------------------------------------------------------------- mmdet PVTv2
@pytest.mark.parametrize('kwargs', [
    dict(embed_dims=32, num_layers=[2, 2, 2, 2]),  # mmdet's b0 config
    dict(num_layers=[2, 2, 2, 2]),  # b1
    # mmdet's attention drops the output projection's bias too (DiT kept it)
    dict(embed_dims=32, num_layers=[1, 1, 2, 1], qkv_bias=False),
])
def test_dit_is_mmdets_pvtv2_down_to_the_smallest_size_it_takes(kwargs):
    """Built from the same mmdet arguments (a stock config's backbone with
    only the type changed). 31x31 (every stage map at least its reduction
    ratio) is the smallest square mmdet's PVTv2 takes; DiT refused it."""
    kwargs = dict(kwargs, drop_path_rate=0.)
    torch.manual_seed(0)
    theirs = perturb(PyramidVisionTransformerV2(**kwargs))
    ours = DiT(**kwargs)
    ours.load_weights(theirs.state_dict(), 'the stock model')
    assert_same_outputs(ours, theirs, [(31, 31), (29, 45), (224, 224),
                                       (203, 301), (64, 256)])


def test_a_stock_pvtv2_config_with_our_type_loads_its_checkpoint(tmp_path):
    """mmdet's RetinaNet-PVTv2-b0 backbone with only ``type`` changed: its
    ``init_cfg`` has no type (mmdet's PVT reads any ``init_cfg`` as a
    checkpoint), here pointing to the stock model's weights."""
    cfg = Config.fromfile(Path(mmdet.__file__).parent / '.mim' / 'configs' /
                          'pvt' / 'retinanet_pvtv2-b0_fpn_1x_coco.py')
    kwargs = dict(cfg.model.backbone, drop_path_rate=0.)
    kwargs.pop('type')
    assert 'type' not in kwargs.pop('init_cfg')
    torch.manual_seed(0)
    theirs = perturb(PyramidVisionTransformerV2(**kwargs))
    path = tmp_path / 'pvt_v2_b0.pth'
    torch.save(theirs.state_dict(), path)
    ours = DiT(**kwargs, init_cfg=dict(checkpoint=str(path)))
    ours.init_weights()
    assert_same_outputs(ours, theirs, [(64, 64), (37, 53)])


# ------------------------------------------------------ the stock surface
def stock_defaults(cls) -> dict:
    """Every argument of the stock class's constructor with its default."""
    params = inspect.signature(cls.__init__).parameters
    defaults = {k: p.default for k, p in params.items()
                if p.default is not inspect.Parameter.empty}
    if cls is PyramidVisionTransformerV2:  # its **kwargs reach PVT(v1),
        # less the five it sets itself (mmdet 3.3)
        defaults = {k: v for k, v in stock_defaults(
            PyramidVisionTransformer).items() if k not in (
                'patch_sizes', 'paddings', 'use_abs_pos_embed',
                'norm_after_stage', 'use_conv_ffn')}
    return defaults
PEERS = [(PyramidVisionTransformerV2, DiT),
         (SwinTransformerV2, DiTSwinV2),
         (VisionTransformer, TokenPassViT),
         (VisionTransformer, MixedScaleViT)]


@pytest.mark.parametrize('stock, cls', PEERS)
def test_takes_every_stock_argument_and_exposes_the_stock_attributes(
        stock, cls):
    """Every constructor argument of the stock class, at its stock default,
    builds ours: the stock network, with the attributes the stock class
    sets (the scalar and list ones equal; modules by name)."""
    defaults = stock_defaults(stock)
    theirs, ours = stock(**defaults), cls(**defaults)
    missing = sorted(set(vars(theirs)) - set(vars(ours)) - {
        'layers', 'training'})  # PVT's stage list is DiT's ``stages``
    assert not missing, missing
    for name, value in vars(theirs).items():
        if not name.startswith('_') and isinstance(
                value, (int, float, str, bool, list, tuple)):
            mine = getattr(ours, name)
            assert (list(mine) if isinstance(mine, tuple) else mine) == (
                list(value) if isinstance(value, tuple) else value), name
    ours.load_weights(theirs.state_dict(), 'the stock model')  # the network


@pytest.mark.parametrize('cls, kwargs, names', [
    (DiT, dict(use_abs_pos_embed=True), 'use_abs_pos_embed'),
    (DiT, dict(num_stages=3, num_layers=[2, 2, 2]), 'num_stages'),
    (DiT, dict(use_conv_ffn=False), 'use_conv_ffn'),
    (DiT, dict(norm_cfg=dict(type='BN')), 'norm_cfg'),
    (DiT, dict(paddings=[0, 0, 0, 0]), 'paddings'),
    (DiT, dict(arch='b0', embed_dims=32), 'not both'),
    (DiTSwinV2, dict(use_abs_pos_embed=True), 'use_abs_pos_embed'),
    (DiTSwinV2, dict(arch='giant'), 'extra norms'),
    (DiTSwinV2, dict(stage_cfgs=dict(block_cfgs=dict())), 'stage_cfgs'),
])
def test_stock_arguments_we_do_not_build_raise_the_stock_type(cls, kwargs,
                                                              names):
    """The arguments listed in the README as not taken: an AssertionError
    (what the stock classes raise for arguments they refuse) naming it."""
    with pytest.raises(AssertionError, match=names):
        cls(**kwargs)


@pytest.mark.parametrize('stock, cls, kwargs', [
    (PyramidVisionTransformerV2, DiT, dict(out_indices=(0, 4))),
    (SwinTransformerV2, DiTSwinV2, dict(arch='unknown')),
    (SwinTransformerV2, DiTSwinV2, dict(window_size=[8, 8])),
    (VisionTransformer, TokenPassViT, dict(output_cls_token=True,
                                           with_cls_token=False)),
    (VisionTransformer, TokenPassViT, dict(img_size=(1, 2, 3))),
    (VisionTransformer, TokenPassViT, dict(out_indices='3')),
    (VisionTransformer, MixedScaleViT, dict(embed_dims=30, num_heads=4)),
    (VisionTransformer, TokenPassViT, dict(pretrained=3)),
    (VisionTransformer, TokenPassViT, dict(pretrained='a.pth', init_cfg=dict(
        type='Pretrained', checkpoint='b.pth'))),
    (PyramidVisionTransformerV2, DiT, dict(pretrained='a.pth', init_cfg=dict(
        type='Pretrained', checkpoint='b.pth'))),
    (PyramidVisionTransformerV2, DiT, dict(pretrain_img_size=(1, 2, 3))),
    (PyramidVisionTransformerV2, DiT, dict(drop_path_rat=0.1)),
    (SwinTransformerV2, DiTSwinV2, dict(window_sise=8)),
    (VisionTransformer, MixedScaleViT, dict(drop_path_rat=0.1)),
])
def test_bad_arguments_raise_what_the_stock_class_raises(stock, cls, kwargs):
    with pytest.raises(Exception) as theirs:
        stock(**kwargs)
    with pytest.raises(type(theirs.value)):
        cls(**kwargs)


@pytest.mark.parametrize('cls, typo, meant', [
    (DiT, 'budgett', 'budget'), (DiTSwinV2, 'window_mod', 'window_mode'),
    (TokenPassViT, 'stop_treshold', 'stop_threshold'),
    (MixedScaleViT, 'drop_path_rat', 'drop_path_rate')])
def test_a_misspelled_keyword_names_our_class_and_the_closest(cls, typo,
                                                             meant):
    """It named the base class the keyword reached (``RoutedBackbone``,
    mmseg's ``VisionTransformer``) and no keyword that is taken."""
    with pytest.raises(TypeError, match=f"^{cls.__name__} got .*'{typo}' "
                       f"\\(did you mean '{meant}'"):
        cls(**{typo: 0.5})


# ------------------------------------------------- load_from and init_cfg
def _stock_and_ours(family):
    """A stock backbone with perturbed weights, the kwargs of ours for the
    same network, and the width of its last map."""
    torch.manual_seed(0)
    if family == 'pvtv2':
        s = resolve_arch('b0')
        stock = PyramidVisionTransformerV2(
            embed_dims=s['embed_dims'][0], num_layers=s['depths'],
            num_heads=s['num_heads'], mlp_ratios=s['mlp_ratios'])
        return perturb(stock), dict(type='DiT', arch='b0'), 256
    if family == 'swinv2':
        kwargs = dict(arch=SWIN_SMALL, window_size=4, pad_small_map=True)
        return (perturb(SwinTransformerV2(**kwargs)),
                dict(type='DiTSwinV2', **kwargs), 256)
    kwargs = dict(embed_dims=96, num_layers=4, num_heads=3, img_size=64)
    return (perturb(VisionTransformer(**kwargs)),
            dict(type='TokenPassViT', **kwargs), 96)


def _classifier_cfg(backbone: dict, width: int, work_dir) -> Config:
    return Config(dict(
        default_scope='mmpretrain', work_dir=str(work_dir),
        model=dict(type='ImageClassifier', backbone=backbone,
                   neck=dict(type='GlobalAveragePooling'),
                   head=dict(type='LinearClsHead', num_classes=3,
                             in_channels=width))))


@pytest.mark.parametrize('family', ['pvtv2', 'swinv2', 'vit'])
def test_load_from_takes_the_stock_files_init_cfg_takes(family, tmp_path):
    """A stock model's checkpoint (mmdet PVTv2 in mmdet's layout, an
    mmpretrain Swin-v2 classifier, an mmseg ViT segmentor: ``backbone.``
    keys and a head) and the stock backbone's weights alone: the run guard
    accepts both as ``load_from`` (it refused them: the gates counted as
    required, mmdet's layout was not converted), mmengine's loading converts
    the layout, and the model computes what ``init_cfg`` gives it."""
    from mmengine.registry import DefaultScope
    from mmengine.runner.checkpoint import load_checkpoint
    from mmpretrain.registry import MODELS

    from dit_mm.engine.run_guards import (CheckpointMismatchError,
                                          check_checkpoint_fits,
                                          check_train_run)
    stock, backbone, width = _stock_and_ours(family)
    whole = tmp_path / 'stock_model.pth'
    torch.save(dict(meta={}, state_dict={
        **{f'backbone.{k}': v for k, v in stock.state_dict().items()},
        'head.fc.weight': torch.zeros(5, width)}), whole)
    bare = tmp_path / 'stock_backbone.pth'
    torch.save(stock.state_dict(), bare)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        # 'backbone' without its dot, as eight stock configs spell it
        expected = MODELS.build(dict(backbone, init_cfg=dict(
            type='Pretrained', checkpoint=str(whole), prefix='backbone')))
        expected.init_weights()
        # a whole model: the guard accepts it, mmengine loads it
        cfg = _classifier_cfg(backbone, width, tmp_path / 'run')
        assert check_checkpoint_fits(cfg, str(whole), 'load_from checkpoint',
                                     backbone_only=True) is False
        model = MODELS.build(cfg.model)
        model.init_weights()
        load_checkpoint(model, str(whole), map_location='cpu')
        assert_same_outputs(model.backbone, expected, [(64, 64), (45, 67)])
        # the backbone alone: it goes to the backbone's init_cfg
        cfg = _classifier_cfg(backbone, width, tmp_path / 'run')
        cfg.load_from = str(bare)
        check_train_run(cfg)
        assert cfg.load_from is None
        model = MODELS.build(cfg.model)
        model.init_weights()
        assert_same_outputs(model.backbone, expected, [(64, 64)])
        # tools/test.py wants a whole model: the backbone alone is named so
        with pytest.raises(CheckpointMismatchError, match='weights alone'):
            check_checkpoint_fits(cfg, str(bare), 'checkpoint')
    assert_same_outputs(expected, stock, [(64, 64)])
