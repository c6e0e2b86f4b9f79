"""What ingest records about a file's defects while it computes the features.

Two things a learner may want to leave out (``dnmf learn --mask-clipped``,
``--mask-above-bandwidth``, :mod:`dnmf.nmf.mask`), both found from what the
ingest sees anyway, so that no file is decoded twice:

* :func:`clipped_counts`: per frame, how many of the file's samples inside the
  frame's window are at full scale (:data:`dnmf.audio.decode.FULL_SCALE`, in any
  channel, at the file's own rate, before mixing down and resampling, which
  would smear a flat top into something that no longer reads as one);
* :func:`bandwidth`: the file's effective bandwidth in Hz, from its long-term
  power spectrum (the sum over its frames of ``|STFT|²`` per bin, which
  :func:`dnmf.audio.features.block_frames` adds up block by block).
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

__all__ = ["BANDWIDTH_DROP_DB", "bandwidth", "clipped_counts"]

#: A file is band-limited at bin k when every bin from k up is this far below the
#: median level of the bins under k. Natural spectra fall by some dB per octave, and
#: the median of the bins under k (linear in frequency) sits about an octave below
#: k, so a natural roll-off would have to fall 40 dB in an octave to read as a cut;
#: an MP3 encoder's low-pass or a resampler's anti-alias filter falls 60 dB and more
#: within a few hundred Hz.
BANDWIDTH_DROP_DB = 40.0


def clipped_counts(reader: Any, f0: int, f1: int) -> np.ndarray:
    """Per frame ``f0 ≤ f < f1`` of the file behind ``reader``, the samples at full scale.

    Parameters
    ----------
    reader : SignalReader
        Its decoder gives the positions at full scale (``full_scale(start, stop)``);
        after :func:`~dnmf.audio.features.block_frames` of the same frames, they
        come from what that call decoded.
    f0, f1 : int

    Returns
    -------
    counts : ndarray of shape (f1 - f0,), int32
        Samples of the file (at its own rate ``orig_sr``) whose time lies inside
        the frame's window ``[f hop - offset, f hop - offset + n_fft)`` of the
        output samples (``offset = n_fft // 2`` when centred).
    """
    cfg, orig = reader.cfg, reader.orig_sr
    n = f1 - f0
    offset = cfg.n_fft // 2 if cfg.center else 0
    first, end = f0 * cfg.hop_length - offset, (f1 - 1) * cfg.hop_length - offset + cfg.n_fft
    a = max(0, first * orig // cfg.sr)
    b = min(reader.n_in, -(-end * orig // cfg.sr))
    if b <= a or not hasattr(reader.decode, "full_scale"):
        return np.zeros(n, dtype=np.int32)
    pos = np.asarray(reader.decode.full_scale(a, b), dtype=np.int64)
    if not len(pos):
        return np.zeros(n, dtype=np.int32)
    # Sample p lies in frame f's window iff (f hop - offset) orig <= p sr < (f hop - offset +
    # n_fft) orig: exact integer bounds on f.
    q, step = pos * cfg.sr, cfg.hop_length * orig
    last = (q + offset * orig) // step
    lo = (q + (offset - cfg.n_fft) * orig) // step + 1
    lo, hi = np.clip(lo - f0, 0, n), np.clip(last - f0 + 1, 0, n)
    diff = np.bincount(lo, minlength=n + 1) - np.bincount(hi, minlength=n + 1)
    return np.cumsum(diff[:n]).astype(np.int32)


def bandwidth(power: np.ndarray, freqs: np.ndarray, orig_sr: int) -> float:
    """The effective bandwidth in Hz of a file whose long-term power spectrum is ``power``.

    The highest bin kept is the one below the lowest bin ``k`` from which every
    bin up to Nyquist is :data:`BANDWIDTH_DROP_DB` below the median level of the
    bins under ``k`` (``max L[k:] <= median L[:k] - 40 dB``, ``L`` in dB). The
    median, not the mean or the maximum, so that neither a loud low end nor a few
    tones decide; the maximum above ``k``, so that any content left above a
    candidate cut (a pilot tone, a whistle) keeps it: the estimate errs towards
    keeping bins. No such ``k``: the whole band. Never above the file's own Nyquist
    frequency ``orig_sr / 2`` (a file resampled up holds nothing above it).

    Parameters
    ----------
    power : ndarray of shape (n_bins,)
        Sum (or mean) over the file's frames of ``|STFT|²`` per bin.
    freqs : ndarray of shape (n_bins,)
        The bins' frequencies in Hz, increasing from 0 to Nyquist.
    orig_sr : int
        The file's sample rate (0: unknown).

    Examples
    --------
    >>> freqs = np.linspace(0, 11025, 1025)
    >>> power = np.where(freqs <= 4000, 1.0, 1e-9)
    >>> bandwidth(power, freqs, 22050) == freqs[freqs <= 4000][-1]
    True
    >>> bandwidth(np.ones(1025), freqs, 16000)
    8000.0
    """
    with np.errstate(divide="ignore"):
        level = 10.0 * np.log10(np.asarray(power, dtype=np.float64))
    level = np.where(np.isfinite(level), level, -400.0)  # digital zero, far below anything
    above = np.maximum.accumulate(level[::-1])[::-1]  # above[k] = max(level[k:])
    below: list[float] = []
    top = float(freqs[-1])
    for k in range(1, len(level)):
        bisect.insort(below, float(level[k - 1]))
        m = len(below)
        median = below[m // 2] if m % 2 else 0.5 * (below[m // 2 - 1] + below[m // 2])
        if above[k] <= median - BANDWIDTH_DROP_DB:
            top = float(freqs[k - 1])
            break
    return min(top, orig_sr / 2) if orig_sr > 0 else top
