"""The pure planning of ingest, property-tested against brute-force oracles."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dnmf.audio.decode import AudioFile
from dnmf.io.corpus import FileRecord, Status
from pipelines.ingest import diff_files, layout


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 50),
    chunk=st.integers(1, 12),
    sizes=st.lists(st.integers(0, 40), max_size=12),
)
def test_layout_packs_back_to_back_and_never_shares_a_chunk(
    start: int, chunk: int, sizes: list[int]
) -> None:
    files = list(enumerate(sizes, start=100))
    tasks = layout(start, chunk, files)
    # Oracle: the frame-by-frame packing.
    expected = []
    for row, n in files:
        expected += [(row, f) for f in range(n)]
    got: dict[int, tuple[int, int]] = {}
    for t in tasks:
        assert t.start // chunk == t.chunk == (t.stop - 1) // chunk  # inside one chunk
        covered = 0
        for s in t.segments:
            assert t.start <= s.dest and s.dest + (s.f1 - s.f0) <= t.stop
            for k in range(s.f1 - s.f0):
                assert s.dest + k not in got
                got[s.dest + k] = (s.row, s.f0 + k)
            covered += s.f1 - s.f0
        assert covered == t.stop - t.start > 0
    assert [t.chunk for t in tasks] == sorted({t.chunk for t in tasks})  # one task per chunk
    assert sorted(got) == list(range(start, start + len(expected)))
    assert [got[i] for i in sorted(got)] == expected


def rec(path: str, size: int = 10, mtime: int = 1, status: str = Status.OK) -> FileRecord:
    return FileRecord(path, "h", 0, 5, size=size, mtime_ns=mtime, status=status)


def test_diff_files_sorts_each_case() -> None:
    records = [
        rec("same.wav"),
        rec("touched.wav"),
        rec("gone.wav"),
        rec("bad.wav", status=Status.SKIPPED),
        rec("bad_fixed.wav", status=Status.SKIPPED),
        rec("back.wav", status=Status.REMOVED),
        rec("gone_before.wav", status=Status.REMOVED),
    ]
    found = [
        AudioFile("back.wav", 10, 1),
        AudioFile("bad.wav", 10, 1),
        AudioFile("bad_fixed.wav", 11, 2),
        AudioFile("new.wav", 3, 3),
        AudioFile("same.wav", 10, 1),
        AudioFile("touched.wav", 10, 2),
    ]
    diff = diff_files(records, found)
    assert [f.path for f in diff.new] == ["new.wav"]
    assert [records[i].file for i, _ in diff.recheck] == ["back.wav", "touched.wav"]
    assert [records[i].file for i, _ in diff.retry] == ["bad_fixed.wav"]
    assert [records[i].file for i in diff.removed] == ["gone.wav"]
    assert not diff.nothing_to_do


def test_diff_files_nothing_to_do() -> None:
    records = [rec("a.wav"), rec("b.wav", status=Status.SKIPPED)]
    assert diff_files(records, [AudioFile("a.wav", 10, 1), AudioFile("b.wav", 10, 1)]).nothing_to_do
