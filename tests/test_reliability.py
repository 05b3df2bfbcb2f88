"""Faults injected into real processes: Ctrl-C, SIGTERM and SIGKILL in the middle of training."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.test_app import ENV, command, mnist_bench, runs_of

LONG = ["implementation=numpy", "dataset.n_train=20000", "train.epochs=300"]


def start_and_wait(tmp_path, args, ready) -> subprocess.Popen:
    """Start the command and return once ready(client, experiment_id, output) holds. The store
    is read only after the command printed its first epoch: a reader that opens a new SQLite
    store while the command creates it races its schema migration."""
    log = open(tmp_path / "out.log", "w")
    proc = subprocess.Popen(
        command(tmp_path, *args),
        cwd=tmp_path,
        env={**ENV, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps every thread's stack
        stdout=log,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    deadline = time.monotonic() + 300  # a bound for a busy host; the wait ends on the event
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        output = (tmp_path / "out.log").read_text()
        if "epoch 1/" not in output:
            continue
        try:
            if ready(client, client.get_experiment_by_name("mnist-bench").experiment_id, output):
                return proc
        except Exception:  # the experiment does not exist yet
            continue
    proc.kill()
    pytest.fail("the command never got there")


def communicate(proc: subprocess.Popen, timeout: float) -> str:
    """The process's stderr once it exits; if it hangs, fail with every thread's stack."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        pytest.fail(
            f"still running after {timeout} s; its threads:\n{proc.communicate()[1][-12000:]}"
        )


def running_with_epochs(epochs: int, finished: int = 0):
    """Ready when `finished` jobs are done and a running job has logged `epochs` epochs."""

    def ready(client, experiment_id, output) -> bool:
        runs = client.search_runs([experiment_id], "tags.config_hash != ''")
        done = [r for r in runs if r.info.status == "FINISHED"]
        return len(done) >= finished and any(
            len(client.get_metric_history(r.info.run_id, "epoch/train_loss")) >= epochs
            for r in runs
            if r.info.status == "RUNNING"
        )

    return ready


def printed_epochs(epochs: int):
    """Ready when the command printed `epochs` epochs: what it did, not what its writer has
    committed to the store yet (the run's end writes every printed epoch, checked after)."""

    def ready(client, experiment_id, output) -> bool:
        return f"epoch {epochs}/" in output

    return ready


@pytest.mark.parametrize(
    "sig,reason",
    [(signal.SIGINT, "interrupted (SIGINT)"), (signal.SIGTERM, "terminated (SIGTERM)")],
)
def test_signal_during_an_epoch_kills_the_run_and_keeps_its_epochs(tmp_path, sig, reason):
    proc = start_and_wait(tmp_path, LONG, printed_epochs(2))
    proc.send_signal(sig)
    stderr = communicate(proc, timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    (run,) = runs_of(tmp_path)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == reason
    printed = len(re.findall(r"epoch \d+/300", (tmp_path / "out.log").read_text()))
    assert printed >= 2
    assert len(MlflowClient().get_metric_history(run.info.run_id, "epoch/train_loss")) == printed


def test_sigkilled_sweep_resumes_to_one_finished_run_per_config(tmp_path):
    sweep = ["-m", "seed=0,1,2", "implementation=numpy", "dataset.n_train=5000", "train.epochs=60"]
    proc = start_and_wait(tmp_path, sweep, running_with_epochs(2, finished=1))
    proc.kill()  # SIGKILL midway: the first job finished, the second is training
    proc.wait(timeout=30)

    audit = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.commands.audit",
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert audit.returncode == 1, audit.stderr
    lines = audit.stdout.splitlines()
    assert lines[0].endswith("3 jobs: 1 FINISHED, 1 FAILED, 1 MISSING")
    assert "FAILED   seed=1 " in lines[1] and lines[1].endswith("(stale: process gone)")
    assert "MISSING  seed=2 " in lines[2]
    # the holes' command sweeps only seeds 1 and 2
    assert lines[-1].strip().startswith("mnist-bench -m seed=1,2 implementation=numpy")

    rerun = mnist_bench(tmp_path, *sweep)  # the same command again
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "custom-numpy-s0: skipped, already FINISHED" in rerun.stdout
    runs = runs_of(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    jobs = [r for r in runs if "sweep_parent" not in r.data.tags]
    finished = sorted(r.data.params["seed"] for r in jobs if r.info.status == "FINISHED")
    assert finished == ["0", "1", "2"]  # exactly one FINISHED run per config
    (stale,) = [r for r in jobs if r.info.status == "FAILED"]
    assert stale.data.tags["failure_reason"] == "stale: process gone"
