"""The pinned OpenMMLab stack is installed and mmcv's compiled ops run on it."""
import importlib
import re
import subprocess
import sys

import pytest
import torch

PINNED = {
    'mmengine': '0.10.7',
    'mmcv': '2.1.0',
    'mmdet': '3.3.0',
    'mmseg': '1.2.2',
    'mmpretrain': '1.2.0',
}


@pytest.mark.parametrize('module,version', sorted(PINNED.items()))
def test_pinned_versions(module, version):
    assert importlib.import_module(module).__version__ == version


def test_all_libraries_import_together():
    import dit_mm  # noqa: F401
    import mmcv.ops  # noqa: F401
    import mmdet  # noqa: F401
    import mmpretrain.models  # noqa: F401
    import mmseg  # noqa: F401
    import torchvision.ops  # noqa: F401
    assert torch.__version__.split('+')[0] < '2.14'


def test_mmcv_nms_keeps_the_expected_boxes():
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.],
                          [50., 50., 60., 60.], [0., 0., 10., 9.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [3, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.95, 0.7]))


def test_mmcv_roi_align_is_exact_on_a_linear_ramp():
    """Bilinear sampling of f(y, x) = x is exact, so each bin holds its mean x."""
    from mmcv.ops import RoIAlign
    from torchvision.ops import roi_align
    feat = torch.arange(8.).repeat(1, 1, 8, 1)  # (1, 1, 8, 8), value = x
    rois = torch.tensor([[0., 0., 0., 4., 4.], [0., 2., 1., 6., 7.]])
    out = RoIAlign((2, 2), spatial_scale=1., sampling_ratio=2,
                   aligned=True)(feat, rois)
    assert torch.allclose(out[0, 0], torch.tensor([[0.5, 2.5], [0.5, 2.5]]))
    reference = roi_align(feat, rois, (2, 2), 1., 2, aligned=True)
    assert torch.allclose(out, reference, atol=1e-5)


def test_xdist_keeps_a_group_on_one_worker(tmp_path):
    """The README's test command leans on ``--dist loadgroup``: the tests of
    one shared run (tests/conftest.py's trained detector, test_fsdp.py's
    FSDP run) go to one worker. pytest 9.2 with pytest-xdist 3.8 drops the
    groups silently (pytest-xdist#1386); this catches such a pair."""
    (tmp_path / 'test_grouped.py').write_text(
        'import pytest\n'
        "pytestmark = pytest.mark.xdist_group('g')\n"
        "@pytest.mark.parametrize('i', range(6))\n"
        'def test_worker(i):\n'
        '    pass\n')
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-n', '2', '--dist', 'loadgroup',
         '-p', 'no:cacheprovider', '-v', 'test_grouped.py'],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    workers = re.findall(r'\[(gw\d+)\] .*PASSED', proc.stdout)
    assert len(workers) == 6 and len(set(workers)) == 1, proc.stdout
