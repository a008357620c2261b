"""The figures of a denoising pretraining run (nbs/03e_denoise.ipynb): its loss curve, and what it draws on test
matrices it never saw (the paper's test split of the run's data). The `lora` preset's, after the run:

    python tests/figures_denoise.py --run runs/lora/denoise --data runs/lora/data --out figures/lora
"""
import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from chirploc.core import git_commit, save_figure
from chirploc.data import open_source
from chirploc.denoise import clean_ridges, fig_denoising, load_denoiser
from chirploc.labels import paper_split
from chirploc.pretrain import fig_pretrain_loss, read_history


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run', required=True, help='the pretraining run folder (holding checkpoint/ and history.csv)')
    p.add_argument('--data', required=True, help="the run's data folder")
    p.add_argument('--out', required=True, help='where pretraining_loss.png and denoising.png go')
    p.add_argument('--n', type=int, default=4, help='test matrices drawn')
    a = p.parse_args(argv)
    prov = dict(command=shlex.join(['python', 'tests/figures_denoise.py', *(sys.argv[1:] if argv is None else argv)]),
                commit=git_commit('.'))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    h = read_history(a.run)
    fig = fig_pretrain_loss(h, title=f'denoising pretraining: {h.step.iloc[-1]:,} steps')
    ax = fig.axes[0]; ax.set_ylabel("loss (share of an empty drawing's)"); ax.get_lines()[0].set_label('ridge-weighted loss')
    ax.legend(ax.get_lines() + fig.axes[1].get_lines(), ['ridge-weighted loss', 'learning rate'], fontsize=8)
    save_figure(fig, out / 'pretraining_loss.png', prov, dpi=110)
    src = open_source(a.data)
    rows = np.sort(paper_split(len(src))[1])[:a.n]
    x = torch.stack([torch.from_numpy(src.input(int(i), 'matrix')) for i in rows])
    fig = fig_denoising(load_denoiser(a.run), x, clean_ridges(src.labels.iloc[rows], src.cfg),
                        title=f'what the pretrained ViT draws on {a.n} test matrices (never seen in pretraining)')
    save_figure(fig, out / 'denoising.png', prov, dpi=100)
    print(f'wrote {out / "pretraining_loss.png"} and {out / "denoising.png"}')


if __name__ == '__main__':
    main()
