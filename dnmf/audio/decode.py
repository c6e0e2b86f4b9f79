"""Finding, probing and decoding audio files.

Everything here reads one file with soundfile (libsndfile) in bounded blocks,
so a three-hour recording never sits in memory whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnmf.errors import DnmfPathError, DnmfUsageError

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioFile",
    "Probe",
    "content_hash",
    "decoder",
    "probe",
    "scan",
    "to_mono",
]

#: File extensions the installed libsndfile decodes (mp3 needs libsndfile >= 1.1).
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
        ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64", ".voc", ".wv",
    }
)  # fmt: skip

#: Samples decoded per read while probing (about 1.5 MB of float32 stereo).
BLOCK = 1 << 18

_TRUNCATED_HEADER = re.compile(r"^(data|SSND)\s*:.*should be", re.MULTILINE)


@dataclass(frozen=True)
class AudioFile:
    """A file found by :func:`scan`: its path relative to the corpus and its stat."""

    path: str
    size: int
    mtime_ns: int


def scan(root: str | os.PathLike[str]) -> list[AudioFile]:
    """Every audio file under ``root``, recursively, sorted by relative POSIX path.

    Hidden files and folders (``.name``, such as macOS ``._x.wav`` forks) and
    dnmf's own output folders (``*.dnmf``, ``*.zarr``) are left out.

    Raises
    ------
    DnmfPathError
        If ``root`` does not exist or is not a folder.
    """
    base = Path(root)
    if not base.exists():
        raise DnmfPathError(f"corpus folder {str(root)!r} does not exist; pass a folder of audio")
    if not base.is_dir():
        raise DnmfPathError(f"{str(root)!r} is not a folder; pass a folder of audio files")
    found: list[AudioFile] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and not d.endswith((".dnmf", ".zarr"))
        ]
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            full = Path(dirpath, name)
            st = full.stat()
            found.append(AudioFile(full.relative_to(base).as_posix(), st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: f.path)
    return found


def content_hash(path: str | os.PathLike[str]) -> str:
    """BLAKE2b-128 hex digest of the file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Probe:
    """What a full decode of one file found; ``error`` is empty when it is usable."""

    content_hash: str
    n_samples: int
    samplerate: int
    channels: int
    error: str = ""

    @property
    def duration(self) -> float:
        return self.n_samples / self.samplerate if self.samplerate else 0.0


def probe(path: str | os.PathLike[str]) -> Probe:
    """Decode ``path`` once, in blocks, and say whether it can be ingested.

    A file is refused (``Probe.error`` set) when it is empty, not audio,
    undecodable, truncated, holds no samples, holds NaN or infinite samples,
    or is silent. Never raises for a bad file: the error is the result.
    """
    import soundfile as sf

    digest = content_hash(path)
    if os.path.getsize(path) == 0:
        return Probe(digest, 0, 0, 0, "empty file (0 bytes)")
    try:
        info = sf.info(str(path), verbose=True)
    except Exception as exc:
        return Probe(digest, 0, 0, 0, f"not decodable audio: {_reason(exc)}")
    sr, channels = int(info.samplerate), int(info.channels)
    log = info.extra_info or ""
    if _TRUNCATED_HEADER.search(log) or "lacks an end-of-stream" in log:
        error = "truncated: the header promises more audio than the file holds"
        return Probe(digest, 0, sr, channels, error)
    n, peak, finite = 0, 0.0, True
    try:
        with sf.SoundFile(str(path)) as fh:
            while True:
                block = fh.read(BLOCK, dtype="float32", always_2d=True)
                if not len(block):
                    break
                n += len(block)
                top = float(max(block.max(), -block.min()))  # NaN and inf propagate
                if not np.isfinite(top):
                    finite = False
                    break
                peak = max(peak, top)
    except Exception as exc:
        return Probe(digest, 0, sr, channels, f"decoding failed after {n} samples: {_reason(exc)}")
    declared = int(info.frames)
    tolerance = 2 * 1152 if info.format == "MP3" else 0
    if n == 0:
        return Probe(digest, 0, sr, channels, "no audio samples (zero-length)")
    if not finite:
        return Probe(digest, 0, sr, channels, "holds NaN or infinite samples")
    if 0 < declared and n < declared - tolerance:
        error = f"truncated: the header declares {declared} samples, only {n} decode"
        return Probe(digest, 0, sr, channels, error)
    if peak == 0.0:
        return Probe(digest, 0, sr, channels, "silent: every sample is zero")
    return Probe(digest, n, sr, channels)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.replace("Error opening ", "").strip()


def decoder(path: str | os.PathLike[str]):  # type: ignore[no-untyped-def]
    """A function ``(start, stop) -> mono float32 samples [start, stop)`` of ``path``.

    Mono mixdown is the channel mean, as ``librosa.to_mono``. The function
    opens the file per call, so it can be shipped to another process.
    """
    import soundfile as sf

    quiet = _mpg123_quiet if Path(path).suffix.lower() == ".mp3" else contextlib.nullcontext

    def decode(start: int, stop: int) -> np.ndarray:
        with quiet(), sf.SoundFile(str(path)) as fh:
            fh.seek(start)
            y = fh.read(stop - start, dtype="float32", always_2d=True)
        if len(y) != stop - start:
            raise DnmfUsageError(
                f"{str(path)!r} changed while being ingested: samples {start}..{stop} read "
                f"{len(y)}; re-run dnmf ingest"
            )
        return to_mono(y)

    return decode


#: What libmpg123 (inside libsndfile) prints on stderr after a seek into an MP3, where
#: the first frame's bit reservoir lies before the seek point; the decode goes on.
_MPG123_LINE = re.compile(rb"^\[src/libmpg123/[^\]]*\] (error|warning|note): ")
_stderr_lock = threading.Lock()
_stderr_users = 0
_stderr_saved: int | None = None
_stderr_capture: Any = None


@contextlib.contextmanager
def _mpg123_quiet() -> Iterator[None]:
    """Drop libmpg123's own stderr lines (C code, so below ``sys.stderr``) while decoding.

    File descriptor 2 points at a temporary file while any thread decodes an MP3;
    when the last one is done, it is restored and whatever else was written
    meanwhile (a worker's log lines) is passed on, only libmpg123's lines dropped.
    """
    global _stderr_users, _stderr_saved, _stderr_capture
    with _stderr_lock:
        if _stderr_users == 0:
            try:
                sys.stderr.flush()
                capture = tempfile.TemporaryFile()
                saved = os.dup(2)
                os.dup2(capture.fileno(), 2)
                _stderr_saved, _stderr_capture = saved, capture
            except OSError:  # no fd 2 to redirect: decode as it is
                _stderr_saved = None
        _stderr_users += 1
    try:
        yield
    finally:
        with _stderr_lock:
            _stderr_users -= 1
            if _stderr_users == 0 and _stderr_saved is not None:
                os.dup2(_stderr_saved, 2)
                os.close(_stderr_saved)
                _stderr_capture.seek(0)
                lines = _stderr_capture.read().splitlines(keepends=True)
                _stderr_capture.close()
                _stderr_saved = _stderr_capture = None
                kept = b"".join(line for line in lines if not _MPG123_LINE.match(line))
                if kept:
                    os.write(2, kept)


def to_mono(y: np.ndarray) -> np.ndarray:
    """Channel mean of ``y (n, channels)``, bitwise equal to ``librosa.to_mono(y.T)``.

    numpy sums a strided axis in order and then divides; doing the same by
    columns avoids a slow strided reduction.
    """
    if y.shape[1] == 1:
        return y[:, 0].copy()
    acc = y[:, 0] + y[:, 1]
    for c in range(2, y.shape[1]):
        acc += y[:, c]
    acc /= np.float32(y.shape[1])
    return acc
