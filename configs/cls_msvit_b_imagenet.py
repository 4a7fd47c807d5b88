# Mixed-scale ViT-B/16 (MSViT) classification on ImageNet-1k through
# mmpretrain, 224x224 (a 7x7 grid of coarse regions): the second stage of
# MSViT's recipe, everything is fine-tuned for 30 epochs (DeiT's data
# pipeline, mixup / cutmix, label smoothing), starting from the gate stage's
# last checkpoint (cls_msvit_b_gate_imagenet.py; change load_from to start
# elsewhere). DynamicImageClassifier adds loss_scale.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['dit_mm'], allow_failed_imports=False)

model = dict(
    type='DynamicImageClassifier',
    backbone=dict(
        type='MixedScaleViT',
        arch='b',
        img_size=224,
        out_type='cls_token',
        final_norm=True,
        norm_cfg=dict(type='LN', eps=1e-6),  # DeiT's (mmseg's default: 1e-5)
        patch_bias=True,  # DeiT's (mmseg's default: no bias)
        drop_path_rate=0.1,
        scale_gate=dict(hidden_dims=(64, 64), init_logit=3.0),
        scale_loss=dict(
            type='GeneralizedBatchShapingLoss', target=0.5, weight=1.0,
            grid=(7, 7))),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

optim_wrapper = dict(
    optimizer=dict(lr=5e-5),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.scale_gate.': dict(lr_mult=10.0, decay_mult=0.0),
            '.scale_loss.': dict(lr_mult=10.0, decay_mult=0.0)
        }),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=30, by_epoch=True, begin=0, end=30)
]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
load_from = 'work_dirs/cls_msvit_b_gate_imagenet/epoch_5.pth'
