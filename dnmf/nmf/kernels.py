"""Pure NumPy kernels for one chunk of a spectrogram: the multiplicative updates.

Everything here is a plain function of in-memory arrays: no Dask, no I/O. The
distributed learner calls :func:`chunk_stats` once per chunk, sums the
statistics over chunks in a fixed order and calls :func:`update_W` once per
step (DESIGN.md section 3).

Orientation (librosa's, DESIGN.md section 1)::

    V (n_bins, n_frames)  ~  W (n_bins, k) @ H (k, n_frames)

scikit-learn factorises ``X (n_samples, n_features) ~ W_sk @ H_sk`` with samples
in rows, so the turn between the two is, in this module only::

    X = V.T,   W_sk = H.T,   H_sk = W.T

Hence our H update is scikit-learn's ``_multiplicative_update_w`` and our W
update its ``_multiplicative_update_h``. For dense input the arithmetic is the
same as ``sklearn/decomposition/_nmf.py``, floors included:

* :data:`EPSILON` (``np.finfo(np.float32).eps``) floors ``Λ = W @ H`` before a
  negative power or a division (``β < 2`` in the numerator, ``β < 1`` in the
  denominator), replaces a denominator that is exactly zero, and decides which
  entries of V count in the loss (``V > EPSILON``; the others are zeros of V,
  where ``0 ** (β - 1)`` is taken as 0). Zeros in V, even whole zero rows or
  columns, therefore never produce NaN or inf.
* After each update, entries below ``np.finfo(np.float64).eps`` are set to
  exactly 0, as ``_fit_multiplicative_update`` does (H for ``β < 1``, W for
  ``β <= 1``). This keeps float32 factors out of the slow subnormal range.
* The update exponent is :func:`gamma` (Févotte & Idier 2011), which keeps the
  loss non-increasing for every β.

Arrays keep their dtype: float32 in, float32 out (float64 is accepted, for
tests). All arrays passed to one call should share that dtype. No kernel writes
into the arrays it is given, so a retried task sees the same inputs.

Examples
--------
>>> import numpy as np
>>> from dnmf.nmf.kernels import chunk_stats, update_W
>>> rng = np.random.default_rng(0)
>>> V = rng.random((6, 10), dtype=np.float32)
>>> W = rng.random((6, 2), dtype=np.float32)
>>> H = rng.random((2, 10), dtype=np.float32)
>>> stats = chunk_stats(V, W, H, beta="kullback-leibler", n_inner=2)
>>> W = update_W(W, stats.num, stats.den, beta=1)
>>> W.dtype, stats.H.shape, stats.den.shape
(dtype('float32'), (2, 10), (2,))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from dnmf.errors import DnmfUsageError, InvalidDataError

__all__ = [
    "EPSILON",
    "ChunkStats",
    "beta_divergence",
    "beta_name_to_float",
    "check_nonnegative",
    "chunk_stats",
    "gamma",
    "mu_step",
    "normalize_W",
    "update_H",
    "update_W",
]

FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]
BetaLike: TypeAlias = str | float
NormName: TypeAlias = Literal["l2", "max"] | None

#: The floor of every division and negative power, exactly scikit-learn's
#: ``EPSILON`` in ``_nmf.py``: ``np.finfo(np.float32).eps`` (about 1.19e-7), for
#: float32 and float64 data alike. ``V > EPSILON`` marks the entries of V that
#: count in the loss; the others are treated as zeros, so they never give NaN.
EPSILON: float = float(np.finfo(np.float32).eps)

#: Factors below this are set to 0 after an update (scikit-learn's stability
#: flush in ``_fit_multiplicative_update``).
_FLUSH: float = float(np.finfo(np.float64).eps)

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


def _exponent(beta: float, given: float | None) -> float:
    return gamma(beta) if given is None else float(given)


# --------------------------------------------------------------------------- loss


def _row_step(a: np.ndarray) -> int:
    """Rows of 2-D `a` per block of about ``_BLOCK`` elements."""
    return max(1, _BLOCK // max(1, a.shape[1]))


def _dot64(a: np.ndarray, b: np.ndarray) -> float:
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


# --------------------------------------------------------------------------- shared pieces


def _power(x: np.ndarray, p: float) -> np.ndarray:
    """``x ** p`` in a new array, with NumPy's fast paths for the common exponents."""
    if p == -1:
        return np.reciprocal(x)
    if p == 0.5:
        return np.sqrt(x)
    if p == 1:
        return x.copy()
    if p == 2:
        return np.square(x)
    return np.power(x, p)


@dataclass(frozen=True, eq=False)
class _Factors:
    """What the general-β path derives from one ``Λ = W @ H``.

    ``T`` is ``Λ ** (β - 1)`` (the denominator's matrix); the buffer that held Λ
    now holds ``V * Λ ** (β - 2)`` (the numerator's). ``low`` are the flat
    indices where ``Λ < EPSILON``, ``sum_wh_beta`` is ``sum(Λ ** β)`` over all
    entries on the unfloored Λ (NaN when not asked for).
    """

    T: np.ndarray
    low: np.ndarray
    sum_wh_beta: float


def _general_factors(V: np.ndarray, L: np.ndarray, beta: float, *, want_loss: bool) -> _Factors:
    """Turn ``L = W @ H`` into the two matrices of the general-β update, in place.

    scikit-learn floors Λ at EPSILON for the numerator when ``β < 2`` and for the
    denominator when ``β < 1``. ``Λ ** (β - 2)`` is obtained as ``T / Λ`` (one
    division instead of a second power), and the few entries with
    ``Λ < EPSILON`` are then recomputed exactly, so the floors are those of
    scikit-learn. On return `L` holds ``V * Λ ** (β - 2)``.
    """
    flat = L.reshape(-1)  # L is a fresh C-contiguous product: a view
    low = np.flatnonzero(flat < EPSILON)
    low_vals = flat[low]
    if beta < 1:
        flat[low] = EPSILON
    T = _power(L, beta - 1)
    sum_wh_beta = math.nan
    if want_loss and beta != 0:
        # sum(Λ^β) = sum(T * Λ); for β < 1, T and Λ are floored: swap the floored
        # terms for the exact ones.
        sum_wh_beta = _dot64(T, L)
        if beta < 1 and low.size:
            floored = float(np.sum(T.reshape(-1)[low], dtype=np.float64)) * EPSILON
            sum_wh_beta += float(np.sum(low_vals.astype(np.float64) ** beta)) - floored
    with np.errstate(divide="ignore", invalid="ignore"):  # Λ = 0 (β >= 1): fixed below
        np.divide(T, L, out=L)
    if low.size:
        base = np.maximum(low_vals, EPSILON) if beta < 2 else low_vals
        flat[low] = np.power(base, beta - 2)
    L *= V
    return _Factors(T=T, low=low, sum_wh_beta=sum_wh_beta)


def _general_loss(V: np.ndarray, f: _Factors, beta: float, keep: np.ndarray) -> float:
    """The loss of the general-β path from its factors; consumes ``f.T``."""
    T = f.T
    if f.low.size and beta >= 1:
        T.reshape(-1)[f.low] = EPSILON ** (beta - 1)  # the loss floors Λ for every β
    T *= V  # V * Λ^(β-1), which for β = 0 is V / Λ
    s_xy = float(np.sum(T, where=keep, dtype=np.float64))
    if beta == 0:
        np.log(T, out=T, where=keep)
        return s_xy - float(V.size) - float(np.sum(T, where=keep, dtype=np.float64))
    with np.errstate(divide="ignore"):  # 0 ** β for β < 0, outside `keep`
        np.power(V, beta, out=T)
    s_x = float(np.sum(T, where=keep, dtype=np.float64))
    return (s_x - beta * s_xy + (beta - 1) * f.sum_wh_beta) / (beta * (beta - 1))


def mu_step(
    X: np.ndarray,
    num: np.ndarray,
    den: np.ndarray,
    *,
    l1_reg: float,
    l2_reg: float,
    exponent: float,
) -> None:
    """``X *= (num / (den + l1 + l2 X)) ** γ`` in place, as scikit-learn writes it.

    Consumes `num` and `den` (both must be arrays the caller owns).
    """
    if l1_reg > 0:
        den += l1_reg
    if l2_reg > 0:
        den = den + l2_reg * X
    den[den == 0] = EPSILON
    num /= den
    if exponent != 1:
        num **= exponent
    X *= num


def _update_H_frobenius(
    WtV: np.ndarray,
    WtW: np.ndarray,
    H: np.ndarray,
    *,
    n_iter: int,
    l1_reg: float,
    l2_reg: float,
    exponent: float,
) -> None:
    """`n_iter` β = 2 updates of H in place from ``Wᵀ V`` and ``Wᵀ W``."""
    for _ in range(n_iter):
        mu_step(H, WtV.copy(), WtW @ H, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent)


# --------------------------------------------------------------------------- H


def update_H(
    V: FloatArray,
    W: FloatArray,
    H: FloatArray,
    *,
    beta: BetaLike,
    n_iter: int = 1,
    l1_reg: float = 0.0,
    l2_reg: float = 0.0,
    gamma: float | None = None,
) -> FloatArray:
    """`n_iter` multiplicative updates of the activations with W fixed.

    The arithmetic of scikit-learn's ``_multiplicative_update_w`` on dense input
    (its W is our ``H.T``), followed for ``β < 1`` by its flush of entries below
    ``np.finfo(np.float64).eps`` to 0::

        H ← H ⊙ (Wᵀ (V ⊙ Λ^(β-2)) / (Wᵀ Λ^(β-1) + l1_reg + l2_reg H))^γ,  Λ = W H

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
        Spectrogram, nonnegative.
    W : ndarray of shape (n_bins, n_components)
        Dictionary, fixed.
    H : ndarray of shape (n_components, n_frames)
        Activations to start from (not modified).
    beta : str or float
        β, or its name.
    n_iter : int, default=1
        Number of updates. For β = 2, ``Wᵀ V`` and ``Wᵀ W`` are computed once
        for all of them.
    l1_reg, l2_reg : float, default=0.0
        Absolute L1 and L2 penalties on H, already scaled (scikit-learn's
        ``l1_reg_W`` and ``l2_reg_W``).
    gamma : float, optional
        Update exponent; by default :func:`gamma` of β.

    Returns
    -------
    ndarray of shape (n_components, n_frames)
        The updated activations, a new array of H's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V, W, H = rng.random((5, 7)), rng.random((5, 2)), rng.random((2, 7))
    >>> H2 = update_H(V, W, H, beta=2, n_iter=10)
    >>> bool(beta_divergence(V, W, H2, 2) <= beta_divergence(V, W, H, 2))
    True
    """
    beta = beta_name_to_float(beta)
    exponent = _exponent(beta, gamma)
    H = H.copy()
    if n_iter <= 0:
        return H
    if beta == 2:
        _update_H_frobenius(
            W.T @ V, W.T @ W, H, n_iter=n_iter, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent
        )
        return H
    from dnmf.nmf import _fused

    W_sum = W.sum(axis=0)[:, np.newaxis] if beta == 1 else None
    for _ in range(n_iter):
        L = W @ H
        fused = _fused.fits(V, L)
        if W_sum is not None:
            if fused:
                _fused.kl_ratio(V, L)
            else:
                np.maximum(L, EPSILON, out=L)
                np.divide(V, L, out=L)
            num, den = W.T @ L, W_sum.copy()
        elif beta == 0 and fused:
            T = np.empty_like(L)
            _fused.is_factors(V, L, T)
            den = W.T @ T
            del T
            num = W.T @ L
        else:
            f = _general_factors(V, L, beta, want_loss=False)
            den = W.T @ f.T
            del f
            num = W.T @ L
        del L
        mu_step(H, num, den, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent)
        if beta < 1:
            H[H < _FLUSH] = 0.0
    return H


# --------------------------------------------------------------------------- chunk statistics


@dataclass(frozen=True, eq=False)
class ChunkStats:
    """What one chunk sends back for the W update.

    Attributes
    ----------
    H : ndarray of shape (n_components, n_frames)
        The chunk's updated activations (stay with the chunk).
    num : ndarray of shape (n_bins, n_components)
        ``(V ⊙ Λ^(β-2)) Hᵀ`` with ``Λ = W H``; for β = 2, ``V Hᵀ``.
    den : ndarray
        ``Λ^(β-1) Hᵀ`` in its cheap form: shape (n_components,) for β = 1 (the
        row sums of H), (n_components, n_components) for β = 2 (the Gram matrix
        ``H Hᵀ``), (n_bins, n_components) otherwise.
    loss : float
        The chunk's beta-divergence ``d(V | W H)`` with the returned H.

    ``num``, ``den`` and ``loss`` add up over chunks; see :func:`update_W`.
    """

    H: FloatArray
    num: FloatArray
    den: FloatArray
    loss: float


def chunk_stats(
    V: FloatArray,
    W: FloatArray,
    H: FloatArray,
    *,
    beta: BetaLike,
    n_inner: int = 1,
    l1_reg_H: float = 0.0,
    l2_reg_H: float = 0.0,
    update_h: bool = True,
    v_sqnorm: float | None = None,
) -> ChunkStats:
    """The per-chunk kernel: update H, then the chunk's statistics for W and its loss.

    Runs `n_inner` updates of H with W fixed (:func:`update_H`) if `update_h`,
    then with ``Λ = W @ H_new`` returns ``num = (V ⊙ Λ^(β-2)) H_newᵀ``,
    ``den = Λ^(β-1) H_newᵀ`` and ``loss = beta_divergence(V, W, H_new)``, the
    loss coming from that same Λ. scikit-learn's floors apply (see the module
    docstring). Cheap forms, with no dense matrix of ones:

    * β = 1: ``den = H_new.sum(axis=1)``, shape (k,);
    * β = 2: ``num = V H_newᵀ``, ``den = H_new H_newᵀ`` (k, k), and the loss from
      Gram forms, ``(‖V‖² - 2 Σ W ⊙ num + Σ (WᵀW) ⊙ den) / 2`` accumulated in
      float64 and clipped at 0 (half the squared error, as scikit-learn). In
      float32 its accuracy is that of float32 relative to ``‖V‖²``;
    * otherwise ``den`` has shape (n_bins, k).

    Matrix products per call, counting those of size ``n_bins × k × n_frames``
    (``n = n_inner`` if `update_h`, else 0):

    * β = 1: ``2 n + 2`` (per inner update ``Λ`` and ``Wᵀ (V / Λ)``; then ``Λ``
      and ``(V / Λ) Hᵀ``);
    * β = 2: ``1 + (1 if n else 0)`` (``Wᵀ V`` once for all inner updates, and
      ``V Hᵀ``), plus the ``k × n_frames × k`` Gram matrix ``H Hᵀ`` and, per
      inner update, one ``k × k × n_frames`` product ``(WᵀW) H``;
    * other β: ``3 n + 3`` (``Λ``, the numerator and the denominator product).

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
        The chunk of the spectrogram, nonnegative.
    W : ndarray of shape (n_bins, n_components)
        Current dictionary.
    H : ndarray of shape (n_components, n_frames)
        The chunk's activations (warm start or init; not modified).
    beta : str or float
        β, or its name.
    n_inner : int, default=1
        Number of H updates before the statistics.
    l1_reg_H, l2_reg_H : float, default=0.0
        Absolute penalties on H, as in :func:`update_H`.
    update_h : bool, default=True
        If False, H is used as given (the statistics of a fixed H).
    v_sqnorm : float, optional
        ``‖V‖²`` of the chunk (β = 2 only), to save recomputing it per visit.

    Returns
    -------
    ChunkStats
        The updated H, ``num``, ``den`` and the loss.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V, W, H = rng.random((5, 7)), rng.random((5, 2)), rng.random((2, 7))
    >>> s = chunk_stats(V, W, H, beta=2, update_h=False)
    >>> s.num.shape, s.den.shape, bool(np.isclose(s.loss, beta_divergence(V, W, H, 2)))
    ((5, 2), (2, 2), True)
    """
    beta = beta_name_to_float(beta)
    n = n_inner if update_h else 0
    if beta == 2:
        WtW = W.T @ W
        if n > 0:
            H = H.copy()
            _update_H_frobenius(
                W.T @ V, WtW, H, n_iter=n, l1_reg=l1_reg_H, l2_reg=l2_reg_H, exponent=gamma(2.0)
            )
        num = V @ H.T
        den = H @ H.T
        if v_sqnorm is None:
            v_sqnorm = _dot64(V, V)
        cross = _dot64(W, num)
        fit = _dot64(WtW, den)
        loss = max(0.0, (v_sqnorm - 2.0 * cross + fit) / 2.0)
        return ChunkStats(H=H, num=num, den=den, loss=loss)

    if n > 0:
        H = update_H(V, W, H, beta=beta, n_iter=n, l1_reg=l1_reg_H, l2_reg=l2_reg_H)
    L = W @ H
    from dnmf.nmf import _fused

    if _fused.fits(V, L) and beta in (0.0, 1.0):
        if beta == 1:
            _fused.kl_ratio(V, L)  # L is now V / Λ
            num = L @ H.T
            den = H.sum(axis=1)
            data, v_sum = _fused.kl_loss_terms(V, L)
            fit = float(W.sum(axis=0, dtype=np.float64) @ den.astype(np.float64))
            return ChunkStats(H=H, num=num, den=den, loss=data + fit - v_sum)
        T = np.empty_like(L)
        _fused.is_factors(V, L, T)  # T = 1/Λ, L = V/Λ²
        den = T @ H.T
        num = L @ H.T
        del L
        s_ratio, s_log = _fused.is_loss_terms(V, T)
        return ChunkStats(H=H, num=num, den=den, loss=s_ratio - float(V.size) - s_log)
    keep = V > EPSILON
    if beta == 1:
        np.maximum(L, EPSILON, out=L)
        np.divide(V, L, out=L)  # V / Λ
        num = L @ H.T
        den = H.sum(axis=1)
        np.log(L, out=L, where=keep)
        L *= V  # V log(V / Λ) where V > EPSILON
        loss = (
            float(np.sum(L, where=keep, dtype=np.float64))
            + float(W.sum(axis=0, dtype=np.float64) @ den.astype(np.float64))
            - float(np.sum(V, where=keep, dtype=np.float64))
        )
        return ChunkStats(H=H, num=num, den=den, loss=loss)

    f = _general_factors(V, L, beta, want_loss=True)
    den = f.T @ H.T
    num = L @ H.T
    del L
    loss = _general_loss(V, f, beta, keep)
    return ChunkStats(H=H, num=num, den=den, loss=loss)


# --------------------------------------------------------------------------- W


def update_W(
    W: FloatArray,
    num: FloatArray,
    den: FloatArray,
    *,
    beta: BetaLike,
    l1_reg: float = 0.0,
    l2_reg: float = 0.0,
    gamma: float | None = None,
    fixed: npt.ArrayLike | None = None,
    extra_den: FloatArray | None = None,
) -> FloatArray:
    """One multiplicative update of the dictionary from summed chunk statistics.

    ``W ← W ⊙ (num / (den_full + l1_reg + l2_reg W))^γ`` where ``den_full`` is
    `den` in full: ``den[None, :]`` for β = 1 (a zero sum replaced by 1, as
    scikit-learn does), ``W @ den`` for β = 2, `den` itself otherwise. A
    denominator that is exactly zero becomes :data:`EPSILON`; for ``β <= 1``
    entries below ``np.finfo(np.float64).eps`` are then set to 0. With `num`
    and `den` summed over all chunks of V this is scikit-learn's
    ``_multiplicative_update_h`` step (its H is our ``W.T``) followed by the
    flush of ``_fit_multiplicative_update``.

    Parameters
    ----------
    W : ndarray of shape (n_bins, n_components)
        Current dictionary (not modified).
    num : ndarray of shape (n_bins, n_components)
        Summed :attr:`ChunkStats.num` (or an online accumulator).
    den : ndarray of shape (n_components,), (n_components, n_components) or (n_bins, n_components)
        Summed :attr:`ChunkStats.den`, in the form of β.
    beta : str or float
        β, or its name.
    l1_reg, l2_reg : float, default=0.0
        Absolute L1 and L2 penalties on W (scikit-learn's ``l1_reg_H``,
        ``l2_reg_H``).
    gamma : float, optional
        Update exponent; by default :func:`gamma` of β.
    fixed : array_like of bool of shape (n_components,) or of int, optional
        Columns of W to keep exactly as they are (semi-supervised NMF).
    extra_den : ndarray of shape (n_bins, n_components), optional
        Added to the full denominator before the penalties (libnmfd's
        uncorrelatedness term of stacked templates, :func:`dnmf.nmf.lags.update_templates`).

    Returns
    -------
    ndarray of shape (n_bins, n_components)
        The new dictionary, a new array of W's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V, W, H = rng.random((5, 7)), rng.random((5, 2)), rng.random((2, 7))
    >>> s = chunk_stats(V, W, H, beta=1, update_h=False)
    >>> W2 = update_W(W, s.num, s.den, beta=1, fixed=[0])
    >>> bool((W2[:, 0] == W[:, 0]).all())
    True
    """
    beta = beta_name_to_float(beta)
    exponent = _exponent(beta, gamma)
    n_bins, k = W.shape
    expected = (k,) if beta == 1 else (k, k) if beta == 2 else (n_bins, k)
    if num.shape != (n_bins, k) or den.shape != expected:
        raise ValueError(
            f"update_W got num of shape {num.shape} and den of shape {den.shape} for W of "
            f"shape {W.shape} and beta={beta:g}; expected {(n_bins, k)} and {expected}, "
            "as chunk_stats returns them"
        )
    if beta == 1:
        d = np.array(den, copy=True)
        d[d == 0] = 1.0
        den_full = d[np.newaxis, :]
    elif beta == 2:
        den_full = W @ den
    else:
        den_full = np.array(den, copy=True)
    if extra_den is not None:
        den_full = den_full + extra_den
    W_new = np.array(W, copy=True)
    mu_step(
        W_new, np.array(num, copy=True), den_full, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent
    )
    if beta <= 1:
        W_new[W_new < _FLUSH] = 0.0
    if fixed is not None:
        cols = np.asarray(fixed)
        W_new[:, cols] = W[:, cols]
    return W_new


def normalize_W(
    W: FloatArray,
    H: FloatArray | None = None,
    *,
    norm: NormName = "l2",
) -> tuple[FloatArray, FloatArray | None, FloatArray]:
    """Scale the columns of W to unit norm and the rows of H the other way.

    ``W_new = W / scale`` and ``H_new = scale[:, None] * H``, so ``W_new @ H_new``
    equals ``W @ H`` up to rounding. A zero column is left as it is (its scale
    is 1).

    Parameters
    ----------
    W : ndarray of shape (n_bins, n_components)
        Dictionary.
    H : ndarray of shape (n_components, n_frames), optional
        Activations to rescale.
    norm : {'l2', 'max'} or None, default='l2'
        Unit Euclidean norm, unit maximum, or no scaling.

    Returns
    -------
    W : ndarray of shape (n_bins, n_components)
        The scaled dictionary (a new array).
    H : ndarray of shape (n_components, n_frames) or None
        The rescaled activations (a new array), or None when none was given.
    scale : ndarray of shape (n_components,)
        What each column was divided by.

    Examples
    --------
    >>> import numpy as np
    >>> W, s = normalize_W(np.array([[3.0, 0.0], [4.0, 0.0]]))[::2]
    >>> W.tolist(), s.tolist()
    ([[0.6, 0.0], [0.8, 0.0]], [5.0, 1.0])
    """
    if norm is None:
        scale = np.ones(W.shape[1], dtype=W.dtype)
    elif norm == "l2":
        scale = np.sqrt(np.einsum("ij,ij->j", W, W))
    elif norm == "max":
        scale = np.abs(W).max(axis=0, initial=0.0)
    else:
        raise DnmfUsageError(f"norm={norm!r} is not a column norm; use 'l2', 'max' or None")
    scale = scale.astype(W.dtype, copy=False)
    scale[scale == 0] = 1
    W_new = W / scale
    H_new = None if H is None else H * scale[:, np.newaxis]
    return W_new, H_new, scale


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
