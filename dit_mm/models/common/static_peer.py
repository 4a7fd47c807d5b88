"""What building any family's static peer shares: which of the dynamic
backbone's tensors the stock class has no place for."""
from collections import OrderedDict
from typing import Iterable, List, Tuple

from torch import nn

from .weights import StateDict

# a family's peer build: the stock module, the state dict it loads, and the
# keys of the dynamic backbone left out (its gates, heads, scale gate)
PeerBuild = Tuple[nn.Module, StateDict, List[str]]


def left_out(backbone: nn.Module, keys: Iterable[str],
             peer_name: str) -> List[str]:
    """``keys`` of ``backbone`` the peer has no place for, sorted: only its
    optional weights (the backbone's checkpoint rule) may be left out."""
    stray = sorted(k for k in keys if not backbone.is_optional_weight(k))
    if stray:
        raise ValueError(f'{type(backbone).__name__} tensors {stray[:8]} have '
                         f'no place in {peer_name} (only the weights a stock '
                         'checkpoint lacks may be left out)')
    return sorted(keys)


def with_same_names(backbone: nn.Module, peer: nn.Module,
                    peer_name: str) -> PeerBuild:
    """A peer whose key names are ``backbone``'s: ``backbone``'s tensors
    it has a place for, and the keys left out."""
    own = backbone.state_dict()
    left = left_out(backbone, set(own) - set(peer.state_dict()), peer_name)
    return peer, OrderedDict(
        (k, v) for k, v in own.items() if k not in left), left
