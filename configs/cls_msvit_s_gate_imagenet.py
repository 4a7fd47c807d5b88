# cls_msvit_b_gate_imagenet.py with the ViT-S/16 backbone.
_base_ = './cls_msvit_b_gate_imagenet.py'
model = dict(backbone=dict(arch='s'), head=dict(in_channels=384))
