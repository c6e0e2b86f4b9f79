"""Held-out loss of a learned model: the per-block evaluation behind ``dnmf rank``.

A rank search learns each rank with a seeded share of entries held out in
small tiles (:class:`dnmf.nmf.mask.Holdout`); the activations of a frame are
then learned from its other entries only, so ``W H`` *predicts* the held-out
ones. This module scores that prediction block by block, where the blocks
live: ``Σ d_β`` over the held-out entries and over the training entries, and
how many of each there are (the curve against rank is of the means per entry).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnmf.nmf.mask import MaskSpec, block_mask
from dnmf.nmf.masked import masked_values, weighted_loss

__all__ = ["split_losses", "split_losses_task"]


def split_losses(
    V: np.ndarray, W: np.ndarray, H: np.ndarray, spec: MaskSpec, lo: int, beta: float,
    read_M: Any = None,
) -> tuple[float, float, float, float]:  # fmt: skip
    """``(train loss, held-out loss, train entries, held-out entries)`` of one block.

    ``V (n_bins, n)`` are the frames ``[lo, lo + n)``, ``W`` the model's templates,
    ``(n_bins, k)`` or ``(n_bins, k, lags)``, and ``H`` its activations of those
    frames, ``(k, n)``, or with several lags of the ``lags - 1`` frames before them
    too (``(k, n + lags - 1)``, fewer at the corpus start: zeros before frame 0).
    Each loss is ``Σ M ⊙ d_β(V | Λ)`` under the training and the evaluation mask
    of ``spec``.
    """
    from dnmf.nmf.lags import stack_templates, window_stack

    hi = lo + V.shape[1]
    if W.ndim == 2 or W.shape[2] == 1:
        W2 = W.reshape(W.shape[0], W.shape[1])
        L = W2.astype(V.dtype, copy=False) @ H.astype(V.dtype, copy=False)
    else:
        halo = H.shape[1] - V.shape[1]
        Hs = window_stack(H.astype(V.dtype, copy=False), halo, H.shape[1], W.shape[2])
        L = stack_templates(W).astype(V.dtype, copy=False) @ Hs
    out = []
    for part in (spec.training(), spec.evaluation()):
        mask = block_mask(part, V, lo, hi, read_M)
        if mask is None:
            M = np.ones_like(V)
        else:
            M = mask.dense(V.shape[0], V.dtype)
        out.append((weighted_loss(masked_values(V, M), L.copy(), M, beta), float(M.sum())))
    (train, n_train), (held, n_held) = out
    return train, held, n_train, n_held


def split_losses_task(
    item: tuple[int, int, int, np.ndarray, np.ndarray | None, dict[int, int]], W: np.ndarray,
    V_url: str, H_url: str, spec: MaskSpec, beta: float,
) -> tuple[float, float, float, float]:  # fmt: skip
    """:func:`split_losses` of block ``item = (start, stop, buffer, scale, halo_scale,
    expect)`` on a worker: V from the corpus, H from the model store's buffer times the
    block's pending scale, and for a model of several lags the ``lags - 1`` frames before
    the block times the previous block's (``halo_scale``; None at the corpus start).
    Each chunk read is checked: V against the corpus's records, H against the crcs of
    ``expect`` (chunk -> crc, :mod:`dnmf.io.buffers`)."""
    from dnmf.io.blocks import open_array, read_checked
    from dnmf.io.buffers import read_buffer_checked

    start, stop, buffer, scale, halo_scale, expect = item
    lags = W.shape[2] if W.ndim == 3 else 1
    first = max(0, start - (lags - 1))
    V = read_checked(V_url, start, stop)
    H_arr = open_array(f"{H_url}/H{buffer}")
    H = read_buffer_checked(H_arr, H_url, buffer, first, stop, expect).astype(np.float64)
    H[:, start - first :] *= scale[:, None]
    if start > first:
        assert halo_scale is not None, "a block after the first has a previous block"
        H[:, : start - first] *= halo_scale[:, None]
    read_M = None
    if spec.store:
        store = open_array(spec.store)

        def read_M(a: int, z: int) -> np.ndarray:
            return np.asarray(store[:, a:z])

    return split_losses(V, W, H.astype(V.dtype), spec, start, beta, read_M)
