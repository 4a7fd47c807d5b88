# setr_naive_dovit_b_cityscapes.py with the ViT-S/16 backbone.
_base_ = './setr_naive_dovit_b_cityscapes.py'
model = dict(
    backbone=dict(arch='s'),
    decode_head=dict(in_channels=384))
