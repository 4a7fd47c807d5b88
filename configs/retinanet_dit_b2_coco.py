# RetinaNet with a DiT-b2 backbone and the routing-aware FPN on COCO, 1x.
# mmdet's stock RetinaNet with the backbone, the neck and the model type
# (DynamicRetinaNet adds loss_budget) swapped; AdamW as in PVTv2.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['dit_mm'], allow_failed_imports=False)

model = dict(
    type='DynamicRetinaNet',
    backbone=dict(
        _delete_=True,
        type='DiT',
        arch='b2',
        drop_path_rate=0.1,
        stop_threshold=0.01,
        budget_loss=dict(target=0.7, weight=2.0, warmup_iters=1000),
        # every iteration trains the learned route and one drawn fixed
        # route: the static one, or a budget from [0.3, 0.75) (docs/
        # budgets.md: training for every budget); None: the learned route
        # alone, the single-target recipe
        budget_sampling=dict(sandwich=True, full=0.25, low=0.3, high=0.75)),
    neck=dict(type='RoutedFPN', in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001),
    paramwise_cfg=dict(
        custom_keys={'.gates.': dict(lr_mult=10.0, decay_mult=0.0)}))
