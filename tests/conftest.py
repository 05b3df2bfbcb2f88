"""Shared fixtures: the real datasets beside the checkout, an isolated cache, a real MLflow store."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    env = os.environ.get("MNIST_BENCH_DATA_DIR")
    for candidate in (Path(env) if env else None, ROOT.parent / "shared" / "data"):
        if candidate and (candidate / "mnist").is_dir():
            return candidate
    return None


DATA_ROOT = _data_root()
if DATA_ROOT is not None:  # before any test module copies the environment for its commands
    os.environ["MNIST_BENCH_DATA_DIR"] = str(DATA_ROOT)
# Tests never touch the user's cache (arrays, downloads, variants.json): set here, at import,
# because test modules copy the environment for the commands they run when they are imported
CACHE = tempfile.mkdtemp(prefix="mnist-bench-test-cache-")
os.environ["MNIST_BENCH_CACHE_DIR"] = CACHE
os.environ.pop("MLFLOW_TRACKING_URI", None)  # nor a tracking server of the user's
# The Ctrl-C tests send SIGINT to the commands they start, as a terminal does. A suite started
# in the background (`cmd &` in a script) inherits SIGINT ignored, and so would every command
# it starts, which then cannot be interrupted; catching it here gives them the default back.
signal.signal(signal.SIGINT, signal.default_int_handler)
# `make test` runs the suite; the `make ...` commands the tests run are typed in a shell, not
# sub-makes (which print "make[1]: Entering directory" first).
for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
    os.environ.pop(name, None)


@pytest.fixture(scope="session", autouse=True)
def isolated_env():
    """The tests' own cache is removed when the session ends."""
    yield
    shutil.rmtree(CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if DATA_ROOT is None:
        pytest.fail("the datasets are missing: set MNIST_BENCH_DATA_DIR (see README)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def mnist(data_root):
    from bench.data import load

    return load("mnist")
