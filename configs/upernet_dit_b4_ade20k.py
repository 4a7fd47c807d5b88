# upernet_dit_b2_ade20k.py with the DiT-b4 backbone.
_base_ = './upernet_dit_b2_ade20k.py'
model = dict(
    backbone=dict(arch='b4'),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
