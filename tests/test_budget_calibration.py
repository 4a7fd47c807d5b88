"""Average budgets: one monotone control moves each backbone's learned
decisions (DiT: an offset on the gate logits, 0 the learned route; token
pass: the stop threshold; MSViT: an offset on the scale gate's fine logits),
and ``calibrate_average_control`` solves it so that the mean executed FLOPs
fraction over calibration images is the budget, each image spending what it
needs, the same alone as in a batch."""
import json
import statistics

import pytest
import torch

from dit_mm.analysis.budget_calibration import (calibrate_average_control,
                                                executed_fractions,
                                                save_calibration)
from dit_mm.models.common.average_budget import (calibration_path,
                                                 load_calibration)
from dit_mm.models.common.gates import randomize_gates
from test_dit_backbone import _dit, _masks
from test_mixed_scale_vit import small_model as mixed_scale_vit
from test_token_pass_vit import small_model as token_pass_vit


def dit():
    model = _dit('b0').eval()
    randomize_gates(model)  # decisions that differ between tokens and images
    return model


# each with decisions that differ between tokens and images: random gates,
# spread stop heads and scale gate (the helpers of their test files)
BACKBONES = dict(DiT=dit, TokenPassViT=lambda: token_pass_vit(),
                 MixedScaleViT=lambda: mixed_scale_vit())


def images(count=6, size=64):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(1, 3, size, size, generator=gen) for _ in range(count)]


def test_dit_offset_zero_is_the_learned_route():
    model, x = dit(), images(1)[0]
    with torch.no_grad():
        model.set_budget(None)
        learned = [m.clone() for m in _masks(model(x).stats)]
        model.set_average_control(0.0)
        stats = model(x).stats
    assert all(torch.equal(a, b) for a, b in zip(learned, _masks(stats)))


@pytest.mark.parametrize('name', list(BACKBONES))
def test_spending_rises_with_the_control(name):
    model, x = BACKBONES[name](), images(1, 128)[0]
    low, high = model.control_range
    controls = [low + (high - low) * t for t in (0, 0.3, 0.45, 0.55, 0.7, 1)]
    spent = [executed_fractions(model, [x], c)[0] for c in controls]
    assert spent == sorted(spent) and spent[0] < spent[-1] - 0.1, spent


def least_and_reachable(model, xs):
    """The least mean fraction the control reaches on ``xs``, and an average
    budget between it and 1 (reachable for every family)."""
    low = statistics.fmean(executed_fractions(model, xs,
                                              model.control_range[0]))
    return low, round(low + 0.6 * (1 - low), 2)


@pytest.mark.parametrize('name', list(BACKBONES))
def test_calibrated_control_meets_the_average_and_images_spend_differently(
        name):
    model, xs = BACKBONES[name](), images(6, 128)
    low, target = least_and_reachable(model, xs)
    model.set_average_control(None)
    result = calibrate_average_control(model, xs, target)
    assert result['mean_fraction'] == pytest.approx(target, abs=0.02)
    assert result['max_fraction'] - result['min_fraction'] > 0.005
    assert model.average_control is None  # restored
    # decided per token: an image spends the same alone and in a batch
    alone = executed_fractions(model, xs[:2], result['control'])
    with torch.no_grad():
        stats = model(torch.cat(xs[:2])).stats
    assert stats.flops_fraction.tolist() == pytest.approx(alone)
    with pytest.raises(ValueError, match="out of reach of .*'s control"):
        calibrate_average_control(model, xs, low / 2)


def test_the_bisection_stops_once_it_spends_the_budget_within_tolerance(
        monkeypatch):
    """The spending is a step function of the control: the bisection stops
    once the largest control found spends at most the budget and within
    ``tolerance`` of it, not after all its steps."""
    from dit_mm.analysis import budget_calibration
    model, xs = BACKBONES['TokenPassViT'](), images(6, 128)
    _, target = least_and_reachable(model, xs)
    controls = []

    def spy(backbone, batch, control):
        controls.append(control)
        return executed_fractions(backbone, batch, control)

    monkeypatch.setattr(budget_calibration, 'executed_fractions', spy)
    result = calibrate_average_control(model, xs, target, tolerance=0.01)
    assert target - 0.01 <= result['mean_fraction'] <= target
    assert len(controls) < 2 + 30  # the two ends, then fewer than 30 steps


def test_average_budget_reads_the_calibration_beside_the_checkpoint(tmp_path):
    model = dit()
    with pytest.raises(ValueError, match='calibrate_budget.py'):
        model.set_average_budget(0.5)
    checkpoint = str(tmp_path / 'iter_1.pth')
    assert load_calibration(checkpoint) == {}
    save_calibration(calibration_path(checkpoint), checkpoint,
                     [dict(budget=0.5, control=-1.25)])
    model.budget_calibration = load_calibration(checkpoint)
    model.set_budget(0.75)
    model.set_average_budget(0.5)
    assert model.budget is None and model.average_control == -1.25
    with pytest.raises(ValueError, match=r'calibrated are \[0.5\]'):
        model.set_average_budget(0.6)
    with pytest.raises(ValueError, match='finite'):
        model.set_average_control(float('nan'))
    with open(calibration_path(checkpoint), 'w') as f:
        json.dump(dict(budgets=[dict(control=1.0)]), f)
    with pytest.raises(ValueError, match='not a budget calibration'):
        load_calibration(checkpoint)


def test_the_tool_calibrates_a_trained_model_and_keeps_what_exists(
        trained_classifier, tmp_path):
    """calibrate_budget.py on the suite's trained toy DiT classifier (a copy
    of its checkpoint): the table, the file beside the checkpoint, which the
    tools' model builder hands to the backbone; run again it refuses to
    replace the file without --force."""
    import shutil

    from conftest import CLS_TOY, load_tool
    from dit_mm.models.builder import build_task_model
    from dit_mm.engine.cli import load_config
    tool = load_tool('tools/analysis_tools/calibrate_budget.py', 'calib')
    checkpoint = tmp_path / 'iter_1.pth'
    shutil.copy(trained_classifier / 'iter_1.pth', checkpoint)
    argv = [CLS_TOY, str(checkpoint), '--budgets', '0.6', '--num-images', '4']
    assert tool.main(argv) == 0
    calibration = load_calibration(str(checkpoint))
    assert list(calibration) == [0.6]
    model = build_task_model(load_config(CLS_TOY), str(checkpoint))
    assert model.backbone.budget_calibration == calibration
    before = (tmp_path / 'iter_1.pth.calibration.json').read_bytes()
    with pytest.raises(SystemExit, match='exists; --force replaces it'):
        tool.main(argv)
    assert (tmp_path / 'iter_1.pth.calibration.json').read_bytes() == before
    # a stale file (another format) is replaced with --force, not read
    (tmp_path / 'iter_1.pth.calibration.json').write_text('{"budgets": [{}]}')
    assert tool.main(argv + ['--force']) == 0
    assert load_calibration(str(checkpoint)) == calibration
