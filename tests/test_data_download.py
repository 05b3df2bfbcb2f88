"""The download path against real HTTP servers on 127.0.0.1: good files, and a tampered one."""

from __future__ import annotations

import functools
import gzip
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from bench.data import DataError, load


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(folder) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def empty_places(tmp_path, monkeypatch):
    """Nothing on disk anywhere, so the loader has to download into the cache."""
    import bench.data.loader as loader

    monkeypatch.delenv("MNIST_BENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("MNIST_BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(loader, "SYSTEM_DIRS", ())
    return tmp_path / "cache"


def test_download_fills_the_cache_and_loads(data_root, serve, empty_places, mnist):
    url = serve(data_root / "mnist")
    ds = load("mnist", mirrors=[url], progress=False)
    assert ds.source == str(empty_places / "mnist")
    assert np.array_equal(ds.y_test, mnist.y_test)
    assert sorted(p.name for p in (empty_places / "mnist").iterdir()) == sorted(
        p.name for p in (data_root / "mnist").iterdir() if p.suffix == ".gz"
    )


def test_tampered_mirror_is_rejected_and_next_mirror_used(data_root, serve, empty_places, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(data_root / "mnist", tampered)
    labels = tampered / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(labels.read_bytes()))
    data[100] = (data[100] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(data)))

    bad_url = serve(tampered)
    with pytest.raises(DataError, match="checksum mismatch"):
        load("mnist", mirrors=[bad_url], progress=False)
    left = list((empty_places / "mnist").iterdir())
    assert "t10k-labels-idx1-ubyte.gz" not in [p.name for p in left]
    assert not [p for p in left if p.name.endswith(".part")]

    good_url = serve(data_root / "mnist")
    ds = load("mnist", mirrors=[bad_url, good_url], progress=False)
    assert ds.y_test.shape == (10000,)


def test_download_switched_off_or_unreachable(empty_places):
    with pytest.raises(DataError, match="not found; looked in"):
        load("mnist", download=False)
    with pytest.raises(DataError, match="download of mnist .* failed"):
        load("mnist", mirrors=["http://127.0.0.1:9/"], progress=False)
