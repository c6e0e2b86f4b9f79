"""Fused element-wise passes of the weighted KL kernels (:mod:`dnmf.nmf.masked`), numba.

Separate from :mod:`dnmf.nmf._fused` so the unmasked passes stay as they are.
Each pass branches on the weight, so a masked entry of V (NaN, say) is never
used: no ``masked_values`` copy is needed on this path. As there, the ratios
are IEEE float arithmetic in V's dtype (no reassociation), the loss terms are
summed in float64 in a fixed order, and the log is NumPy's vectorised one.
"""

from __future__ import annotations

import numba
import numpy as np

from dnmf.nmf.divergence import EPSILON

__all__ = ["w_kl_data", "w_kl_ratio"]

_jit = numba.njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
# Reassociation only where a pass sums (so that it vectorises); never for the ratios.
_jit_sum = numba.njit(
    nogil=True, cache=True, boundscheck=False, error_model="numpy", fastmath={"reassoc", "nsz"}
)


@_jit
def _w_kl_ratio(V, L, M, Q, eps, ratios):  # type: ignore[no-untyped-def]
    v, r, m, q = V.reshape(-1), L.reshape(-1), M.reshape(-1), Q.reshape(-1)
    zero = eps - eps
    one = eps / eps
    for i in range(v.size):
        w = m[i]
        x = v[i]
        ratio = x / max(r[i], eps)
        kept = w > 0
        r[i] = w * ratio if kept else zero
        if ratios:  # log 1 = 0 where there is no data term (two selects: it vectorises)
            t = ratio if x > eps else one
            q[i] = t if kept else one


@_jit_sum
def _w_kl_data(V, M, G, eps):  # type: ignore[no-untyped-def]
    v, m, g = V.reshape(-1), M.reshape(-1), G.reshape(-1)
    data = 0.0
    for i in range(v.size):
        w = m[i]
        x = v[i]
        data += np.float64(w * (x * g[i] - x)) if w > 0 and x > eps else 0.0
    return data


def w_kl_ratio(V: np.ndarray, L: np.ndarray, M: np.ndarray, Q: np.ndarray | None = None) -> None:
    """``L ← M ⊙ V / max(L, EPSILON)`` in place, 0 where ``M = 0``; and, if given,
    ``Q ← V / max(L, EPSILON)`` where the loss has a data term (``M > 0``, ``V > EPSILON``),
    1 elsewhere (``Q`` for :func:`w_kl_data`)."""
    _w_kl_ratio(V, L, M, L if Q is None else Q, V.dtype.type(EPSILON), Q is not None)


def w_kl_data(V: np.ndarray, M: np.ndarray, Q: np.ndarray) -> float:
    """``Σ M (V log(V/Λ) - V)`` over ``M > 0, V > EPSILON``, in float64, from the ``Q`` of
    :func:`w_kl_ratio`; consumes Q. With ``Σ M Λ`` it is the weighted KL loss."""
    np.log(Q, out=Q)
    return float(_w_kl_data(V, M, Q, V.dtype.type(EPSILON)))
