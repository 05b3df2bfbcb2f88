"""Real servers the tests start on 127.0.0.1: a free port, and `mlflow server` over a store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.docs import documented
from tests.test_app import ENV


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(backend_store_uri: str, artifacts: Path, port: int) -> list[str]:
    """docs/scaling-out.md's `mlflow server`, on its own port, store and artifact folder."""
    return documented(
        "mlflow server --host 127.0.0.1 --port 5001 --backend-store-uri sqlite:///results/server.db --artifacts-destination results/server-artifacts",
        replace={"5001": str(port), "sqlite:///results/server.db": backend_store_uri,
                 "results/server-artifacts": str(artifacts)},
    )  # fmt: skip


def start_server(backend_store_uri: str, artifacts: Path, log_path: Path, port: int,
                 wait_s: float = 180) -> subprocess.Popen:  # fmt: skip
    """`mlflow server` on that port, once /health answers (else the test fails with its log)."""
    log = open(log_path, "a")
    proc = subprocess.Popen(
        server_command(backend_store_uri, artifacts, port),
        stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + wait_s
    while not _healthy(f"http://127.0.0.1:{port}"):
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_server(proc)
            pytest.fail(f"mlflow server did not start: {log_path.read_text()[-3000:]}")
        time.sleep(0.3)
    return proc


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """The server and its uvicorn workers (its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path, log_path: Path, wait_s: float = 180):
    """`mlflow server` on a free port over that store, with proxied artifacts; yields
    (uri, process) once /health answers, and stops the server and its uvicorn workers
    afterwards."""
    port = free_port()
    proc = start_server(backend_store_uri, artifacts, log_path, port, wait_s)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop_server(proc)


def _healthy(uri: str) -> bool:
    try:
        return requests.get(f"{uri}/health", timeout=2).ok
    except requests.ConnectionError:
        return False
