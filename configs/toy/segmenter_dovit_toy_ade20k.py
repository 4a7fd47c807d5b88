# Token-pass Segmenter (segmenter_dovit_s_ade20k.py) shrunk for the toy ADE20K
# set (tools/make_toy_data.py) and trained from scratch on a CPU: a 6-layer
# ViT of width 96 with stop heads after layers 1 and 3, small crops, and a
# threshold schedule from 1.0 (iteration 10) down to 0.9 (iteration 70).
# 480 iterations (about 1.5 min on one thread): after 120 some seeds have not
# yet learned one of the four classes and their budget sweeps are noise, after
# 480 the trade-offs of docs/budgets.md hold on every seed.
_base_ = ['../segmenter_dovit_s_ade20k.py', './_base_/toy_ade20k_classes.py']

data_root = 'data/toy/ade/ADEChallengeData2016'
crop_size = (128, 128)
image_scale = (512, 128)
max_iters = 480

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=96, num_layers=6, num_heads=3),
        img_size=crop_size,
        head_layers=[1, 3],
        drop_path_rate=0.0,
        num_classes=4,  # the toy set's classes (_base_/toy_ade20k_classes.py)
        stop_threshold=0.9,
        threshold_schedule=dict(start=1.0, begin=10, end=70)),
    decode_head=dict(
        num_classes=4,
        in_channels=96, channels=96, embed_dims=96, num_heads=3,
        num_layers=1),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=train_pipeline,
                 metainfo=dict(classes={{_base_.toy_ade20k_classes}})))
val_dataloader = dict(
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=test_pipeline,
                 metainfo=dict(classes={{_base_.toy_ade20k_classes}})))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.01))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
