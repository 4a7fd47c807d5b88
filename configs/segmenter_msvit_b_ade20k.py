# Mixed-scale ViT-B/16 (MSViT: a gate per 32x32 region picks one coarse token
# or four fine ones, generalised batch-shaping loss towards half the regions
# coarse) with the Segmenter head on ADE20K, 512x512 crops, 160k iterations:
# segmenter_dovit_b_ade20k.py (data, schedule, optimiser) with the backbone
# swapped. The second stage of MSViT's recipe: everything trains, starting from
# the gate stage's last checkpoint (segmenter_msvit_b_gate_ade20k.py; change
# load_from to start elsewhere).
_base_ = './segmenter_dovit_b_ade20k.py'
model = dict(
    type='DynamicEncoderDecoder',
    backbone=dict(
        _delete_=True,
        type='MixedScaleViT',
        arch='b',
        img_size=(512, 512),
        out_indices=-1,
        final_norm=True,
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6, requires_grad=True),
        patch_bias=True,  # timm / DeiT weights (mmseg's default: no bias)
        scale_gate=dict(hidden_dims=(64, 64), init_logit=3.0),
        scale_loss=dict(
            type='GeneralizedBatchShapingLoss', target=0.5, weight=1.0,
            grid=(16, 16)),
        # training for every budget (docs/budgets.md): an iteration trains the
        # learned gate (75%), the all-fine route (15%) or a budget drawn from
        # [0.3, 1), as the token-pass configs do; None: the learned gate alone
        budget_sampling=dict(learned=0.75, full=0.15, low=0.3)))
load_from = 'work_dirs/segmenter_msvit_b_gate_ade20k/iter_8000.pth'
