"""The sentences for a damaged store: which store, array and chunk, and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from dnmf.errors import StoreDamagedError

if TYPE_CHECKING:
    from dnmf.io.records import ArrayRecords

__all__ = ["chunk_damaged", "chunk_exists", "fix_for", "records_damaged"]

GROUP = "chunks"


def chunk_damaged(
    rec: ArrayRecords, j: int, how: str, exc: BaseException | None = None
) -> StoreDamagedError:
    """One sentence: the store, the array, the chunk, what is wrong and what to do."""
    region = rec.region(j)
    where = f"chunk {j} of {rec.name}"
    if rec.grows is not None:
        r = region[rec.grows]
        where += f" (frames {r.start}-{r.stop - 1})"
    detail = {
        "missing": "is missing",
        "altered": "does not match the checksum its commit recorded",
        "unreadable": "cannot be read (truncated or garbled)",
    }[how]
    return StoreDamagedError(
        f"store {rec.store!r} is damaged: {where} {detail}; {fix_for(rec.store, rec, region)}"
    )


def fix_for(store: str, rec: ArrayRecords | None = None, region: Any = None) -> str:
    """What to do about a damaged store, by its kind (the files to re-ingest, if known)."""
    meta: Any = {}
    try:
        meta = zarr.open_group(store, mode="r", use_consolidated=False).attrs.get("dnmf", {})
    except Exception:
        pass
    meta = meta if isinstance(meta, dict) else {}
    kind = meta.get("kind")
    if kind == "corpus":
        files = _files_of(store, rec, region)
        which = f"re-ingest {files}" if files else "re-ingest its files"
        return f"{which} (dnmf ingest {meta.get('source', 'FOLDER')} -o {store} --rebuild)"
    if kind == "model" and rec is not None and rec.name.startswith("state/"):
        return (
            "its resume state cannot be trusted: learn again without --resume "
            "(dnmf learn CORPUS -o STORE --overwrite)"
        )
    if kind == "model":
        return "learn the model again (dnmf learn CORPUS -o STORE --overwrite)"
    if kind == "activations":
        return "delete the store and write it again (dnmf export or dnmf transform)"
    return "restore it from a copy or write it again with the dnmf command that made it"


def _files_of(store: str, rec: ArrayRecords | None, region: Any) -> str:
    """The files whose frames lie in a damaged chunk of V (best effort, unchecked)."""
    if rec is None or rec.grows is None or region is None:
        return ""
    try:
        g = zarr.open_group(store, mode="r", use_consolidated=False)
        first = np.asarray(g["first_frame"][:])  # type: ignore[index]
        n = np.asarray(g["n_frames"][:])  # type: ignore[index]
        names = np.asarray(g["file"][:])  # type: ignore[index]
    except Exception:
        return ""
    r = region[rec.grows]
    hit = [
        str(f)
        for f, a, k in zip(names, first, n, strict=False)
        if k and a < r.stop and a + k > r.start
    ]
    if not hit:
        return ""
    shown = ", ".join(repr(f) for f in hit[:3])
    return shown + (f" and {len(hit) - 3} more" if len(hit) > 3 else "")


def records_damaged(store: str, exc: BaseException) -> StoreDamagedError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreDamagedError(
        f"store {store!r} is damaged: its chunk records (the group {GROUP!r}) cannot be read "
        f"({detail.rstrip('.')}); {fix_for(store)}"
    )


def chunk_exists(arr: Any, j: int, rec: ArrayRecords) -> bool:
    from zarr.core.sync import sync

    coords = tuple(int(i) for i in np.unravel_index(j, rec.grid))
    try:
        return bool(sync((arr.store_path / arr.metadata.encode_chunk_key(coords)).exists()))
    except Exception:
        return True
