"""The block spectrogram equals librosa on the whole file, whatever the block edges."""

from __future__ import annotations

import itertools
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from dnmf.audio.decode import decoder
from dnmf.audio.features import (
    FeatureConfig,
    SignalReader,
    block_frames,
    n_frames_for,
    n_output_samples,
)
from dnmf.errors import DnmfUsageError
from tests.conftest import tone, write


def reference(path: Path, cfg: FeatureConfig) -> np.ndarray:
    y, _ = librosa.load(path, sr=cfg.sr)
    S = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, center=cfg.center))
    S = S**cfg.power
    if cfg.features == "mel":
        S = librosa.feature.melspectrogram(
            S=S, sr=cfg.sr, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
        )
    return S


def reader_for(path: Path, cfg: FeatureConfig) -> SignalReader:
    info = sf.info(path)
    return SignalReader(decoder(path), info.frames, info.samplerate, cfg)


@pytest.mark.parametrize(
    ("sr", "channels", "subtype"),
    [
        (22050, 1, "PCM_16"),
        (44100, 2, "PCM_16"),
        (48000, 1, "FLOAT"),
        (16000, 3, "PCM_24"),
        (8000, 1, "PCM_16"),
    ],
)
def test_blocks_equal_whole_file_stft(tmp_path: Path, sr: int, channels: int, subtype: str) -> None:
    path = write(tmp_path / "x.wav", tone(sr, 4.05, 300, channels=channels), sr, subtype=subtype)
    cfg = FeatureConfig()
    S = reference(path, cfg)
    reader = reader_for(path, cfg)
    n = n_frames_for(reader.n_out, cfg)
    assert n == S.shape[1]
    rng = np.random.default_rng(sr)
    edges = np.unique(np.r_[0, rng.integers(1, n, 6), n])
    blocks = [block_frames(reader, a, b) for a, b in itertools.pairwise(edges)]
    V = np.concatenate(blocks, axis=1)
    assert V.dtype == np.float32
    np.testing.assert_allclose(V, S, rtol=1e-4, atol=1e-4 * S.max())


def test_signal_reader_matches_librosa_resample(tmp_path: Path) -> None:
    path = write(tmp_path / "x.flac", tone(44100, 3.0, 1000, channels=2), 44100)
    cfg = FeatureConfig(sr=22050)
    y, _ = librosa.load(path, sr=cfg.sr)
    reader = reader_for(path, cfg)
    assert reader.n_out == len(y) == n_output_samples(sf.info(path).frames, 44100, 22050)
    for a, b in [(-100, 50), (0, 1000), (12345, 23456), (len(y) - 40, len(y) + 300)]:
        got = reader.read(a, b)
        want = np.zeros(b - a, np.float32)
        lo, hi = max(a, 0), min(b, len(y))
        want[lo - a : hi - a] = y[lo:hi]
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_mel_and_power(tmp_path: Path) -> None:
    path = write(tmp_path / "x.wav", tone(22050, 2.0, 500), 22050)
    cfg = FeatureConfig(features="mel", n_mels=40, power=2.0, n_fft=1024, hop_length=256)
    S = reference(path, cfg)
    reader = reader_for(path, cfg)
    V = np.concatenate([block_frames(reader, 0, 50), block_frames(reader, 50, S.shape[1])], axis=1)
    assert V.shape == (40, S.shape[1]) == (cfg.n_bins, S.shape[1])
    np.testing.assert_allclose(V, S, rtol=1e-4, atol=1e-4 * S.max())


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"sr": 0}, "sr=0"),
        ({"n_fft": 4}, "n_fft=4"),
        ({"hop_length": 4096}, "hop_length=4096"),
        ({"features": "cqt"}, "features='cqt'"),
        ({"power": -1.0}, "power=-1.0"),
        ({"fmax": 20000.0, "sr": 16000}, "fmax=20000.0"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_settings_name_the_value(options: dict, named: str) -> None:
    with pytest.raises(DnmfUsageError, match=named.replace("(", r"\(")) as info:
        FeatureConfig.from_options(**options)
    assert "\n" not in str(info.value)


def test_bad_window_is_refused() -> None:
    with pytest.raises(DnmfUsageError, match="window='nope'"):
        FeatureConfig(window="nope").check_window()


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_mono_mixdown_is_bitwise_librosa(channels: int) -> None:
    from dnmf.audio.decode import to_mono

    y = np.random.default_rng(channels).standard_normal((4099, channels)).astype(np.float32)
    want = librosa.to_mono(np.ascontiguousarray(y.T)) if channels > 1 else y[:, 0]
    assert to_mono(y).tobytes() == want.tobytes()
