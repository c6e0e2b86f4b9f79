"""Ingest decodes each file once: header probes, checks while the features are computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dnmf.io.corpus import CorpusStore, Status
from pipelines.ingest import ingest
from pipelines.ingest_plan import jobs_of, layout
from tests.conftest import tone, write
from tests.test_ingest import assert_matches_librosa


def test_each_file_is_decoded_once(mixed_corpus: Path, tmp_path: Path, cluster_client) -> None:
    result = ingest(mixed_corpus, tmp_path / "c.zarr", client=cluster_client)
    assert result.exit_code == 0
    total = sum(r.n_samples for r in CorpusStore.open(tmp_path / "c.zarr").files())
    # One decode of every sample; a header probe decodes none. (Two decodes before.)
    assert total <= result.samples_decoded <= 1.05 * total, (result.samples_decoded, total)


def test_files_found_bad_while_decoded_are_skipped_and_the_rest_laid_out_again(
    tmp_path: Path, cluster_client
) -> None:
    root = tmp_path / "corpus"
    write(root / "a.wav", tone(22050, 2.0, 440), 22050)
    nan = tone(44100, 3.0, 330, seed=1)
    nan[70000] = np.nan
    write(root / "b_nan.wav", nan, 44100, subtype="FLOAT")
    write(root / "c.flac", tone(16000, 2.5, 220, seed=2), 16000)
    full = write(root / "whole.flac", tone(44100, 3.0, 550, seed=3), 44100).read_bytes()
    (root / "whole.flac").unlink()
    (root / "d_truncated.flac").write_bytes(full[: len(full) // 2])
    write(root / "e.wav", tone(22050, 1.5, 660, seed=4), 22050)
    write(root / "f_silent.wav", np.zeros(30000, np.float32), 22050)
    write(root / "g.wav", tone(22050, 1.0, 770, seed=5), 22050)
    # The bad files' headers are fine: only decoding tells them.
    assert sf.info(root / "d_truncated.flac").frames == 3 * 44100

    store = tmp_path / "c.zarr"
    result = ingest(root, store, chunk_frames=40, client=cluster_client)
    assert result.exit_code == 3
    assert result.added == ["a.wav", "c.flac", "e.wav", "g.wav"]
    errors = {s["file"]: s["error"] for s in result.skipped}
    assert set(errors) == {"b_nan.wav", "d_truncated.flac", "f_silent.wav"}
    assert "NaN" in errors["b_nan.wav"]
    assert "decoding failed" in errors["d_truncated.flac"]
    assert "silent" in errors["f_silent.wav"]
    corpus = CorpusStore.open(store)
    rows = {r.file: r for r in corpus.files()}
    assert corpus.n_frames == sum(r.n_frames for r in rows.values()) == corpus.V.shape[1]
    assert rows["b_nan.wav"].n_frames == 0 and rows["b_nan.wav"].status == Status.SKIPPED
    assert rows["b_nan.wav"].first_frame == rows["c.flac"].first_frame  # where it would start
    assert_matches_librosa(store, root)  # no frame of a bad file among the good ones


def test_an_mp3_spanning_chunks_is_decoded_from_its_start(tmp_path: Path, cluster_client) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3")
    root = tmp_path / "corpus"
    write(root / "a.wav", tone(22050, 1.0, 440), 22050)
    sf.write(root / "b.mp3", tone(44100, 6.0, 330, channels=2, seed=1), 44100, format="MP3")
    write(root / "c.wav", tone(22050, 1.0, 550, seed=2), 22050)
    result = ingest(root, tmp_path / "c.zarr", chunk_frames=64, client=cluster_client)
    assert result.exit_code == 0 and result.added == ["a.wav", "b.mp3", "c.wav"]
    assert_matches_librosa(tmp_path / "c.zarr", root)  # librosa.load decodes from the start


def test_chunks_sharing_an_mp3_form_one_job() -> None:
    tasks = layout(0, 64, [(0, 44), (1, 517), (2, 100)])  # the MP3 ends inside chunk 8
    jobs = jobs_of(tasks, sequential={1})
    assert [[t.chunk for t in job] for job in jobs] == [list(range(9)), [9], [10]]
    assert len(jobs_of(tasks, sequential=set())) == len(tasks) == 11
    tasks = layout(0, 64, [(0, 64), (1, 130), (2, 70)])  # the MP3 starts chunk 1
    assert [[t.chunk for t in j] for j in jobs_of(tasks, {1})] == [[0], [1, 2, 3], [4]]


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3"])
def test_decoder_reads_forward_overlapping_ranges_as_one_whole_read(
    tmp_path: Path, ext: str
) -> None:
    from dnmf.audio.decode import BadAudio, Decoder

    if ext == "mp3" and "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3")
    path = tmp_path / f"x.{ext}"
    sf.write(path, tone(44100, 3.0, 330, channels=2), 44100, format=ext.upper())
    whole = sf.read(path, dtype="float32")[0].mean(axis=1, dtype=np.float32)
    n = len(whole)
    dec = Decoder(path, n)
    for a, b in [(0, 30000), (25000, 61000), (61000, 61000), (90000, 120000), (119000, n)]:
        np.testing.assert_array_equal(dec(a, b), whole[a:b], err_msg=f"{a}..{b}")
    # Overlaps come from the last read; a gap is seeked over, but an MP3 decodes it.
    assert dec.decoded == (n if ext == "mp3" else n - 29000)
    assert dec.peak == pytest.approx(0.3 + 0.05, abs=0.05)
    with pytest.raises(BadAudio, match="truncated"):
        Decoder(path, n + 10_000)(n, n + 10_000)


def test_the_content_hash_says_its_kind_and_an_older_blake2b_one_still_matches(
    tmp_path: Path,
) -> None:
    import hashlib

    import xxhash

    from dnmf.audio.decode import content_hash, same_content

    path = write(tmp_path / "a.wav", tone(22050, 2.0, 440), 22050)
    data = path.read_bytes()
    assert content_hash(path) == "xxh3-128:" + xxhash.xxh3_128(data).hexdigest()
    older = hashlib.blake2b(data, digest_size=16).hexdigest()  # what a store of 0.x holds
    assert same_content(path, older) and same_content(path, content_hash(path))
    write(path, tone(22050, 2.0, 441), 22050)
    assert not same_content(path, older)
    other = write(tmp_path / "b.wav", tone(22050, 2.0, 440), 22050)
    assert not same_content(path, content_hash(other))


def test_a_touched_file_of_a_store_with_blake2b_hashes_is_not_changed(
    mixed_corpus: Path, tmp_path: Path, cluster_client
) -> None:
    import hashlib
    import os

    store = tmp_path / "c.zarr"
    ingest(mixed_corpus, store, client=cluster_client)
    corpus = CorpusStore.open(store, mode="r+")
    rows = corpus.files()
    for r in rows:  # the file table an older dnmf committed: BLAKE2b-128, no prefix
        data = (mixed_corpus / r.file).read_bytes()
        r.content_hash = hashlib.blake2b(data, digest_size=16).hexdigest()
    corpus.commit(rows, corpus.n_frames, {"what": "older hashes"})
    os.utime(mixed_corpus / "a.wav", ns=(1, 1))  # touched, same content
    result = ingest(mixed_corpus, store, scheduler="tcp://127.0.0.1:9")
    assert result.nothing_new and result.changed == []
    after = {r.file: r for r in CorpusStore.open(store).files()}
    assert after["a.wav"].status == Status.OK and after["a.wav"].mtime_ns == 1
