"""Work per sample and the machine's float32 matrix-product peak, measured in the same run.

Counts are multiply-adds x2 of the matrix products only (the elementwise work is small):
forward x @ W per layer; backward x.T @ dz per layer and dz @ W.T for every layer but the
first (nobody needs the gradient of the input).
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits


def forward_flops(sizes: list[int]) -> int:
    return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))


def train_flops(sizes: list[int]) -> int:
    """Per training sample: forward, weight gradients, and input gradients past layer 1."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    return 2 * forward_flops(sizes) + sum(2 * a * b for a, b in layers[1:])


def matmul_peak_gflops(threads: int | None, n: int = 2048, repeats: int = 7) -> float:
    """The best float32 n x n matrix product rate with the thread budget, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    with threadpool_limits(limits=threads):
        np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
        best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
