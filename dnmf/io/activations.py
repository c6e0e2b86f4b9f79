"""The activations store: one layout for ``dnmf export`` and ``dnmf transform``.

Laid out as the corpus store (Zarr format 3, DESIGN.md section 2), so one
selection code works on both::

    activations.zarr/
      H            (component, frame)  float32, chunks (rank, chunk_frames), aligned with V
      time         (frame,)            float64, seconds within the frame's file
      file_index   (frame,)            int32, row of the frame's file in the file table
      file, first_frame, n_frames, status, ...   (file,)  the file table
      attrs["dnmf"] = {kind: "activations", ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from dnmf.io.store import FILE_CHUNK

__all__ = ["create_frame_arrays", "write_file_table"]


def create_frame_arrays(group: zarr.Group, rank: int, n_frames: int, chunk_frames: int) -> None:
    """``H``, ``time`` and ``file_index`` of ``n_frames`` frames, chunked like the corpus."""
    cf = int(chunk_frames)
    group.create_array(
        "H", shape=(rank, n_frames), chunks=(rank, cf), dtype="float32",
        dimension_names=("component", "frame"), compressors=None, fill_value=0.0,
        attributes={"coordinates": "time file_index", "long_name": "activations"},
    )  # fmt: skip
    group.create_array(
        "time", shape=(n_frames,), chunks=(cf,), dtype="float64", dimension_names=("frame",),
        attributes={"units": "s", "long_name": "time within file"},
    )  # fmt: skip
    group.create_array(
        "file_index", shape=(n_frames,), chunks=(cf,), dtype="int32",
        dimension_names=("frame",), fill_value=-1,
    )  # fmt: skip


def write_file_table(
    group: zarr.Group, rows: Sequence[Mapping[str, Any]], columns: Mapping[str, Any]
) -> None:
    """The file table, one array per column along ``file`` (replacing any there)."""
    for col, dtype in columns.items():
        values = np.array([r[col] for r in rows], dtype=dtype)
        if col in group:
            arr = group[col]
            arr.resize(values.shape)  # type: ignore[union-attr]
        else:
            arr = group.create_array(
                col, shape=values.shape, chunks=(FILE_CHUNK,), dtype=dtype,
                dimension_names=("file",), fill_value="" if dtype is str else 0,
            )  # fmt: skip
        if len(values):
            arr[:] = values  # type: ignore[index]
