# Token-pass ViT-B/16 with the Segmenter mask-transformer head: mmseg's
# Segmenter model with the backbone swapped for TokenPassViT (stop heads after
# layers 2, 5, 8; the threshold decays from 1.0 to 0.985 in training).
_base_ = 'mmseg::_base_/models/segmenter_vit-b16_mask.py'
model = dict(
    type='TokenPassEncoderDecoder',
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='TokenPassViT',
        arch='b',
        img_size=(512, 512),
        out_indices=-1,
        final_norm=True,
        drop_path_rate=0.1,
        norm_cfg=dict(type='LN', eps=1e-6, requires_grad=True),
        patch_bias=True,  # timm / DeiT weights (mmseg's default: no bias)
        num_classes=150,
        stop_threshold=0.985,
        threshold_schedule=dict(start=1.0, begin=0, end=80000),
        # training for every budget (docs/budgets.md): an iteration trains the
        # threshold route (75%), the full route (15%) or a budget drawn from
        # [0.3, 1); None: the threshold route alone
        budget_sampling=dict(learned=0.75, full=0.15, low=0.3)),
    decode_head=dict(num_classes=150))
