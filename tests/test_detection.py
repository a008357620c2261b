"""Detection: datasets with chirp-free samples written by worker processes and resumed, the masked loss's gradients, and
'no chirp' from the command line. The rest lives in the chapters (nbdev_test): the paper's data unchanged by p_empty = 0
in 01_generate, the Chirp_Present column's errors in 02a_labels, ROC AUC and the detection report in 05_evaluate."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from chirploc.labels import read_labels
from chirploc.generate import LABEL_COLUMNS, PRESENCE, GeneratorConfig, chirp_ridges, generate_batch, sample_chirps, write_dataset
from chirploc.model import ChirpLocalizer, LocalizerConfig


def test_mixed_dataset_is_deterministic_and_labelled(tmp_path):
    cfg = GeneratorConfig(p_empty=0.25)
    a = write_dataset(tmp_path / 'a', 90, seed=3, kind='array', cfg=cfg, shard_size=40, workers=1, progress=False)
    b = write_dataset(tmp_path / 'b', 90, seed=3, kind='array', cfg=cfg, shard_size=40, workers=2, progress=False)
    for f in ('labels.csv', 'spectrograms_00000.npy', 'spectrograms_00002.npy'):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    head, *rows = (a / 'labels.csv').read_text().splitlines()
    assert head == ','.join(LABEL_COLUMNS + [PRESENCE])
    lab = read_labels(a)
    absent = lab[PRESENCE] == 0
    assert 5 < absent.sum() < 40                      # about a quarter of 90
    assert all(r.startswith(',,,,,0') for r, e in zip(rows, absent) if e)
    # the shard holds the generator's matrices; a chirp-free one has no ridge under its noise, every other one has
    S = np.load(a / 'spectrograms_00000.npy')
    assert np.array_equal(S, generate_batch(range(40), seed=3, cfg=cfg)[0])
    ridges, gone = chirp_ridges(sample_chirps(range(40), seed=3, cfg=cfg), cfg), absent[:40].to_numpy()
    assert (ridges[gone] == 0).all() and (ridges[~gone].max(axis=(1, 2)) > 0.5).all()


def test_mixed_dataset_resumes_and_refuses_another_share(tmp_path):
    cfg = GeneratorConfig(p_empty=0.25)
    out = write_dataset(tmp_path / 'm', 60, seed=1, kind='array', cfg=cfg, shard_size=20, workers=1, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / 'spectrograms_00001.npy').unlink()
    (out / 'labels.csv').write_text((out / 'labels.csv').read_text()[:-7])  # a torn last row
    write_dataset(out, 60, seed=1, kind='array', cfg=cfg, shard_size=20, workers=1, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(ValueError, match='refusing to mix'):
        write_dataset(out, 60, seed=1, kind='array', cfg=GeneratorConfig(p_empty=0.5), shard_size=20, progress=False)


def _detector(tmp_path, p_chirp_logit: float):
    targets = ['Chirp_Start_Time', 'Chirp_Start_Freq', 'Chirp_End_Freq', PRESENCE]
    m = ChirpLocalizer(LocalizerConfig('vit-micro', targets=targets, input_format='matrix', pooling='soft',
                                       label_stats=dict(targets=targets, mean=[22.5, 50, 50, 0.9], std=[13, 29, 29, 0.3])))
    with torch.no_grad():  # a fixed P(chirp) on every input
        m.class_head[-1].weight.zero_(); m.class_head[-1].bias.fill_(p_chirp_logit)
    return m.save_pretrained(tmp_path / f'det{p_chirp_logit:+g}')


def test_masked_loss_gives_chirp_free_samples_no_localization_gradient(tmp_path):
    m = ChirpLocalizer.from_pretrained(_detector(tmp_path, 0.0))
    m.train()
    x = torch.randn(2, 1, 128, 128)
    nan = float('nan')
    y = torch.tensor([[0.1, 0.2, 0.3, 1 / 3], [nan, nan, nan, -3.0]])
    pred = m(x)
    pred.retain_grad()
    m.loss(pred, y).backward()
    assert torch.isfinite(pred.grad).all()
    assert (pred.grad[1, :3] == 0).all() and (pred.grad[0, :3] != 0).all()  # the chirp-free row: presence only
    assert pred.grad[1, 3] != 0


@pytest.mark.parametrize('logit, present', [(-30.0, False), (30.0, True)])
def test_predict_cli_says_no_chirp(tmp_path, logit, present):
    model = _detector(tmp_path, logit)
    S, _ = generate_batch(range(2), seed=0, cfg=GeneratorConfig(p_empty=0.5))
    np.save(tmp_path / 'x.npy', S)
    out = subprocess.run([sys.executable, '-m', 'chirploc.cli', 'predict', str(tmp_path / 'x.npy'), '--model', str(model),
                          '--json'], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    assert [r[PRESENCE] for r in rows] == [present] * 2
    for r in rows:
        assert r[f'{PRESENCE}_prob'] == pytest.approx(float(present), abs=1e-6)
        if present: assert isinstance(r['Chirp_Start_Time'], float) and r['description'].endswith('(a chirp with probability 1.00).')
        else: assert r['Chirp_Start_Time'] is None and r['description'] == 'No chirp (probability of a chirp 0.00).'
