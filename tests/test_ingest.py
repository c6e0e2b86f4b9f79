"""Ingest on a real LocalCluster of worker processes, checked against librosa."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import librosa
import numpy as np
import pytest
import xarray as xr
import zarr

from dnmf.audio.features import FeatureConfig
from dnmf.errors import DnmfPathError, StoreMismatchError
from dnmf.io.corpus import CorpusStore, Status
from pipelines.ingest import ingest
from tests.conftest import tone, write


def reference(path: Path, sr: int = 22050) -> np.ndarray:
    y, _ = librosa.load(path, sr=sr)
    return np.abs(librosa.stft(y, n_fft=2048, hop_length=512))


def assert_matches_librosa(store: Path, corpus: Path) -> None:
    ds = xr.open_zarr(store)
    for row in CorpusStore.open(store).files():
        if row.status != Status.OK:
            continue
        S = reference(corpus / row.file)
        one = ds.sel(file=row.file)
        a, n = int(one.first_frame), int(one.n_frames)
        assert n == S.shape[1]
        V = ds.V[:, a : a + n].values
        np.testing.assert_allclose(V, S, rtol=1e-4, atol=1e-4 * S.max(), err_msg=row.file)
        np.testing.assert_array_equal(
            ds.file_index[a : a + n].values, ds.indexes["file"].get_loc(row.file)
        )
        np.testing.assert_allclose(
            ds.time[a : a + n].values, librosa.frames_to_time(np.arange(n), sr=22050)
        )


def test_files_spanning_chunks_match_librosa(
    mixed_corpus: Path, tmp_path: Path, cluster_client
) -> None:
    store = tmp_path / "c.zarr"
    result = ingest(mixed_corpus, store, chunk_frames=50, client=cluster_client)
    assert result.exit_code == 0 and not result.skipped
    assert result.added == ["a.wav", "c.wav", "e.aiff", "sub/b.flac", "sub/deeper/d.ogg"]
    corpus = CorpusStore.open(store)
    assert corpus.V.chunks == (1025, 50)
    assert corpus.n_frames == sum(r.n_frames for r in corpus.files()) == corpus.V.shape[1]
    assert max(r.n_frames for r in corpus.files()) > 2 * 50  # a file spans several chunks
    assert_matches_librosa(store, mixed_corpus)


def test_one_chunk_holding_many_files(mixed_corpus: Path, tmp_path: Path, cluster_client) -> None:
    store = tmp_path / "c.zarr"
    ingest(mixed_corpus, store, client=cluster_client)
    corpus = CorpusStore.open(store)
    assert corpus.V.shape[1] < corpus.chunk_frames == 8192  # all five files in chunk 0
    assert_matches_librosa(store, mixed_corpus)
    ds = xr.open_zarr(store)
    assert ds.V.dims == ("bin", "frame")
    assert ds.frequency.attrs["units"] == "Hz"
    np.testing.assert_allclose(ds.frequency.values, librosa.fft_frequencies(sr=22050, n_fft=2048))
    assert set(ds.indexes["file"]) == {r.file for r in corpus.files()}
    assert ds.attrs["dnmf"]["features"]["sr"] == 22050


def test_one_and_two_workers_write_identical_stores(
    mixed_corpus: Path, tmp_path: Path, cluster_client, monkeypatch
) -> None:
    import pipelines.ingest_run as ingest_run
    from dnmf.cluster import connect

    ingest(mixed_corpus, tmp_path / "two.zarr", chunk_frames=64, client=cluster_client)
    n_chunks = -(-CorpusStore.open(tmp_path / "two.zarr").n_frames // 64)
    # One worker, in jobs of several chunks, each written while the next is computed
    # (two workers: a chunk a job).
    monkeypatch.setattr(ingest_run, "JOBS_PER_WORKER", 1)
    assert ingest_run.chunks_per_job(n_chunks, 1) == 4 and n_chunks >= 9
    with connect(workers=1) as one:
        ingest(mixed_corpus, tmp_path / "one.zarr", chunk_frames=64, client=one)
    g1, g2 = zarr.open_group(tmp_path / "one.zarr"), zarr.open_group(tmp_path / "two.zarr")
    names = ("V", "time", "file_index", "clipped", "file", "content_hash", "first_frame",
             "n_frames", "chunks/V", "chunks/V_sum", "chunks/time")  # fmt: skip
    for name in names:
        a, b = np.asarray(g1[name][:]), np.asarray(g2[name][:])
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name


def test_incremental_append_only_adds_new_files(
    mixed_corpus: Path, tmp_path: Path, cluster_client
) -> None:
    store = tmp_path / "c.zarr"
    ingest(mixed_corpus, store, chunk_frames=64, client=cluster_client)
    before = CorpusStore.open(store)
    V_before = before.V[:]
    write(mixed_corpus / "new" / "z.wav", tone(32000, 3.0, 880, seed=9), 32000)

    again = ingest(mixed_corpus, store, client=cluster_client)
    assert again.added == ["new/z.wav"] and not again.nothing_new
    after = CorpusStore.open(store)
    assert after.n_files == before.n_files + 1
    np.testing.assert_array_equal(after.V[:, : before.n_frames], V_before)  # old frames untouched
    row = after.files()[-1]
    assert row.first_frame == before.n_frames and row.file == "new/z.wav"
    assert len(after.meta["ingest_history"]) == 2
    assert_matches_librosa(store, mixed_corpus)

    # Nothing new: no cluster is needed, so an unreachable scheduler is never contacted.
    third = ingest(mixed_corpus, store, scheduler="tcp://127.0.0.1:9")
    assert third.nothing_new and third.exit_code == 0 and third.added == []


def test_changed_and_removed_files_are_recorded(
    mixed_corpus: Path, tmp_path: Path, cluster_client
) -> None:
    store = tmp_path / "c.zarr"
    ingest(mixed_corpus, store, client=cluster_client)
    first = {r.file: r for r in CorpusStore.open(store).files()}
    write(mixed_corpus / "a.wav", tone(22050, 3.3, 450), 22050)  # new content
    (mixed_corpus / "c.wav").unlink()
    os.utime(mixed_corpus / "e.aiff", ns=(1, 1))  # touched, same content

    result = ingest(mixed_corpus, store, scheduler="tcp://127.0.0.1:9")
    assert result.nothing_new and result.changed == ["a.wav"] and result.removed == ["c.wav"]
    rows = {r.file: r for r in CorpusStore.open(store).files()}
    assert rows["a.wav"].status == Status.CHANGED and "changed" in rows["a.wav"].error
    assert rows["c.wav"].status == Status.REMOVED
    assert rows["e.aiff"].status == Status.OK and rows["e.aiff"].mtime_ns == 1
    assert rows["a.wav"].first_frame == first["a.wav"].first_frame  # frames kept
    assert ingest(mixed_corpus, store, rebuild=True, client=cluster_client).added == [
        "a.wav",
        "e.aiff",
        "sub/b.flac",
        "sub/deeper/d.ogg",
    ]


def bad_files(root: Path) -> dict[str, str]:
    """Each kind of bad input, with a word its recorded error must contain."""
    import soundfile as sf

    write(root / "good.wav", tone(22050, 1.0), 22050)
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("this is not audio at all, just text " * 20)
    write(root / "zero_length.wav", np.zeros((0, 1), np.float32), 22050)
    write(root / "silent.flac", np.zeros(22050, np.float32), 22050)
    full = write(root / "whole.flac", tone(44100, 2.0, seed=5), 44100).read_bytes()
    (root / "whole.flac").unlink()
    (root / "truncated.flac").write_bytes(full[: len(full) // 2])
    wav = write(root / "t.wav", tone(22050, 2.0, seed=6), 22050).read_bytes()
    (root / "t.wav").unlink()
    (root / "truncated.wav").write_bytes(wav[: len(wav) // 2])
    assert sf.info(root / "good.wav").frames == 22050
    return {
        "empty.wav": "empty",
        "text.wav": "not decodable",
        "zero_length.wav": "zero-length",
        "silent.flac": "silent",
        "truncated.flac": "decoding failed",
        "truncated.wav": "truncated",
    }


def test_bad_files_are_recorded_skipped_and_reported(tmp_path: Path, cluster_client) -> None:
    root = tmp_path / "corpus"
    expected = bad_files(root)
    store = tmp_path / "c.zarr"
    result = ingest(root, store, client=cluster_client)
    assert result.exit_code == 3
    assert result.added == ["good.wav"]
    assert {s["file"] for s in result.skipped} == set(expected)
    rows = {r.file: r for r in CorpusStore.open(store).files()}
    for name, word in expected.items():
        assert rows[name].status == Status.SKIPPED and rows[name].n_frames == 0
        assert word in rows[name].error, (name, rows[name].error)
    assert rows["good.wav"].n_frames == 44

    # A skipped file that is fixed is ingested on the next run, in its old row.
    write(root / "silent.flac", tone(22050, 1.0, seed=7), 22050)
    again = ingest(root, store, client=cluster_client)
    assert again.added == ["silent.flac"] and again.exit_code == 0
    rows = {r.file: r for r in CorpusStore.open(store).files()}
    assert rows["silent.flac"].status == Status.OK and rows["silent.flac"].first_frame == 44


def test_other_feature_settings_are_refused_by_name(
    mixed_corpus: Path, tmp_path: Path, cluster_client
) -> None:
    store = tmp_path / "c.zarr"
    ingest(mixed_corpus, store, features=FeatureConfig(sr=16000), client=cluster_client)
    before = (store / "zarr.json").read_bytes()
    with pytest.raises(StoreMismatchError, match="sr=16000"):
        ingest(mixed_corpus, store, features=FeatureConfig(sr=22050))
    with pytest.raises(StoreMismatchError, match="chunk_frames=8192"):
        ingest(mixed_corpus, store, features=FeatureConfig(sr=16000), chunk_frames=100)
    assert (store / "zarr.json").read_bytes() == before


def test_uncommitted_frames_of_a_crashed_run_are_discarded(
    mixed_corpus: Path, tmp_path: Path, cluster_client
) -> None:
    store = tmp_path / "c.zarr"
    ingest(mixed_corpus, store, chunk_frames=64, client=cluster_client)
    corpus = CorpusStore.open(store, mode="r+")
    committed = corpus.n_frames
    corpus.resize_frames(committed + 500)  # what a run killed after setup leaves
    corpus.V[:, committed:] = 7.0
    assert xr.open_zarr(store).sizes["frame"] == committed  # readers see the commit
    write(mixed_corpus / "late.wav", tone(22050, 1.0), 22050)
    ingest(mixed_corpus, store, client=cluster_client)
    after = CorpusStore.open(store)
    assert after.V.shape[1] == after.n_frames == committed + 44
    assert not (after.V[:, committed:] == 7.0).any()


def test_missing_folder_and_folder_without_audio(tmp_path: Path) -> None:
    with pytest.raises(DnmfPathError, match="does not exist"):
        ingest(tmp_path / "nope", tmp_path / "s.zarr")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hi")
    with pytest.raises(DnmfPathError, match="no audio files"):
        ingest(tmp_path / "docs", tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()
    shutil.rmtree(tmp_path / "docs")
