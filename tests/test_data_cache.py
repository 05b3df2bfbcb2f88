"""The decoded-array cache: verified against the catalog on every load, rebuilt when it lies,
and safe to fill from several processes at once."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.data import load
from bench.data.catalog import DATASETS
from bench.data.loader import _entry_paths, _read_verified
from tests.conftest import ROOT

SPLITS = ("x_train", "y_train", "x_test", "y_test")


@pytest.fixture(scope="module")
def canonical(data_root):
    return load("mnist", cache=False)


@pytest.fixture(scope="module")
def filled_cache(data_root, tmp_path_factory) -> Path:
    """A cache holding both mnist splits, built once; tests work on copies of it."""
    root = tmp_path_factory.mktemp("filled")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNIST_BENCH_CACHE_DIR", str(root))
        load("mnist")
    return root


@pytest.fixture
def arrays_dir(filled_cache, tmp_path, monkeypatch) -> Path:
    shutil.copytree(filled_cache, tmp_path / "cache")
    monkeypatch.setenv("MNIST_BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "arrays"


def entry(arrays_dir: Path, split: str, part: str) -> Path:
    return _entry_paths(arrays_dir, DATASETS["mnist"], split)["xy".index(part)]


def replace_file(path: Path, write) -> None:
    """Put new content under the same name (by rename: the old file may still be mapped)."""
    tmp = path.with_name("tampered.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def assert_canonical(ds, canonical) -> None:
    for name in SPLITS:
        assert np.array_equal(getattr(ds, name), getattr(canonical, name)), name


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_warm_load_is_served_from_the_cache_without_a_rebuild(arrays_dir, canonical, caplog):
    files = sorted(arrays_dir.glob("*.npy"))
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files]
    ds = load("mnist")
    assert isinstance(ds.x_train, np.memmap) and isinstance(ds.y_test, np.memmap)
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files] == before
    assert warnings_of(caplog) == []
    assert_canonical(ds, canonical)


def test_rewritten_cached_label_is_caught_and_the_cache_rebuilt(arrays_dir, canonical, caplog):
    path = entry(arrays_dir, "train", "y")
    labels = np.load(path)
    assert labels[0] == 5
    labels[0] = 3
    replace_file(path, lambda f: np.save(f, labels))

    ds = load("mnist")
    assert ds.y_train[0] == 5
    assert_canonical(ds, canonical)
    (warning,) = warnings_of(caplog)
    assert path.name in warning and "differs from the catalog sha256" in warning
    assert "\n" not in warning
    assert np.load(path)[0] == 5  # the entry on disk is canonical again
    caplog.clear()
    load("mnist")
    assert warnings_of(caplog) == []


def _save(array_of):
    return lambda path: replace_file(path, lambda f: np.save(f, array_of(np.load(path))))


def _raw(change):
    def damage(path: Path) -> None:
        data = path.read_bytes()
        replace_file(path, lambda f: f.write(change(data)))

    return damage


DAMAGE = {
    "wrong shape": ("y", _save(lambda y: y[:-1]), "(9999,), expected uint8 (10000,)"),
    "wrong dtype": ("y", _save(lambda y: y.astype(np.int64)), "int64 (10000,), expected uint8"),
    "fortran order": ("x", _save(np.asfortranarray), "in C order"),
    "values changed, shape kept": ("x", _save(lambda x: 255 - x), "differs from the catalog"),
    "corrupt header": ("y", _raw(lambda b: b[:8] + b"{'descr': garbage" + b[25:]), "unreadable"),
    "truncated": ("x", _raw(lambda b: b[: len(b) // 2]), "unreadable"),
    "not an npy file": ("y", _raw(lambda b: b"hello"), "unreadable"),
    "pickled object array": (
        "y",
        lambda path: replace_file(
            path, lambda f: np.save(f, np.array([{}] * 3), allow_pickle=True)
        ),
        "unreadable",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_cache_entry_is_rebuilt_from_the_idx_files(arrays_dir, canonical, caplog, case):
    part, damage, reason = DAMAGE[case]
    path = entry(arrays_dir, "test", part)
    damage(path)
    ds = load("mnist")
    assert_canonical(ds, canonical)
    (warning,) = warnings_of(caplog)
    assert path.name in warning and reason in warning and "\n" not in warning
    arrays, problem = _read_verified(
        _entry_paths(arrays_dir, DATASETS["mnist"], "test"), DATASETS["mnist"], "test"
    )
    assert problem is None and arrays is not None


@pytest.fixture(scope="module")
def pristine_labels(filled_cache) -> Path:
    return entry(filled_cache / "arrays", "test", "y")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6))
def test_any_mutated_cache_file_is_refused_or_canonical(
    filled_cache, pristine_labels, canonical, tmp_path_factory, edits
):
    """Byte edits in and after the .npy header: never an exception, never wrong labels."""
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copy(entry(filled_cache / "arrays", "test", "x"), folder)
    data = bytearray(pristine_labels.read_bytes())
    for offset, value in edits:
        data[offset] = value
    entry(folder, "test", "y").write_bytes(bytes(data))
    arrays, problem = _read_verified(
        _entry_paths(folder, DATASETS["mnist"], "test"), DATASETS["mnist"], "test"
    )
    if arrays is None:
        assert problem and "\n" not in problem
    else:
        assert np.array_equal(arrays[1], canonical.y_test)
    shutil.rmtree(folder)


def test_unusable_cache_folder_only_costs_speed(data_root, canonical, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MNIST_BENCH_CACHE_DIR", str(blocker / "cache"))
    assert_canonical(load("mnist"), canonical)


def test_leftover_partial_file_of_a_dead_writer_is_removed(data_root, tmp_path, monkeypatch):
    arrays = tmp_path / "cache" / "arrays"
    arrays.mkdir(parents=True)
    leftover = arrays / ".mnist-test-0123456789abcdef-x.npy.k3j2.part"
    leftover.write_bytes(b"half a file")
    monkeypatch.setenv("MNIST_BENCH_CACHE_DIR", str(tmp_path / "cache"))
    load("mnist")
    assert not leftover.exists()
    assert (
        sorted(p.name.split("-")[1] for p in arrays.glob("*.npy")) == ["test"] * 2 + ["train"] * 2
    )


CHILD = """
import hashlib, logging, sys, time
from pathlib import Path
import numpy as np
from bench.data import load
logging.basicConfig(level=logging.INFO, format="%(message)s")
go, data_dir = Path(sys.argv[1]), sys.argv[2]
while not go.exists():
    time.sleep(0.005)
ds = load("mnist", data_dir=data_dir or None, progress=False)
digest = hashlib.sha256()
for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
    digest.update(np.ascontiguousarray(a))
print(digest.hexdigest())
"""


def test_concurrent_loads_on_an_empty_cache_build_it_once(data_root, canonical, tmp_path):
    """Four processes, two source folders, one empty cache: all get the canonical arrays, and
    the lock makes exactly one of them write each split."""
    copy = tmp_path / "copy"
    shutil.copytree(data_root / "mnist", copy)
    cache, go = tmp_path / "cache", tmp_path / "go"
    env = {**os.environ, "MNIST_BENCH_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(go), data_dir],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for data_dir in ("", str(copy), "", str(copy))
    ]
    time.sleep(1.0)  # let them import, then start them together
    go.touch()
    results = [child.communicate(timeout=300) for child in children]
    for child, (_, err) in zip(children, results):
        assert child.returncode == 0, err
    expected = hashlib.sha256()
    for name in SPLITS:
        expected.update(getattr(canonical, name))
    assert {out.strip() for out, _ in results} == {expected.hexdigest()}
    writes = [line for _, err in results for line in err.splitlines() if "writing" in line]
    assert len(writes) == 2, writes  # one per split, by whichever process came first
    assert not [line for _, err in results for line in err.splitlines() if "rejected" in line]
    arrays = cache / "arrays"
    assert len(list(arrays.glob("*.npy"))) == 4 and not list(arrays.glob(".*.part"))
