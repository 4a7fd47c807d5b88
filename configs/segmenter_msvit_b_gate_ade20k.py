# The first stage of MSViT's recipe for segmenter_msvit_b_ade20k.py: only the
# gate (with its batch-shaping priors) and the decode head train, 8k
# iterations, on a frozen ViT. Give the ViT's weights (nothing is downloaded):
# --cfg-options model.backbone.init_cfg.type=Pretrained
# model.backbone.init_cfg.checkpoint=PATH (mmseg or timm / DeiT layout), or
# load_from=PATH of a trained mmseg Segmenter ViT-B (its keys load as they are).
_base_ = './segmenter_msvit_b_ade20k.py'
model = dict(
    train_only=['backbone.scale_gate', 'backbone.scale_loss', 'decode_head'],
    backbone=dict(drop_path_rate=0.0))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=0, end=8000,
         by_epoch=False)
]
train_cfg = dict(max_iters=8000, val_interval=2000)
default_hooks = dict(checkpoint=dict(interval=2000))
load_from = None
