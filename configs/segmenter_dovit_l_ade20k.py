# segmenter_dovit_b_ade20k.py with the ViT-L/16 backbone
# (24 layers: stop heads after layers 5, 11, 17).
_base_ = './segmenter_dovit_b_ade20k.py'
model = dict(
    backbone=dict(arch='l'),
    decode_head=dict(
        in_channels=1024, channels=1024, embed_dims=1024, num_heads=16))
