# maskrcnn_ditswinv2_t_coco.py with the Swin-v2-S routing space.
_base_ = './maskrcnn_ditswinv2_t_coco.py'
model = dict(backbone=dict(arch='s', drop_path_rate=0.3))
