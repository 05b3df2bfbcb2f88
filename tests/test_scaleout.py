"""Scale-out: the same `compare` sweep serially, with joblib, with submitit_local and against a
real `mlflow server` gives the same set of runs; the report reads back from the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests import servers
from tests.docs import run_documented
from tests.test_app import ENV, store_overrides

# the README's main job, one seed and a small subset: 3 jobs, one per implementation
SMALL = ["seed=0", "dataset.n_train=1000", "train.epochs=1"]


def launched(name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """docs/scaling-out.md's sweep on one launcher, with its store in tmp_path."""
    extra = [*SMALL, *store_overrides(tmp_path)]
    if name == "serial":
        return run_documented("mnist-bench -m +experiment=compare", *extra, cwd=tmp_path)
    if name == "joblib":
        return run_documented(
            "mnist-bench -m +experiment=compare hydra/launcher=joblib hydra.launcher.n_jobs=2",
            *extra, cwd=tmp_path,
        )  # fmt: skip
    return run_documented(
        "mnist-bench -m +experiment=compare hydra/launcher=submitit_local hydra.sweeper.max_batch_size=2",
        *extra, "hydra.launcher.timeout_min=10", cwd=tmp_path,
    )  # fmt: skip


def finished_jobs(uri: str) -> dict[tuple[str, str, str], list[float]]:
    """(implementation, seed, config hash) -> per-epoch train and validation losses."""
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["mnist-bench"], output_format="list")
    assert not [r for r in runs if r.info.status != "FINISHED"]
    return {
        (r.data.tags["implementation"], r.data.params["seed"], r.data.tags["config_hash"]): [
            m.value
            for key in ("train_loss", "val_loss")
            for m in client.get_metric_history(r.info.run_id, f"epoch/{key}")
        ]
        for r in runs
        if "sweep_parent" not in r.data.tags
    }


@pytest.fixture
def mlflow_server(tmp_path):
    """A real tracking server on 127.0.0.1 with a SQLite backend and proxied artifacts."""
    store, artifacts = f"sqlite:///{tmp_path}/server.db", tmp_path / "server-artifacts"
    with servers.mlflow_server(store, artifacts, tmp_path / "server.log") as (uri, _):
        yield uri


@pytest.mark.slow
def test_same_runs_serial_joblib_submitit_and_server(tmp_path, mlflow_server):
    results = {}
    for name in ("serial", "joblib", "submitit_local"):
        where = tmp_path / name
        where.mkdir()
        proc = launched(name, where)
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        results[name] = finished_jobs(f"sqlite:///{where}/mlflow.db")
    port = mlflow_server.rsplit(":", 1)[1]
    proc = run_documented(
        "mnist-bench -m +experiment=compare tracking.uri=http://127.0.0.1:5001", *SMALL,
        f"hydra.sweep.dir={tmp_path}/server-multirun", cwd=tmp_path, replace={"5001": port},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results["server"] = finished_jobs(mlflow_server)

    # jobs side by side split the 2-thread budget and are flagged; serial ones are not
    for name, width in (("joblib", "2"), ("submitit_local", "2")):
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / name}/mlflow.db")
        jobs = mlflow.search_runs(
            experiment_names=["mnist-bench"], filter_string="tags.implementation != ''"
        )
        assert set(jobs["tags.parallel_jobs"]) == {width} and set(jobs["tags.threads"]) == {"1"}
    expected = results["serial"]
    assert {impl for impl, _, _ in expected} == {"numpy", "tf_tape", "keras"}
    for name, got in results.items():
        assert got.keys() == expected.keys(), name
        # joblib reuses worker processes: no state leaks between jobs if every job computes
        # what a fresh serial process computes (up to the thread count's summation order)
        for key, losses in got.items():
            np.testing.assert_allclose(losses, expected[key], rtol=1e-5, err_msg=f"{name} {key}")

    report = run_documented(
        "mnist-bench-report --tracking-uri http://127.0.0.1:5001", "--out",
        str(tmp_path / "reports"), "--name", "server", cwd=tmp_path, replace={"5001": port},
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "reports" / "server" / "report.md").read_text()
    assert "3 runs, 3 finished" in text and "beside other jobs" not in text

    report = subprocess.run(
        [sys.executable, "-m", "bench.commands.report", "--tracking-uri",
         f"sqlite:///{tmp_path}/joblib/mlflow.db", "--out", str(tmp_path / "reports"), "--name", "joblib"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "reports" / "joblib" / "report.md").read_text()
    assert "timings of 3 runs were taken beside other jobs (parallel_jobs=2)" in text


def test_optuna_preset_maximizes_validation_accuracy(tmp_path):
    proc = run_documented(
        "mnist-bench -m +experiment=tune implementation=keras", "hydra.sweeper.n_trials=2",
        "dataset.n_train=1000", "train.epochs=1", *store_overrides(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    trials = mlflow.search_runs(
        experiment_names=["mnist-bench"], filter_string="tags.preset = 'tune'"
    )
    best = float(proc.stdout.split("Best value: ")[1].split()[0])
    assert len(trials) == 2 and set(trials.status) == {"FINISHED"}
    assert best == pytest.approx(trials["metrics.final/final_val_accuracy"].max())
    assert trials["params.optimizer.lr"].nunique() == 2  # Optuna chose the values
