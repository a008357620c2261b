"""How a heatmap localizer's maps are read (nbs/03c_heatmap.ipynb): each coordinate on its own ('marginal') against the
start and end peaks paired along their ridge ('joint', over a grid of its settings), for one trained model on one data
folder; the network runs once, every reading uses the same maps. Writes decode_<data>_<split>.{json,md} to --out.

The joint reading's settings (its type temperature included: the fitted value is printed) were chosen on fresh samples,
never on a test split:

    chirploc generate --n 5000 --kind array --seed 11 --p_empty 0.1 --out runs/val11
    python tests/measure_decode.py --model runs/ship-rb0/train --data runs/val11 --split all --out figures/experiments/decode

then its default checked on the test split (--data runs/ship/data --split test --no-grid). About 2 minutes per 5,000
samples on 2 cores.
"""
import argparse
import inspect
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from chirploc.core import atomic_write, git_commit
from chirploc.data import ChirpDataset, make_loader, open_source
from chirploc.evaluate import load_localizer, regression_report
from chirploc.figures import markdown_table
from chirploc.heatmap import decode_bins, heatmap_labels, joint_bins
from chirploc.labels import split_indices, target_array

TARGETS = ('Chirp_Start_Time', 'Chirp_Start_Freq', 'Chirp_End_Freq', 'Chirp_Duration', 'Chirp_Type')


def maps(model, src, idx, batch_size=128):
    "The network's outputs (dict of CPU tensors) on samples idx of src, and the seconds the network took."
    ds = ChirpDataset(src, list(model.config.targets), model.config.input_format, model.scaler, indices=idx)
    parts, seconds = [], 0.0
    with torch.no_grad():
        for x, _ in make_loader(ds, batch_size=batch_size, workers=0):
            t0 = time.perf_counter(); o = model(x); seconds += time.perf_counter() - t0
            parts.append({k: v.half() if v.ndim == 3 else v for k, v in o.items()})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, seconds


def read(out, decoder, batch_size=256):
    "Labels from the maps (heatmap_labels) read by `decoder` (a function of one batch's maps), and the seconds it took."
    t0 = time.perf_counter()
    parts = [heatmap_labels({k: v[s:s + batch_size].float() for k, v in out.items()}, decode=decoder)
             for s in range(0, len(out['start']), batch_size)]
    return pd.concat(parts, ignore_index=True), time.perf_counter() - t0


def type_calibration(p, y) -> dict:
    "Negative log-likelihood and expected calibration error (10 bins of confidence) of P(exponential) `p` for types `y` (1: exponential)."
    p, y = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12), np.asarray(y, float)
    conf, right = np.maximum(p, 1 - p), (p > 0.5) == (y > 0.5)
    b = np.minimum(((conf - 0.5) // 0.05).astype(int), 9)
    return dict(nll=float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
                ece=float(sum(abs(right[b == i].mean() - conf[b == i].mean()) * (b == i).mean() for i in range(10) if (b == i).any())))


def fit_temperature(p, y, at: float) -> float:
    "The temperature that minimizes the type NLL, from P(exponential) `p` read at temperature `at` (log-odds x `at` = the score difference)."
    from scipy.optimize import minimize_scalar
    q = np.clip(np.asarray(p, float), 1e-15, 1 - 1e-15)
    diff = at * np.log(q / (1 - q))
    return float(minimize_scalar(lambda T: type_calibration(1 / (1 + np.exp(-diff / T)), y)['nll'], bounds=(0.25, 100), method='bounded').x)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', required=True); p.add_argument('--data', required=True)
    p.add_argument('--split', default='all'); p.add_argument('--n', type=int, default=None)
    p.add_argument('--out', required=True); p.add_argument('--grid', action=argparse.BooleanOptionalAction, default=True)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    model = load_localizer(a.model, 'cpu').eval()
    src = open_source(a.data)
    idx = split_indices(len(src), a.split, a.n)
    labels = src.labels.iloc[idx].reset_index(drop=True)
    chirp = labels['Chirp_Present'].to_numpy().astype(bool) if 'Chirp_Present' in labels else np.ones(len(labels), bool)
    true = target_array(labels[chirp], TARGETS)
    out, net_s = maps(model, src, idx)
    d = {n: v.default for n, v in inspect.signature(joint_bins).parameters.items()}   # the joint reading's defaults
    T = d['temperature']
    default = f"joint (default: k {d['k']}, ridge {d['ridge_weight']:g}, window {d['window']}, temperature {T:g})"
    readings = {'marginal': decode_bins, default: joint_bins}
    if a.grid:
        readings['joint (temperature 1)'] = lambda o: joint_bins(o, temperature=1.0)
        for w_r in (0.0, 0.1, 0.3):
            readings[f'joint (ridge {w_r})'] = lambda o, w_r=w_r: joint_bins(o, ridge_weight=w_r)
        readings['joint (window 0)'] = lambda o: joint_bins(o, window=0)
    rows, report, is_exp = [], {}, (labels[chirp].Chirp_Type == 'exponential').to_numpy()
    for name, dec in readings.items():
        lab, s = read(out, dec)
        lab['Chirp_Type'] = lab['Chirp_Type_prob']          # regression_report scores the type from P(exponential)
        rep = regression_report(lab[chirp][list(TARGETS)].to_numpy(float), true, TARGETS)
        cal = type_calibration(lab[chirp].Chirp_Type_prob, is_exp)
        report[name] = dict(targets=rep, read_seconds=s, type_calibration=cal)
        if name == default: report[name]['temperature_fitted_here'] = fit_temperature(lab[chirp].Chirp_Type_prob, is_exp, T)
        rows.append({'reading': name, **{f"r {t.split('_', 1)[1].replace('_', ' ').lower()}": f"{rep[t]['pearson_r']:.4f}" for t in TARGETS[:3]},
                     **{f"MAE {t.split('_', 1)[1].replace('_', ' ').lower()}": f"{rep[t]['mae']:.3f}" for t in TARGETS[:3]},
                     'accuracy type': f"{rep['Chirp_Type']['accuracy']:.3f}", 'NLL type': f"{cal['nll']:.3f}",
                     'ECE type': f"{cal['ece']:.3f}", 'img/s (reading)': f"{len(idx) / s:,.0f}"})
    cmd = 'python tests/measure_decode.py ' + ' '.join(argv if argv is not None else __import__('sys').argv[1:])
    res = dict(command=cmd, git_commit=git_commit(), model=a.model, data=a.data, split=a.split, n=int(len(idx)),
               n_chirps=int(chirp.sum()), network_img_per_s=len(idx) / net_s, readings=report)
    out_dir = Path(a.out); out_dir.mkdir(parents=True, exist_ok=True)
    data = Path(a.data)                                          # runs/ship/data -> ship, runs/val11 -> val11
    name = f"decode_{data.parent.name if data.name == 'data' else data.name}_{a.split}"
    atomic_write(out_dir / f'{name}.json', json.dumps(res, indent=1))
    md = (f"# Reading the heatmaps: {a.model} on {a.data} ({a.split}, {len(idx):,} samples, {int(chirp.sum()):,} chirps)\n\n"
          f"`{cmd}` (commit {res['git_commit']}); the network alone: {res['network_img_per_s']:,.0f} img/s on this machine.\n\n"
          + markdown_table(pd.DataFrame(rows)) + '\n\n'
          + f"Type: NLL and expected calibration error (10 bins of confidence) of P(exponential). The temperature that "
          f"minimizes the joint reading's type NLL on these samples: {report[default]['temperature_fitted_here']:.1f}.\n")
    atomic_write(out_dir / f'{name}.md', md)
    print(md)


if __name__ == '__main__':
    main()
