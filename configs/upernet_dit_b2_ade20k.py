# UperNet with a DiT-b2 backbone on ADE20K, 512x512 crops, 160k iterations.
# mmseg's stock UperNet with the backbone and the model type swapped
# (DynamicEncoderDecoder adds loss_budget); AdamW and poly schedule as mmseg
# trains its transformer backbones.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dit_mm'], allow_failed_imports=False)

model = dict(
    type='DynamicEncoderDecoder',
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='DiT',
        arch='b2',
        drop_path_rate=0.1,
        stop_threshold=0.01,
        budget_loss=dict(target=0.7, weight=2.0, warmup_iters=1500),
        # every iteration trains the learned route and one drawn fixed
        # route: the static one, or a budget from [0.3, 0.75) (docs/
        # budgets.md: training for every budget); None: the learned route
        # alone, the single-target recipe
        budget_sampling=dict(sandwich=True, full=0.25, low=0.3, high=0.75)),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'norm': dict(decay_mult=0.),
            '.gates.': dict(lr_mult=10.0, decay_mult=0.)
        }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000,
         by_epoch=False)
]
