"""What the harness costs: MLflow logging, progress output and timing around the same epochs.

Both sides run the same work on fresh networks from the same weights: per epoch a shuffle,
a training pass and a validation pass. The bare loop does only that; the harness loop is
`bench.harness.train` with console progress and a real MLflow run (SQLite) as observers.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from threadpoolctl import threadpool_limits

from bench.job.harness import ConsoleProgress, Shuffler, train
from bench.job.settings import compose_config, job_from_config
from bench.job.setup import build_network, initial_weights, load_data


def bare_loop(job, net, s, impl) -> None:
    shuffler = Shuffler(s.x_train, s.y_train, job.seed)
    for epoch in range(1, job.epochs + 1):
        net.train_epoch(*shuffler.epoch(epoch))
        impl.synchronize(job.device)
        net.evaluate(s.x_val, s.y_val)
        impl.synchronize(job.device)


def harness_overhead(repeats: int, n_train: int | None = None) -> tuple[float, float, float]:
    """Median seconds of a 5-epoch NumPy `compare` run with the harness and with the bare loop,
    and the median of the paired overheads (harness / bare - 1). The pairs alternate which
    side runs first, so a drift in the shared machine's speed lands on both sides. NumPy has
    the shortest epochs, so its relative overhead is the largest of the three."""
    from bench.tracking.runs import MlflowRun

    overrides = [
        "+experiment=compare",
        "implementation=numpy",
        f"dataset.n_train={n_train or 'null'}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        overrides += [f"tracking.uri=sqlite:///{tmp}/m.db", f"tracking.artifact_root={tmp}/a"]
        job = job_from_config(compose_config(overrides))
        with threadpool_limits(limits=job.threads):
            _, s = load_data(job)
            weights = initial_weights(job)

            def with_harness() -> float:
                impl, net = build_network(job, weights)
                run = MlflowRun(job, job.run_name, {})
                start = time.perf_counter()
                train(job, net, s, [ConsoleProgress(job), run], impl)
                seconds = time.perf_counter() - start
                run.fail("overhead measurement", status="FINISHED")
                return seconds

            def bare() -> float:
                impl, net = build_network(job, weights)
                start = time.perf_counter()
                bare_loop(job, net, s, impl)
                return time.perf_counter() - start

            pairs = []
            for r in range(repeats):
                if r % 2:
                    b = bare()
                    h = with_harness()
                else:
                    h = with_harness()
                    b = bare()
                pairs.append((h, b))
    harness_s, bare_s = zip(*pairs)
    overhead = statistics.median(h / b - 1 for h, b in pairs)
    return statistics.median(harness_s), statistics.median(bare_s), overhead
