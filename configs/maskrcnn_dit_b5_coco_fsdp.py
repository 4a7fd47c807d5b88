# maskrcnn_dit_b5_coco.py trained sharded: FSDP through mmengine's
# FlexibleRunner, as upernet_dovit_l_ade20k_fsdp.py (see there for the
# strategy's settings).
#   bash tools/dist_train.sh configs/maskrcnn_dit_b5_coco_fsdp.py 8
# FSDP units: DiT runs its blocks through forward_masked / forward_sparse and
# their first norm apart, so a whole block cannot be a unit; the two linears of
# each block's MLP (2/3 of its weights) are called through their forward and
# are units, as are the neck, the RPN convolution and the RoI heads: 108 units
# with 59% of the 102M parameters. The rest (attention, gates, patch
# embeddings, norms: 42M) is the root unit.
_base_ = './maskrcnn_dit_b5_coco.py'

runner_type = 'FlexibleRunner'
strategy = dict(
    type='DitFSDPStrategy',
    wrap_modules=[
        'backbone.stages.*.blocks.*.mlp.fc1',
        'backbone.stages.*.blocks.*.mlp.fc2',
        'neck', 'rpn_head.rpn_conv', 'roi_head.bbox_head', 'roi_head.mask_head',
    ],
    model_wrapper=dict(use_orig_params=True),
    state_dict_cfg='full')
