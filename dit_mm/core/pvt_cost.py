"""FLOPs of the PVTv2 route and of its parts, at a given input size.

Counted as multiply-accumulates, as the PVTv2 and DiT papers do; norms,
activations and softmax are left out (they are below 1% there). The cost of one
encoder block splits into the part paid per *computed* token (query and output
projections, attention over the reduced keys, the two MLP linears) and the part
paid for the whole map whatever is kept (spatial-reduction convolution, keys and
values, the MLP's depth-wise convolution). Dynamic inference saves the first.
"""
from typing import List, Sequence

from .stage_cost import StageCost


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def pvt_stage_costs(arch: dict, img_hw: Sequence[int],
                    in_channels: int = 3) -> List[StageCost]:
    """Per-stage costs of ``arch`` (see ``resolve_arch``) on an ``img_hw`` input."""
    h, w = img_hw
    channels = in_channels
    costs = []
    for i in range(4):
        dims, sr, mlp = (arch['embed_dims'][i], arch['sr_ratios'][i],
                         arch['mlp_ratios'][i])
        k, s = arch['patch_sizes'][i], arch['strides'][i]
        h, w = _conv_out(h, k, s), _conv_out(w, k, s)
        tokens = h * w
        if sr > 1:
            kv_tokens = max(h, sr) // sr * (max(w, sr) // sr)
            reduce = dims * dims * tokens
        else:
            kv_tokens, reduce = tokens, 0
        hidden = dims * mlp
        block_fixed = reduce + 2 * dims * dims * kv_tokens + 9 * hidden * tokens
        block_token = 2 * dims * dims + 2 * kv_tokens * dims + 2 * dims * hidden
        costs.append(
            StageCost((h, w), k * k * channels * dims * tokens, block_fixed,
                      block_token, arch['depths'][i], 2 * dims))
        channels = dims
    return costs


def route_flops(arch: dict, img_hw: Sequence[int]) -> float:
    """FLOPs of the PVTv2 route of ``arch`` at ``img_hw``."""
    return sum(c.route for c in pvt_stage_costs(arch, img_hw))
