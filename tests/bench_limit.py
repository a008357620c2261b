"""Throughput of the maximum-likelihood limit (nbs/05d_limit.ipynb) and its answers against the committed limit records.

The first version of the search (`LimitEstimator(method='reference')`: every start descends on its own, pivots built one
length at a time) and today's (`method='fast'`: twins merged, small moves first, pivots as fans), on the same samples in
the same run, one process each, then the fast one in `--workers` forked processes; seconds per stage of the
search; and on the first `--n` samples of each committed record (figures/limit/predictions_*_ml-*.csv.gz), how many
answers equal the record's, and of those that differ, how many fit better (higher log-likelihood) or worse.

    chirploc generate --n 50000 --kind array --seed 0 --out runs/smoke/data     # the records' arrays (test split)
    chirploc generate --n 500 --kind figure --seed 1 --out runs/limit/fig500         # the records' figures
    python tests/bench_limit.py --arrays runs/smoke/data --figures runs/limit/fig500 --out figures/limit/bench
    python tests/bench_limit.py --arrays runs/smoke/data --n_arrays 10000 --no-reference --tiers --out figures/limit/bench-all
    python tests/bench_limit.py --figures runs/limit/fig500 --n_figures 500 --no-reference --out figures/limit/bench-figures

Writes bench.json and bench.md to --out. Times depend on what else the machine runs: compare the ratios.
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from chirploc.bins import BIN_COLUMNS
from chirploc.core import atomic_write, device_name, git_commit
from chirploc.data import open_source
from chirploc.limit import LimitEstimator

RECORDS = Path(__file__).resolve().parent.parent / 'figures' / 'limit'


def run(est, S):
    "(prediction table, images per second) of estimator `est` on S."
    t0 = time.perf_counter()
    out = est(S, progress=False)
    return out, len(S) / (time.perf_counter() - t0)


def against(out: pd.DataFrame, rec: pd.DataFrame) -> dict:
    "How answers `out` compare with the record `rec` (same rows): equal bins; else higher or lower log-likelihood."
    same = (out[BIN_COLUMNS].to_numpy() == rec[BIN_COLUMNS].to_numpy()).all(1)
    d = out['loglik'].to_numpy() - rec['loglik'].to_numpy()
    tol = 1e-6 * np.maximum(np.abs(rec['loglik'].to_numpy()), 1)
    return dict(n=len(out), equal=int(same.sum()), differ=int((~same).sum()), higher_loglik=int((~same & (d > tol)).sum()),
                lower_loglik=int((~same & (d < -tol)).sum()), tied_loglik=int((~same & (np.abs(d) <= tol)).sum()),
                max_loglik_gain=float(d[~same].max()) if (~same).any() else 0.0,
                max_loglik_loss=float(-d[~same].min()) if (~same).any() else 0.0)


def bench(data, kind, treatment, n, workers, reference=True, tiers=False):
    src = open_source(data)
    full = pd.read_csv(RECORDS / f'predictions_{kind}s_ml-{treatment}.csv.gz')
    rec = full.iloc[:n]
    S = np.stack([src.matrix(int(i)) for i in rec['index']])
    res = dict(data=str(data), kind=kind, treatment=treatment, n=len(S), record=f'predictions_{kind}s_ml-{treatment}.csv.gz')
    # once per process, not timed below: the pivots' tables (timed here), then both methods on other samples of the record
    # (the ridge shapes' table grows as searches meet new shapes)
    res['tables_seconds'] = LimitEstimator(src.cfg, kind=kind, treatment=treatment).prepare()
    warm = np.stack([src.matrix(int(i)) for i in full['index'].iloc[n:n + 32]]) if len(full) > n else S[:8]
    for method in ('reference', 'fast'): LimitEstimator(src.cfg, kind=kind, treatment=treatment, method=method)(warm, progress=False)
    outs = {}
    variants = ([('reference', dict(method='reference'))] if reference else []) + [('fast', {})] + \
               ([('fast, tiers', dict(tiers=True))] if tiers else []) + [(f'fast, {workers} processes', dict(workers=workers))]
    for name, kw in variants:
        est = LimitEstimator(src.cfg, kind=kind, treatment=treatment, batch_size=max(8, min(128, -(-len(S) // max(workers, 1)))), **kw)
        outs[name], ips = run(est, S)
        res[name] = dict(images_per_s=ips, stage_seconds=dict(est.stage_seconds) or None,
                         against_record=against(outs[name], rec),
                         against_reference=against(outs[name], outs['reference']) if reference else None)
        print(f"{kind} {treatment} {name}: {ips:.1f} img/s", flush=True)
    if reference:
        res['ratio_fast'] = res['fast']['images_per_s'] / res['reference']['images_per_s']
        res['ratio_workers'] = res[f'fast, {workers} processes']['images_per_s'] / res['reference']['images_per_s']
    return res


def markdown(results: dict, cmd: str) -> str:
    lines = [f"Made by `{cmd}` at commit {results['commit']} ({results['device']}; OMP_NUM_THREADS={results['omp_threads']}; "
             "2 cores shared with other sessions: compare the ratios, measured in the same run). Once per process and not in the "
             "img/s: the pivots' tables, " + ', '.join(f"{r['tables_seconds']:.1f} s ({r['kind']}s)" for r in results['runs'])
             + ", and a warm-up of both methods on 32 other samples of the record.", '',
             '| data | estimator | img/s | x reference | equal to the record | differ: higher / lower log-likelihood | equal to the reference |',
             '|---|---|---|---|---|---|---|']
    for r in results['runs']:
        for name in [k for k in r if isinstance(r[k], dict) and 'images_per_s' in r[k]]:
            m, a, b = r[name], r[name]['against_record'], r[name]['against_reference']
            ratio = f"{m['images_per_s'] / r['reference']['images_per_s']:.2f}" if 'reference' in r else ''
            lines.append(f"| {r['kind']} ml-{r['treatment']} ({r['n']}) | {name} | {m['images_per_s']:.1f} | {ratio} | "
                         f"{a['equal']} / {a['n']} | {a['higher_loglik']} / {a['lower_loglik']} | "
                         + (f"{b['equal']} / {b['n']} |" if b else '|'))
    lines += ['', 'Seconds per stage (one process):', '', '| data | estimator | ' + ' | '.join(STAGES) + ' |', '|---|---|' + '---|' * len(STAGES)]
    for r in results['runs']:
        for name in [k for k in ('reference', 'fast', 'fast, tiers') if k in r]:
            st = r[name]['stage_seconds'] or {}
            lines.append(f"| {r['kind']} ml-{r['treatment']} | {name} | " + ' | '.join(f"{st.get(s, 0):.2f}" for s in STAGES) + ' |')
    return '\n'.join(lines) + '\n'


STAGES = ('setup', 'starts', 'descent', 'rescue', 'gls')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--arrays', help='the array folder of the records (runs/smoke/data)')
    p.add_argument('--figures', help='the figure folder of the records (runs/limit/fig500)')
    p.add_argument('--n_arrays', type=int, default=256); p.add_argument('--n_figures', type=int, default=64)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--reference', action=argparse.BooleanOptionalAction, default=True, help='the first search too (slow)')
    p.add_argument('--tiers', action=argparse.BooleanOptionalAction, default=False, help="the fast search with tiers=True too")
    p.add_argument('--out', required=True)
    a = p.parse_args(argv)
    runs = []
    if a.arrays: runs.append(bench(a.arrays, 'array', 'invert', a.n_arrays, a.workers, a.reference, a.tiers))
    if a.figures: runs.append(bench(a.figures, 'figure', 'gls', a.n_figures, a.workers, a.reference, a.tiers))
    results = dict(commit=git_commit(), device=device_name('cpu'), omp_threads=os.environ.get('OMP_NUM_THREADS'), runs=runs)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cmd = 'python tests/bench_limit.py ' + ' '.join(argv if argv is not None else __import__('sys').argv[1:])
    atomic_write(out / 'bench.json', json.dumps(results, indent=1))
    atomic_write(out / 'bench.md', markdown(results, cmd))
    print(markdown(results, cmd))


if __name__ == '__main__':
    main()
