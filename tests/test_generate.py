"""The generator against the reference package (chirp-spectrogram-generator==0.1.6), and its on-disk guarantees.

Fidelity numbers are printed (run with `-s` to see them) and asserted against the issue's tolerances. Here: the sweeps
against the reference (matrices, label distributions, PNG pixels), worker processes, growing a dataset, SIGKILLed command
lines that resume, and the command line's one-line errors. nbs/01_generate holds the rest (nbdev_test runs it): the
parameter checks and their messages, resuming a damaged folder, and the refusal to mix datasets."""
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

import chirp_spectrogram_generator.generator as refmod
from chirploc.generate import (CHIRP_TYPES, LABEL_COLUMNS, DatasetMismatch, FigureRenderer, add_noise_and_smooth,
                               chirp_ridges, generate_batch, sample_chirps, write_dataset)


@pytest.fixture(scope='module')
def ref(tmp_path_factory):
    g = refmod.SpectrogramGenerator(output_dir=str(tmp_path_factory.mktemp('ref')))
    g.sample_rate = 10  # the waveform is never used; a short one keeps the test fast and changes no matrix
    return g


def ref_matrix(ref, r, noise_free=False):
    "The reference's matrix for chirp `r`. Its unused waveform is stubbed out: it changes no matrix, but it costs most of the"
    "time and, for an exponential chirp starting at exactly 0 Hz, raises ZeroDivisionError (a reference quirk)."
    args = (r.Chirp_Start_Time, r.Chirp_Start_Freq, r.Chirp_End_Freq, r.Chirp_Duration, r.Chirp_Type)
    no_wave = lambda *a: None
    with mock.patch.object(refmod.SpectrogramGenerator, 'generate_linear_chirp', no_wave), \
         mock.patch.object(refmod.SpectrogramGenerator, 'generate_exponential_chirp', no_wave):
        if not noise_free: return ref.create_spectrogram_with_chirp(*args)
        with mock.patch.object(refmod, 'gaussian_filter', lambda S, sigma: S), \
             mock.patch.object(np.random, 'uniform', lambda lo, hi: 0.0):
            return ref.create_spectrogram_with_chirp(*args)


def edge_cases():
    rows = []
    for kind in CHIRP_TYPES:
        for f0, f1 in [(0, 0), (0, 30), (0, 100), (100, 100), (100, 70), (30, 0), (0.5, 0), (0.7, 20), (99.99, 100),
                       (50, 50), (0.78125, 10), (1.0, 0.2)]:
            for t0, dt in [(0.0, 1.0), (45.0, 15.0), (44.999, 15.0), (59.0, 1.0), (0.0, 15.0), (30.0, 1.0), (12.3, 7.7),
                           (0.46875, 1.0), (0.0, 60.0)]:
                rows.append((t0, f0, f1, dt, kind))
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def random_cases(n=1000, seed=123):
    rng = np.random.default_rng(seed)
    t0 = rng.uniform(0, 45, n); dt = rng.uniform(1, 15, n); f0 = rng.uniform(0, 100, n)
    f1 = np.clip(f0 + rng.uniform(-30, 30, n), 0, 100)
    kind = np.array(CHIRP_TYPES)[rng.integers(0, 2, n)]
    return pd.DataFrame({'Chirp_Start_Time': t0, 'Chirp_Start_Freq': f0, 'Chirp_End_Freq': f1, 'Chirp_Duration': dt,
                         'Chirp_Type': kind})


def test_matrices_equal_reference(ref):
    "Noise-free ridge and same-noise smoothed output equal the reference's for 1000 random chirps plus edge cases."
    params = pd.concat([random_cases(1000), edge_cases()], ignore_index=True)
    ridges = chirp_ridges(params)
    worst_clean = worst_noisy = 0.0
    exact = 0
    for i, r in enumerate(params.itertuples(index=False)):
        R = ref_matrix(ref, r, noise_free=True)
        worst_clean = max(worst_clean, np.abs(ridges[i] - R).max()); exact += np.array_equal(ridges[i], R)
        np.random.seed(i); S_ref = ref_matrix(ref, r)
        rs = np.random.RandomState(i); eta = rs.uniform(0.09, 0.3); noise = rs.randn(1, 128, 128)
        worst_noisy = max(worst_noisy, np.abs(add_noise_and_smooth(ridges[i:i + 1], [eta], noise)[0] - S_ref).max())
    print(f"\n{len(params)} chirps: noise-free max |diff| {worst_clean:.2e} ({exact} bit-identical), "
          f"same-noise smoothed max |diff| {worst_noisy:.2e}")
    assert worst_clean <= 1e-9 and worst_noisy <= 1e-9


def test_label_distributions_match_reference(tmp_path):
    "Two-sample tests, 20,000 labels each: ours vs the reference's own generate_dataset loop (plotting stubbed out)."
    n = 20_000
    ours = sample_chirps(n, seed=2025)
    g = refmod.SpectrogramGenerator(output_dir=str(tmp_path))
    # run the reference's real loop and draws; only matplotlib and the (unused) waveform are stubbed, for speed
    with mock.patch.object(refmod, 'plt'), mock.patch('builtins.print'), \
         mock.patch.object(refmod.SpectrogramGenerator, 'generate_linear_chirp', lambda *a: None), \
         mock.patch.object(refmod.SpectrogramGenerator, 'generate_exponential_chirp', lambda *a: None), \
         mock.patch.object(refmod, 'gaussian_filter', lambda S, sigma: S):
        np.random.seed(2025)
        g.generate_dataset(n)
    theirs = pd.read_csv(tmp_path / 'labels.csv')
    assert len(theirs) == n
    report = {}
    for c in LABEL_COLUMNS[:4]:
        report[c] = stats.ks_2samp(ours[c], theirs[c]).pvalue
    counts = [[(df.Chirp_Type == k).sum() for k in CHIRP_TYPES] for df in (ours, theirs)]
    report['Chirp_Type'] = stats.chi2_contingency(counts).pvalue
    print('\nlabel distributions, two-sample p-values:', {k: round(v, 3) for k, v in report.items()})
    assert all(p > 0.001 for p in report.values()), report
    # the boundaries hold exactly as the reference's: end frequency clipped to [0, 100], start time <= 45, 1 <= dt <= 15
    for df in (ours, theirs):
        assert df.Chirp_End_Freq.between(0, 100).all() and df.Chirp_Start_Time.between(0, 45).all()
        assert df.Chirp_Duration.between(1, 15).all()
        assert ((df.Chirp_End_Freq == 0) | (df.Chirp_End_Freq == 100)).mean() > 0.02  # clipping leaves mass at the ends


def test_png_pixels_equal_reference(tmp_path):
    "For the same matrices, our figure PNGs and the reference's decode to the same pixels."
    S, lab = generate_batch(range(12), seed=5, dtype=np.float64)
    feed = iter(S)
    g = refmod.SpectrogramGenerator(output_dir=str(tmp_path / 'ref'))
    with warnings.catch_warnings(), mock.patch('builtins.print'), \
         mock.patch.object(refmod.SpectrogramGenerator, 'create_spectrogram_with_chirp', lambda self, *a: next(feed)):
        warnings.simplefilter('ignore')
        np.random.seed(0)
        g.generate_dataset(len(S))
    ref_types = pd.read_csv(tmp_path / 'ref' / 'labels.csv').Chirp_Type
    r = FigureRenderer()
    diffs = []
    for i in range(len(S)):
        ours = np.asarray(Image.open(r.save(S[i], i + 1, ref_types[i], tmp_path / f'o{i}.png')))
        theirs = np.asarray(Image.open(tmp_path / 'ref' / f'spectrogram_{i + 1}.png'))
        assert ours.shape == theirs.shape == (480, 640, 4)
        diffs.append(np.abs(ours.astype(int) - theirs.astype(int)).mean(axis=(0, 1)))
    worst = np.max(diffs, axis=0)
    print(f'\nPNG mean |ours - reference| per channel (RGBA), worst of {len(S)}: {worst}')
    assert (worst == 0).all()


def dir_bytes(d):
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


@pytest.mark.parametrize('kind', ['figure', 'array'])
def test_same_bytes_whatever_the_batching(tmp_path, kind):
    n = 14
    kw = dict(shard_size=5) if kind == 'array' else {}
    write_dataset(tmp_path / 'a', n, seed=3, kind=kind, workers=1, chunk=3, progress=False, **kw)
    write_dataset(tmp_path / 'b', n, seed=3, kind=kind, workers=2, chunk=7, progress=False, **kw)
    assert dir_bytes(tmp_path / 'a') == dir_bytes(tmp_path / 'b')
    if kind == 'array':  # another shard size: other files, the same matrices
        write_dataset(tmp_path / 'c', n, seed=3, kind=kind, workers=1, shard_size=4, progress=False)
        load = lambda d: np.concatenate([np.load(p) for p in sorted(Path(d).glob('spectrograms_*.npy'))])
        np.testing.assert_array_equal(load(tmp_path / 'a'), load(tmp_path / 'c'))
        np.testing.assert_array_equal(load(tmp_path / 'a'), generate_batch(range(n), seed=3)[0])


def test_growing_a_dataset_equals_making_it_whole(tmp_path):
    write_dataset(tmp_path / 'a', 7, seed=1, kind='array', shard_size=3, workers=1, progress=False)
    write_dataset(tmp_path / 'a', 11, seed=1, kind='array', shard_size=3, workers=1, progress=False)
    write_dataset(tmp_path / 'b', 11, seed=1, kind='array', shard_size=3, workers=1, progress=False)
    assert dir_bytes(tmp_path / 'a') == dir_bytes(tmp_path / 'b')
    with pytest.raises(DatasetMismatch, match='already holds 11'):
        write_dataset(tmp_path / 'a', 5, seed=1, kind='array', shard_size=3, progress=False)


def _cli(out, n, kind, seed=0, extra=()):
    return [sys.executable, '-m', 'chirploc.cli', 'generate', '--n', str(n), '--kind', kind, '--seed', str(seed),
            '--out', str(out), '--no-progress', *extra]


def _rows(out):
    p = out / 'labels.csv'
    return max(0, p.read_text().count('\n') - 1) if p.exists() else 0


@pytest.mark.parametrize('kind', ['figure', 'array'])
def test_killed_run_resumes_to_the_same_files(tmp_path, kind):
    "SIGKILL the command line mid-run (before any row, then after 1 and 2 of 3 parts); the rerun's files equal a whole run's."
    n = 150 if kind == 'figure' else 3000
    extra = ('--shard_size', '250') if kind == 'array' else ()
    subprocess.run(_cli(tmp_path / 'whole', n, kind, extra=extra), check=True)
    want = dir_bytes(tmp_path / 'whole')
    out = tmp_path / 'killed'
    partial = []
    for target in (0, n // 3, 2 * n // 3):
        p = subprocess.Popen(_cli(out, n, kind, extra=extra), start_new_session=True)
        t0 = time.time()
        while p.poll() is None and time.time() - t0 < 120:
            if (target == 0 and time.time() - t0 > 0.5) or (target and _rows(out) >= target): break
            time.sleep(0.02)
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        rows = _rows(out)
        partial.append(rows)
        if kind == 'figure':  # at every moment each labels row has its image
            assert all((out / f'spectrogram_{i}.png').exists() for i in range(1, rows + 1))
    assert any(0 < r < n for r in partial), partial  # the kills did land mid-run
    subprocess.run(_cli(out, n, kind, extra=extra), check=True)
    got = dir_bytes(out)
    assert got.keys() == want.keys(), set(got) ^ set(want)
    assert got == want
    assert json.loads((out / 'chirploc.json').read_text())['complete'] is True


def test_cli_reports_errors_in_one_line(tmp_path):
    write_dataset(tmp_path / 'd', 2, seed=0, kind='array', shard_size=2, workers=1, progress=False)
    p = subprocess.run(_cli(tmp_path / 'd', 2, 'array', seed=4), capture_output=True, text=True)
    assert p.returncode != 0 and 'refusing to mix datasets' in p.stderr and 'Traceback' not in p.stderr
    p = subprocess.run(_cli(tmp_path / 'e', 2, 'jpeg'), capture_output=True, text=True)
    assert p.returncode != 0 and "invalid choice: 'jpeg'" in p.stderr and 'Traceback' not in p.stderr


def test_resume_removes_a_killed_writers_temporary(tmp_path):
    "A run SIGKILLed inside atomic_write leaves `.NAME.PID.tmp`; the rerun removes it, so the folder equals a whole run's."
    write_dataset(tmp_path / 'whole', 6, seed=0, kind='array', shard_size=3, progress=False)
    write_dataset(tmp_path / 'killed', 6, seed=0, kind='array', shard_size=3, progress=False)
    (tmp_path / 'killed' / '.spectrograms_00000.npy.999999999.tmp').write_bytes(b'half')   # no such process
    write_dataset(tmp_path / 'killed', 6, seed=0, kind='array', shard_size=3, progress=False)
    assert dir_bytes(tmp_path / 'killed') == dir_bytes(tmp_path / 'whole')
