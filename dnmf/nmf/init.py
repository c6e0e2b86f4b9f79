"""Dictionary initialisations, as pure functions of a sample of frames.

The learner draws the sample (a few thousand frames spread over the corpus,
chosen from the seed) and calls one of these; the per-block activations are
then seeded from ``(seed, block index)`` (:func:`random_H`), so no
initialisation depends on how many workers there are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["kmeans_W", "nndsvda_W", "random_H", "random_W", "scale_for"]


def scale_for(mean: float, rank: int) -> float:
    """scikit-learn's init scale ``sqrt(mean(V) / rank)``."""
    return float(np.sqrt(max(mean, 0.0) / rank))


def random_W(
    n_bins: int, rank: int, *, seed: int, avg: float, dtype: Any = np.float32
) -> np.ndarray:
    """``avg * |N(0, 1)|`` of shape (n_bins, rank), drawn as scikit-learn draws its ``H``.

    With the same seed this equals ``sklearn.decomposition._nmf._initialize_nmf(...,
    init='random')[1].T`` for data of the same mean.
    """
    rng = np.random.RandomState(seed)
    W = avg * rng.standard_normal(size=(rank, n_bins)).astype(dtype, copy=False)
    return np.ascontiguousarray(np.abs(W).T)


def random_H(
    rank: int, n_frames: int, *, seed: int, block: int, avg: float, dtype: Any = np.float32
) -> np.ndarray:
    """Activations of one block, ``avg * |N(0, 1)|``, seeded from ``(seed, block)``."""
    rng = np.random.default_rng([seed, block, 0x4E4D46])
    H = rng.standard_normal((rank, n_frames), dtype=np.float64)
    np.abs(H, out=H)
    H *= avg
    return H.astype(dtype)


def nndsvda_W(sample: np.ndarray, rank: int) -> np.ndarray:
    """NNDSVD of a sample of frames, zeros filled with the sample mean (NNDSVDa).

    Boutsidis & Gallopoulos (2008), as scikit-learn's ``init='nndsvda'`` with
    the roles turned: ``sample`` is ``(n_bins, n_frames)`` and the result is
    the dictionary ``(n_bins, rank)``.
    """
    X = np.asarray(sample, dtype=np.float64)
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    W = np.zeros((X.shape[0], rank))
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    for j in range(1, min(rank, len(S))):
        x, y = U[:, j], Vt[j, :]
        xp, yp = np.maximum(x, 0), np.maximum(y, 0)
        xn, yn = np.abs(np.minimum(x, 0)), np.abs(np.minimum(y, 0))
        xpn, ypn = np.linalg.norm(xp), np.linalg.norm(yp)
        xnn, ynn = np.linalg.norm(xn), np.linalg.norm(yn)
        if xpn * ypn >= xnn * ynn:
            u, sigma = (xp / xpn if xpn else xp), xpn * ypn
        else:
            u, sigma = (xn / xnn if xnn else xn), xnn * ynn
        W[:, j] = np.sqrt(S[j] * sigma) * u
    avg = X.mean()
    W[W < 1e-6] = avg
    return W.astype(sample.dtype)


def kmeans_W(sample: np.ndarray, rank: int, *, seed: int, n_iter: int = 20) -> np.ndarray:
    """k-means centroids of the sample's frames as the dictionary (a warm-up, as diffsptk's).

    k-means++ seeding from ``seed``, then Lloyd iterations; an empty cluster
    keeps its centroid. Centroids are averages of nonnegative frames, so they
    are nonnegative; zeros are lifted to a small fraction of the mean so that
    multiplicative updates can move them.
    """
    X = np.asarray(sample, dtype=np.float64)
    n = X.shape[1]
    rng = np.random.default_rng([seed, 0x4B4D])
    sq = (X * X).sum(axis=0)
    centres = [int(rng.integers(n))]
    d2 = sq + sq[centres[0]] - 2 * X[:, centres[0]] @ X
    for _ in range(1, rank):
        p = np.maximum(d2, 0)
        total = p.sum()
        nxt = int(rng.choice(n, p=p / total)) if total > 0 else int(rng.integers(n))
        centres.append(nxt)
        d2 = np.minimum(d2, sq + sq[nxt] - 2 * X[:, nxt] @ X)
    C = X[:, centres].copy()
    for _ in range(n_iter):
        dist = (C * C).sum(axis=0)[:, None] - 2 * C.T @ X
        label = dist.argmin(axis=0)
        for k in range(rank):
            members = label == k
            if members.any():
                C[:, k] = X[:, members].mean(axis=1)
    floor = 1e-3 * X.mean()
    return np.maximum(C, floor).astype(sample.dtype)
