# The toy token-pass Segmenter (segmenter_dovit_toy_ade20k.py: data, 128x128
# crops, head) with the mixed-scale backbone of segmenter_msvit_s_ade20k.py
# shrunk the same way, trained whole from scratch on a CPU (the second recipe
# stage without the first): a 6-layer ViT of width 96, a 4x4 grid of coarse
# regions, the generalised batch-shaping loss pulling half of them to coarse
# tokens, and the full-size configs' route per iteration (the learned gate 75%,
# all fine 15%, a drawn budget 10%). 960 iterations (about 3 min on one
# thread): after 480 its seeds differed by up to 14.6 mIoU, after 960 by up to
# 2.9 (docs/budgets.md, "Training for every budget").
_base_ = './segmenter_dovit_toy_ade20k.py'
max_iters = 960

model = dict(
    type='DynamicEncoderDecoder',
    backbone=dict(
        _delete_=True,
        type='MixedScaleViT',
        arch=dict(embed_dims=96, num_layers=6, num_heads=3),
        img_size=(128, 128),
        out_indices=-1,
        final_norm=True,
        drop_path_rate=0.0,
        norm_cfg=dict(type='LN', eps=1e-6, requires_grad=True),
        patch_bias=True,  # timm / DeiT weights (mmseg's default: no bias)
        scale_gate=dict(hidden_dims=(64, 64), init_logit=3.0),
        scale_loss=dict(
            type='GeneralizedBatchShapingLoss', target=0.5, weight=1.0,
            grid=(4, 4)),
        budget_sampling=dict(learned=0.75, full=0.15, low=0.3)))

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
