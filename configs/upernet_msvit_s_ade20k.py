# upernet_msvit_b_ade20k.py with the ViT-S/16 backbone.
_base_ = './upernet_msvit_b_ade20k.py'
model = dict(
    backbone=dict(arch='s'),
    neck=dict(in_channels=[384] * 4, out_channels=384),
    decode_head=dict(in_channels=[384] * 4),
    auxiliary_head=dict(in_channels=384))
load_from = 'work_dirs/upernet_msvit_s_gate_ade20k/iter_8000.pth'
