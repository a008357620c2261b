"""`chirploc scan` on small synthetic recordings with known chirps, written as EDF and WAV here, and its errors on bad input."""
import json
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.io import wavfile

from chirploc.evaluate import load_localizer
from chirploc.labels import DataError
from chirploc.scan import Recording, ScanConfig, scan, scan_cli, synthetic_recording, write_edf

pytest.importorskip('pyedflib')
FS = 256.0
NAMES = ['Fz', 'Cz', 'Pz']  # Pz: noise only
TRUTH = pd.DataFrame([dict(channel=0, start_s=20, end_s=30, start_hz=30, end_hz=50, type='linear'),
                      dict(channel=0, start_s=85, end_s=97, start_hz=70, end_hz=45, type='linear'),  # across the 90 s window edge
                      dict(channel=1, start_s=50, end_s=58, start_hz=20, end_hz=40, type='exponential'),
                      dict(channel=1, start_s=140, end_s=152, start_hz=60, end_hz=80, type='linear')])
# within the model's precision: its median errors on signal spectrograms at -5 dB are 0.2 s and 0.4-0.6 Hz (08_signals)
TOL_S, TOL_HZ = 1.5, 3.0


@pytest.fixture(scope='module')
def model():
    return load_localizer()


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('scan')
    x = synthetic_recording(180, TRUTH, 3, FS, snr_db=-5, seed=1)
    wavfile.write(d / 'rec.wav', int(FS), (x.T / np.abs(x).max() * 30000).astype(np.int16))
    np.save(d / 'rec.npy', x.astype(np.float32))
    pd.DataFrame(x.T, columns=NAMES).to_csv(d / 'rec.csv', index=False)
    return dict(edf=write_edf(d / 'rec.edf', x, FS, NAMES), wav=d / 'rec.wav', npy=d / 'rec.npy', csv=d / 'rec.csv', x=x, dir=d)


@pytest.fixture(scope='module')
def results(files, model):
    return {k: scan(files[k], fs=None if k in ('edf', 'wav') else FS, model=model) for k in ('edf', 'wav', 'npy', 'csv')}


@pytest.mark.parametrize('kind', ['edf', 'wav', 'npy', 'csv'])
def test_chirps_found_and_located(results, kind):
    ev = results[kind].events
    names = NAMES if kind in ('edf', 'csv') else ['0', '1', '2']
    assert len(ev) == len(TRUTH), ev
    for t in TRUTH.itertuples():
        e = ev[ev.channel == names[t.channel]]
        k = (e.start_s - t.start_s).abs().idxmin()
        r = ev.loc[k]
        assert abs(r.start_s - t.start_s) <= TOL_S and abs(r.end_s - t.end_s) <= TOL_S, (t, r)
        assert abs(r.start_hz - t.start_hz) <= TOL_HZ and abs(r.end_hz - t.end_hz) <= TOL_HZ, (t, r)
    assert not (ev.channel == names[2]).any()  # nothing in the noise-only channel


def test_cut_chirp_is_one_event_found_whole(results):
    ev = results['edf'].events
    r = ev.loc[(ev.start_s - 85).abs().idxmin()]
    assert r.windows == 3 and not r.cut and 'found whole' in r.note  # windows from 30, 60 and 90 s: one event
    w = results['edf'].windows
    seen = w[(w.channel == 'Fz') & w.detected & (w.end_s > 85) & (w.start_s < 97)]
    assert seen.at_window_end.any() and seen.at_window_start.any()  # cut by the 90 s edge in the first and the last


def test_channels_by_name_and_index(files, model):
    a = scan(files['edf'], channels=['Cz'], model=model).events
    b = scan(files['edf'], channels=[1], model=model).events
    assert list(a.channel.unique()) == ['Cz'] and len(a) == 2
    pd.testing.assert_frame_equal(a, b)


def test_recording_reads_pieces(files):
    with Recording(files['edf']) as r:
        assert r.channels == NAMES and r.fs == [FS] * 3 and r.n_samples == [180 * 256] * 3
        np.testing.assert_allclose(r.read(1, 1000, 500), files['x'][1, 1000:1500], atol=1e-3)
    with Recording(files['npy'], fs=FS) as r:
        assert isinstance(r._a, np.memmap) or isinstance(r._a.base, np.memmap)


def test_cli_json(files, capsys):
    scan_cli([str(files['edf']), '--channels', 'Fz,Pz', '--json'])
    ev = json.loads(capsys.readouterr().out)
    assert [e['channel'] for e in ev] == ['Fz', 'Fz'] and abs(ev[0]['start_s'] - 20) <= TOL_S


def _one_line(excinfo, *words):
    msg = str(excinfo.value)
    assert '\n' not in msg, msg
    for w in words: assert w in msg, msg


def test_bad_input(files, model, tmp_path):
    x = files['x']
    with pytest.raises(DataError) as e: scan(files['edf'], channels=['O1'], model=model)
    _one_line(e, 'rec.edf', "no channel 'O1'", 'Fz, Cz, Pz')
    short = write_edf(tmp_path / 'short.edf', x[:, :int(40 * FS)], FS, NAMES)
    with pytest.raises(DataError) as e: scan(short, model=model)
    _one_line(e, 'short.edf', 'shorter than one window')
    wavfile.write(tmp_path / 'slow.wav', 150, (x[:, :150 * 70].T * 1000).astype(np.int16))
    with pytest.raises(DataError) as e: scan(tmp_path / 'slow.wav', model=model)
    _one_line(e, 'slow.wav', 'too low', '--fmax')
    nan = x[:, :int(70 * FS)].copy(); nan[1, 3000:3100] = np.nan
    np.save(tmp_path / 'nan.npy', nan)
    with pytest.raises(DataError) as e: scan(tmp_path / 'nan.npy', fs=FS, model=model)
    _one_line(e, 'nan.npy', 'channel 1', 'NaN')
    flat = x[:, :int(70 * FS)].copy(); flat[2, 5000:6000] = 0.0
    np.save(tmp_path / 'flat.npy', flat)
    with pytest.raises(DataError) as e: scan(tmp_path / 'flat.npy', fs=FS, model=model)
    _one_line(e, 'flat.npy', 'channel 2 is flat')
    with pytest.raises(DataError) as e: scan(files['npy'], model=model)
    _one_line(e, 'rec.npy', '--fs')


@pytest.mark.parametrize('damage', ['truncated', 'corrupt'])
def test_damaged_files(files, tmp_path, damage):
    for kind in ('edf', 'wav', 'npy'):
        raw = files[kind].read_bytes()
        bad = tmp_path / f'{damage}.{kind}'
        bad.write_bytes(raw[:len(raw) // 2] if damage == 'truncated' else raw[:64] + bytes(range(256)) * 40)
        with pytest.raises(DataError) as e:
            with Recording(bad, fs=FS if kind == 'npy' else None) as r:
                for c in range(len(r.channels)): r.read(c, 0, r.n_samples[c])
        _one_line(e, bad.name)


def test_other_files(tmp_path):
    with pytest.raises(DataError) as e: Recording(tmp_path / 'missing.edf')
    _one_line(e, 'missing.edf', 'no such file')
    (tmp_path / 'rec.mat').write_bytes(b'x')
    with pytest.raises(DataError) as e: Recording(tmp_path / 'rec.mat')
    _one_line(e, 'rec.mat', 'unknown recording format')
    (tmp_path / 'text.csv').write_text('a,b\n1,x\n2,y\n')
    with pytest.raises(DataError) as e: Recording(tmp_path / 'text.csv', fs=FS)
    _one_line(e, 'text.csv', "column 'b' is not numeric")


def test_edf_without_pyedflib_names_the_extra(files, monkeypatch):
    monkeypatch.setitem(sys.modules, 'pyedflib', None)  # as if not installed
    with pytest.raises(DataError) as e: Recording(files['edf'])
    _one_line(e, 'rec.edf', "chirploc[scan]")


def test_cli_error_is_one_line(files, capsys):
    with pytest.raises(SystemExit) as e: scan_cli([str(files['edf']), '--channels', 'O1'])
    err = str(e.value.code)   # the one line `chirploc` prints on stderr (exit status 1)
    assert err.count('\n') == 0 and 'rec.edf' in err and "no channel 'O1'" in err and err.startswith('chirploc scan: ')


def test_step_must_keep_chirps_whole():
    with pytest.raises(ValueError, match='three quarters of the window'): ScanConfig(window=60, step=50)


def test_late_chirp_in_the_last_window_is_read_mirrored(model, tmp_path):
    truth = pd.DataFrame([dict(channel=0, start_s=49, end_s=57, start_hz=25, end_hz=45, type='linear')])  # after the model's 45 s
    np.save(tmp_path / 'late.npy', synthetic_recording(60, truth, 1, FS, snr_db=-5, seed=3))
    res = scan(tmp_path / 'late.npy', fs=FS, model=model)
    r = res.events.iloc[0]
    assert len(res.events) == 1 and res.windows.mirrored.item()
    assert abs(r.start_s - 49) <= TOL_S and abs(r.end_s - 57) <= TOL_S
    assert abs(r.start_hz - 25) <= TOL_HZ and abs(r.end_hz - 45) <= TOL_HZ
