# The first stage of MSViT's recipe for cls_msvit_b_imagenet.py: only the gate
# (with its batch-shaping priors) and the linear classifier train, 5 epochs,
# on a frozen ViT, without mixup / cutmix. Give the ViT's weights (nothing is
# downloaded): --cfg-options model.backbone.init_cfg.type=Pretrained
# model.backbone.init_cfg.checkpoint=PATH (timm / DeiT or mmseg layout).
_base_ = './cls_msvit_b_imagenet.py'
model = dict(
    train_only=['backbone.scale_gate', 'backbone.scale_loss', 'head'],
    backbone=dict(drop_path_rate=0.0),
    train_cfg=None)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0))
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=5, by_epoch=True, begin=0, end=5)
]
train_cfg = dict(by_epoch=True, max_epochs=5, val_interval=1)
load_from = None
