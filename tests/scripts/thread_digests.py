"""Digests of a few torch reductions computed with 1 and with 2 intra-op threads.

Prints one JSON object `{case: {"1": digest, "2": digest}}`. Whether a case's bits depend on
the thread count is a property of the CPU and its BLAS (on an AMD EPYC, 1- and 2-thread matrix
products give the same bits, long sums do not), so tests that need two different bit patterns
pick, at run time, the cases whose two digests differ.
"""

import hashlib
import json

import torch


def digest(tensor):
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()


def cases():
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    # Long inner dimensions and small results: the threads split the sum itself, as in a
    # weight gradient or a loss over a large batch.
    long_a, long_b = randn(16384, 64), randn(16384, 64)
    x, w, grad = randn(32, 16, 28, 28), randn(16, 16, 3, 3), randn(32, 16, 28, 28)
    vector = randn(1 << 24)
    logits, labels = randn(65536, 10), torch.randint(0, 10, (65536,), generator=generator)
    return {
        "matmul 16384-long": lambda: long_a.T @ long_b,
        "sum of 2**24": lambda: vector.sum(),
        "cross-entropy of 65536 rows": lambda: torch.nn.functional.cross_entropy(logits, labels),
        "conv2d weight gradient": lambda: torch.nn.grad.conv2d_weight(x, w.shape, grad,
                                                                      padding=1),
    }


if __name__ == "__main__":
    results = {}
    for name, compute in cases().items():
        results[name] = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results[name][str(threads)] = digest(compute())
    print(json.dumps(results))
