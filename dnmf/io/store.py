"""What every dnmf Zarr store shares: opening, the ``dnmf`` attrs block, commits.

A store is a Zarr format 3 group. Its root attrs hold one JSON object under
the key ``"dnmf"`` with at least ``kind`` (``corpus``, ``model``,
``activations``), ``format_version`` and ``dnmf_version``. Nothing is pickled.

A store's consolidated metadata is rewritten only when a stage commits, so a
reader that opens it the usual way (``xarray.open_zarr``) sees the last
committed state even while a run is writing.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dnmf._version import __version__
from dnmf.errors import DnmfPathError, StoreDamagedError, StoreFormatError
from dnmf.words import with_article

__all__ = [
    "FORMAT_VERSION",
    "StorePath",
    "array",
    "consolidate",
    "damaged",
    "open_group",
    "read_meta",
    "write_meta",
]

#: Version of the on-disk layout this dnmf writes and reads.
FORMAT_VERSION = 1

StorePath = str | os.PathLike[str]


#: Rows of a file table per Zarr chunk (corpus and activations stores alike).
FILE_CHUNK = 65536


def open_group(path: StorePath, *, mode: str = "r") -> zarr.Group:
    """Open a store's root group, reading each array's own metadata (not the consolidated copy)."""
    p = Path(path)
    if mode in ("r", "r+") and not (p / "zarr.json").exists():
        if p.exists():
            raise StoreFormatError(
                f"{str(path)!r} is not a dnmf store (no zarr.json); pass the store that "
                "dnmf ingest or dnmf learn wrote"
            )
        raise DnmfPathError(f"store {str(path)!r} does not exist; check the path")
    try:
        group = zarr.open_group(str(path), mode=mode, zarr_format=3, use_consolidated=False)  # type: ignore[arg-type]
        if mode in ("r", "r+"):
            # Read every array's metadata now (a few small files), so that a damaged one is
            # this one sentence and not a JSONDecodeError wherever the array is first used.
            for _ in group.members():
                pass
    except _UNREADABLE as exc:
        raise damaged(path, exc) from None
    if mode in ("r", "r+"):
        from dnmf.io.records import check_shapes

        check_shapes(group, str(path))  # an edited zarr.json shape is refused here
    return group


#: What zarr raises on a zarr.json that is not valid metadata (truncated, edited, not JSON).
_UNREADABLE = (ValueError, TypeError, AttributeError, KeyError)


def damaged(path: StorePath, exc: BaseException) -> StoreDamagedError:
    """The error for a store whose metadata cannot be read."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreDamagedError(
        f"store {str(path)!r} is damaged: its metadata (zarr.json) cannot be read "
        f"({detail.rstrip('.')}); restore it from a copy or write it again with the dnmf "
        "command that made it"
    )


def read_meta(group: zarr.Group, kind: str, path: StorePath) -> dict[str, Any]:
    """The ``dnmf`` attrs of ``group``, checked to be of ``kind`` and a readable version."""
    meta = group.attrs.get("dnmf")
    if not isinstance(meta, dict) or "kind" not in meta:
        raise StoreFormatError(
            f"{str(path)!r} is a Zarr store but not a dnmf store; pass the store that "
            f"dnmf wrote for {with_article(kind)}"
        )
    if meta["kind"] != kind:
        raise StoreFormatError(
            f"{str(path)!r} is a dnmf {meta['kind']} store, not {with_article(kind)} store; pass "
            f"{with_article(kind)} store"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreFormatError(
            f"{str(path)!r} has format version {version}, this dnmf {__version__} reads "
            f"version {FORMAT_VERSION}; rebuild the store with this dnmf"
        )
    return dict(meta)


def write_meta(group: zarr.Group, meta: dict[str, Any]) -> None:
    """Replace the ``dnmf`` attrs block (one small JSON write)."""
    group.attrs["dnmf"] = {**meta, "format_version": FORMAT_VERSION, "dnmf_version": __version__}


def array(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of ``group`` (typed: a group's items may be groups too)."""
    where = str(getattr(group.store_path.store, "root", group.store_path))
    try:
        node = group[name]
    except KeyError:
        raise StoreDamagedError(
            f"store {where!r} is damaged: it has no array {name!r}; restore it from a copy or "
            "write it again with the dnmf command that made it"
        ) from None
    except _UNREADABLE as exc:
        raise damaged(where, exc) from None
    if not isinstance(node, zarr.Array):
        raise StoreFormatError(f"{name!r} in the store is not an array; the store is damaged")
    return node


def existing_array(
    group: zarr.Group, name: str, shape: tuple[int, ...], dtype: Any,
    chunks: tuple[int, ...] | None = None, *, handles: dict[str, Any] | None = None,
    key: str = "",
) -> zarr.Array | None:  # fmt: skip
    """Array ``name`` of ``group`` if it exists with this shape and dtype (and chunks, if
    given), to be rewritten in place (one write, instead of a delete, a metadata write and
    a write); None if it is absent, different or its metadata does not parse.

    ``handles[key]``, an array opened before, is taken instead of opening it again where
    its shape and dtype still match (a caller that rewrites the same arrays often)."""
    held = handles.get(key) if handles is not None else None
    if held is not None and held.shape == tuple(shape) and held.dtype == np.dtype(dtype):
        return held  # type: ignore[no-any-return]
    try:
        node = group[name]
    except Exception:  # absent or unreadable: the caller writes it anew
        return None
    if not isinstance(node, zarr.Array) or node.shape != tuple(shape):
        return None
    if node.dtype != np.dtype(dtype):
        return None
    grid = tuple(node.metadata.chunk_grid.chunk_shape)  # type: ignore[union-attr,attr-defined]
    if chunks is not None and grid != tuple(chunks):
        return None
    return node


def write_arrays(writes: Sequence[tuple[zarr.Array, np.ndarray]]) -> None:
    """Write each ``(array, values)`` pair whole, all in one trip to Zarr's event loop.

    One ``array[...] = values`` costs a hand-over to Zarr's I/O thread and back,
    which on a busy machine takes longer than the write; a checkpoint writes
    about twenty small arrays, so they go together.
    """
    import asyncio

    from zarr.core.sync import sync

    async def write_all() -> None:
        await asyncio.gather(
            *(arr.async_array.setitem(..., values) for arr, values in writes if values.size)
        )

    sync(write_all())


def consolidate(path: StorePath) -> None:
    """Record the chunks of arrays not recorded yet, then rewrite the consolidated metadata
    so that readers see the committed state (:mod:`dnmf.io.records`)."""
    from dnmf.io.records import update_records

    update_records(zarr.open_group(str(path), mode="r+", zarr_format=3, use_consolidated=False))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(path), zarr_format=3)
