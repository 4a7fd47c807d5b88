"""The one place a config's model is built: the measuring tools, the run
guards and the routing pictures all call :func:`build_task_model`.

The model is built in the config's scope from ``cfg.model`` (with
mmpretrain's top-level ``data_preprocessor`` moved in, as its Runner does),
then initialised or loaded strictly from a checkpoint; a checkpoint's
average-budget calibration, when one lies beside it, is handed to the
backbone.
"""
import copy
from typing import Callable, Optional

from mmengine.config import Config
from mmengine.registry import MODELS
from mmengine.runner import load_checkpoint
from torch import nn

from ..registry import config_scope_of
from .common.average_budget import attach_calibration
from .common.weights import check_finite_weights


def model_cfg(cfg: Config) -> Config:
    """``cfg.model``, with mmpretrain's top-level ``data_preprocessor``
    moved in (the Runner does that for mmpretrain configs)."""
    model = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None and \
            'data_preprocessor' not in model:
        model['data_preprocessor'] = copy.deepcopy(cfg.data_preprocessor)
    return model


def build_task_model(cfg: Config, checkpoint: Optional[str] = None,
                     device: str = 'cpu',
                     override: Optional[Callable[[dict], None]] = None,
                     calibration: bool = True,
                     initialise: bool = True) -> nn.Module:
    """The config's model on ``device``, in eval mode: loaded from
    ``checkpoint`` (with the average-budget calibration beside it unless
    ``calibration`` is False), else initialised (unless ``initialise`` is
    False: only its shapes are wanted). ``override(model_cfg)`` may edit the
    model config first (swap its backbone, say)."""
    mcfg = model_cfg(cfg)
    if override is not None:
        override(mcfg)
    with config_scope_of(cfg):
        model = MODELS.build(mcfg)
        if checkpoint is not None:
            load_task_weights(model, checkpoint, calibration)
        elif initialise:
            _initialise(model, cfg)
    return model.to(device).eval()


def load_task_weights(model: nn.Module, checkpoint: str,
                      calibration: bool = True) -> None:
    """Every weight of ``model`` from ``checkpoint`` (strictly: a missing
    or unexpected key is an error that lists them, and so is a NaN), and the
    average-budget calibration beside it unless ``calibration`` is False."""
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    check_finite_weights(model.state_dict(), f'checkpoint {checkpoint}')
    if calibration:
        attach_calibration(getattr(model, 'backbone', None), checkpoint)


def _initialise(model: nn.Module, cfg: Config) -> None:
    """``model.init_weights()``, with a clear error when the config's
    initialisation wants files that are not here (a model-zoo URL, say)."""
    try:
        model.init_weights()
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise RuntimeError(
            f'{cfg.filename}: initialising the model failed ({error}); '
            'nothing is downloaded here: give a checkpoint, or drop the '
            'pretrained weights (--cfg-options model.backbone.init_cfg=None)'
        ) from error
