# Mixed-scale ViT-B/16 (MSViT) with UperNet over MultiLevelNeck on ADE20K,
# 512x512 crops, 160k iterations: upernet_dovit_b_ade20k.py (data, schedule,
# optimiser) with the backbone swapped; coarse tokens are copied to their four
# fine positions in the dense maps of layers 2, 5, 8, 11. The second stage of
# MSViT's recipe: everything trains, starting from the gate stage's last
# checkpoint (upernet_msvit_b_gate_ade20k.py; change load_from to start
# elsewhere).
_base_ = './upernet_dovit_b_ade20k.py'
model = dict(
    type='DynamicEncoderDecoder',
    backbone=dict(
        _delete_=True,
        type='MixedScaleViT',
        arch='b',
        img_size=(512, 512),
        out_indices=(2, 5, 8, 11),
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6),
        patch_bias=True,  # timm / DeiT weights (mmseg's default: no bias)
        scale_gate=dict(hidden_dims=(64, 64), init_logit=3.0),
        scale_loss=dict(
            type='GeneralizedBatchShapingLoss', target=0.5, weight=1.0,
            grid=(16, 16)),
        # training for every budget (docs/budgets.md): an iteration trains the
        # learned gate (75%), the all-fine route (15%) or a budget drawn from
        # [0.3, 1), as the token-pass configs do; None: the learned gate alone
        budget_sampling=dict(learned=0.75, full=0.15, low=0.3)))
load_from = 'work_dirs/upernet_msvit_b_gate_ade20k/iter_8000.pth'
