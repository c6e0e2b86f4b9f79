"""The rows of a corpus store's file table, apart from the store (no Zarr, no NumPy).

:class:`FileRecord` is one row and :class:`Status` the values of its ``status``
column. Ingest plans with them before it opens any store (:mod:`pipelines.ingest_plan`),
so a command that ingests into a new store says its first line before Zarr is
imported; :class:`dnmf.io.corpus.CorpusStore` reads and writes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["COLUMNS", "FileRecord", "Status"]


class Status:
    """Values of the file table's ``status`` column."""

    OK = "ok"
    SKIPPED = "skipped"  # could not be ingested; ``error`` says why; no frames
    CHANGED = "changed"  # content differs from what was ingested; old frames kept
    REMOVED = "removed"  # no longer in the corpus folder; old frames kept


@dataclass
class FileRecord:
    """One row of the file table."""

    file: str
    content_hash: str
    first_frame: int
    n_frames: int
    n_samples: int = 0
    samplerate: int = 0
    channels: int = 0
    duration: float = 0.0
    size: int = 0
    mtime_ns: int = 0
    status: str = Status.OK
    error: str = ""
    bandwidth: float = 0.0

    DTYPES: ClassVar[dict[str, Any]] = {
        "file": str, "content_hash": str, "first_frame": "int64", "n_frames": "int64",
        "n_samples": "int64", "samplerate": "int64", "channels": "int32",
        "duration": "float64", "size": "int64", "mtime_ns": "int64", "status": str,
        "error": str, "bandwidth": "float64",
    }  # fmt: skip


#: The file table's columns, in order: one array each along ``file``.
COLUMNS = [f.name for f in dataclasses.fields(FileRecord)]
