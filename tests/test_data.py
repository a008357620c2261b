"Property and error tests of chirploc.data (the notebook nbs/02_data.ipynb holds the worked examples)."
import contextlib
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from chirploc.data import (ArrayFolder, ChirpDataset, PngFolder, SyntheticSource, build_cache, cache_file, make_loader,
                           open_source, paper_datasets)
from chirploc.inputs import (FIGURE_BOX, InputFormat, figure_fidelity, figure_to_matrix, find_plot_box, load_image,
                             mpl_plot_box, normalize_matrix, prepare_input, preprocess_image, preprocess_matrix, render_figure)
from chirploc.labels import DEFAULT_TARGETS, DataError, LabelScaler, paper_split, read_labels, target_array
from reference import reference_figure, reference_folder, reference_samples
from chirploc.generate import LABEL_COLUMNS, GeneratorConfig, generate_batch, sample_chirps, write_dataset

HEADER = ','.join(LABEL_COLUMNS) + '\n'


# ---------------------------------------------------------------- fixtures (module scope: made once)
@pytest.fixture(scope='module')
def ref_dir(tmp_path_factory):
    "8 figures made by the reference package itself (no chirploc.json), after np.random.seed(0)."
    return reference_folder(tmp_path_factory.mktemp('reference'), 8, seed=0)


@pytest.fixture(scope='module')
def png_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp('png') / 'd', 5, seed=3, format='png', workers=1, progress=False)


@pytest.fixture(scope='module')
def arr_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp('arr') / 'd', 25, seed=3, format='array', shard_size=10, workers=1,
                         progress=False)


def copy(src, tmp_path, name='copy'):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- split
@pytest.mark.parametrize('test_size', [0.2, 0.25, 0.5, 0.33, 3])
def test_paper_split_matches_sklearn(test_size):
    from sklearn.model_selection import train_test_split
    for n in list(range(2, 40)) + [41, 99, 101, 1000, 12345]:
        if isinstance(test_size, int) and test_size >= n: continue
        tr, te = paper_split(n, test_size)
        sk_tr, sk_te = train_test_split(range(n), test_size=test_size, random_state=42)
        assert tr.tolist() == list(sk_tr) and te.tolist() == list(sk_te), n


def test_paper_split_other_seed_and_errors():
    from sklearn.model_selection import train_test_split
    tr, te = paper_split(57, 0.2, seed=7)
    sk_tr, sk_te = train_test_split(range(57), test_size=0.2, random_state=7)
    assert (tr.tolist(), te.tolist()) == (list(sk_tr), list(sk_te))
    assert sorted(np.r_[tr, te].tolist()) == list(range(57))
    assert len(paper_split(100_000)[1]) == 20_000
    for bad in [dict(n=1), dict(n=10, test_size=0.0), dict(n=10, test_size=1.0), dict(n=10, test_size=10)]:
        with pytest.raises(ValueError): paper_split(**bad)


# ---------------------------------------------------------------- labels and targets
def test_label_scaler_population_std_and_roundtrip():
    lab = sample_chirps(50, seed=1)
    sc = LabelScaler.fit(lab)
    y = target_array(lab)
    assert sc.targets == DEFAULT_TARGETS
    np.testing.assert_allclose(sc.mean, y.mean(0)); np.testing.assert_allclose(sc.std, y.std(0, ddof=0))
    z = sc.transform(y)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-12)
    np.testing.assert_allclose(sc.inverse(z), y, atol=1e-9)
    zt = sc.transform(torch.tensor(y, dtype=torch.float32))
    assert torch.is_tensor(zt) and zt.dtype == torch.float32
    np.testing.assert_allclose(sc.inverse(zt).numpy(), y, rtol=1e-5, atol=1e-4)
    assert LabelScaler.from_dict(json.loads(json.dumps(sc.to_dict()))) == sc
    const = LabelScaler.fit(np.ones((4, 1)), ['Chirp_Duration'])  # a constant target does not divide by zero
    assert const.std == [1.0] and np.all(const.transform(np.ones((4, 1))) == 0)
    with pytest.raises(ValueError): LabelScaler(DEFAULT_TARGETS, [0.0], [1.0])
    with pytest.raises(ValueError): LabelScaler.fit(lab, ['Chirp_End_Time'])


def test_targets_by_name():
    lab = sample_chirps(20, seed=2)
    y = target_array(lab, ['Chirp_Type', 'Chirp_Duration'])
    assert y.shape == (20, 2)
    assert set(np.unique(y[:, 0])) <= {0.0, 1.0}
    assert np.array_equal(y[:, 0], (lab.Chirp_Type == 'exponential').to_numpy(float))
    assert np.array_equal(target_array(lab, 'Chirp_Duration')[:, 0], lab.Chirp_Duration.to_numpy())


@pytest.mark.parametrize('text,expect', [
    ('', 'the file is empty'),
    (HEADER, 'has a header but no rows'),
    (HEADER.replace('Chirp_End_Freq', 'End_Freq') + '1,2,3,4,linear\n', "missing column(s) ['Chirp_End_Freq']"),
    ('a,b\n1,2\n', 'missing column(s)'),
    (HEADER + '1,2,3,4,linear\n1,2,nan,4,linear\n', 'Chirp_End_Freq is not a finite number on line(s) 3'),
    (HEADER + '1,2,3,4,linear\n1,2,3,inf,linear\n', 'Chirp_Duration is not a finite number on line(s) 3'),
    (HEADER + '-inf,2,3,4,linear\n', 'Chirp_Start_Time is not a finite number on line(s) 2'),
    (HEADER + '1,abc,3,4,linear\n', "e.g. 'abc'"),
    (HEADER + '1,2,3,4,linear\n1,2,3\n', 'Chirp_Duration is not a finite number on line(s) 3'),  # torn last row
    (HEADER + '1,2,3,4,Linear\n', "not 'Linear'"),
])
def test_read_labels_errors(tmp_path, text, expect):
    (tmp_path / 'labels.csv').write_text(text)
    with pytest.raises(DataError) as e: read_labels(tmp_path)
    assert expect in str(e.value) and 'labels.csv' in str(e.value)


def test_read_labels_paths(tmp_path):
    with pytest.raises(DataError, match='no such file or folder'): read_labels(tmp_path / 'nope')
    with pytest.raises(DataError, match='the folder is empty'): read_labels(tmp_path)
    with pytest.raises(DataError, match='the folder is empty'): ChirpDataset(tmp_path)
    with pytest.raises(DataError, match='no such folder'): ChirpDataset(tmp_path / 'nope')
    (tmp_path / 'spectrogram_1.png').write_bytes(b'x')
    with pytest.raises(DataError, match='no labels.csv'): read_labels(tmp_path)
    (tmp_path / 'labels.csv').write_text(HEADER + ' 1.5, 2, 3, 4, exponential\n')
    lab = read_labels(tmp_path / 'labels.csv')
    assert lab.Chirp_Type.tolist() == ['exponential'] and lab.Chirp_Start_Time.tolist() == [1.5]


# ---------------------------------------------------------------- reference-made PNG folders
def test_reference_folder_labels_pixels_and_matrices(ref_dir):
    src = open_source(ref_dir)
    assert isinstance(src, PngFolder) and src.meta is None and len(src) == 8
    mats, lab = reference_samples(8, seed=0)  # the same global-RNG draws the folder was made from
    pd.testing.assert_frame_equal(src.labels, lab, check_exact=True)
    # our pyplot drawing is the reference's, pixel for pixel
    assert np.array_equal(np.asarray(reference_figure(mats[2], 3, lab.Chirp_Type[2])),
                          np.asarray(Image.open(ref_dir / 'spectrogram_3.png')))
    fid = figure_fidelity(mats, [ref_dir / f'spectrogram_{i}.png' for i in range(1, 9)])
    assert fid.mae.max() < 0.005 and fid.r.min() > 0.998, fid
    assert src.input(0, 'matrix').shape == (1, 128, 128)


def test_rgb224_is_the_paper_pipeline(ref_dir):
    ds = ChirpDataset(ref_dir)
    x, y = ds[5]
    img = Image.open(ref_dir / 'spectrogram_6.png')
    assert img.mode == 'RGBA' and img.size == (640, 480)
    want = np.asarray(img.convert('RGB').resize((224, 224), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    assert x.dtype == torch.float32 and np.array_equal(x.numpy(), want.transpose(2, 0, 1))
    assert 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(y.numpy(), target_array(read_labels(ref_dir))[5].astype(np.float32))
    assert preprocess_image(img, InputFormat('rgb224', size=96)).shape == (3, 96, 96)


@pytest.mark.parametrize('mode', ['RGBA', 'RGB', 'L', 'LA', 'P', '1', 'I;16'])
def test_other_image_modes_and_sizes_are_converted(ref_dir, tmp_path, mode):
    d = copy(ref_dir, tmp_path)
    img = Image.open(d / 'spectrogram_2.png').convert('RGB').resize((333, 251)).convert(mode)
    img.save(d / 'spectrogram_2.png')
    x, _ = ChirpDataset(d)[1]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1


def test_png_folder_count_errors(ref_dir, tmp_path):
    d = copy(ref_dir, tmp_path, 'missing')
    (d / 'spectrogram_8.png').unlink()
    with pytest.raises(DataError) as e: PngFolder(d)
    msg = str(e.value)
    assert 'has 8 rows but the folder holds 7' in msg and 'missing: spectrogram_8.png' in msg
    assert 'reference generator resumes' in msg  # the hint for a folder without chirploc.json
    d = copy(ref_dir, tmp_path, 'extra')
    shutil.copy(d / 'spectrogram_1.png', d / 'spectrogram_9.png')  # the reference crashed after an image, before its row
    with pytest.raises(DataError, match='extra: spectrogram_9.png'): PngFolder(d)
    d = copy(ref_dir, tmp_path, 'rows')
    (d / 'labels.csv').write_text((d / 'labels.csv').read_text() + '1,2,3,4,linear\n')
    with pytest.raises(DataError, match='missing: spectrogram_9.png'): PngFolder(d)
    d = tmp_path / 'noimages'; d.mkdir()
    (d / 'labels.csv').write_text(HEADER + '1,2,3,4,linear\n')
    with pytest.raises(DataError, match='holds 0 spectrogram'): open_source(d)


def test_corrupt_png_names_the_file(ref_dir, tmp_path):
    d = copy(ref_dir, tmp_path)
    data = (d / 'spectrogram_4.png').read_bytes()
    (d / 'spectrogram_4.png').write_bytes(data[:len(data) // 2])   # truncated
    (d / 'spectrogram_5.png').write_bytes(b'not a png at all')     # garbage
    (d / 'spectrogram_6.png').write_bytes(b'')                     # empty
    ds = ChirpDataset(d)  # the folder itself looks fine; the error comes when the image is read
    for i in (3, 4, 5):
        with pytest.raises(DataError) as e: ds[i]
        assert f'spectrogram_{i + 1}.png' in str(e.value) and 'truncated or corrupt' in str(e.value)
    with pytest.raises(DataError, match='spectrogram_4.png'): ChirpDataset(d, input_format='matrix')[3]
    with pytest.raises(DataError, match='image file is missing'): load_image(d / 'spectrogram_99.png')


def test_corrupt_png_in_a_worker_raises_data_error(ref_dir, tmp_path):
    d = copy(ref_dir, tmp_path)
    data = (d / 'spectrogram_3.png').read_bytes()
    (d / 'spectrogram_3.png').write_bytes(data[:1000])
    with pytest.raises(DataError, match='spectrogram_3.png'):
        for _ in make_loader(ChirpDataset(d), batch_size=2, workers=2): pass


# ---------------------------------------------------------------- our folders
def test_chirploc_png_folder_and_incomplete(png_dir, tmp_path):
    src = open_source(png_dir)
    assert isinstance(src, PngFolder) and src.meta['seed'] == 3
    S, lab = generate_batch(range(5), seed=3)
    np.testing.assert_allclose(src.labels[LABEL_COLUMNS[:4]].to_numpy(), lab[LABEL_COLUMNS[:4]].to_numpy(), rtol=0, atol=0)
    fid = figure_fidelity(S, [src.figure(i) for i in range(5)])
    assert fid.mae.max() < 0.005 and fid.r.min() > 0.998
    d = copy(png_dir, tmp_path)
    meta = json.loads((d / 'chirploc.json').read_text())
    (d / 'chirploc.json').write_text(json.dumps({**meta, 'complete': False}))
    with pytest.raises(DataError) as e: open_source(d)
    assert 'complete=false' in str(e.value) and f'chirploc generate --out {d} --n 5 --seed 3 --format png' in str(e.value)
    (d / 'chirploc.json').write_text(json.dumps({**meta, 'n': 6}))
    with pytest.raises(DataError, match='says n = 6'): open_source(d)
    (d / 'chirploc.json').write_text('{not json')
    with pytest.raises(DataError, match='not valid JSON'): open_source(d)


def test_array_folder(arr_dir):
    src = open_source(arr_dir)
    assert isinstance(src, ArrayFolder) and len(src) == 25
    S, lab = generate_batch(range(25), seed=3)
    for i in (0, 9, 10, 24):
        assert np.array_equal(src.matrix(i), S[i])
    assert np.array_equal(target_array(src.labels), target_array(lab))
    x = src.input(7, 'matrix')
    assert x.shape == (1, 128, 128) and x.min() == 0 and x.max() == 1
    assert np.array_equal(x[0], normalize_matrix(S[7]))
    x3 = src.input(7, InputFormat('matrix', size=224, channels=3))
    assert x3.shape == (3, 224, 224) and np.array_equal(x3[0], x3[2])
    xr = src.input(7, 'rgb224')  # drawn as the ChirpLoc100K figure first
    assert np.array_equal(xr, preprocess_image(render_figure(S[7], 8, lab.Chirp_Type[7]), 'rgb224'))
    np.testing.assert_allclose(src.input(7, 'matrix-from-figure'), x, atol=0.06)


def test_array_folder_errors(arr_dir, tmp_path):
    d = copy(arr_dir, tmp_path, 'missing')
    (d / 'spectrograms_00001.npy').unlink()
    with pytest.raises(DataError, match=r'spectrograms_00001.npy: shard 1 is missing'): open_source(d)
    d = copy(arr_dir, tmp_path, 'short')
    np.save(d / 'spectrograms_00002.npy', np.load(d / 'spectrograms_00002.npy')[:3])
    with pytest.raises(DataError) as e: open_source(d)
    assert 'spectrograms_00002.npy' in str(e.value) and 'expected float32 (5, 128, 128)' in str(e.value)
    d = copy(arr_dir, tmp_path, 'truncated')
    b = (d / 'spectrograms_00000.npy').read_bytes()
    (d / 'spectrograms_00000.npy').write_bytes(b[:len(b) // 3])
    with pytest.raises(DataError, match='spectrograms_00000.npy: cannot read the shard'): open_source(d)
    d = copy(arr_dir, tmp_path, 'incomplete')
    meta = json.loads((d / 'chirploc.json').read_text())
    (d / 'chirploc.json').write_text(json.dumps({**meta, 'complete': False}))
    with pytest.raises(DataError, match='--format array --shard_size 10'): open_source(d)
    (d / 'chirploc.json').write_text(json.dumps({**meta, 'format': 'hdf5'}))
    with pytest.raises(DataError, match="unknown format 'hdf5'"): open_source(d)
    d = copy(arr_dir, tmp_path, 'nometa')
    (d / 'chirploc.json').unlink()
    with pytest.raises(DataError, match='no chirploc.json'): open_source(d)
    d = copy(arr_dir, tmp_path, 'rows')
    (d / 'labels.csv').write_text(''.join((d / 'labels.csv').read_text().splitlines(True)[:-1]))
    with pytest.raises(DataError, match='has 24 rows'): open_source(d)
    with pytest.raises(DataError, match='not a folder'): open_source(d / 'labels.csv')


# ---------------------------------------------------------------- synthetic source
def test_synthetic_source_is_deterministic_and_fresh_per_epoch():
    src = SyntheticSource(6, seed=5, offset=100)
    S, lab = generate_batch(range(100, 106), seed=5)
    assert np.array_equal(src.matrix(4), S[4]) and src.labels.equals(lab)
    ds = ChirpDataset(src, input_format='matrix')
    x0, y0 = ds[2]
    assert torch.equal(x0, ds[2][0])  # the same sample every time it is asked for
    ds.set_epoch(3)
    x3, y3 = ds[2]
    S3, lab3 = generate_batch([100 + 3 * 6 + 2], seed=5)
    assert torch.equal(x3, torch.from_numpy(preprocess_matrix(S3[0]))) and not torch.equal(x0, x3)
    np.testing.assert_allclose(y3.numpy(), target_array(lab3)[0].astype(np.float32))
    with pytest.raises(IndexError): src.matrix(6)


def test_synthetic_epochs_reach_workers():
    ds = ChirpDataset(SyntheticSource(4, seed=1), input_format='matrix')
    loader = make_loader(ds, batch_size=4, workers=2)
    ys = []
    for e in range(2):
        ds.set_epoch(e)
        ys.append(next(iter(loader))[1])
    want = target_array(sample_chirps(range(4, 8), seed=1)).astype(np.float32)
    assert np.array_equal(ys[1].numpy(), want) and not torch.equal(ys[0], ys[1])


# ---------------------------------------------------------------- figure_to_matrix
def test_plot_box_geometry(ref_dir):
    assert mpl_plot_box() == pytest.approx(FIGURE_BOX)
    rgb = np.asarray(Image.open(ref_dir / 'spectrogram_1.png').convert('RGB'))
    left, top, right, bottom = find_plot_box(rgb)
    assert max(abs(a - b) for a, b in zip((left, top, right, bottom), FIGURE_BOX)) <= 0.5


@pytest.mark.parametrize('dpi', [72, 150])
def test_figure_to_matrix_at_other_resolutions(dpi):
    S, lab = generate_batch(range(2), seed=9)
    figs = [reference_figure(S[i], i + 1, lab.Chirp_Type[i], dpi=dpi) for i in range(2)]
    assert figs[0].size == (int(6.4 * dpi), int(4.8 * dpi))
    fid = figure_fidelity(S, figs)
    assert fid.r.min() > (0.99 if dpi == 72 else 0.998) and fid.mae.max() < (0.01 if dpi == 72 else 0.005), fid


def test_figure_to_matrix_other_bins_and_refusals():
    cfg = GeneratorConfig(num_time_bins=64, num_freq_bins=48)
    S, lab = generate_batch([0], seed=2, cfg=cfg)
    fig = render_figure(S[0], 1, lab.Chirp_Type[0], cfg)
    R = figure_to_matrix(fig, bins=(48, 64))
    assert R.shape == (48, 64) and R.dtype == np.float32
    assert np.corrcoef(R.ravel(), normalize_matrix(S[0]).ravel())[0, 1] > 0.998
    assert figure_to_matrix(np.asarray(fig)).shape == (128, 128)  # an RGBA array works too
    gray = fig.convert('L')
    with pytest.raises(DataError, match='not viridis'): figure_to_matrix(gray)
    with pytest.raises(DataError, match='black frame'): figure_to_matrix(np.zeros((100, 120, 3), np.uint8) + 255)
    with pytest.raises(DataError, match='expected an RGB'): figure_to_matrix(np.zeros((10, 10)))


def test_prepare_input_dispatch(ref_dir):
    p = ref_dir / 'spectrogram_1.png'
    a = prepare_input(p, 'rgb224')
    assert np.array_equal(a, prepare_input(Image.open(p), 'rgb224'))
    assert np.array_equal(a, prepare_input(np.asarray(Image.open(p)), 'rgb224'))
    m = prepare_input(p, 'matrix')
    assert m.shape == (1, 128, 128) and np.array_equal(m, prepare_input(str(p), 'matrix-from-figure'))
    S, _ = generate_batch([1])
    assert np.array_equal(prepare_input(S[0], 'matrix'), preprocess_matrix(S[0]))
    assert prepare_input(S[0], 'rgb224').shape == (3, 224, 224)
    with pytest.raises(ValueError): prepare_input(np.zeros(5), 'matrix')


# ---------------------------------------------------------------- datasets, cache, loaders
def test_paper_datasets(ref_dir):
    tr, te, sc = paper_datasets(ref_dir, input_format='matrix')
    split_tr, split_te = paper_split(8)
    assert np.array_equal(tr.indices, split_tr) and np.array_equal(te.indices, split_te)
    assert sc == LabelScaler.fit(read_labels(ref_dir))  # fitted on the whole label set, as the paper
    y = np.stack([te[j][1].numpy() for j in range(len(te))])
    np.testing.assert_allclose(sc.inverse(y), target_array(read_labels(ref_dir))[split_te], rtol=1e-5)
    np.testing.assert_allclose(te.target_values(), target_array(read_labels(ref_dir))[split_te])
    with pytest.raises(IndexError): ChirpDataset(ref_dir, indices=[8])
    with pytest.raises(ValueError, match='scaler is for'): ChirpDataset(ref_dir, targets=['Chirp_Duration'], scaler=sc)


def test_cache_is_exact_atomic_and_keyed(ref_dir, arr_dir, tmp_path, monkeypatch):
    monkeypatch.setenv('CHIRPLOC_CACHE', str(tmp_path / 'c'))
    ds = ChirpDataset(ref_dir, cache=True)
    p = ds._cache_path
    assert p.parent == tmp_path / 'c' and p.exists()
    assert [q.name for q in p.parent.iterdir() if q.name.startswith('.')] == []  # no temporary file left
    plain = ChirpDataset(ref_dir)
    for i in (0, 7): assert ds[i][0].dtype == torch.uint8 and torch.equal(ds[i][0].float() / 255, plain[i][0])  # lossless
    mtime = p.stat().st_mtime_ns
    assert build_cache(ref_dir, 'rgb224', progress=False) == p and p.stat().st_mtime_ns == mtime  # reused
    assert cache_file(ref_dir, 'matrix') != p
    m = ChirpDataset(arr_dir, input_format='matrix', cache=True)
    assert np.load(m._cache_path, mmap_mode='r').dtype == np.float16
    assert m[13][0].dtype == torch.float16
    np.testing.assert_allclose(m[13][0].float().numpy(), ChirpDataset(arr_dir, input_format='matrix')[13][0].numpy(), atol=1e-3)
    sub = m.subset([3, 1])
    assert torch.equal(sub[1][0], m[1][0])
    # a changed folder gets a new cache
    d = copy(ref_dir, tmp_path, 'changed')
    before = cache_file(d)
    (d / 'labels.csv').write_text((d / 'labels.csv').read_text())
    import os; os.utime(d / 'labels.csv', ns=(1, 1))
    assert cache_file(d) != before


def test_loaders_workers_and_shuffle(arr_dir):
    ds = ChirpDataset(arr_dir, input_format='matrix', scaler=LabelScaler.fit(read_labels(arr_dir)))
    a = [torch.cat(t) for t in zip(*make_loader(ds, batch_size=8, workers=0))]
    b = [torch.cat(t) for t in zip(*make_loader(ds, batch_size=8, workers=2))]
    assert all(torch.equal(u, v) for u, v in zip(a, b)) and a[0].shape == (25, 1, 128, 128)
    s1 = torch.cat([y for _, y in make_loader(ds, batch_size=8, shuffle=True, seed=1, workers=0)])
    s2 = torch.cat([y for _, y in make_loader(ds, batch_size=8, shuffle=True, seed=1, workers=0)])
    assert torch.equal(s1, s2) and not torch.equal(s1, a[1])
