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

from collections import OrderedDict

import numpy as np

from dnmf.io.blocks import open_array
from dnmf.io.checked import read_all, read_frames
from dnmf.io.records import load_records

__all__ = ["file_column", "frame_values"]

#: Chunks of per-frame arrays kept per process (8192 frames of int32: 32 KiB each).
CACHED_CHUNKS = 256

_chunks: OrderedDict[tuple[str, str, int, int], np.ndarray] = OrderedDict()
_columns: dict[tuple[str, str, bytes], np.ndarray] = {}


def frame_values(store: str, name: str, lo: int, hi: int) -> np.ndarray:
    """``name[lo:hi]`` of the corpus store ``store`` (an array along ``frame``), checked."""
    rec = load_records(store, name)
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
    rec = load_records(store, name)
    key = (store, name, b"" if rec is None else rec.crc.tobytes())
    hit = _columns.get(key)
    if hit is None:
        hit = _columns[key] = read_all(open_array(f"{store}/{name}"), rec)
        if len(_columns) > 64:
            _columns.pop(next(iter(_columns)))
    return hit
