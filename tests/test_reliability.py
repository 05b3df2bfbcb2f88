"""Faults injected into real processes: Ctrl-C, SIGTERM and SIGKILL in the middle of training."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from mlflow import MlflowClient

from tests.test_app import ENV, command, mnist_bench, runs_of

LONG = ["implementation=numpy", "dataset.n_train=20000", "train.epochs=300"]


def start_and_wait_for_epochs(tmp_path, args, epochs: int = 2) -> subprocess.Popen:
    """Start the command and return once one of its runs has logged `epochs` epochs."""
    proc = subprocess.Popen(
        command(tmp_path, *args),
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            exp = client.get_experiment_by_name("mnist-bench")
            running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
            if any(
                len(client.get_metric_history(r.info.run_id, "train_loss")) >= epochs
                for r in running
            ):
                return proc
        except Exception:  # the store or experiment does not exist yet
            continue
    proc.kill()
    pytest.fail("the run never logged its epochs")


@pytest.mark.parametrize(
    "sig,reason",
    [(signal.SIGINT, "interrupted (SIGINT)"), (signal.SIGTERM, "terminated (SIGTERM)")],
)
def test_signal_during_an_epoch_kills_the_run_and_keeps_its_epochs(tmp_path, sig, reason):
    proc = start_and_wait_for_epochs(tmp_path, LONG)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    (run,) = runs_of(tmp_path)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == reason
    assert len(MlflowClient().get_metric_history(run.info.run_id, "train_loss")) >= 2


def test_sigkilled_sweep_leaves_no_orphan_after_a_rerun(tmp_path):
    sweep = ["-m", "seed=0,1", "implementation=numpy", "dataset.n_train=20000", "train.epochs=40"]
    proc = start_and_wait_for_epochs(tmp_path, sweep)
    proc.kill()  # SIGKILL: nothing in the process can react
    proc.wait(timeout=30)
    assert {r.info.status for r in runs_of(tmp_path)} == {"RUNNING"}
    rerun = mnist_bench(tmp_path, *sweep[:-1], "train.epochs=2")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    runs = runs_of(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    stale = [r for r in runs if r.info.status == "FAILED"]
    assert len(stale) == 2  # the killed sweep's parent and its interrupted job
    assert {r.data.tags["failure_reason"] for r in stale} == {"stale: process gone"}
    finished = [
        r for r in runs if r.info.status == "FINISHED" and "sweep_parent" not in r.data.tags
    ]
    assert sorted(r.data.params["seed"] for r in finished) == ["0", "1"]
