"""Startup costs, each in fresh processes: importing each implementation's module (its
framework included) and the modules every run uses, and the time from the command to the
first training epoch (the `startup_s` metric of a one-epoch run)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from mlflow import MlflowClient

from bench.tracking.names import short_metrics
from implementations import registry

SHARED_MODULES = ("numpy", "mlflow", "hydra")  # every run imports them
PROBE = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def import_seconds(module: str, repeats: int) -> float:
    """Median seconds to import a module in a fresh interpreter (numpy counts in every
    implementation's figure too: each imports it first)."""
    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", PROBE.format(module)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for _ in range(repeats)
    ]
    return statistics.median(times)


def first_epoch_seconds(implementations, repeats: int) -> dict[str, float]:
    """Median seconds from process start to the first epoch of `mnist-bench implementation=X`
    (a small one-epoch run), implementations interleaved."""
    times: dict[str, list[float]] = {impl: [] for impl in implementations}
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/m.db"

        def run(impl: str) -> None:
            subprocess.run(
                [
                    sys.executable, "-m", "bench", f"implementation={impl}",
                    "dataset.n_train=1000", "train.epochs=1", f"tracking.uri={store}",
                    f"tracking.artifact_root={tmp}/a", f"hydra.run.dir={tmp}/run",
                ],
                capture_output=True,
                check=True,
            )  # fmt: skip

        run(implementations[0])  # creates the store, so no repeat pays for its tables
        for _ in range(repeats):
            for impl in implementations:
                run(impl)
        client = MlflowClient(store)
        experiment = client.get_experiment_by_name("mnist-bench").experiment_id
        for r in client.search_runs([experiment], order_by=["attributes.start_time ASC"])[1:]:
            times[r.data.tags["implementation"]].append(short_metrics(r.data.metrics)["startup_s"])
    return {impl: statistics.median(t) for impl, t in times.items()}


@dataclass
class Startup:
    """What a job costs besides its epochs: the harness around the same epochs, imports and
    the command's way to its first epoch."""

    with_harness: float  # seconds of a 5-epoch NumPy run with the harness
    bare: float  # the same epochs in a bare loop
    overhead: float  # median of the paired harness / bare - 1
    imports: dict[str, float]  # module label -> seconds in a fresh interpreter
    to_first_epoch: dict[str, float]  # implementation -> seconds


def measure_startup(implementations, repeats: int, n_train, quick: bool) -> Startup:
    """Each of these takes whole processes: fewer repeats than the epochs get."""
    from bench.speed.overhead import harness_overhead

    small = min(repeats, 1 if quick else 3)
    with_harness, bare, overhead = harness_overhead(
        repeats=1 if quick else max(repeats, 5), n_train=n_train
    )
    modules = {f"{i} ({registry()[i].module_name})": registry()[i].module_name
               for i in implementations}  # fmt: skip
    modules.update({m: m for m in SHARED_MODULES})
    imports = {label: import_seconds(m, repeats=small) for label, m in modules.items()}
    return Startup(with_harness, bare, overhead, imports,
                   first_epoch_seconds(implementations, repeats=small))  # fmt: skip
