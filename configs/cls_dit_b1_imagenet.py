# cls_dit_b2_imagenet.py with the DiT-b1 backbone.
_base_ = './cls_dit_b2_imagenet.py'
model = dict(backbone=dict(arch='b1'), head=dict(in_channels=512))
