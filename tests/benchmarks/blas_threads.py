"""What the second core does while the NumPy network updates its weights, run by hand:

    python -m tests.benchmarks.blas_threads            # keras_dense512 b128, all four parts
    python -m tests.benchmarks.blas_threads --batch 32

1. CPU seconds per thread over a training epoch, read from /proc/self/task/*/stat: the main
   thread, and OpenBLAS's worker (the only other busy thread), with OpenBLAS's default
   OPENBLAS_THREAD_TIMEOUT and with the shortest one (4: the worker sleeps 2^4 cycles after its
   last product). A worker that spins between products uses as much CPU as the wall clock.
2. The RMSprop update alone, with one matrix product per step before it as in training
   (OpenBLAS wakes and then spins), single-threaded in cache-sized blocks (the network's
   `Adam/RMSprop.step`) against the same passes split in two halves over two Python threads
   (ufuncs release the GIL), for both timeouts.
3. The round trip of handing one empty task to a waiting Python thread and back: what any
   split of the update pays per step before it saves anything.

Each part that depends on OPENBLAS_THREAD_TIMEOUT runs in a fresh interpreter (OpenBLAS reads
it once, when NumPy loads it). The figures are host-specific: name the host (`lscpu`) with
them. docs/speed.md has the findings on the project's 2-core hosts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

TICK = os.sysconf("SC_CLK_TCK")
STEPS = 469  # an epoch of keras_dense512 at batch 128


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process."""
    found = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return found


def epoch_threads(batch: int) -> dict:
    """Part 1, in this process: wall and CPU seconds of the main thread and of the others
    over the median of 3 training epochs of the NumPy network."""
    from threadpoolctl import threadpool_limits

    from bench.job.harness import Shuffler
    from bench.job.setup import build_network, initial_weights, load_data
    from bench.speed.measure import Case

    job = Case("keras_dense512", batch).job("numpy", None, 2)
    with threadpool_limits(2):
        _, s = load_data(job)
        _, net = build_network(job, initial_weights(job))
        shuffler = Shuffler(s.x_train, s.y_train, job.seed)
        net.train_epoch(*shuffler.epoch(1))
        main, rows = threading.get_native_id(), []
        for epoch in range(2, 5):
            x, y = shuffler.epoch(epoch)
            before, start = thread_cpu(), time.perf_counter()
            *_, phases = net.timed_train_epoch(x, y)
            wall, after = time.perf_counter() - start, thread_cpu()
            used = {t: after[t] - before.get(t, 0.0) for t in after}
            others = sorted((v for t, v in used.items() if t != main), reverse=True)
            rows.append({"wall": wall, "main": used[main], "worker": others[0] if others else 0.0,
                         "update": phases["update"]})  # fmt: skip
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def update_alone(product: bool) -> dict:
    """Part 2, in this process: STEPS RMSprop updates of the network's 407,050 parameters,
    blocked and single-threaded, and split in halves over two threads, each after one
    128x784 @ 784x512 product when `product` is set."""
    from implementations.numpy_optimizers import BLOCK

    n, rho, eps, c = 407_050, 0.9, 1e-7, 1e-3 / math.sqrt(0.1)
    rng = np.random.default_rng(0)
    p, g = rng.random(n, np.float32), rng.random(n, np.float32)
    w = np.full(n, eps / (1 - rho), np.float32)
    a, b = rng.random((128, 784), np.float32), rng.random((784, 512), np.float32)
    scratch = [np.empty(n, np.float32), np.empty(n, np.float32)]

    def passes(lo: int, hi: int, tmp: np.ndarray, block: int) -> None:
        for i in range(lo, hi, block):
            j = min(i + block, hi)
            pp, gg, ww, t = p[i:j], g[i:j], w[i:j], tmp[: j - i]
            ww *= rho
            np.square(gg, out=t)
            ww += t
            ww += eps
            np.sqrt(ww, out=t)
            np.divide(gg, t, out=t)
            t *= c
            pp -= t

    pool = ThreadPoolExecutor(1)

    def split() -> None:
        half = pool.submit(passes, n // 2, n, scratch[1], n)
        passes(0, n // 2, scratch[0], n)
        half.result()

    variants = {"blocked, one thread": lambda: passes(0, n, scratch[0], BLOCK),
                "halves, two threads": split}  # fmt: skip
    found = {}
    for name, update in variants.items():
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(STEPS):
                if product:
                    a @ b
                update()
            times.append(time.perf_counter() - start)
        found[name] = statistics.median(times)
    return found


def handoff() -> float:
    """Part 3: seconds of one empty task handed to a waiting thread and back (median)."""
    pool = ThreadPoolExecutor(1)
    pool.submit(lambda: None).result()
    times = []
    for _ in range(2000):
        start = time.perf_counter()
        pool.submit(lambda: None).result()
        times.append(time.perf_counter() - start)
        time.sleep(0.0005)  # the worker goes back to sleep, as between two steps
    return statistics.median(times)


def fresh(part: str, timeout: str | None, batch: int) -> dict:
    """One part in a fresh interpreter with OPENBLAS_THREAD_TIMEOUT set (or OpenBLAS's own)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if timeout:
        env["OPENBLAS_THREAD_TIMEOUT"] = timeout
    out = subprocess.run([sys.executable, "-m", __spec__.name, "--part", part, "--batch",
                          str(batch)], env=env, capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--part", choices=("epoch", "update", "update+product"))
    args = parser.parse_args()
    if args.part:  # a fresh interpreter's share of the work: one JSON line
        result = {"epoch": lambda: epoch_threads(args.batch), "update": lambda: update_alone(False),
                  "update+product": lambda: update_alone(True)}[args.part]()  # fmt: skip
        print(json.dumps(result))
        return
    for label, timeout in (
        ("OpenBLAS's default timeout", None),
        ("OPENBLAS_THREAD_TIMEOUT=4", "4"),
    ):
        e = fresh("epoch", timeout, args.batch)
        print(f"{label}: epoch {e['wall']:.3f} s wall (update {e['update']:.3f} s); CPU: main "
              f"thread {e['main']:.3f} s, OpenBLAS's worker {e['worker']:.3f} s")  # fmt: skip
    print(f"RMSprop update, {STEPS} steps (seconds):")
    for label, part, timeout in (("alone", "update", None),
                                 ("after a product, default timeout", "update+product", None),
                                 ("after a product, timeout 4", "update+product", "4")):  # fmt: skip
        times = fresh(part, timeout, args.batch)
        print(f"  {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in times.items()))
    print(f"handing a task to a waiting thread and back: {1e6 * handoff():.0f} us")


if __name__ == "__main__":
    main()
