"""A small synthetic corpus for the quick start and the tests.

Each piece is a sequence of notes with harmonic spectra and decaying
envelopes, plus noise bursts as drums, written with soundfile at several
sample rates, channel counts and formats, so a demo exercises decoding,
resampling and mixdown like a real folder of recordings.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["make_corpus", "synth_piece"]

#: MIDI pitches the pieces draw their notes from (a C major scale).
PITCHES = (60, 62, 64, 65, 67, 69, 71, 72)


def synth_piece(
    seconds: float, sr: int, *, seed: int, pitches: tuple[int, ...] = PITCHES
) -> np.ndarray:
    """A mono piece of ``seconds`` at ``sr``: harmonic notes and noise drums (float32, |y| < 1).

    Examples
    --------
    >>> y = synth_piece(2.0, 22050, seed=0)
    >>> y.shape, y.dtype
    ((44100,), dtype('float32'))
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    y = np.zeros(n, dtype=np.float64)
    t = 0.0
    while t < seconds:
        dur = float(rng.choice([0.25, 0.5, 0.75]))
        start = int(t * sr)
        length = min(int(dur * sr), n - start)
        if length <= 0:
            break
        tt = np.arange(length) / sr
        f0 = 440.0 * 2 ** ((int(rng.choice(pitches)) - 69) / 12)
        env = np.exp(-3.0 * tt) * np.minimum(1.0, tt / 0.01)
        note = sum(
            (0.6**h) * np.sin(2 * np.pi * f0 * (h + 1) * tt)
            for h in range(8)
            if f0 * (h + 1) < sr / 2
        )
        y[start : start + length] += 0.25 * env * note
        if rng.random() < 0.5:  # a drum hit
            hit = min(int(0.08 * sr), n - start)
            y[start : start + hit] += 0.2 * rng.standard_normal(hit) * np.exp(-40 * tt[:hit])
        t += dur
    y += 1e-3 * rng.standard_normal(n)  # room noise: no silent frames
    return (0.9 * y / max(1.0, np.abs(y).max())).astype(np.float32)


def make_corpus(
    folder: str | os.PathLike[str], *, n_files: int = 6, seconds: float = 20.0, seed: int = 0
) -> list[Path]:
    """Write ``n_files`` synthetic pieces into ``folder`` (in subfolders) and return their paths."""
    import soundfile as sf

    formats = [
        ("wav", 22050, 1, "PCM_16"),
        ("flac", 44100, 2, "PCM_16"),
        ("wav", 48000, 1, "FLOAT"),
        ("flac", 16000, 1, "PCM_24"),
    ]
    root = Path(folder)
    paths = []
    for i in range(n_files):
        ext, sr, channels, subtype = formats[i % len(formats)]
        y = synth_piece(seconds * (0.75 + 0.5 * ((i * 7) % 5) / 4), sr, seed=seed + i)
        data = np.stack([y, 0.8 * y], axis=1) if channels == 2 else y
        path = root / f"set{i % 2}" / f"piece{i:02d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, sr, subtype=subtype)
        paths.append(path)
    return paths
