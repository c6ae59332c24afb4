"""PyTorch's reference for the one-GPU all-reduce rows of the gpu bench (bench/gpu-allreduce.ts).

n buffers of `mb` MB on GPU 0 (the towers' gradients, all on one GPU): the all-reduce done the plain PyTorch way,
sum = b0 + b1 (+ b2 ...) then each buffer overwritten with the sum (n - 1 adds, n copies), and beside it the
device-to-device copy of one buffer. NCCL cannot run several ranks on one GPU, so this is the reference there.
Times with CUDA events, median of `reps` timed runs after warm-up; inputs are random, never zeros.
Prints one JSON line: {"ok": true, "torch", "gpu", "configs": [{"towers", "mb", "allreduce_ms": [...], "copy_ms": [...]}]}.
"""
import argparse
import json
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--towers', type=int, nargs='+', default=[4])
    p.add_argument('--mb', type=int, nargs='+', default=[256])
    p.add_argument('--reps', type=int, default=20)
    a = p.parse_args()
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        print(json.dumps({'ok': False, 'error': f'cannot import torch: {e}'}))
        return
    if not torch.cuda.is_available():
        print(json.dumps({'ok': False, 'error': 'torch.cuda.is_available() is False'}))
        return

    def timed(f):
        for _ in range(3):
            f()
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        out = []
        for _ in range(a.reps):
            s.record()
            f()
            e.record()
            e.synchronize()
            out.append(s.elapsed_time(e))
        return out

    configs = []
    for n in a.towers:
        for mb in a.mb:
            length = mb * 1024 * 1024 // 4
            bufs = [torch.rand(length, device='cuda') for _ in range(n)]
            total = torch.empty(length, device='cuda')

            def allreduce():
                torch.add(bufs[0], bufs[1], out=total)
                for b in bufs[2:]:
                    total.add_(b)
                for b in bufs:
                    b.copy_(total)

            ar = timed(allreduce)
            cp = timed(lambda: total.copy_(bufs[0]))
            configs.append({'towers': n, 'mb': mb, 'allreduce_ms': ar, 'copy_ms': cp})
            del bufs, total
            torch.cuda.empty_cache()
    print(json.dumps({'ok': True, 'torch': torch.__version__, 'gpu': torch.cuda.get_device_name(0), 'configs': configs}))


if __name__ == '__main__':
    sys.exit(main())
