from .batch_shaping import (BatchShapingLoss, GeneralizedBatchShapingLoss,
                            L1SparsityLoss)
from .budget_loss import BudgetLoss

__all__ = ['BatchShapingLoss', 'BudgetLoss', 'GeneralizedBatchShapingLoss',
           'L1SparsityLoss']

