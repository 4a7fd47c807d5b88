"""Losses that shape how often a mixed-scale ViT's gate picks coarse tokens.

Each takes the gate's coarse probabilities ``(B, H, W)`` (one per coarse
region) and a ``target`` fraction of coarse regions:

- :class:`L1SparsityLoss`, the plain baseline: the batch mean is pulled to the
  target, whatever the spread.
- :class:`BatchShapingLoss` (Bejnordi et al., ICLR 2020): the empirical CDF of
  all the batch's probabilities is matched (Cramér–von Mises) to a Beta prior
  of mean ``target``, whose mass sits near 0 and 1: decisions become
  conditional (some images coarse, others fine) rather than all at ``target``.
- :class:`GeneralizedBatchShapingLoss` (MSViT): one learned relaxed-Bernoulli
  prior per region position (its mean and temperature are parameters), each
  matched by the batch's probabilities at that position; a Normal hyperprior
  centred on ``target`` shapes the learned means, and an L1 term lowers the
  temperatures (peakier priors).

All three compute in float32 whatever the probabilities' dtype (fp16 / bf16
autocast): in half precision, probabilities near 0 and 1 round to them and the
small squared gaps of the CDFs vanish.
"""
import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from scipy.special import betainc
from torch import Tensor, nn

from ...registry import register_model

EPS = 1e-3


def _check(target: float, weight: float) -> None:
    if not 0 < target < 1:
        raise ValueError(f'target coarse fraction must be in (0, 1), got '
                         f'{target}')
    if weight < 0:
        raise ValueError(f'loss weight must be >= 0, got {weight}')


def _check_probs(probs: Tensor) -> None:
    if probs.dim() != 3:
        raise ValueError(f'expected (B, H, W) coarse probabilities, got '
                         f'{tuple(probs.shape)}')


def cdf_distance(sorted_values: Tensor, prior_cdf: Tensor) -> Tensor:
    """Cramér–von Mises distance of samples (sorted along the last dim) to a
    prior whose CDF at them is ``prior_cdf``: the mean squared gap to the
    empirical CDF ``i / (n + 1)``, averaged over the leading dims."""
    n = sorted_values.shape[-1]
    ecdf = torch.arange(1, n + 1, device=sorted_values.device,
                        dtype=prior_cdf.dtype) / (n + 1)
    return ((ecdf - prior_cdf)**2).mean()


def relaxed_bernoulli_cdf(x: Tensor, mean: Tensor,
                          temperature: Tensor) -> Tensor:
    """CDF of the relaxed Bernoulli (binary concrete) of location
    ``mean / (1 - mean)`` and ``temperature``: ``X = sigmoid((logit(mean) +
    L) / t)`` with logistic ``L``, so ``P(X <= x) = sigmoid(t logit(x) -
    logit(mean))`` and ``P(X > 0.5) = mean``."""
    x = x.clamp(EPS, 1 - EPS)
    return torch.sigmoid(temperature * torch.logit(x) - torch.logit(mean))


def normal_cdf(x: Tensor, mean: float, std: float) -> Tensor:
    return 0.5 * (1 + torch.erf((x - mean) / (std * math.sqrt(2))))


class _BetaCDF(torch.autograd.Function):
    """The regularised incomplete beta function of ``x`` (scipy) with its
    derivative, the Beta density, for the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor, a: float, b: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.a, ctx.b = a, b
        value = betainc(a, b, x.detach().double().cpu().numpy())
        return torch.as_tensor(value, dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, = ctx.saved_tensors
        a, b = ctx.a, ctx.b
        log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
        density = torch.exp((a - 1) * torch.log(x) + (b - 1) * torch.log1p(-x)
                            - log_beta)
        return grad * density, None, None


def beta_cdf(x: Tensor, a: float, b: float) -> Tensor:
    return _BetaCDF.apply(x.clamp(EPS, 1 - EPS), a, b)


@register_model
class L1SparsityLoss(nn.Module):
    """``weight * |mean coarse probability - target|``."""

    def __init__(self, target: float = 0.5, weight: float = 1.0):
        super().__init__()
        _check(target, weight)
        self.target, self.weight = target, weight

    def forward(self, probs: Tensor) -> Tensor:
        _check_probs(probs)
        return self.weight * (probs.float().mean() - self.target).abs()

    def extra_repr(self) -> str:
        return f'target={self.target}, weight={self.weight}'


@register_model
class BatchShapingLoss(nn.Module):
    """The original batch-shaping loss: all probabilities of the batch against
    ``Beta(c * target, c * (1 - target))`` (``concentration`` c; 1 gives the
    paper's ``Beta(t, 1 - t)``, mean ``target``)."""

    def __init__(self, target: float = 0.5, weight: float = 1.0,
                 concentration: float = 1.0):
        super().__init__()
        _check(target, weight)
        if concentration <= 0:
            raise ValueError(f'concentration must be > 0, got {concentration}')
        self.target, self.weight = target, weight
        self.a = concentration * target
        self.b = concentration * (1 - target)

    def forward(self, probs: Tensor) -> Tensor:
        _check_probs(probs)
        values = probs.flatten().float().sort().values
        return self.weight * cdf_distance(values,
                                          beta_cdf(values, self.a, self.b))

    def extra_repr(self) -> str:
        return (f'target={self.target}, weight={self.weight}, '
                f'beta=({self.a:g}, {self.b:g})')


@register_model
class GeneralizedBatchShapingLoss(nn.Module):
    """The generalised batch-shaping loss of MSViT.

    ``weight * (prior + hyperprior_weight * hyperprior + temperature_weight *
    mean temperature)``: ``prior`` matches, at every region position, the
    batch's probabilities to that position's relaxed Bernoulli ``RB(mean_k,
    temperature_k)``; ``hyperprior`` matches the learned means to
    ``Normal(target, hyperprior_std)``. Means and temperatures are
    ``sigmoid`` of parameters kept on a ``grid`` of positions (the training
    crop's coarse grid; other grids get them resized, nearest). The means start
    at ``target``, the temperatures at 0.5.
    """

    def __init__(self, target: float = 0.5, weight: float = 1.0,
                 grid: Sequence[int] = (16, 16), hyperprior_std: float = 0.1,
                 hyperprior_weight: float = 1.0,
                 temperature_weight: float = 0.1):
        super().__init__()
        _check(target, weight)
        if hyperprior_std <= 0 or hyperprior_weight < 0 \
                or temperature_weight < 0:
            raise ValueError('hyperprior_std must be > 0, the weights >= 0')
        self.target, self.weight = target, weight
        self.grid: Tuple[int, int] = tuple(grid)
        self.hyperprior_std = hyperprior_std
        self.hyperprior_weight = hyperprior_weight
        self.temperature_weight = temperature_weight
        self.mean_logits = nn.Parameter(
            torch.full(self.grid, math.log(target / (1 - target))))
        self.temperature_logits = nn.Parameter(torch.zeros(self.grid))

    def priors(self, hw: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
        """Means and temperatures ``(H, W)`` of the priors on an ``hw``
        grid."""
        params = torch.stack([self.mean_logits,
                              self.temperature_logits]).float()
        if tuple(hw) != self.grid:
            params = F.interpolate(params[None], size=tuple(hw),
                                   mode='nearest')[0]
        return torch.sigmoid(params[0]), torch.sigmoid(params[1])

    def forward(self, probs: Tensor) -> Tensor:
        _check_probs(probs)
        means, temperatures = self.priors(probs.shape[1:])
        values = probs.float().flatten(1).t().sort(dim=1).values  # (K, B)
        prior = cdf_distance(
            values,
            relaxed_bernoulli_cdf(values, means.reshape(-1, 1),
                                  temperatures.reshape(-1, 1)))
        learned = means.flatten().sort().values
        hyperprior = cdf_distance(
            learned, normal_cdf(learned, self.target, self.hyperprior_std))
        return self.weight * (prior + self.hyperprior_weight * hyperprior +
                              self.temperature_weight * temperatures.mean())

    def extra_repr(self) -> str:
        return (f'target={self.target}, weight={self.weight}, '
                f'grid={self.grid}, hyperprior_std={self.hyperprior_std}')
