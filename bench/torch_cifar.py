#!/usr/bin/env python3
"""PyTorch reference for bench/cifar.ts (the CPU) and bench/gpu.ts (--device cuda): the seed models' training steps.

cifar: TF's cifar10 tutorial CNN, the same as towerline's cifar10Cnn(): conv 5x5x64 ReLU -> maxpool 3x3/2 (SAME:
pad 1 for 24 -> 12) -> LRN -> conv 5x5x64 ReLU -> LRN -> maxpool -> fc 384 -> fc 192 -> fc 10, softmax cross-entropy,
L2 0.004 on the two hidden fc weights (weight_decay), plain SGD. TF's LRN(depth_radius 4, bias 1, alpha 0.001/9,
beta 0.75) is torch's LocalResponseNorm(size 9, alpha 0.001 (torch divides by size), beta 0.75, k 1). Each step
includes the input pipeline, as ours does: gather the batch from a uint8 (N,3,32,32) tensor, random 24x24 crops and
flips per example (vectorised indexing), per-image standardisation. Layout NCHW (PyTorch's native one).

blocks: seed 001's network, six Linear(1000,1000)+sigmoid, loss = mean of the output, Adam(1e-4, betas (0.5, 0.9)),
clip_grad_norm_(5.0), inputs 64x1000 gathered from a random uniform [0, 1] set.

On --device cuda the data set and every step (pipeline included) live on GPU 0, FP32 (TF32 off, cuDNN autotuned),
and the loss is read back every step (.item()), as towerline's runtime reports each step's loss.

Usage: torch_cifar.py --model cifar|blocks [--batch 128] [--steps 20] [--warmup 5] [--reps 3] [--threads 1,2]
                      [--device cpu|cuda]   (--threads 0: leave PyTorch's thread count alone)
Prints one JSON line: {"ok": true, "torch": ..., "configs": [{"threads", "reps": [examples/sec...], "stepMs": [...]}]}.
"""
import argparse
import json
import sys
import time

from torch_device import setup_device  # beside this script


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', choices=['cifar', 'blocks'], required=True)
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--threads', default='1,2')
    ap.add_argument('--count', type=int, default=2560)
    ap.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    args = ap.parse_args()

    try:
        import torch
        import torch.nn as nn
    except Exception as e:
        print(json.dumps({'ok': False, 'error': f'cannot import torch: {e}'}))
        return 0
    dev, sync, error = setup_device(torch, args.device)
    if error:
        print(json.dumps({'ok': False, 'error': error}))
        return 0
    cuda = dev.type == 'cuda'
    if cuda:
        torch.backends.cudnn.benchmark = True

    B = args.batch
    g = torch.Generator(device=dev).manual_seed(1234)
    configs = []
    for nt in [int(t) for t in args.threads.split(',') if t]:
        if nt > 0:
            torch.set_num_threads(nt)
        torch.manual_seed(0)
        if args.model == 'cifar':
            X = torch.randint(0, 256, (args.count, 3, 32, 32), dtype=torch.uint8, generator=g, device=dev)
            Y = torch.randint(0, 10, (args.count,), generator=g, device=dev)
            lrn = lambda: nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)
            features = nn.Sequential(
                nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1), lrn(),
                nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), lrn(), nn.MaxPool2d(3, 2, padding=1), nn.Flatten())
            local3, local4, logits = nn.Linear(2304, 384), nn.Linear(384, 192), nn.Linear(192, 10)
            model = nn.Sequential(features, local3, nn.ReLU(), local4, nn.ReLU(), logits).to(dev)
            decay = [local3.weight, local4.weight]
            rest = [p for p in model.parameters() if all(p is not d for d in decay)]
            opt = torch.optim.SGD([{'params': decay, 'weight_decay': 0.004}, {'params': rest, 'weight_decay': 0.0}], lr=0.1)
            loss_fn = nn.CrossEntropyLoss()
            ar = torch.arange(24, device=dev)
            bidx = torch.arange(B, device=dev)[:, None, None, None]
            cidx = torch.arange(3, device=dev)[None, :, None, None]
            N = 24 * 24 * 3

            def batch(idx):
                dy = torch.randint(0, 9, (B,), generator=g, device=dev)
                dx = torch.randint(0, 9, (B,), generator=g, device=dev)
                flip = torch.randint(0, 2, (B,), generator=g, device=dev).bool()
                cols = torch.where(flip[:, None], dx[:, None] + 23 - ar[None, :], dx[:, None] + ar[None, :])
                rows = dy[:, None] + ar[None, :]
                xs = X[idx]
                x = xs[bidx, cidx, rows[:, None, :, None], cols[:, None, None, :]].float()
                mean = x.mean(dim=(1, 2, 3), keepdim=True)
                std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(1.0 / N ** 0.5)
                return (x - mean) / std, Y[idx]

            def step(i):
                idx = torch.randint(0, args.count, (B,), generator=g, device=dev)
                x, y = batch(idx)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()
                return loss
        else:
            X = torch.rand((args.count, 1000), generator=g, device=dev)
            layers = []
            for _ in range(6):
                layers += [nn.Linear(1000, 1000), nn.Sigmoid()]
            model = nn.Sequential(*layers).to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.9))

            def step(i):
                idx = torch.randint(0, args.count, (B,), generator=g, device=dev)
                opt.zero_grad(set_to_none=True)
                loss = model(X[idx]).mean()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                return loss

        for i in range(args.warmup):
            step(i)
        sync()
        rates, ms = [], []
        last = None
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for i in range(args.steps):
                last = step(i)
                if cuda:
                    last = last.item()
            sync()
            dt = time.perf_counter() - t0
            rates.append(args.steps * B / dt)
            ms.append(dt / args.steps * 1000)
        configs.append({'threads': nt, 'reps': rates, 'stepMs': ms, 'finalLoss': float(last)})

    out = {'ok': True, 'torch': torch.__version__, 'model': args.model, 'batch': B, 'device': str(dev), 'configs': configs}
    if cuda:
        out['gpu'] = torch.cuda.get_device_name(0)
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
