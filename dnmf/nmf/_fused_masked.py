"""Fused element-wise passes of the weighted KL kernels (:mod:`dnmf.nmf.masked`), numba.

Separate from :mod:`dnmf.nmf._fused` so the unmasked passes stay as they are.
Each pass branches on the weight, so a masked entry of V (NaN, say) is never
used: no ``masked_values`` copy is needed on this path.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from dnmf.nmf.divergence import EPSILON

__all__ = ["w_kl_ratio", "w_kl_ratio_loss"]

_jit = numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")


@_jit
def _w_kl_ratio(V, L, M, eps):  # type: ignore[no-untyped-def]
    v, r, m = V.reshape(-1), L.reshape(-1), M.reshape(-1)
    zero = eps - eps
    for i in range(v.size):
        w = m[i]
        r[i] = w * (v[i] / max(r[i], eps)) if w > 0 else zero


@_jit
def _w_kl_ratio_loss(V, L, M, eps):  # type: ignore[no-untyped-def]
    v, r, m = V.reshape(-1), L.reshape(-1), M.reshape(-1)
    zero = eps - eps
    data = 0.0
    fit = 0.0
    for i in range(v.size):
        w = m[i]
        if w > 0:
            lam = r[i]
            x = v[i]
            q = x / max(lam, eps)
            fit += np.float64(w) * np.float64(lam)
            if x > eps:
                data += np.float64(w) * (np.float64(x) * math.log(np.float64(q)) - np.float64(x))
            r[i] = w * q
        else:
            r[i] = zero
    return data, fit


def w_kl_ratio(V: np.ndarray, L: np.ndarray, M: np.ndarray) -> None:
    """``L ← M ⊙ V / max(L, EPSILON)`` in place, 0 where ``M = 0``."""
    _w_kl_ratio(V, L, M, V.dtype.type(EPSILON))


def w_kl_ratio_loss(V: np.ndarray, L: np.ndarray, M: np.ndarray) -> float:
    """:func:`w_kl_ratio`, returning the weighted KL loss of ``Λ = L`` (before the pass):
    ``Σ M (V log(V/Λ) - V)`` over ``V > EPSILON`` plus ``Σ M Λ``, in float64."""
    data, fit = _w_kl_ratio_loss(V, L, M, V.dtype.type(EPSILON))
    return float(data) + float(fit)
