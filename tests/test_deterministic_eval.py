"""Deterministic evaluation: an image gets the same routing and the same result
whatever else is in its batch, and run after run.

The token-pass and mixed-scale ViTs have their own batch-composition tests
(``test_an_image_gives_the_same_result_alone_and_in_any_batch`` in
test_token_pass_vit.py and test_mixed_scale_vit.py, and the segmentor's in
test_token_pass_vit.py); here DiT's, under learned decisions and under a
budget (whose top-k is per image, never over the batch), and the whole
``tools/test.py`` path of a DiT classifier: two runs give identical scores,
and batches of 1 and of 5 give the same ones.
"""
import pytest
import torch
from mmengine.fileio import load

from conftest import CLS_TOY, run_tool
from dit_mm.models.common.gates import randomize_gates
from test_dit_backbone import _assert_same_masks, _dit, _masks


@pytest.mark.parametrize('budget', [None, 0.5])
def test_dit_routes_an_image_alike_alone_and_in_any_batch(budget):
    torch.manual_seed(0)
    model = _dit('b0', stop_threshold=0.05).eval()
    randomize_gates(model)
    model.set_budget(budget)
    image = torch.randn(1, 3, 96, 128)
    others = [torch.randn(1, 3, 96, 128) * s for s in (0.3, 3.0)]
    with torch.no_grad():
        alone = model(image)
        alone_routing = alone.stats
        for batch, at in ((torch.cat([others[0], image, others[1]]), 1),
                          (torch.cat([image, image]), 0)):
            outs = model(batch)
            routing = outs.stats
            for a, b in zip(_masks(alone_routing), _masks(routing)):
                assert torch.equal(a[0], b[at])
            for a, b in zip(alone, outs):
                torch.testing.assert_close(b[at], a[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(routing.flops[at],
                                       alone_routing.flops[0])
            if at == 1:  # the others are routed otherwise: a mixed batch
                assert not torch.equal(routing.density[0][0],
                                       routing.density[0][1])
        again = model(image)
        again_routing = again.stats
    _assert_same_masks(alone_routing, again_routing)
    for a, b in zip(alone, again):
        assert torch.equal(a, b)  # bit for bit, run after run


@pytest.mark.slow
def test_test_tool_scores_repeat_and_do_not_depend_on_the_batch(
        trained_classifier, tmp_path):
    checkpoint = trained_classifier / 'iter_1.pth'
    scores = {}
    for name, batch in (('first', 1), ('again', 1), ('batched', 5)):
        out = tmp_path / f'{name}.pkl'
        run_tool('tools/test.py', CLS_TOY, checkpoint, '--work-dir',
                 tmp_path / name, '--out', out, '--cfg-options',
                 f'test_dataloader.batch_size={batch}')
        results = sorted(load(str(out)), key=lambda r: r['sample_idx'])
        scores[name] = torch.stack(
            [torch.as_tensor(r['pred_score']) for r in results])
    assert scores['first'].shape[0] == 24
    assert torch.equal(scores['first'], scores['again'])
    torch.testing.assert_close(scores['batched'], scores['first'],
                               atol=1e-5, rtol=1e-5)
    assert torch.equal(scores['batched'].argmax(1), scores['first'].argmax(1))
