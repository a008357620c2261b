"""The evaluate / predict command lines: the JSON contract, bad folders, reference-made folders, and a localizer that
predicts duration and type. nbs/05_evaluate holds regression_report, the detection metrics and describe_chirp (nbdev_test)."""
import json
import subprocess
import sys
import warnings
from unittest import mock

import numpy as np
import pytest

from chirploc.generate import write_dataset

TARGETS = ['Chirp_Start_Time', 'Chirp_Start_Freq', 'Chirp_End_Freq']


def run(*args):
    return subprocess.run([sys.executable, '-m', 'chirploc.cli', *args], capture_output=True, text=True)


@pytest.fixture(scope='module')
def figs(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp('figs') / 'd', 12, seed=77, kind='figure', workers=1, progress=False)


def test_evaluate_json_contract(figs):
    "The default: the model's numbers (targets, inference) and, labelled apart, the refined ones with their own time."
    p = run('evaluate', '--data', str(figs), '--json')
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert list(out) == ['targets', 'inference', 'loading', 'refined']
    assert list(out['refined']['targets']) == list(out['targets']) and out['refined']['inference']['images'] == 12
    assert out['refined']['inference']['seconds'] > out['inference']['seconds'] and 'cpu' in out['refined']['inference']['device']
    assert list(out['targets']) == TARGETS + ['Chirp_Duration', 'Chirp_Type', 'Chirp_Present']  # the default model: every target
    assert set(out['targets']['Chirp_Type']) == {'accuracy'} and 'detection_rate' in out['targets']['Chirp_Present']
    for m in (out['targets'][t] for t in TARGETS + ['Chirp_Duration']):
        assert set(m) == {'pearson_r', 'mae', 'rmse', 'median_ae', 'p95_ae'} and all(np.isfinite(v) for v in m.values())
        assert m['mae'] <= m['rmse']
    assert set(out['inference']) == {'images', 'seconds', 'images_per_s', 'device'}
    assert out['inference']['images'] == 12 and out['inference']['device'] == 'cpu'


def test_evaluate_on_a_reference_made_folder(tmp_path):
    import chirp_spectrogram_generator.generator as refmod
    g = refmod.SpectrogramGenerator(output_dir=str(tmp_path / 'ref'))
    np.random.seed(3)
    with warnings.catch_warnings(), mock.patch('builtins.print'):
        warnings.simplefilter('ignore')
        g.generate_dataset(6)
    p = run('evaluate', '--data', str(tmp_path / 'ref'), '--json', '--no-refine')
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out['inference']['images'] == 6 and list(out) == ['targets', 'inference', 'loading']   # the model alone


@pytest.mark.parametrize('damage,expect', [
    ('no_labels', 'labels.csv'), ('missing_image', 'spectrogram_3.png'), ('not_a_folder', 'no such folder'),
    ('truncated_png', 'spectrogram_2.png'),
])
def test_evaluate_bad_folder_one_line(tmp_path, figs, damage, expect):
    import shutil
    d = tmp_path / 'd'
    shutil.copytree(figs, d)
    if damage == 'no_labels': (d / 'labels.csv').unlink()
    if damage == 'missing_image': (d / 'spectrogram_3.png').unlink()
    if damage == 'not_a_folder': d = tmp_path / 'nothing'
    if damage == 'truncated_png':
        b = (d / 'spectrogram_2.png').read_bytes(); (d / 'spectrogram_2.png').write_bytes(b[:len(b) // 2])
    p = run('evaluate', '--data', str(d), '--json')
    assert p.returncode != 0
    lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and expect in lines[0] and 'Traceback' not in p.stderr, p.stderr


def test_predict_sentences_and_json(figs):
    p = run('predict', str(figs / 'spectrogram_1.png'), str(figs / 'spectrogram_2.png'))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 2 and all('chirp starting at' in l and ' Hz' in l for l in lines)
    p = run('predict', str(figs / 'spectrogram_1.png'), '--json')
    row = json.loads(p.stdout)
    assert set(TARGETS) <= set(row) and row['description'].endswith('.')
    assert row['refined'] is True and set(TARGETS) <= set(row['model'])     # refined, the model's own estimates beside
    plain = json.loads(run('predict', str(figs / 'spectrogram_1.png'), '--json', '--no-refine').stdout)
    assert plain['refined'] is False and 'model' not in plain
    assert all(plain[t] == pytest.approx(row['model'][t]) for t in TARGETS)   # the model alone: the same network answer


def test_full_localizer_type_and_duration(tmp_path):
    "A localizer predicting duration and type: BCE-trained type logit, accuracy in the report, P(exponential) in predict."
    from chirploc.train import train
    from chirploc.evaluate import evaluate_localizer
    targets = ['Chirp_Start_Time', 'Chirp_Start_Freq', 'Chirp_End_Freq', 'Chirp_Duration', 'Chirp_Type']
    model, history = train(synthetic=64, out_dir=tmp_path / 'run', backbone='vit-micro', targets=targets, epochs=1,
                           batch_size=16, progress=False)
    assert np.isfinite(history.test_loss).all() and 'r_Chirp_Type' in history
    folder = write_dataset(tmp_path / 'arr', 20, seed=3, kind='array', progress=False)
    report, table = evaluate_localizer(tmp_path / 'run', folder)
    assert set(report['targets']['Chirp_Type']) == {'accuracy'} and 0 <= report['targets']['Chirp_Type']['accuracy'] <= 1
    assert set(report['targets']['Chirp_Duration']) == {'pearson_r', 'mae', 'rmse', 'median_ae', 'p95_ae'}
    assert table.pred_Chirp_Type.between(0, 1).all()  # a probability, not a de-standardized logit
    pred = model.predict(np.stack([np.load(folder / 'spectrograms_00000.npy')[i] for i in range(3)]))
    assert list(pred.columns) == targets[:4] + ['Chirp_Type', 'Chirp_Type_prob']
    assert set(pred.Chirp_Type) <= {'linear', 'exponential'} and pred.Chirp_Type_prob.between(0, 1).all()
    np.save(tmp_path / 'one.npy', np.load(folder / 'spectrograms_00000.npy')[0])
    p = subprocess.run([sys.executable, '-m', 'chirploc.cli', 'predict', str(tmp_path / 'one.npy'), '--model', str(tmp_path / 'run'),
                        '--json', '--no-refine'], capture_output=True, text=True)    # the model's own type probability
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)
    assert row['Chirp_Type'] in ('linear', 'exponential') and 0 <= row['Chirp_Type_prob'] <= 1
    assert 'with probability' in row['description'] and 'lasting' in row['description']


def test_default_model_says_no_chirp_on_noise(tmp_path):
    "The shipped model is a detector: on a chirp-free ChirpLoc100K figure it says so; on a chirp it gives duration and type."
    import pandas as pd
    from chirploc.generate import GeneratorConfig
    folder = write_dataset(tmp_path / 'mixed', 4, seed=1, kind='figure', cfg=GeneratorConfig(p_empty=0.5), workers=1, progress=False)
    assert pd.read_csv(folder / 'labels.csv').Chirp_Present.tolist() == [1, 0, 0, 1]  # the README's quick-start example
    p = run('predict', str(folder / 'spectrogram_1.png'), str(folder / 'spectrogram_3.png'), str(folder / 'spectrogram_4.png'))
    assert p.returncode == 0, p.stderr
    first, noise, last = p.stdout.strip().splitlines()
    assert noise.startswith('spectrogram_3.png: No chirp (probability of a chirp'), noise
    for line in (first, last):
        assert 'chirp starting at' in line and 'lasting' in line and 'with probability' in line, line
    row = json.loads(run('predict', str(folder / 'spectrogram_3.png'), '--json').stdout)
    assert row['Chirp_Present'] is False or row['Chirp_Present'] in (0, False), row


def test_refine_searches_from_the_heatmap_candidates(tmp_path):
    "predict(candidates=m) hands the default model's ranked states to refine, which searches from them as well as from the"
    "answer: its fit is never worse than the answer's alone (a superset of starts, each searched on its own)."
    from chirploc.bins import bins_from_labels
    from chirploc.evaluate import REFINE_CANDIDATES, load_localizer, refine
    from chirploc.generate import generate_batch
    from chirploc.limit import LimitEstimator
    S, lab = generate_batch(range(16), seed=21)
    d = load_localizer(None, 'cpu').predict(S.astype(np.float32), candidates=REFINE_CANDIDATES)
    c = d.attrs['candidates']
    assert c.shape == (16, REFINE_CANDIDATES, 5) and c.dtype == np.int64
    bare = d.copy(); bare.attrs = {}
    helped, alone = refine(d, S, gate=False), refine(bare, S, gate=False)   # the full search: every start searched
    fit = lambda r: LimitEstimator().score(S, bins_from_labels(r))['objective']
    chirp = d.Chirp_Present.to_numpy(bool)
    assert (fit(helped)[chirp] <= fit(alone)[chirp] + 1e-9).all()
    with pytest.raises(ValueError, match='candidates has 5 rows for 16 predictions'):
        refine(d, S, candidates=c[:5])
    np.save(tmp_path / 'three.npy', S[:3].astype(np.float32))
    p = run('predict', str(tmp_path / 'three.npy'), '--refine', '--json')
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert len(rows) == 3 and all(r['file'].startswith(str(tmp_path / 'three.npy')) for r in rows)


def test_evaluate_refined_beside_the_model(tmp_path):
    "evaluate --refine: the model's numbers unchanged, the refined ones (with the candidates' reading in their time) apart."
    from chirploc.evaluate import evaluate_localizer
    folder = write_dataset(tmp_path / 'arr', 12, seed=5, kind='array', progress=False)
    plain, _ = evaluate_localizer(None, folder)
    report, table = evaluate_localizer(None, folder, refine_with_likelihood=True)
    assert report['targets'] == plain['targets']
    assert set(report['refined']['targets']) == set(plain['targets'])
    assert report['refined']['inference']['seconds'] > report['inference']['seconds']
    assert {'refined_Chirp_Start_Time', 'refined_Chirp_Type'} <= set(table.columns)
    # every sample is refined, also those the detector calls chirp-free: location is scored on every true chirp
    _, none_called = evaluate_localizer(None, folder, refine_with_likelihood=True, threshold=1.01)
    cols = [c for c in table.columns if c.startswith('refined_')]
    assert np.allclose(none_called[cols].to_numpy(float), table[cols].to_numpy(float))
    assert any(not np.allclose(table[c], table[c.replace('refined_', 'pred_')], atol=1e-3) for c in cols)  # it did move some
