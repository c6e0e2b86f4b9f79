"""Export: activations aligned with the corpus, one-line file selection, incremental reruns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dnmf
from dnmf.nmf.config import LearnConfig
from dnmf.transform import activations_for_file
from pipelines.export import export, plan_export
from pipelines.ingest import ingest
from pipelines.learn import learn_corpus
from tests.conftest import solve, tone, write


@pytest.fixture
def learned(mixed_corpus: Path, tmp_path: Path, cluster_client) -> tuple[Path, Path]:
    store = tmp_path / "c.zarr"
    ingest(mixed_corpus, store, chunk_frames=64, client=cluster_client)
    model = tmp_path / "m.zarr"
    learn_corpus(store, model, config=LearnConfig(rank=5, epochs=10), client=cluster_client)
    return store, model


def test_export_is_aligned_and_selects_files(learned: tuple[Path, Path], cluster_client) -> None:
    store, model = learned
    result = export(model, client=cluster_client, n_iter=60)
    acts = dnmf.open_activations(result.store)
    corpus = dnmf.open_corpus(store)
    assert acts.H.dims == ("component", "frame") and acts.sizes["frame"] == corpus.sizes["frame"]
    assert acts.H.chunks[1][0] == corpus.V.chunks[1][0] == 64
    np.testing.assert_array_equal(acts.time.values, corpus.time.values)
    np.testing.assert_array_equal(acts.file_index.values, corpus.file_index.values)
    W = dnmf.open_model(model).W.values
    for name in ("a.wav", "sub/b.flac"):
        one = acts.dnmf.file(name)
        V1 = corpus.dnmf.file(name).V.values
        assert one.H.shape == (5, V1.shape[1]) and (one.H.values >= 0).all()
        # The same frames as a direct solve on that file's own V (frames are independent given W).
        H_direct, _, _ = solve(V1, W, beta=1.0, n_iter=60, tol=1e-4)
        assert np.linalg.norm(W @ one.H.values - V1) <= 1.05 * np.linalg.norm(W @ H_direct - V1)
    with pytest.raises(dnmf.DnmfUsageError, match=r"'nope\.wav' is not in this store"):
        acts.dnmf.file("nope.wav")


def test_transform_of_a_corpus_file_equals_its_exported_activations(
    learned: tuple[Path, Path], mixed_corpus: Path, cluster_client
) -> None:
    # A fixed number of updates (tol=0) makes the solve independent of how frames are
    # grouped, so the export (per corpus chunk) and transform (per file block) agree.
    _, model = learned
    acts = dnmf.open_activations(export(model, client=cluster_client, n_iter=50, tol=0).store)
    for name in ("a.wav", "sub/b.flac"):
        H, info = activations_for_file(model, mixed_corpus / name, n_iter=50, tol=0)
        exported = acts.dnmf.file(name).H.values
        assert H.shape == exported.shape and info.n_frames == exported.shape[1]
        np.testing.assert_allclose(H, exported, rtol=1e-4, atol=1e-5 * float(exported.max()))


def test_rerun_exports_only_new_frames(
    learned: tuple[Path, Path], mixed_corpus: Path, cluster_client
) -> None:
    store, model = learned
    first = export(model, client=cluster_client, n_iter=30)
    H_before = dnmf.open_activations(first.store).H.values
    assert export(model, client=cluster_client, n_iter=30).nothing_new
    write(mixed_corpus / "late.wav", tone(22050, 2.0, 500, seed=8), 22050)
    ingest(mixed_corpus, store, client=cluster_client)
    again = export(model, client=cluster_client, n_iter=30)
    acts = dnmf.open_activations(first.store)
    n_old, n_new = H_before.shape[1], acts.sizes["frame"]
    keep = (n_old // 64) * 64  # whole chunks before the old end are not touched
    assert again.reason == "new corpus frames" and again.frames_exported == n_new - keep
    assert again.chunks == -(-(n_new - keep) // 64)
    np.testing.assert_array_equal(acts.H.values[:, :keep], H_before[:, :keep])
    assert acts.dnmf.file("late.wav").sizes["frame"] == 87
    everything = export(model, client=cluster_client, n_iter=40)  # other settings: all again
    assert everything.reason == "the solver settings changed"
    assert everything.frames_exported == acts.sizes["frame"]


def test_plan_export() -> None:
    fp, st = "abc", {"iter": 10, "tol": 0.1}
    meta = {"model_fingerprint": fp, "settings": st, "n_frames": 130}
    assert plan_export(None, model_fp=fp, settings=st, corpus_frames=130, chunk_frames=64) == (
        0,
        "new store",
    )
    assert (
        plan_export(meta, model_fp=fp, settings=st, corpus_frames=130, chunk_frames=64)[1]
        == "nothing new"
    )
    assert plan_export(meta, model_fp=fp, settings=st, corpus_frames=200, chunk_frames=64) == (
        128,
        "new corpus frames",
    )
    assert plan_export(meta, model_fp="x", settings=st, corpus_frames=200, chunk_frames=64)[0] == 0


def test_export_bad_input(tmp_path: Path, learned: tuple[Path, Path]) -> None:
    store, model = learned
    with pytest.raises(dnmf.DnmfError, match="not a model store"):
        export(store)
    with pytest.raises(dnmf.DnmfUsageError, match="iter=0"):
        export(model, n_iter=0)


def test_plots_are_written(learned: tuple[Path, Path], tmp_path: Path, cluster_client) -> None:
    from PIL import Image

    from dnmf.plot import plot_store

    _, model = learned
    export(model, client=cluster_client, n_iter=20)
    paths = plot_store(model, tmp_path / "plots", file="sub/b.flac")
    assert [p.name for p in paths] == ["dictionary.png", "loss.png", "activations.png"]
    for p in paths:
        with Image.open(p) as im:
            grey = np.asarray(im.convert("L"))
            assert im.size[0] > 300 and len(np.unique(grey)) > 10  # not blank


@pytest.mark.parametrize("lags", [1, 8])
def test_export_transform_and_separate_solve_the_same_H_with_penalties(
    lags: int, tmp_path: Path, cluster_client
) -> None:
    """One solver: the model's penalties on H reach export, transform and separate alike."""
    from dnmf.io.dictionary import load_dictionary
    from dnmf.separate import _activations

    audio = write(tmp_path / "audio" / "a.wav", tone(22050, 4.0, 330), 22050)
    store = tmp_path / "c.zarr"
    ingest(audio.parent, store, chunk_frames=64, client=cluster_client)
    model = tmp_path / "m.zarr"
    cfg = LearnConfig(rank=3, lags=lags, epochs=5, alpha_H=0.1, l1_ratio=0.5, seed=1)
    learn_corpus(store, model, config=cfg, client=cluster_client)
    acts = dnmf.open_activations(export(model, client=cluster_client, n_iter=20, tol=0).store)
    exported = acts.dnmf.file("a.wav").H.values
    H, _ = activations_for_file(model, audio, n_iter=20, tol=0)
    V = dnmf.open_corpus(store).dnmf.file("a.wav").V.values
    separated = _activations(V, load_dictionary(model), n_iter=20, tol=0, block=8192)
    scale = float(exported.max())
    np.testing.assert_allclose(H, exported, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(separated, H, rtol=1e-4, atol=1e-5 * scale)
    # ... and the penalty is really there: without it the activations are others.
    W = dnmf.open_model(model).W.values
    plain, _, _ = solve(V, W, beta=1.0, n_iter=20, tol=0)
    assert not np.allclose(plain, H, rtol=1e-2)
