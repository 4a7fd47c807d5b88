"""What tools/train.py and tools/test.py do to a config, per library."""
import copy
from argparse import Namespace

import pytest
import torch
from mmengine.config import Config

from dit_mm.engine.cli import (apply_test_args, apply_train_args,
                               enable_visualization, load_config)

CONFIGS = {
    'mmdet': 'configs/toy/maskrcnn_dit_b0_toy_coco.py',
    'mmseg': 'configs/toy/upernet_dit_b0_toy_ade20k.py',
    'mmpretrain': 'configs/toy/cls_dit_b0_toy_imagenet.py',
}


def train_args(config, **kwargs):
    defaults = dict(config=config, work_dir=None, amp=False,
                    auto_scale_lr=False, resume=None)
    return Namespace(**{**defaults, **kwargs})


@pytest.fixture(params=sorted(CONFIGS))
def cfg(request, repo_root):
    return load_config(str(repo_root / CONFIGS[request.param]))


def test_unknown_scope_and_missing_config_are_named(tmp_path):
    path = tmp_path / 'other.py'
    path.write_text("default_scope = 'mmocr'\n")
    with pytest.raises(ValueError, match="'mmocr'"):
        load_config(str(path))
    with pytest.raises(FileNotFoundError, match='nothere.py'):
        load_config(str(tmp_path / 'nothere.py'))


def test_amp_is_fp16_amp_on_a_gpu_and_bf16_autocast_on_a_cpu(
        cfg, monkeypatch):
    gpu_bf16 = copy.deepcopy(cfg)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg.optim_wrapper.loss_scale = 512.  # fp16's; bf16 goes without
    apply_train_args(cfg, train_args('c.py', amp=True))
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg.optim_wrapper.type = 'OptimWrapper'
    apply_train_args(cfg, train_args('c.py', amp=True))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    gpu_bf16.optim_wrapper.dtype = 'bfloat16'  # mmengine's choice of bf16
    apply_train_args(gpu_bf16, train_args('c.py', amp=True))
    assert gpu_bf16.optim_wrapper.type == 'AmpOptimWrapper'
    assert gpu_bf16.optim_wrapper.dtype == 'bfloat16'


def test_work_dir_priority_and_flags(cfg, tmp_path):
    apply_train_args(cfg, train_args('configs/x/my_config.py',
                                     auto_scale_lr=True))
    assert cfg.work_dir == './work_dirs/my_config'
    assert cfg.auto_scale_lr.enable is True
    assert cfg.custom_hooks[-1] == dict(type='IterationSeedHook')
    apply_train_args(cfg, train_args('c.py', work_dir=str(tmp_path)))
    assert cfg.work_dir == str(tmp_path)
    assert [h['type'] for h in cfg.custom_hooks].count(
        'IterationSeedHook') == 1


def test_resume_auto_and_from_a_file(cfg, tmp_path):
    apply_train_args(cfg, train_args('c.py', resume='auto'))
    assert cfg.resume is True and cfg.load_from is None
    ckpt = tmp_path / 'iter_1.pth'
    ckpt.write_bytes(b'')
    apply_train_args(cfg, train_args('c.py', resume=str(ckpt)))
    assert cfg.resume is True and cfg.load_from == str(ckpt)


def test_auto_scale_lr_without_a_base_batch_size_is_refused(tmp_path):
    cfg = Config(dict(default_scope='mmdet', optim_wrapper=dict()))
    with pytest.raises(RuntimeError, match='base_batch_size'):
        apply_train_args(cfg, train_args('c.py', auto_scale_lr=True))


def test_cpu_distributed_uses_gloo_and_no_device_ids(cfg):
    cfg.launcher = 'pytorch'
    apply_train_args(cfg, train_args('c.py'))
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None


@pytest.mark.skipif(torch.cuda.is_available(), reason='SyncBN runs there')
def test_cpu_distributed_runs_a_stock_configs_syncbn_as_bn(repo_root):
    """``dist_train.sh configs/upernet_dit_b2_ade20k.py 2`` on a CPU failed:
    the stock UperNet head's SyncBN works with GPU modules only."""
    cfg = load_config(str(repo_root / 'configs/upernet_dit_b2_ade20k.py'))
    assert 'SyncBN' in str(cfg.model)
    cfg.launcher = 'pytorch'
    apply_train_args(cfg, train_args('c.py'))
    assert 'SyncBN' not in str(cfg.model)
    assert cfg.model.decode_head.norm_cfg.type == 'BN'


@pytest.mark.parametrize('scope, model, dynamic', [
    ('mmdet', 'RetinaNet', 'DynamicRetinaNet'),
    ('mmseg', 'EncoderDecoder', 'DynamicEncoderDecoder')])
def test_a_budget_loss_the_model_type_never_adds_is_refused(
        scope, model, dynamic):
    """The backbone's budget loss with the stock model type trained without
    it and said nothing."""
    from dit_mm.engine.run_guards import (UnusedLossError,
                                          check_budget_loss_is_added)
    backbone = dict(type='DiT', arch='b0', budget_loss=dict(target=0.5))
    cfg = Config(dict(default_scope=scope,
                      model=dict(type=model, backbone=backbone)))
    with pytest.raises(UnusedLossError, match=dynamic):
        check_budget_loss_is_added(cfg)
    cfg.model.type = dynamic
    check_budget_loss_is_added(cfg)
    cfg.model.type, cfg.model.backbone.budget_loss = model, None
    check_budget_loss_is_added(cfg)


def test_show_dir_turns_on_each_librarys_hook(cfg):
    enable_visualization(cfg, show_dir='vis')
    hook = cfg.default_hooks.visualization
    assert hook.interval == 1
    scope = cfg.default_scope
    if scope == 'mmdet':
        assert hook.draw and hook.test_out_dir == 'vis'
    elif scope == 'mmseg':
        assert hook.draw and cfg.visualizer.save_dir == 'vis'
    else:
        assert hook.enable and hook.out_dir == 'vis'


def test_test_args_need_an_existing_checkpoint(cfg, tmp_path):
    args = Namespace(config='c.py', checkpoint=str(tmp_path / 'no.pth'),
                     work_dir=None, show=False, show_dir=None, wait_time=0,
                     interval=1)
    with pytest.raises(FileNotFoundError, match='no.pth'):
        apply_test_args(cfg, args)
