"""Feature settings and the block spectrogram that ingest and transform share.

A corpus store is one feature configuration applied to every file. The
configuration uses librosa's parameter names and is validated once, here, so
every command refuses a bad value with the same sentence.

The spectrogram of a file is computed block by block (:func:`block_frames`),
each block reading the STFT context it needs from its neighbours, so that the
frames equal those of one whole-file ``librosa.stft`` call to float32
rounding while memory stays bounded by the block.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dnmf.errors import DnmfUsageError, describe_validation_error

__all__ = [
    "FeatureConfig",
    "block_frames",
    "frequencies",
    "n_frames_for",
    "n_output_samples",
    "stft_magnitude",
]


class FeatureConfig(BaseModel):
    """How audio becomes the spectrogram ``V (n_bins, n_frames)``.

    Parameters follow librosa: ``sr``, ``n_fft``, ``hop_length``,
    ``win_length``, ``window``, ``center``, ``n_mels``, ``fmin``, ``fmax``,
    ``power``. Audio is decoded with soundfile, mixed down to mono
    (``librosa.to_mono``) and resampled with soxr (``res_type``), exactly as
    ``librosa.load(path, sr=sr)`` does.

    Examples
    --------
    >>> cfg = FeatureConfig(sr=16000, n_fft=1024)
    >>> cfg.n_bins
    513
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sr: int = Field(22050, gt=0, le=768000)
    n_fft: int = Field(2048, ge=16, le=2**16)
    hop_length: int = Field(512, gt=0)
    win_length: int | None = Field(None, gt=0)
    window: str = "hann"
    center: bool = True
    pad_mode: Literal["constant"] = "constant"
    features: Literal["stft", "mel"] = "stft"
    n_mels: int = Field(128, gt=0, le=2048)
    fmin: float = Field(0.0, ge=0.0)
    fmax: float | None = Field(None, gt=0.0)
    power: float = Field(1.0, gt=0.0)
    res_type: Literal["soxr_hq", "soxr_vhq", "soxr_mq", "soxr_lq", "soxr_qq"] = "soxr_hq"

    @model_validator(mode="after")
    def _check_consistent(self) -> FeatureConfig:
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(
                f"win_length={self.win_length} is larger than n_fft={self.n_fft}; "
                "pass a win_length of at most n_fft"
            )
        if self.hop_length > self.n_fft:
            raise ValueError(
                f"hop_length={self.hop_length} is larger than n_fft={self.n_fft}, "
                "so samples would be skipped; pass a hop_length of at most n_fft"
            )
        nyquist = self.sr / 2
        if self.fmax is not None and self.fmax > nyquist:
            raise ValueError(
                f"fmax={self.fmax} is above the Nyquist frequency {nyquist} of sr={self.sr}; "
                f"pass fmax <= {nyquist}"
            )
        return self

    @classmethod
    def from_options(cls, **options: Any) -> FeatureConfig:
        """Build a config from user values, turning a validation error into one sentence."""
        try:
            return cls(**{k: v for k, v in options.items() if v is not None})
        except ValidationError as exc:
            raise DnmfUsageError(describe_validation_error(exc)) from None

    def check_window(self) -> None:
        """Refuse a window scipy cannot build.

        Kept out of validation because scipy.signal is slow to import (a second
        on a busy machine), and skipped for the windows everyone uses.
        """
        if self.window in _KNOWN_WINDOWS:
            return
        import scipy.signal

        try:
            scipy.signal.get_window(self.window, 8)
        except (ValueError, TypeError):
            raise DnmfUsageError(
                f"window={self.window!r} is not a window scipy.signal.get_window knows; "
                "pass e.g. 'hann' or 'hamming'"
            ) from None

    @property
    def n_bins(self) -> int:
        """Number of rows of ``V``: ``1 + n_fft // 2`` for STFT, ``n_mels`` for mel."""
        return self.n_mels if self.features == "mel" else 1 + self.n_fft // 2

    def as_attrs(self) -> dict[str, Any]:
        """The config as the plain JSON dict stored in a store's attrs."""
        return self.model_dump(mode="json")

    def differences(self, other: FeatureConfig) -> list[str]:
        """Names of the settings in which ``other`` differs from this config."""
        mine, theirs = self.as_attrs(), other.as_attrs()
        return [k for k in mine if mine[k] != theirs.get(k)]


#: Window names scipy.signal.get_window takes as they are (no parameter).
_KNOWN_WINDOWS = frozenset(
    {"hann", "hamming", "blackman", "blackmanharris", "bartlett", "boxcar", "triang", "nuttall",
     "flattop", "parzen", "bohman", "barthann", "cosine", "lanczos", "tukey"}
)  # fmt: skip


def n_output_samples(n_samples: int, orig_sr: int, sr: int) -> int:
    """Length after resampling, as ``librosa.resample`` (``ceil(n * sr / orig_sr)``)."""
    if orig_sr == sr:
        return n_samples
    return -(-n_samples * sr // orig_sr)


def n_frames_for(n_samples: int, cfg: FeatureConfig) -> int:
    """Number of STFT frames librosa gives for ``n_samples`` samples at ``cfg.sr``."""
    if cfg.center:
        return 1 + n_samples // cfg.hop_length
    if n_samples < cfg.n_fft:
        return 0
    return 1 + (n_samples - cfg.n_fft) // cfg.hop_length


def frequencies(cfg: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each row of ``V`` (float64, shape ``(n_bins,)``)."""
    import librosa

    if cfg.features == "mel":
        fmax = cfg.fmax if cfg.fmax is not None else cfg.sr / 2
        centres = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=fmax)[1:-1]
        return np.asarray(centres, dtype=np.float64)
    return np.asarray(librosa.fft_frequencies(sr=cfg.sr, n_fft=cfg.n_fft), dtype=np.float64)


@lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(
        np.float32
    )


class SignalReader:
    """Reads any range of one file's mono signal at ``cfg.sr``, resampled as a whole.

    ``read(start, stop)`` returns the samples ``[start, stop)`` of
    ``librosa.resample(librosa.load(path, sr=None, mono=True)[0], ...)``
    without decoding the whole file: it decodes the matching input range plus a
    margin, aligned to the resampling period so that the polyphase grid is the
    whole file's, and keeps the middle. Indices outside the signal read as zeros.

    Parameters
    ----------
    decode : callable ``(start, stop) -> ndarray of shape (stop - start,)``
        Mono float32 samples ``[start, stop)`` at the original rate.
    n_samples : int
        Length of the file at its original rate.
    orig_sr : int
        The file's sample rate.
    cfg : FeatureConfig
    """

    #: Resampler context kept on each side, in seconds (soxr's filters are far shorter).
    MARGIN_SECONDS = 0.1

    def __init__(self, decode: Any, n_samples: int, orig_sr: int, cfg: FeatureConfig) -> None:
        self.decode = decode
        self.n_in = n_samples
        self.orig_sr = orig_sr
        self.cfg = cfg
        self.n_out = n_output_samples(n_samples, orig_sr, cfg.sr)
        g = math.gcd(orig_sr, cfg.sr)
        self._l_in, self._l_out = orig_sr // g, cfg.sr // g
        self._margin = math.ceil(self.MARGIN_SECONDS * orig_sr / self._l_in) * self._l_in

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)``, float32 (a read-only view of what was decoded or
        resampled when the range lies inside the signal: no copy)."""
        c0, c1 = max(start, 0), min(stop, self.n_out)
        if c1 <= c0:
            return np.zeros(stop - start, dtype=np.float32)
        if self.orig_sr == self.cfg.sr:
            y = self.decode(c0, c1)
            return _padded(y, c0 - start, stop - start) if (c0, c1) != (start, stop) else _frozen(y)
        import soxr

        l_in, l_out = self._l_in, self._l_out
        in_start = max(0, (c0 // l_out) * l_in - self._margin)
        in_stop = min(self.n_in, -(-c1 * l_in // l_out) + self._margin)
        y = soxr.resample(
            self.decode(in_start, in_stop), self.orig_sr, self.cfg.sr, quality=self.cfg.res_type
        )
        offset = in_start // l_in * l_out  # output index of y[0]; exact, in_start is aligned
        piece = y[c0 - offset : c1 - offset]
        # A short tail reads as zeros, as librosa.util.fix_length pads it.
        if (c0, c0 + len(piece)) == (start, stop):
            return _frozen(piece)
        return _padded(piece, c0 - start, stop - start)


def _frozen(y: np.ndarray) -> np.ndarray:
    view = y.view()
    view.flags.writeable = False
    return view


def _padded(y: np.ndarray, at: int, n: int) -> np.ndarray:
    """``y`` placed at ``at`` in ``n`` float32 zeros (a range that reaches past the signal)."""
    out = np.zeros(n, dtype=np.float32)
    out[at : at + len(y)] = y
    return out


def block_frames(
    reader: SignalReader, f0: int, f1: int, *, spectrum: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Frames ``[f0, f1)`` of the file behind ``reader``, as ``V`` stores them.

    Parameters
    ----------
    reader : SignalReader
    f0, f1 : int
        Frame range within the file.
    spectrum : ndarray of shape (1 + n_fft // 2,), float64, optional
        If given, the sum of ``|STFT|²`` per STFT bin (before any power or mel
        projection) over those of these frames whose window lies inside the signal
        is added to it: the long-term spectrum of a file, block by block
        (:func:`dnmf.audio.quality.bandwidth`). A frame that meets the padding
        sees the signal start or stop at once, a step whose energy spreads over
        every bin; in a short file those few frames would fill the empty band.
    out : ndarray of shape (n_bins, f1 - f0), float32, optional
        Where to write the frames (a column range of a chunk: rows may be strided).

    Returns
    -------
    S : ndarray of shape (n_bins, f1 - f0), float32
        ``|STFT|**power`` (or its mel projection), equal to the same frames of
        ``librosa.stft(y, center=cfg.center, ...)`` on the whole file; ``out`` if
        given, else C-ordered.
    """
    cfg = reader.cfg
    offset = cfg.n_fft // 2 if cfg.center else 0
    start = f0 * cfg.hop_length - offset
    stop = (f1 - 1) * cfg.hop_length - offset + cfg.n_fft
    y = reader.read(start, stop)
    mel = cfg.features == "mel"
    if out is None:
        out = np.empty((cfg.n_bins, f1 - f0), dtype=np.float32)
    # The magnitudes go straight into V (C order: a row per bin) for |STFT|; a mel
    # projection takes them in the order librosa gives (F), as it always has.
    S = np.empty((1 + cfg.n_fft // 2, f1 - f0), np.float32, order="F") if mel else out
    stft_magnitude(y, cfg, S)
    if spectrum is not None:
        inside = slice(
            max(0, -(-offset // cfg.hop_length) - f0),
            max(0, (reader.n_out - cfg.n_fft + offset) // cfg.hop_length + 1 - f0),
        )
        part = S[:, inside]
        spectrum += np.einsum("ij,ij->i", part, part)  # float32 sums: ample for a level in dB
    if cfg.power != 1.0:
        np.power(S, cfg.power, out=S)
    if mel:
        out[...] = _mel_basis(cfg.sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ S
    return out


#: Frames per FFT call of :func:`stft_magnitude` (their windowed copy, about 1 MB at
#: n_fft=2048, stays in cache between the product, the FFT and the magnitude).
STFT_BLOCK = 64


@lru_cache(maxsize=8)
def _fft_window(window: str, win_length: int | None, n_fft: int) -> np.ndarray:
    import librosa

    w = librosa.filters.get_window(window, win_length or n_fft, fftbins=True)
    return np.asarray(librosa.util.pad_center(w, size=n_fft), dtype=np.float64)


def stft_magnitude(y: np.ndarray, cfg: FeatureConfig, out: np.ndarray) -> None:
    """``|librosa.stft(y, center=False, ...)|`` of float32 ``y``, bitwise, written into ``out``.

    The same arithmetic as librosa's: each frame (float32) times the float64
    window, a float64 real FFT (``librosa``'s FFT library, scipy's by default),
    rounded to complex64, its magnitude in float32. What differs is the order:
    librosa transforms 31 frames at a time along the strided axis of an F-ordered
    complex matrix, and a caller then takes its magnitude and transposes it; here
    a block of frames, each a contiguous row, is transformed along its rows and
    its magnitude written at once into ``out`` (any layout, in V a row per bin).

    Parameters
    ----------
    y : ndarray of shape (n_samples,), float32
        At least ``n_fft`` samples; frame ``i`` is ``y[i hop : i hop + n_fft]``.
    cfg : FeatureConfig
    out : ndarray of shape (1 + n_fft // 2, n_frames), float32
        ``n_frames = 1 + (n_samples - n_fft) // hop_length``.
    """
    from librosa import get_fftlib

    fft = get_fftlib()
    n_fft, n = cfg.n_fft, out.shape[1]
    window = _fft_window(cfg.window, cfg.win_length, n_fft)
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[:: cfg.hop_length]
    assert frames.shape[0] == n, (frames.shape, out.shape)
    block = np.empty((min(STFT_BLOCK, n), n_fft), dtype=np.float64)
    for a in range(0, n, STFT_BLOCK):
        b = min(a + STFT_BLOCK, n)
        windowed = np.multiply(frames[a:b], window, out=block[: b - a])
        X = fft.rfft(windowed, axis=-1).astype(np.complex64)
        # Iterated in the order of ``out`` (along its rows), reading the small block
        # across: the other way round, a row stride that is a power of two (8192 frames
        # of float32) maps every row to the same cache sets and the writes miss.
        np.abs(X.T, out=out[:, a:b])
