"""The scratch network against an earlier version of itself (and tf_tape), run by hand:

    python -m tests.benchmarks.scratch_speed                  # A/B epochs, the four speed cases
    python -m tests.benchmarks.scratch_speed --tf             # ... and tf_tape in the same loop
    python -m tests.benchmarks.scratch_speed --subnormals     # subnormal counts, epochs 1-3
    python -m tests.benchmarks.scratch_speed --floor          # the b128 floor, and where we are
    python -m tests.benchmarks.scratch_speed --optimizer      # the optimizer step alone, A/B

The baseline is implementations/numpy_scratch.py at a git revision (--baseline, default the
commit before the speed work), loaded into this process beside the working tree's module.
Both networks start from the same weights and train on the same batch order; each repeat
is one epoch of each, interleaved every 16 batches (A B, B A, ...), so a burst of load from
other processes on a shared machine lands on both sides of a pair. Reported: the median epoch of each and the median of the
paired ratios. Threads: 2, the product's default budget.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import time
import types

import numpy as np
from threadpoolctl import threadpool_limits

from bench.data import load, prepare
from bench.job.harness import Shuffler
from bench.speed.flops import matmul_peak_gflops, train_flops
from bench.speed.measure import CASES, Case
from implementations import numpy_scratch, registry
from implementations.spec import init_weights
from tests.conftest import ROOT

BASELINE = "162e6ca"  # the scratch network before the subnormal and pass work
THREADS = 2
TF_CONFIGURED: set[str] = set()


def module_at(rev: str) -> types.ModuleType:
    """implementations/numpy_scratch.py as it was at a git revision, as a module."""
    path = "implementations/numpy_scratch.py"
    src = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType(f"numpy_scratch@{rev}")
    exec(compile(src, f"{rev}:{path}", "exec"), module.__dict__)
    return module


def host_cpu() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def setup(case: Case, baseline: str, with_tf: bool):
    job = case.job("numpy", None, THREADS)
    dataset = load(job.data.name, job.data.data_dir, download=job.data.download)
    s = prepare(dataset, job.data.val_size, job.data.n_train, job.data.split_seed, job.model.dtype)
    weights = init_weights(job.model, job.seed)
    args = (job.model, job.optimizer, job.batch_size, weights, job.seed)
    nets = {
        f"old@{baseline}": module_at(baseline).build(*args),
        "new": numpy_scratch.build(*args),
    }
    if with_tf:
        tf_job = case.job("tf_tape", None, THREADS)
        if "tensorflow" not in TF_CONFIGURED:  # TensorFlow takes its threads once per process
            registry()["tf_tape"].configure(THREADS, "cpu")
            TF_CONFIGURED.add("tensorflow")
        nets["tf_tape"] = registry()["tf_tape"].build(*args, **tf_job.options)
    return job, s, nets


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def interleaved_epoch(nets: dict, x, y, batch_size: int, flip: bool, block: int = 16) -> dict:
    """One epoch per network, interleaved every `block` batches (A B, then B A, ...): a burst
    of load from other processes lands on both sides of a pair. Seconds per network."""
    names, seconds = list(nets), dict.fromkeys(nets, 0.0)
    step = block * batch_size
    for i, start in enumerate(range(0, len(y), step)):
        xb, yb = x[start : start + step], y[start : start + step]
        for name in names if (i % 2 == 0) != flip else names[::-1]:
            seconds[name] += timed(nets[name].train_epoch, xb, yb)
    return seconds


def run_pairs(job, s, nets, pairs: int) -> dict[str, list[float]]:
    shuffler = Shuffler(s.x_train, s.y_train, job.seed)
    x, y = shuffler.epoch(1)
    for net in nets.values():  # warm-up: tf_tape's tracing, first touches
        net.train_epoch(x, y)
    times = {name: [] for name in nets}
    for r in range(pairs):
        x, y = shuffler.epoch(r + 2)
        for name, t in interleaved_epoch(nets, x, y, job.batch_size, r % 2 == 1).items():
            times[name].append(t)
    return times


def ab_epochs(case: Case, baseline: str, pairs: int, with_tf: bool) -> None:
    job, s, nets = setup(case, baseline, with_tf)
    times = run_pairs(job, s, nets, pairs)
    old, new = list(nets)[:2]
    ratios = [b / a for a, b in zip(times[old], times[new])]
    cells = "  ".join(f"{name} {statistics.median(t):.3f}s" for name, t in times.items())
    print(
        f"{case.name}: median epoch {cells}  new/old paired median {statistics.median(ratios):.3f} "
        f"(range {min(ratios):.3f}-{max(ratios):.3f}, {pairs} pairs)",
        flush=True,
    )


def optimizer_steps(case: Case, baseline: str, epochs: int = 2, rounds: int = 300) -> None:
    """The optimizer step alone (NumPy ufuncs, one thread), after `epochs` of training, so the
    state is the one a real run has: old and new steps alternate (A B, B A, ...)."""
    job, s, nets = setup(case, baseline, with_tf=False)
    shuffler = Shuffler(s.x_train, s.y_train, job.seed)
    for epoch in range(1, epochs + 1):
        x, y = shuffler.epoch(epoch)
        interleaved_epoch(nets, x, y, job.batch_size, flip=epoch % 2 == 0)
    names, times = list(nets), {name: [] for name in nets}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(timed(nets[name].optimizer.step))
    old, new = names
    ratios = [b / a for a, b in zip(times[old], times[new])]
    cells = "  ".join(f"{name} {statistics.median(t) * 1e3:.3f} ms" for name, t in times.items())
    print(
        f"{case.name} optimizer step after {epochs} epochs: median {cells}  new/old paired "
        f"median {statistics.median(ratios):.3f} ({rounds} pairs)",
        flush=True,
    )


def subnormal(a) -> int:
    a = np.asarray(a)
    return int(np.count_nonzero((np.abs(a) < np.finfo(a.dtype).tiny) & (a != 0)))


def optimizer_state(opt) -> list[np.ndarray]:
    """Every state array of an optimizer, whatever the version calls it."""
    return [
        a
        for key, value in vars(opt).items()
        if key not in ("groups", "scratch") and isinstance(value, list)
        for a in value
        if isinstance(a, np.ndarray)
    ]


def count_subnormals(net, x, y) -> dict[str, int]:
    """Subnormal entries: in the optimizer state now, and over one epoch of batches (no
    update) in the activations, logits, d(objective)/d(logits) and gradients."""
    state = optimizer_state(net.optimizer)
    counts = {
        "state": sum(subnormal(a) for a in state),
        "state_size": sum(a.size for a in state),
        "activations": 0,
        "dz": 0,
        "gradients": 0,
    }
    for start in range(0, len(y), net.batch_size):
        xb, yb = x[start : start + net.batch_size], y[start : start + net.batch_size]
        z, inputs = net.forward(xb)
        counts["activations"] += sum(subnormal(a) for a in [*inputs[1:], z])
        counts["dz"] += subnormal(net.loss(z, yb)[1])
        counts["gradients"] += sum(subnormal(g) for g in net.objective_gradients(xb, yb)[2])
    return counts


def subnormals(case: Case, baseline: str, epochs: int = 3) -> None:
    job, s, nets = setup(case, baseline, with_tf=False)
    shuffler = Shuffler(s.x_train, s.y_train, job.seed)
    for epoch in range(1, epochs + 1):
        x, y = shuffler.epoch(epoch)
        for name, net in nets.items():
            net.train_epoch(x, y)
            c = count_subnormals(net, x, y)
            print(
                f"{case.name} after epoch {epoch}, {name}: optimizer state {c['state']} of "
                f"{c['state_size']} ({c['state'] / max(1, c['state_size']):.2%}); over the epoch's "
                f"batches: activations {c['activations']}, dz {c['dz']}, "
                f"gradients {c['gradients']}",
                flush=True,
            )


def bandwidth_gbs(n: int, repeats: int = 50) -> float:
    """The best rate of c = a + b over arrays of n float32 (two reads, one write), GB/s: the
    optimizer's working set, so its cache level, not a DRAM-sized stream."""
    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    np.add(a, b, out=c)
    best = min(timed(np.add, a, b, c) for _ in range(repeats))
    return 3 * 4 * n / best / 1e9


def matmuls_at_these_shapes(net, x, steps: int, repeats: int = 20) -> float:
    """Seconds per epoch of one step's matrix products (forward x @ W, backward x.T @ dz and
    dz @ W.T past layer 1) at the network's shapes, best of `repeats`: what BLAS gives here."""
    xb = x[: net.batch_size]
    z, inputs = net.forward(xb)
    outs = [np.empty((len(xb), W.shape[1]), W.dtype) for W in net.params[0::2]]

    def products():
        for i, W in enumerate(net.params[0::2]):
            np.matmul(inputs[i], W, out=outs[i])
            np.matmul(inputs[i].T, outs[i], out=net.grads[2 * i])
            if i > 0:
                outs[i] @ W.T

    products()
    return steps * min(timed(products) for _ in range(repeats))


def floor(case: Case, baseline: str, pairs: int) -> None:
    """Floor = matrix-product FLOPs / float32 matmul peak + optimizer's minimum memory traffic
    (read p, g, state; write p, state) / measured bandwidth; numpy's epoch against it."""
    job = case.job("numpy", None, THREADS)
    n_params = sum(a * b + b for a, b in zip(job.model.sizes[:-1], job.model.sizes[1:]))
    states = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}[job.optimizer.name]
    n_train = 60_000 if job.data.n_train is None else job.data.n_train
    steps = math.ceil(n_train / job.batch_size)
    peak = matmul_peak_gflops(THREADS)
    bw = bandwidth_gbs(n_params)
    matmul_s = train_flops(job.model.sizes) * n_train / (peak * 1e9)
    traffic = (3 + 2 * states) * 4 * n_params
    memory_s = steps * traffic / (bw * 1e9)
    total = matmul_s + memory_s
    print(
        f"{case.name} floor: matmul {matmul_s:.3f}s ({train_flops(job.model.sizes) * n_train / 1e9:.1f} "
        f"GFLOP at {peak:.0f} GFLOP/s) + optimizer {memory_s:.3f}s ({steps} steps x "
        f"{traffic / 1e6:.1f} MB at {bw:.1f} GB/s) = {total:.3f}s per epoch",
        flush=True,
    )
    job, s, nets = setup(case, baseline, with_tf=False)
    shapes_s = matmuls_at_these_shapes(nets["new"], s.x_train, steps)
    print(
        f"  the step's matrix products alone, best of 20 at these shapes: {shapes_s:.3f}s per "
        f"epoch ({train_flops(job.model.sizes) * n_train / shapes_s / 1e9:.0f} GFLOP/s)",
        flush=True,
    )
    times = run_pairs(job, s, nets, pairs)
    for name, t in times.items():
        m = statistics.median(t)
        print(f"  {name}: median epoch {m:.3f}s = {total / m:.0%} of the floor", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the A side")
    parser.add_argument("--case", action="append", help="preset[:batch], e.g. keras_dense512:128")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--tf", action="store_true", help="time tf_tape in the same loop")
    parser.add_argument("--subnormals", action="store_true")
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--optimizer", action="store_true", help="the optimizer step alone")
    args = parser.parse_args()
    cases = CASES
    if args.case:
        cases = [
            Case(p, int(b) if b else None) for p, _, b in (c.partition(":") for c in args.case)
        ]
    print(f"host: {host_cpu()}, {THREADS} threads", flush=True)
    with threadpool_limits(limits=THREADS):
        if args.subnormals:
            for case in cases if args.case else (Case("keras_dense512", 128), Case("tape_sigmoid")):
                subnormals(case, args.baseline)
        elif args.optimizer:
            for case in cases if args.case else (Case("keras_dense512", 128),):
                optimizer_steps(case, args.baseline)
        elif args.floor:
            floor(Case("keras_dense512", 128), args.baseline, args.pairs)
        else:
            for case in cases:
                ab_epochs(case, args.baseline, args.pairs, args.tf)


if __name__ == "__main__":
    main()
