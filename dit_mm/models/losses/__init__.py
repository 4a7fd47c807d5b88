from .budget_loss import BudgetLoss

__all__ = ['BudgetLoss']
