"""The ingest stage: an audio folder becomes (or grows) a corpus store.

plan (pure)   :func:`diff_files` compares the folder with the file table;
              :func:`layout` packs the new files back to back into chunk tasks.
setup         the store is created or its frame extent set (metadata only).
run           one task per Zarr chunk of ``V`` decodes, resamples and
              transforms its frames and writes that chunk whole: no two tasks
              touch one chunk, so nothing needs a lock.
commit        the file table and the attrs (extent, history) are written last;
              a run that dies before leaves the previous commit intact.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dnmf.audio.decode import AudioFile, Probe, content_hash, scan
from dnmf.audio.features import FeatureConfig, n_frames_for, n_output_samples
from dnmf.cluster import check_compute_options
from dnmf.errors import EXIT_OK, EXIT_SKIPPED, DnmfPathError, DnmfUsageError
from dnmf.io.corpus import CorpusStore, FileRecord, Status

if TYPE_CHECKING:
    from distributed import Client


__all__ = [
    "ChunkTask",
    "FileDiff",
    "IngestResult",
    "Segment",
    "default_store",
    "diff_files",
    "ingest",
    "layout",
]


#: Frames per Zarr chunk of a new corpus store (about 33 MB of float32 at n_fft=2048).
DEFAULT_CHUNK_FRAMES = 8192


def default_store(corpus_dir: str | os.PathLike[str]) -> Path:
    """``./<dirname>.dnmf/corpus.zarr`` for a corpus folder."""
    name = Path(corpus_dir).resolve().name or "corpus"
    return Path(f"{name}.dnmf") / "corpus.zarr"


# -- plan (pure) -------------------------------------------------------------------
@dataclass
class FileDiff:
    """How the folder differs from the file table (paths in table row order)."""

    new: list[AudioFile] = field(default_factory=list)
    """Not in the table: to probe and append."""
    recheck: list[tuple[int, AudioFile]] = field(default_factory=list)
    """Rows whose file's size or mtime moved, or that came back: hash to tell if it changed."""
    retry: list[tuple[int, AudioFile]] = field(default_factory=list)
    """Skipped rows whose file moved: probe again, append if usable now."""
    removed: list[int] = field(default_factory=list)
    """Rows whose file is gone."""

    @property
    def nothing_to_do(self) -> bool:
        return not (self.new or self.recheck or self.retry or self.removed)


def diff_files(records: Sequence[FileRecord], found: Sequence[AudioFile]) -> FileDiff:
    """Compare the committed file table with a scan of the folder (no I/O).

    A file whose size and mtime match its row is taken as unchanged without
    reading it; that keeps a rerun with nothing new fast.
    """
    by_path = {r.file: i for i, r in enumerate(records)}
    seen: set[str] = set()
    diff = FileDiff()
    for f in found:
        i = by_path.get(f.path)
        if i is None:
            diff.new.append(f)
            continue
        seen.add(f.path)
        r = records[i]
        same_stat = r.size == f.size and r.mtime_ns == f.mtime_ns
        if r.status == Status.SKIPPED:
            if not same_stat:
                diff.retry.append((i, f))
        elif r.status == Status.REMOVED or r.status == Status.CHANGED or not same_stat:
            diff.recheck.append((i, f))
    for i, r in enumerate(records):
        if r.file not in seen and r.status != Status.REMOVED:
            diff.removed.append(i)
    return diff


@dataclass(frozen=True)
class Segment:
    """Frames ``[f0, f1)`` of file table row ``row``, written at global frame ``dest``."""

    row: int
    f0: int
    f1: int
    dest: int


@dataclass(frozen=True)
class ChunkTask:
    """Write global frames ``[start, stop)``, all inside Zarr chunk ``chunk`` of ``V``."""

    chunk: int
    start: int
    stop: int
    segments: tuple[Segment, ...]


def layout(start: int, chunk_frames: int, files: Sequence[tuple[int, int]]) -> list[ChunkTask]:
    """Pack files back to back from frame ``start`` and cut the result at chunk edges.

    Parameters
    ----------
    start : int
        First free frame of ``V`` (the committed extent).
    chunk_frames : int
        Frames per Zarr chunk of ``V``.
    files : sequence of (row, n_frames)
        Files to append, in order; files of zero frames take no space.

    Returns
    -------
    tasks : list of ChunkTask
        One per chunk touched, in order; together they cover
        ``[start, start + sum(n_frames))`` exactly once.
    """
    tasks: list[ChunkTask] = []
    pos = start
    segments: list[Segment] = []
    chunk = start // chunk_frames
    chunk_start = pos

    def close(stop: int) -> None:
        nonlocal segments, chunk_start
        if stop > chunk_start:
            tasks.append(ChunkTask(chunk, chunk_start, stop, tuple(segments)))
        segments = []
        chunk_start = stop

    for row, n in files:
        f0 = 0
        while f0 < n:
            chunk_end = (chunk + 1) * chunk_frames
            take = min(n - f0, chunk_end - pos)
            segments.append(Segment(row, f0, f0 + take, pos))
            pos += take
            f0 += take
            if pos == chunk_end:
                close(pos)
                chunk += 1
    close(pos)
    return tasks


# -- run (on workers) ----------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    path: str
    n_samples: int
    samplerate: int


def _ingest_chunk(
    store: str, task: ChunkTask, sources: dict[int, _Source], features: dict[str, Any]
) -> tuple[int, int]:
    """Compute and write one chunk task; returns (chunk, frames written)."""
    from dnmf.audio.decode import decoder
    from dnmf.audio.features import SignalReader, block_frames
    from dnmf.cluster import one_blas_thread
    from dnmf.io.corpus import write_frames

    cfg = FeatureConfig(**features)
    n = task.stop - task.start
    V = np.empty((cfg.n_bins, n), dtype=np.float32)
    times = np.empty(n, dtype=np.float64)
    rows = np.empty(n, dtype=np.int32)
    with one_blas_thread():
        for seg in task.segments:
            src = sources[seg.row]
            reader = SignalReader(decoder(src.path), src.n_samples, src.samplerate, cfg)
            a, b = seg.dest - task.start, seg.dest - task.start + (seg.f1 - seg.f0)
            V[:, a:b] = block_frames(reader, seg.f0, seg.f1)
            times[a:b] = np.arange(seg.f0, seg.f1) * (cfg.hop_length / cfg.sr)
            rows[a:b] = seg.row
    write_frames(store, task.start, V, times, rows)
    return task.chunk, n


def _probe_file(path: str) -> Probe:
    from dnmf.audio.decode import probe

    return probe(path)


# -- the stage -------------------------------------------------------------------------
@dataclass
class IngestResult:
    """What one ingest run did; ``as_dict`` is the ``--json`` summary."""

    store: str
    files: int = 0
    added: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    frames_added: int = 0
    seconds_added: float = 0.0
    wall_seconds: float = 0.0
    workers: int = 0
    nothing_new: bool = False

    @property
    def realtime_factor(self) -> float:
        return self.seconds_added / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.skipped else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            hours_added=self.seconds_added / 3600,
            realtime_factor=self.realtime_factor,
            exit_code=self.exit_code,
        )
        return d


def ingest(
    corpus_dir: str | os.PathLike[str],
    store: str | os.PathLike[str] | None = None,
    *,
    features: FeatureConfig | None = None,
    chunk_frames: int | None = None,
    rebuild: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Client | None = None,
    progress: bool = False,
) -> IngestResult:
    """Ingest every new audio file under ``corpus_dir`` into the corpus store ``store``.

    Parameters
    ----------
    corpus_dir : path
        Folder searched recursively for audio.
    store : path, optional
        The corpus store (default ``./<dirname>.dnmf/corpus.zarr``).
    features : FeatureConfig, optional
        Feature settings (default: ``FeatureConfig()``); must match an existing store.
    chunk_frames : int, optional
        Frames per Zarr chunk of ``V`` of a new store (default 8192); must match an
        existing store.
    rebuild : bool
        Start the store over instead of appending.
    workers, scheduler, client :
        Where to compute (see :func:`dnmf.cluster.connect`).
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    IngestResult

    Examples
    --------
    >>> result = ingest("recordings/", "recordings.dnmf/corpus.zarr")  # doctest: +SKIP
    >>> result.exit_code  # doctest: +SKIP
    0
    """
    t0 = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    features = features or FeatureConfig()
    if chunk_frames is not None and chunk_frames < 1:
        raise DnmfUsageError(f"chunk_frames={chunk_frames} must be a positive integer")
    check_compute_options(workers, scheduler)
    root = Path(corpus_dir)
    store_path = Path(store) if store is not None else default_store(root)
    found = scan(root)
    if not found:
        raise DnmfPathError(
            f"no audio files under {str(root)!r} (looked for .wav, .flac, .ogg, .mp3, .aiff and "
            "other formats libsndfile reads); pass a folder that holds audio"
        )
    corpus: CorpusStore | None = None
    if (store_path / "zarr.json").exists() and not rebuild:
        corpus = CorpusStore.open(store_path, mode="r+")
        corpus.check_features(features, chunk_frames)
        features = corpus.features
    else:
        features.check_window()
    records = corpus.files() if corpus is not None else []
    diff = diff_files(records, found)
    result = IngestResult(store=str(store_path), files=len(found))

    # Rows whose stat moved: hash here (cheap next to decoding) to tell touched from changed.
    for i, f in diff.recheck:
        r = records[i]
        digest = content_hash(root / f.path)
        if digest == r.content_hash:
            r.size, r.mtime_ns, r.status, r.error = f.size, f.mtime_ns, Status.OK, ""
        else:
            r.status = Status.CHANGED
            r.error = (
                "content changed since it was ingested; its frames are the old content "
                "(--rebuild re-ingests)"
            )
            result.changed.append(r.file)
    for i in diff.removed:
        records[i].status = Status.REMOVED
        records[i].error = "no longer in the corpus folder; its frames are kept"
        result.removed.append(records[i].file)

    to_probe: list[tuple[int | None, AudioFile]] = [(None, f) for f in diff.new] + list(diff.retry)
    if not to_probe:
        assert corpus is not None  # a new store has every file to probe
        result.nothing_new = True
        if diff.recheck or diff.removed:
            corpus.commit(records, corpus.n_frames, _history(started, t0, result, 0))
        result.wall_seconds = time.perf_counter() - t0
        return result

    from dnmf.cluster import connect

    with connect(workers, scheduler, client=client) as c:
        # The store is created (or started over) only once a cluster is at hand.
        if corpus is None:
            corpus = CorpusStore.create(
                store_path, features, source=str(root.resolve()),
                chunk_frames=chunk_frames or DEFAULT_CHUNK_FRAMES,
            )  # fmt: skip
        corpus.discard_uncommitted()
        result.workers = len(c.scheduler_info(n_workers=-1).get("workers", {}))
        paths = [str((root / f.path).resolve()) for _, f in to_probe]
        token = _token(str(store_path), paths)
        futures = c.map(_probe_file, paths, key=[f"probe-{token}-{k}" for k in range(len(paths))])
        probes: list[Probe] = c.gather(futures)

        # New rows go to the end of the table; retried rows keep their place. Files are
        # packed in probe order; a skipped row points at where it would have started.
        pending: list[tuple[int, int]] = []  # (row, n_frames) in packing order
        sources: dict[int, _Source] = {}
        pos = start = corpus.n_frames
        for (row, f), p, path in zip(to_probe, probes, paths, strict=True):
            if row is None:
                row = len(records)
                records.append(FileRecord(file=f.path, content_hash="", first_frame=0, n_frames=0))
            r = records[row]
            r.content_hash, r.size, r.mtime_ns = p.content_hash, f.size, f.mtime_ns
            r.samplerate, r.channels, r.first_frame = p.samplerate, p.channels, pos
            n_frames = 0
            if not p.error:
                n_out = n_output_samples(p.n_samples, p.samplerate, features.sr)
                # Fewer samples than one window are mostly the padding of a centred
                # frame, not audio: skipped, not one or two frames of zeros.
                n_frames = n_frames_for(n_out, features) if n_out >= features.n_fft else 0
            short = (
                f"shorter than one frame ({p.n_samples} samples at {p.samplerate} Hz; one "
                f"frame is n_fft={features.n_fft} samples at sr={features.sr})"
            )
            error = p.error or ("" if n_frames else short)
            if error:
                r.status, r.error, r.n_frames, r.n_samples, r.duration = (
                    Status.SKIPPED,
                    error,
                    0,
                    0,
                    0.0,
                )
                result.skipped.append({"file": f.path, "error": error})
                continue
            r.status, r.error = Status.OK, ""
            r.n_samples, r.duration, r.n_frames = p.n_samples, p.duration, n_frames
            pending.append((row, n_frames))
            sources[row] = _Source(path, p.n_samples, p.samplerate)
            pos += n_frames
        tasks = layout(start, corpus.chunk_frames, pending)

        corpus.resize_frames(pos)  # setup
        frames_of_row = dict(pending)
        last_chunk_of_row = {}
        for t in tasks:
            for s in t.segments:
                last_chunk_of_row[s.row] = t.chunk
        seconds_of_chunk = {
            t.chunk: sum((s.f1 - s.f0) * features.hop_length / features.sr for s in t.segments)
            for t in tasks
        }
        feature_attrs = features.as_attrs()
        store_str = str(store_path.resolve())
        chunk_futures = [
            c.submit(
                _ingest_chunk, store_str, t,
                {s.row: sources[s.row] for s in t.segments}, feature_attrs,
                key=f"ingest-chunk-{token}-{t.chunk}", retries=2,
            )
            for t in tasks
        ]  # fmt: skip
        files_done_in_chunk: dict[int, int] = {}
        for ch in last_chunk_of_row.values():
            files_done_in_chunk[ch] = files_done_in_chunk.get(ch, 0) + 1
        _run(c, chunk_futures, files_done_in_chunk, seconds_of_chunk, len(pending), progress, t0)
        # The chunks' records (checksums; V's sum, min, max), read back where they lie.
        chunk_records = corpus.record_new_chunks(
            pos, map=lambda fn, js: c.gather(c.map(fn, js, pure=False))
        )

        result.added = [records[row].file for row, _ in pending]
        result.frames_added = sum(frames_of_row.values())
        result.seconds_added = sum(records[row].duration for row, _ in pending)
    result.wall_seconds = time.perf_counter() - t0
    assert corpus is not None
    corpus.commit(
        records, pos, _history(started, t0, result, len(to_probe)), chunk_records=chunk_records
    )
    return result


def _run(
    client: Client,
    futures: list[Any],
    files_done_in_chunk: dict[int, int],
    seconds_of_chunk: dict[int, float],
    n_files: int,
    progress: bool,
    t0: float,
) -> None:
    from distributed import as_completed

    from dnmf.progress import reporter

    hours = 0.0
    with reporter(
        "ingest", n_files, enabled=progress,
        fields="files  {task.fields[hours]:.3f} h audio  {task.fields[rtf]:.0f}x realtime",
        hours=0.0, rtf=0.0,
    ) as bar:  # fmt: skip
        for fut in as_completed(futures):
            chunk, _ = fut.result()
            hours += seconds_of_chunk[chunk] / 3600
            elapsed = max(time.perf_counter() - t0, 1e-9)
            done = files_done_in_chunk.get(chunk, 0)
            bar.update(advance=done, hours=hours, rtf=hours * 3600 / elapsed)


def _history(started: str, t0: float, result: IngestResult, probed: int) -> dict[str, Any]:
    from dnmf._version import __version__

    return {
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "probed": probed,
        "added": len(result.added),
        "skipped": len(result.skipped),
        "changed": len(result.changed),
        "removed": len(result.removed),
        "frames_added": result.frames_added,
        "seconds_added": round(result.seconds_added, 3),
        "workers": result.workers,
        "dnmf_version": __version__,
    }


def _token(*parts: Any) -> str:
    from dask.base import tokenize

    return tokenize(*parts)[:12]
