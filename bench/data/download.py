"""Fetch a dataset's files from public mirrors: checksummed, atomic, with a progress bar.

Nothing fetched is executed or unpickled; a file is moved into place only after its
decompressed bytes match the known SHA-256, so a tampered or cut-off download never
reaches the cache.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from bench.data.catalog import DataError, DatasetInfo
from bench.data.idx import check_sha256, read_bytes

TIMEOUT_S = 30
CHUNK = 1 << 16


def mirrors_for(info: DatasetInfo, mirrors: list[str] | None = None) -> list[str]:
    """Explicit mirrors, else MNIST_BENCH_MIRRORS (comma-separated base URLs), else the public ones."""
    if mirrors:
        return list(mirrors)
    from_env = os.environ.get("MNIST_BENCH_MIRRORS", "")
    if from_env.strip():
        return [m.strip() for m in from_env.split(",") if m.strip()]
    return list(info.mirrors)


def download_dataset(
    info: DatasetInfo, dest: Path, mirrors: list[str] | None = None, progress: bool = True
) -> Path:
    """Download every file of `info` missing from `dest`, trying each mirror in turn."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the download folder {dest}: {e.strerror or e}") from None
    for stem in info.stems():
        if (dest / f"{stem}.gz").exists() or (dest / stem).exists():
            continue
        failures = []
        for base in mirrors_for(info, mirrors):
            url = base.rstrip("/") + f"/{stem}.gz"
            try:
                _fetch_verified(url, dest / f"{stem}.gz", info.sha256[stem], progress)
                break
            # ValueError: not a URL urllib can open ('notaurl', ''): one more failed mirror
            except (DataError, OSError, ValueError, urllib.error.URLError) as e:
                failures.append(f"{url}: {e}")
        else:
            raise DataError(f"download of {info.name} {stem} failed: " + "; ".join(failures))
    return dest


def _fetch_verified(url: str, target: Path, sha256: str, progress: bool) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress
            ) as bar:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        check_sha256(read_bytes(tmp), url, sha256)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
