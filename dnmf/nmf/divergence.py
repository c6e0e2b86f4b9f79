"""The β-divergences, their names, the update exponent and the input check: pure NumPy.

The numbers here are scikit-learn's (``sklearn/decomposition/_nmf.py``):
:data:`EPSILON` floors ``Λ`` before a negative power or a division and decides
which entries of V count in the loss (``V > EPSILON``; the others are zeros of
V, where ``0 ** (β - 1)`` is taken as 0), so zeros in V never give NaN or inf.
Losses are accumulated in float64. The multiplicative updates that use them
are in :mod:`dnmf.nmf.kernels`.

Examples
--------
>>> import numpy as np
>>> V = np.array([[1.0, 2.0], [0.0, 4.0]])
>>> beta_divergence(V, np.array([[1.0], [2.0]]), np.array([[1.0, 2.0]]), "frobenius")
2.0
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from dnmf.errors import DnmfUsageError, InvalidDataError

__all__ = [
    "EPSILON",
    "beta_divergence",
    "beta_name_to_float",
    "check_nonnegative",
    "dot64",
    "gamma",
    "update_exponent",
]

FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]
BetaLike: TypeAlias = str | float

#: The floor of every division and negative power, exactly scikit-learn's
#: ``EPSILON`` in ``_nmf.py``: ``np.finfo(np.float32).eps`` (about 1.19e-7), for
#: float32 and float64 data alike. ``V > EPSILON`` marks the entries of V that
#: count in the loss; the others are treated as zeros, so they never give NaN.
EPSILON: float = float(np.finfo(np.float32).eps)

#: Elements per block when a float32 array is accumulated in float64.
_BLOCK = 1 << 16

_BETA_NAMES: dict[str, float] = {
    "itakura-saito": 0.0,
    "kullback-leibler": 1.0,
    "frobenius": 2.0,
    "euclidean": 2.0,
}


# --------------------------------------------------------------------------- β and γ


def beta_name_to_float(beta: BetaLike) -> float:
    """Turn a beta-divergence name or number into its β.

    Parameters
    ----------
    beta : str or float
        ``'itakura-saito'`` (0), ``'kullback-leibler'`` (1), ``'frobenius'`` or
        ``'euclidean'`` (2), or a number from -2 to 5 (a numeric string is read
        as one), as scikit-learn's ``beta_loss``.

    Returns
    -------
    float
        β.

    Raises
    ------
    DnmfUsageError
        If `beta` is neither a known name nor a number in [-2, 5]. Outside it
        the float32 powers of the updates overflow: ``Λ^(β-2)`` with ``Λ``
        floored at ``EPSILON`` (1.2e-7) is inf from β ≈ -3.5 (the statistics
        were inf at β = -3 on power spectra of 1e6), and ``Λ^β`` for power
        spectra of 1e6 is inf from β ≈ 6.4 (β = 7 overflowed).

    Examples
    --------
    >>> beta_name_to_float("kullback-leibler"), beta_name_to_float(1.5)
    (1.0, 1.5)
    """
    value: float | None = None
    if isinstance(beta, str):
        key = beta.strip().lower()
        if key in _BETA_NAMES:
            return _BETA_NAMES[key]
        try:
            value = float(key)
        except ValueError:
            value = None
    elif isinstance(beta, int | float | np.integer | np.floating) and not isinstance(
        beta, bool | np.bool_
    ):
        value = float(beta)
    if value is None or not math.isfinite(value):
        raise DnmfUsageError(
            f"beta={beta!r} is not a beta-divergence; use 'itakura-saito' (0), "
            "'kullback-leibler' (1), 'frobenius' or 'euclidean' (2), or a number from -2 to 5"
        )
    lowest, highest = -2.0, 5.0  # the float32 powers of Λ stay finite (see Raises)
    if not lowest <= value <= highest:
        raise DnmfUsageError(
            f"beta={value:g} is outside [{lowest:g}, {highest:g}], where the updates' float32 "
            f"powers of the model spectrogram (Λ^(β-2), Λ^β) would overflow to inf; pass a "
            f"beta from {lowest:g} to {highest:g}"
        )
    return value


def gamma(beta: float) -> float:
    """The exponent of the multiplicative update that keeps the loss monotone.

    Nakano et al. (2010), Févotte & Idier (2011): ``1 / (2 - β)`` for ``β < 1``,
    1 for ``1 <= β <= 2`` and ``1 / (β - 1)`` for ``β > 2``.

    Parameters
    ----------
    beta : float
        β of the divergence.

    Returns
    -------
    float
        γ, in ``(0, 1]``.

    Examples
    --------
    >>> gamma(0.0), gamma(1.5), gamma(3.0)
    (0.5, 1.0, 0.5)
    """
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def update_exponent(beta: float, given: float | None) -> float:
    """``given``, or :func:`gamma` of β when None."""
    return gamma(beta) if given is None else float(given)


# --------------------------------------------------------------------------- loss


def _row_step(a: np.ndarray) -> int:
    """Rows of 2-D `a` per block of about ``_BLOCK`` elements."""
    return max(1, _BLOCK // max(1, a.shape[1]))


def dot64(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` of two 2-D arrays, accumulated in float64 without a full copy."""
    if a.dtype == np.float64 and b.dtype == np.float64:
        return float(np.vdot(a, b))
    step = _row_step(a)
    total = 0.0
    for i in range(0, a.shape[0], step):
        total += float(np.vdot(a[i : i + step].astype(np.float64), b[i : i + step]))
    return total


def beta_divergence(
    V: FloatArray,
    W: FloatArray,
    H: FloatArray,
    beta: BetaLike,
    *,
    WH: FloatArray | None = None,
) -> float:
    """The beta-divergence ``d(V | W @ H)`` summed over all entries.

    The same number as scikit-learn's ``_beta_divergence(V.T, H.T, W.T, beta)``
    (``square_root=False``), computed and accumulated in float64: half the
    squared Frobenius norm for β = 2; for other β, only entries with
    ``V > EPSILON`` enter the data terms and ``W @ H`` is floored at
    :data:`EPSILON` there; the sum of ``(W @ H) ** β`` (β ∉ {0, 1, 2}) and
    the Itakura-Saito constant ``-V.size`` run over all entries.

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
        Spectrogram, nonnegative.
    W : ndarray of shape (n_bins, n_components)
        Dictionary.
    H : ndarray of shape (n_components, n_frames)
        Activations.
    beta : str or float
        β, or its name (see :func:`beta_name_to_float`).
    WH : ndarray of shape (n_bins, n_frames), optional
        ``W @ H`` if the caller has it already.

    Returns
    -------
    float
        The divergence (not normalised by the number of entries).

    Examples
    --------
    >>> import numpy as np
    >>> V = np.array([[1.0, 2.0], [0.0, 4.0]])
    >>> W = np.array([[1.0], [2.0]])
    >>> H = np.array([[1.0, 2.0]])
    >>> beta_divergence(V, W, H, "frobenius")
    2.0
    """
    beta = beta_name_to_float(beta)
    if WH is None:
        WH = W @ H
    total = 0.0
    sum_wh_beta = 0.0
    step = _row_step(V)
    for i in range(0, V.shape[0], step):
        v = np.asarray(V[i : i + step], dtype=np.float64)
        wh = np.asarray(WH[i : i + step], dtype=np.float64)
        if beta == 2:
            d = (v - wh).ravel()
            total += float(d @ d)
            continue
        if beta not in (0.0, 1.0):
            sum_wh_beta += float(np.sum(wh**beta))
        keep = v > EPSILON
        x = v[keep]
        y = np.maximum(wh[keep], EPSILON)
        if beta == 1:
            total += float(x @ np.log(x / y)) - float(x.sum())
        elif beta == 0:
            div = x / y
            total += float(div.sum()) - float(np.log(div).sum())
        else:
            total += float(np.sum(x**beta)) - beta * float(x @ y ** (beta - 1))
    if beta == 2:
        return total / 2.0
    if beta == 1:
        return total + float(W.sum(axis=0, dtype=np.float64) @ H.sum(axis=1, dtype=np.float64))
    if beta == 0:
        return total - float(V.size)
    return (total + (beta - 1) * sum_wh_beta) / (beta * (beta - 1))


# --------------------------------------------------------------------------- input check


def check_nonnegative(V: FloatArray, *, where: str = "V", frame_offset: int = 0) -> None:
    """Raise if V holds a NaN, an infinite or a negative value.

    The common case costs two reductions (``V.min()`` and ``V.max()``) and no
    temporary; only a bad block is searched for the first offending entry (in
    C order: bin by bin).

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
        Block to check.
    where : str, default='V'
        How the message names the block: ``'V'`` gives ``"V has a negative
        value (-0.5) at bin 3, frame 17; ..."``; the part after a first
        ``' of '`` goes after the position, so ``'V of chunk 2'`` gives ``"V has
        a negative value (-0.5) at bin 3, frame 17 of chunk 2; ..."``.
    frame_offset : int, default=0
        Added to the frame index in the message (the chunk's first frame, to
        name frames of the whole corpus).

    Raises
    ------
    InvalidDataError
        Naming the first bad entry, its value and the fix.

    Examples
    --------
    >>> import numpy as np
    >>> V = np.ones((4, 20), dtype=np.float32)
    >>> V[3, 17] = -0.5
    >>> check_nonnegative(V, where="V of chunk 2")
    Traceback (most recent call last):
    ...
    dnmf.errors.InvalidDataError: V has a negative value (-0.5) at bin 3, frame 17 of chunk 2; \
NMF needs nonnegative finite input
    """
    V = np.asarray(V)
    if V.size == 0:
        return
    if V.min() >= 0 and V.max() < np.inf:  # NaN fails the first test, +inf the second
        return
    bad = ~(V >= 0)
    bad |= np.isinf(V)
    pos = np.unravel_index(int(np.argmax(bad)), V.shape)
    value = V[pos]
    if np.isnan(value):
        what = "a NaN"
    elif np.isinf(value):
        what = f"an infinite value ({float(value):g})"
    else:
        what = f"a negative value ({float(value):g})"
    name, _, context = where.partition(" of ")
    if V.ndim == 2:
        at = f"bin {int(pos[0])}, frame {int(pos[1]) + frame_offset}"
    else:
        at = f"index {tuple(int(p) for p in pos)}"
    if context:
        at += f" of {context}"
    raise InvalidDataError(f"{name} has {what} at {at}; NMF needs nonnegative finite input")
