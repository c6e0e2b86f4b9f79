"""The driver of an ingest's chunk jobs on a cluster (:mod:`pipelines.ingest_tasks`).

:class:`JobRunner` submits one job per chunk (or per run of chunks that share
an MP3), shows the ingest bar as files finish, and when some files turn out
unusable while decoded lays the others out again and computes the chunks that
moved (:func:`pipelines.ingest_plan.redo_after`) until every chunk holds only
good files. It then estimates each file's bandwidth from the spectra of the
segments of the final layout (:func:`dnmf.audio.quality.bandwidth`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dnmf.audio.decode import SILENT
from pipelines.ingest_plan import ChunkTask, jobs_of, layout, redo_after
from pipelines.ingest_tasks import JobOutcome, Source, ingest_job

if TYPE_CHECKING:
    from distributed import Client

    from dnmf.io.corpus import CorpusStore

__all__ = ["JobRunner", "chunks_per_job"]

#: At most this many chunks a job: a job writes each chunk while it computes the next
#: (:func:`pipelines.ingest_tasks.ingest_job`), so only its last write is waited for.
MAX_CHUNKS_PER_JOB = 4
#: At least this many jobs a worker, while there are chunks enough: the last job of one
#: worker is what the others may wait for at the end.
JOBS_PER_WORKER = 8


def chunks_per_job(n_chunks: int, workers: int) -> int:
    """Chunks per job for ``n_chunks`` chunks on ``workers`` workers.

    An uncompressed chunk of V (33 MB) took 37 ms to reach the disk with
    ``O_DIRECT``, time in which a job that wrote a chunk at a time computed
    nothing: 1.4 s of a 12 s one-worker ingest of the benchmark's two hours.

    Examples
    --------
    >>> chunks_per_job(38, 1), chunks_per_job(38, 2), chunks_per_job(5, 2)
    (4, 2, 1)
    """
    return max(1, min(MAX_CHUNKS_PER_JOB, n_chunks // (JOBS_PER_WORKER * workers)))


class JobRunner:
    """Runs the chunk jobs of the files to append; lays them out again without bad files."""

    def __init__(
        self, client: Client, corpus: CorpusStore, sources: dict[int, Source], token: str, *,
        progress: bool, t0: float,
    ) -> None:  # fmt: skip
        self.client, self.corpus, self.sources = client, corpus, sources
        self.token, self.progress, self.t0 = token, progress, t0
        self.store = str(Path(corpus.path).resolve())
        self.features = corpus.features
        self.sequential = {r for r, s in sources.items() if Path(s.path).suffix.lower() == ".mp3"}
        self.decoded = 0  # samples decoded, counted as often as they were read
        self.bandwidths: dict[int, float] = {}  # row -> Hz, of the files that made it
        # chunk -> array name -> record, of each chunk's last write (whole from its start)
        self.records: dict[int, dict[str, dict[str, Any]]] = {}
        # What a store of an older dnmf lacks, an append leaves out.
        self.clipping = corpus.has("clipped")

    def run(self, pending: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], dict[int, str]]:
        """Write the frames of ``pending`` (row, n_frames), packed from the committed extent.

        Returns the files that made it, in order, and the error of each one
        found unusable while decoded; the chunks from such a file's first frame
        on are computed again without it, so no frame of it stays in ``V``.
        """
        start, chunk_frames = self.corpus.n_frames, self.corpus.chunk_frames
        written: dict[int, ChunkTask] = {}
        peaks: dict[int, float] = {}
        spectra: dict[tuple[int, int, int], np.ndarray] = {}
        bad: dict[int, str] = {}
        todo = layout(start, chunk_frames, pending)
        with self._bar(len(pending)) as bar:
            for attempt in range(len(pending) + 1):
                self.corpus.resize_frames(start + sum(n for _, n in pending))  # setup
                errors = self._compute(todo, attempt, bar, peaks, spectra)
                written.update({t.chunk: t for t in todo})
                if attempt == 0:  # every file was read whole: silence is known now
                    silent = {row: SILENT for row, _ in pending if peaks.get(row, 0.0) == 0.0}
                    errors = {**silent, **errors}
                if not errors:
                    break
                bad.update(errors)
                pending = [(row, n) for row, n in pending if row not in errors]
                _, todo = redo_after(start, chunk_frames, written, pending)
        self.bandwidths = self._bandwidths(layout(start, chunk_frames, pending), spectra)
        return pending, bad

    def _bandwidths(
        self, tasks: Sequence[ChunkTask], spectra: dict[tuple[int, int, int], np.ndarray]
    ) -> dict[int, float]:
        """Each laid-out file's bandwidth, from its segments' spectra summed in frame order
        (a segment computed again after a relayout replaced its earlier spectrum)."""
        from dnmf.audio.quality import bandwidth

        f = self.features
        freqs = np.fft.rfftfreq(f.n_fft, 1.0 / f.sr)
        total: dict[int, np.ndarray] = {}
        for s in (s for t in tasks for s in t.segments):
            part = spectra[s.row, s.f0, s.f1]
            total[s.row] = part.copy() if s.row not in total else total[s.row] + part
        return {row: bandwidth(p, freqs, self.sources[row].samplerate) for row, p in total.items()}

    def _compute(
        self, todo: list[ChunkTask], attempt: int, bar: Any, peaks: dict[int, float],
        spectra: dict[tuple[int, int, int], np.ndarray],
    ) -> dict[int, str]:  # fmt: skip
        from distributed import as_completed

        c, feature_attrs = self.client, self.features.as_attrs()
        workers = max(1, len(c.scheduler_info(n_workers=-1).get("workers", {})))
        per_job = chunks_per_job(len(todo), workers)
        # The last chunks a chunk a job, so that no worker waits long for another's last job.
        tail = per_job * workers if workers > 1 else 0
        futures = []
        for job in jobs_of(todo, self.sequential, per_job=per_job, tail=tail):
            rows = {s.row for t in job for s in t.segments}
            fut = c.submit(
                ingest_job, self.store, job, {r: self.sources[r] for r in rows}, feature_attrs,
                self.clipping, self.corpus.chunk_frames, retries=2,
                key=f"ingest-{self.token}-{attempt}-{job[0].chunk}",
            )  # fmt: skip
            futures.append(fut)
        last_chunk = {s.row: t.chunk for t in todo for s in t.segments}
        seconds = {t.chunk: self._seconds(t) for t in todo}
        errors: dict[int, str] = {}
        for fut in as_completed(futures):
            out: JobOutcome = fut.result()
            errors.update(out.errors)
            spectra.update(out.spectra)
            for chunk in out.chunks:  # a record stands for the chunk's last write only
                self.records.pop(chunk, None)
            self.records.update(out.records)
            for row, peak in out.peaks.items():
                peaks[row] = max(peaks.get(row, 0.0), peak)
            self.decoded += sum(out.decoded.values())
            if attempt == 0:
                bar.advance(out.chunks, last_chunk, seconds)
        return errors

    def _seconds(self, t: ChunkTask) -> float:
        f = self.features
        return sum((s.f1 - s.f0) * f.hop_length / f.sr for s in t.segments)

    @contextmanager
    def _bar(self, n_files: int) -> Iterator[_Bar]:
        from dnmf.progress import reporter

        with reporter(
            "ingest", n_files, enabled=self.progress,
            fields="files  {task.fields[hours]:.3f} h audio  {task.fields[rtf]:.0f}x realtime",
            hours=0.0, rtf=0.0,
        ) as bar:  # fmt: skip
            yield _Bar(bar, self.t0)


class _Bar:
    """The ingest bar: files whose last chunk is written, hours of audio, realtime factor."""

    def __init__(self, bar: Any, t0: float) -> None:
        self.bar, self.t0, self.hours = bar, t0, 0.0

    def advance(
        self, chunks: list[int], last_chunk: dict[int, int], seconds: dict[int, float]
    ) -> None:
        written = set(chunks)
        done = sum(1 for ch in last_chunk.values() if ch in written)
        self.hours += sum(seconds[ch] for ch in chunks) / 3600
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(advance=done, hours=self.hours, rtf=self.hours * 3600 / elapsed)
