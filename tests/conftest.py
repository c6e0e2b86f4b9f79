"""Shared fixtures: synthesized audio files and one real Dask cluster for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def tone(
    sr: int, seconds: float, freq: float = 440.0, *, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """A sine plus a little noise, shape (n,) or (n, channels), float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    y = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    if channels == 1:
        return y.astype(np.float32)
    return np.stack([y * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def write(path: Path, y: np.ndarray, sr: int, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, **kwargs)  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="session")
def cluster_client() -> Iterator[object]:
    """A LocalCluster of two single-threaded worker processes on 127.0.0.1."""
    from dnmf.cluster import connect

    with connect(workers=2) as client:
        yield client


@pytest.fixture(scope="session")
def scheduler_address(cluster_client: object) -> str:
    return cluster_client.scheduler.address  # type: ignore[attr-defined]


@pytest.fixture
def mixed_corpus(tmp_path: Path) -> Path:
    """Files at several rates, channel counts and formats, in subfolders."""
    root = tmp_path / "corpus"
    write(root / "a.wav", tone(22050, 3.3, 440), 22050)
    write(root / "sub" / "b.flac", tone(44100, 7.1, 220, channels=2, seed=1), 44100)
    write(root / "c.wav", tone(48000, 2.0, 330, seed=2), 48000, subtype="FLOAT")
    write(root / "sub" / "deeper" / "d.ogg", tone(16000, 1.5, 550, seed=3), 16000)
    write(root / "e.aiff", tone(22050, 0.7, 660, channels=3, seed=4), 22050)
    (root / "notes.txt").write_text("not audio, and not scanned")
    return root


def solve(V: np.ndarray, W: np.ndarray, **kwargs: object) -> tuple[np.ndarray, float, int]:
    """The one H solver on a whole spectrogram, for a dictionary of any number of lags."""
    from dnmf.nmf.solver import solve_window

    W3 = W[:, :, None] if W.ndim == 2 else W
    V = np.ascontiguousarray(V)
    return solve_window(V, W3, start=0, stop=V.shape[1], **kwargs)  # type: ignore[arg-type]
