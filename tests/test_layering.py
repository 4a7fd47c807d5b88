"""The packages of dit_mm import only downwards (issue 20): the cost models
the backbones solve budgets with are in ``core``, beneath the models, so the
models no longer import ``analysis``, which measures them; the scope of a
config is the registry's, so ``visualization`` no longer imports ``engine``,
whose hooks draw with it."""
import ast
from pathlib import Path

from conftest import ROOT

# a package may import those of a lower rank only
RANKS = {'version': 0, 'registry': 0, 'core': 0, 'toydata': 0, 'models': 1,
         'analysis': 2, 'visualization': 2, 'engine': 3}


def imported_packages(path: Path, text: str = None):
    """``(line, package)`` of every dit_mm package ``path`` (or ``text`` as
    if it were there) imports."""
    here = path.relative_to(ROOT).with_suffix('').parts  # dit_mm, pkg, ...
    for node in ast.walk(ast.parse(path.read_text() if text is None
                                   else text)):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = list(here[:len(here) - node.level])
            target += (node.module or '').split('.') if node.module else []
            if not node.module and len(target) == 1:  # from . import a, b
                targets = [[*target, a.name] for a in node.names]
            else:
                targets = [target]
        elif isinstance(node, ast.ImportFrom):
            targets = [node.module.split('.')]
        elif isinstance(node, ast.Import):
            targets = [a.name.split('.') for a in node.names]
        else:
            continue
        for target in targets:
            if len(target) > 1 and target[0] == 'dit_mm':
                yield node.lineno, target[1]


def test_every_import_between_packages_goes_down():
    upward, unknown = [], set()
    for path in sorted((ROOT / 'dit_mm').rglob('*.py')):
        parts = path.relative_to(ROOT / 'dit_mm').with_suffix('').parts
        if parts == ('__init__',):
            continue  # the package itself gathers them all
        source = parts[0]
        for line, target in imported_packages(path):
            unknown |= {p for p in (source, target) if p not in RANKS}
            if target != source and RANKS.get(target, 9) >= RANKS.get(
                    source, -1):
                upward.append(f'{path.relative_to(ROOT)}:{line} imports '
                              f'dit_mm.{target}')
    assert not unknown, f'packages with no rank here: {sorted(unknown)}'
    assert not upward, '\n'.join(upward)


def test_the_walk_sees_relative_and_absolute_imports():
    """The check can fail: an upward import of either form is found."""
    module = ROOT / 'dit_mm' / 'models' / 'layers' / 'probe.py'  # not a file
    found = [t for _, t in imported_packages(module, (
        'from ...analysis import task_model\n'
        'import dit_mm.engine.cli\n'
        'from .. import tokens\n'))]
    assert found == ['analysis', 'engine', 'models']


def test_every_dynamic_backbone_implements_the_protocol():
    """The tools ask ``isinstance(backbone, DynamicBackbone)``: each family
    is one, with nothing abstract left, and reports a ``RouteStats``."""
    import pytest
    from mmengine.model import BaseModule

    from dit_mm.analysis.task_model import is_dynamic
    from dit_mm.models.backbones import (DiT, DiTSwinV2, MixedScaleViT,
                                         TokenPassViT)
    from dit_mm.models.common.dynamic import DynamicBackbone
    from dit_mm.models.routing import (MixedScaleInfo, RouteStats,
                                       RoutingInfo, TokenPassInfo)
    families = {DiT: 'dit', DiTSwinV2: 'dit', TokenPassViT: 'token_pass',
                MixedScaleViT: 'mixed_scale'}
    for cls, family in families.items():
        assert issubclass(cls, DynamicBackbone), cls
        assert not cls.__abstractmethods__, cls
        # the backbone lives in its family's folder, beside its static peer
        assert cls.__module__.startswith(f'dit_mm.models.{family}.'), cls
        assert (ROOT / 'dit_mm' / 'models' / family / 'static_peer.py'
                ).is_file() or family == 'mixed_scale'
        assert cls.peer_scope in ('mmdet', 'mmseg', 'mmpretrain')
        assert cls.peer_name.startswith(cls.peer_scope + ' ')
    for stats in (RoutingInfo, TokenPassInfo, MixedScaleInfo):
        assert issubclass(stats, RouteStats)

    class WithoutLosses(BaseModule, DynamicBackbone):
        def minimum_budget(self, img_hw):
            return 0.

        def build_static_peer(self):
            return None

    with pytest.raises(TypeError, match='abstract'):
        WithoutLosses()
    assert not is_dynamic(BaseModule()) and not is_dynamic(None)


def test_a_forward_returns_its_stats_and_leaves_nothing_on_the_module():
    """Each family's forward returns the feature maps carrying their
    ``RouteStats``; the module's attributes are the same after a training
    forward, and ``aux_losses`` reads the statistics it is given, so the
    losses of a forward do not depend on what ran after it."""
    import pytest
    import torch

    from dit_mm.models.backbones import (DiT, DiTSwinV2, MixedScaleViT,
                                         TokenPassViT)
    from dit_mm.models.routing import RoutedFeatures, RouteStats
    vit = dict(arch=dict(embed_dims=32, num_layers=4, num_heads=2),
               img_size=64, num_classes=3)
    backbones = [
        DiT(arch='b0', budget_loss=dict(target=0.5)),
        DiTSwinV2(arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                            num_heads=[1, 1, 1, 1]),
                  window_size=2, budget_loss=dict(target=0.5)),
        TokenPassViT(aux_loss=None, stop_threshold=0.4, **vit),
        MixedScaleViT(scale_gate=dict(init_logit=0.0), **vit)]
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 96, 96) * 3
    for backbone in backbones:
        name = type(backbone).__name__
        backbone.train()
        before = dict(vars(backbone))
        first = backbone(images[0])
        assert isinstance(first, RoutedFeatures), name
        assert isinstance(first.stats, RouteStats), name
        assert dict(vars(backbone)).keys() == before.keys(), name
        assert not any(isinstance(v, RouteStats)
                       for v in vars(backbone).values()), name
        second = backbone(images[1])
        ratios = [float(s.flops_fraction.mean()) for s in (first.stats,
                                                          second.stats)]
        assert ratios[0] != pytest.approx(ratios[1]), name
        for out, ratio in zip((first, second), ratios):
            logged = backbone.aux_losses(out.stats)['flops_ratio']
            assert float(logged) == pytest.approx(ratio), name
        with backbone.recording() as record:
            fourth = backbone(images[1])
            third = backbone(images[0])
        assert record.stats is third.stats
        assert record.shapes == [(96, 96), (64, 64)]
        # every image's fraction, in order (the sweep's spending column)
        assert torch.equal(record.flops_fractions(), torch.cat([
            fourth.stats.flops_fraction, third.stats.flops_fraction
        ]).detach().double()), name
        assert backbone.aux_losses(None) == {}, name
        if name == 'TokenPassViT':  # the stop heads, for the pictures
            assert third.stats.head_layers == (0, 1, 2)
