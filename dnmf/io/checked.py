"""Reading a store's arrays with every chunk checked against its commit's records.

A missing, truncated or altered chunk raises :class:`~dnmf.errors.StoreDamagedError`
naming the store, the array, the chunk and what to do (:mod:`dnmf.io.damage`),
never a chunk of fill values.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from dnmf.errors import StoreDamagedError
from dnmf.io.damage import chunk_damaged
from dnmf.io.records import ArrayRecords, load_records, record_index

__all__ = ["read_all", "read_frames", "verify_store"]

#: Chunks checked whole in this process: (store, name, chunk, crc). A read of part of a
#: chunk (a halo, a block smaller than a chunk) trusts a chunk found here.
_checked: set[tuple[str, str, int, int]] = set()


def read_frames(arr: Any, rec: ArrayRecords | None, lo: int, hi: int) -> np.ndarray:
    """``arr[..., lo:hi]`` of an array chunked along its last axis only, each chunk checked.

    A read of whole chunks checks the values it read; a read of part of a chunk
    reads and checks that chunk whole the first time this process meets it.
    """
    if rec is None or lo >= rec.shape[-1] or hi <= lo:
        return np.asarray(arr[..., lo:hi])
    c, end = rec.chunks[-1], rec.shape[-1]
    j0, j1 = lo // c, (min(hi, end) - 1) // c
    if lo == j0 * c and min(hi, end) == min((j1 + 1) * c, end):
        try:
            data = np.asarray(arr[..., lo:hi])
        except Exception as exc:
            raise chunk_damaged(rec, _first_bad(arr, rec, j0, j1), "unreadable", exc) from None
        for j in range(j0, j1 + 1):
            a, z = j * c - lo, min((j + 1) * c, end) - lo
            rec.check(j, data[..., a:z], arr)
        return data
    for j in range(j0, j1 + 1):
        key = (rec.store, rec.name, j, int(rec.crc[j]))
        if key not in _checked:
            rec.read(arr, j)
            _checked.add(key)
    return np.asarray(arr[..., lo:hi])


def read_all(arr: Any, rec: ArrayRecords | None) -> np.ndarray:
    """The whole array as recorded, every chunk checked (small arrays: W, the file table)."""
    if rec is None:
        return np.asarray(arr[...])
    if tuple(arr.shape) == rec.shape and rec.n_chunks == 1:
        return rec.read(arr, 0)
    out = np.empty(rec.shape, dtype=arr.dtype) if arr.dtype.kind not in "OTU" else None
    if out is None:
        data = np.asarray(arr[tuple(slice(0, s) for s in rec.shape)])
        for j in range(rec.n_chunks):
            rec.check(j, data[rec.region(j)], arr)
        return data
    for j in range(rec.n_chunks):
        out[rec.region(j)] = rec.read(arr, j)
    return out


def _first_bad(arr: Any, rec: ArrayRecords, j0: int, j1: int) -> int:
    for j in range(j0, j1 + 1):
        try:
            np.asarray(arr[rec.region(j)])
        except Exception:
            return j
    return j0


def verify_store(path: str | os.PathLike[str]) -> dict[str, int]:
    """Read and check every recorded chunk of the store at ``path`` (``dnmf info --check``).

    Returns ``{array: chunks checked}``; raises :class:`StoreDamagedError` naming the
    first damaged chunk (and how many more there are) if any is missing, truncated or
    altered, or if the store has no records (an older dnmf's: any reader records them).
    For a model store, the chunks of the activation buffers its last checkpoint refers
    to are checked too, against the checkpoint's records (:mod:`dnmf.io.buffers`).
    """
    path = str(path)
    index = record_index(path)
    if index is None:
        raise StoreDamagedError(
            f"store {path!r} has no chunk records to check against (written by an older dnmf); "
            "dnmf learn, export or info records them once, then check again"
        )
    group = zarr.open_group(path, mode="r", zarr_format=3, use_consolidated=False)
    done: dict[str, int] = {}
    errors: list[StoreDamagedError] = []
    for name in index:
        rec = load_records(path, name)
        assert rec is not None
        arr = group[name]
        for j in range(rec.n_chunks):
            try:
                rec.read(arr, j)
            except StoreDamagedError as exc:
                errors.append(exc)
        done[name] = rec.n_chunks
    if not errors:  # a model's activation buffers, by the records of its checkpoint
        done.update(_verify_buffers(path, group, errors))
    if errors:
        more = f" (and {len(errors) - 1} more damaged chunks)" if len(errors) > 1 else ""
        first = str(errors[0])
        head, _, fix = first.partition("; ")
        raise StoreDamagedError(f"{head}{more}; {fix}")
    return done


def _verify_buffers(path: str, group: Any, errors: list[StoreDamagedError]) -> dict[str, int]:
    meta = group.attrs.get("dnmf", {})
    if not isinstance(meta, dict) or meta.get("kind") != "model" or not meta.get("checkpoint"):
        return {}
    from dnmf.io.buffers import read_buffer_checked
    from dnmf.io.model import ModelStore

    model = ModelStore.open(path)
    state = model.load_checkpoint()
    assert state is not None
    done: dict[str, int] = {}
    for k, j, crc in model.buffer_chunks(state):
        arr = group[f"state/H{k}"]
        c = int(arr.chunks[1])
        try:
            read_buffer_checked(arr, model.H_url, k, j * c, min((j + 1) * c, arr.shape[1]),
                                {j: crc})  # fmt: skip
        except StoreDamagedError as exc:
            errors.append(exc)
        done[f"state/H{k}"] = done.get(f"state/H{k}", 0) + 1
    return done
