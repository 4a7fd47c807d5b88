"""DiT's average budget: one offset on the gate logits moves the learned
decisions (0: the learned route; monotone; decided per token), and
``calibrate_gate_offset`` solves it so that the mean executed FLOPs fraction
over calibration images is the budget, each image spending what it needs."""
import json

import pytest
import torch

from dit_mm.analysis.budget_calibration import (calibrate_gate_offset,
                                                calibration_path,
                                                executed_fractions,
                                                load_calibration,
                                                save_calibration)
from dit_mm.models.layers import randomize_gates
from test_dit_backbone import _dit, _masks


def model():
    dit = _dit('b0').eval()
    randomize_gates(dit)  # decisions that differ between tokens and images
    return dit


def images(count=6, size=64):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(1, 3, size, size, generator=gen) for _ in range(count)]


def test_offset_zero_is_the_learned_route_and_spending_rises_with_it():
    dit, x = model(), images(1)[0]
    with torch.no_grad():
        dit.set_budget(None)
        dit(x)
        learned = [m.clone() for m in _masks(dit.routing)]
        dit.set_gate_offset(0.0)
        dit(x)
    assert all(torch.equal(a, b) for a, b in zip(learned, _masks(dit.routing)))
    spent = [executed_fractions(dit, [x], o)[0] for o in (-4, -1, 0, 1, 4)]
    assert spent == sorted(spent) and spent[0] < spent[-1]
    assert dit.gate_offset == 4  # left as set: the caller's to restore


def test_calibrated_offset_meets_the_average_and_images_spend_differently():
    dit, xs = model(), images()
    result = calibrate_gate_offset(dit, xs, 0.6)
    assert result['mean_fraction'] == pytest.approx(0.6, abs=0.02)
    assert result['max_fraction'] - result['min_fraction'] > 0.01
    assert dit.gate_offset == 0.0  # restored
    # decided per token: an image spends the same alone and in a batch
    dit.set_gate_offset(result['offset'])
    with torch.no_grad():
        dit(torch.cat(xs[:2]))
        batch = dit.routing.flops_fraction.tolist()
    assert batch == pytest.approx(
        [executed_fractions(dit, [x], result['offset'])[0] for x in xs[:2]])
    with pytest.raises(ValueError, match='out of reach of the gate offset'):
        calibrate_gate_offset(dit, xs, 0.01)


def test_average_budget_reads_the_calibration_beside_the_checkpoint(tmp_path):
    dit = model()
    with pytest.raises(ValueError, match='calibrate_budget.py'):
        dit.set_average_budget(0.5)
    checkpoint = str(tmp_path / 'iter_1.pth')
    assert load_calibration(checkpoint) == {}
    save_calibration(calibration_path(checkpoint), checkpoint,
                     [dict(budget=0.5, offset=-1.25)])
    dit.budget_calibration = load_calibration(checkpoint)
    dit.set_budget(0.75)
    dit.set_average_budget(0.5)
    assert dit.budget is None and dit.gate_offset == -1.25
    with pytest.raises(ValueError, match=r'calibrated are \[0.5\]'):
        dit.set_average_budget(0.6)
    with pytest.raises(ValueError, match='finite'):
        dit.set_gate_offset(float('nan'))
    with open(calibration_path(checkpoint), 'w') as f:
        json.dump(dict(budgets=[dict(offset=1.0)]), f)
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
    from dit_mm.analysis.task_model import build_task_model
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
