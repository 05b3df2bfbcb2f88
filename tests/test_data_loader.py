"""The shared loader on the real files, and every bad-input case on corrupted copies."""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import bench.data.loader as loader
from bench.data import DataError, load, locate, prepare, verify_dir
from bench.data.idx import parse_idx
from tests.conftest import ROOT

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_full_mnist_has_canonical_shapes_and_labels(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.y_train.shape == (60000,)
    assert mnist.x_test.shape == (10000, 28, 28) and mnist.y_test.shape == (10000,)
    assert mnist.y_train[0] == 5
    assert np.bincount(mnist.y_test, minlength=10).tolist() == TEST_COUNTS


def test_fashion_mnist_loads(data_root):
    ds = load("fashion_mnist")
    assert ds.x_train.shape == (60000, 28, 28)
    assert np.bincount(ds.y_test).tolist() == [1000] * 10


def test_cached_load_equals_a_fresh_parse(mnist, data_root):
    fresh = load("mnist", cache=False)
    warm = load("mnist")
    for a in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(fresh, a), getattr(warm, a))


def test_preprocessing_is_deterministic_and_scaled(mnist):
    a = prepare(mnist, val_size=5000, n_train=2000, split_seed=0)
    b = prepare(mnist, val_size=5000, n_train=2000, split_seed=0)
    c = prepare(mnist, val_size=5000, n_train=2000, split_seed=1)
    assert a.x_train.shape == (2000, 784) and a.x_val.shape == (5000, 784)
    assert a.x_train.dtype == np.float32 and 0 <= a.x_train.min() and a.x_train.max() == 1
    assert np.array_equal(a.y_val, b.y_val) and not np.array_equal(a.y_val, c.y_val)
    assert prepare(mnist, dtype="float64").x_test.dtype == np.float64


@pytest.mark.parametrize(
    "kwargs", [{"val_size": -1}, {"val_size": 60000}, {"n_train": 0}, {"n_train": 55001}]
)
def test_bad_split_sizes_are_refused(mnist, kwargs):
    with pytest.raises(DataError, match=next(iter(kwargs))):
        prepare(mnist, **kwargs)


def _copy(data_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "mnist"
    shutil.copytree(data_root / "mnist", target)
    return target


def _rewrite(path: Path, change) -> None:
    data = bytearray(gzip.decompress(path.read_bytes()))
    path.write_bytes(gzip.compress(bytes(change(data))))


def _set_byte(offset: int, value: int):
    def change(data):
        data[offset] = value
        return data

    return change


CORRUPTIONS = {
    "truncated": (
        "train-images-idx3-ubyte.gz",
        lambda d: d[:1000],
        "truncated: expected 47040016 bytes, got 1000",
    ),
    "wrong magic": ("t10k-labels-idx1-ubyte.gz", _set_byte(0, 7), "wrong magic number"),
    "wrong dtype code": ("t10k-labels-idx1-ubyte.gz", _set_byte(2, 0x0D), "wrong dtype code"),
    "wrong dimensions": ("t10k-images-idx3-ubyte.gz", _set_byte(11, 27), "wrong image dimensions"),
    "label out of range": ("t10k-labels-idx1-ubyte.gz", _set_byte(8, 11), "label out of range: 11"),
    "count mismatch": (
        "t10k-labels-idx1-ubyte.gz",
        lambda d: d[:-1],
        "truncated: expected 10008 bytes, got 10007",
    ),
    "checksum mismatch": ("t10k-images-idx3-ubyte.gz", _set_byte(500, 3), "checksum mismatch"),
    "trailing bytes": ("t10k-labels-idx1-ubyte.gz", lambda d: d + b"\0", "trailing bytes"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupted_file_is_refused_with_one_line_naming_it(data_root, tmp_path, case):
    name, change, message = CORRUPTIONS[case]
    folder = _copy(data_root, tmp_path)
    _rewrite(folder / name, change)
    with pytest.raises(DataError) as info:
        load("mnist", data_dir=folder, cache=False)
    text = str(info.value)
    assert message in text and name in text and "\n" not in text


def test_count_disagreeing_with_the_header_is_refused():
    header = (0x0801).to_bytes(4, "big") + (5).to_bytes(4, "big")
    with pytest.raises(DataError, match="wrong item count 5, expected 6"):
        parse_idx(header + bytes(5), "labels", images=False, count=6)


def test_missing_and_unreadable_files(data_root, tmp_path):
    folder = _copy(data_root, tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="holds no complete mnist"):
        load("mnist", data_dir=folder, cache=False)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: unreadable gzip"):
        load("mnist", data_dir=folder, cache=False)


def test_raw_uncompressed_files_are_accepted(data_root, tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for gz in (data_root / "mnist").glob("*.gz"):
        (folder / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    assert verify_dir(folder, "mnist") == []


def test_changed_source_file_is_revalidated_not_served_from_cache(data_root, tmp_path):
    folder = _copy(data_root, tmp_path)
    load("mnist", data_dir=folder)  # fills the array cache
    _rewrite(folder / "t10k-images-idx3-ubyte.gz", _set_byte(600, 9))
    with pytest.raises(DataError, match="checksum mismatch"):
        load("mnist", data_dir=folder)


def test_search_order_env_then_cache_then_system(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_BENCH_DATA_DIR", str(tmp_path / "nothing"))
    monkeypatch.setenv("MNIST_BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(loader, "SYSTEM_DIRS", (tmp_path / "system",))
    with pytest.raises(DataError) as info:
        locate("mnist", download=False)
    for place in ("MNIST_BENCH_DATA_DIR", "cache", "system", "mnist-bench-data fetch"):
        assert place in str(info.value)
    shutil.copytree(data_root / "mnist", tmp_path / "system" / "mnist")
    assert locate("mnist", download=False) == tmp_path / "system" / "mnist"
    shutil.copytree(data_root / "mnist", tmp_path / "cache" / "mnist")
    assert locate("mnist", download=False) == tmp_path / "cache" / "mnist"
    monkeypatch.setenv("MNIST_BENCH_DATA_DIR", str(data_root))
    assert locate("mnist", download=False) == data_root / "mnist"


def test_unknown_dataset_names_the_allowed_ones():
    with pytest.raises(DataError, match="unknown dataset 'emnist'; allowed: fashion_mnist, mnist"):
        load("emnist")


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.commands.data", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def _one_line_error(result: subprocess.CompletedProcess, code: int, *parts: str) -> None:
    """The user's view of a refusal: this exit code, one line on stderr saying what and why."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for part in parts:
        assert part in lines[0], (part, lines[0])


def test_cli_verify_good_and_corrupted(data_root, tmp_path):
    ok = _cli("verify", "--data-dir", str(data_root / "mnist"))
    assert ok.returncode == 0, ok.stderr
    folder = _copy(data_root, tmp_path)
    _rewrite(folder / "train-labels-idx1-ubyte.gz", _set_byte(20, 200))
    bad = _cli("verify", "--data-dir", str(folder))
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-labels-idx1-ubyte.gz: label out of range" in lines[0]


def test_cli_info_and_show(data_root, tmp_path):
    info = _cli("info", "--dataset", "mnist")
    assert info.returncode == 0 and "980" in info.stdout and str(data_root) in info.stdout
    png = tmp_path / "grid.png"
    show = _cli("show", "--out", str(png), "--rows", "2", "--cols", "5")
    assert show.returncode == 0, show.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, parts",
    [
        (["--rows", "0"], ["--rows", "'0'", "allowed 1..16"]),
        (["--rows", "-3"], ["--rows", "'-3'", "allowed 1..16"]),
        (["--cols", "0"], ["--cols", "'0'", "allowed 1..16"]),
        (["--cols", "17"], ["--cols", "'17'", "allowed 1..16"]),
        (["--rows", "two"], ["--rows", "'two'", "allowed 1..16"]),
    ],
)
def test_cli_show_refuses_a_bad_grid_in_one_line(data_root, tmp_path, args, parts):
    out = tmp_path / "kept.png"
    out.write_bytes(b"an earlier grid")
    _one_line_error(_cli("show", "--out", str(out), *args), 2, *parts)
    assert out.read_bytes() == b"an earlier grid"


def test_cli_show_refuses_an_unwritable_out_in_one_line(data_root, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    (tmp_path / "folder.png").mkdir()
    cases = {
        str(tmp_path / "no-suffix"): ["no-suffix", "must end in an image suffix", ".png, "],
        str(tmp_path / "grid.xyz"): ["grid.xyz", "allowed: ", ".pdf"],
        str(tmp_path / "missing" / "grid.png"): ["missing", "does not exist"],
        str(a_file / "grid.png"): ["a-file", "is not a folder"],
        str(tmp_path / "folder.png"): ["folder.png", "not a regular file"],
    }
    if Path("/proc/self").is_dir():  # passes every check but cannot be created, even by root
        cases["/proc/grid.png"] = ["cannot write --out /proc/grid.png"]
    for out, parts in cases.items():
        _one_line_error(_cli("show", "--out", out), 2, *parts)
    assert a_file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "folder.png"]


def test_cli_show_replaces_an_existing_file_whole(data_root, tmp_path):
    out = tmp_path / "grid.png"
    out.write_bytes(b"old")
    result = _cli("show", "--out", str(out), "--rows", "1", "--cols", "2")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no .part left beside it


def test_cli_refuses_a_missing_or_empty_data_dir(data_root, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for target in (tmp_path / "nothing", a_file):
        _one_line_error(_cli("verify", "--data-dir", str(target)), 2, str(target), "not a folder")
    for command in ("verify", "info", "fetch", "show"):
        _one_line_error(_cli(command, "--data-dir", ""), 2, "--data-dir", "''", "is empty")


@pytest.fixture
def nothing_on_disk(tmp_path) -> dict[str, str]:
    """Environment for a CLI that has to download: no data folder, an empty cache."""
    if any((d / "mnist").is_dir() for d in loader.SYSTEM_DIRS):
        pytest.skip("this machine has a system-wide mnist, so the CLI would not download")
    return {"MNIST_BENCH_DATA_DIR": "", "MNIST_BENCH_CACHE_DIR": str(tmp_path / "cache")}


def test_cli_fetch_bad_mirror_or_cache_is_one_line(nothing_on_disk, tmp_path):
    bad = _cli("fetch", "--mirror", "notaurl", "--mirror", "", **nothing_on_disk)
    _one_line_error(bad, 1, "download of mnist", "notaurl/", "unknown url type")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    blocked = {**nothing_on_disk, "MNIST_BENCH_CACHE_DIR": str(a_file / "cache")}
    _one_line_error(_cli("fetch", **blocked), 1, "cannot create the download folder", "a-file")


def test_cli_fetch_interrupted_leaves_nothing_behind(nothing_on_disk):
    """Ctrl-C during a download (a mirror that never answers): exit 130, one line, no .part."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.commands.data", "fetch", "--mirror", url],
        cwd=ROOT,
        env={**os.environ, **nothing_on_disk},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    folder = Path(nothing_on_disk["MNIST_BENCH_CACHE_DIR"]) / "mnist"
    deadline = time.monotonic() + 60
    while not list(folder.glob(".*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(folder.glob(".*.part")), "the download never started"
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    silent.close()
    _one_line_error(subprocess.CompletedProcess([], child.returncode, out, err), 130, "interrupted")
    assert list(folder.iterdir()) == []


def test_cli_info_into_a_closed_pipe_exits_quietly(data_root):
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.commands.data", "info"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.close()  # like `mnist-bench-data info | head -0`
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141 and "Traceback" not in err and "Exception" not in err


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scaling_is_the_correctly_rounded_division_of_every_pixel_value(dtype):
    """Every uint8 value v becomes v / 255 rounded once in the model's dtype, as the textbook
    astype-then-divide gives it."""
    from bench.data.prepare import flatten_scale

    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    scaled = flatten_scale(values, dtype)
    assert scaled.dtype == dtype and scaled.shape == (1, 256)
    np.testing.assert_array_equal(
        scaled[0], np.arange(256).astype(dtype) / np.dtype(dtype).type(255)
    )
