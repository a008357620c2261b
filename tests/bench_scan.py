"""Benchmark of `chirploc scan` on a synthetic one-hour, 256 Hz, 4-channel EDF recording with a known chirp list.

Writes figures/scan/bench.json (recall, false events per hour, the events' errors beside the per-window errors of
08_signals at the same SNR, seconds of recording scanned per second, peak memory) and figures/scan/bench_events.csv.
Each scan runs in a fresh subprocess whose peak resident memory (getrusage maxrss) is read when it ends; a 10-minute
recording of the same kind, and a process that only loads the model, are measured beside it, so that memory bounded by
the window (not the file) shows as equal peaks. Run from the repository root:

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python tests/bench_scan.py
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / 'figures' / 'scan'
FS, SNR, CHANNELS, SLOT = 256.0, -5.0, 4, 90.0  # channel 3 holds noise only; one chirp per 90 s slot elsewhere

CHILD = r'''
import json, resource, sys, time
t0 = time.perf_counter()
from chirploc.evaluate import load_localizer
import torch
torch.set_num_threads(int(sys.argv[3]))
model = load_localizer()
t1 = time.perf_counter()
out = dict(load_s=t1 - t0)
if sys.argv[1] != '-':
    from chirploc.scan import scan
    r = scan(sys.argv[1], model=model)
    out.update(scan_s=time.perf_counter() - t1, duration_s=r.duration, windows=len(r.windows))
    r.events.to_csv(sys.argv[2], index=False)
out['peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
print(json.dumps(out))
'''


def truth_list(duration: float, seed: int = 0) -> pd.DataFrame:
    "One chirp per 90 s slot on channels 0..2 (the paper's distribution of durations and frequencies), none on channel 3."
    from chirploc.generate import sample_chirps
    rng = np.random.default_rng(seed)
    slots = int(duration // SLOT)
    lab = sample_chirps(slots * (CHANNELS - 1), seed)
    rows = []
    for k, r in enumerate(lab.itertuples()):
        ch, s = k % (CHANNELS - 1), k // (CHANNELS - 1)
        t0 = s * SLOT + rng.uniform(2, SLOT - r.Chirp_Duration - 2)
        rows.append(dict(channel=ch, start_s=t0, end_s=t0 + r.Chirp_Duration, start_hz=r.Chirp_Start_Freq,
                         end_hz=r.Chirp_End_Freq, type=r.Chirp_Type))
    return pd.DataFrame(rows)


def match(events: pd.DataFrame, truth: pd.DataFrame, names) -> pd.DataFrame:
    "Each known chirp with the event on its channel that overlaps it most in time (intersection over union >= 0.3)."
    rows, used = [], set()
    for t in truth.itertuples():
        e = events[events.channel == names[t.channel]]
        inter = (np.minimum(e.end_s, t.end_s) - np.maximum(e.start_s, t.start_s)).clip(lower=0)
        iou = inter / (np.maximum(e.end_s, t.end_s) - np.minimum(e.start_s, t.start_s))
        k = iou.idxmax() if len(e) and iou.max() >= 0.3 else None
        if k is not None: used.add(k)
        r = events.loc[k] if k is not None else None
        rows.append(dict(channel=t.channel, true_start_s=t.start_s, true_start_hz=t.start_hz, true_end_hz=t.end_hz,
                         duration=t.end_s - t.start_s, found=k is not None,
                         err_start_s=np.nan if r is None else r.start_s - t.start_s,
                         err_start_hz=np.nan if r is None else r.start_hz - t.start_hz,
                         err_end_hz=np.nan if r is None else r.end_hz - t.end_hz))
    m = pd.DataFrame(rows)
    m.attrs['false'] = events.drop(index=list(used))
    return m


def detected_window_errors(model, n: int = 200, seed: int = 0) -> dict:
    "Per-window errors as in 08_signals (the paper's chirps, one 60 s window each, at SNR), over the windows the scan detects."
    from chirploc.generate import sample_chirps
    from chirploc.scan import RIDGE_THRESHOLD, ridge_score
    from chirploc.signals import chirp_waveform, embed, signal_spectrogram
    lab, rng = sample_chirps(n, seed), np.random.default_rng([seed, 99])
    mats = np.stack([signal_spectrogram(embed(chirp_waveform(r.Chirp_Start_Time, r.Chirp_Duration, r.Chirp_Start_Freq,
                                                             r.Chirp_End_Freq, r.Chirp_Type, FS), SNR, rng, fs=FS), FS)
                     for r in lab.itertuples()]).astype(np.float32)
    p = model.predict(mats, threshold=0.0)
    score = np.array([ridge_score(S, r.Chirp_Start_Time, r.Chirp_Duration, r.Chirp_Start_Freq, r.Chirp_End_Freq, r.Chirp_Type)
                      for S, r in zip(mats, p.itertuples())])
    det = (score >= RIDGE_THRESHOLD) & (p.Chirp_Present_prob.to_numpy() >= model.config.presence_threshold)
    out = dict(windows=n, detected=float(det.mean()))
    for t, k in (('Chirp_Start_Time', 'start_s'), ('Chirp_Start_Freq', 'start_hz'), ('Chirp_End_Freq', 'end_hz')):
        e = np.abs(p[t].to_numpy() - lab[t].to_numpy())
        out[k] = dict(mae_all=float(e.mean()), mae_detected=float(e[det].mean()), median_detected=float(np.median(e[det])))
    return out


def child(path, events_csv, threads):
    p = subprocess.run([sys.executable, '-c', CHILD, str(path), str(events_csv), str(threads)], capture_output=True,
                       text=True, env=os.environ | {'PYTHONPATH': str(ROOT)}, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(duration: float = 3600.0, threads: int = 1):
    from chirploc.evaluate import load_localizer
    from chirploc.scan import synthetic_recording, write_edf
    from chirploc.signals import snr_sweep
    OUT.mkdir(parents=True, exist_ok=True)
    names = [f'ch{i}' for i in range(CHANNELS)]
    res = dict(command='OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python tests/bench_scan.py', fs=FS, snr_db=SNR,
               channels=CHANNELS, noise_only_channel=names[-1], torch_threads=threads)
    with tempfile.TemporaryDirectory() as d:
        runs = {}
        for dur in (600.0, duration):
            truth = truth_list(dur)
            x = synthetic_recording(dur, truth, CHANNELS, FS, SNR, seed=7)
            path = write_edf(Path(d) / f'rec_{int(dur)}s.edf', x, FS, names)
            del x
            runs[dur] = (truth, child(path, Path(d) / f'ev_{int(dur)}.csv', threads),
                         pd.read_csv(Path(d) / f'ev_{int(dur)}.csv'), path.stat().st_size)
        base = child('-', '-', threads)
        m_run2 = child(path, Path(d) / 'ev_2threads.csv', 2)  # the same scan with 2 torch threads: speed only
    truth, m_run, events, size = runs[duration]
    m = match(events, truth, names)
    false = m.attrs['false']
    hours = duration / 3600
    found = m[m.found]
    err = {t: dict(mae=float(found[f'err_{t}'].abs().mean()), median=float(found[f'err_{t}'].abs().median()))
           for t in ('start_s', 'start_hz', 'end_hz')}
    # the per-window numbers of 08_signals at this SNR: the same chirp distribution, one 60 s window each
    model = load_localizer()
    sweep = snr_sweep((SNR,), n=200, localizer=model, fs=FS, progress=False)
    sweep = sweep[sweep.method == 'model']
    per_window = {t: dict(mae=float(g.abs_error.mean()), median=float(g.abs_error.median()))
                  for t, g in sweep.groupby('target')}
    per_window_detected = detected_window_errors(model)
    res.update(
        recording=dict(duration_s=duration, edf_mib=size / 2 ** 20, chirps=len(truth), windows=m_run['windows']),
        recall=float(m.found.mean()),
        recall_by_duration={f'{a}-{b} s': float(m[(m.duration >= a) & (m.duration < b)].found.mean())
                            for a, b in ((1, 3), (3, 6), (6, 10), (10, 16))},
        false_events=len(false), false_events_per_hour=len(false) / hours,
        false_events_per_channel_hour=len(false) / hours / CHANNELS,
        false_events_noise_only_channel=int((false.channel == names[-1]).sum()),
        false_event_list=false[['channel', 'start_s', 'end_s', 'start_hz', 'end_hz', 'score']].round(2).to_dict('records'),
        event_errors=err, per_window_errors_08_signals=per_window, per_window_errors_detected_only=per_window_detected,
        speed=dict(scan_s=m_run['scan_s'], recording_s_per_s=duration / m_run['scan_s'],
                   channel_s_per_s=duration * CHANNELS / m_run['scan_s'], model_load_s=m_run['load_s'],
                   recording_s_per_s_2_threads=duration / m_run2['scan_s']),
        peak_rss_mib={'model loaded, nothing scanned': base['peak_rss_mib'],
                      f'scan of {runs[600.0][3] / 2 ** 20:.1f} MiB, 600 s': runs[600.0][1]['peak_rss_mib'],
                      f'scan of {size / 2 ** 20:.1f} MiB, {duration:.0f} s': m_run['peak_rss_mib']})
    events.to_csv(OUT / 'bench_events.csv', index=False)
    (OUT / 'bench.json').write_text(json.dumps(res, indent=1) + '\n')
    print(json.dumps(res, indent=1))


if __name__ == '__main__':
    main()
