# upernet_dit_b2_cityscapes.py with the DiT-b5 backbone.
_base_ = './upernet_dit_b2_cityscapes.py'
model = dict(
    backbone=dict(arch='b5'),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))
