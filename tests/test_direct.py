"""Whole chunks written as files, without zarr, read back through zarr exactly as written."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import dnmf.io.direct as direct
from dnmf.io.direct import aligned_empty, write_whole


def _array(path, dtype="float32", **kwargs):
    return zarr.create_array(
        str(path), shape=(8, 4096), chunks=(8, 1024), dtype=dtype, zarr_format=3,
        config={"write_empty_chunks": True}, **kwargs,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(direct, "_refused", False)


def test_aligned_empty_starts_on_a_page():
    a = aligned_empty((1025, 300))
    assert a.shape == (1025, 300) and a.dtype == np.float32 and a.flags.c_contiguous
    assert a.ctypes.data % direct.ALIGN == 0


@pytest.mark.parametrize("refused", [False, True], ids=["o_direct", "buffered"])
def test_a_whole_chunk_reads_back_bitwise(tmp_path, monkeypatch, refused):
    monkeypatch.setattr(direct, "_refused", refused)  # as after a filesystem refused O_DIRECT
    _array(tmp_path / "a.zarr", compressors=None)
    data = aligned_empty((8, 1024))
    data[:] = np.random.default_rng(0).random((8, 1024), dtype=np.float32)
    assert write_whole(str(tmp_path), "a.zarr", (0, 2048), data)
    back = zarr.open_array(str(tmp_path / "a.zarr"))
    np.testing.assert_array_equal(back[:, 2048:3072], data)
    assert not back[:, :2048].any()  # the other chunks: missing, the fill value
    assert not [p for p in (tmp_path / "a.zarr").rglob(".*") if p.is_file()]  # no temp left


def test_an_unaligned_buffer_is_written_buffered(tmp_path):
    _array(tmp_path / "i.zarr", dtype="int32", compressors=None)
    data = np.arange(8 * 1024 + 1, dtype=np.int32)[1:].reshape(8, 1024)  # off a page
    assert data.ctypes.data % direct.ALIGN
    assert write_whole(str(tmp_path), "i.zarr", (0, 1024), data)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "i.zarr"))[:, 1024:2048], data)


def test_what_zarr_must_write_is_left_to_it(tmp_path):
    _array(tmp_path / "plain.zarr", compressors=None)
    _array(tmp_path / "packed.zarr")  # zarr's default compressor
    whole = aligned_empty((8, 1024))
    whole[:] = 1.0
    root = str(tmp_path)
    assert not write_whole(root, "packed.zarr", (0, 0), whole)
    assert not write_whole(root, "missing.zarr", (0, 0), whole)
    assert not write_whole(root, "plain.zarr", (0, 0), whole[:, :512].copy())  # not whole
    assert not write_whole(root, "plain.zarr", (0, 512), whole)  # not on a chunk's start
    assert not write_whole(root, "plain.zarr", (0, 4096), whole)  # past the shape
    assert not write_whole(root, "plain.zarr", (0, 0), whole.astype(np.float64))
    assert not write_whole(root, "plain.zarr", (0, 0), np.asfortranarray(whole))
    assert not any((tmp_path / "plain.zarr").rglob("c/*/*"))  # nothing was written


def test_a_resize_is_seen_by_the_next_write(tmp_path):
    arr = _array(tmp_path / "g.zarr", compressors=None)
    whole = aligned_empty((8, 1024))
    whole[:] = 2.0
    assert not write_whole(str(tmp_path), "g.zarr", (0, 4096), whole)  # past the shape
    arr.resize((8, 5120))  # rewrites zarr.json: the layout is read again
    assert write_whole(str(tmp_path), "g.zarr", (0, 4096), whole)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "g.zarr"))[:, 4096:], whole)
