# Token-pass ViT-B/16 (DoViT) with the Segmenter mask-transformer head on
# Cityscapes, 768x768 crops, 80k iterations.
# Trained from scratch unless pretrained ViT weights are given (nothing is
# downloaded): --cfg-options model.backbone.init_cfg.type=Pretrained
# model.backbone.init_cfg.checkpoint=PATH (mmseg or timm / DeiT layout).
_base_ = [
    './_base_/models/dovit_vit-b16_segmenter.py',
    'mmseg::_base_/datasets/cityscapes_768x768.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_80k.py'
]
custom_imports = dict(imports=['dit_mm'], allow_failed_imports=False)

crop_size = (768, 768)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        img_size=crop_size,
        num_classes=19,
        threshold_schedule=dict(start=1.0, begin=0, end=40000)),
    decode_head=dict(num_classes=19),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(512, 512)))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0))
train_dataloader = dict(batch_size=1)  # x 8 GPUs
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
