# DiT-b2 classification on ImageNet-1k through mmpretrain, to pretrain DiT for
# the detection and segmentation configs: mmpretrain's Swin recipe (AdamW,
# 300 epochs, mixup / cutmix, label smoothing) with DynamicImageClassifier,
# which adds loss_budget.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py'
]
custom_imports = dict(imports=['dit_mm'], allow_failed_imports=False)

model = dict(
    type='DynamicImageClassifier',
    backbone=dict(
        type='DiT',
        arch='b2',
        out_indices=(3, ),
        drop_path_rate=0.1,
        stop_threshold=0.01,
        budget_loss=dict(target=0.7, weight=2.0, warmup_iters=5000),
        # every iteration trains the learned route and one drawn fixed
        # route: the static one, or a budget from [0.3, 0.75) (docs/
        # budgets.md: training for every budget); None: the learned route
        # alone, the single-target recipe
        budget_sampling=dict(sandwich=True, full=0.25, low=0.3, high=0.75)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=None),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
    ],
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'.gates.': dict(lr_mult=10.0, decay_mult=0.0)}))
