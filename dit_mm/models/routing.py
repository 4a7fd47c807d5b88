"""What a dynamic backbone's forward returns besides its feature maps: its
statistics, on the output (:class:`RoutedFeatures`), never left on the module."""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn


class RouteStats:
    """What every dynamic backbone reports of a forward, whatever its
    method: the per-image executed FLOPs (``flops``, ``(B,)``) against those
    of its static network at this input size (``static_flops``), and the
    fraction of the static network's token work that ran (``kept_fraction``).
    The tools read these three and nothing method-specific; the family's
    ``aux_losses(stats, data_samples)`` reads the rest (in training, what
    its losses need)."""

    flops: Tensor

    @property
    def static_flops(self) -> float:
        raise NotImplementedError

    @property
    def flops_fraction(self) -> Tensor:
        """``(B,)`` executed FLOPs relative to the static network."""
        return self.flops / self.static_flops

    @property
    def kept_fraction(self) -> Tensor:
        raise NotImplementedError


@dataclass
class RoutingInfo(RouteStats):
    """Per-image routing statistics of one forward pass.

    keep_masks: ``[stage][block]`` ``(B, H, W)`` bool, the tokens that went
        through that block (node of the routing grid).
    density: ``[stage]`` ``(B, H, W)``, the fraction of the stage's blocks each
        token went through (1 everywhere on the PVTv2 route).
    flops: ``(B,)`` FLOPs realized for each image (skipped tokens cost nothing).
    route_flops: FLOPs of the PVTv2 route at this input size.
    expected_fraction: ``(B,)`` expected FLOPs / route FLOPs under the gates'
        probabilities, differentiable (training with learned gates only).
    """
    keep_masks: List[List[Tensor]]
    density: List[Tensor]
    flops: Tensor
    route_flops: float
    expected_fraction: Optional[Tensor] = field(default=None)

    @property
    def static_flops(self) -> float:
        return self.route_flops

    @property
    def kept_fraction(self) -> Tensor:
        """``(B,)`` fraction of all (token, block) pairs computed."""
        masks = [mask.flatten(1) for stage in self.keep_masks
                 for mask in stage]
        kept = sum(mask.sum(1) for mask in masks)
        return kept.float() / sum(mask.shape[1] for mask in masks)


class RoutedFeatures(tuple):
    """What a dynamic backbone's forward returns: its feature maps (a plain
    tuple to every neck and head) carrying the :class:`RouteStats` they were
    made with (``stats``), for routing-aware necks, the task models' losses
    and the measuring tools."""

    stats: Optional[RouteStats]

    def __new__(cls, maps, stats: Optional[RouteStats] = None):
        obj = super().__new__(cls, maps)
        obj.stats = stats
        return obj


class ForwardRecord:
    """What a backbone's forwards gave while this is open (a ``with`` block,
    or until :meth:`close`): the ``(H, W)`` of every input (``shapes``), the
    :class:`RouteStats` of the last one (``stats``; ``None`` from a backbone
    that reports none) and every image's executed FLOPs fraction
    (:meth:`flops_fractions`). How a caller that runs a whole task model
    reads its backbone's statistics."""

    def __init__(self, backbone: nn.Module):
        self.shapes: List[Tuple[int, int]] = []
        self.stats: Optional[RouteStats] = None
        self._fractions: List[Tensor] = []  # on the device: no host sync
        self._handle = backbone.register_forward_hook(self._record)

    def _record(self, module, inputs, output) -> None:
        self.shapes.append(tuple(inputs[0].shape[-2:]))
        self.stats = output.stats if isinstance(output, RoutedFeatures) \
            else None
        if self.stats is not None:
            self._fractions.append(self.stats.flops_fraction.detach())

    def flops_fractions(self) -> Tensor:
        """``(N,)`` the executed FLOPs fraction of the static network of
        every image the backbone saw while this was open, in order."""
        if not self._fractions:
            return torch.zeros(0, dtype=torch.float64)
        return torch.cat([f.double().cpu() for f in self._fractions])

    def clear(self) -> None:
        self.shapes.clear()
        self.stats = None
        self._fractions.clear()

    def close(self) -> None:
        self._handle.remove()

    def __enter__(self) -> 'ForwardRecord':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class TokenPassInfo(RouteStats):
    """Per-image statistics of one token-pass forward.

    stop_layer: ``(B, H, W)`` the last layer each patch token went through
        (the layer of the head that stopped it, or the last layer).
    kept: ``(B, heads)`` patch tokens that went on after each stop head.
    flops: ``(B,)`` FLOPs realized for each image (stop heads included).
    full_flops: FLOPs of the plain ViT at this input size.
    num_layers: layers of the ViT.
    threshold: the confidence threshold used (``None`` under a fixed budget).
    head_maps: in training with a head loss, per stop head ``(layer, logits
        (B, K, H, W), seen (B, H, W))``: the head's logits on the tokens it
        saw (``seen``), which its loss reads.
    head_layers: the layers followed by a stop head (where a token may stop).
    """
    stop_layer: Tensor
    kept: Tensor
    flops: Tensor
    full_flops: float
    num_layers: int
    threshold: Optional[float] = None
    head_maps: List[Tuple[int, Tensor, Tensor]] = field(default_factory=list)
    head_layers: Tuple[int, ...] = ()

    @property
    def static_flops(self) -> float:
        return self.full_flops

    @property
    def kept_fraction(self) -> Tensor:
        return self.keep_fraction

    @property
    def keep_fraction(self) -> Tensor:
        """``(B,)`` fraction of all (patch token, layer) pairs computed."""
        depth = (self.stop_layer + 1).flatten(1).float().mean(1)
        return depth / self.num_layers


@dataclass
class MixedScaleInfo(TokenPassInfo):
    """Per-image statistics of one mixed-scale forward (with the token-pass
    ones when the ViT also has stop heads).

    coarse: ``(B, H_c, W_c)`` bool, the regions that were one coarse token.
    scale_map: ``(B, H, W)`` bool on the fine grid, ``True`` where the
        position belonged to a coarse token.
    num_tokens: ``(B,)`` patch tokens that entered the first layer.
    fine_patches: fine positions of the grid (the all-fine token count).
    coarse_probs: in training on the learned gate, ``(B, H_c, W_c)`` the
        gate's coarse probabilities, which the scale loss reads.
    """
    coarse: Optional[Tensor] = None
    scale_map: Optional[Tensor] = None
    num_tokens: Optional[Tensor] = None
    fine_patches: int = 0
    coarse_probs: Optional[Tensor] = None

    @property
    def coarse_fraction(self) -> Tensor:
        """``(B,)`` fraction of complete coarse regions that were coarse."""
        if self.coarse[0].numel() == 0:
            return self.coarse.new_zeros(self.coarse.shape[0]).float()
        return self.coarse.flatten(1).float().mean(1)

    @property
    def token_fraction(self) -> Tensor:
        """``(B,)`` patch tokens relative to the all-fine count."""
        return self.num_tokens.float() / self.fine_patches

    @property
    def kept_fraction(self) -> Tensor:
        """``(B,)`` the patch tokens' share of the all-fine count."""
        return self.token_fraction
