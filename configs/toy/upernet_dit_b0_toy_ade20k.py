# DiT-b0 UperNet (upernet_dit_b0_ade20k.py) on the toy ADE20K set
# (tools/make_toy_data.py), trained from scratch: narrow heads, small crops,
# a CPU-sized schedule, BN instead of SyncBN, a budget target of 0.5.
_base_ = ['../upernet_dit_b0_ade20k.py', './_base_/toy_ade20k_classes.py']

data_root = 'data/toy/ade/ADEChallengeData2016'
crop_size = (128, 128)
image_scale = (512, 128)
max_iters = 200
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        drop_path_rate=0.0,
        budget_loss=dict(target=0.5, weight=2.0, warmup_iters=50)),
    # the toy set's classes (_base_/toy_ade20k_classes.py)
    decode_head=dict(num_classes=4, channels=64, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=4, channels=64, norm_cfg=norm_cfg))

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
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=8)
