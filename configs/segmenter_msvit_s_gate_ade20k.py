# segmenter_msvit_b_gate_ade20k.py with the ViT-S/16 backbone.
_base_ = './segmenter_msvit_b_gate_ade20k.py'
model = dict(
    backbone=dict(arch='s'),
    decode_head=dict(
        in_channels=384, channels=384, embed_dims=384, num_heads=6))
