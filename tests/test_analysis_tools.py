"""The analysis scripts run end to end (tiny settings) and write sane JSON.

No timing is asserted: the machines running the tests are shared and noisy;
the figures themselves come from the scripts' full runs.
"""
import json

import pytest

from conftest import run_tool


@pytest.fixture(scope='module')
def latency_json(tmp_path_factory):
    out = tmp_path_factory.mktemp('latency') / 'latency.json'
    text = run_tool('tools/analysis_tools/benchmark_dit_latency.py', '--arch', 'b0',
                    '--size', '96', '96', '--budgets', '1.0', '0.5',
                    '--learned', '--repeats', '1', '--warmup', '0',
                    '--threads', '1', '--max-ratio', '1000', '--json', out)
    return json.loads(out.read_text()), text


@pytest.fixture(scope='module')
def table_json(tmp_path_factory):
    out = tmp_path_factory.mktemp('table') / 'table.json'
    text = run_tool('tools/analysis_tools/dit_model_table.py', '--archs', 'b0',
                    '--latency-size', '64', '64', '--repeats', '1',
                    '--warmup', '0', '--threads', '1', '--json', out)
    return json.loads(out.read_text()), text


def test_latency_benchmark(latency_json):
    data, text = latency_json
    assert '| config |' in text and 'DiT-b0 budget 0.5 / budget 1.0' in text
    assert data['arch'] == 'b0' and data['size'] == [96, 96]
    assert data['environment']['threads'] == 1
    # DiT at budget 1.0 carries mmdet PVTv2's weights and computes PVTv2
    assert data['max_abs_diff_route_vs_pvt'] < 1e-4
    results = {r['name']: r for r in data['results']}
    assert list(results) == ['mmdet PVTv2', 'DiT budget=1.0',
                             'DiT budget=0.5', 'DiT learned']
    for r in results.values():
        assert 0 < r['flops_fraction'] <= 1.01  # learned pays for its gates
        assert r['gflops'] > 0
        assert len(r['times_ms']) == 1 and r['min_ms'] > 0
        assert r['min_ms'] <= r['median_ms']
    assert results['DiT budget=1.0']['flops_fraction'] == pytest.approx(1.0,
                                                                        abs=1e-9)
    assert results['DiT budget=1.0']['ratio_to_budget1'] == 1.0
    assert results['mmdet PVTv2']['ratio_to_pvt'] == 1.0
    assert results['mmdet PVTv2']['gflops'] == pytest.approx(
        data['route_gflops'])
    half = results['DiT budget=0.5']
    assert half['flops_fraction'] == pytest.approx(0.5, abs=0.02)
    assert half['gflops'] == pytest.approx(0.5 * data['route_gflops'], rel=0.05)
    assert data['key_ratio']['budget'] == 0.5
    assert data['key_ratio']['median_ratio'] == half['ratio_to_budget1']


def test_latency_benchmark_of_the_swinv2_family(tmp_path):
    out = tmp_path / 'swin.json'
    text = run_tool('tools/analysis_tools/benchmark_dit_latency.py', '--arch',
                    'swinv2-t', '--size', '128', '128', '--budgets', '1.0',
                    '0.5', '--repeats', '1', '--warmup', '0', '--threads',
                    '1', '--json', out)
    data = json.loads(out.read_text())
    results = {r['name']: r for r in data['results']}
    assert list(results) == ['mmpretrain Swin-v2', 'DiT budget=1.0',
                             'DiT budget=0.5 (packed)',
                             'DiT budget=0.5 (whole)']
    assert data['gates'] == 'random'  # kept tokens spread over the windows
    assert data['max_abs_diff_route_vs_pvt'] < 1e-4
    assert data['params_m']['dit'] > data['params_m']['peer'] > 27
    for mode in ('packed', 'whole'):
        half = results[f'DiT budget=0.5 ({mode})']
        assert half['window_mode'] == mode
        assert half['flops_fraction'] == pytest.approx(0.5, abs=0.02)
    assert data['key_ratio']['window_mode'] in ('packed', 'whole')
    assert 'DiT-swinv2-t budget 0.5 (' in text


def test_model_table(table_json):
    data, text = table_json
    assert '## Parameters' in text and '## CPU latency' in text
    (row, ) = data['rows']
    assert row['arch'] == 'b0'
    # DiT = PVTv2 + its routing gates
    assert row['params_dit_m'] - row['params_gates_m'] == pytest.approx(
        row['params_pvt_m'], abs=1e-9)
    assert row['params_pvt_m'] == pytest.approx(3.41, abs=0.01)
    assert row['params_pvt_with_head_m'] == pytest.approx(
        row['params_pvt_m'] + (256 * 1000 + 1000) / 1e6)
    # the paper's 0.6 GFLOPs is rounded to one decimal: 0.566 rounds to it
    assert round(row['route_gflops_224'], 1) == row['paper_gflops_224'] == 0.6
    assert row['route_gflops_800x1333'] > 40 * row['route_gflops_224']
    # mmengine's jit count of mmdet's PVTv2 = the analytic route + LayerNorms
    assert row['jit_minus_norms_minus_route_gflops'] == pytest.approx(0,
                                                                      abs=1e-3)
    assert row['route_fraction_224'] == pytest.approx(1.0, abs=1e-9)
    assert row['budget'] == 0.5
    assert row['budget_fraction_224'] == pytest.approx(0.5, abs=0.02)
    assert 0 < row['learned_fraction_224'] <= 1.01
    latency = row['latency']
    assert latency['size'] == [64, 64]
    for key in ('pvt_ms', 'dit_1_ms', 'dit_budget_ms',
                'dit_budget_over_dit_1'):
        assert latency[key] > 0


@pytest.mark.parametrize('method,title', [('token-pass', 'TokenPassViT'),
                                          ('mixed-scale', 'MixedScaleViT')])
def test_vit_latency_benchmark(method, title, tmp_path):
    out = tmp_path / 'vit.json'
    text = run_tool('tools/analysis_tools/benchmark_vit_latency.py', '--method',
                    method, '--arch', 't', '--size', '128', '96', '--budgets',
                    '1.0', '0.5', '--repeats', '1', '--warmup', '0',
                    '--threads', '1', '--max-ratio', '1000', '--json', out)
    data = json.loads(out.read_text())
    assert f'{title}-T budget 0.5 / budget 1.0' in text
    assert data['method'] == method
    assert data['max_abs_diff_budget1_vs_vit'] < 1e-4
    results = {r['name']: r for r in data['results']}
    full, half = f'{method} budget=1.0', f'{method} budget=0.5'
    assert list(results) == ['mmseg ViT', full, half]
    assert results[full]['flops_fraction'] == 1.0
    assert 0.4 < results[half]['flops_fraction'] <= 0.5
    assert results[half]['keep_fraction'] < 1.0
    params = data['params_m']
    assert 0 < params['added'] < 0.1 * params['vit']
    assert params['dynamic'] == pytest.approx(params['vit'] + params['added'])
    failing = run_tool('tools/analysis_tools/benchmark_vit_latency.py', '--method',
                       method, '--arch', 't', '--size', '64', '64',
                       '--budgets', '0.5', '--repeats', '1', '--warmup', '0',
                       '--max-ratio', '0.0', check=False)
    assert 'FAIL: budget 0.5' in failing
