# Token-pass UperNet (upernet_dovit_s_cityscapes.py) shrunk for the toy
# Cityscapes set (tools/make_toy_data.py): a 6-layer ViT of width 96 with stop
# heads after layers 1 and 3, outputs of layers 1, 3, 4, 5 through
# MultiLevelNeck, narrow BN heads, small crops, a CPU-sized schedule.
_base_ = '../upernet_dovit_s_cityscapes.py'

data_root = 'data/toy/cityscapes/'
crop_size = (128, 256)
image_scale = (512, 256)
max_iters = 120
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=96, num_layers=6, num_heads=3),
        img_size=crop_size,
        out_indices=(1, 3, 4, 5),
        head_layers=[1, 3],
        drop_path_rate=0.0,
        stop_threshold=0.9,
        threshold_schedule=dict(start=1.0, begin=10, end=70)),
    neck=dict(in_channels=[96] * 4, out_channels=96),
    decode_head=dict(in_channels=[96] * 4, channels=64, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=96, channels=64, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
