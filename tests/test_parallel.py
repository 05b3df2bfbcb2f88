"""Parallel writers: Hydra's joblib launcher, several jobs at once on one SQLite store."""

from __future__ import annotations

from mlflow import MlflowClient

from tests.test_app import mnist_bench, runs_of


def test_joblib_sweep_loses_no_run_and_no_metric_point(tmp_path):
    proc = mnist_bench(
        tmp_path,
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "implementation=numpy",
        "seed=0,1,2,3,4,5,6,7",
        "dataset.n_train=2000",
        "train.epochs=3",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = runs_of(tmp_path)
    jobs = [r for r in runs if "sweep_parent" not in r.data.tags]
    assert len(jobs) == 8 and all(r.info.status == "FINISHED" for r in jobs)
    assert sorted(r.data.params["seed"] for r in jobs) == [str(s) for s in range(8)]
    client = MlflowClient()
    for r in jobs:
        for key in ("train_loss", "val_accuracy", "epoch_time_s"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, f"epoch/{key}")] == [
                1,
                2,
                3,
            ]
        # 4 jobs side by side share the 2-thread budget: the params keep the configured
        # budget (the run's identity), the threads tag records what the job had
        assert r.data.params["train.threads"] == "2" and r.data.tags["threads"] == "1"
        assert r.data.tags["parallel_jobs"] == "4"
    (parent,) = [r for r in runs if "sweep_parent" in r.data.tags]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parent.info.run_id}


def test_serial_sweep_keeps_the_whole_thread_budget(tmp_path):
    proc = mnist_bench(
        tmp_path, "-m", "implementation=numpy", "seed=0,1", "dataset.n_train=500", "train.epochs=1"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [r for r in runs_of(tmp_path) if "sweep_parent" not in r.data.tags]
    assert {r.data.params["train.threads"] for r in jobs} == {"2"}
    assert not any("parallel_jobs" in r.data.tags for r in jobs)
