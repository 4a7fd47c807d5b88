# retinanet_dit_b2_coco.py with the DiT-b3 backbone.
_base_ = './retinanet_dit_b2_coco.py'
model = dict(backbone=dict(arch='b3'), neck=dict(in_channels=[64, 128, 320, 512]))
