# The gate stage of MSViT (cls_msvit_s_gate_imagenet.py) on the toy ImageNet
# set (tools/make_toy_data.py), shrunk for a CPU: a 6-layer ViT of width 96,
# 96x96 crops (a 3x3 grid of coarse regions), 300 iterations in which only the
# gate, its batch-shaping priors and the classifier train, at lr 5e-3 (the ViT
# stays as initialised, frozen); the generalised batch-shaping loss pulls the fraction
# of coarse regions to 0.5.
_base_ = '../cls_msvit_s_gate_imagenet.py'

data_root = 'data/toy/imagenet'
crop_size = 96
max_iters = 300

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=96, num_layers=6, num_heads=3),
        img_size=crop_size,
        scale_loss=dict(target=0.5, grid=(3, 3))),
    head=dict(in_channels=96))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=crop_size, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=crop_size, edge='short'),
    dict(type='CenterCrop', crop_size=crop_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=5e-3))

train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', by_epoch=False, T_max=max_iters)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=16)
