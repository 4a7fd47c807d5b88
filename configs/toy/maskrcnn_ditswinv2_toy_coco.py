# The toy DiT Mask R-CNN (maskrcnn_dit_b0_toy_coco.py: data, schedule, narrow
# heads) with a small Swin-v2 routing space (DiTSwinV2: widths 32 ... 256,
# depths 1-1-2-1, windows of 7 on the 224-px images), trained from scratch for
# every budget with the sandwich of every DiT config: with the single target
# its budget 1.0 scored 0.17-0.23 bbox mAP under its best fixed budget
# (docs/budgets.md, "DiT on Swin-v2").
_base_ = './maskrcnn_dit_b0_toy_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DiTSwinV2',
        arch=dict(embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]),
        window_size=7,
        pad_small_map=True,  # any image size (stock: maps under a window refused)
        out_indices=(0, 1, 2, 3),  # four maps for the neck (stock: (3, ))
        drop_path_rate=0.0,
        stop_threshold=0.01,
        budget_loss=dict(target=0.5, weight=2.0, warmup_iters=50),
        budget_sampling=dict(sandwich=True, full=0.25, low=0.3, high=0.75)),
    neck=dict(in_channels=[32, 64, 128, 256]))
