# upernet_dovit_toy_cityscapes.py trained sharded (FSDP) through mmengine's
# FlexibleRunner, with the FSDP units of upernet_dovit_l_ade20k_fsdp.py (see
# there why these): on a CPU the processes shard over gloo.
#   bash tools/dist_train.sh configs/toy/upernet_dovit_toy_cityscapes_fsdp.py 2
_base_ = [
    './upernet_dovit_toy_cityscapes.py',
    '../_base_/strategies/fsdp_vit_upernet.py'
]
