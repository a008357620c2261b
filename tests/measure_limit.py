"""The limit chapter's measurements (nbs/05d_limit.ipynb): the maximum-likelihood localizer under each treatment of the
smoothing, the ridge tracker and the quantization floor, on an array folder's test split and on a folder of ChirpLoc100K
figures; writes figures/limit/limit.{json,md} and the estimator's prediction tables (with each sample's noise level).

    chirploc generate --n 50000 --kind array --seed 0 --out runs/smoke/data        # the smoke preset's data
    chirploc generate --n 500 --kind figure --seed 1 --out runs/limit/fig500            # fresh figures
    python tests/measure_limit.py --arrays runs/smoke/data --figures runs/limit/fig500 --out figures/limit

About 20 minutes on 2 cores (the estimator runs at some 20 arrays and 10 figures a second).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from chirploc.baselines import evaluate_tracker
from chirploc.bins import quantization_floor
from chirploc.core import device_name, git_commit
from chirploc.data import open_source
from chirploc.evaluate import prediction_table, regression_report
from chirploc.labels import split_indices, target_array
from chirploc.limit import LIMIT_TARGETS, evaluate_limit


def floor(src, split, n):
    "(report, table) of the quantization floor: the labels' posterior means given their true bins."
    labels = src.labels.iloc[split_indices(len(src), split, n)]
    pred, true = target_array(quantization_floor(labels, src.cfg), LIMIT_TARGETS), target_array(labels, LIMIT_TARGETS)
    return dict(targets=regression_report(pred, true, LIMIT_TARGETS)), prediction_table(pred, true, list(LIMIT_TARGETS), labels)


def by_noise(tables: dict, eta: np.ndarray, targets=LIMIT_TARGETS[:4], q: int = 5) -> pd.DataFrame:
    "MAE per target of each prediction table by quintile of the noise level eta."
    band, rows = pd.qcut(eta, q), []
    for name, t in tables.items():
        for b, g in pd.Series(np.arange(len(eta))).groupby(band, observed=True):
            r = dict(localizer=name, eta=f"{b.left:.3f}-{b.right:.3f}", n=len(g))
            r.update({f'mae_{c}': float(t[f'err_{c}'].abs().to_numpy()[g.to_numpy()].mean()) for c in targets})
            rows.append(r)
    return pd.DataFrame(rows)


def measure(data, split, n, progress=True):
    src = open_source(data)
    kind = src.kind
    idx = split_indices(len(src), split, n)
    res, tables = dict(data=str(data), kind=kind, split=split, n=len(idx), localizers={}), {}
    for tr in (('gls', 'invert', 'ignore') if kind == 'figure' else ('invert', 'ignore')):
        res['localizers'][f'ml-{tr}'], tables[f'ml-{tr}'] = evaluate_limit(src, split, n, treatment=tr, progress=progress)
    res['localizers']['tracker'], tables['tracker'] = evaluate_tracker(src, split, limit=n)
    res['localizers']['floor'], tables['floor'] = floor(src, split, n)
    eta = src.noise_levels()
    if eta is not None:
        eta = eta[idx]
        res['by_noise'] = by_noise(tables, eta).to_dict('records')
        for t in tables.values(): t['true_eta'] = eta
    return res, tables


def markdown(results: dict) -> str:
    lines = []
    for name, r in results.items():
        if not isinstance(r, dict) or 'localizers' not in r: continue
        lines += [f"### {name}: {r['data']} ({r['kind']}, {r['split']} split, {r['n']} samples)", '',
                  '| localizer | target | r | MAE | median | p95 |', '|---|---|---|---|---|---|']
        for loc, rep in r['localizers'].items():
            for t, m in rep['targets'].items():
                if 'mae' in m: lines.append(f"| {loc} | {t} | {m['pearson_r']:.4f} | {m['mae']:.3f} | {m['median_ae']:.3f} | {m['p95_ae']:.3f} |")
                elif 'accuracy' in m: lines.append(f"| {loc} | {t} | accuracy {m['accuracy']:.3f} | | | |")
        lines += ['', '| localizer | img/s | exact bins | search failures | ML elsewhere |', '|---|---|---|---|---|']
        for loc, rep in r['localizers'].items():
            inf, s = rep.get('inference'), rep.get('search')
            lines.append((f"| {loc} | {inf['images_per_s']:.1f} |" if inf else f"| {loc} | - |")
                         + (f" {s['exact_bins']} / {s['n']} | {s['search_failures']} | {s['ml_elsewhere']} |" if s else ' | | |'))
        if 'by_noise' in r:
            bn = pd.DataFrame(r['by_noise']); cols = [c for c in bn.columns if c.startswith('mae_')]
            lines += ['', 'MAE by noise quintile (eta):', '', '| localizer | eta | n | ' + ' | '.join(c[4:] for c in cols) + ' |',
                      '|---|---|---|' + '---|' * len(cols)]
            for d in bn.to_dict('records'):
                lines.append(f"| {d['localizer']} | {d['eta']} | {d['n']} | " + ' | '.join(f"{d[c]:.3f}" for c in cols) + ' |')
        lines.append('')
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--arrays', help="an array dataset folder: its paper test split is measured")
    p.add_argument('--figures', help="a folder of ChirpLoc100K figure PNGs: all of it is measured")
    p.add_argument('--out', default='figures/limit', help='folder for limit.json, limit.md and the prediction tables')
    p.add_argument('--limit', type=int, help="only the first N samples of the arrays' test split (it is shuffled)")
    p.add_argument('--figure_limit', type=int, help='only the first N figures')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True)
    a = p.parse_args(argv)
    res = dict(command='python tests/measure_limit.py ' + ' '.join(sys.argv[1:] if argv is None else argv),
               git_commit=git_commit('.'), device=device_name())
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    for name, data, split, n in (('arrays', a.arrays, 'test', a.limit), ('figures', a.figures, 'all', a.figure_limit)):
        if not data: continue
        meta = open_source(data).meta or {}
        res[f'{name}_data'] = dict(path=str(data), n=meta.get('n'), seed=meta.get('seed'), kind=meta.get('kind'),
                                   command=f"chirploc generate --n {meta.get('n')} --kind {meta.get('kind')} --seed {meta.get('seed')} --out {data}")
        res[name], tables = measure(data, split, n, a.progress)
        for loc, t in tables.items():  # each sample's errors and noise level, for plots of error against eta
            if loc.startswith('ml-'): t.to_csv(out / f'predictions_{name}_{loc}.csv.gz', index=False, float_format='%.6g')
    (out / 'limit.json').write_text(json.dumps(res, indent=1) + '\n')
    head = [f"Made by `{res['command']}` at commit {res['git_commit']} ({res['device']}).", '']
    head += [f"- data: `{res[k]['command']}`" for k in ('arrays_data', 'figures_data') if k in res]
    (out / 'limit.md').write_text('\n'.join(head + [''] + [markdown(res)]))
    print(markdown(res))


if __name__ == '__main__':
    main()
