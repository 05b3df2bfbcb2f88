"""Startup costs, each in fresh processes: importing each implementation's module (its
framework included) and the modules every run uses, and the time from the command to the
first training epoch (the `startup_s` metric of a one-epoch run)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile

from mlflow import MlflowClient

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
            times[r.data.tags["implementation"]].append(r.data.metrics["startup_s"])
    return {impl: statistics.median(t) for impl, t in times.items()}
