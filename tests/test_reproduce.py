"""The papermill reproduction at tiny size: every figure and a well-formed results.json, the results table from a file
and the `chirploc results` command, a rerun that retrains nothing, and a failing run. nbs/07_reproduce holds the
presets, the in-process tiny run and its rerun's identical results, and the results table's columns (nbdev_test)."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from chirploc.figures import FIGURE_FILES
from chirploc.reproduce import RESULT_KEYS, check_results
from chirploc.results import results_table

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / 'nbs' / '07_reproduce.ipynb'


def papermill(out_nb: Path, **params):
    "Run the reproduction notebook through papermill's command line, as the README does."
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, '-m', 'papermill', str(NOTEBOOK), str(out_nb), '--no-progress-bar']
    for k, v in params.items(): cmd += ['-p', k, str(v)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp('repro')
    out, work = base / 'out', base / 'work'
    p = papermill(out / 'reproduce.ipynb', preset='tiny', out_dir=out, work_dir=work, progress=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return base, out, work


def test_every_figure_and_results(tiny_run):
    _, out, _ = tiny_run
    for name in FIGURE_FILES:
        f = out / name
        assert f.is_file() and f.stat().st_size > 200, name
        if name.endswith('.png'): assert f.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name
    res = json.loads((out / 'results.json').read_text())
    check_results(res, out)
    assert set(RESULT_KEYS) <= set(res)
    assert res['preset'] == 'tiny' and res['n_train'] == 128 and res['n_test'] == 32
    assert set(res['targets']) == {'Chirp_Start_Time', 'Chirp_Start_Freq', 'Chirp_End_Freq'}
    for m in res['targets'].values(): assert set(m) == {'pearson_r', 'mae', 'rmse', 'median_ae', 'p95_ae'} and m['mae'] > 0
    assert set(res['inference']) == {'images', 'seconds', 'images_per_s', 'device'} and res['inference']['images'] == 32
    assert res['epochs_run'] == 2 and 1 <= res['best_epoch'] <= 2 and res['train_seconds'] > 0
    assert res['backbone'] == 'vit-micro (from scratch)'
    tracker = res['baselines']['ridge_tracker']  # the classical baseline, on the same test split
    assert tracker['inference']['images'] == 32 and set(tracker['targets']) >= set(res['targets'])
    # the executed notebook sits next to results.json, with the injected parameters and no error
    nb = nbformat.read(out / 'reproduce.ipynb', 4)
    assert any('injected-parameters' in c.metadata.get('tags', []) for c in nb.cells)
    assert not any(o.get('output_type') == 'error' for c in nb.cells for o in c.get('outputs', []))


def test_results_table_from_files(tiny_run):
    _, out, _ = tiny_run
    tab = results_table([out / 'results.json'])  # a path reads as the dict it holds (07_reproduce checks the columns)
    assert tab.equals(results_table([json.loads((out / 'results.json').read_text())])) and len(tab.columns) == 5  # + tracker, limit, floor
    p = subprocess.run([sys.executable, '-m', 'chirploc.cli', 'results', str(out / 'results.json')],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith('|  | paper (reported) |') and 'r start time' in p.stdout


def test_rerun_reuses_data_and_training(tiny_run):
    "Rerunning the same command reuses the dataset and the finished training (07_reproduce checks its results are the same)."
    base, out, work = tiny_run
    data_before = {p: p.stat().st_mtime_ns for p in (work / 'data').rglob('*') if p.is_file()}
    state = work / 'train' / 'checkpoint' / 'state.pt'  # written after every epoch, and only then
    s_before, w_before = state.stat().st_mtime_ns, (work / 'train' / 'model.safetensors').read_bytes()
    p = papermill(base / 'again' / 'reproduce.ipynb', preset='tiny', out_dir=base / 'again', work_dir=work, progress=False)
    assert p.returncode == 0, p.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (work / 'data').rglob('*') if p.is_file()} == data_before
    assert state.stat().st_mtime_ns == s_before  # no epoch was trained again
    assert (work / 'train' / 'model.safetensors').read_bytes() == w_before


def test_failing_cell_fails_the_run_and_keeps_the_notebook(tmp_path):
    out = tmp_path / 'out'
    p = papermill(out / 'reproduce.ipynb', preset='tiny', backbone='no-such-backbone-anywhere', out_dir=out,
                  work_dir=tmp_path / 'work', progress=False)
    assert p.returncode != 0
    nb = nbformat.read(out / 'reproduce.ipynb', 4)  # left for inspection, with the error in it
    errors = [o for c in nb.cells for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert errors and 'no-such-backbone-anywhere' in ''.join(errors[0]['traceback'] + [errors[0]['evalue']])
    assert not (out / 'results.json').exists()


def test_refined_rows_only_from_the_latest_refinement(tiny_run):
    "Seeds of one recipe refined by different versions of the refinement are not averaged: the latest one's runs are shown."
    import copy
    _, out, _ = tiny_run
    res = json.loads((out / 'results.json').read_text())
    def refined_run(seed, created, mae, method=None):
        r = copy.deepcopy(res)
        r.update(seed=seed, created=created)
        ref = copy.deepcopy(res['targets'])
        for m in ref.values(): m['mae'] = mae
        r['refined'] = dict(n=32, model=dict(targets=res['targets'], inference=res['inference']),
                            refined=dict(targets=ref, inference=dict(res['inference'], images_per_s=10.0)))
        if method: r['refined']['method'] = method
        return r
    old, new = refined_run(0, '2026-11-01T00:00:00+00:00', 9.0), refined_run(1, '2026-12-01T00:00:00+00:00', 1.0, 'v2')
    col = results_table([old, new]).iloc[:, 1]  # the recipe's column (after the paper's)
    assert col['refined: MAE start time (s)'] == '1.00'  # the new refinement's alone, not the mean 5.00 +- 5.66
    assert 'seed 1 only' in col['refined: inference']
    both = results_table([refined_run(0, '2026-11-01', 9.0, 'v2'), new]).iloc[:, 1]
    assert both['refined: MAE start time (s)'].startswith('5.00') and 'only' not in both['refined: inference']
