"""FLOPs of the PVTv2 route and of its parts, at a given input size.

Counted as multiply-accumulates, as the PVTv2 and DiT papers do; norms,
activations and softmax are left out (they are below 1% there). The cost of one
encoder block splits into the part paid per *computed* token (query and output
projections, attention over the reduced keys, the two MLP linears) and the part
paid for the whole map whatever is kept (spatial-reduction convolution, keys and
values, the MLP's depth-wise convolution). Dynamic inference saves the first.
"""
from typing import List, NamedTuple, Sequence, Tuple


class StageCost(NamedTuple):
    """Costs of one PVTv2 stage at one input size.

    hw: the stage's token grid. embed: the patch embedding. block_fixed: the
    per-map cost of one block. block_token: one block's cost per computed token.
    depth: blocks in the stage. gate: a routing gate's cost per token.
    """
    hw: Tuple[int, int]
    embed: float
    block_fixed: float
    block_token: float
    depth: int
    gate: float

    @property
    def num_tokens(self) -> int:
        return self.hw[0] * self.hw[1]

    def fixed(self, gated: bool = False) -> float:
        """What the stage costs whichever tokens are computed: the patch
        embedding, the blocks' per-map parts and, when ``gated``, the gates."""
        gates = self.num_tokens * self.gate if gated else 0
        return self.embed + self.depth * (self.block_fixed + gates)

    @property
    def savable(self) -> float:
        """The per-token part of all blocks, for every token: what skipping saves."""
        return self.depth * self.num_tokens * self.block_token

    @property
    def route(self) -> float:
        """The stage's cost on the PVTv2 route (every token through every block)."""
        return self.fixed() + self.savable


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
