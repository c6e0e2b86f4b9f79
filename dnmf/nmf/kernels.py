"""Pure NumPy kernels for one chunk of a spectrogram: the multiplicative updates.

Everything here is a plain function of in-memory arrays: no Dask, no I/O. The
distributed learner calls :func:`chunk_stats` once per chunk, sums the
statistics over chunks in a fixed order and calls :func:`dnmf.nmf.update.update_W` once per
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
* The update exponent is :func:`dnmf.nmf.divergence.gamma` (Févotte & Idier 2011), which keeps the
  loss non-increasing for every β.

Arrays keep their dtype: float32 in, float32 out (float64 is accepted, for
tests). All arrays passed to one call should share that dtype. No kernel writes
into the arrays it is given, so a retried task sees the same inputs.

Examples
--------
>>> import numpy as np
>>> from dnmf.nmf.kernels import chunk_stats
>>> from dnmf.nmf.update import update_W
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

import numpy as np

from dnmf.nmf.divergence import (
    EPSILON,
    BetaLike,
    FloatArray,
    beta_name_to_float,
    dot64,
    update_exponent,
)

__all__ = [
    "ChunkStats",
    "chunk_stats",
    "hals_rows",
    "mu_step",
    "update_H",
]


#: Factors below this are set to 0 after an update (scikit-learn's stability
#: flush in ``_fit_multiplicative_update``).
_FLUSH: float = float(np.finfo(np.float64).eps)


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
        sum_wh_beta = dot64(T, L)
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
    hals: bool = False,
) -> None:
    """`n_iter` β = 2 updates of H in place from ``Wᵀ V`` and ``Wᵀ W``: MU, or HALS."""
    if hals:
        for _ in range(n_iter):
            hals_rows(H, WtW, WtV, l1_reg=l1_reg, l2_reg=l2_reg)
        return
    for _ in range(n_iter):
        mu_step(H, WtV.copy(), WtW @ H, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent)


def hals_rows(
    X: np.ndarray, G: np.ndarray, R: np.ndarray, *, l1_reg: float = 0.0, l2_reg: float = 0.0
) -> None:
    """One HALS sweep (exact coordinate descent, row by row) of the β = 2 loss, in place.

    Minimises ``½‖V - A X‖² + l1 Σ X + ½ l2 ‖X‖²`` over each row ``t`` of ``X`` in
    turn, the others fixed, from the Gram ``G = AᵀA`` and ``R = AᵀV``: ``X[t] ←
    max(0, X[t] - (G'[t] X - R[t] + l1) / G'[t, t])`` with ``G' = G + l2 I``; a
    row with ``G'[t, t] = 0`` is left as it is. This is scikit-learn's
    ``_update_cdnmf_fast`` (the ``cd`` solver, no shuffle) with the rows of its
    factor vectorised: for the activations ``A = W``; for the dictionary, on
    ``Wᵀ``, ``A = Hᵀ``.
    """
    for t in range(X.shape[0]):
        hess = G[t, t] + l2_reg
        if hess == 0:
            continue
        grad = G[t] @ X - R[t]
        if l2_reg:
            grad += l2_reg * X[t]
        if l1_reg:
            grad += l1_reg
        row = X[t] - grad / hess
        np.maximum(row, 0, out=row)
        X[t] = row


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
    solver: str = "mu",
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
        Update exponent; by default :func:`dnmf.nmf.divergence.gamma` of β.
    solver : {'mu', 'hals'}, default='mu'
        For β = 2, ``'hals'`` runs :func:`hals_rows` sweeps instead of MU.

    Returns
    -------
    ndarray of shape (n_components, n_frames)
        The updated activations, a new array of H's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V, W, H = rng.random((5, 7)), rng.random((5, 2)), rng.random((2, 7))
    >>> from dnmf.nmf.divergence import beta_divergence
    >>> H2 = update_H(V, W, H, beta=2, n_iter=10)
    >>> bool(beta_divergence(V, W, H2, 2) <= beta_divergence(V, W, H, 2))
    True
    """
    beta = beta_name_to_float(beta)
    exponent = update_exponent(beta, gamma)
    H = H.copy()
    if n_iter <= 0:
        return H
    if beta == 2:
        _update_H_frobenius(
            W.T @ V, W.T @ W, H, n_iter=n_iter, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent,
            hals=solver == "hals",
        )  # fmt: skip
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

    ``num``, ``den`` and ``loss`` add up over chunks; see :func:`dnmf.nmf.update.update_W`.
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
    solver: str = "mu",
    gamma: float | None = None,
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
    solver : {'mu', 'hals'}, default='mu'
        The H updates for β = 2 (:func:`update_H`); the statistics are the same.
    gamma : float, optional
        Exponent of the H updates (β ≠ 2); by default :func:`dnmf.nmf.divergence.gamma` of β.

    Returns
    -------
    ChunkStats
        The updated H, ``num``, ``den`` and the loss.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V, W, H = rng.random((5, 7)), rng.random((5, 2)), rng.random((2, 7))
    >>> from dnmf.nmf.divergence import beta_divergence
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
                W.T @ V, WtW, H, n_iter=n, l1_reg=l1_reg_H, l2_reg=l2_reg_H, exponent=1.0,
                hals=solver == "hals",
            )  # fmt: skip
        num = V @ H.T
        den = H @ H.T
        if v_sqnorm is None:
            v_sqnorm = dot64(V, V)
        cross = dot64(W, num)
        fit = dot64(WtW, den)
        loss = max(0.0, (v_sqnorm - 2.0 * cross + fit) / 2.0)
        return ChunkStats(H=H, num=num, den=den, loss=loss)

    if n > 0:
        H = update_H(V, W, H, beta=beta, n_iter=n, l1_reg=l1_reg_H, l2_reg=l2_reg_H, gamma=gamma)
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
