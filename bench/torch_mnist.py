#!/usr/bin/env python3
"""PyTorch reference for bench/mnist-step.ts (CPU) and bench/gpu.ts (--device cuda): training steps/sec of the
784-500-10 ReLU MLP on MNIST.

Same model and step as towerline's Tower.trainStep: Linear 784->500, ReLU, Linear 500->10, mean softmax
cross-entropy, L2 1e-4 on the two weight matrices (as SGD weight_decay, which adds 1e-4*w to their gradients, the
same as our l2_backward), SGD momentum 0.9 (PyTorch's v = m*v + g; w -= lr*v is TF's MomentumOptimizer).
The training set is decoded once into an in-memory float32 tensor scaled to [0, 1]; each step gathers its batch
by index (x = X[idx]), as our gather_rows_u8 does. On --device cuda the data set, the indices and the step live on
GPU 0, FP32 (TF32 off), and the loss is read back every step (.item()), as our step completes before the next.

Usage: torch_mnist.py --data DIR [--batch 128] [--steps 300] [--warmup 50] [--reps 3] [--threads 1,2]
                      [--device cpu|cuda]   (--threads 0: leave PyTorch's thread count alone)
Prints one JSON line: {"ok": true, "best": {...}, "configs": [...]} (examples/sec per thread count, best rep).
"""
import argparse
import json
import os
import sys
import time

from torch_device import setup_device  # beside this script
from torch_idx import read_idx  # beside this script


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--warmup', type=int, default=50)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--threads', default='1,2')
    ap.add_argument('--lr', type=float, default=0.01)
    ap.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    args = ap.parse_args()

    try:
        import numpy as np
        import torch
    except Exception as e:  # reported to the bench, which then skips the reference
        print(json.dumps({'ok': False, 'error': f'cannot import torch/numpy: {e}'}))
        return 0
    dev, sync, error = setup_device(torch, args.device)
    if error:
        print(json.dumps({'ok': False, 'error': error}))
        return 0
    cuda = dev.type == 'cuda'

    images = read_idx(os.path.join(args.data, 'train-images-idx3-ubyte'))
    labels = read_idx(os.path.join(args.data, 'train-labels-idx1-ubyte'))
    count = images.shape[0]
    X = torch.from_numpy(images.reshape(count, -1).astype(np.float32) / np.float32(255.0)).contiguous().to(dev)
    Y = torch.from_numpy(labels.astype(np.int64)).to(dev)

    B = args.batch
    g = torch.Generator(device=dev).manual_seed(1234)
    configs = []
    for nt in [int(t) for t in args.threads.split(',') if t]:
        if nt > 0:
            torch.set_num_threads(nt)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 10)).to(dev)
        decay = [p for n, p in model.named_parameters() if n.endswith('weight')]
        no_decay = [p for n, p in model.named_parameters() if n.endswith('bias')]
        opt = torch.optim.SGD(
            [{'params': decay, 'weight_decay': 1e-4}, {'params': no_decay, 'weight_decay': 0.0}],
            lr=args.lr, momentum=0.9,
        )
        loss_fn = torch.nn.CrossEntropyLoss()
        total = args.warmup + args.reps * args.steps
        idx_all = torch.randint(0, count, (total, B), generator=g, device=dev)

        def step(i):
            idx = idx_all[i]
            x = X[idx]
            y = Y[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss.item() if cuda else loss

        for i in range(args.warmup):
            step(i)
        sync()
        rates = []
        k = args.warmup
        last = None
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                last = step(k)
                k += 1
            sync()
            dt = time.perf_counter() - t0
            rates.append(args.steps * B / dt)
        configs.append({'threads': nt, 'examplesPerSec': max(rates), 'reps': rates, 'finalLoss': float(last)})

    best = max(configs, key=lambda c: c['examplesPerSec'])
    print(json.dumps({
        'ok': True,
        'torch': torch.__version__,
        'batch': B,
        'steps': args.steps,
        'best': best,
        'configs': configs,
        'device': str(dev),
        'gpu': torch.cuda.get_device_name(0) if cuda else None,
        'openblasEnv': {k: v for k, v in os.environ.items() if k.startswith('OPENBLAS')},
    }))
    return 0


if __name__ == '__main__':
    sys.exit(main())
