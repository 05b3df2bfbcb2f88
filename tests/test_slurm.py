"""Sweeps through Hydra's submitit launcher on a real one-node SLURM cluster (Debian's slurm-wlm
and munge, started by bench.sweep.slurm), writing to a real `mlflow server`: the compare sweep
as on any launcher, then the faults a cluster has, each with what the store, the parent run,
the audit and the exit status say. Skipped where slurm-wlm is not installed (.ci/run installs
it) or where the cluster cannot start as root."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import mlflow
import pytest

from bench.commands.audit import main as audit_main
from bench.sweep import slurm
from tests import servers
from tests.conftest import ROOT
from tests.docs import documented, run_documented
from tests.test_app import ENV
from tests.test_scaleout import finished_jobs

pytestmark = [
    pytest.mark.skipif(bool(slurm.missing()), reason="slurm-wlm and munge are not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the test cluster's daemons run as root"),
]
SMALL = ["implementation=numpy,jax", "seed=0,1", "dataset.n_train=1000", "train.epochs=2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`make slurm-up`'s cluster in a folder of the test's; always stopped afterwards."""
    folder = tmp_path_factory.mktemp("slurm")
    try:
        env = slurm.up(folder)
    except slurm.ClusterError as e:
        slurm.down(folder)
        pytest.fail(str(e))
    try:
        yield {**ENV, **env}
    finally:
        slurm.down(folder)


@pytest.fixture
def server(tmp_path):
    store, artifacts = f"sqlite:///{tmp_path}/server.db", tmp_path / "server-artifacts"
    with servers.mlflow_server(store, artifacts, tmp_path / "server.log") as (uri, proc):
        yield uri


def places(tmp_path: Path, uri: str) -> list[str]:
    return [f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path}/multirun",
            f"hydra.launcher.submitit_folder={tmp_path}/submitit/%j"]  # fmt: skip


def sweep(cluster, tmp_path, uri, *extra, wait=True, timeout_min=10, cpus=2):
    """The documented SLURM sweep, small, against `uri`; the finished process, or the running
    one (wait=False)."""
    argv = documented(
        "mnist-bench -m +experiment=compare hydra/launcher=submitit_slurm hydra.launcher.cpus_per_task=2",
        *SMALL, *places(tmp_path, uri), f"hydra.launcher.timeout_min={timeout_min}", *extra,
        replace={"cpus_per_task=2": f"cpus_per_task={cpus}"},
    )  # fmt: skip
    if not wait:
        return subprocess.Popen(argv, cwd=tmp_path, env=cluster, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    return subprocess.run(argv, cwd=tmp_path, env=cluster, capture_output=True, text=True,
                          timeout=900)  # fmt: skip


def squeue(cluster, state: str = "RUNNING") -> list[str]:
    """The cluster's job ids in one state, one per array task (`1_0`, not `1_[0-1%2]`)."""
    out = subprocess.run(["squeue", "-h", "-r", "-t", state, "-o", "%i"], capture_output=True,
                         text=True, env=cluster).stdout  # fmt: skip
    return out.split()


def wait_for(predicate, timeout_s: float = 240, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1)


def child_runs(uri: str):
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["mnist-bench"], output_format="list")
    return [r for r in runs if "sweep_parent" not in r.data.tags]


def parent_run(uri: str):
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["mnist-bench"], output_format="list")
    return [r for r in runs if r.data.tags.get("sweep_parent") == "true"]


def test_make_slurm_up_and_down(tmp_path):
    """The documented targets start a cluster whose node is idle, and stop every daemon."""
    folder = tmp_path / "cluster"
    up = run_documented("make slurm-up", f"SLURM_DIR={folder}", cwd=ROOT)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"export SLURM_CONF={folder / 'slurm.conf'}" in up.stdout
        env = {**ENV, "SLURM_CONF": str(folder / "slurm.conf")}
        info = subprocess.run(["sinfo", "-h", "-o", "%T %c %m"], capture_output=True, text=True,
                              env=env).stdout.split()  # fmt: skip
        assert info[0] == "idle" and int(info[1]) >= 1
    finally:
        down = run_documented("make slurm-down", f"SLURM_DIR={folder}", cwd=ROOT)
    assert down.returncode == 0
    assert not any((folder / name).exists() for name in slurm.PIDS)


def test_the_compare_sweep_on_slurm_matches_the_serial_one(cluster, server, tmp_path):
    proc = sweep(cluster, tmp_path, server)
    assert proc.returncode == 0, proc.stderr[-3000:]
    on_slurm = finished_jobs(server)
    [parent] = parent_run(server)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep_outcome"] == "4 of 4 jobs finished"
    assert "Verdicts of sweep" in proc.stdout  # the sweep's end, as on any launcher
    logs = list((tmp_path / "submitit").rglob("*_log.out"))
    assert len(logs) == 4  # one log folder per SLURM job, where the docs say
    serial_uri = f"sqlite:///{tmp_path}/serial.db"
    serial = run_documented("mnist-bench -m +experiment=compare", *SMALL, f"tracking.uri={serial_uri}",
                            f"tracking.artifact_root={tmp_path}/serial", f"hydra.sweep.dir={tmp_path}/s",
                            cwd=tmp_path)  # fmt: skip
    assert serial.returncode == 0, serial.stderr[-3000:]
    assert finished_jobs(serial_uri).keys() == on_slurm.keys()  # the same config hashes
    for key, losses in finished_jobs(serial_uri).items():
        assert on_slurm[key] == pytest.approx(losses, rel=1e-6), key
    threads = {r.data.tags["threads"] for r in child_runs(server)}
    assert threads == {"2"}  # train.threads and cpus_per_task agree


def test_threads_beyond_the_allocation_are_one_line(cluster, server, tmp_path):
    proc = sweep(cluster, tmp_path, server, "seed=0", "implementation=numpy", cpus=1)
    assert proc.returncode == 1
    logs = "".join(p.read_text() for p in (tmp_path / "submitit").rglob("*_log.err"))
    message = ("train.threads=2 but this SLURM job has 1 CPU(s): set "
               "hydra.launcher.cpus_per_task=2, or train.threads=1 (or null)")  # fmt: skip
    assert message in logs + proc.stderr
    [parent] = parent_run(server)
    assert parent.info.status == "FAILED"


def test_scancel_of_a_running_job_is_a_hole_the_resume_fills(cluster, server, tmp_path):
    """A job cancelled mid-run: its run KILLED with the epochs so far, the parent FAILED with
    the count, the command non-zero, the audit names the hole and its command fills it."""
    long = ["train.epochs=40", "seed=0", "implementation=numpy"]
    proc = sweep(cluster, tmp_path, server, *long, wait=False)

    def epochs_logged() -> bool:
        runs = [r for r in child_runs(server) if r.info.status == "RUNNING"]
        return bool(runs) and mlflow.MlflowClient().get_metric_history(
            runs[0].info.run_id, "epoch/train_loss") != []  # fmt: skip

    wait_for(epochs_logged, what="a running job with an epoch")
    [job_id] = squeue(cluster)
    subprocess.run(["scancel", job_id], env=cluster, check=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    [run] = child_runs(server)
    assert run.info.status == "KILLED"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "epoch/train_loss")
    assert 1 <= len(history) < 40
    [parent] = parent_run(server)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["sweep_outcome"].startswith("0 of 1 jobs finished")
    store = ["--tracking-uri", server]
    assert audit_main(store) == 1
    # the hole's command is the sweep again: configs already FINISHED are skipped
    again = sweep(cluster, tmp_path, server, "train.epochs=2", "seed=0", "implementation=numpy")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len([r for r in child_runs(server) if r.info.status == "FINISHED"]) == 1


def test_a_job_past_its_time_limit_ends_killed(cluster, server, tmp_path):
    """submitit warns the job (USR2) before SLURM's time limit and does not requeue it: the
    run ends KILLED with its epochs and the reason in one line, the parent FAILED."""
    long = "train.epochs=20000"  # never done inside a minute (400 epochs once were, in CI)
    proc = sweep(cluster, tmp_path, server, long, "seed=0", "implementation=numpy", timeout_min=1)
    assert proc.returncode != 0
    [run] = child_runs(server)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"].startswith("stopped by SLURM (time limit or preemption)")
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "epoch/train_loss")
    assert 1 <= len(history) < 20000
    logs = "".join(p.read_text() for p in (tmp_path / "submitit").rglob("*_log.out"))
    assert "Traceback" not in logs
    [parent] = parent_run(server)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["sweep_outcome"].startswith("0 of 1 jobs finished")
    assert audit_main(["--tracking-uri", server]) == 1


def test_a_job_cancelled_before_it_started_is_missing_in_both_views(cluster, server, tmp_path):
    """Two jobs, one CPU-pair each: the second waits in the queue; cancelled there, it never
    wrote a run, and the launcher's failure and the store's hole agree."""
    proc = sweep(cluster, tmp_path, server, "train.epochs=20", "seed=0,1", "implementation=numpy",
                 wait=False)  # fmt: skip
    wait_for(
        lambda: squeue(cluster) and squeue(cluster, "PENDING"),
        what="a job pending behind one running",
    )
    [pending] = squeue(cluster, "PENDING")
    subprocess.run(["scancel", pending], env=cluster, check=True)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode != 0
    runs = child_runs(server)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    [parent] = parent_run(server)
    assert parent.info.status == "FAILED"
    assert "1 never started a run" in parent.data.tags["sweep_outcome"]


def test_a_requeued_job_leaves_one_finished_run(cluster, server, tmp_path):
    """`scontrol requeue` stops the running attempt (SIGTERM: its run ends KILLED) and runs the
    job again under the same id: one FINISHED run for the config, none RUNNING, and the sweep,
    which sees the job succeed, finishes."""
    proc = sweep(cluster, tmp_path, server, "train.epochs=60", "seed=0", "implementation=numpy",
                 wait=False)  # fmt: skip
    wait_for(lambda: any(r.info.status == "RUNNING" for r in child_runs(server)),
             what="a running job")  # fmt: skip
    [job_id] = squeue(cluster)
    subprocess.run(["scontrol", "requeue", job_id], env=cluster, check=True)
    out, err = proc.communicate(timeout=600)
    runs = child_runs(server)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"], err[-3000:]
    assert len({r.data.tags["config_hash"] for r in runs}) == 1
    assert proc.returncode == 0, err[-3000:]
    [parent] = parent_run(server)
    assert parent.info.status == "FINISHED"
    assert audit_main(["--tracking-uri", server]) == 0


def test_a_job_whose_server_is_gone_fails_in_one_line(cluster, tmp_path):
    """The tracking server stops while a job trains: the job and the command fail with one
    line, not a traceback. The run nobody could end stays RUNNING in the store; once the
    server is back, the audit names it as a hole (its process is gone) and the resume fills it."""
    store, artifacts = f"sqlite:///{tmp_path}/server.db", tmp_path / "server-artifacts"
    port = servers.free_port()
    server_proc = servers.start_server(store, artifacts, tmp_path / "server.log", port)
    uri = f"http://127.0.0.1:{port}"
    job = ["train.epochs=300", "seed=0", "implementation=numpy", "tracking.busy_timeout_s=5"]
    proc = sweep(cluster, tmp_path, uri, *job, wait=False)
    wait_for(lambda: any(r.info.status == "RUNNING" for r in child_runs(uri)), what="a run")
    servers.stop_server(server_proc)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode != 0
    assert "Traceback" not in err.strip().splitlines()[-1], err[-3000:]
    server_proc = servers.start_server(store, artifacts, tmp_path / "server2.log", port)
    try:
        assert [r.info.status for r in child_runs(uri)] == ["RUNNING"]
        assert audit_main(["--tracking-uri", uri]) == 1
        again = sweep(cluster, tmp_path, uri, *job[:-1])
        assert again.returncode == 0, again.stderr[-3000:]
        statuses = sorted(r.info.status for r in child_runs(uri))
        assert statuses.count("FINISHED") == 1 and "RUNNING" not in statuses, statuses
        # the first sweep's parent, stale like its job, is ended too: nothing left RUNNING
        assert "RUNNING" not in {r.info.status for r in parent_run(uri)}
    finally:
        servers.stop_server(server_proc)
