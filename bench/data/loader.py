"""Find a dataset on disk (or download it), validate it, and cache the decoded arrays.

Search order: the explicit `data_dir` (authoritative: no fallback), then
MNIST_BENCH_DATA_DIR, the user cache, Debian's /usr/share/datasets, and last a download
into the cache. A folder counts when it holds the four files itself or in the dataset's
sub-folder (`mnist/`, `fashion-mnist/`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from bench.data.catalog import (
    IMAGE_SHAPE,
    SPLIT_FILES,
    SPLIT_SIZES,
    DataError,
    DatasetInfo,
    dataset_info,
)
from bench.data.download import download_dataset
from bench.data.idx import check_sha256, idx_sha256, parse_idx, read_bytes

SYSTEM_DIRS = (Path("/usr/share/datasets"),)
LOCK_TIMEOUT_S = 600  # a rebuild takes seconds; past this, decode without the cache
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Canonical uint8 arrays of one dataset, and where they came from."""

    name: str
    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8
    source: str
    digest: str = field(default="")  # sha256 over the four files' checksums


def cache_root() -> Path:
    """The download and array cache: $MNIST_BENCH_CACHE_DIR, else ~/.cache/mnist-bench."""
    if env := os.environ.get("MNIST_BENCH_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist-bench"


def find_file(directory: Path, stem: str) -> Path | None:
    """A folder's copy of one IDX file, gzipped or not."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def holds_dataset(directory: Path, info: DatasetInfo) -> Path | None:
    """The folder itself or its dataset sub-folder, whichever has all four files."""
    for d in (directory, directory / info.folder):
        if all(find_file(d, stem) for stem in info.stems()):
            return d
    return None


def search_dirs(info: DatasetInfo) -> list[tuple[str, Path]]:
    """Where a dataset is looked for before a download, in order."""
    places = []
    if env := os.environ.get("MNIST_BENCH_DATA_DIR"):
        places.append(("MNIST_BENCH_DATA_DIR", Path(env).expanduser()))
    places.append(("cache", cache_root() / info.folder))
    places += [("system", d / info.folder) for d in SYSTEM_DIRS]
    return places


def locate(
    name: str = "mnist",
    data_dir: str | Path | None = None,
    download: bool = True,
    mirrors: list[str] | None = None,
    progress: bool = True,
) -> Path:
    """The folder holding the dataset's four files, downloading into the cache if allowed."""
    info = dataset_info(name)
    if data_dir:
        found = holds_dataset(Path(data_dir).expanduser(), info)
        if found is None:
            raise DataError(
                f"data_dir {data_dir} holds no complete {name} (needs {', '.join(info.stems())}"
                f" [.gz], there or in {info.folder}/)"
            )
        return found
    looked = []
    for label, directory in search_dirs(info):
        if found := holds_dataset(directory, info):
            return found
        looked.append(f"{label} {directory}")
    if not download:
        raise DataError(
            f"{name} not found; looked in: {'; '.join(looked)}. Set MNIST_BENCH_DATA_DIR or "
            f"dataset.data_dir to a folder with the IDX files, or allow the download "
            f"(mnist-bench-data fetch {name})"
        )
    try:
        return download_dataset(info, cache_root() / info.folder, mirrors, progress)
    except DataError as e:
        raise DataError(f"{name} not found (looked in: {'; '.join(looked)}) and {e}") from None


def read_split(directory: Path, info: DatasetInfo, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode and fully validate one split (images, labels) from IDX files."""
    arrays = []
    for stem, images in zip(SPLIT_FILES[split], (True, False)):
        path = find_file(directory, stem)
        if path is None:
            raise DataError(f"{directory / stem}[.gz]: missing file")
        data = read_bytes(path)
        # structure first: "truncated: expected N bytes" says more than a checksum mismatch
        arrays.append(parse_idx(data, str(path), images=images, count=SPLIT_SIZES[split]))
        check_sha256(data, str(path), info.sha256[stem])
    x, y = arrays
    return x, y


def verify_dir(directory: Path, name: str) -> list[str]:
    """Every problem with a dataset folder, one line each (an empty list: all good)."""
    info = dataset_info(name)
    problems = []
    for split in SPLIT_FILES:
        try:
            read_split(directory, info, split)
        except DataError as e:
            problems.append(str(e))
    return problems


def _source_key(directory: Path, split: str) -> str:
    """Identity of the source files (path, size, mtime): a changed file is re-validated."""
    parts = []
    for stem in SPLIT_FILES[split]:
        path = find_file(directory, stem)
        st = path.stat()
        parts.append(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _entry_paths(arrays_dir: Path, info: DatasetInfo, split: str) -> list[Path]:
    """Named after the catalog checksums: every valid source folder decodes to the same bytes,
    so all share one entry and a rebuild never has a reason to delete anything."""
    tag = hashlib.sha256("".join(info.sha256[s] for s in SPLIT_FILES[split]).encode())
    return [arrays_dir / f"{info.name}-{split}-{tag.hexdigest()[:16]}-{p}.npy" for p in "xy"]


def _read_verified(
    paths: list[Path], info: DatasetInfo, split: str
) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """(the cached arrays, None) if they are exactly the catalog's files; else (None, why not),
    with why None when there is simply no entry yet."""
    if not all(p.exists() for p in paths):
        return None, None
    arrays = []
    for path, stem, images in zip(paths, SPLIT_FILES[split], (True, False)):
        try:
            # memory-mapped: parallel jobs share the pages
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # the cache is untrusted input: any failure means "rebuild"
            return None, f"{path.name}: unreadable: {type(e).__name__}: {e}".splitlines()[0]
        shape = (SPLIT_SIZES[split], *IMAGE_SHAPE) if images else (SPLIT_SIZES[split],)
        if a.dtype != np.uint8 or a.shape != shape or not a.flags.c_contiguous:
            return None, f"{path.name}: {a.dtype} {a.shape}, expected uint8 {shape} in C order"
        if idx_sha256(a) != info.sha256[stem]:
            return None, f"{path.name}: content differs from the catalog sha256 of {stem}"
        arrays.append(a)
    x, y = arrays
    return (x, y), None


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Write beside and rename over: a reader sees the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.chmod(tmp, 0o444)  # read-only: rewriting an entry in place is a mistake, not an edit
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_split_cached(
    directory: Path, info: DatasetInfo, split: str, cache: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One split from the array cache, verified against the catalog on every load, else from
    the IDX files (fully validated), writing the cache for next time.

    Concurrency rules: every write holds `arrays/.lock` and re-checks the cache first (another
    process may just have built it). Nothing is ever deleted except `.part` files, which only
    a writer holding the lock creates, so any found under the lock belong to a dead writer.
    Entries are replaced by rename, so a reader keeps the file it memory-mapped.
    """
    if not cache:
        return read_split(directory, info, split)
    arrays_dir = cache_root() / "arrays"
    paths = _entry_paths(arrays_dir, info, split)
    # a marker per validated source: a changed or corrupted source file is still reported
    marker = arrays_dir / f"{info.name}-{split}-source-{_source_key(directory, split)}.ok"
    if marker.exists():
        arrays, _ = _read_verified(paths, info, split)
        if arrays is not None:
            return arrays
    lock = FileLock(arrays_dir / ".lock", timeout=LOCK_TIMEOUT_S)
    try:
        arrays_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except (OSError, Timeout) as e:
        log.info("array cache %s unusable (%s); decoding the IDX files", arrays_dir, e)
        return read_split(directory, info, split)
    try:
        arrays, problem = _read_verified(paths, info, split)
        if arrays is not None and marker.exists():
            return arrays
        x, y = read_split(directory, info, split)
        if problem:
            log.warning("array cache rejected: %s; rebuilding it from %s", problem, directory)
        try:
            if arrays is None:
                log.info("array cache: writing %s %s from %s", info.name, split, directory)
                for part in arrays_dir.glob(".*.part"):
                    part.unlink(missing_ok=True)
                for path, a in zip(paths, (x, y)):
                    _save_atomic(path, a)
            marker.touch()
        except OSError as e:  # a full disk only costs speed
            log.info("array cache %s not written (%s)", arrays_dir, e)
        return x, y
    finally:
        lock.release()


def load(
    name: str = "mnist",
    data_dir: str | Path | None = None,
    download: bool = True,
    cache: bool = True,
    mirrors: list[str] | None = None,
    progress: bool = True,
) -> Dataset:
    """Load a dataset as canonical uint8 arrays, validated against the known checksums."""
    info = dataset_info(name)
    directory = locate(name, data_dir, download, mirrors, progress)
    x_train, y_train = load_split_cached(directory, info, "train", cache)
    x_test, y_test = load_split_cached(directory, info, "test", cache)
    digest = hashlib.sha256("".join(info.sha256[s] for s in info.stems()).encode()).hexdigest()
    return Dataset(name, x_train, y_train, x_test, y_test, str(directory), digest)
