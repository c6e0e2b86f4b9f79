"""Weighted β-NMF kernels: the loss ``Σ M ⊙ d_β(V | Λ)`` for a weight mask ``M >= 0``.

Pure NumPy functions of one block, the masked twins of :mod:`dnmf.nmf.kernels`
(DESIGN.md section 3). With weights the statistics keep their form::

    num = (M ⊙ V ⊙ Λ^(β-2)) Hᵀ,    den = (M ⊙ Λ^(β-1)) Hᵀ

and likewise for H (``Wᵀ (M ⊙ V ⊙ Λ^(β-2))`` over ``Wᵀ (M ⊙ Λ^(β-1))``), so the
multiplicative updates stay monotone (Févotte & Idier 2011: the weights only
scale each entry's auxiliary function). ``M = 0`` is an entry that does not
exist; fractional weights are allowed. The unmasked kernels are not touched:
a run without a mask runs exactly today's arithmetic, and these functions run
only on blocks whose mask is not all ones (:func:`dnmf.nmf.model.window_stats`).

Cheap forms where they remain: for β = 1 the H denominator ``Wᵀ M`` is the
same for every inner update and computed once, for β = 2 the H numerator
``Wᵀ (M ⊙ V)`` likewise. The W denominator always comes full, shape
``(n_bins, k)`` (:class:`MaskedDen` carries it beside the cheap form of the
unmasked blocks). Floors are scikit-learn's, as in :mod:`dnmf.nmf.kernels`:
Λ at EPSILON before a negative power (β < 2 in the numerator, β < 1 in the
denominator), a zero denominator replaced by EPSILON, and the float64-eps flush
of H for β < 1. Masked entries of V are never read: the fused β = 1 passes
branch on the weight, the NumPy forms take :func:`masked_values` (0 where
``M = 0``, so a NaN there is harmless).
"""

from __future__ import annotations

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
from dnmf.nmf.kernels import ChunkStats, mu_step
from dnmf.nmf.lags import _general_pair

__all__ = [
    "MaskedDen",
    "chunk_stats_masked",
    "masked_values",
    "update_H_masked",
    "weighted_factors",
    "weighted_loss",
]

_FLUSH: float = float(np.finfo(np.float64).eps)


def _fits(*arrays: np.ndarray) -> bool:
    from dnmf.nmf._fused import fits

    return fits(*arrays)


def masked_values(V: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``V`` with its masked entries (``M == 0``) set to 0: a new C-contiguous array."""
    return np.where(M > 0, V, V.dtype.type(0))


def weighted_factors(
    V: np.ndarray, L: np.ndarray, M: np.ndarray, beta: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(M ⊙ V ⊙ Λ^(β-2), M ⊙ Λ^(β-1))`` from ``L = Λ`` (consumed), scikit-learn's floors.

    Cheap forms: for β = 1 the second is ``M`` itself and None is returned in
    its place; for β = 2 the first is ``M ⊙ V`` and None is returned in its place.
    """
    if beta == 1:
        np.maximum(L, EPSILON, out=L)
        np.divide(V, L, out=L)
        L *= M
        return L, None
    if beta == 2:
        L *= M
        return None, L
    P, L = _general_pair(V, L, beta)  # the unweighted forms, then the weights
    L *= M
    P *= M
    return L, P


def weighted_loss(V: np.ndarray, L: np.ndarray, M: np.ndarray, beta: float) -> float:
    """``Σ M ⊙ d_β(V | Λ)`` in float64, with the conventions of
    :func:`dnmf.nmf.divergence.beta_divergence` (which it equals for ``M = 1``):
    data terms over ``V > EPSILON`` with Λ floored at EPSILON there, ``Σ Λ^β`` and the
    Itakura-Saito constant over every entry (each weighted)."""
    total = 0.0
    step = max(1, (1 << 16) // max(1, V.shape[1]))
    for i in range(0, V.shape[0], step):
        v = np.asarray(V[i : i + step], dtype=np.float64)
        lam = np.asarray(L[i : i + step], dtype=np.float64)
        m = np.asarray(M[i : i + step], dtype=np.float64)
        if beta == 2:
            d = v - lam
            total += 0.5 * float(np.sum(m * d * d))
            continue
        keep = (v > EPSILON) & (m > 0)
        x, y, w = v[keep], np.maximum(lam[keep], EPSILON), m[keep]
        if beta == 1:
            total += float(w @ (x * np.log(x / y) - x)) + float(np.sum(m * lam))
        elif beta == 0:
            r = x / y
            total += float(w @ (r - np.log(r))) - float(m.sum())
        else:
            data = float(w @ x**beta) - beta * float(w @ (x * y ** (beta - 1)))
            total += (data + (beta - 1) * float(np.sum(m * lam**beta))) / (beta * (beta - 1))
    return total


def update_H_masked(
    V: FloatArray,
    W: FloatArray,
    H: FloatArray,
    M: FloatArray,
    *,
    beta: BetaLike,
    n_iter: int = 1,
    l1_reg: float = 0.0,
    l2_reg: float = 0.0,
    gamma: float | None = None,
) -> FloatArray:
    """`n_iter` weighted multiplicative updates of H, W fixed (2-D, one lag).

    ``H ← H ⊙ (Wᵀ (M ⊙ V ⊙ Λ^(β-2)) / (Wᵀ (M ⊙ Λ^(β-1)) + l1 + l2 H))^γ``. ``M`` has
    V's shape and dtype; V may hold anything (NaN included) where ``M = 0``.
    A frame whose weights are all 0 gets ``H = 0`` there (no data pulls it).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> V, W, H = rng.random((5, 7)), rng.random((5, 2)), rng.random((2, 7))
    >>> M = (rng.random((5, 7)) > 0.3).astype(float)
    >>> H2 = update_H_masked(V, W, H, M, beta=1, n_iter=20)
    >>> bool(weighted_loss(V, W @ H2, M, 1) <= weighted_loss(V, W @ H, M, 1))
    True
    """
    beta = beta_name_to_float(beta)
    V, fused = _readable(V, W, H, M, beta)
    return _update_H(V, W, H, M, beta, fused, n_iter, l1_reg, l2_reg, update_exponent(beta, gamma))


def _readable(
    V: np.ndarray, W: np.ndarray, H: np.ndarray, M: np.ndarray, beta: float
) -> tuple[np.ndarray, bool]:
    """``(V, True)`` where the fused β = 1 passes serve (they never read a masked entry),
    else ``(masked_values(V, M), False)`` for the NumPy forms."""
    if beta == 1 and _fits(V, M) and np.result_type(W, H) == V.dtype:
        return V, True
    return masked_values(V, M), False


def _update_H(
    V: np.ndarray, W: np.ndarray, H: np.ndarray, M: np.ndarray, beta: float, fused: bool,
    n_iter: int, l1_reg: float, l2_reg: float, exponent: float,
) -> np.ndarray:  # fmt: skip
    """:func:`update_H_masked` on V as :func:`_readable` returns it."""
    from dnmf.nmf import _fused_masked as _fm  # numba: imported when a block is computed

    H = H.copy()
    if n_iter <= 0:
        return H
    WT = np.ascontiguousarray(W.T)
    den_1 = WT @ M if beta == 1 else None
    num_2 = WT @ (M * V) if beta == 2 else None
    for _ in range(n_iter):
        Q: np.ndarray | None
        P: np.ndarray | None
        if fused:
            Q, P = W @ H, None
            _fm.w_kl_ratio(V, Q, M)
        else:
            Q, P = weighted_factors(V, W @ H, M, beta)
        num = num_2.copy() if Q is None else WT @ Q  # type: ignore[union-attr]
        den = den_1.copy() if P is None else WT @ P  # type: ignore[union-attr]
        del Q, P
        mu_step(H, num, den, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent)
        if beta < 1:
            H[H < _FLUSH] = 0.0
    return H


def chunk_stats_masked(
    V: FloatArray,
    W: FloatArray,
    H: FloatArray,
    M: FloatArray,
    *,
    beta: BetaLike,
    n_inner: int = 1,
    l1_reg_H: float = 0.0,
    l2_reg_H: float = 0.0,
    update_h: bool = True,
    gamma: float | None = None,
) -> ChunkStats:
    """The weighted per-block kernel: H updates, then ``num``, a full ``den`` and the loss.

    As :func:`dnmf.nmf.kernels.chunk_stats` with weights ``M``: ``num = (M ⊙ V ⊙
    Λ^(β-2)) Hᵀ`` and ``den = (M ⊙ Λ^(β-1)) Hᵀ``, both ``(n_bins, k)`` for every
    β, and ``loss = Σ M ⊙ d_β(V | Λ)`` from the same Λ. V may hold anything where
    ``M = 0``.

    Products of size ``n_bins × k × n_frames`` for β = 1: ``3 n + 3`` (those of the
    unmasked kernel and, once each, ``Wᵀ M`` and ``M Hᵀ``), and two fused passes
    over the block beside NumPy's log (:mod:`dnmf.nmf._fused_masked`). ``gamma`` is
    the exponent of the H updates (by default γ of β).
    """
    beta = beta_name_to_float(beta)
    V, fused = _readable(V, W, H, M, beta)
    if update_h and n_inner > 0:
        exponent = update_exponent(beta, gamma)
        H = _update_H(V, W, H, M, beta, fused, n_inner, l1_reg_H, l2_reg_H, exponent)
    L = W @ H
    HT = np.ascontiguousarray(H.T)
    if fused:
        from dnmf.nmf import _fused_masked as _fm  # numba: imported when a block is computed

        ratio = np.empty_like(L)
        _fm.w_kl_ratio(V, L, M, ratio)  # L is now M V / Λ, ratio the V / Λ of the loss
        num, den = L @ HT, M @ HT
        del L
        # Σ M Λ = Σ W ⊙ (M Hᵀ): the fit term from den, as the unmasked kernel takes it
        return ChunkStats(H=H, num=num, den=den, loss=_fm.w_kl_data(V, M, ratio) + dot64(W, den))
    loss = weighted_loss(V, L, M, beta)
    Q, P = weighted_factors(V, L, M, beta)
    num = (M * V) @ HT if Q is None else Q @ HT
    den = M @ HT if P is None else P @ HT
    return ChunkStats(H=H, num=num, den=den, loss=loss)


@dataclass(frozen=True, eq=False)
class MaskedDen:
    """The W denominator of a masked run: the cheap form of its unmasked blocks beside the
    full ``(n_bins, T·k)`` sum of its masked ones (None where there were none).

    Blocks whose mask is all ones run the unmasked kernels and send their cheap
    ``den``; the others send a full one. ``+`` adds both parts (so the fixed tree
    of :func:`dnmf.nmf.plan.tree_sum` sums it as it sums an array), and
    :meth:`full` is the denominator of the update. With no masked block at all,
    :meth:`full` is bitwise the denominator an unmasked run builds.
    """

    cheap: np.ndarray | None
    dense: np.ndarray | None

    def __add__(self, other: MaskedDen) -> MaskedDen:
        return MaskedDen(_add(self.cheap, other.cheap), _add(self.dense, other.dense))

    def astype(self, dtype: object) -> MaskedDen:
        def cast(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a.astype(dtype)  # type: ignore[call-overload]

        return MaskedDen(cast(self.cheap), cast(self.dense))

    def full(self, W: np.ndarray, beta: float) -> np.ndarray:
        """``den`` in the shape of the stacked ``W`` (a fresh array); for β = 1 a zero
        entry becomes 1, as the unmasked update replaces a zero column sum."""
        if self.cheap is None and self.dense is None:  # every frame of the step masked
            d = np.zeros(W.shape, dtype=W.dtype)
        elif self.cheap is None:
            assert self.dense is not None
            d = np.array(self.dense, dtype=np.result_type(self.dense, W), copy=True)
        elif beta == 1:
            d = np.broadcast_to(self.cheap[None, :], W.shape).astype(np.result_type(self.cheap, W))
        elif beta == 2:
            d = W @ self.cheap
        else:
            d = np.array(self.cheap, copy=True)
        if self.cheap is not None and self.dense is not None:
            d += self.dense
        if beta == 1:
            d[d == 0] = 1.0
        return d


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b
