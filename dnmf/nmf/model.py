"""The one model, ``Λ = Σ_t W[:, :, t] shift(H, t)``: where ``lags`` decides, in one place.

Templates are ``W (n_bins, k, T)`` everywhere. At ``T = 1`` these functions
take the fast 2-D path of :mod:`dnmf.nmf.kernels` on the 2-D view of W (a free
reshape of a contiguous array: fused KL and IS passes, Gram forms for β = 2);
otherwise the lag kernels of :mod:`dnmf.nmf.lags`. Nothing else in dnmf asks
how many lags a model has, beyond the halo and the lag axis of a store.
"""

from __future__ import annotations

import numpy as np

from dnmf.nmf.divergence import BetaLike, FloatArray, beta_divergence
from dnmf.nmf.kernels import ChunkStats, chunk_stats, update_H
from dnmf.nmf.lags import chunk_stats_conv, stack_templates, update_H_conv, window_stack

__all__ = ["update_H_any", "window_loss", "window_stats"]


def window_stats(
    V: FloatArray,
    W: FloatArray,
    H: FloatArray,
    *,
    start: int,
    stop: int,
    beta: BetaLike,
    n_inner: int = 1,
    l1_reg_H: float = 0.0,
    l2_reg_H: float = 0.0,
    update_h: bool = True,
    solver: str = "mu",
) -> ChunkStats:
    """The per-block kernel of every model: update H on a window, then the block's statistics.

    ``W`` has shape ``(n_bins, k, T)``. At ``T = 1`` the window is the block
    itself and this is :func:`dnmf.nmf.kernels.chunk_stats` on the 2-D view of
    W (the fast path: fused KL and IS passes, Gram forms for β = 2); otherwise
    :func:`chunk_stats_conv`. ``num`` and ``den`` come stacked
    (:func:`stack_templates`), which at ``T = 1`` is W's own layout.
    """
    n_bins, k, T = W.shape
    if T == 1:
        return chunk_stats(
            V, W.reshape(n_bins, k), H, beta=beta, n_inner=n_inner, l1_reg_H=l1_reg_H,
            l2_reg_H=l2_reg_H, update_h=update_h, solver=solver,
        )  # fmt: skip
    return chunk_stats_conv(
        V, W, H, start=start, stop=stop, beta=beta, n_inner=n_inner, l1_reg_H=l1_reg_H,
        l2_reg_H=l2_reg_H, update_h=update_h,
    )  # fmt: skip


def update_H_any(
    V: FloatArray,
    W: FloatArray,
    H: FloatArray,
    *,
    beta: BetaLike,
    n_iter: int = 1,
    l1_reg: float = 0.0,
    l2_reg: float = 0.0,
    solver: str = "mu",
) -> FloatArray:
    """`n_iter` updates of H with the templates ``W (n_bins, k, T)`` fixed, on a whole window.

    :func:`dnmf.nmf.kernels.update_H` on the 2-D view at ``T = 1``,
    :func:`update_H_conv` otherwise.
    """
    n_bins, k, T = W.shape
    if T == 1:
        return update_H(
            V, W.reshape(n_bins, k), H, beta=beta, n_iter=n_iter, l1_reg=l1_reg, l2_reg=l2_reg,
            solver=solver,
        )  # fmt: skip
    return update_H_conv(V, W, H, beta=beta, n_iter=n_iter, l1_reg=l1_reg, l2_reg=l2_reg)


def window_loss(
    V: FloatArray, W: FloatArray, H: FloatArray, *, start: int, stop: int, beta: BetaLike
) -> float:
    """β-divergence of the frames ``[start, stop)`` of a window under templates ``W``."""
    n_bins, k, T = W.shape
    if T == 1:
        return beta_divergence(
            np.ascontiguousarray(V[:, start:stop]), W.reshape(n_bins, k), H[:, start:stop], beta
        )
    Hs = window_stack(H, start, stop, T)
    Ws = stack_templates(W).astype(V.dtype, copy=False)
    Vc = np.ascontiguousarray(V[:, start:stop])
    return beta_divergence(Vc, Ws, Hs, beta, WH=Ws @ Hs)
