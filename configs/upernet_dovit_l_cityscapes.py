# upernet_dovit_b_cityscapes.py with the ViT-L/16 backbone
# (24 layers: stop heads after layers 5, 11, 17).
_base_ = './upernet_dovit_b_cityscapes.py'
model = dict(
    backbone=dict(arch='l', out_indices=(5, 11, 17, 23)),
    neck=dict(in_channels=[1024] * 4, out_channels=1024),
    decode_head=dict(in_channels=[1024] * 4),
    auxiliary_head=dict(in_channels=1024))
