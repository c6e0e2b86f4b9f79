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

    ``V (n_bins, n)`` are the frames ``[lo, lo + n)``, ``W (n_bins, k)`` and
    ``H (k, n)`` the model's. Each loss is ``Σ M ⊙ d_β(V | W H)`` under the
    training and the evaluation mask of ``spec``.
    """
    hi = lo + V.shape[1]
    L = W.astype(V.dtype, copy=False) @ H.astype(V.dtype, copy=False)
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
    item: tuple[int, int, int, np.ndarray], W: np.ndarray, V_url: str, H_url: str,
    spec: MaskSpec, beta: float,
) -> tuple[float, float, float, float]:  # fmt: skip
    """:func:`split_losses` of block ``item = (start, stop, buffer, scale)`` on a worker:
    V from the corpus, H from the model store's buffer, times the block's pending scale."""
    from dnmf.io.blocks import open_array

    start, stop, buffer, scale = item
    V = np.asarray(open_array(V_url)[:, start:stop])
    H = np.asarray(open_array(f"{H_url}/H{buffer}")[:, start:stop]) * scale[:, None]
    read_M = None
    if spec.store:
        store = open_array(spec.store)

        def read_M(a: int, z: int) -> np.ndarray:
            return np.asarray(store[:, a:z])

    return split_losses(V, W, H, spec, start, beta, read_M)
