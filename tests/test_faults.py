"""Faults injected into real processes and real stores (issue 18: nothing lost, nothing false).

One test (at least) per family: data loss under a locked store and badly timed interrupts,
exit and parent status under every launcher, divergence, reports that must not overwrite each
other, dead servers, values that used to pass validation, sweeps racing on a new store.
Tests wait on what the process does (a line of its output, a row in the store), never on a
sleep; a SIGSTOP freezes a process where a test needs it to stay put."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from bench.tracking import store
from tests import servers
from tests.servers import free_port
from tests.test_app import ENV, command, compose_cfg, mnist_bench, runs_of

TINY = ["implementation=numpy", "dataset.n_train=1000", "train.epochs=2"]
WAIT_S = 300  # an upper bound for a busy host; every wait ends as soon as its event happens


def jobs_of(tmp_path):
    return [r for r in runs_of(tmp_path) if "sweep_parent" not in r.data.tags]


def parents_of(tmp_path):
    return [r for r in runs_of(tmp_path) if r.data.tags.get("sweep_parent") == "true"]


def start(tmp_path, *args, uri: str | None = None, group: bool = False) -> subprocess.Popen:
    """The command with its output in tmp_path/out.log (read by wait_for)."""
    cmd = command(tmp_path, *args)
    if uri:
        cmd = [a for a in cmd if not a.startswith("tracking.uri")] + [f"tracking.uri={uri}"]
    log = open(tmp_path / "out.log", "w")
    return subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env={**ENV, "PYTHONFAULTHANDLER": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=group,
    )


def wait_for(tmp_path, proc: subprocess.Popen, pattern: str) -> str:
    """Block until the command's output matches pattern; fail if it exits first."""
    deadline = time.monotonic() + WAIT_S
    path = tmp_path / "out.log"
    while time.monotonic() < deadline:
        text = path.read_text()
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {pattern!r}:\n{text[-3000:]}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"never printed {pattern!r}")


def finish(tmp_path, proc: subprocess.Popen, timeout: float = WAIT_S) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait()
        pytest.fail(
            f"still running after {timeout} s:\n{(tmp_path / 'out.log').read_text()[-8000:]}"
        )
    return (tmp_path / "out.log").read_text()


class StoreLock:
    """Another writer holding the SQLite store: an EXCLUSIVE transaction blocks every other
    reader and writer until release()."""

    def __init__(self, db: Path):
        self.conn = sqlite3.connect(db, isolation_level=None, timeout=60)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


def history(run, key="epoch/train_loss") -> list[int]:
    return sorted(m.step for m in MlflowClient().get_metric_history(run.info.run_id, key))


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("error:")]


# --- data loss


def test_a_store_locked_while_epochs_are_written_loses_nothing(tmp_path):
    assert mnist_bench(tmp_path, *TINY).returncode == 0  # the store exists
    proc = start(tmp_path, "implementation=numpy", "dataset.n_train=1000", "train.epochs=6")
    wait_for(tmp_path, proc, r"epoch 2/6")
    lock = StoreLock(tmp_path / "mlflow.db")
    try:  # epochs 3..6 and the end of the run are all written while the store is locked
        wait_for(tmp_path, proc, r"epoch 6/6")
    finally:
        lock.release()
    out = finish(tmp_path, proc)
    assert proc.returncode == 0, out[-3000:]
    run = max(jobs_of(tmp_path), key=lambda r: r.info.start_time)
    assert run.info.status == "FINISHED" and run.data.tags["history_verified"] == "true"
    for key in ("train_loss", "val_accuracy", "epoch_time_s"):
        assert history(run, f"epoch/{key}") == [1, 2, 3, 4, 5, 6], key


def test_a_store_locked_longer_than_writes_wait_never_ends_finished(tmp_path):
    assert mnist_bench(tmp_path, *TINY).returncode == 0
    proc = start(
        tmp_path, "implementation=numpy", "dataset.n_train=1000", "train.epochs=4",
        "tracking.busy_timeout_s=1",
    )  # fmt: skip
    wait_for(tmp_path, proc, r"epoch 2/4")
    lock = StoreLock(tmp_path / "mlflow.db")
    try:
        out = finish(tmp_path, proc)  # it gives up while the lock is held
    finally:
        lock.release()
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    assert error_lines(out), out[-3000:]
    run = max(jobs_of(tmp_path), key=lambda r: r.info.start_time)
    assert run.info.status != "FINISHED"
    # the next command on the store ends it FAILED (its process is gone), never FINISHED
    audit = subprocess.run(
        [sys.executable, "-m", "bench.commands.audit", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert audit.returncode == 2  # a single run, no sweep
    (again,) = [r for r in jobs_of(tmp_path) if r.info.run_id == run.info.run_id]
    assert again.info.status == "FAILED"


def test_an_error_while_logging_artifacts_fails_the_run(tmp_path):
    proc = start(tmp_path, "implementation=numpy", "dataset.n_train=1000", "train.epochs=30")
    wait_for(tmp_path, proc, r"epoch 1/30")
    # holding the store stops the job before it can verify its history and write its
    # predictions; meanwhile its artifact folder becomes a file
    lock = StoreLock(tmp_path / "mlflow.db")
    try:
        ((uri,),) = lock.conn.execute("SELECT artifact_uri FROM runs").fetchall()
        folder = Path(uri.removeprefix("file://"))
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
        folder.write_text("not a folder")
    finally:
        lock.release()
    out = finish(tmp_path, proc)
    assert proc.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    (run,) = jobs_of(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"]
    assert history(run) == list(range(1, 31))  # what it logged is kept


def test_a_second_ctrl_c_while_the_first_is_handled_still_ends_the_run_killed(tmp_path):
    assert mnist_bench(tmp_path, *TINY).returncode == 0
    proc = start(tmp_path, "implementation=numpy", "dataset.n_train=5000", "train.epochs=300")
    wait_for(tmp_path, proc, r"epoch 2/300")
    lock = StoreLock(tmp_path / "mlflow.db")  # keeps the first Ctrl-C's handling in progress
    try:
        proc.send_signal(signal.SIGINT)
        wait_for(tmp_path, proc, r"ending run \w+ KILLED")
        proc.send_signal(signal.SIGINT)  # while the run is being ended
    finally:
        lock.release()
    out = finish(tmp_path, proc)
    assert proc.returncode == 130, out[-3000:]
    run = max(jobs_of(tmp_path), key=lambda r: r.info.start_time)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "interrupted (SIGINT)"
    printed = len(re.findall(r"epoch \d+/300", out))
    assert len(history(run)) == printed  # every epoch it printed is stored


def test_ctrl_c_as_soon_as_the_run_row_exists_ends_it_killed(tmp_path):
    assert mnist_bench(tmp_path, *TINY).returncode == 0  # the store exists: polling it is safe
    proc = start(tmp_path, "implementation=numpy", "dataset.n_train=1000", "train.epochs=50")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.get_experiment_by_name("mnist-bench").experiment_id
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if len(client.search_runs([experiment_id])) == 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out = finish(tmp_path, proc)
    assert proc.returncode == 130, out[-3000:]
    run = max(jobs_of(tmp_path), key=lambda r: r.info.start_time)
    assert run.info.status == "KILLED"


def test_a_run_left_finished_without_its_metrics_is_a_hole_for_resume_and_audit(tmp_path):
    sweep = ["-m", "seed=0,1", *TINY]
    assert mnist_bench(tmp_path, *sweep).returncode == 0
    # what an older version's exit handler left: FINISHED, but without its final metrics
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (seed1,) = [r for r in jobs_of(tmp_path) if r.data.params["seed"] == "1"]
    db = sqlite3.connect(tmp_path / "mlflow.db")
    db.execute("DELETE FROM latest_metrics WHERE run_uuid = ? AND key = 'final/test_accuracy'",
               (seed1.info.run_id,))  # fmt: skip
    db.commit()
    db.close()
    audit = subprocess.run(
        [sys.executable, "-m", "bench.commands.audit", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert audit.returncode == 1, audit.stdout
    assert "INCOMPLETE seed=1" in audit.stdout
    rerun = mnist_bench(tmp_path, *sweep)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("skipped, already FINISHED") == 1  # seed 0 only
    assert len(client.search_runs([seed1.info.experiment_id], "params.seed = '1'")) == 2


# --- false claims: exit status and parent status


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]])
def test_a_refused_job_fails_the_command_and_the_parent_under_every_launcher(tmp_path, launcher):
    proc = mnist_bench(tmp_path, "-m", "optimizer.lr=0.001,-1", *TINY, *launcher)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: optimizer.lr=-1 must be a positive float" in proc.stderr
    (parent,) = parents_of(tmp_path)
    assert parent.info.status == "FAILED"
    outcome = parent.data.tags["sweep_outcome"]
    assert outcome.startswith("1 of 2 jobs finished; 1 did not"), outcome
    assert f"**Outcome:** {outcome}" in parent.data.tags["mlflow.note.content"]  # the summary
    (job,) = jobs_of(tmp_path)
    assert job.info.status == "FINISHED"


def test_a_sweep_that_finishes_says_so_on_its_parent(tmp_path):
    proc = mnist_bench(tmp_path, "-m", "seed=0,1", *TINY, "hydra/launcher=joblib")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (parent,) = parents_of(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep_outcome"] == "2 of 2 jobs finished"
    assert "**Outcome:** 2 of 2 jobs finished" in parent.data.tags["mlflow.note.content"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["optimizer.lr=1e9"],  # used to end FINISHED at a loss of 1e22
        ["optimizer=sgd", "optimizer.lr=1e3"],  # used to end FINISHED at chance accuracy
        ["optimizer=sgd", "optimizer.lr=1e3", "dataset.val_size=0"],  # no validation set
    ],
)
def test_a_blown_up_loss_fails_the_run_diverged(tmp_path, overrides):
    proc = mnist_bench(tmp_path, *TINY, *overrides)
    assert proc.returncode == 1, proc.stderr[-3000:]
    (run,) = jobs_of(tmp_path)
    assert run.info.status == "FAILED"
    reason = run.data.tags["failure_reason"]
    assert reason.startswith("diverged at epoch 1: ") and "x the untrained" in reason, reason
    assert proc.stderr.strip().splitlines()[-1] == f"error: custom-numpy-s0: {reason}"


def test_a_large_first_step_the_network_recovers_from_is_not_divergence(tmp_path):
    # rmsprop lr=0.1: the first epoch's mean training loss and its end-of-epoch validation loss
    # are 10-100x the untrained loss, and then it learns
    proc = mnist_bench(tmp_path, *TINY, "optimizer.lr=0.1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = jobs_of(tmp_path)
    assert run.info.status == "FINISHED"
    assert (
        max(m.value for m in MlflowClient().get_metric_history(run.info.run_id, "epoch/train_loss"))
        > 23
    )


def test_an_empty_sweep_is_refused(tmp_path):
    proc = mnist_bench(tmp_path, "-m", "seed=range(0,0)", *TINY)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: the sweep has no jobs (a swept key with no values?)"
    )
    assert not (tmp_path / "mlflow.db").exists()


# --- reports


def test_reports_of_two_sweeps_and_of_a_filter_stay_apart_and_inside_out(tmp_path):
    for seed in ("0", "1"):
        assert mnist_bench(tmp_path, "-m", f"seed={seed}", *TINY).returncode == 0
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "reports"
    sweep_ids = sorted(p.data.tags["sweep_id"] for p in parents_of(tmp_path))

    def report(*args):
        return subprocess.run(
            [sys.executable, "-m", "bench.commands.report", "--tracking-uri", uri, "--out", str(out),
             *args],
            capture_output=True, text=True, env=ENV, timeout=300,
        )  # fmt: skip

    for sweep_id in sweep_ids:
        assert report("--sweep-id", sweep_id).returncode == 0
    evil = report("--filter", "tags.preset = '../../escaped'")  # matches nothing
    assert evil.returncode == 1 and "no runs matching" in evil.stderr
    hostile = report("--filter", "tags.preset != '../../x'", "--name", "../../escaped")
    assert hostile.returncode == 0, hostile.stderr[-2000:]
    filtered = report("--filter", "params.seed = '1'")
    assert filtered.returncode == 0, filtered.stderr[-2000:]
    folders = sorted(p.name for p in out.iterdir())
    assert [f for f in folders if f in sweep_ids] == sweep_ids
    assert "escaped" in folders and any(f.startswith("filter-") for f in folders)
    assert not (tmp_path / "escaped").exists()
    for f in folders:
        assert (out / f / "report.md").exists()


# --- hangs: dead servers, unusable stores


@pytest.mark.parametrize("tool", ["bench", "bench.commands.audit", "bench.commands.report"])
def test_every_command_fails_in_seconds_in_one_line_on_a_dead_server(tmp_path, tool):
    dead = f"http://127.0.0.1:{free_port()}"
    if tool == "bench":
        cmd = [a for a in command(tmp_path, *TINY) if not a.startswith("tracking.uri")]
        cmd.append(f"tracking.uri={dead}")
    else:
        cmd = [sys.executable, "-m", tool, "--tracking-uri", dead]
    began = time.monotonic()
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120)
    assert time.monotonic() - began < 30
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "no MLflow server answers" in line


def dead_file(tmp_path) -> str:
    (tmp_path / "file").write_text("x")
    return f"sqlite:///{tmp_path}/file/mlflow.db"


def text_db(tmp_path) -> str:
    (tmp_path / "x.db").write_text("hello\n")
    return f"sqlite:///{tmp_path}/x.db"


@pytest.mark.parametrize(
    "make_uri,message",
    [
        (lambda p: "sqlite://", "an in-memory SQLite store keeps nothing"),
        (lambda p: "sqlite:///:memory:", "an in-memory SQLite store keeps nothing"),
        (dead_file, "a parent of it is a file"),
        (text_db, "is not a SQLite database"),
        (lambda p: str(p / "mlruns"), "MLflow 3 has no file store"),
        (lambda p: f"file:{p}/mlruns", "MLflow 3 has no file store"),
        (lambda p: "postgresql+pg8000://u:p@127.0.0.1:1/db", "its driver pg8000 is not installed"),
        (lambda p: f"postgresql://u:p@127.0.0.1:{free_port()}/db", "cannot connect"),
        (lambda p: "mysql://u:p@127.0.0.1:1/db", "its driver MySQLdb is not installed"),
        (lambda p: "sqlite:////proc/mlflow.db", "cannot create /proc/mlflow.db.lock"),
    ],
)
def test_an_unusable_store_is_refused_in_one_line(tmp_path, make_uri, message):
    uri = make_uri(tmp_path)
    cmd = [a for a in command(tmp_path, *TINY) if not a.startswith("tracking.uri")]
    proc = subprocess.run(
        [*cmd, f"tracking.uri={uri}"], cwd=tmp_path, capture_output=True, text=True, env=ENV,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "epoch" not in proc.stdout
    (line,) = error_lines(proc.stderr)
    assert message in line, line
    assert "test accuracy" not in proc.stdout


def test_reading_commands_never_create_a_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/none/mlflow.db"
    for tool in ("bench.commands.audit", "bench.commands.report"):
        proc = subprocess.run(
            [sys.executable, "-m", tool, "--tracking-uri", uri, "--out", str(tmp_path / "r")]
            if tool.endswith("cli") else [sys.executable, "-m", tool, "--tracking-uri", uri],
            capture_output=True, text=True, env=ENV, timeout=120,
        )  # fmt: skip
        assert proc.returncode != 0
        assert error_lines(proc.stderr) == [f"error: no MLflow store at {uri} "
                                            f"({tmp_path}/none/mlflow.db does not exist)"]  # fmt: skip
    assert not (tmp_path / "none").exists()


def test_reading_commands_never_write_into_a_file_that_is_no_mlflow_store(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("create table mydata (a)")
    (tmp_path / "empty.db").write_bytes(b"")
    expected = {"other.db": "is a SQLite database of something else (mydata), not an MLflow store",
                "empty.db": "holds no tables"}  # fmt: skip
    for name, message in expected.items():
        before = (tmp_path / name).read_bytes()
        for tool in ("bench.commands.audit", "bench.commands.report"):
            proc = subprocess.run(
                [sys.executable, "-m", tool, "--tracking-uri", f"sqlite:///{tmp_path}/{name}"],
                cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=120,
            )  # fmt: skip
            assert proc.returncode != 0
            (line,) = error_lines(proc.stderr)
            assert message in line, line
        assert (tmp_path / name).read_bytes() == before  # untouched: no MLflow tables added


def test_a_report_of_part_of_a_sweep_never_rewrites_the_sweeps_summary(tmp_path):
    assert mnist_bench(tmp_path, "-m", "implementation=numpy,jax", *TINY[1:]).returncode == 0
    (parent,) = parents_of(tmp_path)
    sweep_id, note = parent.data.tags["sweep_id"], parent.data.tags["mlflow.note.content"]
    base = [sys.executable, "-m", "bench.commands.report", "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db", "--out", str(tmp_path / "r")]  # fmt: skip
    run = lambda *a: subprocess.run([*base, *a], capture_output=True, text=True, env=ENV,  # noqa: E731
                                    timeout=300)  # fmt: skip
    part = run("--sweep-id", sweep_id, "--filter", "tags.implementation = 'numpy'")
    assert part.returncode == 0, part.stderr[-2000:]
    assert "updated the summary" not in part.stdout
    written = next((tmp_path / "r").glob(f"{sweep_id}-filter-*/report.md")).read_text()
    assert f"sweep {sweep_id}" in written and "filtered by" in written
    (after,) = parents_of(tmp_path)
    assert after.data.tags["mlflow.note.content"] == note
    both = run("--all", "--sweep-id", sweep_id)
    assert both.returncode == 2 and "give it without --sweep-id or --filter" in both.stderr


@pytest.mark.parametrize(
    "override,message",
    [
        ("implementation=mxnet", "implementation 'mxnet' does not exist; allowed: jax, keras,"),
        ("+experiment=../x", "experiment '../x' does not exist; allowed: compare,"),
    ],
)
def test_a_choice_that_does_not_exist_is_one_line(tmp_path, override, message):
    proc = mnist_bench(tmp_path, override, *TINY[1:])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert message in line, line
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sweep-id", "x' or '1'='1"], "is not a sweep id"),
        (["--filter", "bogus((("], "is not an MLflow filter"),
        (["--filter", "attributes.status = 'FAILED'"], "no FINISHED run to report (1 FAILED)"),
    ],
)
def test_bad_report_selections_fail_in_one_line(tmp_path, args, message):
    assert mnist_bench(tmp_path, *TINY).returncode == 0
    assert mnist_bench(tmp_path, *TINY, "optimizer.lr=1e9").returncode == 1
    proc = subprocess.run(
        [sys.executable, "-m", "bench.commands.report", "--tracking-uri",
         f"sqlite:///{tmp_path}/mlflow.db", "--out", str(tmp_path / "r"), *args],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    (line,) = error_lines(proc.stderr)
    assert message in line and "Traceback" not in proc.stderr


def test_a_server_killed_mid_sweep_ends_the_command_in_seconds(tmp_path, mlflow_server):
    uri, server = mlflow_server
    sweep = ["-m", "seed=0,1,2", "implementation=numpy", "dataset.n_train=5000", "train.epochs=300",
             "tracking.busy_timeout_s=5"]  # fmt: skip
    proc = start(tmp_path, *sweep, uri=uri)
    wait_for(tmp_path, proc, r"epoch 2/300")
    os.killpg(server.pid, signal.SIGKILL)  # the server and its uvicorn workers
    server.wait()
    began = time.monotonic()
    out = finish(tmp_path, proc)
    assert time.monotonic() - began < 120
    assert proc.returncode == 1
    assert "Traceback" not in out
    assert error_lines(out)


def restartable_server(tmp_path) -> tuple[str, callable]:
    """A real tracking server on a fixed port; returns its uri and a function that starts it
    (again) on the same port and store."""
    port, store = free_port(), f"sqlite:///{tmp_path}/server.db"
    return f"http://127.0.0.1:{port}", lambda: servers.start_server(
        store, tmp_path / "server-artifacts", tmp_path / "server.log", port, wait_s=WAIT_S
    )


def server_runs(uri: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mnist-bench").experiment_id
    return client, client.search_runs([experiment])


def test_a_server_restarted_mid_run_loses_nothing(tmp_path):
    """Killed and started again on the same port while the job writes its epochs: the job
    says it waits (in seconds), then ends FINISHED with its whole history."""
    uri, start_server = restartable_server(tmp_path)
    server = start_server()
    try:
        args = ["implementation=numpy", "dataset.n_train=2000", "train.epochs=40"]
        proc = start(tmp_path, *args, "tracking.busy_timeout_s=120", uri=uri)
        wait_for(tmp_path, proc, r"epoch 2/40")
        servers.stop_server(server, signal.SIGKILL)
        down = time.monotonic()
        wait_for(tmp_path, proc, "tracking server not answering")
        assert time.monotonic() - down < 20  # said while it waits, not after
        time.sleep(7)  # the outage itself
        server = start_server()
        out = finish(tmp_path, proc)
        assert proc.returncode == 0, out[-3000:]
        assert "tracking server answers again" in out
        client, runs = server_runs(uri)
        (run,) = runs
        assert run.info.status == "FINISHED"
        steps = sorted(
            m.step for m in client.get_metric_history(run.info.run_id, "epoch/train_loss")
        )
        assert steps == list(range(1, 41))
    finally:
        servers.stop_server(server)


def answer_cut_off_server() -> tuple[str, callable]:
    """A real HTTP server on 127.0.0.1 that dies while answering: it promises a body and
    closes after its headers, as a killed `mlflow server` can. Returns its uri and a stop."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 2\r\n\r\n")  # fmt: skip

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", listener.close


def test_an_answer_cut_off_mid_read_is_a_server_to_wait_for():
    """CI once saw a server killed while it answered an epoch's log-batch: MLflow's client
    raised 'Connection broken: IncompleteRead', and the run failed instead of waiting."""
    uri, stop = answer_cut_off_server()
    try:
        with pytest.raises(Exception) as cut:
            MlflowClient(uri).log_batch("0" * 32, metrics=[Metric("loss", 1.0, 0, 1)])
    finally:
        stop()
    assert "IncompleteRead" in str(cut.value) or "Connection broken" in str(cut.value)
    assert store.is_unreachable(cut.value)
    assert not store.is_unreachable(mlflow.exceptions.MlflowException("Run '0' not found"))


def test_a_server_restarted_mid_sweep_loses_no_job(tmp_path):
    uri, start_server = restartable_server(tmp_path)
    server = start_server()
    try:
        sweep = ["-m", "seed=0,1,2", "implementation=numpy", "dataset.n_train=2000",
                 "train.epochs=20"]  # fmt: skip
        proc = start(tmp_path, *sweep, uri=uri)
        wait_for(tmp_path, proc, r"epoch 2/20")
        servers.stop_server(server, signal.SIGKILL)
        wait_for(tmp_path, proc, "tracking server not answering")
        time.sleep(14)  # the outage, long enough for a job to start while it lasts
        server = start_server()
        out = finish(tmp_path, proc)
        assert proc.returncode == 0, out[-3000:]
        assert "sweep: 3 of 3 jobs finished" in out and "could not end run" not in out
        _, runs = server_runs(uri)
        assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4  # 3 jobs and the parent
    finally:
        servers.stop_server(server)


def test_a_hung_server_is_reported_within_seconds(tmp_path, mlflow_server):
    """A server that stops answering with its port open: the job says so within seconds
    of its first unanswered write, and goes on once the server does."""
    uri, server = mlflow_server
    proc = start(tmp_path, *TINY[:2], "train.epochs=30", uri=uri)
    wait_for(tmp_path, proc, r"epoch 2/30")
    os.killpg(server.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_for(tmp_path, proc, "tracking server not answering")
        assert time.monotonic() - stopped < 30
    finally:
        os.killpg(server.pid, signal.SIGCONT)
    out = finish(tmp_path, proc)
    assert proc.returncode == 0, out[-3000:]


def test_credentials_of_every_shape_stay_out_of_a_servers_runs_and_the_console(
    tmp_path, mlflow_server
):
    """A password holding "@" and ":" (clients split at the last "@"), through a real server
    (it ignores basic auth): the sweep works, the secret is in no line printed, no stored
    param or tag, no file the sweep or its report wrote; the link is the server's own UI."""
    uri, _ = mlflow_server
    secret = "pa@ss:w0rd"
    with_secret = uri.replace("http://", f"http://user:{secret}@")
    cmd = [
        a for a in command(tmp_path, "-m", "seed=0,1", *TINY) if not a.startswith("tracking.uri")
    ]
    proc = subprocess.run([*cmd, f"tracking.uri='{with_secret}'"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout + proc.stderr
    assert "pa@ss" not in printed and "w0rd" not in printed
    assert f"MLflow runs: {uri}/#/experiments/" in proc.stdout and "mlflow ui" not in printed
    report = subprocess.run(
        [sys.executable, "-m", "bench.commands.report", "--tracking-uri", with_secret,
         "--out", str(tmp_path / "reports"), "--with-paths"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    assert "w0rd" not in report.stdout + report.stderr
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name(
        "mnist-bench").experiment_id])  # fmt: skip
    assert len(runs) == 3
    for r in runs:
        assert "w0rd" not in repr(r.data.params) + repr(r.data.tags), r.info.run_name
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix not in (".db", ".png",
               ".npz", ".pkl", ".keras", ".log")]  # fmt: skip
    assert any(p.name == "config.yaml" for p in written)
    for p in written:
        text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", p.read_text(errors="replace"))
        assert "w0rd" not in text, p  # an embedded picture's base64 can spell it by chance


def test_an_artifact_root_under_a_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "a-file").write_text("x")
    cmd = [a for a in command(tmp_path, *TINY) if not a.startswith("tracking.artifact_root")]
    cmd.append(f"tracking.artifact_root={tmp_path}/a-file/artifacts")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "artifact root" in line and "a parent of it is a file" in line
    assert not jobs_of(tmp_path)  # refused before any run existed


def test_a_report_names_the_runs_whose_artifacts_are_gone(tmp_path):
    assert mnist_bench(tmp_path, "-m", "seed=0,1", *TINY).returncode == 0
    gone = next(r for r in jobs_of(tmp_path) if r.data.params["seed"] == "0")
    Path(gone.info.artifact_uri.removeprefix("file://"), "predictions.npz").unlink()
    out = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.commands.report", "--tracking-uri",
         f"sqlite:///{tmp_path}/mlflow.db", "--out", str(out), "--name", "r"],
        cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "r" / "report.md").read_text()
    assert f"Artifacts missing from the store: {gone.info.run_name} (predictions.npz)" in text


def test_a_report_into_a_file_is_refused_in_one_line(tmp_path):
    assert mnist_bench(tmp_path, *TINY).returncode == 0
    (tmp_path / "out").write_text("a file")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.commands.report", "--tracking-uri",
         f"sqlite:///{tmp_path}/mlflow.db", "--all", "--out", str(tmp_path / "out")],
        cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: --out {tmp_path / 'out'} is a file, not a folder"


# --- concurrency


def test_two_sweeps_started_together_on_a_new_store_both_land(tmp_path):
    procs = []
    for seeds in ("0,1", "2,3"):
        where = tmp_path / seeds.replace(",", "")
        where.mkdir()
        cmd = [a for a in command(where, "-m", f"seed={seeds}", *TINY) if "tracking." not in a]
        cmd += [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                f"tracking.artifact_root={tmp_path}/artifacts"]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=where, env=ENV, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    for p in procs:
        err = p.communicate(timeout=WAIT_S)[1]
        assert p.returncode == 0, err[-3000:]
    parents = parents_of(tmp_path)
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    jobs = jobs_of(tmp_path)
    assert sorted(r.data.params["seed"] for r in jobs) == ["0", "1", "2", "3"]
    assert {r.info.status for r in jobs} == {"FINISHED"}
    for parent in parents:
        assert mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/sweep_grid.json")["jobs"]


def test_an_interrupted_joblib_sweep_leaves_nothing_running(tmp_path):
    sweep = ["-m", "seed=0,1", "implementation=numpy", "dataset.n_train=5000", "train.epochs=300",
             "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]  # fmt: skip
    proc = start(tmp_path, *sweep, group=True)
    for seed in (0, 1):  # each worker has its run (created before the data is loaded)
        wait_for(tmp_path, proc, rf"custom-numpy-s{seed}: mnist from")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
    out = finish(tmp_path, proc)
    assert proc.returncode == 130, out[-3000:]
    runs = runs_of(tmp_path)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert {r.info.status for r in runs} == {"KILLED"}, [
        (r.info.run_name, r.info.status) for r in runs
    ]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real tracking server on 127.0.0.1 with a SQLite backend; (uri, process)."""
    store = f"sqlite:///{tmp_path}/server.db"
    with servers.mlflow_server(
        store, tmp_path / "server-artifacts", tmp_path / "server.log", wait_s=WAIT_S
    ) as server:
        yield server


def test_bad_values_that_used_to_pass_are_refused_before_any_run(tmp_path, capsys):
    """The in-process counterpart of BAD_OVERRIDES for values whose check needs the machine."""
    from bench.commands.train import run
    from bench.job.settings import usable_cores
    from bench.tracking.sweep_env import FAILURES

    cfg = compose_cfg(
        f"train.threads={usable_cores() + 1}", f"tracking.uri=sqlite:///{tmp_path}/m.db"
    )
    FAILURES.clear()
    assert run(cfg) is None
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: train.threads={usable_cores() + 1} is more than the {usable_cores()} cores this "
        f"process may use; allowed: 1..{usable_cores()} or null (all of them)"
    )
    assert not (tmp_path / "m.db").exists()
    FAILURES.clear()
