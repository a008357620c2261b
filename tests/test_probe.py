"""chirploc.probe beyond its chapter: on a few dozen generator samples a linear probe must beat the same probe
fitted to shuffled targets; a random ViT's states; tests/measure_probe.py's stages run end to end at toy size."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from chirploc.data import ChirpDataset, SyntheticSource
from chirploc.labels import DEFAULT_TARGETS
from chirploc.model import load_backbone
from chirploc.probe import linear_probe, pooled, token_states

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py


def test_probe_beats_shuffled_targets():
    "90 generator samples (60 to fit): the matrix pooled to 8x8 holds the chirp's place; shuffled targets give nothing."
    ds = ChirpDataset(SyntheticSource(90, seed=6), input_format='matrix')
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = ds.target_values()
    f = torch.nn.functional.avg_pool2d(x, 16).flatten(1).numpy()
    real = linear_probe(f[:60], y[:60], f[60:], y[60:])['r']
    fake = linear_probe(f[:60], np.random.default_rng(0).permutation(y[:60]), f[60:], y[60:])['r']
    assert real.mean() > fake.mean() + 0.3, (real, fake)
    assert (real > 0.4).all(), real


def test_token_states_of_a_random_vit():
    torch.manual_seed(0); vit, _ = load_backbone('vit-micro')
    h = token_states(vit, torch.rand(3, 1, 128, 128))
    assert h.shape == (3, 17, 32) and pooled(h, 'tokens').shape == (3, 16 * 32)


def test_measure_script_runs(tmp_path):
    cmd = [sys.executable, 'tests/measure_probe.py', '--work', str(tmp_path / 'w'), '--out', str(tmp_path / 'o'),
           '--n_probe', '40', '--n_probe_test', '20', '--n_hybrid', '32', '--hybrid_epochs', '1', '--n_lora', '32',
           '--n_lora_test', '20', '--lora_epochs', '1', '--n_pre', '64', '--mae_steps', '1', '--denoise_steps', '1',
           '--n_pre_hybrid', '32', '--hybrid_denoise_steps', '2', '--long_epochs', '1',
           '--arms', 'trained hybrid + LoRA, cls, lr 1e-4 (paper)']
    subprocess.run(cmd, check=True, capture_output=True)
    r = json.loads((tmp_path / 'o' / 'results.json').read_text())
    assert set(r['probe']) >= {'pixels', 'vit-tiny, MAE', 'hybrid, trained on linear chirps'}
    assert r['lora']['trained hybrid + LoRA, cls, lr 1e-4 (paper)']['trainable'] > 0
    assert (tmp_path / 'o' / 'probe.png').exists()
    assert r['command'].startswith('python tests/measure_probe.py --work') and r['recipe'].startswith('chirploc-hybrid')
    # a rerun of one stage reads the cached data and backbones (weights_only loads) and records the whole command
    subprocess.run(cmd + ['--only', 'lora'], check=True, capture_output=True)
    r2 = json.loads((tmp_path / 'o' / 'results.json').read_text())
    assert '--only' not in r2['command'] and r2['probe']['pixels'] == r['probe']['pixels']
    assert r2['hybrid_denoise']['steps'] == 2 and 'hybrid, denoising (clean ridge)' in r2['probe']
    assert r2['hybrid_denoise_weighted']['weighted'] and 'hybrid, denoising (clean ridge, ridge-weighted)' in r2['probe']
    assert r2['lora']['denoised hybrid + LoRA, soft head, lr 1e-3']['backbone'] == 'denoised'
    g = r2['hybrid_denoise_global']
    assert g['weighted'] and g['global_image'] and g['history'][-1][1] > 0
    assert 'hybrid, denoising (clean ridge, ridge-weighted, + [CLS] image)' in r2['probe']
    assert r2['lora']['global denoised hybrid + LoRA, cls, lr 1e-3, 1 epochs']['backbone'] == 'global denoised'
    v = r2['lora']['global denoised vit-tiny + LoRA, cls, lr 1e-3, 1 epochs']
    assert v['lora'] and 0 < v['trainable'] < r2['lora']['global denoised vit-tiny, full fine-tuning, cls, lr 1e-3, 1 epochs']['trainable']
