"""Why LoRA does not learn on the MAE backbone: linear probes of frozen backbones, and LoRA on a backbone known to hold chirp features.

Writes figures/probe/results.json (and probe.png) with every number the chapter nbs/03d_lora.ipynb shows. Stages are
cached under --work (default runs/probe), so a rerun only does what is missing. On 2 shared cores, one thread:

    export PYTHONPATH=$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    python tests/measure_probe.py                 # about 25 minutes, every stage
    python tests/measure_probe.py --only probe    # recompute the probes from the cached backbones

Stages: data (matrices from the generator, seed 7: a probe set of mixed chirps, linear-only training chirps for the
known-good backbone, exponential-only chirps for the LoRA check), hybrid (a chirploc-hybrid trained from scratch on the
linear chirps: the known-good backbone), mae (a vit-tiny MAE-pretrained on unlabeled matrices with the project's
pretrain_mae), denoise (a vit-tiny pretrained to output the generator's clean ridge image from the noisy matrix),
probe (ridge on frozen features, r per target), lora (LoRA r 8 on query and value + the paper's MLP head on [CLS], on
the exponential chirps the known-good backbone never saw; against a frozen backbone and a random one), hybrid-denoise
(the hybrid pretrained without labels to output the generator's clean ridge image from the noisy matrix: its probe, and
the same adaptation arms on it).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter

from chirploc.core import git_commit
from chirploc.denoise import tokens_to_image
from chirploc.generate import chirp_ridges, generate_batch, sample_chirps
from chirploc.inputs import normalize_matrix
from chirploc.labels import DEFAULT_TARGETS, LabelScaler, target_array
from chirploc.model import ChirpLocalizer, LocalizerConfig, apply_lora
from chirploc.probe import fig_probe, linear_probe, pooled, token_states
from chirploc.train import pearson_r

SEED = 7
TARGETS = tuple(DEFAULT_TARGETS)


def log(*a): print(time.strftime('%H:%M:%S'), *a, flush=True)


def make_set(indices, seed=SEED, clean=False):
    "Normalized matrices (N, 1, 128, 128) float16, labels, and (clean) the noise-free ridge image smoothed as the generator smooths."
    xs, labs, cl = [], [], []
    idx = np.asarray(indices)
    for i in range(0, len(idx), 500):
        S, p = generate_batch(idx[i:i + 500], seed)
        xs.append(np.stack([normalize_matrix(s) for s in S])[:, None].astype(np.float16)); labs.append(p)
        if clean: cl.append(gaussian_filter(chirp_ridges(p), sigma=(0, 1, 1)).astype(np.float16)[:, None])
    out = dict(x=torch.from_numpy(np.concatenate(xs)), labels=pd.concat(labs, ignore_index=True))
    if clean: out['clean'] = torch.from_numpy(np.concatenate(cl))
    return out


def of_type(kind, n, start, seed=SEED):
    "The first `n` sample indices from `start` on whose chirp is of type `kind` (labels only: cheap)."
    lab = sample_chirps(range(start, start + 4 * n), seed)
    return start + np.flatnonzero(lab.Chirp_Type.to_numpy() == kind)[:n]


def stage_data(work, a):
    f = work / 'data.pt'
    if f.exists():  # tensors and plain lists only: loaded with weights_only=True
        d = torch.load(f, weights_only=True)
        return {k: {**v, 'labels': pd.DataFrame(v['labels'])} for k, v in d.items()}
    log('data')
    d = dict(probe_train=make_set(range(0, a.n_probe)), probe_test=make_set(range(100_000, 100_000 + a.n_probe_test)),
             lin_train=make_set(of_type('linear', a.n_hybrid, 200_000)),
             exp_train=make_set(of_type('exponential', a.n_lora, 400_000)),
             exp_test=make_set(of_type('exponential', a.n_lora_test, 500_000)),
             pre=make_set(range(600_000, 600_000 + a.n_pre), clean=True))
    torch.save({k: {**v, 'labels': v['labels'].to_dict('list')} for k, v in d.items()}, f)
    return d


def y_of(s, scaler): return torch.from_numpy(scaler.transform(target_array(s['labels'], TARGETS)).astype(np.float32))


def run_epochs(model, params, x, y, epochs, lr, bs=32, schedule='onecycle', frozen=(), seed=0, weight_decay=0.01, warmup=0.2):
    "AdamW on `params`, MSE on standardized labels; `frozen` modules kept in eval mode (batch-norm statistics fixed)."
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    bs = min(bs, len(x))                                             # a toy set smaller than one batch
    steps = epochs * (len(x) // bs)
    sch = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup) if schedule == 'onecycle'
           else torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))
    g, losses = torch.Generator().manual_seed(seed), []
    for e in range(epochs):
        model.train()
        for m in frozen: m.eval()
        perm = torch.randperm(len(x), generator=g)
        tot = 0.0
        for k in range(len(x) // bs):
            j = perm[k * bs:(k + 1) * bs]
            loss = model.loss(model(x[j].float()), y[j])
            opt.zero_grad(); loss.backward(); opt.step(); sch.step()
            tot += loss.item()
        losses.append(tot / (len(x) // bs))
        log(f'  epoch {e + 1}: train loss {losses[-1]:.4f}')
    return losses


@torch.no_grad()
def test(model, x, y, bs=256):
    model.eval()
    p = torch.cat([model(x[i:i + bs].float()) for i in range(0, len(x), bs)])
    return dict(loss=float(torch.nn.functional.mse_loss(p, y)), r=pearson_r(p.numpy(), y.numpy()).tolist())


def hybrid_model(pooling='soft', scaler=None):
    torch.manual_seed(0)
    m = ChirpLocalizer(LocalizerConfig(backbone='chirploc-hybrid', input_format='matrix', pooling=pooling, use_lora=False))
    if scaler is not None: m.config.label_stats = scaler.to_dict()
    return m


def stage_hybrid(work, d, a):
    f = work / 'hybrid.pt'
    if f.exists(): return torch.load(f, weights_only=True)
    log(f'hybrid: from scratch on linear chirps, the smoke recipe (batch {a.hybrid_bs}, lr {a.hybrid_lr}, weight decay {a.hybrid_wd})')
    sc = LabelScaler.fit(d['lin_train']['labels'], TARGETS)
    m = hybrid_model('soft', sc)
    t0 = time.perf_counter()
    losses = run_epochs(m, m.parameters(), d['lin_train']['x'], y_of(d['lin_train'], sc), a.hybrid_epochs, a.hybrid_lr,
                        bs=a.hybrid_bs, weight_decay=a.hybrid_wd, warmup=a.hybrid_warmup)
    res = dict(train_losses=losses, seconds=time.perf_counter() - t0,
               test_linear_probe_set=test(m, d['probe_test']['x'], y_of(d['probe_test'], sc)))
    log('hybrid', res)
    torch.save(dict(state=m.state_dict(), scaler=sc.to_dict(), record=res), f)
    return torch.load(f, weights_only=True)


def stage_mae(work, d, a):
    from chirploc.pretrain import PretrainConfig, load_mae, pretrain_mae, read_history
    run = work / 'mae'
    if not (run / 'backbone').exists():
        log('mae')
        ds = torch.utils.data.TensorDataset(d['pre']['x'].float())
        pretrain_mae(ds, run, PretrainConfig(vit='vit-tiny', steps=a.mae_steps, batch_size=64, base_lr=1e-3,
                                             device='cpu', checkpoint_every=10_000, log_every=10, progress=False))
    h = read_history(run)
    return load_mae(run), dict(loss_first=float(h.loss.iloc[0]), loss_last=float(h.loss.iloc[-1]),
                              history=h[['step', 'loss']].values.tolist())


class Denoiser(torch.nn.Module):
    "A vit-tiny encoder and a linear map from each patch token to that patch of the clean ridge image; `global_`: also"
    "one from [CLS] to the whole image at 32 x 32 (as HybridDenoiser's)."
    def __init__(self, global_: bool = False):
        super().__init__()
        from chirploc.model import load_backbone
        torch.manual_seed(0)
        self.vit, _ = load_backbone('vit-tiny')
        self.p = self.vit.config.patch_size
        self.out = torch.nn.Linear(self.vit.config.hidden_size, self.p * self.p)
        self.glob = torch.nn.Linear(self.vit.config.hidden_size, (128 // GLOBAL_POOL) ** 2) if global_ else None
    def forward(self, x):
        h = self.vit(pixel_values=x).last_hidden_state
        img = tokens_to_image(self.out(h[:, 1:]), self.p)
        if self.glob is None: return img
        n = 128 // GLOBAL_POOL
        return img, self.glob(h[:, 0]).view(-1, 1, n, n)


GLOBAL_POOL = 4  # the [CLS] objective's image: the clean ridge image averaged over 4 x 4 pixels (32 x 32)


class HybridDenoiser(torch.nn.Module):
    "The hybrid's stem and ViT (a chirploc-hybrid localizer's) and a linear map from each of its 64 tokens to that 16x16"
    "patch of the clean ridge image; `global_`: also one from [CLS] to the whole ridge image at 32 x 32 (then forward"
    "returns both), so that the token the paper's head reads must hold the ridge's shape."
    def __init__(self, global_: bool = False):
        super().__init__()
        self.loc = hybrid_model('soft')
        w = self.loc.backbone.config.hidden_size
        self.out = torch.nn.Linear(w, 16 * 16)
        self.glob = torch.nn.Linear(w, (128 // GLOBAL_POOL) ** 2) if global_ else None
    def forward(self, x):
        from chirploc.model import add_coords
        b = self.loc.fit_input(x)
        if self.loc.config.coords: b = add_coords(b)
        h = self.loc.backbone(pixel_values=self.loc.stem(b)).last_hidden_state
        img = tokens_to_image(self.out(h[:, 1:]), 16)
        if self.glob is None: return img
        n = 128 // GLOBAL_POOL
        return img, self.glob(h[:, 0]).view(-1, 1, n, n)


def fit_denoiser(m, x, clean, steps, bs, lr, weight_decay, warmup, weighted=False) -> dict:
    "Train denoiser `m` from the noisy matrices x to their clean ridge images (each scaled to a peak of 1) by a squared"
    "error, one-cycle AdamW; its record, the loss logged as a share of an empty prediction's. `weighted`: each image's"
    "ridge pixels (above 0.1 of its peak) weigh as much as all the rest, so that an empty prediction is no easy minimum."
    def target(img):
        c = img / img.amax(dim=(1, 2, 3), keepdim=True)
        if not weighted: return c, torch.ones(1)
        on = (c > 0.1).float(); n_on = on.sum((1, 2, 3), keepdim=True).clamp(min=1); n = on[0].numel()
        return c, 0.5 * n * (on / n_on + (1 - on) / (n - n_on))          # mean 1 per image; half the weight on the ridge
    c, wt = target(clean.float())
    # a denoiser with a [CLS] read-out (HybridDenoiser(global_=True)) also fits the image averaged over GLOBAL_POOL pixels
    cg, wg = target(torch.nn.functional.avg_pool2d(clean.float(), GLOBAL_POOL)) if getattr(m, 'glob', None) is not None else (None, None)
    opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=weight_decay)
    bs = min(bs, len(x))
    sch = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup)
    base = float((wt * c ** 2).mean()) + (0 if cg is None else float((wg * cg ** 2).mean()))  # an empty prediction's loss
    W = (lambda w, j: w[j] if weighted else w)
    g, hist, step, t0 = torch.Generator().manual_seed(0), [], 0, time.perf_counter()
    while step < steps:
        perm = torch.randperm(len(x), generator=g)
        for k in range(len(x) // bs):
            if step >= steps: break
            j = perm[k * bs:(k + 1) * bs]
            out = m(x[j].float())
            if cg is None: loss = (W(wt, j) * (out - c[j]) ** 2).mean()
            else: loss = (W(wt, j) * (out[0] - c[j]) ** 2).mean() + (W(wg, j) * (out[1] - cg[j]) ** 2).mean()
            opt.zero_grad(); loss.backward(); opt.step(); sch.step(); step += 1
            if step % 20 == 0 or step == steps: hist.append([step, loss.item() / base]); log(f'  step {step}: loss / empty {hist[-1][1]:.3f}')
    return dict(steps=step, batch_size=bs, seconds=time.perf_counter() - t0, history=hist, loss_last=hist[-1][1])


def stage_denoise(work, d, a):
    f = work / 'denoise.pt'
    m = Denoiser()
    if f.exists():
        s = torch.load(f, weights_only=True); m.load_state_dict(s['state']); return m, s['record']
    log('denoise')
    rec = fit_denoiser(m, d['pre']['x'], d['pre']['clean'], a.denoise_steps, 64, 1e-3, 0.05, 0.1)
    torch.save(dict(state=m.state_dict(), record=rec), f)
    return m, rec


def stage_vit_denoise_global(work, a):
    "A plain vit-tiny (the paper's kind of backbone: no stem, no coordinates) pretrained as the best hybrid denoiser was"
    "(ridge-weighted, + [CLS] image; the same 20,000 matrices, steps and optimizer); its ViT written by save_pretrained"
    "to work/vit_denoise_global, the folder a localizer loads as a pretrained backbone (LoRA by default)."
    folder = work / 'vit_denoise_global'
    f = work / 'vit_denoise_global.pt'
    if f.exists() and folder.exists(): return folder, torch.load(f, weights_only=True)['record']
    m = Denoiser(global_=True)
    log(f'vit-denoise-global: {a.n_pre_hybrid} unlabeled matrices, {a.hybrid_denoise_steps} steps of {a.hybrid_bs}')
    pre = make_set(range(700_000, 700_000 + a.n_pre_hybrid), clean=True)
    rec = dict(weighted=True, global_image=True, n=len(pre['x']),
               **fit_denoiser(m, pre['x'], pre['clean'], a.hybrid_denoise_steps, a.hybrid_bs, a.hybrid_lr, a.hybrid_wd,
                              a.hybrid_warmup, True))
    m.vit.save_pretrained(folder)
    torch.save(dict(record=rec), f)
    return folder, rec


def vit_arm(d, folder, *, lora, pooling, lr, epochs, full=False, seed=0):
    "The package's own path: a localizer on the pretrained ViT folder (LoRA r 8 on query and value, or frozen, or every"
    "weight trained: `full`), the paper's MLP head on [CLS] (or the patches' mean), on the exponential chirps."
    sc = LabelScaler.fit(d['exp_train']['labels'], TARGETS)
    torch.manual_seed(seed)
    m = ChirpLocalizer(LocalizerConfig(backbone=str(folder), input_format='matrix', pooling=pooling, use_lora=lora))
    m.config.label_stats = sc.to_dict()
    if not lora and not full:
        for p in m.backbone.parameters(): p.requires_grad_(False)
    trainable = [p for p in m.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    losses = run_epochs(m, trainable, d['exp_train']['x'], y_of(d['exp_train'], sc), epochs, lr, seed=seed)
    res = test(m, d['exp_test']['x'], y_of(d['exp_test'], sc))
    return dict(trained_backbone=True, backbone='global denoised vit-tiny', lora=lora, full=full, pooling=pooling, lr=lr,
                epochs=epochs, trainable=sum(p.numel() for p in trainable), train_losses=losses,
                seconds=round(time.perf_counter() - t0, 1), **res)


VIT_ARMS = {  # on the plain vit-tiny pretrained like the global hybrid denoiser, 10 epochs, through ChirpLocalizer
    'global denoised vit-tiny + LoRA, cls, lr 1e-3, 10 epochs': dict(lora=True, pooling='cls', lr=1e-3),
    'global denoised vit-tiny frozen, cls head only, lr 1e-3, 10 epochs': dict(lora=False, pooling='cls', lr=1e-3),
    'global denoised vit-tiny, full fine-tuning, cls, lr 1e-3, 10 epochs': dict(lora=False, pooling='cls', lr=1e-3, full=True),
}


def stage_hybrid_denoise(work, a, weighted: bool = False, global_: bool = False):
    "The hybrid pretrained without labels: from the noisy matrix to the generator's clean ridge image (its own samples,"
    "mixed chirps, seed 7 from index 700,000), the smoke recipe's optimizer, plain or ridge-`weighted` (`fit_denoiser`),"
    "with the [CLS] read-out of the whole image or not (`global_`); returns the localizer (stem + ViT) and a record."
    f = work / ('hybrid_denoise' + ('_weighted' if weighted else '') + ('_global' if global_ else '') + '.pt')
    m = HybridDenoiser(global_)
    if f.exists():
        s = torch.load(f, weights_only=True); m.load_state_dict(s['state']); return m.loc, s['record']
    log(f'hybrid-denoise{" (ridge-weighted)" if weighted else ""}{" + [CLS] image" if global_ else ""}: {a.n_pre_hybrid} unlabeled matrices, {a.hybrid_denoise_steps} steps of {a.hybrid_bs}')
    pre = make_set(range(700_000, 700_000 + a.n_pre_hybrid), clean=True)
    rec = dict(weighted=weighted, global_image=global_, n=len(pre['x']),
               **fit_denoiser(m, pre['x'], pre['clean'], a.hybrid_denoise_steps, a.hybrid_bs, a.hybrid_lr, a.hybrid_wd,
                              a.hybrid_warmup, weighted))
    torch.save(dict(state=m.state_dict(), record=rec), f)
    return m.loc, rec


def stage_probe(d, backbones, a):
    ytr, yte = (target_array(d[k]['labels'], TARGETS) for k in ('probe_train', 'probe_test'))
    out = {}
    pix_tr, pix_te = (d[k]['x'].float().flatten(1).double().numpy() for k in ('probe_train', 'probe_test'))
    res = linear_probe(pix_tr, ytr, pix_te, yte)
    out['pixels'] = {'pixels': dict(r=res['r'].tolist(), alpha=res['alpha'], n_features=res['n_features'])}
    log('probe pixels', np.round(res['r'], 3))
    for name, m in backbones.items():
        htr, hte = token_states(m, d['probe_train']['x']), token_states(m, d['probe_test']['x'])
        out[name] = {}
        for pool in ('cls', 'mean', 'tokens'):
            res = linear_probe(pooled(htr, pool), ytr, pooled(hte, pool), yte)
            out[name][pool] = dict(r=res['r'].tolist(), alpha=res['alpha'], n_features=res['n_features'])
            log('probe', name, pool, np.round(res['r'], 3))
        sh = linear_probe(pooled(htr, 'tokens'), np.random.default_rng(0).permutation(ytr), pooled(hte, 'tokens'), yte)
        out[name]['tokens, shuffled targets'] = dict(r=sh['r'].tolist(), alpha=sh['alpha'], n_features=sh['n_features'])
    return out


def lora_arm(d, state, *, trained, lora, pooling, lr, epochs, seed=0, backbone='trained', full=False):
    "The paper's adaptation on the exponential chirps: stem frozen, backbone frozen (+ LoRA r 8 on query and value), a fresh head."
    sc = LabelScaler.fit(d['exp_train']['labels'], TARGETS)             # standardized on the new task's own labels
    m = hybrid_model(pooling, sc)
    if trained:
        own = {k: v for k, v in state.items() if k.startswith(('stem.', 'backbone.'))}
        missing = m.load_state_dict(own, strict=False)
        assert not [k for k in missing.missing_keys if k.startswith(('stem.', 'backbone.'))], missing
    if not full:                                                      # full: every weight trains (fine-tuning, or from scratch)
        for p in list(m.stem.parameters()) + list(m.backbone.parameters()): p.requires_grad_(False)
    if lora:
        m.config.use_lora = True
        m.backbone = apply_lora(m.backbone, m.config)                  # chirploc.model's own LoRA: peft, r 8, alpha 16
    trainable = [p for p in m.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in trainable)
    t0 = time.perf_counter()
    losses = run_epochs(m, trainable, d['exp_train']['x'], y_of(d['exp_train'], sc), epochs, lr,
                        frozen=() if full else (m.stem,), seed=seed)
    res = test(m, d['exp_test']['x'], y_of(d['exp_test'], sc))
    return dict(trained_backbone=trained, backbone=backbone if trained else 'random', lora=lora, full=full, pooling=pooling, lr=lr, epochs=epochs, trainable=n_train,
                train_losses=losses, seconds=round(time.perf_counter() - t0, 1), **res)


ARMS = {  # name: the backbone (trained on linear chirps, or random), LoRA or frozen, the head's pooling, peak learning rate
    'trained hybrid + LoRA, cls, lr 1e-4 (paper)': dict(trained=True, lora=True, pooling='cls', lr=1e-4),
    'trained hybrid + LoRA, cls, lr 1e-3': dict(trained=True, lora=True, pooling='cls', lr=1e-3),
    'trained hybrid frozen, cls head only, lr 1e-3': dict(trained=True, lora=False, pooling='cls', lr=1e-3),
    'trained hybrid + LoRA, soft head, lr 1e-3': dict(trained=True, lora=True, pooling='soft', lr=1e-3),
    'random + LoRA, cls, lr 1e-3': dict(trained=False, lora=True, pooling='cls', lr=1e-3),
    # what the soft head alone does on the frozen backbone, and LoRA with it at the paper's learning rate
    'trained hybrid frozen, soft head only, lr 1e-3': dict(trained=True, lora=False, pooling='soft', lr=1e-3),
    'trained hybrid + LoRA, soft head, lr 1e-4 (paper lr)': dict(trained=True, lora=True, pooling='soft', lr=1e-4),
}
DENOISED_ARMS = {  # the same adaptation on the hybrid pretrained without labels (stage hybrid-denoise)
    'denoised hybrid + LoRA, soft head, lr 1e-3': dict(trained=True, lora=True, pooling='soft', lr=1e-3, backbone='denoised'),
    'denoised hybrid frozen, soft head only, lr 1e-3': dict(trained=True, lora=False, pooling='soft', lr=1e-3, backbone='denoised'),
    'denoised hybrid + LoRA, cls, lr 1e-3': dict(trained=True, lora=True, pooling='cls', lr=1e-3, backbone='denoised'),
}
LONG_ARMS = {  # on the ridge-weighted denoiser, 10 epochs (940 steps): LoRA against the head alone, full fine-tuning of
    # the same backbone, and the same architecture trained from scratch on the same 3,000 chirps
    'ridge-weighted denoised hybrid + LoRA, soft head, lr 1e-3, 10 epochs': dict(trained=True, lora=True, pooling='soft', lr=1e-3),
    'ridge-weighted denoised hybrid frozen, soft head only, lr 1e-3, 10 epochs': dict(trained=True, lora=False, pooling='soft', lr=1e-3),
    'ridge-weighted denoised hybrid + LoRA, cls, lr 1e-3, 10 epochs': dict(trained=True, lora=True, pooling='cls', lr=1e-3),
    'ridge-weighted denoised hybrid, full fine-tuning, soft head, lr 1e-3, 10 epochs': dict(trained=True, lora=False, pooling='soft', lr=1e-3, full=True),
    'hybrid from scratch, soft head, lr 1e-3, 10 epochs': dict(trained=False, lora=False, pooling='soft', lr=1e-3, full=True),
}
GLOBAL_ARMS = {  # on the ridge-weighted denoiser whose [CLS] also draws the whole ridge image, 10 epochs
    'global denoised hybrid + LoRA, cls, lr 1e-3, 10 epochs': dict(trained=True, lora=True, pooling='cls', lr=1e-3),
    'global denoised hybrid frozen, cls head only, lr 1e-3, 10 epochs': dict(trained=True, lora=False, pooling='cls', lr=1e-3),
    'global denoised hybrid + LoRA, soft head, lr 1e-3, 10 epochs': dict(trained=True, lora=True, pooling='soft', lr=1e-3),
    'global denoised hybrid frozen, soft head only, lr 1e-3, 10 epochs': dict(trained=True, lora=False, pooling='soft', lr=1e-3),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work', default='runs/probe'); p.add_argument('--out', default='figures/probe')
    p.add_argument('--only', nargs='*', default=None, help='stages to (re)run among probe, lora, hybrid-denoise, hybrid-denoise-weighted, hybrid-denoise-global, vit-denoise-global (the others are cached)')
    p.add_argument('--n_probe', type=int, default=2000); p.add_argument('--n_probe_test', type=int, default=1000)
    p.add_argument('--n_hybrid', type=int, default=30000); p.add_argument('--hybrid_epochs', type=int, default=3)
    # the known-good backbone is trained with the smoke preset's recipe (07_reproduce: r 0.97 from scratch); the first
    # attempt (10,000 chirps, 2 epochs, batch 32, lr 2e-3) stayed on the plateau (test loss 1.005)
    p.add_argument('--hybrid_bs', type=int, default=128); p.add_argument('--hybrid_lr', type=float, default=1e-3)
    p.add_argument('--hybrid_wd', type=float, default=0.05); p.add_argument('--hybrid_warmup', type=float, default=0.15)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--long_epochs', type=int, default=10, help='epochs of the longer arms on the ridge-weighted denoiser (0: none)')
    p.add_argument('--n_pre_hybrid', type=int, default=20000); p.add_argument('--hybrid_denoise_steps', type=int, default=700)
    p.add_argument('--n_lora', type=int, default=3000); p.add_argument('--n_lora_test', type=int, default=1000)
    p.add_argument('--lora_epochs', type=int, default=2)
    p.add_argument('--n_pre', type=int, default=8000); p.add_argument('--mae_steps', type=int, default=400)
    p.add_argument('--denoise_steps', type=int, default=300)
    p.add_argument('--arms', nargs='*', default=list(ARMS))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    work, out = Path(a.work), Path(a.out); work.mkdir(parents=True, exist_ok=True); out.mkdir(parents=True, exist_ok=True)
    rf = out / 'results.json'
    results = json.loads(rf.read_text()) if rf.exists() else {}
    results['settings'] = {k: v for k, v in vars(a).items() if k not in ('only', 'work', 'out')}
    # provenance, for figures/README.md: the command without --only (a rerun of it redoes only what is not cached)
    args = list(sys.argv[1:] if argv is None else argv)
    if '--only' in args:
        i = args.index('--only'); j = i + 1
        while j < len(args) and not args[j].startswith('--'): j += 1
        args = args[:i] + args[j:]
    results.update(command=shlex.join(['python', 'tests/measure_probe.py', *args]), git_commit=git_commit('.'),
                   created=time.strftime('%Y-%m-%dT%H:%M:%S'),
                   recipe=f'chirploc-hybrid from scratch on {a.n_hybrid} linear chirps, {a.hybrid_epochs} epochs; '
                          f'adaptation arms {a.lora_epochs} epochs on {a.n_lora} exponential chirps')
    d = stage_data(work, a)
    save = lambda: rf.write_text(json.dumps(results, indent=1))
    if a.only is None or 'probe' in a.only or 'lora' in a.only:      # the known-good backbone: only these stages use it
        hyb = stage_hybrid(work, d, a)
        results['hybrid'] = hyb['record']
        save()
    if a.only is None or 'probe' in a.only:
        mae, results['mae'] = stage_mae(work, d, a); save()
        den, results['denoise'] = stage_denoise(work, d, a); save()
        from chirploc.model import load_backbone
        torch.manual_seed(0); rnd, _ = load_backbone('vit-tiny')
        trained = hybrid_model('soft'); trained.load_state_dict(hyb['state'])
        bbs = {'vit-tiny, random': rnd, 'vit-tiny, MAE': mae, 'vit-tiny, denoising (clean ridge)': den.vit,
               'hybrid, random': hybrid_model('soft'), 'hybrid, trained on linear chirps': trained}
        results['probe'] = stage_probe(d, bbs, a); save()
    if a.only is None or 'lora' in a.only:
        results.setdefault('lora', {})
        for name in a.arms:
            log('lora', name)
            results['lora'][name] = lora_arm(d, hyb['state'], epochs=a.lora_epochs, **ARMS[name]); save()
            log('  ', results['lora'][name]['loss'], np.round(results['lora'][name]['r'], 3))
    for stage, weighted, global_ in (('hybrid-denoise', False, False), ('hybrid-denoise-weighted', True, False),
                                     ('hybrid-denoise-global', True, True)):
        if not (a.only is None or stage in a.only): continue
        key, tag = {'hybrid-denoise': ('hybrid_denoise', ''), 'hybrid-denoise-weighted': ('hybrid_denoise_weighted', ', ridge-weighted'),
                    'hybrid-denoise-global': ('hybrid_denoise_global', ', ridge-weighted, + [CLS] image')}[stage]
        den_h, results[key] = stage_hybrid_denoise(work, a, weighted, global_); save()
        name = f'hybrid, denoising (clean ridge{tag})'
        results.setdefault('probe', {})[name] = stage_probe(d, {name: den_h}, a)[name]; save()
        log('probe', name, {k: np.round(v['r'], 3) for k, v in results['probe'][name].items()})
        if global_:
            for arm, kw in GLOBAL_ARMS.items():
                arm = arm.replace('10 epochs', f'{a.long_epochs} epochs')
                log('lora', arm)
                results.setdefault('lora', {})[arm] = lora_arm(d, den_h.state_dict(), epochs=a.long_epochs, backbone='global denoised', **kw)
                save(); log('  ', results['lora'][arm]['loss'], np.round(results['lora'][arm]['r'], 3))
            continue
        for arm, kw in DENOISED_ARMS.items():
            arm = arm.replace('denoised hybrid', 'ridge-weighted denoised hybrid') if weighted else arm
            log('lora', arm)
            results.setdefault('lora', {})[arm] = lora_arm(d, den_h.state_dict(), epochs=a.lora_epochs, **kw); save()
            log('  ', results['lora'][arm]['loss'], np.round(results['lora'][arm]['r'], 3))
        if weighted and a.long_epochs:
            for arm, kw in LONG_ARMS.items():
                arm = arm.replace('10 epochs', f'{a.long_epochs} epochs')
                log('lora', arm)
                results['lora'][arm] = lora_arm(d, den_h.state_dict(), epochs=a.long_epochs, backbone='ridge-weighted denoised', **kw)
                save(); log('  ', results['lora'][arm]['loss'], np.round(results['lora'][arm]['r'], 3))
    if a.only is None or 'vit-denoise-global' in a.only:
        folder, results['vit_denoise_global'] = stage_vit_denoise_global(work, a); save()
        name = 'vit-tiny, denoising (clean ridge, ridge-weighted, + [CLS] image)'
        from chirploc.backbone import load_backbone
        results.setdefault('probe', {})[name] = stage_probe(d, {name: load_backbone(str(folder))[0]}, a)[name]; save()
        log('probe', name, {k: np.round(v['r'], 3) for k, v in results['probe'][name].items()})
        for arm, kw in VIT_ARMS.items():
            arm = arm.replace('10 epochs', f'{a.long_epochs} epochs')
            log('lora', arm)
            results.setdefault('lora', {})[arm] = vit_arm(d, folder, epochs=a.long_epochs, **kw); save()
            log('  ', results['lora'][arm]['loss'], np.round(results['lora'][arm]['r'], 3))
    results['settings']['arms'] = list(results.get('lora', {}))      # every arm the record holds, from whichever run
    save()
    if 'probe' in results: fig_probe(results).savefig(out / 'probe.png', dpi=120)


if __name__ == '__main__':
    main()
