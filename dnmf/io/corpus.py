"""The corpus store: ``V (bin, frame)``, its coordinates and the file table.

Layout (Zarr format 3, DESIGN.md section 2)::

    corpus.zarr/
      V            (bin, frame)  float32, chunks (n_bins, chunk_frames), uncompressed
      frequency    (bin,)        float64, Hz
      time         (frame,)      float64, seconds within the frame's file
      file_index   (frame,)      int32, row of the frame's file in the file table
      clipped      (frame,)      int32, samples at full scale inside the frame's window
                                 (dnmf.audio.quality.clipped_counts)
      file         (file,)       str, path relative to the corpus folder (the index)
      content_hash, first_frame, n_frames, n_samples, samplerate, channels,
      duration, size, mtime_ns, status, error,
      bandwidth (Hz, dnmf.audio.quality.bandwidth; 0 for a skipped file)  (file,)
      attrs["dnmf"] = {kind: "corpus", format_version, features, chunk_frames,
                       n_files, n_frames, source, ingest_history: [...]}
      chunks/      per-chunk records of every array (dnmf.io.records): a checksum per
                   chunk, and per chunk of V its sum, min, max and non-finite count

``n_files`` and ``n_frames`` in the attrs are the committed extent: rows or
frames past them belong to a run that did not finish and are overwritten by
the next one. ``V`` is stored uncompressed: magnitude spectra barely compress
and learning reads every chunk every epoch. A store written before dnmf recorded
``clipped`` and ``bandwidth`` lacks them (:data:`QUALITY`); an append keeps it so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr

from dnmf.audio.features import FeatureConfig, frequencies
from dnmf.errors import StoreMismatchError
from dnmf.io.checked import read_all
from dnmf.io.file_table import COLUMNS, FileRecord, Status
from dnmf.io.records import ArrayRecords, Fresh, load_records, records_of, update_records
from dnmf.io.store import (
    FILE_CHUNK,
    StorePath,
    array,
    consolidate,
    open_group,
    read_meta,
    write_meta,
)

__all__ = ["QUALITY", "CorpusStore", "FileRecord", "Status"]

#: The codecs of a new store's ``V``: none. Measured against Blosc/lz4 and Zstandard
#: level 1 end to end (benchmarks/ingest.py); see the module docstring.
V_COMPRESSORS: Any = None

#: The codecs of a new store's other arrays along ``frame`` (``time``, ``file_index``,
#: ``clipped``): none either, so that a chunk task writes each whole chunk as its file
#: (:func:`dnmf.io.direct.write_whole`), not through zarr, which cost 1.9 s of a 13 s
#: one-worker ingest (benchmarks/results/ingest.txt); 128 KB a chunk beside V's 33 MB.
FRAME_COMPRESSORS: Any = None
#: The arrays along ``frame``, written by ingest's chunk tasks.
FRAME_ARRAYS = ("V", "time", "file_index", "clipped")
#: What a store written by an older dnmf lacks: the per-frame clipping counts and the
#: file table's bandwidths (the masks ``--mask-clipped`` and ``--mask-above-bandwidth``).
QUALITY = ("clipped", "bandwidth")


class CorpusStore:
    """A corpus store on disk (see the module docstring for its layout).

    Use :meth:`create` or :meth:`open`; workers write frames with
    :func:`write_frames`, by path, never through this object.
    """

    kind = "corpus"

    def __init__(self, path: StorePath, group: zarr.Group, meta: dict[str, Any]) -> None:
        self.path = str(path)
        self.group = group
        self.meta = meta

    # -- opening ---------------------------------------------------------------
    @classmethod
    def open(cls, path: StorePath, *, mode: str = "r") -> CorpusStore:
        """Open an existing corpus store (``mode='r+'`` to append)."""
        group = open_group(path, mode=mode)
        return cls(path, group, read_meta(group, cls.kind, path))

    @classmethod
    def create(
        cls, path: StorePath, features: FeatureConfig, *, chunk_frames: int, source: str
    ) -> CorpusStore:
        """Write an empty corpus store at ``path``, replacing whatever is there."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        n_bins = features.n_bins
        group.create_array(
            "V", shape=(n_bins, 0), chunks=(n_bins, chunk_frames), dtype="float32",
            dimension_names=("bin", "frame"), compressors=V_COMPRESSORS, fill_value=0.0,
            attributes={"coordinates": "frequency time file_index",
                        "long_name": _feature_name(features)},
        )  # fmt: skip
        freq = group.create_array(
            "frequency", shape=(n_bins,), chunks=(n_bins,), dtype="float64",
            dimension_names=("bin",), attributes={"units": "Hz"},
        )  # fmt: skip
        freq[:] = frequencies(features)
        group.create_array(
            "time", shape=(0,), chunks=(chunk_frames,), dtype="float64",
            dimension_names=("frame",), attributes={"units": "s", "long_name": "time within file"},
            compressors=FRAME_COMPRESSORS,
        )  # fmt: skip
        group.create_array(
            "file_index", shape=(0,), chunks=(chunk_frames,), dtype="int32",
            dimension_names=("frame",), fill_value=-1, compressors=FRAME_COMPRESSORS,
        )  # fmt: skip
        group.create_array(
            "clipped", shape=(0,), chunks=(chunk_frames,), dtype="int32",
            dimension_names=("frame",), fill_value=0, compressors=FRAME_COMPRESSORS,
            attributes={"long_name": "samples at full scale in the frame's window"},
        )  # fmt: skip
        for name, dtype in FileRecord.DTYPES.items():
            fill = "" if dtype is str else 0
            group.create_array(
                name, shape=(0,), chunks=(FILE_CHUNK,), dtype=dtype,
                dimension_names=("file",), fill_value=fill,
                attributes={"units": "Hz"} if name == "bandwidth" else None,
            )  # fmt: skip
        meta = {
            "kind": cls.kind,
            "features": features.as_attrs(),
            "chunk_frames": int(chunk_frames),
            "n_files": 0,
            "n_frames": 0,
            "source": source,
            "ingest_history": [],
        }
        write_meta(group, meta)
        consolidate(path)
        return cls(path, group, read_meta(group, cls.kind, path))

    # -- what it holds ---------------------------------------------------------
    @property
    def features(self) -> FeatureConfig:
        return FeatureConfig(**self.meta["features"])

    @property
    def chunk_frames(self) -> int:
        return int(self.meta["chunk_frames"])

    @property
    def n_frames(self) -> int:
        """Committed number of frames."""
        return int(self.meta["n_frames"])

    @property
    def n_files(self) -> int:
        return int(self.meta["n_files"])

    @property
    def V(self) -> zarr.Array:
        return self.group["V"]  # type: ignore[return-value]

    def has(self, name: str) -> bool:
        """Whether the store holds the array ``name`` (one of :data:`QUALITY` is missing
        from a store written by an older dnmf)."""
        return name in self.group

    def _present(self, names: tuple[str, ...] | list[str]) -> list[str]:
        return [n for n in names if n not in QUALITY or self.has(n)]

    def files(self) -> list[FileRecord]:
        """The committed file table, in row order (a column the store lacks: its default)."""
        n = self.n_files
        if n == 0:
            return []
        names = self._present(COLUMNS)
        cols = {name: self.column(name)[:n] for name in names}
        return [FileRecord(**{name: _py(cols[name][i]) for name in names}) for i in range(n)]

    def column(self, name: str) -> np.ndarray:
        """A column of the file table, or another small array, read whole and checked."""
        return read_all(array(self.group, name), load_records(self.path, name))

    def check_features(self, features: FeatureConfig, chunk_frames: int | None = None) -> None:
        """Refuse to append with settings other than the store's, naming the first difference."""
        mine = self.features
        diff = mine.differences(features)
        if diff:
            key = diff[0]
            raise StoreMismatchError(
                f"{self.path!r} was written with {key}={getattr(mine, key)!r}, not "
                f"{key}={getattr(features, key)!r}; pass the store's setting or --rebuild"
            )
        if chunk_frames is not None and chunk_frames != self.chunk_frames:
            raise StoreMismatchError(
                f"{self.path!r} was written with chunk_frames={self.chunk_frames}, not "
                f"{chunk_frames}; pass --chunk-frames {self.chunk_frames} or --rebuild"
            )

    # -- appending (setup, then commit) ---------------------------------------
    def resize_frames(self, n_frames: int) -> None:
        """Set the frame extent of ``V`` and its coordinates (setup before writing)."""
        self.V.resize((self.features.n_bins, n_frames))
        for name in self._present(FRAME_ARRAYS[1:]):
            self.group[name].resize((n_frames,))  # type: ignore[union-attr]

    def discard_uncommitted(self) -> None:
        """Cut away frames a run that did not finish left past the committed extent."""
        if self.V.shape[1] != self.n_frames:
            self.resize_frames(self.n_frames)

    def record_new_chunks(
        self, n_frames: int, *, known: dict[int, dict[str, dict[str, Any]]] | None = None,
        map: Any = None,
    ) -> dict[str, Fresh]:  # fmt: skip
        """The records of the chunks an append to ``n_frames`` frames wrote (V with its
        sum, min, max and non-finite count; time; file_index; clipped): those in ``known``
        (chunk to name to record, made by the tasks that wrote them from the values they
        wrote) as they are, the others read back by ``map(fn, chunks)`` (on the cluster
        that wrote them; default here, in turn)."""
        from dnmf.io.records import ArrayRecords, _ReadBack

        cf, first = self.chunk_frames, self.n_frames // self.chunk_frames
        known = known or {}
        out: dict[str, Fresh] = {}
        for name in self._present(FRAME_ARRAYS):
            shape = (self.features.n_bins, n_frames) if name == "V" else (n_frames,)
            chunks = (self.features.n_bins, cf) if name == "V" else (cf,)
            rec = ArrayRecords(
                self.path, name, shape, chunks, np.zeros(0, np.uint32), len(shape) - 1
            )
            todo = range(first, rec.n_chunks)
            fresh = {j: known[j][name] for j in todo if name in known.get(j, {})}
            rest = [j for j in todo if j not in fresh]
            if rest:
                task = _ReadBack(f"{Path(self.path).resolve()}/{name}", rec, name == "V")
                got = (map or (lambda fn, items: [fn(j) for j in items]))(task, rest)
                fresh.update(zip(rest, got, strict=True))
            out[name] = fresh
        return out

    def commit(
        self, records: list[FileRecord], n_frames: int, history: dict[str, Any], *,
        chunk_records: dict[str, Fresh] | None = None,
    ) -> None:  # fmt: skip
        """Write the whole file table, record the chunks written (:mod:`dnmf.io.records`:
        ``chunk_records`` from :meth:`record_new_chunks`, or read back here), then the
        attrs that make it current."""
        n = len(records)
        columns, frame_arrays = self._present(COLUMNS), self._present(FRAME_ARRAYS)
        fresh = dict(chunk_records or {})
        for name in columns:
            arr = self.group[name]
            arr.resize((n,))  # type: ignore[union-attr]
            if n:
                dtype = FileRecord.DTYPES[name]
                values = np.array([getattr(r, name) for r in records], dtype=dtype)
                arr[:] = values  # type: ignore[index]
                fresh[name] = records_of(arr, values)  # type: ignore[arg-type]
        first = self.n_frames // self.chunk_frames  # the committed tail chunk is rewritten
        update_records(
            self.group, [*frame_arrays, *columns], fresh=fresh,
            keep_below=dict.fromkeys(frame_arrays, first),
        )  # fmt: skip
        meta = dict(self.meta)
        meta.update(n_files=n, n_frames=int(n_frames))
        meta["ingest_history"] = [*meta.get("ingest_history", []), history]
        write_meta(self.group, meta)
        consolidate(self.path)
        self.meta = read_meta(self.group, self.kind, self.path)

    def v_records(self, *, map: Any = None, say: Any = None) -> ArrayRecords:
        """The records of V, with its per-chunk sum, min, max and non-finite count.

        A store written by an older dnmf has none: they are computed once (one
        pass over the store, through ``map`` as in :func:`dnmf.io.records.update_records`),
        recorded, and ``say`` (e.g. ``print``) is told so in one line.
        """
        rec = load_records(self.path, "V")
        if rec is None or rec.stats is None or rec.shape[1] < self.n_frames:
            group = zarr.open_group(self.path, mode="r+", zarr_format=3, use_consolidated=False)
            names = [n for n in (*FRAME_ARRAYS, *COLUMNS, "frequency") if n in group]
            update_records(group, names, map=map)
            consolidate(self.path)
            if say is not None:
                say(
                    f"note: corpus {self.path!r} has no chunk records (written by an older "
                    "dnmf); computed them once, in one pass over the store, and recorded them"
                )
            rec = load_records(self.path, "V")
            assert rec is not None
        return rec

    def check_values(self, rec: ArrayRecords) -> None:
        """Refuse NaN, infinite or negative values in V, from its records (a bad chunk is
        read only to name the first bad entry)."""
        from dnmf.nmf.divergence import check_nonnegative

        assert rec.stats is not None
        bad = np.flatnonzero((rec.stats["nonfinite"] > 0) | (rec.stats["min"] < 0))
        if len(bad):
            j = int(bad[0])
            start = j * self.chunk_frames
            check_nonnegative(rec.read(self.V, j), where=f"V of chunk {j}", frame_offset=start)

    def fingerprint(self) -> str:
        """Identity of the committed content: features, chunking and every file's hash."""
        import hashlib
        import json

        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([self.meta["features"], self.chunk_frames], sort_keys=True).encode())
        n = self.n_files
        if n:
            for name in ("content_hash", "first_frame", "n_frames"):
                values = self.column(name)[:n]
                h.update("\n".join(str(v) for v in np.asarray(values).tolist()).encode())
        return h.hexdigest()


def write_frames(
    path: str, start: int, V: np.ndarray, time: np.ndarray, file_index: np.ndarray,
    clipped: np.ndarray | None = None,
) -> None:  # fmt: skip
    """Write frames ``[start, start + V.shape[1])`` of a corpus store (a worker's write);
    ``clipped`` where the store records it (None: a store of an older dnmf).

    The caller guarantees the range covers whole chunks, or the tail of the
    store, so no two writers ever touch one chunk.
    """
    from dnmf.io.direct import write_whole

    stop = start + V.shape[1]
    values: dict[str, np.ndarray] = {"V": V, "time": time, "file_index": file_index}
    if clipped is not None:
        values["clipped"] = clipped
    # A whole chunk of each array is written as its file, with no zarr open.
    values = {
        name: v for name, v in values.items()
        if not write_whole(path, name, (0, start) if name == "V" else (start,), v)
    }  # fmt: skip
    if not values:
        return
    group = zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False)
    frames = slice(start, stop)
    for name, v in values.items():
        region = (slice(None), frames) if name == "V" else frames
        # Every chunk is written, zeros too: zarr's check for an all-fill chunk (to skip
        # it) is a full pass that made writing V three times slower, and a chunk left
        # out would read back as a missing one.
        array(group, name).with_config({"write_empty_chunks": True})[region] = v


def _feature_name(features: FeatureConfig) -> str:
    kind = "mel spectrogram" if features.features == "mel" else "STFT"
    return f"|{kind}|**{features.power:g}"


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
