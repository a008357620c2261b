"""The paper's path at tiny size on CPU: the `paper` preset end to end (figures with their 224-px inputs, the cache, loader
workers, LoRA on a "pretrained" folder, bf16 autocast), its stages one command at a time with MAE pretraining, a
paused-and-resumed run, and DistributedDataParallel under torchrun (2 CPU processes, gloo)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from chirploc.generate import figure_pixels
from chirploc.model import ChirpLocalizer
from chirploc.train import load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]


def chirploc(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, '-m', 'chirploc', *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})})


@pytest.fixture(scope='module')
def vit_folder(tmp_path_factory):
    "A tiny 224-px RGB ViT saved with save_pretrained: the stand-in for the paper's pretrained weights."
    from transformers import ViTConfig, ViTModel
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp('vit') / 'vit'
    ViTModel(ViTConfig(image_size=224, patch_size=32, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64), add_pooling_layer=False).save_pretrained(folder)
    return folder


def test_paper_preset_tiny_end_to_end(tmp_path, vit_folder):
    out, work = tmp_path / 'out', tmp_path / 'work'
    p = chirploc('reproduce', '--preset', 'paper', '--n_samples', 64, '--epochs', 1, '--backbone', vit_folder,
                 '--device', 'cpu', '--out_dir', out, '--work_dir', work, '--workers', 2, '--amp', 'bf16', '--no-progress')
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / 'results.json').read_text())
    assert res['backbone'].endswith('pretrained elsewhere (no chirploc_pretraining.json: its origin is not recorded here), LoRA')
    assert (res['n_train'], res['n_test'], res['epochs_run']) == (51, 13, 1)
    assert res['config']['amp'] == 'bf16' and res['config']['cache'] and res['config']['workers'] == 2
    assert res['loading']['cached'] is True and res['inference']['images'] == 13
    # the 224-px inputs were written from the figure buffers, and equal what decoding the written PNGs gives
    x = np.load(work / 'data' / 'inputs_224px.npy', mmap_mode='r')
    assert x.shape == (64, 3, 224, 224) and x.dtype == np.uint8
    for i in (0, 37, 63):
        assert np.array_equal(x[i], figure_pixels(Image.open(work / 'data' / f'spectrogram_{i + 1}.png')))
    # a LoRA run checkpoints what trains: the adapter (peft's format) and the head, never the frozen ViT
    run = work / 'train'
    head = load_file(str(run / 'checkpoint' / 'model.safetensors'))
    adapter = load_file(str(run / 'checkpoint' / 'adapter' / 'adapter_model.safetensors'))
    assert not any(k.startswith('backbone.') for k in head) and all('lora_' in k for k in adapter)
    model = ChirpLocalizer.from_pretrained(run)
    assert set(load_file(str(run / 'checkpoint' / 'best.safetensors'))) == set(model.trainable_state_dict())
    # every figure carries the command that remakes it
    from chirploc.core import figure_provenance
    prov = figure_provenance(out / 'fig5_pearson_r.png')
    cmd = prov['command']
    assert cmd.startswith('chirploc reproduce --preset paper ') and prov['results'].endswith('results.json')
    assert all(f' {a} ' in cmd + ' ' for a in ('--n_samples 64', f'--backbone {vit_folder}', '--epochs 1', '--amp bf16', '--workers 2'))


def test_paper_stages_with_mae_pretraining(tmp_path):
    out, work = tmp_path / 'out', tmp_path / 'work'
    common = ['reproduce', '--preset', 'paper', '--n_samples', 48, '--epochs', 1, '--backbone', 'mae:vit-micro-rgb',
              '--pretrain_steps', 3, '--pretrain_batch_size', 8, '--device', 'cpu', '--out_dir', out, '--work_dir', work,
              '--workers', 0, '--no-progress']
    for stage in ('data', 'pretrain', 'train'):
        p = chirploc(*common, '--stage', stage)
        assert p.returncode == 0 and f"stage '{stage}' done" in p.stdout, p.stderr[-2000:]
        assert not (out / 'results.json').exists()
    assert (work / 'mae' / 'backbone' / 'chirploc_pretraining.json').exists()
    p = chirploc(*common)  # the rest: evaluation, figures, results.json, reusing the three stages above
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((out / 'results.json').read_text())
    assert res['backbone'].startswith('ViT (width 32, 2 layers)/32') and 'MAE-pretrained here on 38 spectrograms (3 steps' in res['backbone']
    assert res['backbone'].endswith(', LoRA')


def test_paper_preset_with_denoising_pretraining_on_figures(tmp_path):
    "The preset's own backbone (denoise:SHAPE): pretrained on the training figures' RGB inputs (decoded once), then LoRA."
    out, work = tmp_path / 'out', tmp_path / 'work'
    p = chirploc('reproduce', '--preset', 'paper', '--n_samples', 48, '--epochs', 1, '--backbone', 'denoise:vit-micro-rgb',
                 '--pretrain_steps', 3, '--pretrain_batch_size', 8, '--device', 'cpu', '--out_dir', out, '--work_dir', work,
                 '--workers', 0, '--limit_n', 4, '--no-progress')
    assert p.returncode == 0, p.stderr[-3000:]
    rec = json.loads((work / 'denoise' / 'backbone' / 'chirploc_pretraining.json').read_text())
    assert (rec['method'], rec['steps'], rec['n_images'], rec['shape']) == ('denoising', 3, 38, 'vit-micro-rgb')
    res = json.loads((out / 'results.json').read_text())
    assert 'denoising-pretrained here on 38 spectrograms (3 steps' in res['backbone'] and res['backbone'].endswith(', LoRA')
    assert res['config']['input_format'] == 'rgb224'


def test_paused_training_resumes_to_the_same_run(tmp_path):
    kw = dict(synthetic=96, backbone='vit-micro', epochs=3, batch_size=16, lr=1e-3, workers=0, progress=False)
    straight, h_straight = train(out_dir=tmp_path / 'straight', **kw)
    train(out_dir=tmp_path / 'paused', time_limit=1e-9, **kw)  # pauses after its first epoch
    assert load_checkpoint(tmp_path / 'paused' / 'checkpoint')['epoch'] == 1
    resumed, h_resumed = train(out_dir=tmp_path / 'paused', resume=True, **kw)
    cols = [c for c in h_straight.columns if c not in ('infer_s', 'infer_img_per_s', 'load_s', 'epoch_s')]
    assert h_resumed[cols].equals(h_straight[cols])
    a, b = resumed.state_dict(), straight.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def torchrun(*args):
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                           '-m', 'chirploc', *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})


def test_ddp_under_torchrun_trains_checkpoints_resumes_and_reloads(tmp_path):
    common = ['train', '--synthetic', 96, '--backbone', 'vit-micro', '--batch_size', 16, '--lr', '1e-3', '--device', 'cpu',
              '--workers', 0, '--no-progress']
    p = torchrun(*common, '--epochs', 2, '--out_dir', tmp_path / 'straight')
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count('saved the localizer') == 1  # process 0 speaks for the run
    p = torchrun(*common, '--epochs', 1, '--out_dir', tmp_path / 'stopped')
    assert p.returncode == 0, p.stderr[-3000:]
    p = torchrun(*common, '--epochs', 2, '--out_dir', tmp_path / 'stopped', '--resume')
    assert p.returncode == 0, p.stderr[-3000:]
    data = json.loads((tmp_path / 'straight' / 'data.json').read_text())
    assert (data['world_size'], data['batch_size_total']) == (2, 32)
    import pandas as pd
    h1, h2 = (pd.read_csv(tmp_path / d / 'history.csv') for d in ('straight', 'stopped'))
    assert list(h1.world_size) == [2, 2]
    cols = ['epoch', 'train_loss', 'test_loss', 'lr']
    assert h1[cols].equals(h2[cols])  # resumed under torchrun: the same run
    m1, m2 = ChirpLocalizer.from_pretrained(tmp_path / 'straight'), ChirpLocalizer.from_pretrained(tmp_path / 'stopped')
    x = torch.rand(3, 1, 128, 128)
    with torch.no_grad(): assert torch.equal(m1(x), m2(x))
    # a single process refuses to resume a 2-process run (its samples would be split otherwise)
    p = chirploc(*common, '--epochs', 3, '--out_dir', tmp_path / 'stopped', '--resume')
    assert p.returncode != 0 and 'world_size (2 processes, not 1)' in p.stderr
