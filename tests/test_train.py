"""chirploc.train: exact resumption after a crash, early stopping, schedules, fresh samples, folders, the CLI."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import chirploc.train as tr
from chirploc.data import ChirpDataset, SyntheticSource
from chirploc.labels import LabelScaler
from chirploc.model import ChirpLocalizer, LocalizerConfig
from chirploc.train import TrainConfig, fit, load_checkpoint, make_datasets, train



pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py
SAME = ['epoch', 'train_loss', 'test_loss', 'r_Chirp_Start_Time', 'r_Chirp_Start_Freq', 'r_Chirp_End_Freq', 'lr']
KW = dict(synthetic=64, backbone='vit-micro', progress=False)


def _equal_weights(a, b):
    a, b = a.state_dict(), b.state_dict()
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def _files(run, name):
    from safetensors.torch import load_file
    return load_file(str(run / name))


@pytest.mark.parametrize('schedule', ['plateau', 'cosine'])
def test_crash_and_resume_gives_the_same_run(tmp_path, monkeypatch, schedule):
    kw = dict(KW, schedule=schedule, warmup_epochs=1)
    m_straight, h_straight = train(out_dir=tmp_path / 'straight', epochs=3, **kw)

    # the second test pass (epoch 2, after its training batches) dies: nothing of epoch 2 is saved
    real, calls = tr.evaluate, []
    def crashing(*a, **k):
        calls.append(1)
        if len(calls) == 2: raise KeyboardInterrupt('simulated crash')
        return real(*a, **k)
    monkeypatch.setattr(tr, 'evaluate', crashing)
    run = tmp_path / 'crashed'
    with pytest.raises(KeyboardInterrupt):
        train(out_dir=run, epochs=3, **kw)
    monkeypatch.setattr(tr, 'evaluate', real)
    assert len(pd.read_csv(run / 'history.csv')) == 1 and load_checkpoint(run / 'checkpoint')['epoch'] == 1

    m_resumed, h_resumed = train(out_dir=run, epochs=3, resume=True, **kw)
    pd.testing.assert_frame_equal(h_resumed[SAME], h_straight[SAME], check_exact=True)
    pd.testing.assert_frame_equal(pd.read_csv(run / 'history.csv')[SAME], pd.read_csv(tmp_path / 'straight' / 'history.csv')[SAME],
                                  check_exact=True)
    assert _equal_weights(m_resumed, m_straight)
    for name in ('model.safetensors', 'checkpoint/model.safetensors', 'checkpoint/best.safetensors'):
        a, b = _files(run, name), _files(tmp_path / 'straight', name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # the run folder is a localizer with the best epoch's weights
    best = ChirpLocalizer.from_pretrained(run)
    assert _equal_weights(best, m_straight)
    state = load_checkpoint(run / 'checkpoint')  # weights_only=True inside
    assert state['early_stopping']['best_epoch'] == int(h_straight.loc[h_straight.test_loss.idxmin(), 'epoch'])

    # resuming a finished run does nothing more; starting over on it is refused; other settings are refused
    m_again, h_again = train(out_dir=run, epochs=3, resume=True, **kw)
    pd.testing.assert_frame_equal(h_again[SAME], h_straight[SAME], check_exact=True)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(FileExistsError, match='resume it'):
        train(out_dir=run, epochs=3, **kw)
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    with pytest.raises(ValueError, match=r"\['lr'\] differ"):
        train(out_dir=run, epochs=4, lr=1e-3, resume=True, **kw)


def test_state_is_weights_only_loadable(tmp_path):
    train(out_dir=tmp_path, epochs=1, **KW)
    state = torch.load(tmp_path / 'checkpoint' / 'state.pt', weights_only=True)
    assert set(state) == {'epoch', 'history', 'early_stopping', 'train_config', 'world_size', 'optimizer', 'scheduler', 'scaler'}
    assert state['optimizer']['state'] and state['train_config']['lr'] == 1e-4
    assert json.loads((tmp_path / 'train_config.json').read_text()) == TrainConfig(epochs=1, progress=False).to_dict()


def test_early_stopping_keeps_the_best_weights(tmp_path):
    # lr 0: the test loss never gets lower after epoch 1, so training stops after 1 + patience epochs
    model, h = train(out_dir=tmp_path, epochs=10, lr=0.0, patience=2, **KW)
    assert list(h.epoch) == [1, 2, 3]
    assert load_checkpoint(tmp_path / 'checkpoint')['early_stopping'] == dict(
        best_loss=h.test_loss[0], best_epoch=1, bad_epochs=2, stopped=True)


def test_plateau_schedule_follows_the_test_loss(tmp_path):
    model, h = train(out_dir=None, epochs=5, lr=1e-6, plateau_patience=1, patience=0, **KW)
    # replay: ReduceLROnPlateau(mode min, factor 0.1, patience 1) on the logged test losses gives the logged lrs
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-6)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode='min', factor=0.1, patience=1)
    lrs = []
    for loss in h.test_loss: lrs.append(opt.param_groups[0]['lr']); sched.step(loss)
    assert np.allclose(h.lr, lrs, rtol=1e-12, atol=0) and h.lr.iloc[-1] < h.lr.iloc[0]


def test_cosine_schedule(tmp_path):
    cfg = TrainConfig(epochs=3, lr=1e-3, schedule='cosine', warmup_epochs=1, min_lr=1e-5, progress=False, patience=0)
    tr_ds, te_ds, scaler = make_datasets(synthetic=64, input_format='matrix')
    torch.manual_seed(0)
    model = ChirpLocalizer(LocalizerConfig('vit-micro', label_stats=scaler.to_dict()))
    _, h = fit(model, tr_ds, te_ds, cfg)
    steps = math.ceil(len(tr_ds) / 32)  # 52 training samples: 2 steps per epoch, 1 epoch (2 steps) of warmup
    assert h.lr[0] == pytest.approx(1e-3 * 1 / steps)  # step 0 of the warmup
    assert h.lr[1] == pytest.approx(1e-3)              # warmup done
    expect = 1e-5 / 1e-3 + (1 - 1e-5 / 1e-3) * 0.5 * (1 + math.cos(math.pi * steps / (3 * steps - steps)))
    assert h.lr[2] == pytest.approx(1e-3 * expect)


def test_fresh_samples(tmp_path):
    train_ds, test_ds, scaler = make_datasets(synthetic=50, input_format='matrix', fresh_samples=True, data_seed=3)
    assert (len(train_ds), len(test_ds)) == (40, 10)
    first = train_ds.labels.copy()
    train_ds.set_epoch(1)
    assert not np.allclose(first.Chirp_Start_Time, train_ds.labels.Chirp_Start_Time)
    # test = samples 0..9 of seed 3, training blocks after them: never the same samples
    assert test_ds.source.start == 0 and train_ds.source.start == 10 + 40
    m1, h1 = train(synthetic=50, out_dir=tmp_path / 'a', epochs=2, fresh_samples=True, backbone='vit-micro', progress=False)
    m2, h2 = train(synthetic=50, out_dir=tmp_path / 'b', epochs=2, fresh_samples=True, backbone='vit-micro', progress=False)
    pd.testing.assert_frame_equal(h1[SAME], h2[SAME], check_exact=True)
    assert json.loads((tmp_path / 'a' / 'data.json').read_text())['n_train'] == 40
    # a PNG folder has no generator seed to draw fresh samples from: refused, naming the folder
    from chirploc.generate import write_dataset
    png = write_dataset(tmp_path / 'png', 10, seed=1, kind='figure', progress=False, workers=1)
    with pytest.raises(ValueError, match=r'needs synthetic data.*png'):
        make_datasets(data=png, fresh_samples=True)


def test_folders_png_and_array(tmp_path):
    from chirploc.generate import write_dataset
    arr1 = write_dataset(tmp_path / 'arr1', 30, seed=1, kind='array', progress=False, workers=1)
    arr2 = write_dataset(tmp_path / 'arr2', 20, seed=2, kind='array', progress=False, workers=1)
    png = write_dataset(tmp_path / 'png', 10, seed=1, kind='figure', progress=False, workers=1)
    # several folders: each split by the paper's rule, parts concatenated, statistics over all labels
    tr_ds, te_ds, scaler = make_datasets([arr1, arr2], input_format='matrix')
    assert (len(tr_ds), len(te_ds)) == (24 + 16, 6 + 4)
    from chirploc.labels import read_labels
    both = pd.concat([read_labels(arr1), read_labels(arr2)])
    assert np.allclose(scaler.mean, both[list(scaler.targets)].mean().values)
    # a PNG folder, figure input (a 3-channel micro ViT at 128 px)
    model, h = train(png, tmp_path / 'run', backbone='vit-micro', input_format='rgb224', epochs=1, progress=False)
    assert model.config.input_format == dict(name='rgb224', size=128, channels=3) and len(h) == 1
    df = ChirpLocalizer.from_pretrained(tmp_path / 'run').predict(png)
    assert list(df.file[:2]) == ['spectrogram_1.png', 'spectrogram_2.png'] and len(df) == 10
    with pytest.raises(ValueError, match='one of them'):
        make_datasets()
    # the command line takes several folders too
    from chirploc.cli import main
    main(['train', '--data', str(arr1), str(arr2), '--backbone', 'vit-micro', '--epochs', '1', '--out_dir', str(tmp_path / 'two'),
          '--no-progress'])
    info = json.loads((tmp_path / 'two' / 'data.json').read_text())
    assert info['data'] == [str(arr1), str(arr2)] and (info['n_train'], info['n_test']) == (40, 10)


def test_cli(tmp_path, capsys):
    from chirploc.cli import main
    out = tmp_path / 'cli'
    main(['train', '--synthetic', '64', '--backbone', 'vit-micro', '--epochs', '1', '--out_dir', str(out), '--no-progress',
          '--targets', 'Chirp_Start_Time,Chirp_Duration'])
    assert 'saved the localizer to' in capsys.readouterr().out
    m = ChirpLocalizer.from_pretrained(out)
    assert m.config.targets == ('Chirp_Start_Time', 'Chirp_Duration')
    assert list(pd.read_csv(out / 'history.csv').columns[3:5]) == ['r_Chirp_Start_Time', 'r_Chirp_Duration']
    main(['train', '--synthetic', '64', '--backbone', 'vit-micro', '--epochs', '2', '--out_dir', str(out), '--no-progress',
          '--targets', 'Chirp_Start_Time,Chirp_Duration', '--resume'])
    assert len(pd.read_csv(out / 'history.csv')) == 2
    capsys.readouterr()
    assert main(['train', '--synthetic', '64', '--out_dir', str(tmp_path / 'paper'), '--no-progress']) == 1  # one line, exit 1
    assert 'cannot load the pretrained backbone' in capsys.readouterr().err
    assert main(['train', '--synthetic', '64', '--backbone', 'vit-micro', '--out_dir', str(out), '--no-progress']) == 1
    assert 'resume it' in capsys.readouterr().err
