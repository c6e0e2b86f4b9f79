"""Per-chunk records: what a store's commit wrote, so that readers trust nothing more.

Zarr reads a missing chunk as its fill value, silently. So each commit records,
for every root array of a store, a checksum of each of its chunks, and every
reader checks the chunks it reads against them (DESIGN.md section 2).

Layout, in the store's group ``chunks`` (plain Zarr arrays, readable with
``xarray.open_zarr(store, group="chunks")``; nothing pickled)::

    chunks/<name>        (<name>_chunk,)  uint32, the checksum of each chunk of <name>
    chunks/V_sum, V_min, V_max  (V_chunk,) float64, over each chunk of V (corpus only)
    chunks/V_nonfinite   (V_chunk,)        int64, NaN and infinite values in each chunk
    chunks.attrs["dnmf_records"] = {"checksum": ..., "arrays": {<name>: {shape, chunks,
                                    dtype, grows}}}

Zarr arrays rather than JSON attributes: a corpus of 10,000 hours has about
190,000 chunks of ``V``, whose records would make every open parse megabytes of
JSON; as arrays a reader loads the records of the array it reads, 4 bytes a
chunk, and the index of shapes stays one small JSON object.

The checksum of a chunk is zlib's CRC-32 of its values in C order,
little-endian, within the recorded shape (computed with ISA-L's
``isal_zlib.crc32``: the same values at 13 GB/s where ``zlib.crc32`` ran at
4 GB/s on the benchmark machine; both take NumPy buffers without a copy):
for a whole chunk of an uncompressed array (``V``, ``H``, ``W``) these
are the stored chunk bytes. Counting only what lies inside the shape keeps the
record of a corpus's last, partly filled chunk true while an append fills the
rest of it (until the append commits, readers see the committed frames).
Chunks are numbered in C order over the chunk grid (along ``frame`` for ``V``).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from dnmf.errors import StoreDamagedError
from dnmf.io.damage import chunk_damaged, chunk_exists, fix_for, records_damaged
from dnmf.io.store import existing_array, write_arrays

__all__ = [
    "ArrayRecords",
    "check_shapes",
    "checksum",
    "chunk_record",
    "load_records",
    "record_index",
    "records_of",
    "update_records",
]

GROUP = "chunks"
ATTR = "dnmf_records"
#: Arrays whose records also hold the sum, min, max and non-finite count of each chunk.
STATS = ("V",)
STAT_FIELDS = {"sum": "float64", "min": "float64", "max": "float64", "nonfinite": "int64"}
#: Dims along which an array may be longer than its record (an append not committed yet).
GROWS = ("frame", "epoch")
DESCRIPTION = (
    "crc32 (zlib) of each chunk's values in C order, little-endian, within the recorded shape"
)


try:
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # no wheel for this platform: zlib's, the same values, slower
    from zlib import crc32 as _crc32


def checksum(data: np.ndarray) -> int:
    """CRC-32 of ``data``'s values in C order, little-endian (strings: UTF-8, NUL-separated)."""
    if data.dtype.kind in "OTU":
        return _crc32("\x00".join(str(v) for v in np.ravel(data)).encode("utf-8"))
    values = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    return _crc32(values.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


def chunk_record(data: np.ndarray, *, stats: bool = False) -> dict[str, Any]:
    """The record of one chunk's values: its checksum, and for ``V`` its statistics.

    The sum is ``data.sum(dtype=float64)`` of the chunk as it is read, so a sum of
    these in a fixed tree is bitwise the sum a pass over the blocks would take.
    """
    out: dict[str, Any] = {"crc": checksum(data)}
    if stats:
        total = float(data.sum(dtype=np.float64))
        # A finite sum means every value is finite (a NaN or an infinity carries into it),
        # which saves a pass; only a sum that is not finite needs the count.
        bad = 0 if math.isfinite(total) else int(data.size - np.count_nonzero(np.isfinite(data)))
        ok = data if bad == 0 else data[np.isfinite(data)]
        out.update(
            sum=total,
            min=float(ok.min()) if ok.size else math.nan,
            max=float(ok.max()) if ok.size else math.nan,
            nonfinite=bad,
        )
    return out


@dataclass
class ArrayRecords:
    """The committed records of one array of a store."""

    store: str
    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    crc: np.ndarray
    grows: int | None = None
    stats: dict[str, np.ndarray] | None = None

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))

    @property
    def n_chunks(self) -> int:
        return math.prod(self.grid)

    def region(self, j: int) -> tuple[slice, ...]:
        """The slices of chunk ``j`` within the recorded shape."""
        coords = np.unravel_index(j, self.grid) if self.grid else ()
        return tuple(
            slice(int(i) * c, min((int(i) + 1) * c, s))
            for i, c, s in zip(coords, self.chunks, self.shape, strict=True)
        )

    def count(self, j: int) -> int:
        return math.prod(r.stop - r.start for r in self.region(j))

    def check(self, j: int, data: np.ndarray, arr: Any = None) -> None:
        """Raise :class:`StoreDamagedError` unless ``data`` is chunk ``j`` as committed."""
        if checksum(data) != int(self.crc[j]):
            how = "missing" if arr is not None and not chunk_exists(arr, j, self) else "altered"
            raise chunk_damaged(self, j, how)

    def read(self, arr: Any, j: int) -> np.ndarray:
        """Chunk ``j`` of ``arr`` (within the recorded shape), checked."""
        try:
            data = np.asarray(arr[self.region(j)])
        except Exception as exc:  # a truncated or garbled chunk does not decode
            raise chunk_damaged(self, j, "unreadable", exc) from None
        self.check(j, data, arr)
        return data


# -- loading ----------------------------------------------------------------------------
_cache: dict[tuple[str, str, str], ArrayRecords] = {}


def record_index(store: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``{name: {shape, chunks, dtype, grows, token}}`` of the recorded arrays; None: no records."""
    store = str(store)
    try:
        if "://" in store:
            g = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
            attrs: Any = g[GROUP].attrs.asdict()
        else:
            with open(os.path.join(store, GROUP, "zarr.json"), encoding="utf-8") as f:
                attrs = json.load(f).get("attributes", {})
        return dict(attrs[ATTR]["arrays"])
    except (KeyError, FileNotFoundError):
        return None
    except (ValueError, TypeError, AttributeError) as exc:
        raise records_damaged(store, exc) from None


def load_records(store: str | os.PathLike[str], name: str) -> ArrayRecords | None:
    """The records of array ``name`` of ``store``; None if the store has none for it.

    Cached in the process by the token each commit writes beside an array's record.
    """
    store = str(store)
    index = record_index(store)
    entry = None if index is None else index.get(name)
    if entry is None:
        return None
    key = (store, name, str(entry.get("token")))
    hit = _cache.get(key)
    if hit is None:
        hit = _cache[key] = _load(store, name, entry)
        if len(_cache) > 256:
            _cache.pop(next(iter(_cache)))
    return hit


def _load(store: str, name: str, entry: dict[str, Any]) -> ArrayRecords:
    try:
        g = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
        crc = np.asarray(g[f"{GROUP}/{_key(name)}"][:])  # type: ignore[index]
        stats = None
        if name in STATS:
            stats = {k: np.asarray(g[f"{GROUP}/{_key(name)}_{k}"][:]) for k in STAT_FIELDS}  # type: ignore[index]
    except Exception as exc:
        raise records_damaged(store, exc) from None
    rec = ArrayRecords(
        store, name, tuple(entry["shape"]), tuple(entry["chunks"]), crc, entry.get("grows"), stats
    )
    if len(crc) != rec.n_chunks:
        raise records_damaged(store, ValueError(f"{len(crc)} records for {rec.n_chunks} chunks"))
    return rec


# -- writing (at commit) ----------------------------------------------------------------
Fresh = dict[int, dict[str, Any]]


def update_records(
    group: zarr.Group,
    names: Iterable[str] | None = None,
    *,
    fresh: dict[str, Fresh] | None = None,
    keep_below: dict[str, int] | None = None,
    map: Callable[[Callable[[int], dict[str, Any]], Sequence[int]], list[Any]] | None = None,
    handles: dict[str, Any] | None = None,
    writes: Sequence[tuple[zarr.Array, np.ndarray]] = (),
) -> None:
    """Record the chunks of ``names`` (default: every root array without a record; a name
    may be a path below the root, as ``state/slot0/W``).

    Chunk ``j`` of array ``name`` keeps its old record if ``j < keep_below[name]``,
    takes ``fresh[name][j]`` (computed by the task that wrote it) if given, and is
    otherwise read back here (through ``map``, e.g. on a cluster; default in turn).
    ``handles`` keeps the opened arrays (by name) and record arrays for a caller that
    records the same arrays again and again (the model store's checkpoints), and
    ``writes`` are the caller's own ``(array, values)`` writes, made together with the
    records' (:func:`dnmf.io.store.write_arrays`), before the index is switched.
    """
    pending = list(writes)
    fresh, keep_below = fresh or {}, keep_below or {}
    handles = {} if handles is None else handles
    root = _root(group)
    recs = handles.get(GROUP)
    if recs is None:
        recs = handles[GROUP] = group.require_group(GROUP)
    index = record_index(root) or {}
    if names is None:
        names = [n for n, a in group.arrays() if n not in index]
    for name in names:
        arr = handles.get(name)
        if arr is None:
            arr = handles[name] = group[name]
        assert isinstance(arr, zarr.Array)
        new = _entry(arr)
        old = load_records(root, name) if name in index and keep_below.get(name) else None
        keep = (
            keep_below.get(name, 0) if old is not None and old.chunks == tuple(new["chunks"]) else 0
        )
        rec = ArrayRecords(root, name, tuple(new["shape"]), tuple(new["chunks"]),
                           np.zeros(0, np.uint32), new["grows"])  # fmt: skip
        rows = _rows(arr, rec, old, keep, fresh.get(name, {}), map)
        pending += _record_arrays(recs, name, rows, name in STATS, handles)
        index[name] = {**new, "token": uuid.uuid4().hex[:12]}
    write_arrays(pending)
    recs.attrs[ATTR] = {"checksum": DESCRIPTION, "arrays": index}


def _rows(
    arr: zarr.Array, rec: ArrayRecords, old: ArrayRecords | None, keep: int, fresh: Fresh,
    map: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    stats = rec.name in STATS
    n = rec.n_chunks
    todo = [j for j in range(keep, n) if j not in fresh]
    url = f"{rec.store}/{rec.name}"
    if todo:
        task = _ReadBack(url, rec, stats)
        got = dict(zip(todo, (map or _serial)(task, todo), strict=True))
    else:
        got = {}
    rows = []
    for j in range(n):
        if j < keep and old is not None:
            row = {"crc": int(old.crc[j])}
            if stats and old.stats is not None:
                row.update({k: old.stats[k][j].item() for k in STAT_FIELDS})
            rows.append(row)
        else:
            rows.append(fresh[j] if j in fresh else got[j])
    return rows


@dataclass(frozen=True)
class _ReadBack:
    """Read chunk ``j`` back and make its record (a picklable task)."""

    url: str
    rec: ArrayRecords
    stats: bool

    def __call__(self, j: int) -> dict[str, Any]:
        arr = zarr.open_array(self.url, mode="r", zarr_format=3, use_consolidated=False)  # type: ignore[arg-type]
        return chunk_record(np.asarray(arr[self.rec.region(j)]), stats=self.stats)


def _serial(fn: Callable[[int], dict[str, Any]], items: Sequence[int]) -> list[dict[str, Any]]:
    return [fn(j) for j in items]


def records_of(arr: zarr.Array, data: np.ndarray) -> Fresh:
    """The records of every chunk of ``arr`` as it holds ``data`` (just written from memory),
    taken from ``data`` itself: the values a read-back would check, without reading back."""
    chunks = tuple(arr.metadata.chunk_grid.chunk_shape)  # type: ignore[union-attr,attr-defined]
    data = np.asarray(data, dtype=arr.dtype)
    rec = ArrayRecords("", "", tuple(data.shape), chunks, np.zeros(0, np.uint32))
    return {j: chunk_record(data[rec.region(j)]) for j in range(rec.n_chunks)}


def _record_arrays(
    recs: zarr.Group, name: str, rows: list[dict[str, Any]], stats: bool, handles: dict[str, Any]
) -> list[tuple[zarr.Array, np.ndarray]]:
    """The record arrays of ``name`` (made where they do not exist) and what they get."""
    out_writes = []
    fields = {"": "uint32", **({f"_{k}": v for k, v in STAT_FIELDS.items()} if stats else {})}
    for suffix, dtype in fields.items():
        key = suffix[1:] or "crc"
        values = np.array([r[key] for r in rows], dtype=dtype)
        chunks = (max(1, min(len(values), 65536)),)
        where = f"{GROUP}/{_key(name)}{suffix}"
        out = existing_array(
            recs, f"{_key(name)}{suffix}", values.shape, dtype, chunks, handles=handles, key=where
        )
        if out is None:
            out = recs.create_array(
                f"{_key(name)}{suffix}", shape=values.shape, chunks=chunks, dtype=dtype,
                dimension_names=(f"{name}_chunk",), overwrite=True,
            )  # fmt: skip
        out_writes.append((out, values))
        handles[where] = out
    return out_writes


def _key(name: str) -> str:
    """The name of an array's record: ``state/slot0/W`` is kept as ``state.slot0.W``, flat."""
    return name.replace("/", ".")


def _entry(arr: zarr.Array) -> dict[str, Any]:
    dims = arr.metadata.dimension_names or ()  # type: ignore[union-attr]
    grows = next((i for i, d in enumerate(dims) if d in GROWS), None)
    chunks = arr.metadata.chunk_grid.chunk_shape  # type: ignore[union-attr,attr-defined]
    return {"shape": list(arr.shape), "chunks": list(chunks), "dtype": str(arr.dtype),
            "grows": grows}  # fmt: skip


def _root(group: zarr.Group) -> str:
    return str(getattr(group.store_path.store, "root", group.store_path))


def check_shapes(group: zarr.Group, path: str) -> None:
    """Refuse an array whose metadata (shape, chunks, dtype) no longer matches its record."""
    index = record_index(_root(group))
    if index is None:
        return
    for name, entry in index.items():
        if name not in group:
            raise StoreDamagedError(
                f"store {str(path)!r} is damaged: its array {name!r} is gone; {fix_for(str(path))}"
            )
        arr = group[name]
        new = _entry(arr)  # type: ignore[arg-type]
        shape, want = new["shape"], entry["shape"]
        g = entry.get("grows")
        same = len(shape) == len(want) and all(
            s == w or (i == g and s > w) for i, (s, w) in enumerate(zip(shape, want, strict=True))
        )
        if not same or new["chunks"] != entry["chunks"] or new["dtype"] != entry["dtype"]:
            raise StoreDamagedError(
                f"store {str(path)!r} is damaged: the metadata of {name} says shape "
                f"{tuple(shape)}, chunks {tuple(new['chunks'])}, dtype {new['dtype']}, where its "
                f"commit recorded {tuple(want)}, {tuple(entry['chunks'])}, {entry['dtype']}; "
                f"{fix_for(str(path))}"
            )
