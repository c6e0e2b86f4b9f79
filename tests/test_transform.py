"""dnmf transform: activations of new audio equal a whole-file librosa solve; the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pytest
import typer
import xarray as xr
import zarr
from typer.testing import CliRunner

from dnmf.audio.features import FeatureConfig
from dnmf.cli.transform import transform_command
from dnmf.errors import DnmfPathError, DnmfUsageError, StoreFormatError
from dnmf.io.dictionary import dictionary_fingerprint, load_dictionary
from dnmf.io.model import ModelStore
from dnmf.nmf.config import LearnConfig
from dnmf.transform import activations_for_file, transform_files
from tests.conftest import solve, write

SR = 22050
FEATURES = FeatureConfig(sr=SR, n_fft=1024, hop_length=256)


def low_source(n: int, sr: int) -> np.ndarray:
    """A 220 Hz tone with its octave."""
    t = np.arange(n) / sr
    return (0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 440 * t)).astype(
        np.float32
    )


def high_source(n: int, sr: int, seed: int = 0) -> np.ndarray:
    """Noise band-passed to 3-6 kHz."""
    import scipy.signal

    b, a = scipy.signal.butter(6, [3000, 6000], btype="band", fs=sr)
    noise = np.random.default_rng(seed).standard_normal(n)
    return (0.5 * scipy.signal.lfilter(b, a, noise)).astype(np.float32)


def build_model(
    root: Path, client: Any, *, features: FeatureConfig = FEATURES, rank: int = 2
) -> Path:
    """Ingest a two-file corpus (a low tone, a high noise band) and learn a dictionary."""
    from pipelines.ingest import ingest
    from pipelines.learn import learn_corpus

    n = 2 * SR
    write(root / "audio" / "low.wav", low_source(n, SR), SR)
    write(root / "audio" / "high.wav", high_source(n, SR), SR)
    ingest(root / "audio", root / "corpus.zarr", features=features, client=client)
    cfg = LearnConfig(rank=rank, epochs=50, init="nndsvda")
    learn_corpus(root / "corpus.zarr", root / "model.zarr", config=cfg, client=client)
    return root / "model.zarr"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, cluster_client: object) -> Path:
    return build_model(tmp_path_factory.mktemp("model"), cluster_client)


@pytest.fixture(scope="module")
def takes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A mono mixture at the model's rate and a stereo one at 44.1 kHz."""
    root = tmp_path_factory.mktemp("takes")
    n = int(1.5 * SR)
    mono = low_source(n, SR) + high_source(n, SR, seed=5)
    m = int(1.3 * 44100)
    left = low_source(m, 44100) + high_source(m, 44100, seed=6)
    stereo = np.stack([left, 0.5 * left + high_source(m, 44100, seed=7)], axis=1)
    return {
        "mono": write(root / "mono.wav", mono, SR, subtype="FLOAT"),
        "stereo": write(root / "sub" / "stereo.flac", stereo, 44100),
    }


def librosa_V(path: Path) -> np.ndarray:
    y = librosa.load(path, sr=SR)[0]
    return np.abs(librosa.stft(y, n_fft=FEATURES.n_fft, hop_length=FEATURES.hop_length))


@pytest.mark.parametrize("take", ["mono", "stereo"])
def test_file_equals_a_whole_file_librosa_solve(
    model: Path, takes: dict[str, Path], take: str
) -> None:
    H, info = activations_for_file(model, takes[take])
    W = ModelStore.open(model).W
    V = librosa_V(takes[take])
    ref, loss, n_iter = solve(V, W, beta=1.0)
    assert H.dtype == np.float32 and H.shape == ref.shape == (2, info.n_frames)
    np.testing.assert_allclose(H, ref, rtol=0, atol=1e-4 * float(ref.max()))
    assert info.n_iter == n_iter and info.loss == pytest.approx(loss, rel=1e-4)
    assert info.samplerate == (SR if take == "mono" else 44100)
    assert info.channels == (1 if take == "mono" else 2)
    np.testing.assert_allclose(info.times[1], FEATURES.hop_length / SR)


def test_blocks_give_the_whole_file_result_for_a_fixed_number_of_updates(
    model: Path, takes: dict[str, Path]
) -> None:
    H, info = activations_for_file(model, takes["stereo"], n_iter=60, tol=0, block_frames=37)
    assert info.n_iter == 60
    ref, _, _ = solve(librosa_V(takes["stereo"]), ModelStore.open(model).W, beta=1.0,
                                  n_iter=60, tol=0)  # fmt: skip
    np.testing.assert_allclose(H, ref, rtol=0, atol=1e-4 * float(ref.max()))


def test_solver_stops_on_tol_and_never_raises_the_loss() -> None:
    rng = np.random.default_rng(0)
    W = rng.random((30, 3)).astype(np.float32)
    V = W @ rng.random((3, 50)).astype(np.float32)
    losses = [solve(V, W, beta=1.0, n_iter=n, tol=0)[1] for n in (0, 10, 20, 40)]
    assert losses == sorted(losses, reverse=True)
    _, _, n_iter = solve(V, W, beta=1.0, n_iter=10_000, tol=1e-3)
    assert n_iter < 10_000 and n_iter % 10 == 0


def test_store_opens_with_xarray_and_selects_one_file(
    model: Path, takes: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "t.zarr"
    result = transform_files(model, [takes["mono"], takes["stereo"].parent], store)
    names = [takes["mono"].as_posix(), takes["stereo"].as_posix()]
    assert [f["file"] for f in result.files] == names

    ds = xr.open_zarr(store)
    assert ds.H.dims == ("component", "frame") and ds.H.dtype == np.float32
    assert ds.sizes["frame"] == result.n_frames and list(ds.file.values) == names
    meta = ds.attrs["dnmf"]
    assert meta["kind"] == "activations" and meta["status"] == "done"
    assert meta["model_fingerprint"] == dictionary_fingerprint(ModelStore.open(model).W)
    assert meta["features"] == FEATURES.as_attrs()

    row = ds.sel(file=names[1])
    first, n = int(row.first_frame.values), int(row.n_frames.values)
    H, info = activations_for_file(model, takes["stereo"])
    assert (first, n) == (result.files[0]["n_frames"], info.n_frames)
    np.testing.assert_array_equal(ds.H[:, first : first + n].values, H)
    assert (ds.file_index[first : first + n].values == 1).all()
    np.testing.assert_allclose(ds.time[first : first + n].values, info.times)
    assert ds.H.where((ds.file_index == 0).compute(), drop=True).sizes["frame"] == first

    # The analysis API reads it as it reads an exported store.
    from dnmf.api import file_frames, open_activations
    from dnmf.info import describe

    one = file_frames(open_activations(store), names[1])
    np.testing.assert_array_equal(one.H.values, H)
    assert describe(store)["frames"] == result.n_frames

    g = zarr.open_group(store, mode="r")
    assert g["H"].metadata.dimension_names == ("component", "frame")  # type: ignore[union-attr]
    assert g["n_frames"].metadata.dimension_names == ("file",)  # type: ignore[union-attr]


def test_existing_stores_are_replaced_only_when_asked(
    model: Path, takes: dict[str, Path], tmp_path: Path
) -> None:
    store = tmp_path / "t.zarr"
    transform_files(model, [takes["mono"]], store)
    with pytest.raises(DnmfUsageError, match="--overwrite"):
        transform_files(model, [takes["mono"]], store)
    transform_files(model, [takes["stereo"]], store, overwrite=True)
    assert list(xr.open_zarr(store).file.values) == [takes["stereo"].as_posix()]
    corpus = model.parent / "corpus.zarr"
    with pytest.raises(DnmfUsageError, match="not an activations store"):
        transform_files(model, [takes["mono"]], corpus, overwrite=True)
    assert (corpus / "V").is_dir()


def test_bad_models_and_files_are_refused(
    model: Path, takes: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(StoreFormatError, match="corpus store, not a model store"):
        load_dictionary(model.parent / "corpus.zarr")
    with pytest.raises(DnmfPathError, match="does not exist"):
        load_dictionary(tmp_path / "nope.zarr")
    silent = write(tmp_path / "silent.wav", np.zeros(4000, np.float32), SR)
    with pytest.raises(DnmfUsageError, match="silent"):
        activations_for_file(model, silent)
    with pytest.raises(DnmfUsageError, match="given twice"):
        transform_files(model, [takes["mono"], takes["mono"]], tmp_path / "t.zarr")
    with pytest.raises(DnmfUsageError, match="iter=0"):
        activations_for_file(model, takes["mono"], n_iter=0)
    assert not (tmp_path / "t.zarr").exists()


# --------------------------------------------------------------------------- CLI

runner = CliRunner()


def cli(*args: object):  # type: ignore[no-untyped-def]
    app = typer.Typer()
    app.command("transform")(transform_command)
    app.command("noop")(lambda: None)  # two commands, so the first argument names one
    return runner.invoke(app, ["transform", *(str(a) for a in args)])


def test_cli_json(model: Path, takes: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "t.zarr"
    result = cli(model, takes["mono"], takes["stereo"], "-o", store, "--json", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["store"] == str(store) and len(summary["files"]) == 2
    assert summary["n_frames"] == xr.open_zarr(store).sizes["frame"]
    again = cli(model, takes["mono"], "-o", store)
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.parametrize(
    "case, words",
    [
        ("corpus", ["corpus store, not a model store"]),
        ("missing_model", ["does not exist"]),
        ("folder_model", ["not a dnmf store"]),
        ("undecodable", ["cannot be used", "not decodable"]),
        ("missing_audio", ["does not exist"]),
        ("iter", ["--iter 0"]),
    ],
)
def test_cli_bad_input_exits_2(
    model: Path, takes: dict[str, Path], tmp_path: Path, case: str, words: list[str]
) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    (tmp_path / "plain").mkdir()
    args: dict[str, list[object]] = {
        "corpus": [model.parent / "corpus.zarr", takes["mono"]],
        "missing_model": [tmp_path / "nope.zarr", takes["mono"]],
        "folder_model": [tmp_path / "plain", takes["mono"]],
        "undecodable": [model, takes["mono"], junk],
        "missing_audio": [model, tmp_path / "nope.wav"],
        "iter": [model, takes["mono"], "--iter", "0"],
    }
    result = cli(*args[case], "-o", tmp_path / "t.zarr")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("dnmf: error:") == 1
    for word in words:
        assert word in result.output
    assert not (tmp_path / "t.zarr").exists()
