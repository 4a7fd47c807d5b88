"""Test-side hooks for training runs, imported by test-written configs through
``custom_imports`` (the tests put this folder on ``PYTHONPATH``):

- ``RankParamsHook`` saves every process's own copy of the parameters before
  and after training (``rank{r}_params_{before,after}.pth`` in the work dir),
  so a test can compare the ranks with each other and with a single-process
  run;
- ``KillHook`` kills its run with SIGKILL (no clean-up, as a lost node
  would) after the training iteration named by the ``DIT_MM_KILL_AT_ITER``
  environment variable: the whole process group, dataloader workers
  included, when the run leads its own group (else they would linger).
"""
import os
import os.path as osp
import signal

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RankParamsHook(Hook):

    def before_train(self, runner) -> None:
        self._save(runner, 'before')

    def after_train(self, runner) -> None:
        self._save(runner, 'after')

    @staticmethod
    def _save(runner, when: str) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        params = {k: v.detach().cpu().clone()
                  for k, v in model.named_parameters()}
        torch.save(params, osp.join(runner.work_dir,
                                    f'rank{get_rank()}_params_{when}.pth'))


@HOOKS.register_module()
class KillHook(Hook):
    priority = 'LOWEST'  # after the logger and checkpoint hooks of the iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        at = os.environ.get('DIT_MM_KILL_AT_ITER')
        if at is None or runner.iter + 1 != int(at):
            return
        if os.getpgid(0) == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
