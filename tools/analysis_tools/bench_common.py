"""Helpers shared by the analysis scripts beside this file (not a script).

Builds a DiT backbone and the static baseline, mmdet's
``PyramidVisionTransformerV2`` (or for the Swin-v2 family mmpretrain's
``SwinTransformerV2``) of the same arch, with the same weights. The
timing (interleaved round-robin: the only fair way on a shared, noisy machine,
every configuration sees the same load drift), the static peers and the
report helpers live in the package (``dit_mm.analysis.latency``,
``static_peer``, ``report``) and are imported from here by the scripts, which
import this module as ``bench_common`` (their folder is on ``sys.path`` when
they run).
"""
import sys
from typing import Optional, Tuple

import torch

import dit_mm  # noqa: F401  (registers modules)
from dit_mm.analysis.latency import interleaved_latency, paired_ratio
from dit_mm.analysis.report import (environment, fmt, load_average,
                                    markdown_table, quiet_mmengine,
                                    write_json)
from dit_mm.analysis.static_peer import pvt_kwargs, static_peer_backbone
from dit_mm.models.backbones.dit import DiT
from dit_mm.models.backbones.dit_swinv2 import DiTSwinV2

# what the scripts import from here (the package's helpers among them)
__all__ = ['build_pair', 'build_pvt', 'build_swin_pair', 'environment', 'fmt',
           'forward_calls', 'interleaved_latency', 'load_average',
           'markdown_table', 'num_params', 'paired_ratio', 'quiet_mmengine',
           'ratio_exit_code', 'write_json']


def forward_calls(dynamic, static, x):
    """``(static_call, dynamic_call)``: a no-grad forward of the static model
    (PVTv2, ViT) on ``x``, and a factory of no-grad forwards of the dynamic one
    at a given budget (and Swin-v2 window mode), for timing."""

    def dynamic_call(budget, window_mode=None):
        def call():
            dynamic.set_budget(budget)
            if window_mode is not None:
                dynamic.set_window_mode(window_mode)
            with torch.no_grad():
                dynamic(x)
        return call

    def static_call():
        with torch.no_grad():
            static(x)

    return static_call, dynamic_call


def ratio_exit_code(key: Optional[dict], max_ratio: Optional[float]) -> int:
    """1 (with a message) when the lowest budget's median latency ratio
    ``key['median_ratio']`` exceeds ``max_ratio``; 0 otherwise."""
    if key is None or max_ratio is None or key['median_ratio'] <= max_ratio:
        return 0
    print(f'FAIL: budget {key["budget"]:g} takes {key["median_ratio"]:.3f} of '
          f'budget 1.0\'s time, more than --max-ratio {max_ratio}',
          file=sys.stderr)
    return 1


def build_swin_pair(arch: str, seed: int = 0):
    """A ``DiTSwinV2`` of ``arch`` (``'t'``, ``'s'``, ``'b'``; window 8; four
    maps, any input size, as the detection configs set it) with mmpretrain's
    initialisation and mmpretrain's ``SwinTransformerV2`` carrying the same
    weights, both in eval mode."""
    torch.manual_seed(seed)
    quiet_mmengine()
    dit = DiTSwinV2(arch, drop_path_rate=0., out_indices=(0, 1, 2, 3),
                    pad_small_map=True)
    dit.init_weights()
    return dit.eval(), static_peer_backbone(dit)


def build_pvt(arch: str) -> torch.nn.Module:
    """mmdet's PVTv2 (the static baseline), PVTv2-initialised, in eval mode."""
    from mmdet.models.backbones import PyramidVisionTransformerV2
    quiet_mmengine()
    pvt = PyramidVisionTransformerV2(**pvt_kwargs(arch))
    pvt.init_weights()
    return pvt.eval()


def build_pair(arch: str, seed: int = 0) -> Tuple[DiT, torch.nn.Module]:
    """A DiT and mmdet's PVTv2 of ``arch`` carrying the same weights (DiT's
    routing gates keep their initial values), both in eval mode."""
    torch.manual_seed(seed)
    pvt = build_pvt(arch)
    dit = DiT(arch)
    dit.init_weights()
    dit.load_weights(pvt.state_dict(), f'mmdet PVTv2-{arch}')
    return dit.eval(), pvt


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

