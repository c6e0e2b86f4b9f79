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
    "FULL_SCALE",
    "SILENT",
    "AudioFile",
    "BadAudio",
    "Decoder",
    "Probe",
    "content_hash",
    "decoder",
    "probe",
    "probe_header",
    "same_content",
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

#: Samples decoded per read while probing or skipping (about 1.5 MB of float32 stereo).
BLOCK = 1 << 18

#: A sample at or above this magnitude, in any channel, is at full scale (clipped).
#: Integer PCM decodes to at most (2**(b-1) - 1) / 2**(b-1) on the positive side
#: (0.99997 for 16 bits), so 1.0 itself would miss every clipped positive peak; 0.999
#: (-0.009 dBFS, 33 codes of 16-bit PCM below the top) keeps a clipped stretch whose
#: values a codec or dither moved by a few codes, and stays above a master normalised
#: to -0.1 dBFS (0.989). 8-bit PCM tops out at 0.992 and never counts.
FULL_SCALE = 0.999

_NO_SAMPLES = np.zeros(0, dtype=np.int64)

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


#: The kind of content hash a new record holds, written before its hex digest.
#: XXH3-128 (xxhash) hashes at about 10 GB/s where BLAKE2b did at 0.74 GB/s (on the
#: benchmark machine): 0.63 s of a one-worker ingest of the benchmark's two hours. A
#: recorded hash of hex digits alone is the BLAKE2b-128 of an older dnmf.
HASH_KIND = "xxh3-128"
_BLAKE2B = "blake2b-128"


def content_hash(path: str | os.PathLike[str], kind: str = HASH_KIND) -> str:
    """The hash of the file's bytes: ``"xxh3-128:<hex>"``; with ``kind="blake2b-128"``,
    an older dnmf's BLAKE2b-128 hex digest (no prefix)."""
    if kind == HASH_KIND:
        import xxhash

        h: Any = xxhash.xxh3_128()
    else:
        h = hashlib.blake2b(digest_size=16)
    buf = bytearray(1 << 22)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return f"{kind}:{h.hexdigest()}" if kind == HASH_KIND else h.hexdigest()


def same_content(path: str | os.PathLike[str], recorded: str) -> bool:
    """Whether the file's bytes hash to ``recorded``, by the kind of hash it is."""
    kind = HASH_KIND if recorded.startswith(f"{HASH_KIND}:") else _BLAKE2B
    return content_hash(path, kind) == recorded


@dataclass(frozen=True)
class Probe:
    """What a probe of one file found; ``error`` is empty when it is usable."""

    content_hash: str
    n_samples: int
    samplerate: int
    channels: int
    error: str = ""

    @property
    def duration(self) -> float:
        return self.n_samples / self.samplerate if self.samplerate else 0.0


def probe_header(path: str | os.PathLike[str]) -> Probe:
    """Hash ``path`` and read its header; no sample is decoded.

    A file is refused (``Probe.error`` set) when it is empty, not audio, has
    a header that promises more bytes than the file holds, or declares no
    samples. What only decoding can show (a decode error, truncation past
    the header, NaN or infinite samples, silence) is found by the
    :class:`Decoder` that reads the samples. Never raises for a bad file.
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
    n = int(info.frames)
    if not 0 < n < 2**62:
        return Probe(digest, 0, sr, channels, "no audio samples (zero-length)")
    return Probe(digest, n, sr, channels)


def probe(path: str | os.PathLike[str]) -> Probe:
    """Decode ``path`` once, in blocks, and say whether it can be used.

    :func:`probe_header`, then every sample through a :class:`Decoder`: a
    decode error, truncation, NaN or infinite samples or silence set
    ``Probe.error``. Never raises for a bad file: the error is the result.
    """
    head = probe_header(path)
    if head.error:
        return head
    dec = Decoder(path, head.n_samples)
    error = ""
    try:
        for a in range(0, head.n_samples, BLOCK):
            dec(a, min(a + BLOCK, head.n_samples))
    except BadAudio as exc:
        error = str(exc)
    finally:
        dec.close()
    error = error or ("" if dec.peak > 0 else SILENT)
    if error:
        return Probe(head.content_hash, 0, head.samplerate, head.channels, error)
    return head


#: The error text of a file whose every sample is zero.
SILENT = "silent: every sample is zero"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.replace("Error opening ", "").strip()


class BadAudio(DnmfUsageError):
    """A file found unusable while it was decoded; the message is its ``error`` text."""


def decoder(path: str | os.PathLike[str], n_samples: int | None = None) -> Decoder:
    """A :class:`Decoder` of ``path``: ``decoder(path)(start, stop)`` is mono samples."""
    return Decoder(path, n_samples)


class Decoder:
    """Mono float32 samples ``[start, stop)`` of one file, read in increasing order.

    ``decode(start, stop)`` returns the channel mean (as ``librosa.to_mono``).
    The file stays open between calls and reads go forward: a range that
    overlaps the previous one takes the overlap from it and decodes only what
    is new. A format whose seeks are exact (PCM, FLAC, Ogg) seeks forward
    over a gap; an MP3 is decoded from its start and never seeked, since
    libmpg123's seeks land on samples that are off (by up to 0.30 on a
    0.3-amplitude sine). Going backwards reopens the file.

    Every sample decoded is checked: a NaN or infinite sample, a decode error
    or fewer samples than ``n_samples`` (the header's count) raise
    :class:`BadAudio`; :attr:`peak` is the largest magnitude seen, so a caller
    that has read the whole file can tell it silent, and :attr:`decoded` the
    samples decoded. :meth:`full_scale` gives the positions of the samples of the
    last range returned that are at :data:`FULL_SCALE` in any channel (before the
    channels are mixed down: a clipped channel is clipped whatever the others do).
    The object pickles without its open file.
    """

    #: MP3 frame counts in headers are estimates; this many missing samples are padding.
    MP3_TOLERANCE = 2 * 1152

    def __init__(self, path: str | os.PathLike[str], n_samples: int | None = None) -> None:
        self.path = str(path)
        self.n_samples = n_samples
        self.sequential = Path(path).suffix.lower() == ".mp3"
        self.peak = 0.0
        self.decoded = 0  # samples decoded so far, each counted as often as it was read
        self._fh: Any = None
        self._pos = 0  # the file's read position
        # The last range returned: its first sample, its samples, where they are at full scale.
        self._last: tuple[int, np.ndarray, np.ndarray] = (0, np.zeros(0, np.float32), _NO_SAMPLES)

    def __getstate__(self) -> dict[str, Any]:
        empty = (0, np.zeros(0, np.float32), _NO_SAMPLES)
        return {**self.__dict__, "_fh": None, "_pos": 0, "_last": empty}

    def __call__(self, start: int, stop: int) -> np.ndarray:
        a, kept, kept_hot = self._last
        first = start
        if a <= start < a + len(kept):
            head = kept[start - a : stop - a]
            start += len(head)
        else:
            head = kept[:0]
        hot = kept_hot[(kept_hot >= first) & (kept_hot < start)]
        with self._quiet():
            if start < stop:
                self._move_to(start)
                tail, tail_hot = self._read(stop - start)
                hot = np.concatenate([hot, tail_hot]) if len(hot) else tail_hot
            else:
                tail = kept[:0]
        y = np.concatenate([head, tail]) if len(head) else tail
        self._last = (stop - len(y), y, hot)
        return y

    def full_scale(self, start: int, stop: int) -> np.ndarray:
        """Sorted positions in ``[start, stop)`` of the samples at :data:`FULL_SCALE` in any
        channel; the range is decoded first unless the last call returned it."""
        a, kept, hot = self._last
        if not (a <= start and stop <= a + len(kept)):
            self(start, stop)
            a, kept, hot = self._last
        return hot[(hot >= start) & (hot < stop)]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _quiet(self) -> contextlib.AbstractContextManager[None]:
        return _mpg123_quiet() if self.sequential else contextlib.nullcontext()

    def _move_to(self, start: int) -> None:
        import soundfile as sf

        if self._fh is None or start < self._pos:
            self.close()
            self._fh, self._pos = sf.SoundFile(self.path), 0
        if start == self._pos:
            return
        if not self.sequential:
            self._guard(lambda: self._fh.seek(start))
            self._pos = start
            return
        while self._pos < start:  # an MP3: decode up to the start and drop it
            before = self._pos
            self._read(min(BLOCK, start - self._pos))
            if self._pos == before:  # its end, inside the header's estimate: padding follows
                break

    def _read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` samples, mixed down, and the positions of those at full scale."""
        y = self._guard(lambda: self._fh.read(n, dtype="float32", always_2d=True))
        pos = self._pos
        self._pos += len(y)
        self.decoded += len(y)
        if len(y) < n:
            y = self._short(y, n, pos)
        top = float(max(y.max(), -y.min())) if len(y) else 0.0  # NaN and inf propagate
        if not np.isfinite(top):
            raise BadAudio("holds NaN or infinite samples")
        self.peak = max(self.peak, top)
        hot = _NO_SAMPLES
        if top >= FULL_SCALE:  # only a read that reaches full scale pays for the positions
            hot = pos + np.flatnonzero(np.abs(y).max(axis=1) >= FULL_SCALE).astype(np.int64)
        return to_mono(y), hot

    def _short(self, y: np.ndarray, n: int, pos: int) -> np.ndarray:
        """A read that ended early: padding of an MP3's estimated length, else truncation."""
        end = pos + len(y)
        declared = self.n_samples
        if declared is None:
            declared = int(self._fh.frames)
        slack = self.MP3_TOLERANCE if self.sequential else 0
        if end < declared - slack:
            raise BadAudio(f"truncated: the header declares {declared} samples, only {end} decode")
        pad = np.zeros((n - len(y), y.shape[1]), dtype=np.float32)
        return np.concatenate([y, pad])

    def _guard(self, op: Any) -> Any:
        try:
            return op()
        except BadAudio:
            raise
        except Exception as exc:
            raise BadAudio(f"decoding failed after {self._pos} samples: {_reason(exc)}") from None


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
        return y[:, 0]  # a contiguous view of a C-ordered (n, 1) array
    acc = y[:, 0] + y[:, 1]
    for c in range(2, y.shape[1]):
        acc += y[:, c]
    acc /= np.float32(y.shape[1])
    return acc
