"""The budget loss of dynamic routing: keep expected FLOPs near a target."""
from torch import Tensor, nn

from ...registry import register_model
from ..schedule import current_iter, linear_ramp


@register_model
class BudgetLoss(nn.Module):
    """``weight * ramp * (mean expected FLOPs fraction - target) ** 2``.

    The fraction is relative to the PVTv2 route and averaged over the batch, so
    images may spend more or less than the target as long as the batch meets it.
    ``ramp`` rises linearly from 0 to 1 over the first ``warmup_iters`` training
    iterations (read from mmengine's message hub, which the runner updates
    before each iteration), so the gates first learn what helps the task.
    """

    def __init__(self, target: float = 0.6, weight: float = 2.0,
                 warmup_iters: int = 0):
        super().__init__()
        if not 0 < target <= 1:
            raise ValueError(f'budget target must be in (0, 1], got {target}')
        if weight < 0 or warmup_iters < 0:
            raise ValueError('budget weight and warmup_iters must be >= 0, got '
                             f'{weight} and {warmup_iters}')
        self.target = target
        self.weight = weight
        self.warmup_iters = warmup_iters

    def ramp(self) -> float:
        return linear_ramp(0.0, 1.0, 0, self.warmup_iters, current_iter())

    def current_weight(self) -> float:
        """``weight`` times the warm-up ramp now."""
        return self.weight * self.ramp()

    def forward(self, expected_fraction: Tensor) -> Tensor:
        # float32 whatever the input (fp16 / bf16 autocast)
        gap = expected_fraction.float().mean() - self.target
        return self.current_weight() * gap * gap

    def extra_repr(self) -> str:
        return (f'target={self.target}, weight={self.weight}, '
                f'warmup_iters={self.warmup_iters}')
