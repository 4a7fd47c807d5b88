# Sharded training (FSDP) of a token-pass / mixed-scale ViT UperNet through
# mmengine's FlexibleRunner; see configs/upernet_dovit_l_ade20k_fsdp.py for why
# these FSDP units. Add it as a second base of a ViT UperNet config.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='DitFSDPStrategy',
    wrap_modules=[
        'backbone.layers.*.ffn.layers',
        'neck.lateral_convs.*', 'neck.convs.*',
        'decode_head.psp_modules', 'decode_head.bottleneck',
        'decode_head.lateral_convs.*', 'decode_head.fpn_convs.*',
        'decode_head.fpn_bottleneck',
        'auxiliary_head.convs',
    ],
    model_wrapper=dict(use_orig_params=True),
    state_dict_cfg='full')
