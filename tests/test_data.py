"""chirploc.labels, .inputs and .data: what their chapters cannot hold.

nbs/02a_labels, 02b_inputs and 02c_data check labels.csv and its errors, the targets and their scaler, the paper's split
against scikit-learn, the input pipelines, figure_to_matrix at other resolutions and grids, the sources and their folder
errors, the datasets and the cache (nbdev_test runs them). Here: fidelity on reference-made and chirploc-made PNG folders,
loader worker processes, every image mode, corrupt PNGs and array shards, prepare_input's dispatch, and the cache's
environment variable, atomic write and keys."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from chirploc.data import ChirpDataset, PngFolder, SyntheticSource, build_cache, cache_file, make_loader, open_source
from chirploc.inputs import figure_fidelity, load_image, prepare_input, preprocess_matrix
from chirploc.labels import DataError, LabelScaler, read_labels, target_array
from reference import reference_figure, reference_folder, reference_samples
from chirploc.generate import LABEL_COLUMNS, generate_batch, sample_chirps, write_dataset


# ---------------------------------------------------------------- fixtures (module scope: made once)
@pytest.fixture(scope='module')
def ref_dir(tmp_path_factory):
    "8 figures made by the reference package itself (no chirploc.json), after np.random.seed(0)."
    return reference_folder(tmp_path_factory.mktemp('reference'), 8, seed=0)


@pytest.fixture(scope='module')
def png_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp('png') / 'd', 5, seed=3, kind='figure', workers=1, progress=False)


@pytest.fixture(scope='module')
def arr_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp('arr') / 'd', 25, seed=3, kind='array', shard_size=10, workers=1,
                         progress=False)


def copy(src, tmp_path, name='copy'):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- reference-made PNG folders
def test_reference_folder_labels_pixels_and_matrices(ref_dir):
    src = open_source(ref_dir)
    mats, lab = reference_samples(8, seed=0)  # the same global-RNG draws the folder was made from
    pd.testing.assert_frame_equal(src.labels, lab, check_exact=True)
    # our pyplot drawing is the reference's, pixel for pixel
    assert np.array_equal(np.asarray(reference_figure(mats[2], 3, lab.Chirp_Type[2])),
                          np.asarray(Image.open(ref_dir / 'spectrogram_3.png')))
    fid = figure_fidelity(mats, [ref_dir / f'spectrogram_{i}.png' for i in range(1, 9)])
    assert fid.mae.max() < 0.005 and fid.r.min() > 0.998, fid


@pytest.mark.parametrize('mode', ['RGBA', 'RGB', 'L', 'LA', 'P', '1', 'I;16'])
def test_other_image_modes_and_sizes_are_converted(ref_dir, tmp_path, mode):
    d = copy(ref_dir, tmp_path)
    img = Image.open(d / 'spectrogram_2.png').convert('RGB').resize((333, 251)).convert(mode)
    img.save(d / 'spectrogram_2.png')
    x, _ = ChirpDataset(d)[1]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1


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
def test_chirploc_png_folder_holds_the_generators_samples(png_dir):
    src = open_source(png_dir)
    assert isinstance(src, PngFolder) and src.meta['seed'] == 3
    S, lab = generate_batch(range(5), seed=3)
    np.testing.assert_allclose(src.labels[LABEL_COLUMNS[:4]].to_numpy(), lab[LABEL_COLUMNS[:4]].to_numpy(), rtol=0, atol=0)
    fid = figure_fidelity(S, [src.figure(i) for i in range(5)])
    assert fid.mae.max() < 0.005 and fid.r.min() > 0.998


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
    with pytest.raises(DataError, match='--kind array --shard_size 10'): open_source(d)
    (d / 'chirploc.json').write_text(json.dumps({**meta, 'kind': 'hdf5'}))
    with pytest.raises(DataError, match="chirploc.json: unknown kind 'hdf5'; use 'figure' or 'array'"): open_source(d)
    legacy = {('format' if k == 'kind' else k): v for k, v in meta.items()}   # a folder written before `kind`
    (d / 'chirploc.json').write_text(json.dumps({**legacy, 'complete': True}))
    assert open_source(d).meta['kind'] == 'array' and 'format' not in open_source(d).meta
    d = copy(arr_dir, tmp_path, 'nometa')
    (d / 'chirploc.json').unlink()
    with pytest.raises(DataError, match='no chirploc.json'): open_source(d)
    d = copy(arr_dir, tmp_path, 'rows')
    (d / 'labels.csv').write_text(''.join((d / 'labels.csv').read_text().splitlines(True)[:-1]))
    with pytest.raises(DataError, match='has 24 rows'): open_source(d)
    with pytest.raises(DataError, match='not a folder'): open_source(d / 'labels.csv')


# ---------------------------------------------------------------- synthetic source
def test_synthetic_epochs_reach_workers():
    ds = ChirpDataset(SyntheticSource(4, seed=1), input_format='matrix')
    loader = make_loader(ds, batch_size=4, workers=2)
    ys = []
    for e in range(2):
        ds.set_epoch(e)
        ys.append(next(iter(loader))[1])
    want = target_array(sample_chirps(range(4, 8), seed=1)).astype(np.float32)
    assert np.array_equal(ys[1].numpy(), want) and not torch.equal(ys[0], ys[1])


# ---------------------------------------------------------------- inputs
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
def test_cache_place_atomic_reuse_and_keys(ref_dir, arr_dir, tmp_path, monkeypatch):
    "$CHIRPLOC_CACHE, no temporary left, not rewritten when found, float16 matrices, subsets, a changed folder's new key."
    monkeypatch.setenv('CHIRPLOC_CACHE', str(tmp_path / 'c'))
    ds = ChirpDataset(ref_dir, cache=True)
    p = ds._cache_path
    assert p.parent == tmp_path / 'c' and p.exists()
    assert [q.name for q in p.parent.iterdir() if q.name.startswith('.')] == []  # no temporary file left
    mtime = p.stat().st_mtime_ns
    assert build_cache(ref_dir, 'rgb224', progress=False) == p and p.stat().st_mtime_ns == mtime  # reused
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
