"""How long each stage of the `paper` preset should take on one H100 with 16 cores: an estimate, from rates measured here
and published GPU throughputs (issue 13's GPU run replaces it with measurements).

    .venv/bin/python tests/bench_stages.py                    # writes figures/benchmarks/paper_stages.{json,md}

Measured here, on this machine (one process each): the figure writer's rate per core with the 224-px inputs written beside
each figure (`chirploc generate --kind figure --inputs 224`), decoding a figure PNG into the paper's input (the path
without that file), and a training step of a tiny ViT at 224 px (to scale the loop's own overhead). Not measurable here:
ViT-B/16 on a GPU. For it the estimate takes published bf16 throughputs: about 3,000 to 3,400 img/s inference on an
A100 or an RTX 4090, and an H100 at 2 to 2.5 times an A100; training (forward and backward, LoRA needs the activation
gradients of every layer) at about a third of inference, batch 32 using a GPU at about 60% (small batches); MAE's step
on a quarter of the patches at about 0.6 of inference (the MAE chapter's estimate); the preset's denoising pretraining
(every patch, forward and backward, batch 256) at the training third. Each is a range; the table gives its low and high
ends. The first H100 attempt measured MAE at 5.2 minutes, about twice this estimate's high end.
"""
import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

H100_INFER = (3000 * 2.0, 3400 * 2.5)        # img/s, ViT-B/16 bf16 inference: published A100 figures x the H100's speed-up
TRAIN_FRACTION, SMALL_BATCH = 1 / 3, 0.6       # training step vs inference; GPU utilisation at batch 32
MAE_FRACTION = 0.6                             # an MAE step (a quarter of the patches encoded) vs inference, per image
CORES, N, N_TRAIN, N_TEST = 16, 100_000, 80_000, 20_000


def figure_rate(n=60):
    "Figures (with their 224-px inputs) per second, one worker process."
    from chirploc.generate import write_dataset
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_dataset(Path(d) / 'f', n, seed=0, kind='figure', workers=1, progress=False, inputs=224)
        return n / (time.perf_counter() - t), d


def decode_rate(n=40):
    "Figure PNGs decoded into the paper's 3x224x224 input per second, one process."
    from chirploc.generate import write_dataset
    from chirploc.inputs import preprocess_image
    with tempfile.TemporaryDirectory() as d:
        folder = write_dataset(Path(d) / 'f', n, seed=1, kind='figure', workers=1, progress=False)
        files = sorted(folder.glob('spectrogram_*.png'))
        t = time.perf_counter()
        for f in files: preprocess_image(f, 'rgb224')
        return n / (time.perf_counter() - t)


def tiny_step_ms(steps=20, batch=32):
    "Milliseconds of a training step of vit-micro-rgb at 224 px (uint8 inputs, LoRA off), one thread: the loop's overhead."
    import torch
    from chirploc.model import ChirpLocalizer, LocalizerConfig
    torch.set_num_threads(1)
    m = ChirpLocalizer(LocalizerConfig(dict(image_size=224, patch_size=32, num_channels=3, hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=64), input_format='rgb224'))
    m.config.label_stats = dict(targets=list(m.config.targets), mean=[0, 0, 0], std=[1, 1, 1])
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    x, y = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8), torch.randn(batch, 3)
    for k in range(steps + 3):
        if k == 3: t = time.perf_counter()
        loss = m.loss(m(x), y); opt.zero_grad(); loss.backward(); opt.step()
    return 1000 * (time.perf_counter() - t) / steps


def estimate(fig_per_core, decode_per_core):
    "Seconds per stage on one H100 with 16 cores, (low, high)."
    lo, hi = H100_INFER
    est = {}
    est['data: 100,000 figures + 224-px inputs'] = (N / (fig_per_core * CORES), N / (fig_per_core * CORES * 0.8))
    steps = 2500  # the preset's pretrain_steps, batch 256
    # the preset's: denoising (03e_denoise), a full training pass over every patch at batch 256 (the GPU kept busy)
    est['pretrain: denoising, 2,500 steps of 256'] = (steps * 256 / (hi * TRAIN_FRACTION), steps * 256 / (lo * TRAIN_FRACTION))
    est['pretrain instead: MAE (backbone mae:vit-b16), 2,500 steps of 256'] = (steps * 256 / (hi * MAE_FRACTION), steps * 256 / (lo * MAE_FRACTION))
    ep = lambda r: N_TRAIN / (r * TRAIN_FRACTION * SMALL_BATCH) + N_TEST / r  # one epoch: training, then the test pass
    est['fine-tune: one epoch (80,000 at batch 32, then 20,000 test)'] = (ep(hi), ep(lo))
    est['fine-tune: 15 epochs (the paper ran 15)'] = (15 * ep(hi), 15 * ep(lo))
    est['evaluate: train and test splits (100,000 images)'] = (N / hi, N / lo)
    est['decode 100,000 PNGs instead (no inputs file, 15 workers)'] = (N / (decode_per_core * (CORES - 1)),) * 2
    return est


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='figures/benchmarks', help="folder for paper_stages.json / .md ('' for none)")
    a = p.parse_args(argv)
    from chirploc.core import device_name, versions
    fig, _ = figure_rate()
    dec = decode_rate()
    step = tiny_step_ms()
    est = estimate(fig, dec)
    res = dict(measured_here=dict(device=device_name(), figures_per_s_per_core=fig, decode_per_s_per_core=dec,
                                  tiny_vit_224px_train_step_ms=step), versions=versions(),
               assumptions=dict(h100_vit_b16_infer_img_per_s=H100_INFER, train_fraction=TRAIN_FRACTION,
                                batch32_utilisation=SMALL_BATCH, mae_fraction=MAE_FRACTION, cores=CORES),
               estimate_seconds={k: [round(v[0]), round(v[1])] for k, v in est.items()},
               command='python tests/bench_stages.py')
    lines = ['# The `paper` preset on one H100 (16 cores): estimated stage times', '',
             f"Made by `python tests/bench_stages.py` from rates measured on {res['measured_here']['device']}: "
             f"{fig:.1f} figures/s per core with their 224-px inputs, {dec:.1f} PNG decodes/s per core, a tiny 224-px ViT "
             f"step of {step:.0f} ms; and the published ViT-B/16 rates in the script's docstring. An estimate, not a "
             'measurement: the GPU run (issue 13) replaces it.', '', '| stage | estimate |', '|---|---:|']
    lines += [f"| {k} | {v[0] / 60:.1f} to {v[1] / 60:.1f} min |" for k, v in est.items()]
    print('\n'.join(lines))
    if a.out:
        out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
        (out / 'paper_stages.json').write_text(json.dumps(res, indent=1) + '\n')
        (out / 'paper_stages.md').write_text('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
