"""Whole chunks written past the page cache read back through zarr exactly as written."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import dnmf.io.direct as direct
from dnmf.io.direct import aligned_empty, write_chunk


def _array(path, **kwargs):
    return zarr.create_array(
        str(path), shape=(8, 4096), chunks=(8, 1024), dtype="float32", zarr_format=3,
        config={"write_empty_chunks": True}, **kwargs,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(direct, "_refused", False)


def test_aligned_empty_starts_on_a_page():
    a = aligned_empty((1025, 300))
    assert a.shape == (1025, 300) and a.dtype == np.float32 and a.flags.c_contiguous
    assert a.ctypes.data % direct.ALIGN == 0


def test_a_whole_chunk_reads_back_bitwise(tmp_path):
    arr = _array(tmp_path / "a.zarr", compressors=None)
    data = aligned_empty((8, 1024))
    data[:] = np.random.default_rng(0).random((8, 1024), dtype=np.float32)
    if not write_chunk(arr, (0, 2), data):
        pytest.skip("this filesystem does not take O_DIRECT")
    back = zarr.open_array(str(tmp_path / "a.zarr"))
    np.testing.assert_array_equal(back[:, 2048:3072], data)
    assert not back[:, :2048].any()  # the other chunks: missing, the fill value
    assert not [p for p in (tmp_path / "a.zarr").rglob(".*") if p.is_file()]  # no temp left


def test_what_zarr_must_write_is_left_to_it(tmp_path):
    plain = _array(tmp_path / "plain.zarr", compressors=None)
    packed = _array(tmp_path / "packed.zarr")  # zarr's default compressor
    whole = aligned_empty((8, 1024))
    whole[:] = 1.0
    assert not write_chunk(packed, (0, 0), whole)
    assert not write_chunk(plain, (0, 0), whole[:, :512].copy())  # not a whole chunk
    unaligned = np.empty(8 * 1024 + 1, dtype=np.float32)[1:].reshape(8, 1024)
    assert not write_chunk(plain, (0, 0), unaligned)
    assert not write_chunk(plain, (0, 0), whole.astype(np.float64))
    assert not any((tmp_path / "plain.zarr").rglob("c/*/*"))  # nothing was written
