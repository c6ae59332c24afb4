"""MNIST's IDX files as numpy arrays, for the PyTorch reference scripts beside this one."""


def read_idx(path):
    import numpy as np

    with open(path, 'rb') as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
