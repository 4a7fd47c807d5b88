"""FLOPs of the Swin-v2 route and of its parts, at a given input size.

Multiply-accumulates, as ``pvt_cost.py`` counts them (norms, activations and
softmax left out). One Swin-v2 block splits into the part paid for the whole
(padded) map whichever tokens are computed (the qkv projection and the window
attention: a kept token needs its whole window's keys and values, and the
window's attention is computed whole or not at all, see
``dit/swin_blocks.py``), the continuous position-bias MLP, and the part
paid per computed token (output projection and MLP). Dynamic inference saves
the last; windows with no kept token also skip the first, which this count
leaves in (an upper bound of what runs).
"""
import math
from typing import List, Sequence

from .stage_cost import StageCost

CPB_HIDDEN = 512  # mmpretrain's WindowMSAV2 cpb_mlp_hidden_dims


def swin_stage_costs(arch: dict, window_sizes: Sequence[int],
                     img_hw: Sequence[int], in_channels: int = 3,
                     patch_size: int = 4) -> List[StageCost]:
    """Per-stage costs of a Swin-v2 ``arch`` (``embed_dims``, ``depths``,
    ``num_heads``, ``mlp_ratio``) on an ``img_hw`` input; the maps are padded
    to whole windows as with ``pad_small_map=True``."""
    h = math.ceil(img_hw[0] / patch_size)
    w = math.ceil(img_hw[1] / patch_size)
    dims = arch['embed_dims']
    costs = []
    for i, depth in enumerate(arch['depths']):
        if i == 0:
            embed = patch_size * patch_size * in_channels * dims * h * w
        else:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
            embed = 4 * dims * (2 * dims) * h * w  # merging 4C -> 2C
            dims *= 2
        size = window_sizes[i]
        padded = math.ceil(h / size) * size * math.ceil(w / size) * size
        heads = arch['num_heads'][i]
        bias = (2 * size - 1)**2 * (2 * CPB_HIDDEN + CPB_HIDDEN * heads)
        # qkv and attention on the padded map; the static block also
        # projects the padding's attention outputs
        block_fixed = 3 * dims * dims * padded + 2 * padded * size * size * \
            dims + bias + (padded - h * w) * dims * dims
        block_token = dims * dims + 2 * dims * dims * arch['mlp_ratio']
        costs.append(StageCost((h, w), embed, block_fixed, block_token, depth,
                               2 * dims))
    return costs
