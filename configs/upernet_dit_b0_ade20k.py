# upernet_dit_b2_ade20k.py with the DiT-b0 backbone.
_base_ = './upernet_dit_b2_ade20k.py'
model = dict(
    backbone=dict(arch='b0'),
    decode_head=dict(in_channels=[32, 64, 160, 256]),
    auxiliary_head=dict(in_channels=160))
