"""The ``mask=`` argument of the estimators: per-entry weights of X, validated and turned.

Why ``mask`` and not ``sample_weight``: scikit-learn's ``sample_weight`` is one
weight per sample (row of X), and its estimator checks hold it to "a weight of
2 is the sample repeated twice". NMF's missing data are entries, not rows (a
clipped frame, a held-out tile, bins above a file's bandwidth), so the
argument is named for what it is: ``mask`` of X's shape, 0 where an entry is
missing or untrusted, 1 where it counts, fractional in between (the loss is
``Σ mask ⊙ d_β(X | W H)``). A mask of shape ``(n_samples,)`` weights whole
samples (frames), which is ``sample_weight``'s meaning and the learner's
cheapest mask. X may hold anything (NaN included) where the mask is 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnmf.errors import DnmfUsageError
from dnmf.nmf.divergence import check_nonnegative

__all__ = ["check_masked_X"]


def check_masked_X(est: Any, X: Any, mask: Any, *, reset: bool) -> tuple[Any, Any, Any]:
    """``(X, V, M)`` with ``V = X.T`` and ``M`` the weights in V's orientation.

    X is validated as the estimators validate it, except that its masked
    entries may be NaN, infinite or negative (they are never read).
    """
    from sklearn.utils.validation import validate_data

    X = validate_data(est, X, reset=reset, dtype=[np.float64, np.float32], ensure_all_finite=False)
    m = np.asarray(mask)
    if m.ndim == 1 or (m.ndim == 2 and m.shape[1] == 1 and X.shape[1] != 1):
        m = np.broadcast_to(m.reshape(-1, 1), X.shape)
    if m.shape != X.shape:
        raise DnmfUsageError(
            f"mask has shape {np.asarray(mask).shape}; pass one weight per entry of X "
            f"{X.shape} or one per sample ({X.shape[0]},)"
        )
    if m.dtype != bool:
        m = m.astype(X.dtype)
        if not bool(np.all(m >= 0)) or not bool(np.all(np.isfinite(m))):
            raise DnmfUsageError("mask has a negative or non-finite weight; pass weights >= 0")
    V = np.ascontiguousarray(X.T)
    M = np.ascontiguousarray(m.T)
    check_nonnegative(np.where(M > 0, V, 0), where="X")
    return X, V, M
