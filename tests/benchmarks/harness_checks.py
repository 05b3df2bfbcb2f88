"""Two measurements of the harness itself (not unit tests; run by hand, numbers in notes):

1. tracking overhead: the same job with MLflow tracking on and off, interleaved, medians;
2. position independence: one config run first and last in one process (as Hydra's basic
   launcher does), with other implementations in between: losses and epoch times compared.

    python -m tests.benchmarks.harness_checks [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from bench.app import run
from tests.conftest import ROOT


def cfg_for(store: str, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "config", overrides=["+experiment=compare", f"tracking.uri={store}", *overrides]
        )


def timed(cfg) -> float:
    start = time.perf_counter()
    assert run(cfg)
    return time.perf_counter() - start


def tracking_overhead(store: str, repeats: int, implementation: str) -> None:
    on, off = [], []
    for _ in range(repeats):
        on.append(timed(cfg_for(store, f"implementation={implementation}")))
        off.append(
            timed(cfg_for(store, f"implementation={implementation}", "tracking.enabled=false"))
        )
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(
        f"tracking overhead ({implementation}, 5 epochs, {repeats} repeats): on {m_on:.2f}s, "
        f"off {m_off:.2f}s, ratio {m_on / m_off:.3f} ({(m_on - m_off):+.2f}s)"
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
        return [m.value for m in client.get_metric_history(run_id, key)]

    same = history(first, "train_loss") == history(last, "train_loss")
    t_first, t_last = history(first, "epoch_time_s"), history(last, "epoch_time_s")
    print(
        f"position independence (keras first vs last of {order}): identical losses: {same}; "
        f"median epoch {statistics.median(t_first[1:]):.3f}s vs "
        f"{statistics.median(t_last[1:]):.3f}s; first epoch {t_first[0]:.3f}s vs {t_last[0]:.3f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        position_independence(store)
        for implementation in ("numpy", "keras"):
            tracking_overhead(store, args.repeats, implementation)


if __name__ == "__main__":
    main()
