"""The ingest stage: an audio folder becomes (or grows) a corpus store.

plan (pure)   :mod:`pipelines.ingest_plan`: :func:`diff_files` compares the
              folder with the file table (:func:`prepare` does it before any
              cluster is started, so a rerun with nothing new starts none);
              :func:`layout` packs the new files back to back into chunk
              tasks, from the frame counts in their headers.
setup         the store is created or its frame extent set (metadata only).
run           :mod:`pipelines.ingest_tasks`: one job per Zarr chunk of ``V``
              (several for an MP3 that spans chunks) decodes, checks,
              resamples and transforms its frames and writes its chunks
              whole: no two jobs touch one chunk, so nothing needs a lock.
              Each file is decoded once. A file that turns out unusable
              while it is decoded (truncated, NaN, silent) is recorded as
              skipped, and the chunks from its first frame on are laid out
              and computed again without it.
commit        the file table and the attrs (extent, history) are written last;
              a run that dies before leaves the previous commit intact.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dnmf.audio.decode import AudioFile, Probe, same_content, scan
from dnmf.audio.features import FeatureConfig, n_frames_for, n_output_samples
from dnmf.cluster import check_compute_options
from dnmf.errors import EXIT_OK, EXIT_SKIPPED, DnmfPathError, DnmfUsageError
from dnmf.io.file_table import FileRecord, Status
from pipelines.ingest_plan import ChunkTask, FileDiff, Segment, diff_files, layout
from pipelines.ingest_run import JobRunner
from pipelines.ingest_tasks import Source, probe_files

if TYPE_CHECKING:
    from distributed import Client

    from dnmf.io.corpus import CorpusStore


__all__ = [
    "ChunkTask",
    "FileDiff",
    "IngestResult",
    "Segment",
    "default_store",
    "diff_files",
    "ingest",
    "layout",
    "prepare",
]


#: Frames per Zarr chunk of a new corpus store (about 33 MB of float32 at n_fft=2048).
DEFAULT_CHUNK_FRAMES = 8192
#: Header probes are submitted in this many batches per worker.
PROBE_BATCHES_PER_WORKER = 4


def default_store(corpus_dir: str | os.PathLike[str]) -> Path:
    """``./<dirname>.dnmf/corpus.zarr`` for a corpus folder."""
    name = Path(corpus_dir).resolve().name or "corpus"
    return Path(f"{name}.dnmf") / "corpus.zarr"


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
    cluster_seconds: float = 0.0
    """Of ``wall_seconds``, the time it took to start (or join) the cluster."""
    samples_decoded: int = 0
    """Samples decoded (at the files' own rates), each as often as it was read."""
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
    if chunk_frames is not None and chunk_frames < 1:
        raise DnmfUsageError(f"chunk_frames={chunk_frames} must be a positive integer")
    check_compute_options(workers, scheduler)
    prep = prepare(corpus_dir, store, features=features, chunk_frames=chunk_frames, rebuild=rebuild)
    result = prep.result
    records = prep.records
    if not prep.to_probe:
        assert prep.corpus is not None  # a new store has every file to probe
        result.nothing_new = True
        if prep.diff.recheck or prep.diff.removed:
            prep.corpus.commit(records, prep.corpus.n_frames, _history(started, t0, result, 0))
        result.wall_seconds = time.perf_counter() - t0
        return result

    from dnmf.cluster import connect

    t_cluster = time.perf_counter()
    with connect(workers, scheduler, client=client, progress=progress) as c:
        result.cluster_seconds = 0.0 if client is not None else time.perf_counter() - t_cluster
        result.workers = len(c.scheduler_info(n_workers=-1).get("workers", {}))
        root = prep.root.resolve()  # once: resolving each file's path stats every folder
        paths = [str(root / f.path) for _, f in prep.to_probe]
        token = _token(str(prep.store_path), paths)
        # A few batches a worker: a task per file cost more than most probes (a header and
        # a hash at 10 GB/s).
        batch = -(-len(paths) // (PROBE_BATCHES_PER_WORKER * max(1, result.workers)))
        batches = [paths[k : k + batch] for k in range(0, len(paths), batch)]
        futures = c.map(
            probe_files, batches, key=[f"probe-{token}-{k}" for k in range(len(batches))]
        )  # fmt: skip
        # The store is created (or started over) only once a cluster is at hand, while
        # the workers probe.
        from dnmf.io.corpus import CorpusStore

        corpus = prep.corpus or CorpusStore.create(
            prep.store_path, prep.features, source=str(root),
            chunk_frames=chunk_frames or DEFAULT_CHUNK_FRAMES,
        )  # fmt: skip
        corpus.discard_uncommitted()
        probes: list[Probe] = [p for got in c.gather(futures) for p in got]
        pending, sources = _place(prep, probes, paths, corpus.n_frames)
        runner = JobRunner(c, corpus, sources, token, progress=progress, t0=t0)
        kept, errors = runner.run(pending)
        pos = _record_run(
            records, pending, kept, errors, runner.bandwidths, corpus.n_frames, result
        )
        result.samples_decoded = runner.decoded
        # The chunks' records (checksums; V's sum, min, max): those the tasks made of what
        # they wrote, the rest (the committed tail chunk an append filled) read back.
        chunk_records = corpus.record_new_chunks(
            pos, known=runner.records, map=lambda fn, js: c.gather(c.map(fn, js, pure=False))
        )
    result.wall_seconds = time.perf_counter() - t0
    corpus.commit(
        records, pos, _history(started, t0, result, len(prep.to_probe)), chunk_records=chunk_records
    )
    return result


@dataclass
class _Prepared:
    """What an ingest found before any cluster: the folder against the committed table."""

    root: Path
    store_path: Path
    features: FeatureConfig
    corpus: CorpusStore | None
    records: list[FileRecord]
    diff: FileDiff
    result: IngestResult
    to_probe: list[tuple[int | None, AudioFile]]


def prepare(
    corpus_dir: str | os.PathLike[str],
    store: str | os.PathLike[str] | None = None,
    *,
    features: FeatureConfig | None = None,
    chunk_frames: int | None = None,
    rebuild: bool = False,
) -> _Prepared:
    """Scan the folder and compare it with the store (no cluster, nothing written).

    Rows whose file's stat moved are hashed here (cheap next to decoding) to
    tell a touched file from a changed one. ``to_probe`` is empty when the
    run has nothing to decode: then no cluster is needed.
    """
    features = features or FeatureConfig()
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
        from dnmf.io.corpus import CorpusStore  # Zarr: a new store needs none before the cluster

        corpus = CorpusStore.open(store_path, mode="r+")
        corpus.check_features(features, chunk_frames)
        features = corpus.features
    else:
        features.check_window()
    records = corpus.files() if corpus is not None else []
    diff = diff_files(records, found)
    result = IngestResult(store=str(store_path), files=len(found))
    for i, f in diff.recheck:
        r = records[i]
        if same_content(root / f.path, r.content_hash):
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
    return _Prepared(root, store_path, features, corpus, records, diff, result, to_probe)


def _place(
    prep: _Prepared, probes: list[Probe], paths: list[str], start: int
) -> tuple[list[tuple[int, int]], dict[int, Source]]:
    """Fill the file table from the header probes; the files to lay out, in probe order.

    New rows go to the end of the table; retried rows keep their place. A
    skipped row points at where it would have started.
    """
    features, records = prep.features, prep.records
    pending: list[tuple[int, int]] = []  # (row, n_frames) in packing order
    sources: dict[int, Source] = {}
    pos = start
    for (row, f), p, path in zip(prep.to_probe, probes, paths, strict=True):
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
            _skip(r, error, prep.result)
            continue
        r.status, r.error = Status.OK, ""
        r.n_samples, r.duration, r.n_frames = p.n_samples, p.duration, n_frames
        pending.append((row, n_frames))
        sources[row] = Source(path, p.n_samples, p.samplerate)
        pos += n_frames
    return pending, sources


def _record_run(
    records: list[FileRecord], pending: list[tuple[int, int]], kept: list[tuple[int, int]],
    errors: dict[int, str], bandwidths: dict[int, float], start: int, result: IngestResult,
) -> int:  # fmt: skip
    """Rows of the files found bad while decoded become skipped, those kept take their
    bandwidth; returns the new extent."""
    for row, error in errors.items():
        _skip(records[row], error, result)
    for row, _ in kept:
        records[row].bandwidth = bandwidths[row]
    pos = start
    for row, n in pending:  # a skipped row points at where it would have started
        records[row].first_frame = pos
        pos += 0 if row in errors else n
    result.added = [records[row].file for row, _ in kept]
    result.frames_added = sum(n for _, n in kept)
    result.seconds_added = sum(records[row].duration for row, _ in kept)
    return pos


def _skip(r: FileRecord, error: str, result: IngestResult) -> None:
    r.status, r.error, r.n_frames, r.n_samples, r.duration = Status.SKIPPED, error, 0, 0, 0.0
    r.bandwidth = 0.0
    result.skipped.append({"file": r.file, "error": error})


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
        "cluster_seconds": round(result.cluster_seconds, 3),
        "samples_decoded": result.samples_decoded,
        "dnmf_version": __version__,
    }


def _token(*parts: Any) -> str:
    from dask.base import tokenize

    return tokenize(*parts)[:12]
