"""The IDX parser on random truncations, header mutations and random bytes: it either returns
an array or raises the loader's own DataError, never anything else."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.data import DataError
from bench.data.idx import parse_idx


def valid_labels(n: int) -> bytes:
    return (0x0801).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(i % 10 for i in range(n))


def valid_images(n: int) -> bytes:
    header = (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
    return header + bytes(n * 784)


def check(data: bytes, images: bool, count=None) -> None:
    try:
        array = parse_idx(data, "fuzz", images=images, count=count)
    except DataError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz: ")
    else:
        assert array.dtype == np.uint8


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_random_bytes(data, images):
    check(data, images)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3), st.integers(0, 2000), st.booleans(), st.sampled_from([None, 3, 5]))
def test_truncations(n, cut, images, count):
    data = valid_images(n) if images else valid_labels(n)
    check(data[:cut], images, count)


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 4),
    st.lists(st.tuples(st.integers(0, 15), st.integers(0, 255)), max_size=4),
    st.booleans(),
)
def test_header_mutations(n, edits, images):
    data = bytearray(valid_images(n) if images else valid_labels(n))
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    check(bytes(data), images)
