"""The toy sets are deterministic, never overwrite the user's files, and the real
dataset classes and metrics of mmdet, mmseg and mmpretrain read them unchanged."""
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from conftest import ROOT, load_tool
from dit_mm.toydata import (ToyDataExistsError, make_ade20k, make_cityscapes,
                            make_coco, make_imagenet)


def in_scope(scope):
    """Dataset pipelines resolve transform names in the library's own scope."""
    return DefaultScope.overwrite_default_scope(scope)


def tree_digest(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    make_coco(tmp_path / 'a', seed=3, num_train=4, num_val=2)
    make_coco(tmp_path / 'b', seed=3, num_train=4, num_val=2)
    make_coco(tmp_path / 'c', seed=4, num_train=4, num_val=2)
    assert tree_digest(tmp_path / 'a') == tree_digest(tmp_path / 'b')
    assert tree_digest(tmp_path / 'a') != tree_digest(tmp_path / 'c')


def test_second_run_is_a_no_op(tmp_path):
    assert make_ade20k(tmp_path, num_train=2, num_val=1)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')}
    assert not make_ade20k(tmp_path, num_train=2, num_val=1)
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.rglob('*')}


def test_refuses_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / 'annotations' / 'instances_train2017.json'
    mine.parent.mkdir()
    mine.write_text('my real annotations')
    with pytest.raises(ToyDataExistsError, match='not made by the dit_mm'):
        make_coco(tmp_path, num_train=2, num_val=1)
    assert mine.read_text() == 'my real annotations'
    assert sorted(p.name for p in tmp_path.rglob('*')) == [
        'annotations', 'instances_train2017.json']


def test_other_settings_need_overwrite(tmp_path):
    make_imagenet(tmp_path, num_train_per_class=2, num_val_per_class=1)
    before = tree_digest(tmp_path)
    with pytest.raises(ToyDataExistsError, match='--overwrite'):
        make_imagenet(tmp_path, num_train_per_class=3, num_val_per_class=1)
    assert tree_digest(tmp_path) == before  # refused: nothing written
    assert make_imagenet(tmp_path, num_train_per_class=3, num_val_per_class=1,
                         overwrite=True)
    assert len((tmp_path / 'meta' / 'train.txt').read_text().split('\n')) == 10


def test_overwrite_keeps_a_file_the_user_added_inside_a_set(tmp_path):
    """``--overwrite`` removed the whole folder, a file the user had put in
    it too."""
    make_imagenet(tmp_path, num_train_per_class=2, num_val_per_class=1)
    mine = tmp_path / 'meta' / 'my_notes.txt'
    mine.write_text('mine')
    before = tree_digest(tmp_path)
    with pytest.raises(ToyDataExistsError, match='meta/my_notes.txt'):
        make_imagenet(tmp_path, num_train_per_class=3, num_val_per_class=1,
                      overwrite=True)
    assert tree_digest(tmp_path) == before
    mine.unlink()
    assert make_imagenet(tmp_path, num_train_per_class=3, num_val_per_class=1,
                         overwrite=True)


def test_coco_dataset_and_metric_read_the_toy_set(tmp_path):
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from mmdet.structures.mask import BitmapMasks
    make_coco(tmp_path, num_train=6, num_val=4)
    ann_file = str(tmp_path / 'annotations/instances_val2017.json')
    with in_scope('mmdet'):
        dataset = CocoDataset(
            data_root=str(tmp_path),
            ann_file='annotations/instances_val2017.json',
            data_prefix=dict(img='val2017/'), test_mode=True, pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
            ])
        items = list(dataset)
    assert len(dataset) == 4
    assert len(dataset.metainfo['classes']) == 80
    metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    for item in items:  # ground truth as prediction: a perfect score
        h, w = item['ori_shape']
        masks = item['gt_masks'].to_ndarray().astype(bool)
        assert isinstance(item['gt_masks'], BitmapMasks) and masks.any()
        pred = dict(bboxes=torch.as_tensor(item['gt_bboxes'].tensor),
                    scores=torch.ones(len(masks)),
                    labels=torch.as_tensor(item['gt_bboxes_labels']),
                    masks=torch.as_tensor(masks))
        metric.process({}, [dict(img_id=item['img_id'], ori_shape=(h, w),
                                 pred_instances=pred)])
    results = metric.evaluate(len(dataset))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0, abs=1e-3)
    assert results['coco/segm_mAP'] > 0.95


def _perfect_miou(dataset):
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    seen = set()
    with in_scope('mmseg'):
        items = list(dataset)
    for item in items:
        label = torch.from_numpy(item['gt_seg_map'].astype(np.int64))[None]
        seen.update(label.unique().tolist())
        sample = SegDataSample(
            gt_sem_seg=PixelData(data=label),
            pred_sem_seg=PixelData(data=label))
        metric.process({}, [sample.to_dict()])
    return metric.evaluate(len(dataset))['mIoU'], seen


def ade20k_val(root, **dataset_args):
    from mmseg.datasets import ADE20KDataset
    with in_scope('mmseg'):
        return ADE20KDataset(
            data_root=str(root), data_prefix=dict(
                img_path='images/validation',
                seg_map_path='annotations/validation'),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', reduce_zero_label=True)],
            **dataset_args)


def test_ade20k_dataset_and_iou_metric_read_the_toy_set(tmp_path):
    """ADE20K's 150 classes, and the four the toy configs keep (the classes
    the set draws: mmseg maps the others' labels to 255)."""
    from mmengine import Config
    from dit_mm.toydata.ade20k import drawn_classes
    make_ade20k(tmp_path, num_train=2, num_val=3)
    dataset = ade20k_val(tmp_path)
    assert len(dataset) == 3
    miou, seen = _perfect_miou(dataset)
    assert miou == pytest.approx(100.0)
    names = [dataset.metainfo['classes'][i] for i in seen if i != 255]
    assert 'wall' in names and len(names) >= 2
    assert set(names) <= set(drawn_classes())
    classes = Config.fromfile(str(
        ROOT / 'configs/toy/_base_/toy_ade20k_classes.py')).toy_ade20k_classes
    assert classes == drawn_classes() == ('wall', 'painting', 'tent', 'ball')
    four = ade20k_val(tmp_path, metainfo=dict(classes=classes))
    miou, seen_of_four = _perfect_miou(four)
    assert miou == pytest.approx(100.0)
    assert {four.metainfo['classes'][i] for i in seen_of_four} == set(names)
    configs = sorted((ROOT / 'configs/toy').glob('*_toy_ade20k.py'))
    assert len(configs) == 4
    for name in configs:
        cfg = Config.fromfile(str(name))
        heads = [cfg.model.decode_head, cfg.model.get('auxiliary_head'),
                 cfg.model.backbone if 'dovit' in name.stem else None]
        assert {h.num_classes for h in heads if h} == {len(classes)}, name
        for loader in ('train', 'val', 'test'):
            dataset = cfg[f'{loader}_dataloader'].dataset
            assert dataset.metainfo.classes == classes, (name, loader)


def test_cityscapes_dataset_reads_the_toy_set(tmp_path):
    from mmseg.datasets import CityscapesDataset
    make_cityscapes(tmp_path, num_train=2, num_val=2)
    with in_scope('mmseg'):
        dataset = CityscapesDataset(
            data_root=str(tmp_path), data_prefix=dict(
                img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations')])
    assert len(dataset) == 2
    miou, seen = _perfect_miou(dataset)
    assert miou == pytest.approx(100.0)
    names = {dataset.metainfo['classes'][i] for i in seen}
    assert {'road', 'sky'} <= names and len(names) >= 3


def test_imagenet_dataset_and_accuracy_read_the_toy_set(tmp_path):
    from mmpretrain.datasets import ImageNet
    from mmpretrain.evaluation import Accuracy
    make_imagenet(tmp_path, num_train_per_class=2, num_val_per_class=2)
    for split, size in (('train', 6), ('val', 6)):
        with in_scope('mmpretrain'):
            dataset = ImageNet(data_root=str(tmp_path), split=split,
                               pipeline=[dict(type='LoadImageFromFile')])
        assert len(dataset) == size
        assert len(dataset.metainfo['classes']) == 1000
    labels = torch.as_tensor(dataset.get_gt_labels())
    assert len(labels.unique()) == 3
    scores = torch.nn.functional.one_hot(labels, 1000).float()
    acc = Accuracy.calculate(scores, labels, topk=(1, ))
    assert float(acc[0][0]) == pytest.approx(100.0)


def test_a_larger_val_set_extends_the_default_one(tmp_path, monkeypatch):
    """``make_toy_data.py --num-val N`` (less evaluation noise for measured
    trade-offs): the first val images are the default set's, byte for byte;
    a count below one is refused."""
    tool = load_tool('tools/make_toy_data.py', 'toy_tool_num_val')
    make_ade20k(tmp_path / 'small', num_train=2, num_val=2)
    for argv in (['--num-val', '5'], ['--num-val', '0']):
        monkeypatch.setattr(sys, 'argv', [
            'make_toy_data.py', '--out', str(tmp_path / 'large'), '--sets',
            'ade20k', *argv])
        if argv[1] == '0':
            with pytest.raises(SystemExit):
                tool.main()
            continue
        tool.main()
    val = Path('images/validation')
    small = sorted((tmp_path / 'small' / val).iterdir())
    large = sorted((tmp_path / 'large/ade/ADEChallengeData2016' / val)
                   .iterdir())
    assert len(small) == 2 and len(large) == 5
    assert [p.read_bytes() for p in small] == [p.read_bytes()
                                               for p in large[:2]]
