"""The machine's floor for one case, measured in the same run: how fast an epoch could be if it
did nothing but its matrix products (at the rate this machine reaches on the case's own
shapes) and the optimizer's unavoidable memory traffic (at the measured bandwidth). An
implementation's "% of floor" is floor / its epoch time: 100% is the machine's limit, and
the gap is what Python, the framework and elementwise work cost."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from bench.job.settings import usable_cores

# arrays of the parameters' size an update must read or write once per step, at least:
# SGD reads p, g and writes p; momentum and RMSprop add one state read and written; Adam two
OPTIMIZER_ARRAYS = {"sgd": 3, "momentum": 5, "rmsprop": 5, "adam": 7}


def step_products(sizes: list[int], batch: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matrix product in one training step: forward x @ W, weight
    gradients x.T @ dz, and input gradients dz @ W.T past the first layer."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    forward = [(batch, a, b) for a, b in layers]
    weights = [(a, batch, b) for a, b in layers]
    inputs = [(batch, b, a) for a, b in layers[1:]]
    return forward + weights + inputs


def _best(fn, repeats: int) -> float:
    fn()  # warm-up: threads started, pages touched
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def products_seconds(shapes, dtype=np.float32, repeats: int = 20) -> float:
    """Best time for one set of products of these shapes (inputs resident, outputs reused)."""
    rng = np.random.default_rng(0)
    operands = [
        (rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype))
        for m, k, n in shapes
    ]
    outs = [np.empty((m, n), dtype) for m, _, n in shapes]

    def run():
        for (a, b), out in zip(operands, outs):
            np.matmul(a, b, out=out)

    return _best(run, repeats)


def bandwidth_gbs(n: int, threads: int = 1, dtype=np.float32, repeats: int = 20) -> float:
    """Memory bandwidth of a streaming pass (c = a + b: two arrays read, one written) over
    arrays of n elements, in GB/s, with the pass split over `threads` threads (NumPy's ufuncs
    release the GIL): the best of one thread and of all of them, since a compiled framework
    spreads its elementwise work over the thread budget, and a floor it can beat is none."""
    a, b = np.ones(n, dtype), np.ones(n, dtype)
    c = np.empty_like(a)
    best = _best(lambda: np.add(a, b, out=c), repeats)
    if threads > 1:
        parts = [slice(i * n // threads, (i + 1) * n // threads) for i in range(threads)]
        with ThreadPoolExecutor(threads) as pool:

            def split_pass():
                for done in [pool.submit(np.add, a[s], b[s], out=c[s]) for s in parts]:
                    done.result()

            best = min(best, _best(split_pass, repeats))
    return 3 * a.nbytes / best / 1e9


@dataclass
class Floor:
    steps: int
    products_s: float  # per epoch, at the case's shapes
    update_s: float  # per epoch, the optimizer's minimum traffic at the parameters' bandwidth
    gflops_at_shapes: float
    bandwidth_gbs: float  # at the parameters' size (what the update streams over)
    large_bandwidth_gbs: float  # over 64 M floats, out of every cache

    @property
    def epoch_s(self) -> float:
        return self.products_s + self.update_s


def case_floor(sizes, batch: int, n_train: int, optimizer: str, threads: int | None) -> Floor:
    """The floor of one case, with the products measured on its own shapes."""
    steps, last = divmod(n_train, batch)
    shapes = step_products(sizes, batch)
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    with threadpool_limits(limits=threads):
        per_step = products_seconds(shapes)
        products = steps * per_step + (products_seconds(step_products(sizes, last)) if last else 0)
        flops = sum(2 * m * k * n for m, k, n in shapes)
        cores = threads or usable_cores()
        bandwidth = bandwidth_gbs(n_params, cores)
        large = bandwidth_gbs(64 * 2**20, cores, repeats=5)
    steps += bool(last)
    traffic = OPTIMIZER_ARRAYS[optimizer] * 4 * n_params  # float32 bytes per step
    return Floor(
        steps=steps,
        products_s=products,
        update_s=steps * traffic / (bandwidth * 1e9),
        gflops_at_shapes=flops / per_step / 1e9,
        bandwidth_gbs=bandwidth,
        large_bandwidth_gbs=large,
    )
