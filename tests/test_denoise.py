"""The `lora` preset's path at tiny size on CPU: denoising pretraining (03e_denoise) on the run's training split, then
LoRA on its ViT with the paper's [CLS] head, evaluation and results, one `chirploc reproduce` command; and the
pretraining's errors on data it cannot use."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chirploc.denoise import DenoiseConfig, pretrain_denoise

ROOT = Path(__file__).resolve().parents[1]


def test_lora_preset_tiny_end_to_end(tmp_path):
    out, work = tmp_path / 'out', tmp_path / 'work'
    cmd = [sys.executable, '-m', 'chirploc', 'reproduce', '--preset', 'lora', '--n_samples', '64', '--epochs', '1',
           '--backbone', 'denoise:vit-micro', '--pretrain_steps', '3', '--pretrain_batch_size', '8', '--batch_size', '16',
           '--n_figure_check', '0', '--limit_n', '4', '--eval_train', '16', '--device', 'cpu', '--out_dir', str(out),
           '--work_dir', str(work), '--no-progress']
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((work / 'denoise' / 'backbone' / 'chirploc_pretraining.json').read_text())
    assert (rec['method'], rec['steps'], rec['n_images'], rec['split']) == ('denoising', 3, 51, 'train')
    res = json.loads((out / 'results.json').read_text())
    assert res['preset'] == 'lora' and (res['n_train'], res['n_test'], res['epochs_run']) == (51, 13, 1)
    assert 'denoising-pretrained here on 51 spectrograms (3 steps' in res['backbone'] and res['backbone'].endswith(', LoRA')
    assert res['config']['pooling'] == 'cls' and res['config']['lr'] == 1e-3
    assert 0 < res['parameters']['trainable'] < res['parameters']['total']     # the frozen ViT is not trained
    # the pretraining's figures, as the committed record's are made
    sys.path.insert(0, str(ROOT / 'tests'))
    import figures_denoise
    figures_denoise.main(['--run', str(work / 'denoise'), '--data', str(work / 'data'), '--out', str(tmp_path / 'fig'), '--n', '2'])
    from chirploc.core import figure_provenance
    prov = figure_provenance(tmp_path / 'fig' / 'denoising.png')
    assert prov['command'].startswith('python tests/figures_denoise.py --run') and (tmp_path / 'fig' / 'pretraining_loss.png').exists()


def test_denoising_refuses_what_it_cannot_use(tmp_path):
    with pytest.raises(TypeError, match='chirp parameters'):
        pretrain_denoise(torch.utils.data.TensorDataset(torch.rand(16, 1, 128, 128)), tmp_path / 'a', DenoiseConfig(vit='vit-micro'))
    from chirploc.data import SyntheticSource
    with pytest.raises(ValueError, match='fewer than one batch'):
        pretrain_denoise(SyntheticSource(8), tmp_path / 'b', DenoiseConfig(vit='vit-micro', batch_size=16, split='all'))
    with pytest.raises(ValueError, match='not a named configuration'):
        DenoiseConfig(vit='vit-enormous')
