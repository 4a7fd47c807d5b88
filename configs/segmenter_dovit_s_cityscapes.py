# segmenter_dovit_b_cityscapes.py with the ViT-S/16 backbone.
_base_ = './segmenter_dovit_b_cityscapes.py'
model = dict(
    backbone=dict(arch='s'),
    decode_head=dict(
        in_channels=384, channels=384, embed_dims=384, num_heads=6))
