"""import dit_mm makes its classes visible in mmdet, mmseg and mmpretrain, and a
stock config needs only custom_imports to use them."""
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from dit_mm.registry import LIBRARIES, library_registries, register_model


@pytest.fixture
def probe_class():
    name = 'DitMmRegistryProbe'

    @register_model
    class DitMmRegistryProbe(torch.nn.Module):

        def __init__(self, width=2):
            super().__init__()
            self.width = width

    yield DitMmRegistryProbe
    for registry in library_registries('MODELS'):
        registry._module_dict.pop(name)


@pytest.mark.parametrize('scope', LIBRARIES)
def test_registered_once_built_from_every_scope(probe_class, scope):
    registry = dict(zip(LIBRARIES, library_registries('MODELS')))[scope]
    with DefaultScope.overwrite_default_scope(scope):
        built = registry.build(dict(type='DitMmRegistryProbe', width=3))
        scoped = registry.build(dict(type=f'{scope}.DitMmRegistryProbe'))
    assert isinstance(built, probe_class) and built.width == 3
    assert isinstance(scoped, probe_class)


def test_importing_dit_mm_reroutes_checkpoint_loading():
    code = ('from mmengine.runner.checkpoint import CheckpointLoader as C;'
            'import dit_mm;'
            'print(C._schemes[""].__module__)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == 'dit_mm.engine.checkpoint'


def test_stock_config_with_custom_imports_builds(repo_root):
    cfg = Config.fromfile(
        str(repo_root / 'configs/toy/maskrcnn_dit_b0_toy_coco.py'))
    assert cfg.custom_imports.imports == ['dit_mm']
    init_default_scope(cfg.default_scope)
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'DynamicMaskRCNN'
    assert type(model.backbone).__name__ == 'DiT'
