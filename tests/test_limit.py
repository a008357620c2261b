"""The maximum-likelihood localizer (05d_limit) and the bins (01b_bins): edge cases of the posterior labels, the search from
a perturbed start, figures, bad input. (Undoing the smoothing and the rendered shapes are checked in 05d_likelihood itself.)"""
import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter

from chirploc.data import open_source
from chirploc.generate import (LABEL_COLUMNS, GeneratorConfig, chirp_bins, chirp_ridges, draw_noise, generate_batch,
                               sample_chirps, write_dataset)
from chirploc.bins import BIN_COLUMNS, BinSpace, bins_from_labels, labels_from_bins, quantization_floor
from chirploc.limit import LimitEstimator, evaluate_limit


def test_labels_from_bins_and_floor():
    cfg = GeneratorConfig()
    lab = labels_from_bins([0, 95, 10, 3], [2, 31, 10, 5], [0, 100, 64, 1], [0, 128, 70, 20], [0, 1, 0, 1], cfg)
    w, wt = 100 / 128, 60 / 128
    np.testing.assert_allclose(lab.Chirp_Start_Time, [wt / 2, 95.5 * wt, 10.5 * wt, 3.5 * wt])
    np.testing.assert_allclose(lab.Chirp_Duration[0], (1 + 3 * wt) / 2)           # bin 2 within [1, 15]: [1, 3 wt)
    np.testing.assert_allclose(lab.Chirp_Duration[1], 15 - (15 - 31 * wt) / 2)     # bin 31: [31 wt, 15)
    assert lab.Chirp_End_Freq[0] < 0.05                          # fe = 0: almost surely the clipped 0 Hz
    assert lab.Chirp_End_Freq[1] == 100                          # fe = 128 is exactly 100 Hz
    assert abs(lab.Chirp_Start_Freq[3] - w) < 0.01               # exponential fs = 1 covers [0, 2 w)
    np.testing.assert_allclose(lab.Chirp_Start_Freq[2], 64.5 * w, atol=1e-3)   # inside the band: the midpoint
    assert list(lab.columns) == LABEL_COLUMNS and list(lab.Chirp_Type) == ['linear', 'exponential', 'linear', 'exponential']
    truth = sample_chirps(range(20_000), seed=4)
    floor = quantization_floor(truth)
    st = bins_from_labels(truth, clip=False)
    assert BinSpace.of().valid(*st.T).all()
    np.testing.assert_array_equal(bins_from_labels(floor, clip=False)[:, :4], st[:, :4])   # the estimates stay in their bins
    mae = (floor[LABEL_COLUMNS[:4]] - truth[LABEL_COLUMNS[:4]]).abs().mean()
    assert abs(mae.Chirp_Start_Time - wt / 4) < 0.005 and abs(mae.Chirp_Start_Freq - w / 4) < 0.01
    assert mae.Chirp_End_Freq < w / 4                            # the clipping atoms are exact


def test_exact_bins_from_a_perturbed_start():
    S, lab = generate_batch(range(100, 120), seed=21)
    start = lab.copy()
    rng = np.random.default_rng(0)
    start['Chirp_Start_Time'] += rng.choice([-1, 1], 20) * 60 / 128               # one time bin off
    start['Chirp_Start_Freq'] = (start.Chirp_Start_Freq + rng.choice([-2, 2], 20) * 100 / 128).clip(0, 99.9)
    start['Chirp_End_Freq'] = (start.Chirp_End_Freq + rng.choice([-1, 1], 20) * 100 / 128).clip(0, 100)
    start['Chirp_Type'] = 'linear'
    out = LimitEstimator().refine(S, start, progress=False)
    true = bins_from_labels(lab, clip=False)
    exact = (out[BIN_COLUMNS[:4]].to_numpy() == true[:, :4]).all(1)
    assert exact.sum() >= 18, out[BIN_COLUMNS].assign(**{f't_{c}': true[:, k] for k, c in enumerate(BIN_COLUMNS)})
    scored = LimitEstimator().score(S, true)
    assert (out.objective.to_numpy() <= scored['objective'] + 1e-6).all()     # where not exact, the answer fits better
    np.testing.assert_allclose(out.eta, draw_noise(range(100, 120), seed=21)[0], atol=0.01)


def test_figures(tmp_path):
    src = open_source(write_dataset(tmp_path / 'png', 4, seed=8, kind='figure', progress=False))
    V = np.stack([src.matrix(i) for i in range(4)])
    out = LimitEstimator(kind='figure')(V, truth=src.labels, progress=False)
    assert (out.objective <= out.true_objective * (1 + 1e-9)).all()            # no search failure
    assert (np.abs(out.Chirp_Start_Time - src.labels.Chirp_Start_Time) < 0.5).all()
    assert (np.abs(out.Chirp_Start_Freq - src.labels.Chirp_Start_Freq) < 1.5).all()
    eta = draw_noise(range(4), seed=8)[0]
    assert (np.abs(out.eta / eta - 1) < 0.3).all()


def test_evaluate_limit_reports_like_the_tracker(tmp_path):
    folder = write_dataset(tmp_path / 'arr', 60, seed=2, kind='array', progress=False)
    report, table = evaluate_limit(folder, 'test', progress=False)
    assert set(report) >= {'targets', 'inference', 'search'}
    assert report['inference']['images'] == 12 and report['search']['n'] == 12
    assert {'pearson_r', 'mae', 'rmse', 'median_ae', 'p95_ae'} <= set(report['targets']['Chirp_Start_Time'])
    assert 'accuracy' in report['targets']['Chirp_Type']
    assert {'true_Chirp_Start_Time', 'pred_Chirp_Start_Time', 'err_Chirp_Start_Time', 'a', 'objective'} <= set(table.columns)


def test_bad_input():
    est = LimitEstimator()
    with pytest.raises(ValueError, match='expected spectrograms of shape'): est(np.zeros((2, 64, 128)), progress=False)
    with pytest.raises(ValueError, match='expected spectrograms of shape'): est(np.zeros(128), progress=False)
    with pytest.raises(ValueError, match='NaN'): est(np.full((128, 128), np.nan), progress=False)
    with pytest.raises(ValueError, match='rows for'):
        est.refine(np.zeros((2, 128, 128)), sample_chirps(range(3)), progress=False)
    with pytest.raises(ValueError, match="kind must be"): LimitEstimator(kind='png')
    with pytest.raises(ValueError, match="treatment must be"): LimitEstimator(treatment='whiten')
    with pytest.raises(ValueError, match="'gls' is for figures"): LimitEstimator(treatment='gls')


def test_tables_grow_while_read():
    "Reading a shape's rows or sums for states the process has not met yet grows the table first: off_ridge and the"
    "figures' screening read the grown table (with forked workers the parent meets the answers' shapes only afterwards)."
    from chirploc.likelihood import RidgeShapes
    from chirploc.refine import off_ridge
    cfg = GeneratorConfig()
    S, lab = generate_batch(range(4), seed=3, cfg=cfg)
    sp = BinSpace.of(cfg)
    rng = np.random.default_rng(0)
    st = sp.clip(np.c_[rng.integers(0, 90, 3000), rng.integers(2, 32, 3000), rng.integers(1, 128, 3000),
                       rng.integers(0, 129, 3000), rng.integers(0, 2, 3000)])
    S = np.repeat(S, 750, axis=0)
    est = LimitEstimator(cfg)
    est.shapes = RidgeShapes(cfg)                                     # an empty table: 1,024 rows to start with
    far = off_ridge(est, S, st)
    assert est.shapes.ne > 1024 and far.shape == (3000,)
    fig = LimitEstimator(cfg, kind='figure')
    fig.shapes = RidgeShapes(cfg)
    (_, obj), c = fig._setup(S[:4])
    _, obj = fig._gls_objective(c, st[:4])
    assert np.isfinite(obj.p['g11']).all()
