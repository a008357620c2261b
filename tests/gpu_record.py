"""The record of a `paper` preset attempt on a GPU machine, as markdown: stage times beside the estimate, fine-tuning
history, MAE loss, the references on the paper's test split and the throughput benchmark.

    PYTHONPATH=. python tests/gpu_record.py figures/paper/attempt-1     # writes figures/paper/attempt-1/record.md

The folder holds what `tests/gpu_paper.sh` brings back: pipeline.log (its `== HH:MM:SS (N s) command` stamps),
train_history.csv, mae_history.csv, baselines.json, bench.json (optionally bench_during_data_stage.json) and the
estimate of `tests/bench_stages.py` is read from figures/benchmarks/paper_stages.json.
"""
import json
import re
import sys
from pathlib import Path

import pandas as pd

from chirploc.figures import markdown_table

STAMP = re.compile(r'^== (\d\d:\d\d:\d\d) \((\d+) s\) (.*)$')


def stamps(log: Path) -> list[tuple[int, str]]:
    "(seconds since the start, what began then) for every stamp of the pipeline's log."
    return [(int(m[2]), m[3]) for line in log.read_text().splitlines() if (m := STAMP.match(line))]


def stage_seconds(log: Path) -> dict:
    "Seconds from each stage command's stamp to the next stamp (the stage's whole command: start-up included)."
    s, out = stamps(log), {}
    for (t, what), (t_next, _) in zip(s, s[1:]):
        m = re.search(r'--stage (\w+)', what)
        if m and what.startswith('python'): out.setdefault(m[1], []).append(t_next - t)
    return out


def bench_table(path: Path) -> pd.DataFrame:
    runs = json.loads(path.read_text())['runs']
    rows = [dict(backbone=r['backbone'], LoRA={True: 'yes', False: 'no'}.get(r.get('lora'), '-'), mode=r['mode'], batch=r['batch_size'],
                 precision=r['precision'], compile='yes' if r['compile'] else 'no',
                 **{'img/s (median)': round(r['img_per_s_median']), 'sd': round(r['img_per_s_std'], 1),
                    'peak GiB': round(r['peak_memory_gib'], 1)}) for r in runs]
    return pd.DataFrame(rows)


THREE = ('Chirp_Start_Time', 'Chirp_Start_Freq', 'Chirp_End_Freq')


def md(df: pd.DataFrame) -> str: return markdown_table(df).rstrip('\n')


def accuracy_cells(targets: dict) -> dict:
    "r and MAE of the paper's three targets, as table cells ('r start time': '0.9988', ...)."
    name = lambda k: k.split('_', 1)[1].replace('_', ' ').lower()
    return {**{f'r {name(k)}': f"{targets[k]['pearson_r']:.4f}" for k in THREE},
            **{f'MAE {name(k)}': f"{targets[k]['mae']:.2f}" for k in THREE}}


def record(folder: Path) -> str:
    est = json.loads(Path('figures/benchmarks/paper_stages.json').read_text())['estimate_seconds']
    stages = stage_seconds(folder / 'pipeline.log')
    hist = pd.read_csv(folder / 'train_history.csv')
    mae = pd.read_csv(folder / 'mae_history.csv')
    bench = json.loads((folder / 'bench.json').read_text())
    device = bench['envs'][0]['device_name']
    rng = lambda k: '{:.1f} to {:.1f} min'.format(*(v / 60 for v in est[k]))
    epoch = hist.epoch_s.median()
    rows = [('data: 100,000 figures + 224-px inputs', rng('data: 100,000 figures + 224-px inputs'),
             f"{stages['data'][0] / 60:.1f} min (14 workers)"),
            ('pretrain: MAE, 2,500 steps of 256', rng(next(k for k in est if k.startswith(('pretrain: MAE', 'pretrain instead: MAE')))),
             f"{stages['pretrain'][0] / 60:.1f} min ({mae.seconds.iloc[-1] / 60:.1f} min in the loop, "
             f"{2500 * 256 / mae.seconds.iloc[-1]:,.0f} img/s)"),
            ('fine-tune: one epoch (80,000 at batch 32, then 20,000 test)',
             rng('fine-tune: one epoch (80,000 at batch 32, then 20,000 test)'),
             f"{epoch / 60:.1f} min ({80_000 / (epoch - hist.infer_s.median()):,.0f} img/s training)"),
            ('fine-tune: 15 epochs (the paper ran 15)', rng('fine-tune: 15 epochs (the paper ran 15)'),
             f"{15 * epoch / 60:.0f} min at that rate (not run)"),
            ('inference: the 20,000 test images (model on the GPU, inputs decoded)', '',
             f"{hist.infer_s.min():.1f} to {hist.infer_s.max():.1f} s ({hist.infer_img_per_s.max():,.0f} img/s)")]
    b = json.loads((folder / 'baselines.json').read_text())['reports']
    ref = [dict(estimator=name, images=b[key]['inference']['images'], **accuracy_cells(b[key]['targets']),
                **{'img/s (1 core)': f"{b[key]['inference']['images_per_s']:.1f}"})
           for name, key in (('ridge tracker', 'ridge_tracker'), ('limit (maximum likelihood)', 'limit'))]
    ref.append(dict(estimator='quantization floor', images='all chirps', **accuracy_cells(b['floor']['targets']),
                    **{'img/s (1 core)': ''}))
    h = hist[['epoch', 'train_loss', 'test_loss', 'r_Chirp_Start_Time', 'r_Chirp_Start_Freq', 'r_Chirp_End_Freq',
              'epoch_s', 'infer_s']].round(4)
    m = mae[mae.step.isin([10, 50, 100, 200, 500, 1000, 1500, 2000, 2500])][['step', 'loss', 'lr', 'seconds']]
    m = m.assign(loss=m.loss.round(4), lr=m.lr.map('{:.2e}'.format), seconds=m.seconds.round(0))
    parts = [f"Made by `python tests/gpu_record.py {folder}` from the files beside it (what `tests/gpu_paper.sh` brought "
             f"back from one {device}).",
             '## Stage times: measured against the estimate', md(pd.DataFrame(rows, columns=['stage', 'estimate', 'measured'])),
             '## Fine-tuning (the paper recipe: LoRA r 8, batch 32, AdamW 1e-4, plateau), the epochs that ran',
             md(h), '## MAE pretraining loss (per-patch normalized pixels, 75% masked)', md(m),
             '## The references on the paper test split (20,000 ChirpLoc100K figures)', md(pd.DataFrame(ref)),
             '## Throughput benchmark (`tests/bench_train.py`, ViT-B/16 at 224 px, synthetic uint8 batches on the GPU)',
             'On a quiet machine (`bench.json`):', md(bench_table(folder / 'bench.json'))]
    if (folder / 'bench_during_data_stage.json').exists():
        parts += ['While the data stage kept 14 of the 16 cores busy (`bench_during_data_stage.json`):',
                  md(bench_table(folder / 'bench_during_data_stage.json'))]
    return '\n\n'.join(parts) + '\n'


if __name__ == '__main__':
    folder = Path(sys.argv[1])
    (folder / 'record.md').write_text(record(folder))
    print((folder / 'record.md').read_text())
