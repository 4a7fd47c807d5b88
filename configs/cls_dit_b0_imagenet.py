# cls_dit_b2_imagenet.py with the DiT-b0 backbone.
_base_ = './cls_dit_b2_imagenet.py'
model = dict(backbone=dict(arch='b0'), head=dict(in_channels=256))
