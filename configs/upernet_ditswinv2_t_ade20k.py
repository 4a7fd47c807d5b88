# UperNet with a DiT backbone on Swin-v2-T (DiTSwinV2) on ADE20K, 512x512
# crops, 160k iterations: upernet_dit_b2_ade20k.py with the backbone swapped.
# Windows of 16 (8 in the last stage), as Swin-v2's 256-px "w16" ImageNet
# release (mmpretrain weights load through model.backbone.init_cfg).
_base_ = './upernet_dit_b2_ade20k.py'

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
        budget_loss=dict(target=0.7, weight=2.0, warmup_iters=1500),
        # training for every budget, as the PVTv2 DiT configs (docs/budgets.md)
        budget_sampling=dict(sandwich=True, full=0.25, low=0.3, high=0.75)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
