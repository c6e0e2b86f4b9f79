"""The plan of an ingest (pure, no I/O): what is new in the folder, and where its frames go.

:func:`diff_files` compares the folder with the file table; :func:`layout`
packs the files to append back to back and cuts the result at chunk edges
(one :class:`ChunkTask` per Zarr chunk of ``V``); :func:`jobs_of` groups the
chunk tasks into the tasks a worker runs, so that a file that must be decoded
from its start (an MP3) is read by one task, in order; :func:`redo_after`
says which chunks to compute again once some files turned out unusable.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from dnmf.audio.decode import AudioFile
from dnmf.io.file_table import FileRecord, Status

__all__ = [
    "ChunkTask",
    "FileDiff",
    "Segment",
    "diff_files",
    "jobs_of",
    "layout",
    "redo_after",
]


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


def jobs_of(
    tasks: Sequence[ChunkTask], sequential: Collection[int], per_job: int = 1, tail: int = 0
) -> list[list[ChunkTask]]:
    """Group consecutive chunk tasks into jobs of ``per_job`` tasks, the last ``tail`` tasks
    into jobs of one (so that the workers finish together), except where a file in
    ``sequential`` (rows decoded only from their start) spans chunks, whose tasks
    form one job (longer if need be), run in order by one worker.

    Examples
    --------
    >>> tasks = layout(0, 10, [(0, 25), (1, 5)])
    >>> [[t.chunk for t in job] for job in jobs_of(tasks, set())]
    [[0], [1], [2]]
    >>> [[t.chunk for t in job] for job in jobs_of(tasks, set(), per_job=2)]
    [[0, 1], [2]]
    >>> [[t.chunk for t in job] for job in jobs_of(tasks, set(), per_job=2, tail=2)]
    [[0], [1], [2]]
    >>> [[t.chunk for t in job] for job in jobs_of(tasks, {0})]
    [[0, 1, 2]]
    """
    jobs: list[list[ChunkTask]] = []
    carry: set[int] = set()  # sequential rows that go on past the last job's end
    for i, t in enumerate(tasks):
        rows = {s.row for s in t.segments}
        size = per_job if i < len(tasks) - tail else 1
        if jobs and (carry & rows or len(jobs[-1]) < size):
            jobs[-1].append(t)
        else:
            jobs.append([t])
        last = t.segments[-1]
        carry = {last.row} if last.row in sequential else set()
    return jobs


def redo_after(
    start: int,
    chunk_frames: int,
    written: Mapping[int, ChunkTask],
    kept: Sequence[tuple[int, int]],
) -> tuple[list[ChunkTask], list[ChunkTask]]:
    """The layout of the files ``kept``, and which of its chunk tasks are still to run.

    After a run found some files unusable, the files ``kept`` (row, n_frames),
    in order, are packed again from ``start``; a chunk whose last write
    (``written``, chunk to task) was the same task holds the right frames
    already and is not computed again.

    Returns
    -------
    tasks : list of ChunkTask
        The whole new layout.
    todo : list of ChunkTask
        Those of ``tasks`` that must be computed (again).

    Examples
    --------
    >>> first = layout(0, 10, [(0, 12), (1, 5), (2, 4)])
    >>> tasks, todo = redo_after(0, 10, {t.chunk: t for t in first}, [(0, 12), (2, 4)])
    >>> [t.chunk for t in tasks], [t.chunk for t in todo]
    ([0, 1], [1])
    """
    tasks = layout(start, chunk_frames, kept)
    return tasks, [t for t in tasks if written.get(t.chunk) != t]
