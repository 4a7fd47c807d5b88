"""The one-shot GPU benchmark (``tools/gpu/benchmark_kit.py``) rehearsed on
the CPU at a tiny size, and the two things it relies on: a peer attending
through SDPA computes the same function, and mmcv's NMS / RoIAlign run under
bfloat16 autocast. No timing is asserted."""
import json

import torch

from conftest import load_tool
from dit_mm.analysis.static_peer import attend_with_sdpa, static_peer_backbone
from dit_mm.models.backbones import TokenPassViT
from test_stock_peers import perturb


def test_the_kit_runs_every_model_end_to_end_on_the_cpu(tmp_path):
    kit = load_tool('tools/gpu/benchmark_kit.py', 'benchmark_kit')
    assert kit.main(['--device', 'cpu', '--tiny', '--out-dir',
                     str(tmp_path)]) == 0
    report = json.loads((tmp_path / 'kit.json').read_text())
    check = report['attention_check']  # bf16: one call against per image
    assert check['method'] == 'nested' and 0 <= check['self'] < 0.05
    assert [r['model'] for r in report['runs']] == [m for m, _ in kit.MODELS]
    table = (tmp_path / 'kit.md').read_text()
    for run in report['runs']:
        assert run['status'] == 'done', run
        args = json.loads(open(run['json']).read())['args']
        assert args['dtype'] == 'bf16' and args['peer_attention'] == 'sdpa'
        configs = {(r['part'], r['config']) for r in run['results']}
        for part in ('backbone', 'model'):
            assert {(part, 'peer'), (part, 'budget 1.0'),
                    (part, 'learned')} <= configs
        for row in run['results']:
            assert row['median_ms'] > 0 and row['peak_mb'] > 0
        assert table.count(f'| {run["model"]} | 64x128 |') == 2  # two parts
    # every budget met at 64x128: DiT-Swin-v2 drops whole blocks under its
    # blocks' whole-map parts (it had to spend more than 0.75 there before)
    assert 'below its minimum' not in table
    swin = next(r for r in report['runs'] if 'Swin' in r['model'])
    assert {'budget 0.75', 'budget 0.5'} <= {r['config']
                                            for r in swin['results']}
    # a budget a backbone refuses (benchmark.py --skip-infeasible left it
    # out) is said so in the table's rows
    swin['results'] = [r for r in swin['results']
                       if r['config'] != 'budget 0.5']
    assert all('below its minimum' in row for row in kit.summary_rows([swin]))


def test_a_peer_attending_through_sdpa_is_the_same_function():
    torch.manual_seed(0)
    backbone = TokenPassViT(arch=dict(embed_dims=64, num_layers=4,
                                      num_heads=2), img_size=(32, 32))
    perturb(backbone)
    peer = static_peer_backbone(backbone)  # in eval mode
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        stock = peer(x)
        assert attend_with_sdpa(peer) == 4
        sdpa = peer(x)
    for a, b in zip(stock, sdpa):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_mmcv_nms_and_roi_align_run_under_bfloat16_autocast():
    from mmcv.ops import RoIAlign, batched_nms
    torch.manual_seed(0)
    xy = torch.rand(30, 2) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(30, 2) * 20], 1)
    scores, labels = torch.rand(30), torch.randint(0, 3, (30,))
    cfg = dict(type='nms', iou_threshold=0.5)
    dets, keep = batched_nms(boxes, scores, labels, cfg)
    dets16, keep16 = batched_nms(boxes.bfloat16(), scores.bfloat16(), labels,
                                 cfg)
    assert dets16.dtype == torch.bfloat16 and len(keep16) > 0
    feats = torch.randn(1, 4, 16, 16)
    rois = torch.tensor([[0., 1., 1., 9., 9.], [0., 4., 2., 15., 12.]])
    align = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        pooled = align(feats.bfloat16(), rois.bfloat16())
    assert pooled.dtype == torch.bfloat16
    torch.testing.assert_close(pooled.float(), align(feats, rois),
                               atol=0.05, rtol=0.05)
