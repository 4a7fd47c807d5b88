# maskrcnn_ditswinv2_t_coco.py with the Swin-v2-B routing space.
_base_ = './maskrcnn_ditswinv2_t_coco.py'
model = dict(
    backbone=dict(arch='b', drop_path_rate=0.3),
    neck=dict(in_channels=[128, 256, 512, 1024]))
