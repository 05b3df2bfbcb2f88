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


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path, log_path: Path, wait_s: float = 180):
    """`mlflow server` on a free port over that store, with proxied artifacts; yields
    (uri, process) once /health answers (else fails the test with the server's log), and
    stops the server and its uvicorn workers afterwards."""
    port = free_port()
    command = documented(  # docs/scaling-out.md's server, on its own port, store and folder
        "mlflow server --host 127.0.0.1 --port 5001 --backend-store-uri sqlite:///results/server.db --artifacts-destination results/server-artifacts",
        replace={"5001": str(port), "sqlite:///results/server.db": backend_store_uri,
                 "results/server-artifacts": str(artifacts)},
    )  # fmt: skip
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=ENV, start_new_session=True
        )
        uri = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + wait_s
            while not _healthy(uri):
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"mlflow server did not start: {log_path.read_text()[-3000:]}")
                time.sleep(0.3)
            yield uri, proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def _healthy(uri: str) -> bool:
    try:
        return requests.get(f"{uri}/health", timeout=2).ok
    except requests.ConnectionError:
        return False
