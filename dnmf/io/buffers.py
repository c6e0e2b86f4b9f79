"""The records of the learner's activation buffers (``state/H0``..``H2`` of a model store).

The buffers are rewritten chunk by chunk by the visits of every epoch, after each
checkpoint, so a record taken when a checkpoint commits would refuse good data.
Instead the visit that writes a block returns the CRC-32 of what it wrote
(:func:`dnmf.io.records.checksum`, as every other record) with its statistics;
the client keeps the table, per buffer and chunk
(:attr:`dnmf.nmf.state.LearnState.H_crc`, ``-1``: no record), and saves it with
each checkpoint, in the checkpoint's slot (``state/slotN/H_crc``, itself
recorded), so that the switch of the attrs to a checkpoint commits its table
with the rest of it. A retried visit writes the same bytes (the learner is
bitwise reproducible), so the table does not depend on retries or workers.

The chunks a checkpoint refers to (:func:`dnmf.nmf.plan.checkpoint_chunks`) are
not written again before the next checkpoint, so its table stays true of them
whatever ran after it; readers check the chunks they read against it: the
visits of each step (against the table of that step), ``--resume`` before its
first step (every chunk the continued run reads, so that a damaged one stops it
with nothing written), :meth:`dnmf.io.model.ModelStore.activations` and
``dnmf rank``. A chunk without a record (a store of a dnmf that kept none) is
read unchecked, as a checkpoint slot without records is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dnmf.errors import StoreDamagedError
from dnmf.io.damage import chunk_damaged, chunk_exists
from dnmf.io.records import ArrayRecords, checksum

__all__ = [
    "NO_RECORD",
    "buffer_name",
    "check_chunks_task",
    "damaged_error",
    "read_buffer_checked",
    "written_crc",
]

#: The table's entry for a chunk without a record.
NO_RECORD = -1


def buffer_name(H_url: str, buffer: int) -> tuple[str, str]:
    """The store and the array name of activation buffer ``buffer`` in the group ``H_url``:
    ``state/H1`` of a model store, ``H1`` of a bare group of buffers."""
    H_url = H_url.rstrip("/")
    head, _, tail = H_url.rpartition("/")
    if tail == "state" and head:
        return head, f"state/H{buffer}"
    return H_url, f"H{buffer}"


def _records(arr: Any, H_url: str, buffer: int) -> ArrayRecords:
    """The :class:`ArrayRecords` of a buffer's layout, to name a chunk (crcs kept apart)."""
    store, name = buffer_name(H_url, buffer)
    chunks = tuple(int(c) for c in arr.chunks)
    return ArrayRecords(store, name, tuple(arr.shape), chunks, np.zeros(0, np.uint32), grows=1)


def read_buffer_checked(
    arr: Any, H_url: str, buffer: int, start: int, stop: int, expect: Mapping[int, int]
) -> np.ndarray:
    """``arr[:, start:stop]`` of buffer ``buffer``, each chunk it touches that has a record
    in ``expect`` (chunk -> crc) read whole and checked.

    Raises :class:`~dnmf.errors.StoreDamagedError` naming the store, the buffer
    and the chunk if one is missing, truncated or altered. One read of the
    chunks touched; a read of whole chunks (a visit's own block) reads no more
    than it returns.
    """
    c, end = int(arr.chunks[1]), int(arr.shape[1])
    j0, j1 = start // c, (max(stop, start + 1) - 1) // c
    wanted = {j: int(expect[j]) for j in range(j0, j1 + 1) if expect.get(j, NO_RECORD) >= 0}
    if not wanted or stop <= start:
        return np.asarray(arr[:, start:stop])
    a, z = j0 * c, min((j1 + 1) * c, end)
    try:
        data = np.asarray(arr[:, a:z])
    except Exception as exc:  # a truncated or garbled chunk does not decode
        raise chunk_damaged(_records(arr, H_url, buffer), _unreadable(arr, j0, j1, c, end),
                            "unreadable", exc) from None  # fmt: skip
    for j, want in wanted.items():
        if checksum(data[:, j * c - a : min((j + 1) * c, end) - a]) != want:
            rec = _records(arr, H_url, buffer)
            raise chunk_damaged(rec, j, "altered" if chunk_exists(arr, j, rec) else "missing")
    if a == start and z == stop:
        return data
    return np.ascontiguousarray(data[:, start - a : stop - a])


def _unreadable(arr: Any, j0: int, j1: int, c: int, end: int) -> int:
    for j in range(j0, j1 + 1):
        try:
            np.asarray(arr[:, j * c : min((j + 1) * c, end)])
        except Exception:
            return j
    return j0


def written_crc(arr: Any, start: int, stop: int, data: np.ndarray) -> dict[int, int]:
    """``{chunk: crc}`` of a write of ``data`` (as stored: ``arr``'s dtype, C order) to the
    frames ``[start, stop)`` of a buffer: the crc of a whole chunk, :data:`NO_RECORD` for
    a chunk written in part (its other frames are not known here)."""
    c, end = int(arr.chunks[1]), int(arr.shape[1])
    out = {}
    for j in range(start // c, (max(stop, start + 1) - 1) // c + 1):
        a, z = j * c, min((j + 1) * c, end)
        whole = start <= a and z <= stop
        out[j] = checksum(data[:, a - start : z - start]) if whole else NO_RECORD
    return out


def check_chunks_task(items: list[tuple[int, int, int]], H_url: str) -> list[str]:
    """Read and check the chunks ``items = [(buffer, chunk, crc), ...]`` of the buffers in
    ``H_url`` (a task: ``--resume`` checks what the continued run will read before it
    writes anything). Returns the sentence of each damaged one (none: all match), so
    that the client can name the first and count the rest."""
    from dnmf.io.blocks import open_array

    arrays: dict[int, Any] = {}
    damaged = []
    for buffer, j, crc in items:
        if crc < 0:
            continue
        if buffer not in arrays:
            arrays[buffer] = open_array(f"{H_url}/H{buffer}")
        arr = arrays[buffer]
        c = int(arr.chunks[1])
        try:
            read_buffer_checked(arr, H_url, buffer, j * c, min((j + 1) * c, int(arr.shape[1])),
                                {j: crc})  # fmt: skip
        except StoreDamagedError as exc:
            damaged.append(str(exc))
    return damaged


def damaged_error(sentences: list[str]) -> StoreDamagedError:
    """One sentence for the damaged chunks of :func:`check_chunks_task`: the first one
    named, the others counted."""
    head, _, fix = sentences[0].partition("; ")
    more = f" (and {len(sentences) - 1} more damaged chunks)" if len(sentences) > 1 else ""
    return StoreDamagedError(f"{head}{more}; {fix}")
