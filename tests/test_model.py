"""chirploc.model beyond its chapter: the folder's weights under LoRA, image-classification checkpoints, the hub's failure
messages, LoRA on transformers 4 names, the paper's totals, save/reload of every kind with identical predictions offline,
predict()'s other inputs and errors. nbs/03_model holds the configuration, backbone sources, LoRA modules, heads, counts,
save/reload and predict examples (nbdev_test runs them)."""
import json
import socket
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from chirploc.inputs import render_figure
from chirploc.labels import DEFAULT_TARGETS
from chirploc.generate import generate_batch
from chirploc.model import (PAPER_BACKBONE, SCRATCH_CONFIGS, BackboneUnavailable, ChirpLocalizer, LocalizerConfig,
                            count_parameters, load_backbone, lora_target_modules)



pytestmark = pytest.mark.usefixtures('one_thread')  # tests/conftest.py
STATS = dict(targets=list(DEFAULT_TARGETS), mean=[22.5, 50.0, 50.0], std=[13.0, 28.9, 30.0])


@pytest.fixture(scope='module')
def vit_folder(tmp_path_factory):
    "A tiny ViT written by save_pretrained: the stand-in for a downloaded pretrained backbone."
    from transformers import ViTConfig, ViTModel
    folder = tmp_path_factory.mktemp('vit') / 'tiny-vit'
    torch.manual_seed(0)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    ViTModel(ViTConfig(**SCRATCH_CONFIGS['vit-micro'])).save_pretrained(folder)
    return folder


@pytest.fixture(scope='module')
def samples(tmp_path_factory):
    "Three spectrograms, their labels, and a folder with their ChirpLoc100K figures."
    S, labels = generate_batch(range(3), seed=1)
    folder = tmp_path_factory.mktemp('pngs')
    for i, (s, kind) in enumerate(zip(S, labels.Chirp_Type)):
        render_figure(s, i + 1, kind).save(folder / f'spectrogram_{i + 1}.png')
    return S, labels, folder


def _perturb(model, scale=0.05, seed=0):
    "Make trainable weights nonzero-different (fresh LoRA B matrices are zero), as training would."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad: p.add_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def test_local_folder_backbone_keeps_its_weights_under_lora(vit_folder):
    m = ChirpLocalizer(LocalizerConfig(str(vit_folder)))
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert any('q_proj.lora_A' in n for n in trainable) and any('v_proj.lora_B' in n for n in trainable)
    # the backbone weights are the folder's, not random
    from safetensors.torch import load_file
    saved = load_file(vit_folder / 'model.safetensors')
    # (transformers 5 writes checkpoints with the transformers 4 names: encoder.layer.0.attention.attention.query)
    key = next(k for k in saved if k.endswith(('layer.0.attention.attention.query.weight', 'layers.0.attention.q_proj.weight')))
    got = dict(m.named_parameters())['backbone.base_model.model.layers.0.attention.q_proj.base_layer.weight']
    assert torch.equal(got, saved[key])


def test_image_classification_folder_backbone(tmp_path):
    "A folder written by ViTForImageClassification (as the paper's hub checkpoint is) loads as a pretrained ViTModel."
    from transformers import ViTConfig, ViTForImageClassification
    clf = ViTForImageClassification(ViTConfig(**SCRATCH_CONFIGS['vit-micro']))
    clf.save_pretrained(tmp_path / 'clf')
    vit, pretrained = load_backbone(str(tmp_path / 'clf'))
    assert pretrained and torch.equal(vit.embeddings.cls_token, clf.vit.embeddings.cls_token)


def test_scratch_input_format_follows_and_lora_can_be_forced():
    rgb = ChirpLocalizer(LocalizerConfig('vit-micro', input_format='rgb224'))
    assert (rgb.config.num_channels, rgb.config.input_format) == (3, dict(name='rgb224', size=128, channels=3))
    custom = ChirpLocalizer(LocalizerConfig(dict(image_size=64, patch_size=16, num_channels=1, hidden_size=16,
                                                 num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)))
    assert custom.config.backbone == 'scratch' and custom(torch.rand(2, 1, 128, 128)).shape == (2, 3)
    forced = ChirpLocalizer(LocalizerConfig('vit-micro', use_lora=True))
    assert {n.split('.')[0] for n, p in forced.named_parameters() if p.requires_grad} == {'backbone', 'head'}


def test_hub_id_fails_fast_and_clearly(monkeypatch):
    for offline in ('0', '1'):
        monkeypatch.setenv('HF_HUB_OFFLINE', offline)
        t0 = time.perf_counter()
        with pytest.raises(BackboneUnavailable) as e:
            load_backbone(PAPER_BACKBONE)
        elapsed = time.perf_counter() - t0
        msg = str(e.value)
        assert 'save_pretrained' in msg and 'vit-b16-scratch' in msg and PAPER_BACKBONE in msg
        print(f"HF_HUB_OFFLINE={offline}: failed in {elapsed:.2f} s")
    with pytest.raises(BackboneUnavailable):
        ChirpLocalizer(LocalizerConfig())  # the paper's default: never random weights in its place


def test_backbone_errors_are_typed(tmp_path, vit_folder):
    "03_model checks these messages; here, the exception types callers can catch."
    with pytest.raises(FileNotFoundError):
        load_backbone(str(tmp_path / 'nope'))
    from safetensors.torch import load_file, save_file
    part = tmp_path / 'partial'; part.mkdir()
    (part / 'config.json').write_text((vit_folder / 'config.json').read_text())
    sd = load_file(vit_folder / 'model.safetensors')
    save_file({k: v for k, v in sd.items() if 'layer.1.' not in k and 'layers.1.' not in k}, part / 'model.safetensors')
    with pytest.raises(ValueError, match='would be random'):  # a whole layer missing, where 03_model drops one tensor
        load_backbone(str(part))
    with pytest.raises(ValueError):
        ChirpLocalizer.from_pretrained(vit_folder)  # a ViT folder, not a localizer


def test_lora_names_for_transformers_4_layout():
    class Attn(nn.Module):  # transformers 4: attention.attention.{query,key,value}, attention.output.dense
        def __init__(self):
            super().__init__()
            self.attention = nn.ModuleDict(dict(query=nn.Linear(8, 8), key=nn.Linear(8, 8), value=nn.Linear(8, 8)))
            self.output = nn.ModuleDict(dict(dense=nn.Linear(8, 8)))
    old = nn.ModuleDict(dict(layer=nn.ModuleList([Attn(), Attn()])))
    from peft import LoraConfig, get_peft_model
    pm = get_peft_model(old, LoraConfig(r=2, target_modules=lora_target_modules(old)))
    names = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert len(names) == 8 and all(('query' in n or 'value' in n) and 'lora_' in n for n in names)
    vit = load_backbone('vit-micro')[0]
    assert lora_target_modules(vit, ('query', 'key', 'value')) == ['q_proj', 'k_proj', 'v_proj']


def test_paper_parameter_counts():
    with torch.device('meta'):
        paper = ChirpLocalizer(LocalizerConfig(use_lora=True, pretrained=True), backbone=load_backbone('vit-b16-scratch')[0])
    c = count_parameters(paper)
    assert c.loc['total', 'trainable'] == 525_059
    assert c.loc['total', 'parameters'] == 85_798_656 + 525_059
    head = paper.head
    assert [type(l).__name__ for l in head] == ['Linear', 'ReLU', 'Linear', 'ReLU', 'Linear']
    assert [(l.in_features, l.out_features) for l in head if isinstance(l, nn.Linear)] == [(768, 256), (256, 128), (128, 3)]


@pytest.mark.parametrize('kind', ['scratch', 'lora', 'stem', 'rgb'])
def test_save_reload_identical_predictions(kind, tmp_path, vit_folder, samples, monkeypatch):
    S, labels, pngs = samples
    cfg = dict(scratch=LocalizerConfig('vit-micro', label_stats=STATS),
               lora=LocalizerConfig(str(vit_folder), label_stats=STATS),
               stem=LocalizerConfig('vit-micro', stem=(4, 4), coords=True, label_stats=STATS),
               rgb=LocalizerConfig('vit-micro', input_format='rgb224', label_stats=STATS))[kind]
    torch.manual_seed(0)
    m = _perturb(ChirpLocalizer(cfg))
    m.save_pretrained(tmp_path / 'loc')
    files = ['adapter', 'config.json', 'model.safetensors'] if kind == 'lora' else ['config.json', 'model.safetensors']
    assert sorted(p.name for p in (tmp_path / 'loc').iterdir()) == files  # LoRA: the adapter and the head, not the frozen ViT
    saved = json.loads((tmp_path / 'loc' / 'config.json').read_text())
    assert saved['localizer']['vit_config']['hidden_size'] == 32 and saved['localizer']['label_stats'] == STATS

    # reloading needs no network: any connection attempt fails the test
    def no_network(*a, **k): raise AssertionError('from_pretrained tried to open a network connection')
    monkeypatch.setattr(socket, 'create_connection', no_network)
    monkeypatch.setattr(socket.socket, 'connect', no_network)
    r = ChirpLocalizer.from_pretrained(tmp_path / 'loc')
    assert r.config == m.config
    assert count_parameters(r).equals(count_parameters(m))
    every_kind = (S, S[0], pngs, pngs / 'spectrogram_2.png', render_figure(S[1], 2, labels.Chirp_Type[1]),
                  [pngs / 'spectrogram_1.png', S[2]])
    for inputs in every_kind if kind == 'scratch' else (S, pngs):
        a, b = m.predict(inputs), r.predict(inputs)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert list(a.columns[-3:]) == list(DEFAULT_TARGETS)
    x = torch.stack([r.prepare(s) for s in S])
    pd.testing.assert_frame_equal(m.predict(x), r.predict(x), check_exact=True)
    # physical units: the head's output de-standardized with the stored statistics
    with torch.no_grad(): z = m(x).numpy()
    np.testing.assert_allclose(m.predict(x).values, z * np.array(STATS['std']) + np.array(STATS['mean']), rtol=1e-6)


def test_lora_reload_refuses_other_base_weights(tmp_path, vit_folder):
    import shutil
    from transformers import ViTModel
    base = tmp_path / 'base'; shutil.copytree(vit_folder, base)
    ChirpLocalizer(LocalizerConfig(str(base), label_stats=STATS)).save_pretrained(tmp_path / 'loc')
    assert ChirpLocalizer.from_pretrained(tmp_path / 'loc') is not None
    other = ViTModel.from_pretrained(base, add_pooling_layer=False)
    with torch.no_grad(): other.embeddings.cls_token.add_(1.0)
    other.save_pretrained(base)  # the folder now holds other weights than the adapters were trained on
    with pytest.raises(ValueError, match='trained on other weights'): ChirpLocalizer.from_pretrained(tmp_path / 'loc')


def test_predict_inputs_and_errors(tmp_path, samples):
    S, labels, pngs = samples
    torch.manual_seed(0)
    m = _perturb(ChirpLocalizer(LocalizerConfig('vit-micro', label_stats=STATS)))
    assert len(m.predict(S)) == 3
    # a matrix and its figure give nearly the same answer for a matrix model
    a = m.predict(S[0]).values
    fig = m.predict(pngs / 'spectrogram_1.png').iloc[:, 1:].values
    np.testing.assert_allclose(fig, a, atol=0.5)  # recovered from the figure's colours: close, not equal
    # natural order in folders
    (tmp_path / 'f').mkdir()
    for i in (10, 2, 1): render_figure(S[0], i, 'linear').save(tmp_path / 'f' / f'spectrogram_{i}.png')
    assert list(m.predict(tmp_path / 'f').file) == ['spectrogram_1.png', 'spectrogram_2.png', 'spectrogram_10.png']
    with pytest.raises(FileNotFoundError, match='no .png files'):
        (tmp_path / 'empty').mkdir(); m.predict(tmp_path / 'empty')
    with pytest.raises(TypeError, match='cannot predict from a dict'):
        m.predict({'a': 1})
    with pytest.raises(ValueError, match='no label statistics'):
        ChirpLocalizer(LocalizerConfig('vit-micro')).predict(S)
    with pytest.raises(ValueError, match='label_stats are for'):
        LocalizerConfig('vit-micro', targets=['Chirp_Start_Time'], label_stats=STATS)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no config.json'):
        ChirpLocalizer.from_pretrained(tmp_path)
    m = ChirpLocalizer(LocalizerConfig('vit-micro', label_stats=STATS))
    m.save_pretrained(tmp_path / 'loc')
    with pytest.raises(ValueError, match='holds a chirploc localizer'):
        load_backbone(str(tmp_path / 'loc'))
    d = json.loads((tmp_path / 'loc' / 'config.json').read_text())
    d['localizer']['head_dims'] = [64]
    (tmp_path / 'loc' / 'config.json').write_text(json.dumps(d))
    with pytest.raises(ValueError, match='does not fit the architecture'):
        ChirpLocalizer.from_pretrained(tmp_path / 'loc')
