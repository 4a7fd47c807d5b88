# cls_msvit_b_imagenet.py with the ViT-S/16 backbone.
_base_ = './cls_msvit_b_imagenet.py'
model = dict(backbone=dict(arch='s'), head=dict(in_channels=384))
load_from = 'work_dirs/cls_msvit_s_gate_imagenet/epoch_5.pth'
