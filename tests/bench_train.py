"""Benchmark: training and inference throughput (images/s) of a chirp localizer, or of an MAE pretraining step.

    PYTHONPATH=. .venv/bin/python tests/bench_train.py --backbone vit-micro vit-tiny chirploc-hybrid --out bench.json
    PYTHONPATH=. .venv/bin/python tests/bench_train.py --backbone vit-b16-scratch --lora on --batch-size 256 \\
        --precision bf16 --device cuda --out h100.json               # the paper's model: frozen ViT-B/16 + LoRA
    PYTHONPATH=. .venv/bin/python tests/bench_train.py --backbone mae:vit-b16 --batch-size 256 --precision bf16 \\
        --device cuda --out h100.json --append                       # one MAE pretraining step (chirploc.pretrain)

What it measures is the model, not the data: each batch is a synthetic uint8 tensor already on the device, turned into
floats in [0, 1] there (as a decoded uint8 cache is), inside the timed step. A training step is forward, loss
(MSE on random standardized targets; MAE's own masked-patch loss for `mae:`), backward and an AdamW step over the
trainable weights; an inference step is a forward pass under `torch.inference_mode`. Every step is timed alone between
two device synchronizations; the warm-up steps (and `torch.compile`'s compilation) are left out. Reported: the mean
images/s over the timed steps with its standard deviation, min, median and max, the overall rate (all timed images
over all timed seconds: what a long run sees), and the peak CUDA memory. On a shared CPU the spread is large: the load
average at the start is recorded.

Backbones: a key of chirploc.model.SCRATCH_CONFIGS (e.g. vit-micro, vit-tiny, chirploc-hybrid, vit-b16-scratch), a local
ViT folder (e.g. one written by chirploc.pretrain), or `mae:SHAPE` with SHAPE a key of chirploc.pretrain.MAE_SHAPES.
On CUDA: TF32 matmuls are allowed, attention is SDPA (`attn_implementation='sdpa'`), bf16 is autocast.
Not a test: nothing here asserts a time.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F


def device_name(device: torch.device) -> str:
    if device.type == 'cuda': return torch.cuda.get_device_name(device)
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def find_vit(model):
    "The transformers model inside a localizer (through PEFT's wrappers), or None for the CNN baseline."
    from transformers import PreTrainedModel
    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)


def use_sdpa(model) -> str | None:
    "Switch the transformers model in `model` to SDPA attention where it supports it; the implementation in use."
    vit = find_vit(model)
    if vit is None: return None
    if getattr(vit.config, '_attn_implementation', None) != 'sdpa' and hasattr(vit, 'set_attn_implementation'):
        try: vit.set_attn_implementation('sdpa')
        except (ValueError, ImportError) as e: print(f"sdpa not available: {e}", file=sys.stderr)
    return getattr(vit.config, '_attn_implementation', None)


def build(backbone: str, lora: str):
    "(model, input shape (C, H, W), description, forward-and-loss function) for a backbone name."
    if backbone.startswith('mae:'):
        from transformers import ViTMAEForPreTraining
        from chirploc.pretrain import PretrainConfig, mae_config
        mcfg = mae_config(PretrainConfig(vit=backbone[4:]))
        model = ViTMAEForPreTraining(mcfg)
        n_patches = (mcfg.image_size // mcfg.patch_size) ** 2
        def step_loss(m, x):
            noise = torch.rand(len(x), n_patches, device=x.device)
            return m(pixel_values=x, noise=noise).loss
        return model, (mcfg.num_channels, mcfg.image_size, mcfg.image_size), dict(kind='mae', mask_ratio=mcfg.mask_ratio), step_loss
    from chirploc.model import ChirpLocalizer, LocalizerConfig
    model = ChirpLocalizer(LocalizerConfig(backbone, use_lora=None if lora == 'auto' else lora == 'on'))
    c = model.config
    def step_loss(m, x):
        pred = m(x)
        return F.mse_loss(pred.float(), torch.zeros_like(pred, dtype=torch.float32).normal_())
    return model, (c.num_channels, c.image_size, c.image_size), dict(
        kind='localizer', pretrained=c.pretrained, lora=c.use_lora, pooling=c.pooling, stem=list(c.stem)), step_loss


def timed(fn, steps: int, warmup: int, device) -> tuple[list, float]:
    "Per-step seconds of `steps` calls after `warmup` untimed ones (and the warm-up's total seconds)."
    sync(device); t0 = time.perf_counter()
    for _ in range(warmup): fn()
    sync(device); warm = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        sync(device); t = time.perf_counter()
        fn()
        sync(device); times.append(time.perf_counter() - t)
    return times, warm


def summary(times: list, batch: int) -> dict:
    rates = [batch / t for t in times]
    return dict(img_per_s_mean=statistics.fmean(rates), img_per_s_overall=batch * len(times) / sum(times),
                img_per_s_std=statistics.stdev(rates) if len(rates) > 1 else 0.0,
                img_per_s_min=min(rates), img_per_s_median=statistics.median(rates), img_per_s_max=max(rates),
                step_ms_mean=1000 * statistics.fmean(times), timed_steps=len(times))


def bench_one(backbone: str, mode: str, args, device) -> dict:
    torch.manual_seed(0)
    model, shape, info, step_loss = build(backbone, args.lora)
    attn = use_sdpa(model)
    model.to(device)
    if args.input_size: shape = (args.channels or shape[0], args.input_size, args.input_size)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    B = args.batch_size
    g = torch.Generator(device=device).manual_seed(0)
    raw = [torch.randint(0, 256, (B, *shape), dtype=torch.uint8, device=device, generator=g) for _ in range(2)]
    it = iter(range(10 ** 12))
    def batch(): return raw[next(it) % 2].float().div_(255)  # normalized on the device, inside the timed step
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.precision == 'bf16' else nullcontext
    fwd = torch.compile(model) if args.compile else model
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
    if mode == 'train':
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=device.type == 'cuda')
        def step():
            with ctx(): loss = step_loss(fwd, batch())
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    else:
        if info['kind'] == 'mae': raise SystemExit("mae: backbones have a training step only (--mode train)")
        model.eval()
        def step():
            with torch.inference_mode(), ctx(): fwd(batch())
    times, warm = timed(step, args.steps, args.warmup, device)
    res = dict(backbone=backbone, mode=mode, batch_size=B, precision=args.precision if args.precision == 'bf16' else 'fp32',
               input=list(shape), input_dtype='uint8 on device, /255 in the step', compile=args.compile,
               attn_implementation=attn, parameters=params, trainable=trainable, **info,
               warmup_steps=args.warmup, warmup_s=round(warm, 3), **summary(times, B))
    if device.type == 'cuda': res['peak_memory_gib'] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--backbone', nargs='+', default=['vit-micro'], help="SCRATCH_CONFIGS key, ViT folder, or mae:SHAPE")
    p.add_argument('--mode', nargs='+', default=['train', 'infer'], choices=['train', 'infer'])
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--precision', default='fp32', choices=['fp32', 'bf16'], help="bf16: autocast")
    p.add_argument('--device', default='auto', help="auto (cuda if present), cpu, cuda, cuda:1")
    p.add_argument('--input-size', type=int, default=None, help="square input side (default: the model's)")
    p.add_argument('--channels', type=int, default=None, help="input channels with --input-size (default: the model's)")
    p.add_argument('--lora', default='auto', choices=['auto', 'on', 'off'], help="auto: on for pretrained backbones")
    p.add_argument('--compile', action='store_true', help="torch.compile the model (compilation is in the warm-up)")
    p.add_argument('--steps', type=int, default=10, help="timed steps")
    p.add_argument('--warmup', type=int, default=3, help="untimed steps first")
    p.add_argument('--threads', type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument('--out', required=True, help="JSON file to write")
    p.add_argument('--append', action='store_true', help="add these runs to an existing --out file")
    args = p.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    device = torch.device('cuda' if args.device == 'auto' and torch.cuda.is_available() else
                          'cpu' if args.device == 'auto' else args.device)
    if device.type == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    import peft, transformers
    env = dict(device=str(device), device_name=device_name(device), torch=torch.__version__,
               transformers=transformers.__version__, peft=peft.__version__, python=platform.python_version(),
               cpu_threads=torch.get_num_threads(), cpu_count=os.cpu_count(), platform=platform.platform(),
               cuda=torch.version.cuda if device.type == 'cuda' else None,
               tf32=device.type == 'cuda', load_average=list(os.getloadavg()) if hasattr(os, 'getloadavg') else None)
    command = 'tests/bench_train.py ' + ' '.join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    doc = dict(benchmark='chirploc training/inference throughput (tests/bench_train.py)', runs=[], commands=[])
    if args.append and out.exists(): doc = json.loads(out.read_text())
    doc.setdefault('envs', []).append(dict(env, date=datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), command=command))
    doc['commands'].append(command)
    for backbone in args.backbone:
        for mode in args.mode:
            if backbone.startswith('mae:') and mode == 'infer': continue
            r = bench_one(backbone, mode, args, device)
            r['env'] = len(doc['envs']) - 1
            doc['runs'].append(r)
            print(f"{backbone:>18} {mode:>5} b{r['batch_size']} {r['precision']}: {r['img_per_s_mean']:9.1f} img/s "
                  f"(sd {r['img_per_s_std']:.1f}, {r['timed_steps']} steps)", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    return doc


if __name__ == '__main__':
    main()
