"""The base of DiT's cost models: a stage of blocks whose cost splits into
the part paid for the whole map whichever tokens are computed and the part
paid per computed token (``pvt_cost.py`` and ``swin_cost.py`` fill it for
their families)."""
from typing import NamedTuple, Tuple


class StageCost(NamedTuple):
    """Costs of one stage of a routing space (PVTv2's or Swin-v2's) at one
    input size.

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

    @property
    def block_gate(self) -> float:
        """One block's gate on every token (run unless a budget drops the
        block)."""
        return self.num_tokens * self.gate

    def fixed(self, gated: bool = False) -> float:
        """What the stage costs whichever tokens are computed (a block that
        computes none skips its per-map part: an upper bound then): the patch
        embedding, the blocks' per-map parts and, when ``gated``, the gates."""
        return self.embed + self.depth * (
            self.block_fixed + (self.block_gate if gated else 0))

    @property
    def savable(self) -> float:
        """The per-token part of all blocks, for every token: what skipping saves."""
        return self.depth * self.num_tokens * self.block_token

    @property
    def route(self) -> float:
        """The stage's cost on the static route (every token through every
        block)."""
        return self.fixed() + self.savable
