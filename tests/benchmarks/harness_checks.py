"""Position independence, a check of the harness run by hand (numbers in notes): one config
run first and last in one process (as Hydra's basic launcher does), with other
implementations in between: losses and epoch times compared. The harness's overhead is
measured by `mnist-bench-speed` (bench/speed/overhead.py).

    python -m tests.benchmarks.harness_checks
"""

from __future__ import annotations

import statistics
import tempfile

from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from bench.commands.train import run
from tests.conftest import ROOT


def cfg_for(store: str, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "config", overrides=["+experiment=compare", f"tracking.uri={store}", *overrides]
        )


def position_independence(store: str) -> None:
    order = ["keras", "numpy", "tf_tape", "keras"]
    for implementation in order:
        assert run(cfg_for(store, f"implementation={implementation}", "seed=0"))
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("mnist-bench")
    runs = client.search_runs(
        [exp.experiment_id], "tags.implementation = 'keras'", order_by=["attributes.start_time ASC"]
    )
    first, last = runs[0].info.run_id, runs[-1].info.run_id

    def history(run_id, key):
        return [m.value for m in client.get_metric_history(run_id, f"epoch/{key}")]

    same = history(first, "train_loss") == history(last, "train_loss")
    t_first, t_last = history(first, "epoch_time_s"), history(last, "epoch_time_s")
    print(
        f"position independence (keras first vs last of {order}): identical losses: {same}; "
        f"median epoch {statistics.median(t_first[1:]):.3f}s vs "
        f"{statistics.median(t_last[1:]):.3f}s; first epoch {t_first[0]:.3f}s vs {t_last[0]:.3f}s"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        position_independence(f"sqlite:///{tmp}/mlflow.db")


if __name__ == "__main__":
    main()
