"""dnmf separate: the parts add up to the mixture, and each is closer to its source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import typer
from typer.testing import CliRunner

from dnmf.audio.decode import to_mono
from dnmf.audio.features import FeatureConfig
from dnmf.cli.separate import separate_command
from dnmf.errors import DnmfUsageError
from dnmf.io.model import ModelStore
from dnmf.separate import alpha_masks, parse_components, parse_groups, separate, sources_for
from tests.conftest import write
from tests.test_transform import SR, build_model, high_source, low_source


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, cluster_client: object) -> Path:
    """Rank 2, learned on a low tone and a high noise band: one component each."""
    return build_model(tmp_path_factory.mktemp("model"), cluster_client)


def read(path: Path) -> tuple[np.ndarray, int]:
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    return to_mono(y), sr


def mixture(tmp_path: Path, sr: int, seconds: float = 1.5) -> tuple[Path, np.ndarray, np.ndarray]:
    n = int(seconds * sr)
    low, high = low_source(n, sr), high_source(n, sr, seed=5)
    return write(tmp_path / f"mix{sr}.wav", low + high, sr, subtype="FLOAT"), low, high


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB (BSS Eval's without the allowed filter)."""
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


# --------------------------------------------------------------------------- the parts add up


@pytest.mark.parametrize(
    "options",
    [{}, {"groups": {"one": [1]}}, {"groups": {"all": [0, 1]}, "alpha": 2.0}, {"alpha": 0.5}],
)
def test_parts_add_up_to_the_mixture(model: Path, tmp_path: Path, options: dict) -> None:
    path, _, _ = mixture(tmp_path, SR)
    paths = separate(model, path, tmp_path / "out", **options)
    mix, _ = read(path)
    parts = [read(p) for p in paths]
    assert all(sr == SR and len(y) == len(mix) for y, sr in parts)
    total = np.sum([y for y, _ in parts], axis=0)
    # The masks of a partition add up to 1 and the STFT is linear: float rounding only.
    np.testing.assert_allclose(total, mix, rtol=0, atol=1e-5)


def test_parts_at_another_rate_add_up_below_the_models_nyquist(model: Path, tmp_path: Path) -> None:
    """A 44.1 kHz input, a 22.05 kHz model: the parts are resampled back with soxr.

    Their sum is the mixture after a soxr round trip to the model's rate and back,
    to float rounding. That round trip keeps only what lies below 11025 Hz, with
    soxr's passband ripple, and rings at the hard ends of the file: so against the
    mixture itself (all below 6 kHz here) the tolerance is looser and the first and
    last 10 ms are left out.
    """
    path, _, _ = mixture(tmp_path, 44100)
    paths = separate(model, path, tmp_path / "out")
    mix, _ = read(path)
    parts = [read(p) for p in paths]
    assert all(sr == 44100 and len(y) == len(mix) for y, sr in parts)
    total = np.sum([y for y, _ in parts], axis=0)
    there = soxr.resample(mix, 44100, SR, quality="soxr_hq")
    round_trip = soxr.resample(there, SR, 44100, quality="soxr_hq")[: len(mix)]
    np.testing.assert_allclose(total, round_trip, rtol=0, atol=1e-5)
    edge = 441
    np.testing.assert_allclose(total[edge:-edge], mix[edge:-edge], rtol=0, atol=1e-3)


def test_stereo_input_gives_mono_parts_at_its_rate_and_length(model: Path, tmp_path: Path) -> None:
    n = int(0.8 * 32000)
    y = np.stack([low_source(n, 32000), high_source(n, 32000)], axis=1)
    path = write(tmp_path / "stereo.flac", y, 32000)
    paths = separate(model, path, tmp_path / "out", subtype="PCM_24")
    assert [p.name for p in paths] == ["stereo_component0.wav", "stereo_component1.wav"]
    for p in paths:
        info = sf.info(str(p))
        assert (info.samplerate, info.channels, info.frames) == (32000, 1, n)
        assert info.subtype == "PCM_24"


# --------------------------------------------------------------------------- separation works


def test_each_part_is_closer_to_its_source_than_the_mixture(model: Path, tmp_path: Path) -> None:
    path, low, high = mixture(tmp_path, SR)
    W = ModelStore.open(model).W
    low_component = int(np.argmin((np.arange(W.shape[0])[:, None] * W).sum(0) / W.sum(0)))
    names = {low_component: "low", 1 - low_component: "high"}
    paths = separate(model, path, tmp_path / "out", groups={names[0]: [0], names[1]: [1]})
    assert [p.name for p in paths] == [f"mix{SR}_{names[0]}.wav", f"mix{SR}_{names[1]}.wav"]
    mix = low + high
    for name, source in (("low", low), ("high", high)):
        estimate, _ = read(tmp_path / "out" / f"mix{SR}_{name}.wav")
        assert sdr(source, estimate) > sdr(source, mix) + 20, name


def test_a_subset_of_components_gets_the_same_parts_as_all(model: Path, tmp_path: Path) -> None:
    path, _, _ = mixture(tmp_path, SR)
    (one,) = separate(model, path, tmp_path / "out", components=[1])
    both = separate(model, path, tmp_path / "all")
    np.testing.assert_array_equal(read(one)[0], read(both[1])[0])


# --------------------------------------------------------------------------- masks and sources


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 40.0])
def test_masks_of_a_partition_sum_to_one(alpha: float) -> None:
    rng = np.random.default_rng(0)
    W = rng.random((20, 5)).astype(np.float32) ** 3
    W[:, 4] = 0.0  # a dead component
    W[3] = 0.0  # a bin no component reaches: equal shares
    H = rng.random((5, 30)).astype(np.float32) * 1e3
    H[:, 7] = 0.0  # a silent frame
    groups = [[0, 3], [1], [2, 4]]
    masks = alpha_masks(W[:, :, None], H, groups, groups, alpha=alpha)
    np.testing.assert_allclose(np.sum(masks, axis=0), 1.0, atol=1e-6)
    assert all(((m >= 0) & (m <= 1)).all() for m in masks)
    np.testing.assert_allclose(masks[1][3], 1 / 3, atol=1e-6)


def test_sources_and_their_parsing() -> None:
    assert parse_components("0-2, 5") == [0, 1, 2, 5]
    assert parse_groups(["drums=0,1", "bass=3"]) == {"drums": [0, 1], "bass": [3]}
    assert sources_for(3) == {"component0": [0], "component1": [1], "component2": [2]}
    assert list(sources_for(12, components=[3, 11])) == ["component03", "component11"]
    assert sources_for(5, groups={"a": [4], "rest": [0]}) == {"a": [4], "rest": [0, 1, 2, 3]}
    assert sources_for(2, groups={"a": [0, 1]}) == {"a": [0, 1]}


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: sources_for(4, components=[4]), ["component 4", "rank 4", "0 to 3"]),
        (lambda: sources_for(4, components=[-1]), ["component -1", "out of range"]),
        (lambda: sources_for(4, groups={"a": [0, 1], "b": [1]}), ["component 1", "'a'", "'b'"]),
        (lambda: sources_for(4, groups={"a": []}), ["no components"]),
        (lambda: sources_for(4, groups={"../x": [0]}), ["not a plain word"]),
        (lambda: sources_for(4, groups={"a": [0]}, components=[1]), ["both"]),
        (lambda: sources_for(4, components=[1, 1]), ["listed twice"]),
        (lambda: parse_groups(["drums"]), ["NAME=INDICES"]),
        (lambda: parse_groups(["a=0", "a=1"]), ["given twice"]),
        (lambda: parse_components("0,x"), ["not a list of component indices"]),
        (lambda: parse_components("3-1"), ["empty range"]),
    ],
)
def test_bad_sources_are_refused(call, words: list[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DnmfUsageError) as exc:
        call()
    for word in words:
        assert word in str(exc.value)


def test_a_mel_model_cannot_separate(
    tmp_path_factory: pytest.TempPathFactory, cluster_client: object, tmp_path: Path
) -> None:
    mel = FeatureConfig(sr=SR, n_fft=1024, hop_length=256, features="mel", n_mels=32)
    model = build_model(tmp_path_factory.mktemp("mel"), cluster_client, features=mel)
    path, _, _ = mixture(tmp_path, SR, seconds=0.3)
    with pytest.raises(DnmfUsageError, match="mel features, and separation needs an STFT model"):
        separate(model, path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- CLI

runner = CliRunner()


def cli(*args: object):  # type: ignore[no-untyped-def]
    app = typer.Typer()
    app.command("separate")(separate_command)
    app.command("noop")(lambda: None)  # two commands, so the first argument names one
    return runner.invoke(app, ["separate", *(str(a) for a in args)])


def test_cli_json(model: Path, tmp_path: Path) -> None:
    path, _, _ = mixture(tmp_path, SR)
    out = tmp_path / "parts"
    result = cli(model, path, "-o", out, "--group", "a=1", "--alpha", "2", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["samplerate"] == SR and summary["alpha"] == 2.0
    assert [(o["name"], o["components"]) for o in summary["outputs"]] == [
        ("a", [1]),
        ("rest", [0]),
    ]
    assert [Path(o["path"]) for o in summary["outputs"]] == [
        out / f"mix{SR}_a.wav",
        out / f"mix{SR}_rest.wav",
    ]
    plain = cli(model, path, "-o", out, "--components", "0")
    assert plain.exit_code == 0 and f"mix{SR}_component0.wav" in plain.stdout


@pytest.mark.parametrize(
    "case, words",
    [
        ("out_of_range", ["component 7", "rank 2"]),
        ("malformed_group", ["--group 'drums'", "NAME=INDICES"]),
        ("bad_components", ["--components", "not a list"]),
        ("both", ["both given"]),
        ("undecodable", ["cannot be used", "not decodable"]),
        ("silent", ["cannot be used", "silent"]),
        ("not_a_model", ["corpus store, not a model store"]),
        ("alpha", ["--alpha 0.0"]),
        ("subtype", ["--subtype 'MP3'"]),
    ],
)
def test_cli_bad_input_exits_2(model: Path, tmp_path: Path, case: str, words: list[str]) -> None:
    path, _, _ = mixture(tmp_path, SR, seconds=0.3)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF but not really a wave file" * 8)
    silent = write(tmp_path / "silent.wav", np.zeros(3000, np.float32), SR)
    args: dict[str, list[object]] = {
        "out_of_range": [model, path, "--components", "0,7"],
        "malformed_group": [model, path, "--group", "drums"],
        "bad_components": [model, path, "--components", "0,x"],
        "both": [model, path, "--components", "0", "--group", "a=1"],
        "undecodable": [model, junk],
        "silent": [model, silent],
        "not_a_model": [model.parent / "corpus.zarr", path],
        "alpha": [model, path, "--alpha", "0"],
        "subtype": [model, path, "--subtype", "MP3"],
    }
    result = cli(*args[case], "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("dnmf: error:") == 1
    for word in words:
        assert word in result.output, result.output
    assert not (tmp_path / "out").exists()
