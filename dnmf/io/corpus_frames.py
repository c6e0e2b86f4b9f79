"""A corpus store's small per-frame and per-file arrays, as a worker's mask reads them.

The masks of ``--mask-clipped`` and ``--mask-above-bandwidth``
(:mod:`dnmf.nmf.mask`) need, for the frames of one block, the corpus's
``clipped`` counts and ``file_index``, and the file table's ``bandwidth``.
A worker reads only its block's frames, by whole chunks, each checked against
the store's records (:mod:`dnmf.io.checked`) and kept in a small cache of this
process (a visit of the next epoch, or a sampled column of the same chunk,
reads nothing again); a column of the file table is read whole once.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import numpy as np

from dnmf.io.blocks import open_array
from dnmf.io.checked import read_all, read_frames
from dnmf.io.records import GROUP, ArrayRecords, load_records

__all__ = ["cutoff_bins", "file_column", "frame_values"]

#: Chunks of per-frame arrays kept per process (8192 frames of int32: 32 KiB each).
CACHED_CHUNKS = 256

_chunks: OrderedDict[tuple[str, str, int, int], np.ndarray] = OrderedDict()
_columns: dict[tuple[str, str, bytes], np.ndarray] = {}
_records: dict[tuple[str, str], tuple[tuple[int, int], ArrayRecords | None]] = {}


def _records_of(store: str, name: str) -> ArrayRecords | None:
    """:func:`~dnmf.io.records.load_records`, without parsing the records' index again
    while its file on a local disk is unchanged (a sampled column asks for it each time)."""
    if "://" in store:
        return load_records(store, name)
    try:
        st = os.stat(os.path.join(store, GROUP, "zarr.json"))
    except OSError:
        return load_records(store, name)
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _records.get((store, name))
    if hit is None or hit[0] != stamp:
        hit = _records[store, name] = (stamp, load_records(store, name))
    return hit[1]


def frame_values(store: str, name: str, lo: int, hi: int) -> np.ndarray:
    """``name[lo:hi]`` of the corpus store ``store`` (an array along ``frame``), checked."""
    rec = _records_of(store, name)
    arr = None
    if rec is None:  # not recorded (yet): read as it is
        return np.asarray(open_array(f"{store}/{name}")[lo:hi])
    c = rec.chunks[-1]
    parts = []
    for j in range(lo // c, (hi - 1) // c + 1):
        key = (store, name, j, int(rec.crc[j]))
        data = _chunks.get(key)
        if data is None:
            arr = arr if arr is not None else open_array(f"{store}/{name}")
            a, z = j * c, min((j + 1) * c, rec.shape[-1])
            data = _chunks[key] = read_frames(arr, rec, a, z)
            if len(_chunks) > CACHED_CHUNKS:
                _chunks.popitem(last=False)
        else:
            _chunks.move_to_end(key)
        a = max(lo - j * c, 0)
        parts.append(data[a : hi - j * c])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def file_column(store: str, name: str) -> np.ndarray:
    """A column of the file table (or ``frequency``) of the corpus store ``store``, whole,
    checked, cached until the store's next commit changes it."""
    rec = _records_of(store, name)
    return _cached((store, name, _stamp(rec)), lambda: read_all(open_array(f"{store}/{name}"), rec))


def _stamp(rec: ArrayRecords | None) -> bytes:
    return b"" if rec is None else rec.crc.tobytes()


def _cached(key: tuple[str, str, bytes], make: Any) -> np.ndarray:
    hit = _columns.get(key)
    if hit is None:
        hit = _columns[key] = make()
        if len(_columns) > 64:
            _columns.pop(next(iter(_columns)))
    return hit


def cutoff_bins(store: str) -> np.ndarray:
    """Per file of the corpus store ``store``, its first bin above its bandwidth (``n_bins``
    where it keeps every bin): ``searchsorted(frequency, bandwidth, "right")``."""
    stamp = _stamp(_records_of(store, "frequency")) + _stamp(_records_of(store, "bandwidth"))
    return _cached(
        (store, "cutoff", stamp),
        lambda: np.searchsorted(
            file_column(store, "frequency"), file_column(store, "bandwidth"), side="right"
        ),
    )
