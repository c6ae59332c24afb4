#!/usr/bin/env python3
"""PyTorch DDP reference for bench/group.ts: training examples/sec of the 784-500-10 ReLU MLP on MNIST at global
batch B over N processes (DistributedDataParallel over gloo, one CPU replica per process), the same step as
bench/torch_mnist.py (Linear 784->500, ReLU, Linear 500->10, mean softmax cross-entropy, L2 1e-4 on the weights as
SGD weight_decay, momentum 0.9). Each process takes its B/N rows of every global batch (the same random indices in
every process, as towerline's processes compute the same plan from the seed). Each process gets cores/N threads
(towerline's CPU towers share the cores the same way).

Usage: torch_ddp.py --data DIR [--procs 2] [--batch 128] [--steps 200] [--warmup 30] [--reps 3]
Prints one JSON line from rank 0: {"ok": true, "torch": ..., "reps": [examples/sec, ...], "threads": t}.
"""
import argparse
import json
import os
import sys
import tempfile
import time

from torch_idx import read_idx  # beside this script


def worker(rank, args, init, threads, out):
    import numpy as np
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    dist.init_process_group('gloo', init_method=init, rank=rank, world_size=args.procs)
    images = read_idx(os.path.join(args.data, 'train-images-idx3-ubyte'))
    labels = read_idx(os.path.join(args.data, 'train-labels-idx1-ubyte'))
    count = images.shape[0]
    X = torch.from_numpy(images.reshape(count, -1).astype(np.float32) / np.float32(255.0)).contiguous()
    Y = torch.from_numpy(labels.astype(np.int64))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 10))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    decay = [p for n, p in ddp.named_parameters() if n.endswith('weight')]
    no_decay = [p for n, p in ddp.named_parameters() if n.endswith('bias')]
    opt = torch.optim.SGD([{'params': decay, 'weight_decay': 1e-4}, {'params': no_decay, 'weight_decay': 0.0}], lr=args.lr, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    B = args.batch
    per = B // args.procs
    total = args.warmup + args.reps * args.steps
    g = torch.Generator().manual_seed(1234)
    idx_all = torch.randint(0, count, (total, B), generator=g)

    def step(i):
        idx = idx_all[i][rank * per:(rank + 1) * per]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(ddp(X[idx]), Y[idx])
        loss.backward()
        opt.step()
        return loss

    for i in range(args.warmup):
        step(i)
    dist.barrier()
    rates = []
    k = args.warmup
    for _ in range(args.reps):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            last = step(k)
            k += 1
        dist.barrier()
        rates.append(args.steps * B / (time.perf_counter() - t0))
    if rank == 0:
        with open(out, 'w') as f:
            json.dump({'ok': True, 'torch': torch.__version__, 'reps': rates, 'threads': threads, 'finalLoss': float(last)}, f)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--procs', type=int, default=2)
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--steps', type=int, default=200)
    ap.add_argument('--warmup', type=int, default=30)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--lr', type=float, default=0.01)
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
        import torch.multiprocessing as mp
    except Exception as e:
        print(json.dumps({'ok': False, 'error': f'cannot import torch: {e}'}))
        return 0
    threads = max(1, (os.cpu_count() or 1) // args.procs)
    with tempfile.TemporaryDirectory() as d:
        init = 'file://' + os.path.join(d, 'rdzv')
        out = os.path.join(d, 'result.json')
        try:
            mp.spawn(worker, args=(args, init, threads, out), nprocs=args.procs, join=True)
            with open(out) as f:
                print(json.dumps(json.load(f)))
        except Exception as e:
            print(json.dumps({'ok': False, 'error': f'DDP run failed: {e}'}))
    return 0


if __name__ == '__main__':
    sys.exit(main())
