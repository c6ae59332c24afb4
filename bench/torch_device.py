"""The device the PyTorch references run on (bench/torch_mnist.py, bench/torch_cifar.py): the CPU, or GPU 0 in FP32.

On 'cuda' TF32 is off for matmuls and convolutions (towerline's CUDA kernels are FP32: the 1e-5 contract), and
sync() waits for the GPU so that host timers measure finished work.
"""


def setup_device(torch, name):
    """Returns (device, sync, error): error is a message (and device None) when CUDA was asked for but is missing."""
    if name != 'cuda':
        return torch.device('cpu'), (lambda: None), None
    if not torch.cuda.is_available():
        return None, None, 'torch.cuda.is_available() is False'
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch.device('cuda:0'), torch.cuda.synchronize, None
