"""Whole uncompressed chunks written as files, without zarr (``V``'s past the page cache).

Ingest writes each chunk of its arrays once and does not read it back. Two
costs of going through zarr for that were measured on the benchmark machine:

- a 33 MB chunk of ``V`` through the page cache cost 90-130 ms of CPU (the
  kernel's first touch of fresh cache pages); written with ``O_DIRECT`` from a
  page-aligned buffer it cost 23-37 ms of wall time and 1-7 ms of CPU (ad hoc
  measurements in two sessions);
- a 64 KB chunk of ``time``, ``file_index`` or ``clipped`` cost about 10 ms
  through ``zarr.open_group`` and ``Array.__setitem__`` (opening the arrays and
  zarr's synchronous bridge to its event loop), 1.9 s of a 13 s one-worker ingest
  of the benchmark's two hours (py-spy of the worker).

:func:`write_whole` writes the chunk file itself, where the bytes on disk are
exactly the array's values: a local store, the ``bytes`` codec alone in native
byte order, a whole chunk inside the array's shape, a C-contiguous buffer. A
page-aligned buffer is written with ``O_DIRECT`` where the filesystem takes it,
any other buffered. Each array's layout (its ``zarr.json``) is read once per
process and read again when that file changes (a resize rewrites it). Anything
else is left to zarr. The write is atomic as zarr's is: a temporary file in the
chunk's folder, renamed over the chunk.
"""

from __future__ import annotations

import math
import mmap
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["aligned_empty", "write_whole"]

#: The alignment ``O_DIRECT`` asks of the buffer, the file offset and the length.
ALIGN = mmap.PAGESIZE
_refused = False  # this process's filesystem refused O_DIRECT once: buffered from then on


def aligned_empty(shape: tuple[int, ...], dtype: Any = np.float32) -> np.ndarray:
    """An uninitialised C-order array whose buffer starts on a page boundary."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    buffer = mmap.mmap(-1, max(1, n * dtype.itemsize))  # an empty mapping is refused
    return np.frombuffer(buffer, dtype=dtype, count=n).reshape(shape)


@dataclass(frozen=True)
class _Layout:
    """Where an array's chunk files are, and what a whole chunk of it is."""

    folder: Path
    meta: Any  # the array's zarr v3 metadata: shape, chunks, dtype, chunk key encoding

    def chunk_at(self, origin: tuple[int, ...], data: np.ndarray) -> tuple[int, ...] | None:
        """The coordinates of the chunk that ``data``, placed at ``origin``, is whole;
        None if it is not one whole chunk inside the shape, of the array's dtype."""
        meta = self.meta
        chunks, shape = tuple(meta.chunk_grid.chunk_shape), tuple(meta.shape)
        if (
            tuple(data.shape) != chunks
            or len(origin) != len(chunks)
            or any(o % c or not 0 <= o < s for o, c, s in zip(origin, chunks, shape, strict=True))
            or data.dtype != meta.dtype.to_native_dtype()
            or not data.flags.c_contiguous
        ):
            return None
        return tuple(o // c for o, c in zip(origin, chunks, strict=True))


_layouts: dict[tuple[str, str], tuple[tuple[int, int, int], _Layout | None]] = {}
_lock = threading.Lock()


def _layout(store: str, name: str) -> _Layout | None:
    """The layout of array ``name`` of the store at ``store``; None where zarr must write."""
    try:
        st = os.stat(Path(store, name, "zarr.json"))
    except OSError:
        return None  # not a local array: zarr says what is wrong
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _lock:
        hit = _layouts.get((store, name))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    found = _read_layout(store, name)
    with _lock:
        _layouts[store, name] = (stamp, found)
    return found


def _read_layout(store: str, name: str) -> _Layout | None:
    import zarr
    from zarr.codecs import BytesCodec

    try:
        array = zarr.open_array(str(Path(store, name)), mode="r", zarr_format=3)
    except Exception:  # whatever zarr refuses here, zarr reports when it writes
        return None
    meta = array.metadata
    codecs = list(getattr(meta, "codecs", ()))
    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return None
    endian = codecs[0].endian
    if array.dtype.itemsize > 1 and getattr(endian, "value", endian) != sys.byteorder:
        return None
    return _Layout(Path(store, name), meta)


def write_whole(store: str, name: str, origin: tuple[int, ...], data: np.ndarray) -> bool:
    """Write ``data`` at index ``origin`` of array ``name`` of the local store at ``store``,
    where it is one whole chunk; False (nothing written) where zarr must write it."""
    layout = _layout(store, name)
    if layout is None or (coords := layout.chunk_at(origin, data)) is None:
        return False
    path = layout.folder / layout.meta.encode_chunk_key(coords)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    view = memoryview(data.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    aligned = data.ctypes.data % ALIGN == 0 and data.nbytes % ALIGN == 0
    if not (aligned and _write_direct(tmp, view)):
        with open(tmp, "wb") as fh:
            fh.write(view)
    os.replace(tmp, path)
    return True


def _write_direct(tmp: Path, view: memoryview) -> bool:
    """Write ``view`` to a new file ``tmp`` with ``O_DIRECT``; False (no file) where the
    filesystem refuses it or the write stops short."""
    global _refused
    if _refused or not hasattr(os, "O_DIRECT"):
        return False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o666)
    except OSError:
        _refused = True  # EINVAL: this filesystem does not take O_DIRECT
        return False
    try:
        # One call: a write that stops short (over 2 GiB on Linux) is written buffered.
        whole = os.write(fd, view) == len(view)
    except OSError:
        whole = False
    finally:
        os.close(fd)
    if not whole:
        tmp.unlink(missing_ok=True)
        _refused = True
    return whole
