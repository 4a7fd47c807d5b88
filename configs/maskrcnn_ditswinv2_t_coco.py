# Mask R-CNN with a DiT backbone on Swin-v2-T (DiTSwinV2) and the
# routing-aware FPN on COCO, 1x: maskrcnn_dit_b2_coco.py with the backbone
# swapped. Windows of 16 (8 in the last stage), as Swin-v2's 256-px "w16"
# ImageNet release, whose mmpretrain weights load with
#   --cfg-options model.backbone.init_cfg.type=Pretrained \
#                 model.backbone.init_cfg.checkpoint=PATH
_base_ = './maskrcnn_dit_b2_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DiTSwinV2',
        arch='t',
        window_size=[16, 16, 16, 8],
        pad_small_map=True,  # any image size (stock: maps under a window refused)
        out_indices=(0, 1, 2, 3),  # four maps for the neck (stock: (3, ))
        pretrained_window_sizes=[16, 16, 16, 8],
        drop_path_rate=0.2,
        stop_threshold=0.01,
        budget_loss=dict(target=0.7, weight=2.0, warmup_iters=1000),
        # training for every budget, as the PVTv2 DiT configs (docs/budgets.md)
        budget_sampling=dict(sandwich=True, full=0.25, low=0.3, high=0.75)),
    neck=dict(in_channels=[96, 192, 384, 768]))
