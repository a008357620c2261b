"""Benchmark: chirploc's generator against the reference package (chirp-spectrogram-generator 0.1.6), in one run.

    .venv/bin/python tests/bench_generate.py            # writes figures/benchmarks/generate.{json,md}

Measures samples per second, on this machine, in this run, for
  - the reference's PNG path (`SpectrogramGenerator.generate_dataset`, one process: what the package offers),
  - the reference's matrix-only path (`create_spectrogram_with_chirp`, waveform included, as the package computes it),
  - chirploc's PNG writer (`write_dataset(kind='figure')`, all cores),
  - chirploc's array writer (`write_dataset(kind='array')`, all cores),
  - chirploc's matrices alone in one process (`generate_batch`),
and the ratios to the two reference paths. Not a test: nothing here asserts a time. Targets (from the issue):
array >= 1000x reference PNG and >= 50x reference matrix; PNG >= 10x reference PNG.

One more row is a ceiling, not a generator: writing the same number of zero-filled float32 shards (1000 x 128 x 128,
fsync'd and renamed into place as the array writer does) to the same disk. No array writer can outrun it.
"""
import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np

from chirploc.core import atomic_write
from chirploc.generate import generate_batch, write_dataset


def rate(fn, n):
    t0 = time.perf_counter(); fn(); dt = time.perf_counter() - t0
    return n / dt, dt


def write_zero_shards(folder, n, shard=1000):
    "Write n zero 128x128 float32 matrices as .npy shards with the array writer's own shard writer (fsync, rename)."
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    for k in range(0, n, shard):
        zeros = np.zeros((min(shard, n - k), 128, 128), np.float32)
        atomic_write(folder / f's{k}.npy', lambda f: np.save(f, zeros))  # as the array writer writes its shards


def main(quick=False, out='figures/benchmarks'):
    from chirp_spectrogram_generator import SpectrogramGenerator
    warnings.simplefilter('ignore')
    sizes = dict(ref_png=12 if quick else 60, ref_matrix=100 if quick else 600, png=100 if quick else 600,
                 array=2000 if quick else 30000, batch=500 if quick else 3000)
    tmp = Path(tempfile.mkdtemp(prefix='chirploc-bench-'))
    res = {}
    try:
        g = SpectrogramGenerator(output_dir=str(tmp / 'ref'))
        np.random.seed(0)
        with redirect_stdout(StringIO()):
            res['reference PNG (1 process)'] = rate(lambda: g.generate_dataset(sizes['ref_png']), sizes['ref_png'])
        rng = np.random.default_rng(0)
        params = [(rng.uniform(0, 45), rng.uniform(0, 100), rng.uniform(0, 100), rng.uniform(1, 15),
                   ['linear', 'exponential'][i % 2]) for i in range(sizes['ref_matrix'])]
        res['reference matrix (1 process)'] = rate(lambda: [g.create_spectrogram_with_chirp(*p) for p in params],
                                                   sizes['ref_matrix'])
        res['chirploc matrices, generate_batch (1 process)'] = rate(
            lambda: [generate_batch(range(s, s + 100), seed=0) for s in range(0, sizes['batch'], 100)], sizes['batch'])
        res[f'chirploc PNG writer ({os.cpu_count()} processes)'] = rate(
            lambda: write_dataset(tmp / 'png', sizes['png'], seed=0, kind='figure', progress=False), sizes['png'])
        res[f'chirploc array writer ({os.cpu_count()} processes)'] = rate(
            lambda: write_dataset(tmp / 'arr', sizes['array'], seed=0, kind='array', progress=False), sizes['array'])
        res['ceiling: disk writes of the same float32 shards'] = rate(lambda: write_zero_shards(tmp / 'zeros', sizes['array']),
                                                                      sizes['array'])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ref_png = res['reference PNG (1 process)'][0]; ref_mat = res['reference matrix (1 process)'][0]
    rows = [dict(path=k, samples=round(v[0] * v[1]), seconds=round(v[1], 2), samples_per_s=round(v[0], 1),
                 x_ref_png=round(v[0] / ref_png, 1), x_ref_matrix=round(v[0] / ref_mat, 2)) for k, v in res.items()]
    info = dict(machine=f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
                python=platform.python_version(), numpy=np.__version__, quick=quick,
                command='.venv/bin/python tests/bench_generate.py' + (' --quick' if quick else ''),
                date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), results=rows)
    head = f"| path | samples | s | samples/s | x reference PNG | x reference matrix |\n|---|---:|---:|---:|---:|---:|\n"
    table = head + ''.join(f"| {r['path']} | {r['samples']} | {r['seconds']} | {r['samples_per_s']} | {r['x_ref_png']} | "
                           f"{r['x_ref_matrix']} |\n" for r in rows)
    print(table)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, 'generate.json').write_text(json.dumps(info, indent=1))
        Path(out, 'generate.md').write_text(f"# Generator benchmark\n\n`{info['command']}` on {info['machine']}, "
                                            f"{info['date']}\n\n{table}")
    return info


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='small sizes (a smoke run, numbers less stable)')
    ap.add_argument('--out', default='figures/benchmarks', help="folder for generate.json / generate.md ('' for none)")
    a = ap.parse_args()
    main(a.quick, a.out)
