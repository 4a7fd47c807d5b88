# setr_pup_dovit_b_cityscapes.py with the ViT-L/16 backbone
# (24 layers: stop heads after layers 5, 11, 17).
_base_ = './setr_pup_dovit_b_cityscapes.py'
model = dict(
    backbone=dict(arch='l', out_indices=(9, 14, 19, 23)),
    decode_head=dict(in_channels=1024))
