"""The README's main job: tools/demo.sh trains Mask R-CNN on the toy COCO set
on a CPU, its bbox and segm mAP are well above zero, and it draws the routing
of one val image; run again, it does not train a second time."""
import os
import subprocess

import cv2

from conftest import ROOT
from dit_mm.visualization import GAP, TITLE_HEIGHT
from test_tools import metric


def run_demo(work_dir):
    env = dict(os.environ, WORK_DIR=str(work_dir), PYTHONUNBUFFERED='1')
    proc = subprocess.run(['bash', 'tools/demo.sh'], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return proc.stdout


def check_routing_picture(out, work_dir):
    """routing.png: the first val image and its four stages' density maps."""
    path = work_dir / 'routing.png'
    assert f'drawn in {path}' in out, out[-3000:]
    assert 'realized FLOPs:' in out
    picture = cv2.imread(str(path))
    assert picture is not None, f'{path} is not a readable picture'
    first = sorted((ROOT / 'data/toy/coco/val2017').glob('*.jpg'))[0]
    h, w = cv2.imread(str(first)).shape[:2]
    assert picture.shape == (TITLE_HEIGHT + h, 5 * w + 4 * GAP, 3)
    return path.read_bytes()


def test_demo_learns_and_a_second_run_only_evaluates(tmp_path):
    out = run_demo(tmp_path)
    bbox, segm = metric(out, 'coco/bbox_mAP'), metric(out, 'coco/segm_mAP')
    assert bbox > 0.3 and segm > 0.3, (bbox, segm)
    picture = check_routing_picture(out, tmp_path)
    again = run_demo(tmp_path)
    assert 'training is done, evaluating it again' in again
    assert 'Iter(train)' not in again
    assert metric(again, 'coco/bbox_mAP') == bbox
    assert check_routing_picture(again, tmp_path) == picture


def test_demo_keeps_a_work_dir_of_another_model(tmp_path):
    """A work dir with checkpoints of another config (an older demo) is neither
    resumed nor evaluated with this config, and is left as it was."""
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_300.pth'))
    (tmp_path / 'iter_300.pth').write_bytes(b'weights of another model')
    (tmp_path / 'maskrcnn_r18_toy_coco.py').write_text('# another config\n')
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    env = dict(os.environ, WORK_DIR=str(tmp_path))
    proc = subprocess.run(['bash', 'tools/demo.sh'], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert 'holds a run of another config' in proc.stdout
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
