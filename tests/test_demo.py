"""The README's main job: tools/demo.sh trains Mask R-CNN on the toy COCO set
on a CPU and its bbox and segm mAP are well above zero; run again, it does
not train a second time."""
import os
import subprocess

from conftest import ROOT
from test_tools import metric


def run_demo(work_dir):
    env = dict(os.environ, WORK_DIR=str(work_dir), PYTHONUNBUFFERED='1')
    proc = subprocess.run(['bash', 'tools/demo.sh'], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return proc.stdout


def test_demo_learns_and_a_second_run_only_evaluates(tmp_path):
    out = run_demo(tmp_path)
    bbox, segm = metric(out, 'coco/bbox_mAP'), metric(out, 'coco/segm_mAP')
    assert bbox > 0.3 and segm > 0.3, (bbox, segm)
    again = run_demo(tmp_path)
    assert 'training is done, evaluating it again' in again
    assert 'Iter(train)' not in again
    assert metric(again, 'coco/bbox_mAP') == bbox
