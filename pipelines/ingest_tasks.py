"""The ingest tasks that run on workers: the header probes of files, and the chunk jobs.

A job (:func:`pipelines.ingest_plan.jobs_of`) computes its chunk tasks in
order and writes each Zarr chunk of ``V`` whole, with its ``time`` and
``file_index``, while it computes the next; no two jobs touch one chunk, so
nothing needs a lock. Each file is decoded once, here, by a
:class:`~dnmf.audio.decode.Decoder` that checks every sample: a file found unusable (a decode error, truncation, NaN
or infinite samples) is reported back with its error, and its frames are
left as zeros for the driver to lay the chunks out again without it
(:func:`pipelines.ingest_plan.redo_after`). Silence is only known once all
of a file is read, so each job reports the peak it saw per file; a file's
bandwidth too, so each job reports the long-term spectrum of each segment it
computed (:func:`dnmf.audio.quality.bandwidth`). Clipping is per frame, counted
and written with the frames (:func:`dnmf.audio.quality.clipped_counts`). A task
that writes its chunk from the chunk's first frame also returns the chunk's
records (:func:`dnmf.io.records.chunk_record`) of the values it wrote, so that
the commit need not read ``V`` back.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnmf.audio.decode import Probe
from pipelines.ingest_plan import ChunkTask, Segment

__all__ = ["JobOutcome", "Source", "ingest_job", "probe_files"]


@dataclass(frozen=True)
class Source:
    """What a job needs to read one file: its path and the header's length and rate."""

    path: str
    n_samples: int
    samplerate: int


@dataclass
class JobOutcome:
    """What one job did: the chunks it wrote; per file its peak, any error, samples decoded;
    per segment ``(row, f0, f1)`` the sum over its frames of ``|STFT|²`` per bin; per chunk
    written from its first frame, the records of its arrays (name to record)."""

    chunks: list[int] = field(default_factory=list)
    peaks: dict[int, float] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    decoded: dict[int, int] = field(default_factory=dict)
    spectra: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)
    records: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)


def probe_files(paths: list[str]) -> list[Probe]:
    """The header probes of some files (no sample decoded):
    :func:`~dnmf.audio.decode.probe_header` of each, in order."""
    from dnmf.audio.decode import probe_header

    return [probe_header(path) for path in paths]


def ingest_job(
    store: str,
    tasks: list[ChunkTask],
    sources: dict[int, Source],
    features: dict[str, Any],
    clipping: bool = True,
    chunk_frames: int | None = None,
) -> JobOutcome:
    """Compute and write the chunk tasks of one job, in order.

    Parameters
    ----------
    store : str
        Path of the corpus store.
    tasks : list of ChunkTask
        Consecutive chunk tasks; a file that spans them is decoded on, not again.
    sources : dict of row to Source
        Every file the tasks touch.
    features : dict
        The store's :class:`~dnmf.audio.features.FeatureConfig` as attrs.
    clipping : bool
        Whether the store records the frames' clipping (not one of an older dnmf).
    chunk_frames : int, optional
        Frames per chunk of ``V``: a task that starts at a chunk's first frame
        returns its chunk's records (``JobOutcome.records``). None: no records.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from dnmf.audio.decode import Decoder
    from dnmf.audio.features import FeatureConfig
    from dnmf.cluster import one_blas_thread
    from dnmf.io.corpus import write_frames
    from dnmf.io.records import chunk_record

    cfg = FeatureConfig(**features)
    out = JobOutcome()
    decoders: dict[int, Decoder] = {}
    # Each chunk is written while the next one is computed (into the other buffer): the
    # disk's time for one (37 ms a chunk of V with O_DIRECT) is no longer the job's.
    writing: Future[None] | None = None
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="dnmf-write") as writer:
            for i, task in enumerate(tasks):
                with one_blas_thread():
                    V, times, rows, clipped = _compute_chunk(
                        task, sources, cfg, decoders, out, slot=i % 2
                    )
                if writing is not None:
                    writing.result()  # the previous chunk is written: its buffer is free
                written = {"V": V, "time": times, "file_index": rows}
                if clipping:
                    written["clipped"] = clipped
                writing = writer.submit(
                    write_frames, store, task.start, V, times, rows, written.get("clipped")
                )
                if chunk_frames is not None and task.start == task.chunk * chunk_frames:
                    # The chunk holds these values only (it starts here; it ends here or at
                    # the extent): their records are the chunk's, as a read-back would give.
                    out.records[task.chunk] = {
                        name: chunk_record(v, stats=name == "V") for name, v in written.items()
                    }
                out.chunks.append(task.chunk)
            if writing is not None:
                writing.result()
    finally:
        for row, dec in decoders.items():
            out.peaks[row], out.decoded[row] = dec.peak, dec.decoded
            dec.close()
    return out


def _compute_chunk(
    task: ChunkTask, sources: dict[int, Source], cfg: Any, decoders: dict[int, Any],
    out: JobOutcome, slot: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``V``, ``time``, ``file_index`` and ``clipped`` of one chunk task, ``V`` in this
    thread's buffer ``slot`` (0 or 1); a bad file's frames stay zero."""
    n = task.stop - task.start
    V = _chunk_buffer((cfg.n_bins, n), slot)
    times = np.empty(n, dtype=np.float64)
    rows = np.empty(n, dtype=np.int32)
    clipped = np.zeros(n, dtype=np.int32)
    for seg in task.segments:
        a, b = seg.dest - task.start, seg.dest - task.start + (seg.f1 - seg.f0)
        times[a:b] = np.arange(seg.f0, seg.f1) * (cfg.hop_length / cfg.sr)
        rows[a:b] = seg.row
        if seg.row not in out.errors:
            _segment_frames(seg, sources[seg.row], cfg, decoders, out, V[:, a:b], clipped[a:b])
        if seg.row in out.errors:
            V[:, a:b] = 0.0  # laid out again without this file (pipelines.ingest_plan.redo_after)
            clipped[a:b] = 0
    return V, times, rows, clipped


_kept = threading.local()


def _chunk_buffer(shape: tuple[int, int], slot: int) -> np.ndarray:
    """An uninitialised float32 array for one chunk's ``V``, the same one for each whole
    chunk a thread computes in buffer ``slot`` (a job alternates two: one is written
    while the other is computed, and each is written before it is computed again).

    A new one (33 MB at n_fft=2048) is a fresh mapping, whose pages the
    kernel zeroes on first touch: in every task, a cost of the order of the FFT's.
    """
    from dnmf.io.direct import aligned_empty

    kept: dict[int, np.ndarray] = _kept.__dict__.setdefault("V", {})
    buf = kept.get(slot)
    if buf is not None and buf.shape == shape:
        return buf
    new = aligned_empty(shape, np.float32)  # page-aligned: written with O_DIRECT
    if buf is None or buf.shape[0] != shape[0] or buf.shape[1] < shape[1]:
        kept[slot] = new  # the shape of a whole chunk, not a short last one
    return new


def _segment_frames(
    seg: Segment, src: Source, cfg: Any, decoders: dict[int, Any], out: JobOutcome,
    V: np.ndarray, clipped: np.ndarray,
) -> None:  # fmt: skip
    """Frames ``[seg.f0, seg.f1)`` of one file into ``V``, their clipping into ``clipped``,
    their spectrum into ``out.spectra``; a bad file's error into ``out.errors``."""
    from dnmf.audio.decode import BadAudio, Decoder
    from dnmf.audio.features import SignalReader, block_frames
    from dnmf.audio.quality import clipped_counts

    dec = decoders.get(seg.row)
    if dec is None:
        dec = decoders[seg.row] = Decoder(src.path, src.n_samples)
    reader = SignalReader(dec, src.n_samples, src.samplerate, cfg)
    spectrum = np.zeros(1 + cfg.n_fft // 2, dtype=np.float64)
    try:
        block_frames(reader, seg.f0, seg.f1, spectrum=spectrum, out=V)
        clipped[:] = clipped_counts(reader, seg.f0, seg.f1)
    except BadAudio as exc:
        out.errors[seg.row] = str(exc)
    else:
        out.spectra[seg.row, seg.f0, seg.f1] = spectrum
