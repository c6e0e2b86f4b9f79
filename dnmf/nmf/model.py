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
from dnmf.nmf.mask import BlockMask
from dnmf.nmf.masked import (
    MaskedDen,
    chunk_stats_masked,
    masked_values,
    update_H_masked,
    weighted_loss,
)

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
    mask: BlockMask | None = None,
    gamma: float | None = None,
) -> ChunkStats:
    """The per-block kernel of every model: update H on a window, then the block's statistics.

    ``W`` has shape ``(n_bins, k, T)``. At ``T = 1`` the window is the block
    itself and this is :func:`dnmf.nmf.kernels.chunk_stats` on the 2-D view of
    W (the fast path: fused KL and IS passes, Gram forms for β = 2); otherwise
    :func:`chunk_stats_conv`. ``num`` and ``den`` come stacked
    (:func:`stack_templates`), which at ``T = 1`` is W's own layout.

    With a ``mask`` (:class:`dnmf.nmf.mask.BlockMask` of the window) the loss is
    ``Σ M ⊙ d_β`` and ``den`` a :class:`dnmf.nmf.masked.MaskedDen`: at ``T = 1`` a
    0/1 frame mask runs the unmasked kernel on the kept frames (cheap ``den``; the
    dropped frames get ``H = 0``), any other mask the weighted kernels (full ``den``).
    ``gamma`` is the exponent of the multiplicative H updates (by default γ of β).
    """
    if mask is not None:
        return _masked_window_stats(
            V, W, H, mask, start=start, stop=stop, beta=beta, n_inner=n_inner,
            l1_reg_H=l1_reg_H, l2_reg_H=l2_reg_H, update_h=update_h, solver=solver, gamma=gamma,
        )  # fmt: skip
    n_bins, k, T = W.shape
    if T == 1:
        return chunk_stats(
            V, W.reshape(n_bins, k), H, beta=beta, n_inner=n_inner, l1_reg_H=l1_reg_H,
            l2_reg_H=l2_reg_H, update_h=update_h, solver=solver, gamma=gamma,
        )  # fmt: skip
    return chunk_stats_conv(
        V, W, H, start=start, stop=stop, beta=beta, n_inner=n_inner, l1_reg_H=l1_reg_H,
        l2_reg_H=l2_reg_H, update_h=update_h, gamma=gamma,
    )  # fmt: skip


def _masked_window_stats(
    V: FloatArray, W: FloatArray, H: FloatArray, mask: BlockMask, *, start: int, stop: int,
    beta: BetaLike, n_inner: int, l1_reg_H: float, l2_reg_H: float, update_h: bool, solver: str,
    gamma: float | None,
) -> ChunkStats:  # fmt: skip
    n_bins, k, T = W.shape
    keep = mask.kept_frames() if T == 1 else None
    if keep is not None:
        idx = np.flatnonzero(keep)
        if idx.size == 0:  # nothing of this block counts
            H_none = H.copy() if not update_h else np.zeros_like(H)
            num = np.zeros((n_bins, k), dtype=V.dtype)
            return ChunkStats(H=H_none, num=num, den=MaskedDen(None, None), loss=0.0)  # type: ignore[arg-type]
        # np.compress gathers whole rows at a time (fancy column indexing copies element
        # by element, and then once more to make the result C-contiguous).
        s = chunk_stats(
            np.compress(keep, V, axis=1), W.reshape(n_bins, k), np.compress(keep, H, axis=1),
            beta=beta, n_inner=n_inner, l1_reg_H=l1_reg_H, l2_reg_H=l2_reg_H, update_h=update_h,
            solver=solver, gamma=gamma,
        )  # fmt: skip
        H_out = H.copy() if not update_h else np.zeros_like(H)
        H_out[:, idx] = s.H
        return ChunkStats(H=H_out, num=s.num, den=MaskedDen(s.den, None), loss=s.loss)  # type: ignore[arg-type]
    M = mask.dense(n_bins, V.dtype)
    if T == 1:
        s = chunk_stats_masked(
            V, W.reshape(n_bins, k), H, M, beta=beta, n_inner=n_inner, l1_reg_H=l1_reg_H,
            l2_reg_H=l2_reg_H, update_h=update_h, gamma=gamma,
        )  # fmt: skip
    else:
        s = chunk_stats_conv(
            masked_values(V, M), W, H, start=start, stop=stop, beta=beta, n_inner=n_inner,
            l1_reg_H=l1_reg_H, l2_reg_H=l2_reg_H, update_h=update_h, M=M, gamma=gamma,
        )  # fmt: skip
    return ChunkStats(H=s.H, num=s.num, den=MaskedDen(None, s.den), loss=s.loss)  # type: ignore[arg-type]


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
    M: FloatArray | None = None,
) -> FloatArray:
    """`n_iter` updates of H with the templates ``W (n_bins, k, T)`` fixed, on a whole window.

    :func:`dnmf.nmf.kernels.update_H` on the 2-D view at ``T = 1``,
    :func:`update_H_conv` otherwise. With weights ``M`` (V's shape; V must be 0
    where M is, :func:`dnmf.nmf.masked.masked_values`) the weighted updates:
    masked entries do not pull H.
    """
    n_bins, k, T = W.shape
    if M is not None:
        if T == 1:
            return update_H_masked(
                V, W.reshape(n_bins, k), H, M, beta=beta, n_iter=n_iter, l1_reg=l1_reg,
                l2_reg=l2_reg,
            )  # fmt: skip
        return update_H_conv(V, W, H, beta=beta, n_iter=n_iter, l1_reg=l1_reg, l2_reg=l2_reg, M=M)
    if T == 1:
        return update_H(
            V, W.reshape(n_bins, k), H, beta=beta, n_iter=n_iter, l1_reg=l1_reg, l2_reg=l2_reg,
            solver=solver,
        )  # fmt: skip
    return update_H_conv(V, W, H, beta=beta, n_iter=n_iter, l1_reg=l1_reg, l2_reg=l2_reg)


def window_loss(
    V: FloatArray, W: FloatArray, H: FloatArray, *, start: int, stop: int, beta: BetaLike,
    M: FloatArray | None = None,
) -> float:  # fmt: skip
    """β-divergence of the frames ``[start, stop)`` of a window under templates ``W``
    (weighted by ``M``, the window's weights, if given)."""
    n_bins, k, T = W.shape
    if M is not None:
        from dnmf.nmf.divergence import beta_name_to_float

        if T == 1:
            L = W.reshape(n_bins, k) @ H[:, start:stop]
        else:
            L = stack_templates(W).astype(V.dtype, copy=False) @ window_stack(H, start, stop, T)
        return weighted_loss(V[:, start:stop], L, M[:, start:stop], beta_name_to_float(beta))
    if T == 1:
        return beta_divergence(
            np.ascontiguousarray(V[:, start:stop]), W.reshape(n_bins, k), H[:, start:stop], beta
        )
    Hs = window_stack(H, start, stop, T)
    Ws = stack_templates(W).astype(V.dtype, copy=False)
    Vc = np.ascontiguousarray(V[:, start:stop])
    return beta_divergence(Vc, Ws, Hs, beta, WH=Ws @ Hs)
