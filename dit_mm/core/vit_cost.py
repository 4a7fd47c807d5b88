"""FLOPs of a plain ViT and of its token-pass form, and the keep counts that
meet a FLOPs budget.

Counted as multiply-accumulates, as the ViT and DoViT papers do; norms,
activations and softmax are left out. One encoder layer over ``n`` tokens costs
``n * (4 C^2 + 2 C C_mlp)`` for its linears plus ``2 n^2 C`` for the attention
products, so stopping tokens saves more than linearly in long sequences.
"""
from typing import List, NamedTuple, Sequence


class ViTCost(NamedTuple):
    """Costs of one ViT arch: ``embed_dims`` C, ``mlp_dims`` C_mlp,
    ``num_layers``, ``patch_size``, ``in_channels``, ``head_classes`` (the
    stop heads' classes; 0 when there are none) and ``cls_tokens`` (1 with a
    class token)."""
    embed_dims: int
    mlp_dims: int
    num_layers: int
    patch_size: int
    in_channels: int = 3
    head_classes: int = 0
    cls_tokens: int = 1

    def layer(self, tokens: float) -> float:
        """One encoder layer over ``tokens`` tokens (class token included)."""
        c = self.embed_dims
        return tokens * (4 * c * c + 2 * c * self.mlp_dims) + 2 * tokens**2 * c

    def embed(self, patches: int) -> float:
        return patches * self.in_channels * self.patch_size**2 * self.embed_dims

    def head(self, tokens: float) -> float:
        """One stop head (linear classifier) over ``tokens`` tokens."""
        return tokens * self.embed_dims * self.head_classes

    def full(self, patches: int) -> float:
        """The plain ViT: every token through every layer, no heads."""
        return self.embed(patches) + self.num_layers * self.layer(
            patches + self.cls_tokens)

    def token_pass(self, patches: int, head_layers: Sequence[int],
                   kept: Sequence[float]) -> float:
        """The token-pass ViT where ``kept[j]`` patch tokens go on after the
        head behind layer ``head_layers[j]`` (sorted); the heads run on the
        tokens that reach them, the class tokens included (as the forward
        runs them)."""
        if len(kept) != len(head_layers):
            raise ValueError(f'{len(kept)} keep counts for '
                             f'{len(head_layers)} heads')
        total = self.embed(patches)
        tokens, start = patches, 0
        for layer, count in zip(list(head_layers) + [self.num_layers - 1],
                                list(kept) + [None]):
            total += (layer + 1 - start) * self.layer(tokens + self.cls_tokens)
            if count is not None:
                total += self.head(tokens + self.cls_tokens)
                tokens, start = count, layer + 1
        return total


def budget_keep_counts(cost: ViTCost, patches: int, head_layers: Sequence[int],
                       budget: float, steps: int = 50) -> List[int]:
    """Patch tokens to keep after each head so that the token-pass FLOPs are
    at most ``budget`` times the plain ViT's.

    The counts fall geometrically (``floor(q^j * patches)`` after the j-th
    head, the largest ``q`` that fits), so each head stops a similar share of
    what reaches it. A budget below what the layers before the first head
    cost cannot be met: ``ValueError`` names the smallest one that can.
    """
    full = cost.full(patches)

    def counts(q: float) -> List[int]:
        return [int(q**(j + 1) * patches) for j in range(len(head_layers))]

    def fraction(q: float) -> float:
        return cost.token_pass(patches, head_layers, counts(q)) / full

    if fraction(1.0) <= budget:
        return counts(1.0)
    if fraction(0.0) > budget:
        raise ValueError(
            f'budget {budget:g} is below what a token-pass ViT with heads '
            f'after layers {list(head_layers)} must spend '
            f'({fraction(0.0):.3f} of the full ViT: the layers before the '
            'first head see every token)')
    low, high = 0.0, 1.0
    for _ in range(steps):
        mid = (low + high) / 2
        if fraction(mid) <= budget:
            low = mid
        else:
            high = mid
    return counts(low)
