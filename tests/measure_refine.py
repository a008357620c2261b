"""How far the likelihood takes a heatmap localizer's estimates (nbs/05d_limit.ipynb, `refine`): the model alone, the
local refinement from its answer alone, and the refinement that also searches from the image's best two-column ridge
and from the best of the network's ranked candidates (`joint_candidates`; both, the default), beside the maximum-likelihood limit on the same samples. The network
runs once; every refinement starts from the same answers. Writes refine_<data>_<split>.{json,md} to --out.

The settings were chosen on fresh samples, never on a test split:

    chirploc generate --n 5000 --kind array --seed 11 --p_empty 0.1 --out runs/val11
    python tests/measure_refine.py --data runs/val11 --split all --out figures/experiments/refine

then the default checked on test samples (--data runs/ship/data --split test --n 1000 --no-grid) and on fresh figures
(--data runs/ship-f2/figure-check: a reproduction writes its fresh figures there). About 2 to 5 minutes per 1,000
samples on 2 cores with the grid and the limit.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from chirploc.core import atomic_write, git_commit
from chirploc.data import ChirpDataset, make_loader, open_source
from chirploc.evaluate import REFINE_CANDIDATES, REFINED, load_localizer, regression_report
from chirploc.figures import markdown_table
from chirploc.generate import PRESENCE
from chirploc.labels import split_indices, target_array
from chirploc.limit import LimitEstimator
from chirploc.train import evaluate as timed_pass

TARGETS = ('Chirp_Start_Time', 'Chirp_Start_Freq', 'Chirp_End_Freq', 'Chirp_Duration', 'Chirp_Type')


def model_pass(model, src, idx, m):
    "The model's predictions (physical units; the type as a label) on samples idx, its seconds, and its m best candidates."
    targets = list(model.config.targets)
    ds = ChirpDataset(src, targets, model.config.input_format, model.scaler, indices=idx)
    out = timed_pass(model, make_loader(ds, batch_size=64, workers=0), candidates=m)
    pred = pd.DataFrame(out['pred'], columns=targets)
    pred['Chirp_Type'] = np.where(pred.Chirp_Type > 0.5, 'exponential', 'linear')
    return pred, out['seconds'], out.get('candidates'), out.get('candidate_seconds', 0.0)


def load_case(a):
    "What a measurement reads (seeded): the localizer, the source, its kind, the split's indices, their labels, which hold a chirp."
    torch.manual_seed(0)
    model = load_localizer(a.model, 'cpu').eval()
    src = open_source(a.data)
    kind = src.kind
    idx = split_indices(len(src), a.split, a.n)
    labels = src.labels.iloc[idx].reset_index(drop=True)
    chirp = labels[PRESENCE].to_numpy().astype(bool) if PRESENCE in labels else np.ones(len(labels), bool)
    return model, src, kind, idx, labels, chirp

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', default=None, help='localizer folder (default: the shipped default model)')
    p.add_argument('--data', required=True); p.add_argument('--split', default='all'); p.add_argument('--n', type=int, default=None)
    p.add_argument('--out', required=True)
    p.add_argument('--grid', action=argparse.BooleanOptionalAction, default=True, help='other candidate settings too')
    p.add_argument('--limit', action=argparse.BooleanOptionalAction, default=True, help='the maximum-likelihood limit too')
    a = p.parse_args(argv)
    model, src, kind, idx, labels, chirp = load_case(a)
    m_max = 16 if a.grid else REFINE_CANDIDATES
    pred, net_s, cands, cand_s = model_pass(model, src, idx, m_max)
    S = np.stack([src.matrix(int(i)) for i in idx])[chirp]  # refined where a chirp is: the chirp-free samples are not the question here
    start, truth = pred[chirp].reset_index(drop=True), labels[chirp].reset_index(drop=True)
    n = int(chirp.sum())
    settings = {'refined from the answer alone (no ridge seed, no candidates)': (0, 0, 0),
                'refined, + the best two-column ridge': (0, 0, 1),
                f'refined, + the best 2 of {REFINE_CANDIDATES} candidates': (REFINE_CANDIDATES, 2, 0),
                f'refined, + the ridge, + the best 2 of {REFINE_CANDIDATES} candidates (default)': (REFINE_CANDIDATES, 2, 1)}
    if a.grid: settings.update({'refined, + the ridge, + the best 2 of 16 candidates': (16, 2, 1),
                                'refined, + the best 2 ridges, + the best 2 of 8 candidates': (8, 2, 2)})
    results = {'model alone': (start, net_s * n / len(idx))}
    w = slice(0, 256)                                             # warm-up, untimed: the table of ridge shapes grows as searches need them
    LimitEstimator(kind=kind).refine(S[w], start[list(REFINED)][w], progress=False, candidates=cands[chirp][w, :m_max])
    for name, (m, keep, pairs) in settings.items():
        est = LimitEstimator(kind=kind, keep_candidates=keep)
        t0 = time.perf_counter()
        r = est.refine(S, start[list(REFINED)], progress=False, candidates=cands[chirp][:, :m] if m else None, pairs=pairs)
        results[name] = (r, (net_s + cand_s * (m > 0)) * n / len(idx) + time.perf_counter() - t0)
    if a.limit:
        r = LimitEstimator(kind=kind)(S, progress=False, truth=truth)
        results['maximum-likelihood limit (its own seeds, no model)'] = (r, r.attrs['seconds'])
    true = target_array(truth, TARGETS)
    rng = np.random.default_rng(0)
    draws = rng.integers(0, n, (1000, min(500, n)))               # 1,000 draws of 500 chirps (with replacement), the same for each
    rows, report = [], {}
    for name, (r, s) in results.items():
        rep = regression_report(target_array(r, TARGETS), true, list(TARGETS))
        pr = target_array(r, TARGETS)[:, :3]
        rs = np.array([[np.corrcoef(pr[d, j], true[d, j])[0, 1] for j in range(3)] for d in draws])
        sure = float((rs >= 0.99).all(1).mean())                  # how often a draw of 500 shows r >= 0.99 on all three
        report[name] = dict(targets=rep, seconds=s, images_per_s=n / s, share_of_500_draws_r_099_all=sure,
                            r_500_draws_p5=np.percentile(rs, 5, axis=0).tolist())
        g = lambda t, k, f: f"{rep[t][k]:{f}}"
        rows.append({'localizer': name, **{f"r {t.split('_', 1)[1].replace('_', ' ').lower()}": g(t, 'pearson_r', '.4f') for t in TARGETS[:3]},
                     **{f"MAE {t.split('_', 1)[1].replace('_', ' ').lower()}": g(t, 'mae', '.3f') for t in TARGETS[:3]},
                     **{f"p95 {t.split('_', 1)[1].replace('_', ' ').lower()}": g(t, 'p95_ae', '.2f') for t in TARGETS[:3]},
                     'accuracy type': g('Chirp_Type', 'accuracy', '.3f'), 'img/s': f"{n / s:,.1f}",
                     'draws of 500 with r >= 0.99 on all three': f"{sure:.0%}"})
    cmd = 'python tests/measure_refine.py ' + ' '.join(argv if argv is not None else __import__('sys').argv[1:])
    res = dict(command=cmd, git_commit=git_commit(), model=a.model or 'the shipped default model', data=a.data, split=a.split,
               kind=kind, n=int(len(idx)), n_chirps=n, localizers=report)
    out_dir = Path(a.out); out_dir.mkdir(parents=True, exist_ok=True)
    data = Path(a.data)                                           # runs/ship/data -> ship, runs/val11 -> val11
    name = f"refine_{data.parent.name if data.name == 'data' else data.name}_{a.split}" + (f"_{a.n}" if a.n else '')
    atomic_write(out_dir / f'{name}.json', json.dumps(res, indent=1))
    md = (f"# Refining by the likelihood: {res['model']} on {a.data} ({a.split}, {len(idx):,} samples, {n:,} chirps, {kind}s)\n\n"
          f"`{cmd}` (commit {res['git_commit']}). Scored on the chirps; img/s counts the network, the candidates' reading and "
          f"the search (2 CPU threads, one process). The last column: of 1,000 draws of 500 of these chirps (with replacement), the "
          f"share whose r is at least 0.99 on start time, start and end frequency: how often a 500-sample check such as "
          f"the fresh-figure one would pass.\n\n" + markdown_table(pd.DataFrame(rows)) + '\n')
    atomic_write(out_dir / f'{name}.md', md)
    print(md)


if __name__ == '__main__':
    main()
