# upernet_dovit_l_ade20k.py trained sharded: FSDP through mmengine's
# FlexibleRunner. Each of N processes keeps 1/N of the weights, gradients and
# AdamW states between steps, instead of all of them (DDP).
#   bash tools/dist_train.sh configs/upernet_dovit_l_ade20k_fsdp.py 8
#
# - DitFSDPStrategy (dit_mm/engine/fsdp.py) is mmengine's FSDPStrategy on GPUs
#   or, without CUDA, on the CPU over gloo (the tools pick gloo there).
# - wrap_modules: the FSDP units, each gathered in its own forward and sharded
#   again after it. The token-pass ViT runs mmseg's layers on packed tokens and
#   reads their attention weights directly (run_packed_layer), so a whole layer
#   cannot be a unit (its weights would still be sharded there); the MLP of a
#   layer (2/3 of its weights) is called through its forward and is one, as
#   are the neck's and the heads' convolutions: 42 units with 73% of the 383M
#   parameters. The rest (attention projections, embeddings, stop heads, norms:
#   103M) is the root unit, gathered for the whole step. A module named here
#   must be entered through its forward.
# - use_orig_params=True (mmengine's default, set to be explicit): the
#   optimizer sees the original parameters, so paramwise_cfg (no decay on
#   pos_embed, cls_token, norms) applies per parameter, and partly frozen
#   models (train_only) can share a unit.
# - state_dict_cfg='full': checkpoints hold the whole model, gathered on rank
#   0, in the plain layout: tools/test.py evaluates them with this config (one
#   process runs it unwrapped) or with upernet_dovit_l_ade20k.py.
# Gradient clipping by norm (optim_wrapper.clip_grad) clips over all ranks'
# shards. The run logs "FSDP: N ranks hold ... of ... parameters". The
# strategy is configs/_base_/strategies/fsdp_vit_upernet.py.
_base_ = [
    './upernet_dovit_l_ade20k.py', './_base_/strategies/fsdp_vit_upernet.py'
]
