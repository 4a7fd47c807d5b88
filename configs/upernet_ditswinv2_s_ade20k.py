# upernet_ditswinv2_t_ade20k.py with the Swin-v2-S routing space.
_base_ = './upernet_ditswinv2_t_ade20k.py'
model = dict(backbone=dict(arch='s', drop_path_rate=0.3))
