# The toy DiT UperNet (upernet_dit_b0_toy_ade20k.py: data, crops, schedule,
# narrow heads) with a small Swin-v2 routing space (DiTSwinV2: widths
# 32 ... 256, depths 1-1-2-1, windows of 8 on the 128-px crops), from scratch,
# trained for every budget with the sandwich of every DiT config.
_base_ = './upernet_dit_b0_toy_ade20k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DiTSwinV2',
        arch=dict(embed_dims=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 4, 8]),
        window_size=8,
        pad_small_map=True,  # any image size (stock: maps under a window refused)
        out_indices=(0, 1, 2, 3),  # four maps for the neck (stock: (3, ))
        drop_path_rate=0.0,
        stop_threshold=0.01,
        budget_loss=dict(target=0.5, weight=2.0, warmup_iters=50),
        budget_sampling=dict(sandwich=True, full=0.25, low=0.3, high=0.75)),
    decode_head=dict(in_channels=[32, 64, 128, 256]),
    auxiliary_head=dict(in_channels=128))
