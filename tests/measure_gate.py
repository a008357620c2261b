"""Refinement where it matters (nbs/05e_refine.ipynb, `refine_states(gate=True)`): the model alone, the gated refinement
(local moves for every chirp, the full search only where `uncertain` flags it), today's full refinement of every chirp,
and the maximum-likelihood limit, on the same samples; the share sent to the full search and why; img/s of each path
(the network's time included). Writes gate_<data>.{json,md} to --out.

    chirploc generate --n 500 --kind figure --seed 31 --out runs/gate/fig31
    python tests/measure_gate.py --data runs/gate/fig31 --out figures/experiments/refine/gate

The records' data: figures fig31, fig32, fig35, fig36, fig37 (500 each, `--seed` the number), arrays arr33 (1,000),
arr34 and arr36 (5,000 each). Seeds for the reported draws were not used to choose anything (the gate's thresholds were
set before they were drawn), except seed 35's figures, on which the refinement was found to need a second ridge seed
(REFINE_PAIRS = 2; fig36, fig37 and arr36 were drawn after that choice).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_refine import TARGETS, load_case, model_pass  # noqa: E402

from chirploc.core import atomic_write, git_commit  # noqa: E402
from chirploc.data import open_source  # noqa: E402
from chirploc.evaluate import REFINE_CANDIDATES, REFINED, load_localizer  # noqa: E402
from chirploc.figures import markdown_table  # noqa: E402
from chirploc.generate import PRESENCE  # noqa: E402
from chirploc.labels import split_indices, target_array  # noqa: E402
from chirploc.limit import LimitEstimator  # noqa: E402
from chirploc.refine import refine_states  # noqa: E402
from chirploc.reports import regression_report  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', default=None); p.add_argument('--data', required=True)
    p.add_argument('--split', default='all'); p.add_argument('--n', type=int, default=None)
    p.add_argument('--out', required=True)
    p.add_argument('--full', action=argparse.BooleanOptionalAction, default=True, help="today's full refinement too")
    p.add_argument('--limit', action=argparse.BooleanOptionalAction, default=True, help='the maximum-likelihood limit too')
    p.add_argument('--threads', type=int, default=None, help='torch threads for the network (default: as torch starts)')
    p.add_argument('--workers', type=int, default=1, help='processes for the searches')
    a = p.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    model, src, kind, idx, labels, chirp = load_case(a)
    pred, net_s, cands, cand_s = model_pass(model, src, idx, REFINE_CANDIDATES)
    S = np.stack([src.matrix(int(i)) for i in idx])[chirp]
    start, truth, cands = pred[chirp].reset_index(drop=True), labels[chirp].reset_index(drop=True), cands[chirp]
    n, net = int(chirp.sum()), (net_s + cand_s) * chirp.mean()
    est = LimitEstimator(kind=kind); est.prepare()           # once per process: the pivots' tables (forked workers inherit them)
    est.refine(S[:64], start[list(REFINED)][:64], progress=False, candidates=cands[:64])  # warm-up
    results, info = {'model alone': (start, net_s * chirp.mean())}, {}
    t0 = time.perf_counter()
    r = refine_states(S, start[list(REFINED)], kind, candidates=cands, gate=True, workers=a.workers)
    results['gated refinement (model, then the full search where uncertain)'] = (r, net + time.perf_counter() - t0)
    info = dict(sent=r.attrs['sent'], reasons=r.attrs['reasons'], stage_seconds=r.attrs['seconds'], network_seconds=net)
    if a.full:
        t0 = time.perf_counter()
        r = refine_states(S, start[list(REFINED)], kind, candidates=cands, gate=False, workers=a.workers)
        results['full refinement of every chirp (before)'] = (r, net + time.perf_counter() - t0)
    if a.limit:
        r = LimitEstimator(kind=kind, workers=a.workers)(S, progress=False)
        results['maximum-likelihood limit (its own seeds, no model)'] = (r, r.attrs['seconds'])
    true = target_array(truth, TARGETS)
    rows, report = [], {}
    lim = 'maximum-likelihood limit (its own seeds, no model)'
    for name, (r, s) in results.items():
        rep = regression_report(target_array(r, TARGETS), true, list(TARGETS))
        report[name] = dict(targets=rep, seconds=s, images_per_s=n / s)
        row = {'localizer': name}
        for t in TARGETS[:3]:
            w = t.split('_', 1)[1].replace('_', ' ').lower()
            row[f'r {w}'] = f"{rep[t]['pearson_r']:.4f}"
            row[f'MAE {w}'] = f"{rep[t]['mae']:.3f}"
        row['accuracy type'] = f"{rep['Chirp_Type']['accuracy']:.3f}"
        row['img/s'] = f"{n / s:,.1f}"
        rows.append(row)
    if lim in results:
        for name in report:
            report[name]['mae_over_limit'] = {t: report[name]['targets'][t]['mae'] / report[lim]['targets'][t]['mae'] for t in TARGETS[:3]}
        for row, name in zip(rows, report):
            row['MAE / limit (max of 3)'] = f"{max(report[name]['mae_over_limit'].values()):.2f}"
    cmd = 'python tests/measure_gate.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    res = dict(command=cmd, git_commit=git_commit(), data=a.data, kind=kind, n=int(len(idx)), n_chirps=n, gate=info,
               localizers=report, threads=torch.get_num_threads(), workers=a.workers, omp_threads=os.environ.get('OMP_NUM_THREADS'))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    name = f"gate_{Path(a.data).name}" + (f"_{a.n}" if a.n else "") + (f"_{a.threads}t{a.workers}w" if a.threads or a.workers > 1 else "")
    atomic_write(out / f'{name}.json', json.dumps(res, indent=1))
    md = (f"# Refinement where it matters: {a.data} ({kind}s, {n:,} chirps)\n\n`{cmd}` (commit {res['git_commit']}; "
          f"{res['threads']} torch threads, searches in {a.workers} process(es), 2 cores shared with other sessions: the img/s are comparable within "
          f"this table only). img/s counts the network, the candidates' reading and the search. Sent to the full search: "
          f"{info['sent']:.1%} of the chirps (moved: {info['reasons']['moved']:.1%}, joint: {info['reasons']['joint']:.1%}, "
          f"ridge: {info['reasons']['ridge']:.1%}); the gated path's seconds: network {net:.1f}, "
          + ', '.join(f"{k} {v:.1f}" for k, v in info['stage_seconds'].items()) + ".\n\n" + markdown_table(pd.DataFrame(rows)) + '\n')
    atomic_write(out / f'{name}.md', md)
    print(md)


if __name__ == '__main__':
    main()
