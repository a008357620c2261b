"""Every input a command takes is checked: a bad one ends in one line on stderr naming the file, a non-zero exit status
and no answer (issue 30's cases, one test each); Ctrl-C in a long command says what was kept, exit 130, and a training
run stopped mid-epoch resumes to the run that was never stopped. The checks themselves are shown in their chapters
(02b_inputs: matrices and figures, 03_model: model folders, 07_reproduce: results files, 09_cli: main)."""
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import chirploc
from chirploc.cli import main
from chirploc.core import DEBUG_ENV
from chirploc.labels import DataError

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py
DEFAULT_MODEL = os.path.join(os.path.dirname(chirploc.__file__), 'default_model')


def cli(capsys, *args):
    "(exit status, stdout, the non-empty stderr lines) of `chirploc ARGS`, run in this process."
    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, [l for l in err.splitlines() if l.strip()]


def refused(capsys, path, *args, says=''):
    "Assert that `chirploc ARGS` fails in one line that names `path` (and says `says`), printing no answer."
    status, out, err = cli(capsys, *args)
    assert status != 0, (status, out, err)
    assert len(err) == 1 and str(path) in err[0] and says in err[0] and 'Traceback' not in err[0], err
    assert out == '', out  # no answer
    return err[0]


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)


# 1. matrices: not 128x128, not finite
def test_predict_refuses_a_matrix_of_the_wrong_shape(tmp_path, capsys):
    np.save(tmp_path / 'wrong.npy', np.zeros((3, 5)))
    refused(capsys, tmp_path / 'wrong.npy', 'predict', tmp_path / 'wrong.npy', says='expected a 128x128 spectrogram')


def test_predict_refuses_nan_and_inf(tmp_path, capsys):
    a = np.random.default_rng(0).random((128, 128)); a[5, 7] = np.nan; a[9, 9] = np.inf
    np.save(tmp_path / 'nan.npy', a)
    refused(capsys, tmp_path / 'nan.npy', 'predict', tmp_path / 'nan.npy', says='holds 2 NaN or infinite value(s)')


# 2, 3, 4: model folders
def _model(tmp_path, change):
    d = tmp_path / 'model'
    shutil.copytree(DEFAULT_MODEL, d)
    change(d)
    np.save(tmp_path / 'ok.npy', np.zeros((128, 128), np.float32))
    return d


def test_predict_refuses_an_unknown_model_type(tmp_path, capsys):
    def retype(d):
        c = json.loads((d / 'config.json').read_text())
        c['localizer']['vit_config']['model_type'] = 'chirploc-unheard-of'
        (d / 'config.json').write_text(json.dumps(c))
    d = _model(tmp_path, retype)
    refused(capsys, d / 'config.json', 'predict', '--model', d, tmp_path / 'ok.npy', says="unknown model_type 'chirploc-unheard-of'")


def test_predict_refuses_a_truncated_safetensors(tmp_path, capsys):
    for keep in (5, 1000):  # 'header too small' and 'invalid header length' / a header cut short
        d = _model(tmp_path, lambda d: (d / 'model.safetensors').write_bytes((d / 'model.safetensors').read_bytes()[:keep]))
        refused(capsys, d / 'model.safetensors', 'predict', '--model', d, tmp_path / 'ok.npy', says='not a readable safetensors file')
        shutil.rmtree(d)


def test_predict_refuses_a_malformed_config(tmp_path, capsys):
    d = _model(tmp_path, lambda d: (d / 'config.json').write_text('{\n'))
    refused(capsys, d / 'config.json', 'predict', '--model', d, tmp_path / 'ok.npy', says='not valid JSON')


# 4: results files
@pytest.mark.parametrize('text,says', [('{\n', 'not valid JSON'), ('', 'the file is empty'), ('{"seed": 0}', "lacks ['preset'"),
                                       ('[1, 2]', 'holds a JSON list')])
def test_results_and_compare_refuse_a_bad_results_file(tmp_path, capsys, text, says):
    bad = tmp_path / 'results.json'; bad.write_text(text)
    good = os.path.join(os.path.dirname(os.path.dirname(chirploc.__file__)), 'figures', 'smoke', 'results.json')
    refused(capsys, bad, 'results', bad, says=says)
    refused(capsys, bad, 'compare', bad, good, says=says)
    refused(capsys, bad, 'compare', good, bad, says=says)


# 4: a pickled object array
def test_predict_refuses_a_pickle(tmp_path, capsys):
    np.save(tmp_path / 'objects.npy', np.array([{'a': 1}, None], dtype=object), allow_pickle=True)
    refused(capsys, tmp_path / 'objects.npy', 'predict', tmp_path / 'objects.npy', says='holds Python objects (pickled)')


# 5: generate into a file; Ctrl-C during generate
def test_generate_refuses_a_file_as_its_folder(tmp_path, capsys):
    (tmp_path / 'a_file').write_text('x')
    refused(capsys, tmp_path / 'a_file', 'generate', '--out', tmp_path / 'a_file', '--n', 2, '--no-progress', says='a file, not a folder')


def test_ctrl_c_during_generate_says_what_was_kept(tmp_path):
    "A real SIGINT to the command's process group (as Ctrl-C sends it, workers included): one line, exit 130, resumable."
    out, n = tmp_path / 'd', 3000
    cmd = [sys.executable, '-m', 'chirploc', 'generate', '--n', str(n), '--format', 'array', '--shard_size', '250',
           '--workers', '2', '--out', str(out), '--no-progress']
    p = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < 120:
        if (out / 'labels.csv').exists() and (out / 'labels.csv').read_text().count('\n') > 250: break
        time.sleep(0.02)
    assert p.poll() is None, 'generation ended before it could be interrupted'
    os.killpg(p.pid, signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    lines = [l for l in err.splitlines() if l.strip()]
    assert p.returncode == 130 and len(lines) == 1 and 'Traceback' not in err, err
    kept = int(lines[0].split('kept ')[1].split(' of')[0])
    assert 0 < kept < n and f'{out}' in lines[0] and 'run the same command again' in lines[0], lines
    subprocess.run(cmd, check=True)
    assert json.loads((out / 'chirploc.json').read_text())['complete'] is True


# 6: a figure too large to decode
def test_predict_refuses_a_huge_figure_before_decoding_it(tmp_path, capsys):
    b = io.BytesIO(); Image.new('RGB', (1, 1)).save(b, 'PNG'); png = bytearray(b.getvalue())
    png[16:24] = struct.pack('>II', 10000, 10000)                          # IHDR says 10000x10000 ...
    png[29:33] = struct.pack('>I', zlib.crc32(bytes(png[12:29])))          # ... with a valid checksum
    (tmp_path / 'huge.png').write_bytes(bytes(png))
    t0 = time.perf_counter()
    refused(capsys, tmp_path / 'huge.png', 'predict', tmp_path / 'huge.png', says='the image is 10000x10000 pixels')
    assert time.perf_counter() - t0 < 60  # not 1.8 GB decoded (generous: the model loads first)


# the traceback on request
def test_debug_shows_the_error_itself(tmp_path, capsys, monkeypatch):
    bad = tmp_path / 'results.json'; bad.write_text('')
    with pytest.raises(DataError, match='the file is empty'): main(['--debug', 'results', str(bad)])
    assert DEBUG_ENV not in os.environ  # --debug held for that one command
    monkeypatch.setenv(DEBUG_ENV, '1')
    with pytest.raises(DataError, match='the file is empty'): main(['results', str(bad)])


# Ctrl-C in evaluate and reproduce: one line of what was kept, exit 130
def test_ctrl_c_in_evaluate_and_reproduce(tmp_path, capsys, monkeypatch):
    import chirploc.evaluate as ev
    import chirploc.reproduce as rp
    def stop(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(ev, 'evaluate_localizer', stop)
    status, out, err = cli(capsys, 'evaluate', '--data', tmp_path)
    assert status == 130 and len(err) == 1 and 'nothing was kept' in err[0], err
    monkeypatch.setattr(rp, 'reproduce', stop)
    (tmp_path / 'work' / 'data').mkdir(parents=True)
    (tmp_path / 'work' / 'data' / 'labels.csv').write_text('header\n1\n2\n')
    status, out, err = cli(capsys, 'reproduce', '--preset', 'tiny', '--work_dir', tmp_path / 'work', '--out_dir', tmp_path / 'out')
    assert status == 130 and len(err) == 1 and 'kept 2 of' in err[0] and 'run the same command again' in err[0], err


# Ctrl-C mid-epoch in train, then --resume: the run that was never stopped
SAME = ['epoch', 'train_loss', 'test_loss', 'r_Chirp_Start_Time', 'r_Chirp_Start_Freq', 'r_Chirp_End_Freq', 'lr']


def test_ctrl_c_mid_epoch_in_train_resumes_to_the_same_run(tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file
    from chirploc.model import ChirpLocalizer
    args = ['train', '--synthetic', '64', '--backbone', 'vit-micro', '--epochs', '3', '--batch_size', '16', '--workers', '0',
            '--no-progress']
    assert cli(capsys, *args, '--out_dir', tmp_path / 'straight')[0] == 0

    # Ctrl-C in the 2nd batch of epoch 2 (52 training samples: 4 batches an epoch): epoch 1 is finished, epoch 2 half done
    real, steps = ChirpLocalizer.loss, []
    def loss(self, *a, **k):
        if self.training:
            steps.append(1)
            if len(steps) == 6: raise KeyboardInterrupt
        return real(self, *a, **k)
    monkeypatch.setattr(ChirpLocalizer, 'loss', loss)
    run = tmp_path / 'stopped'
    status, out, err = cli(capsys, *args, '--out_dir', run)
    assert status == 130 and len(err) == 1 and 'Traceback' not in err[0], err
    assert f'kept epoch 1 in {run}' in err[0] and '--resume' in err[0], err
    assert len(pd.read_csv(run / 'history.csv')) == 1
    monkeypatch.setattr(ChirpLocalizer, 'loss', real)

    assert cli(capsys, *args, '--out_dir', run, '--resume')[0] == 0
    a, b = pd.read_csv(run / 'history.csv'), pd.read_csv(tmp_path / 'straight' / 'history.csv')
    pd.testing.assert_frame_equal(a[SAME], b[SAME], check_exact=True)
    for name in ('model.safetensors', 'checkpoint/model.safetensors', 'checkpoint/best.safetensors'):
        x, y = load_file(str(run / name)), load_file(str(tmp_path / 'straight' / name))
        assert sorted(x) == sorted(y) and all(torch.equal(x[k], y[k]) for k in x), name
