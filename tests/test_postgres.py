"""A real PostgreSQL backend: a server started from Debian's `postgresql` binaries on a temp data
dir, `mlflow server` on it, and two sweeps at once (one with the joblib launcher): every run
and every metric point lands, nothing is left RUNNING. Skipped only where the PostgreSQL
binaries or the driver (the `postgres` extra) are absent."""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from tests import servers
from tests.servers import free_port
from tests.test_app import ENV, command

TINY = ["implementation=numpy", "dataset.n_train=1000", "train.epochs=2"]
PER_EPOCH = tuple(
    f"epoch/{k}"
    for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_time_s")
)


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: CI runs as root, so drop to the postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextlib.contextmanager
def cluster(password: str | None = None):
    """A fresh PostgreSQL cluster on 127.0.0.1 with a database `mlflow`: its URI. With a
    password, TCP logins need it (scram-sha-256); without, they are trusted."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql)")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("the postgres extra is not installed: pip install 'mnist-bench[postgres]'")
    data = Path(tempfile.mkdtemp(prefix="mnist-bench-pg-"))  # not under a root-only folder
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    auth = ["--auth=trust"]
    if password:
        (data / "pw").write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(data / "pw", "postgres", "postgres")
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={data / 'pw'}"]
    port = free_port()
    subprocess.run(
        as_postgres([initdb, "-D", str(data / "db"), "-U", "postgres", *auth, "-E", "UTF8"]),
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-h 127.0.0.1 -p {port} -k {data}"
    subprocess.run(
        as_postgres([pg_ctl, "-D", str(data / "db"), "-o", options, "-l", str(data / "log"),
                     "-w", "-t", "120", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    login = f"postgres:{password}" if password else "postgres"
    try:
        import psycopg

        with psycopg.connect(
            f"postgresql://{login}@127.0.0.1:{port}/postgres", autocommit=True
        ) as c:
            c.execute("CREATE DATABASE mlflow")
        yield f"postgresql://{login}@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(as_postgres([pg_ctl, "-D", str(data / "db"), "-m", "fast", "-w", "stop"]),
                       capture_output=True)  # fmt: skip
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    """postgresql+psycopg://postgres@127.0.0.1:PORT/mlflow on a fresh cluster."""
    with cluster() as uri:
        yield uri


@pytest.fixture
def server_on_postgres(postgres, tmp_path):
    store = postgres.replace("postgresql://", "postgresql+psycopg://")
    log = tmp_path / "server.log"
    with servers.mlflow_server(store, tmp_path / "server-artifacts", log, wait_s=300) as (uri, _):
        yield uri


def sweep_cmd(where: Path, uri: str, *args: str) -> list[str]:
    where.mkdir()
    cmd = [a for a in command(where, *args) if not a.startswith("tracking.uri")]
    return [*cmd, f"tracking.uri={uri}"]


def assert_all_landed(uri: str, jobs: int, parents: int) -> None:
    mlflow.set_tracking_uri(uri.replace("postgresql://", "postgresql+psycopg://"))
    client = MlflowClient()
    runs = mlflow.search_runs(experiment_names=["mnist-bench"], output_format="list")
    assert not [r.info.run_name for r in runs if r.info.status != "FINISHED"]
    found = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    children = [r for r in runs if r not in found]
    assert len(found) == parents and len(children) == jobs
    for r in children:
        assert r.data.tags["history_verified"] == "true"
        for key in PER_EPOCH:
            steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, key))
            assert steps == [1, 2], (r.info.run_name, key, steps)
        assert "final/test_accuracy" in r.data.metrics


def test_two_sweeps_at_once_through_a_server_on_postgres(tmp_path, server_on_postgres):
    uri = server_on_postgres
    procs = [
        subprocess.Popen(
            sweep_cmd(tmp_path / "serial", uri, "-m", "seed=0,1", *TINY),
            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ),
        subprocess.Popen(
            sweep_cmd(tmp_path / "joblib", uri, "-m", "seed=2,3", *TINY,
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ),
    ]  # fmt: skip
    for p in procs:
        err = p.communicate(timeout=600)[1]
        assert p.returncode == 0, err[-3000:]
    assert_all_landed(uri, jobs=4, parents=2)


def test_a_sweep_straight_on_postgres(tmp_path, postgres):
    """tracking.uri=postgresql://...: the psycopg driver of the postgres extra is used."""
    where = tmp_path / "direct"
    # its own experiment: the server's experiment keeps its artifacts behind the server
    cmd = sweep_cmd(where, postgres, "-m", "seed=4,5", *TINY, "tracking.experiment=direct")
    proc = subprocess.run(cmd, cwd=where, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mlflow.set_tracking_uri(postgres.replace("postgresql://", "postgresql+psycopg://"))
    runs = mlflow.search_runs(experiment_names=["direct"], output_format="list")
    assert {r.info.status for r in runs} == {"FINISHED"} and len(runs) == 3  # 2 jobs, 1 parent
    for r in runs:
        if "sweep_parent" not in r.data.tags:
            steps = MlflowClient().get_metric_history(r.info.run_id, "epoch/train_loss")
            assert sorted(m.step for m in steps) == [1, 2]


PASSWORD = "s3cret-pw-4711"


def test_a_password_in_the_tracking_uri_never_leaves_the_process(tmp_path):
    """A PostgreSQL user with a password, typed into tracking.uri as the scaling-out page
    suggests: the sweep and its report work, and the password is in no param, tag, artifact,
    report file or line the commands print; a wrong one is refused without being echoed."""
    with cluster(PASSWORD) as uri:
        where = tmp_path / "sweep"
        cmd = sweep_cmd(where, uri, "-m", "seed=0,1", *TINY)
        proc = subprocess.run(cmd, cwd=where, env=ENV, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "postgres:***@" in proc.stdout  # the printed report command, masked
        report = subprocess.run(
            [sys.executable, "-m", "bench.commands.report", "--tracking-uri", uri,
             "--out", str(tmp_path / "reports"), "--name", "r"],
            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert report.returncode == 0, report.stderr[-3000:]
        printed = proc.stdout + proc.stderr + report.stdout + report.stderr
        assert PASSWORD not in printed
        mlflow.set_tracking_uri(uri.replace("postgresql://", "postgresql+psycopg://"))
        runs = mlflow.search_runs(experiment_names=["mnist-bench"], output_format="list")
        assert len(runs) == 3
        for r in runs:
            assert PASSWORD not in repr(r.data.params) + repr(r.data.tags), r.info.run_name
        stored = [p for p in where.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json")]
        stored += [p for p in (tmp_path / "reports").rglob("*") if p.is_file()]
        assert any(p.name == "config.yaml" for p in stored)
        assert any(p.name == "sweep_grid.json" for p in stored)
        for p in stored:
            assert PASSWORD not in p.read_text(errors="replace"), p
        wrong = uri.replace(PASSWORD, "not-the-pw-0815")
        bad = subprocess.run(sweep_cmd(tmp_path / "bad", wrong, *TINY), cwd=tmp_path, env=ENV,
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert bad.returncode == 1 and "not-the-pw-0815" not in bad.stdout + bad.stderr
        assert "cannot connect" in bad.stderr and "Traceback" not in bad.stderr
