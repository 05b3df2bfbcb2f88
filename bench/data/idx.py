"""Read and validate one IDX file (the MNIST format) into a uint8 array.

Every check fails with a DataError naming the file, never a NumPy traceback, because the
files come from users' disks and mirrors.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from bench.data.catalog import IMAGE_SHAPE, NUM_CLASSES, DataError

UBYTE = 0x08
# magic = 0x00 0x00 <dtype code> <number of dimensions>
IMAGES_MAGIC = (UBYTE << 8) | 3
LABELS_MAGIC = (UBYTE << 8) | 1


def read_bytes(path: Path) -> bytes:
    """The decompressed bytes of a raw or gzipped file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: unreadable gzip: {e}") from None


def parse_idx(data: bytes, name: str, *, images: bool, count: int | None = None) -> np.ndarray:
    """Validate the header and length of IDX bytes and return the array (a view on `data`)."""
    if len(data) < 8:
        raise DataError(f"{name}: truncated: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[0:4], "big")
    want_magic = IMAGES_MAGIC if images else LABELS_MAGIC
    if magic >> 16 != 0:
        raise DataError(f"{name}: wrong magic number 0x{magic:08x}, expected 0x{want_magic:08x}")
    if (magic >> 8) & 0xFF != UBYTE:
        raise DataError(
            f"{name}: wrong dtype code 0x{(magic >> 8) & 0xFF:02x}, expected 0x{UBYTE:02x} (ubyte)"
        )
    if magic != want_magic:
        kind = "images" if images else "labels"
        raise DataError(
            f"{name}: wrong number of dimensions {magic & 0xFF} for {kind}, "
            f"expected {want_magic & 0xFF}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated: {len(data)} bytes, header needs {header}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if images and dims[1:] != IMAGE_SHAPE:
        raise DataError(f"{name}: wrong image dimensions {dims[1:]}, expected {IMAGE_SHAPE}")
    if count is not None and dims[0] != count:
        raise DataError(f"{name}: wrong item count {dims[0]}, expected {count}")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "trailing bytes"
        raise DataError(f"{name}: {problem}: expected {expected} bytes, got {len(data)}")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    if not images and array.size and int(array.max()) >= NUM_CLASSES:
        raise DataError(
            f"{name}: label out of range: {int(array.max())}, allowed 0..{NUM_CLASSES - 1}"
        )
    return array


def idx_sha256(array: np.ndarray) -> str:
    """The sha256 of the IDX file holding exactly `array` (uint8, C order).

    The header is a function of the shape, so this equals the catalog checksum of the file the
    array was decoded from: a cached array is checked against the catalog itself, not against
    anything stored beside it that could be rewritten with it.
    """
    header = ((UBYTE << 8) | array.ndim).to_bytes(4, "big")
    header += b"".join(d.to_bytes(4, "big") for d in array.shape)
    digest = hashlib.sha256(header)
    digest.update(memoryview(array))  # hashlib reads the memory map without copying it
    return digest.hexdigest()


def check_sha256(data: bytes, name: str, expected: str) -> None:
    """DataError unless the bytes hash to the expected SHA-256."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DataError(
            f"{name}: checksum mismatch: sha256 {actual[:16]}..., expected {expected[:16]}..."
        )
