"""The executed-FLOPs counter (dit_mm.analysis.flop_counter) and
tools/analysis_tools/get_flops.py: it agrees with mmengine's analyser on stock
models, with the analytic counts of DiT-b2 (the PVTv2 route) and ViT-B and with
the PVTv2 paper's 4.0 GFLOPs for PVTv2-b2; budget 0.5 halves the blocks;
kept tokens are all that is counted; what is left out is named."""
import json

import pytest
import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from torch import nn

from conftest import run_tool
from dit_mm.core import ViTCost, route_flops
from dit_mm.analysis.flop_counter import count_flops
from dit_mm.models.backbones import resolve_arch
from dit_mm.models.builder import build_task_model

TOOL = 'tools/analysis_tools/get_flops.py'

# our op kinds -> the names mmengine's analyser gives the same ops
ANALYSER_NAMES = dict(
    conv=['conv'], matmul=['linear', 'matmul', 'bmm', 'addmm', 'mm', 'einsum'],
    norm=['batch_norm', 'group_norm', 'layer_norm', 'instance_norm'],
    upsample=['upsample_nearest2d', 'upsample_bilinear2d', 'grid_sampler'],
    pool=['adaptive_avg_pool2d'])

NO_DOWNLOAD = 'model = dict(backbone=dict(init_cfg=None))'
STOCK = {
    'mmpretrain resnet18': ('mmpretrain::resnet/resnet18_8xb32_in1k.py',
                            (224, 224), ''),
    'mmpretrain vit-b (attention)': (
        'mmpretrain::vision_transformer/vit-base-p16_32xb128-mae_in1k.py',
        (224, 224), NO_DOWNLOAD),
    'mmdet retinanet r18': ('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py',
                            (128, 160), NO_DOWNLOAD),
    'mmseg upernet r18 (pool, bilinear)': (
        'mmseg::upernet/upernet_r18_4xb2-40k_cityscapes-512x1024.py',
        (128, 256),
        "norm_cfg = dict(type='BN', requires_grad=True)\n"
        'model = dict(pretrained=None, data_preprocessor=dict(size=None), '
        'backbone=dict(norm_cfg=norm_cfg), '
        'decode_head=dict(norm_cfg=norm_cfg), '
        'auxiliary_head=dict(norm_cfg=norm_cfg))'),
}


def stock_config(tmp_path, base, extra=''):
    path = tmp_path / 'stock.py'
    path.write_text(f"_base_ = '{base}'\n{extra}\n")
    return path


@pytest.mark.parametrize('name', sorted(STOCK))
def test_agrees_with_mmengine_analyser_on_stock_models(name, tmp_path):
    base, shape, extra = STOCK[name]
    model = build_task_model(Config.fromfile(stock_config(tmp_path, base,
                                                          extra)))
    x = torch.randn(1, 3, *shape)
    with torch.no_grad():
        ours = count_flops(model, lambda: model(x, mode='tensor'))
        analyser = FlopAnalyzer(model, inputs=(x, ))
        analyser.unsupported_ops_warnings(False)
        analyser.uncalled_modules_warnings(False)
        theirs = analyser.by_operator()
    for kind, names in ANALYSER_NAMES.items():
        assert ours.by_kind.get(kind, 0) == sum(theirs.get(n, 0)
                                                for n in names), kind
    # the one op the analyser does not support: scaled-dot-product attention
    if 'attention' in name:
        tokens, dims = 197, 768
        assert ours.by_kind['attention'] == 12 * 2 * tokens**2 * dims
        assert ours.total == analyser.total() + ours.by_kind['attention']
    else:
        assert ours.total == analyser.total()
        assert 'attention' not in ours.by_kind


def test_only_computed_tokens_count_and_ops_book_to_their_module():
    """A linear run on 3 of 10 gathered tokens through its weight directly
    (as the sparse blocks do) costs 3/10 of the dense call and is booked to
    the linear; the attention after it goes with it."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)

        def sparse(self, x, keep):
            qkv = F.linear(x[keep], self.qkv.weight, self.qkv.bias)
            q, k, v = qkv.view(1, 1, -1, 24).split(8, dim=-1)
            return F.scaled_dot_product_attention(q, k, v)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, x, keep):
            return self.block.sparse(x, keep)

    net, x = Net(), torch.randn(10, 8)
    keep = torch.tensor([1, 4, 7])
    with torch.no_grad():
        counter = count_flops(net, lambda: net(x, keep))
        dense = count_flops(net, lambda: net.block.qkv(x))
    assert dense.by_module == {'block.qkv': 10 * 8 * 24}
    assert counter.by_kind['matmul'] == 3 * 8 * 24
    assert counter.by_kind['attention'] == 3 * 3 * (8 + 8)
    assert dict(counter.by_module) == {'block.qkv': 3 * 8 * 24 + 3 * 3 * 16}


def flops_json(tmp_path, *args):
    out = tmp_path / 'flops.json'
    text = run_tool(TOOL, *args, '--out', out, '--no-progress')
    return json.loads(out.read_text()), text


def test_dit_b2_static_route_matches_analytic_count_and_budget_halves_blocks(
        tmp_path):
    """cls_dit_b2 at 224x224: the static route's backbone within 2% of the
    analytic PVTv2-b2 count, the whole classifier within 2% of the PVTv2
    paper's 4.0 GFLOPs; at --budget 0.5, about half the blocks' FLOPs."""
    data, text = flops_json(tmp_path, 'configs/cls_dit_b2_imagenet.py',
                            '--shape', 224, 224, '--num-images', 1,
                            '--budget', 0.5)
    analytic = route_flops(resolve_arch('b2'), (224, 224)) / 1e9
    static, dynamic = data['static'], data['dynamic']
    assert static['backbone'] == pytest.approx(analytic, rel=0.02)
    assert static['total'] == pytest.approx(4.0, rel=0.02)
    assert 0.4 < dynamic['backbone blocks'] / static['backbone blocks'] < 0.6
    assert data['own_account'] == pytest.approx(dynamic['backbone'], rel=0.02)
    assert '| backbone blocks |' in text and 'left out' in text
    assert 'gelu' in data['left_out']


def test_mmdet_pvtv2_b2_with_its_classifier_matches_the_paper():
    """mmdet's PVTv2-b2 with a 1000-class linear classifier on its pooled
    last map: the PVTv2 paper's 4.0 GFLOPs at 224x224, within 2%."""
    from mmdet.models.backbones import PyramidVisionTransformerV2
    backbone = PyramidVisionTransformerV2(
        embed_dims=64, num_layers=[3, 4, 6, 3], num_heads=[1, 2, 5, 8],
        mlp_ratios=[8, 8, 4, 4], out_indices=(3, )).eval()
    head = nn.Linear(512, 1000)

    def classify(x):
        return head(backbone(x)[-1].mean((2, 3)))

    with torch.no_grad():
        counter = count_flops(backbone, lambda: classify(
            torch.randn(1, 3, 224, 224)))
    assert counter.total / 1e9 == pytest.approx(4.0, rel=0.02)


def test_stock_model_through_the_tool_has_one_route(tmp_path):
    config = stock_config(tmp_path, *STOCK['mmpretrain resnet18'][::2])
    data, text = flops_json(tmp_path, config, '--shape', 64, 64,
                            '--num-images', 1)
    assert data['static'] == data['dynamic']
    assert data['static']['backbone'] > 0
    assert '| part | GFLOPs |' in text
    refused = run_tool(TOOL, config, '--shape', 64, 64, '--budget', 0.5,
                       check=False)
    assert '--budget needs a dynamic backbone' in refused


def test_vit_b_static_route_matches_analytic_count(tmp_path):
    data, _ = flops_json(tmp_path, 'configs/segmenter_dovit_b_ade20k.py',
                         '--shape', 224, 224, '--num-images', 1,
                         '--budget', 0.5)
    analytic = ViTCost(768, 3072, 12, 16).full(14 * 14) / 1e9
    assert data['static']['backbone'] == pytest.approx(analytic, rel=0.02)
    ratio = data['dynamic']['backbone'] / data['static']['backbone']
    assert 0.45 < ratio <= 0.51


def test_toy_detector_on_its_val_set_names_what_is_left_out(toy_data,
                                                            tmp_path):
    data, text = flops_json(tmp_path,
                            'configs/toy/maskrcnn_dit_b0_toy_coco.py',
                            '--num-images', 2, '--budget', 0.5)
    assert len(data['per_image']) == 2
    assert 'the first 2 val images' in data['source']
    for group in ('backbone', 'neck', 'rpn_head', 'roi_head'):
        assert data['static'][group] > 0, group
    assert data['dynamic']['backbone'] < 0.6 * data['static']['backbone']
    assert data['dynamic']['neck'] == pytest.approx(data['static']['neck'])
    assert data['outside'].get('RoIAlign', 0) > 0
    assert 'RoIAlign' in text and 'NMS' in text


def test_bad_budget_is_refused():
    text = run_tool(TOOL, 'configs/toy/maskrcnn_dit_b0_toy_coco.py',
                    '--budget', '1.5', check=False)
    assert 'a budget is' in text and '1.5' in text
