"""Does a localizer beat the ridge tracker at every chirp duration? The median |error| per duration bin and per target
(`chirploc.figures.median_error` over the bins of `error_by_duration.png`), a localizer (default: the shipped default
model) against the ridge tracker, on each data folder given and on all of them pooled, with r and MAE beside. Writes
<name>.{json,md} to --out.

    chirploc generate --n 500 --kind figure --seed 3 --out runs/fig-s3      # and seeds 4, 5: fresh ChirpLoc100K figures
    python tests/measure_duration_bins.py --data runs/smoke/data:test runs/ship-f6-1/figure-check runs/fig-s3 \\
        runs/fig-s4 runs/fig-s5 --out figures/experiments/duration-bins --name default_model

A folder is scored on its `all` split unless named as FOLDER:SPLIT. About a minute per 10,000 matrices on 2 cores.
"""
import argparse
import json
from pathlib import Path

import pandas as pd

from chirploc.baselines import evaluate_tracker
from chirploc.core import atomic_write, git_commit
from chirploc.evaluate import evaluate_localizer, load_localizer, regression_report
from chirploc.figures import DURATION_BINS, markdown_table, median_error

TARGETS = ('Chirp_Start_Time', 'Chirp_Start_Freq', 'Chirp_End_Freq')


def chirps(table: pd.DataFrame) -> pd.DataFrame:
    "The rows that hold a chirp (a table without a presence column holds only chirps)."
    return table[table['true_Chirp_Present'] == 1] if 'true_Chirp_Present' in table else table


def summary(tables: dict) -> dict:
    "r, MAE and the per-bin medians of each method ({'model': table, 'ridge tracker': table}), and whether the model wins every bin."
    out = {}
    for name, table in tables.items():
        t = chirps(table)
        rep = regression_report(t[[f'pred_{k}' for k in TARGETS]].to_numpy(), t[[f'true_{k}' for k in TARGETS]].to_numpy(), TARGETS)
        out[name] = dict(n_chirps=int(len(t)), r={k: rep[k]['pearson_r'] for k in TARGETS}, mae={k: rep[k]['mae'] for k in TARGETS},
                         median_by_duration=median_error(t, 'true_Chirp_Duration', DURATION_BINS, TARGETS).to_dict(orient='index'))
    m, tr = (out[k]['median_by_duration'] for k in ('model', 'ridge tracker'))
    out['model_below_tracker_in_every_bin'] = bool(all(m[b][k] < tr[b][k] for b in m for k in TARGETS))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data', nargs='+', required=True, help='data folders, each FOLDER or FOLDER:SPLIT (default split: all)')
    p.add_argument('--model', default=None, help='localizer folder (default: the shipped default model)')
    p.add_argument('--out', required=True); p.add_argument('--name', default='duration_bins')
    a = p.parse_args(argv)
    model = load_localizer(a.model)
    sets, pooled = {}, {'model': [], 'ridge tracker': []}
    for spec in a.data:
        folder, _, split = spec.partition(':')
        _, model_table = evaluate_localizer(model, folder, split or 'all')
        _, tracker_table = evaluate_tracker(folder, split or 'all')
        tables = {'model': model_table, 'ridge tracker': tracker_table}
        sets[spec] = summary(tables)
        for k, t in tables.items(): pooled[k].append(t[[c for c in t if c.startswith(('true_', 'pred_', 'err_'))]])
    if len(a.data) > 1: sets['pooled'] = summary({k: pd.concat(v, ignore_index=True) for k, v in pooled.items()})
    cmd = 'python tests/measure_duration_bins.py ' + ' '.join(argv if argv is not None else __import__('sys').argv[1:])
    res = dict(command=cmd, git_commit=git_commit(), model=a.model or 'the shipped default model', sets=sets)
    out_dir = Path(a.out); out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / f'{a.name}.json', json.dumps(res, indent=1, default=float))
    short = {'Chirp_Start_Time': 'start time (s)', 'Chirp_Start_Freq': 'start freq (Hz)', 'Chirp_End_Freq': 'end freq (Hz)'}
    rows = []
    for spec, s in sets.items():
        for name in ('model', 'ridge tracker'):
            r = s[name]
            rows.append({'data': spec, 'method': name, 'chirps': r['n_chirps'],
                         'r': ' / '.join(f"{r['r'][k]:.4f}" for k in TARGETS), 'MAE': ' / '.join(f"{r['mae'][k]:.3f}" for k in TARGETS),
                         **{f'median, {b} s': ' / '.join(f'{v[k]:.2f}' for k in TARGETS) for b, v in r['median_by_duration'].items()},
                         'below the tracker in every bin': ('yes' if s['model_below_tracker_in_every_bin'] else 'no') if name == 'model' else ''})
    md = (f"# Error by chirp duration: {res['model']} against the ridge tracker\n\n`{cmd}` (commit {res['git_commit']}). "
          f"r, MAE and median |error| per chirp-duration bin, each as start time / start frequency / end frequency "
          f"({', '.join(short.values())}), on the chirps of each set; 'pooled' is every set's chirps together.\n\n"
          + markdown_table(pd.DataFrame(rows)) + '\n')
    atomic_write(out_dir / f'{a.name}.md', md)
    print(md)


if __name__ == '__main__':
    main()
