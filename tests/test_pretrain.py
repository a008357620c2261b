"""chirploc.pretrain beyond its chapter: the backbone folder's record, its description and its history file, the encoder
under masking and the checkpoint's weights, a resumed run's checkpoint and refused setting changes, LoRA fine-tuning's
details and reload, bf16 with the cache, too few images; tests/bench_train.py runs and writes JSON. nbs/03b_pretrain holds
the MAE/ViT equivalence, the CPU demo run, its resumption after a crash and its fine-tuning (nbdev_test runs them)."""
import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from chirploc.data import SyntheticSource
from chirploc.generate import write_dataset
from chirploc.model import ChirpLocalizer, load_backbone
from chirploc.pretrain import (RECORD, PretrainConfig, describe_pretrained, load_mae, mae_encode, mae_to_vit,
                               pretrain_mae, read_history)

pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py
CFG = PretrainConfig(vit='vit-micro', steps=7, batch_size=8, base_lr=0.05, checkpoint_every=4, log_every=1, split='all',
                     progress=False)


def data(): return SyntheticSource(24, seed=1)


class FailingSource(SyntheticSource):
    "The same samples as data(), but the 41st read fails: during step 6, after the checkpoint of step 4."
    reads = 0
    def matrix(self, i):
        FailingSource.reads += 1
        if FailingSource.reads > 40: raise OSError('disk gone')
        return super().matrix(i)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "An uninterrupted tiny MAE run: (run folder, backbone folder)."
    out = tmp_path_factory.mktemp('mae') / 'run'
    return out, pretrain_mae(data(), out, CFG)


def test_backbone_folder_loads_as_pretrained(run):
    out, folder = run
    assert folder == out / 'backbone'
    vit, _ = load_backbone(str(folder))
    assert type(vit).__name__ == 'ViTModel' and getattr(vit, 'pooler', None) is None
    rec = json.loads((folder / RECORD).read_text())
    assert rec['mask_ratio'] == 0.75 and rec['data_seed'] == 1 and math.isfinite(rec['final_loss']) and rec['versions']['chirploc']
    assert describe_pretrained(folder) == ('ViT (width 32, 2 layers)/32 (128 px, 1 channel), MAE-pretrained here on '
                                           '24 spectrograms (7 steps, 2.33 epochs)')
    h = read_history(out)
    assert list(h.columns) == ['step', 'loss', 'lr', 'seconds']
    assert str(out.parent) not in (folder / RECORD).read_text()  # no absolute paths in the record


def test_vit_equals_mae_encoder_unmasked(run):
    out, folder = run
    mae = load_mae(out)
    vit, _ = load_backbone(str(folder))
    x = torch.rand(3, 1, 128, 128)
    with torch.no_grad():
        h = vit(pixel_values=x).last_hidden_state
        masked = mae.vit(pixel_values=x).last_hidden_state
    assert torch.allclose(mae_encode(mae, x), h, atol=1e-6, rtol=0)
    assert masked.shape == (3, 5, 32)  # masked: [CLS] + 4 of the 16 patches seen
    # trained weights, not the initial ones: the encoder's weights are the checkpoint's
    w = load_file(out / 'checkpoint' / 'model.safetensors')
    assert torch.equal(mae_to_vit(mae).embeddings.cls_token, w['vit.embeddings.cls_token'])


def test_interrupted_run_resumes_to_identical_weights(run, tmp_path):
    out, folder = run
    with pytest.raises(OSError, match='disk gone'):
        pretrain_mae(FailingSource(24, seed=1), tmp_path / 'cut', CFG)
    with pytest.raises(FileExistsError):  # 03b_pretrain checks the message
        pretrain_mae(data(), tmp_path / 'cut', CFG)
    with pytest.raises(ValueError, match="'base_lr'"):
        pretrain_mae(data(), tmp_path / 'cut', dataclasses.replace(CFG, base_lr=0.01), resume=True)
    resumed = pretrain_mae(data(), tmp_path / 'cut', dataclasses.replace(CFG, log_every=1, progress=False), resume=True)
    for a, b in ((folder / 'model.safetensors', resumed / 'model.safetensors'),
                 (out / 'checkpoint' / 'model.safetensors', tmp_path / 'cut' / 'checkpoint' / 'model.safetensors')):
        wa, wb = load_file(a), load_file(b)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_lora_finetuning_on_the_pretrained_backbone(run, tmp_path):
    from chirploc.reproduce import describe_backbone
    from chirploc.train import train
    _, folder = run
    model, history = train(None, tmp_path / 'ft', synthetic=40, backbone=str(folder), epochs=1, batch_size=8, progress=False)
    assert model.config.lora_r == 8
    assert all('lora_' in n or n.startswith('head.') for n, p in model.named_parameters() if p.requires_grad)
    assert math.isfinite(history.test_loss[0])
    assert 'MAE-pretrained here on 24 spectrograms' in describe_backbone(str(folder), model)
    assert describe_backbone(str(folder), model).endswith(', LoRA')
    again = ChirpLocalizer.from_pretrained(tmp_path / 'ft')
    assert again.config.pretrained and again.config.use_lora


def test_rgb_figures_with_cache_and_bf16(tmp_path):
    "The paper's input (224 px RGB figures) from a PNG folder, through the uint8 cache, its training split only; bf16 on CPU."
    figures = write_dataset(tmp_path / 'figs', 10, seed=3, workers=1, progress=False)
    cfg = PretrainConfig(vit='vit-micro-rgb', steps=2, batch_size=4, amp='bf16', progress=False)
    folder = pretrain_mae(figures, tmp_path / 'mae', cfg, cache=tmp_path / 'cache')
    rec = json.loads((folder / RECORD).read_text())
    assert (rec['n_source'], rec['n_images']) == (10, 8)  # the training split only
    assert rec['precision'] == 'bf16 autocast' and math.isfinite(rec['final_loss'])
    assert list((tmp_path / 'cache').glob('figs-rgb224-224px-3ch-*.npy'))
    assert describe_pretrained(folder).startswith('ViT (width 32, 2 layers)/32, MAE-pretrained here on 8 spectrograms')


def test_too_few_images_for_a_batch():
    with pytest.raises(ValueError, match='fewer than one batch'): pretrain_mae(SyntheticSource(4), '/nonexistent/x', CFG)


def test_bench_train_writes_json(tmp_path):
    spec = importlib.util.spec_from_file_location('bench_train', Path(__file__).parent / 'bench_train.py')
    bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
    out = tmp_path / 'bench.json'
    bench.main(['--backbone', 'vit-micro', 'mae:vit-micro', '--batch-size', '4', '--steps', '2', '--warmup', '1',
                '--device', 'cpu', '--out', str(out)])
    doc = json.loads(out.read_text())
    runs = {(r['backbone'], r['mode']): r for r in doc['runs']}
    assert set(runs) == {('vit-micro', 'train'), ('vit-micro', 'infer'), ('mae:vit-micro', 'train')}
    for r in runs.values():
        assert r['img_per_s_mean'] > 0 and r['timed_steps'] == 2 and r['attn_implementation'] == 'sdpa'
    env = doc['envs'][0]
    assert env['device'] == 'cpu' and env['torch'] == torch.__version__ and env['transformers']
