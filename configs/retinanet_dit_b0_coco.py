# retinanet_dit_b2_coco.py with the DiT-b0 backbone.
_base_ = './retinanet_dit_b2_coco.py'
model = dict(backbone=dict(arch='b0'), neck=dict(in_channels=[32, 64, 160, 256]))
