"""Whole uncompressed chunks written past the page cache (``O_DIRECT``).

Ingest writes each chunk of ``V`` once and does not read it back. Through the
page cache, each 33 MB chunk cost 90-130 ms of CPU on the benchmark machine
(the kernel's first touch of fresh cache pages, nearly all of a 1-worker
ingest's write time); written with ``O_DIRECT`` from a page-aligned buffer, it
cost 23 ms of wall time and 7 ms of CPU (an ad hoc measurement; its effect on a
whole ingest is in ``benchmarks/results/ingest.txt``).

:func:`write_chunk` writes the chunk file itself only where the bytes on disk
are exactly the array's values: a local store, the ``bytes`` codec alone
(little-endian), a whole chunk, a page-aligned C-contiguous buffer. Anything
else, and a filesystem that refuses ``O_DIRECT`` (tmpfs, some network
filesystems), is left to zarr. The write is atomic as zarr's is: a temporary
file in the chunk's folder, renamed over the chunk.
"""

from __future__ import annotations

import math
import mmap
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["aligned_empty", "write_chunk"]

#: The alignment ``O_DIRECT`` asks of the buffer, the file offset and the length.
ALIGN = mmap.PAGESIZE
_refused = False  # this process's filesystem refused O_DIRECT once: zarr from then on


def aligned_empty(shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """An uninitialised C-order array whose buffer starts on a page boundary."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    buffer = mmap.mmap(-1, max(1, n * dtype.itemsize))  # an empty mapping is refused
    return np.frombuffer(buffer, dtype=dtype, count=n).reshape(shape)


def _chunk_path(array: Any, coords: tuple[int, ...]) -> Path | None:
    """The chunk's file, where ``array``'s chunk bytes are its values as they are."""
    from zarr.codecs import BytesCodec
    from zarr.storage import LocalStore

    meta = array.metadata
    store = array.store
    if not isinstance(store, LocalStore) or getattr(meta, "zarr_format", None) != 3:
        return None
    codecs = list(getattr(meta, "codecs", ()))
    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return None
    endian = codecs[0].endian
    if array.dtype.itemsize > 1 and getattr(endian, "value", endian) != sys.byteorder:
        return None
    key = meta.encode_chunk_key(coords)
    return Path(store.root, array.path, key) if array.path else Path(store.root, key)


def write_chunk(array: Any, coords: tuple[int, ...], data: np.ndarray) -> bool:
    """Write chunk ``coords`` of ``array`` as ``data`` with ``O_DIRECT``; False (nothing
    written) where this cannot be done and zarr must write it."""
    global _refused
    if _refused or not hasattr(os, "O_DIRECT"):
        return False
    if (
        tuple(data.shape) != tuple(array.chunks)
        or data.dtype != array.dtype
        or not data.flags.c_contiguous
        or data.ctypes.data % ALIGN
        or data.nbytes % ALIGN
    ):
        return False
    path = _chunk_path(array, coords)
    if path is None:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.direct")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o666)
    except OSError:
        _refused = True  # EINVAL: this filesystem does not take O_DIRECT
        return False
    try:
        # One call: a write that stops short (over 2 GiB on Linux) is left to zarr.
        view = memoryview(data.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        whole = os.write(fd, view) == len(view)
    except OSError:
        whole = False
    finally:
        os.close(fd)
    if not whole:
        tmp.unlink(missing_ok=True)
        _refused = True
        return False
    os.replace(tmp, path)
    return True
