"""Initialisations: the templates and the activations to start from, pure.

The learner draws the sample (a few thousand frames spread over the corpus,
chosen from the seed) and calls one of these; the per-block activations are
then seeded from ``(seed, block index)`` (:func:`random_H`), so no
initialisation depends on how many workers there are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "ArrayH",
    "HInit",
    "Informed",
    "RandomH",
    "ScoreH",
    "UniformH",
    "activation_scale",
    "default_init",
    "expand_lags",
    "h_init_of",
    "initial_templates",
    "kmeans_W",
    "leading_svd",
    "nndsvda_W",
    "random_H",
    "random_W",
    "scale_for",
]


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


def leading_svd(
    X: np.ndarray, rank: int, *, seed: int, n_iter: int = 7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The leading ``rank`` singular triplets ``(U, S, Vt)`` of X, cheaply.

    A sample of frames is wide (bins x thousands of frames), so its small side
    is at most a few thousand: the eigenvectors of the Gram matrix of that
    side give the leading triplets in one product and a small ``eigh`` (on
    1025 x 20000 about 0.3 s against 6 s for a full SVD, the 64th singular value
    to 1e-9). Beyond 4096 on both sides, a seeded randomized range finder
    (Halko, Martinsson & Tropp 2011; scikit-learn's ``randomized_svd``).
    """
    m, n = X.shape
    k = min(rank, m, n)
    if min(m, n) <= 4096:
        wide = m <= n
        G = X @ X.T if wide else X.T @ X
        w, E = np.linalg.eigh(G)
        top = np.argsort(w)[::-1][:k]
        S = np.sqrt(np.maximum(w[top], 0.0))
        inv = np.divide(1.0, S, out=np.zeros_like(S), where=S > 0)
        if wide:
            U = E[:, top]
            return U, S, (U.T @ X) * inv[:, None]
        Vt = E[:, top].T
        return (X @ Vt.T) * inv[None, :], S, Vt
    rng = np.random.default_rng([seed, 0x5356])
    Q = X @ rng.standard_normal((n, min(k + 10, n)))
    for _ in range(n_iter):
        Q, _ = np.linalg.qr(Q)
        Q, _ = np.linalg.qr(X.T @ Q)
        Q = X @ Q
    Q, _ = np.linalg.qr(Q)
    U_small, S, Vt = np.linalg.svd(Q.T @ X, full_matrices=False)
    return (Q @ U_small)[:, :k], S[:k], Vt[:k]


def default_init(beta: Any) -> str:
    """The init of a run that names none: ``nndsvda``, but ``random`` for β < 1.

    On the 20-minute benchmark corpus (rank 64, β = 0, 100 passes of the fast
    schedule, H refitted) NNDSVDa's dictionary ended at 1.070 of scikit-learn's
    200-iteration loss and a random one at 1.0004; only β = 0 was measured below 1.
    A β that is not a number falls back to ``nndsvda`` (its validator names it).
    """
    from dnmf.nmf.divergence import beta_name_to_float

    try:
        return "random" if beta_name_to_float(1.0 if beta is None else beta) < 1.0 else "nndsvda"
    except (TypeError, ValueError):
        return "nndsvda"


def nndsvda_W(sample: np.ndarray, rank: int, *, seed: int = 0) -> np.ndarray:
    """NNDSVD of a sample of frames, zeros filled with the sample mean (NNDSVDa).

    Boutsidis & Gallopoulos (2008), as scikit-learn's ``init='nndsvda'`` with
    the roles turned: ``sample`` is ``(n_bins, n_frames)`` and the result is
    the dictionary ``(n_bins, rank)``. Only the leading ``rank`` singular
    triplets are computed (:func:`leading_svd`), as scikit-learn does.
    """
    X = np.asarray(sample, dtype=np.float64)
    U, S, Vt = leading_svd(X, rank, seed=seed)
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


# -- the templates to start from ----------------------------------------------------------
@dataclass(frozen=True)
class Informed:
    """Templates and score found by the informed inits (see :mod:`dnmf.nmf.informed`).

    Attributes
    ----------
    W : ndarray of shape (n_bins, n_informed, lags) or None
        The informed templates (any scale), the first components.
    labels : tuple of str
        A name per informed component (``midi60``, ``kick`` …).
    scores : tuple or None
        Per informed component, the frame ranges of its notes (:class:`ScoreH`).
    """

    W: np.ndarray | None = None
    labels: tuple[str, ...] = ()
    scores: tuple[tuple[tuple[int, int], ...], ...] | None = None


def expand_lags(W: np.ndarray, lags: int) -> np.ndarray:
    """A dictionary ``(n_bins, k)`` as templates ``(n_bins, k, lags)``: the same spectrum
    at every lag, ``1 / lags`` of it each (so ``Λ`` keeps its scale); templates as they are."""
    W = np.asarray(W)
    if W.ndim == 3:
        return W
    if lags == 1:
        return W[:, :, np.newaxis]
    return np.repeat(W[:, :, np.newaxis], lags, axis=2) / lags


def initial_templates(
    cfg: Any, n_bins: int, mean: float, dtype: Any, *, informed: Informed,
    sample: Callable[[], np.ndarray], W_init: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """The templates ``(n_bins, rank, lags)`` to start from, per ``cfg.init``.

    Random entries are ``avg · |N(0, 1)|`` with scikit-learn's scale
    ``avg = sqrt(mean(V) / (rank · lags))``, drawn in the data's dtype (at
    ``lags = 1`` exactly scikit-learn's draw); ``nndsvda`` and ``kmeans`` work
    on ``sample()`` (frames of the corpus); informed templates are scaled to
    that mean entry, so every component starts on the same footing.
    """
    from dnmf.errors import DnmfUsageError
    from dnmf.nmf.lags import unstack_templates

    k, T = cfg.rank, cfg.lags
    avg = scale_for(mean, k * T)
    if cfg.init == "custom":
        if W_init is None:
            raise DnmfUsageError("init='custom' needs a dictionary; pass W_init (or --init MODEL)")
        W = expand_lags(W_init, T)
        if not np.any(W):
            raise DnmfUsageError(
                "the given dictionary is full of zeros, and multiplicative updates never move a "
                "zero; pass a dictionary with positive entries (or another init)"
            )
        if W.shape != (n_bins, k, T):
            raise DnmfUsageError(
                f"the given dictionary has shape {np.shape(W_init)}, the corpus needs "
                f"({n_bins}, {k}{f', {T}' if T > 1 else ''}); pass a model learned on the same "
                "features with the same rank and lags"
            )
        return np.ascontiguousarray(W, dtype=dtype)
    if cfg.init == "nndsvda":
        W0 = nndsvda_W(sample(), k, seed=cfg.seed).astype(dtype)
        return np.ascontiguousarray(expand_lags(W0, T))
    if cfg.init == "kmeans":
        return np.ascontiguousarray(
            expand_lags(kmeans_W(sample(), k, seed=cfg.seed).astype(dtype), T)
        )
    if cfg.init == "uniform":
        W = np.full((n_bins, k, T), avg, dtype=np.float64)
    else:
        W = unstack_templates(random_W(n_bins, k * T, seed=cfg.seed, avg=avg, dtype=dtype), T)
    if informed.W is not None:
        W = np.array(W, dtype=np.float64)
        n_inf = informed.W.shape[1]
        part = np.asarray(informed.W, dtype=np.float64)
        means = part.mean(axis=(0, 2))
        means[means == 0] = 1.0
        W[:, :n_inf, :] = part * (avg / means)[None, :, None]
    return np.ascontiguousarray(W, dtype=dtype)


def activation_scale(mean: float, W: np.ndarray, *, init: str) -> float:
    """The scale the activations start at.

    For the inits drawn at scikit-learn's scale (random, nndsvda, kmeans) it is
    that scale, ``sqrt(mean / (rank · lags))``; for given or informed templates
    ``mean / Σ_{r,t} mean_f W[f, r, t]``, so that the mean of Λ matches the
    mean of V.
    """
    k, T = W.shape[1], W.shape[2]
    if init in ("random", "nndsvda", "kmeans"):
        return scale_for(mean, k * T)
    mass = float(np.asarray(W, dtype=np.float64).mean(axis=0).sum())
    return mean / mass if mass > 0 else scale_for(mean, k * T)


# -- the activations a block starts from (pure; shipped with each visit) -------------------
class HInit(Protocol):
    """The activations a block starts from, from ``(seed, block)``: the same wherever computed."""

    def block(
        self, rank: int, start: int, stop: int, *, block: int, seed: int, avg: float, dtype: Any
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class RandomH:
    """``avg · |N(0, 1)|`` seeded from ``(seed, block)`` (:func:`random_H`)."""

    def block(
        self, rank: int, start: int, stop: int, *, block: int, seed: int, avg: float, dtype: Any
    ) -> np.ndarray:
        return random_H(rank, stop - start, seed=seed, block=block, avg=avg, dtype=dtype)


@dataclass(frozen=True)
class UniformH:
    """``avg`` everywhere (libnmfd's ``'uniform'``)."""

    def block(
        self, rank: int, start: int, stop: int, *, block: int, seed: int, avg: float, dtype: Any
    ) -> np.ndarray:
        return np.full((rank, stop - start), avg, dtype=dtype)


@dataclass(frozen=True)
class ScoreH:
    """Score-informed activations: gates over the notes, zero elsewhere.

    ``intervals[r]`` holds the frame ranges ``(first, stop)`` (corpus frames)
    of component ``r``'s notes; components past ``len(intervals)`` start as
    ``rest`` does.
    """

    intervals: tuple[tuple[tuple[int, int], ...], ...]
    rest: HInit = RandomH()

    def block(
        self, rank: int, start: int, stop: int, *, block: int, seed: int, avg: float, dtype: Any
    ) -> np.ndarray:
        H = self.rest.block(rank, start, stop, block=block, seed=seed, avg=avg, dtype=dtype)
        for r, spans in enumerate(self.intervals):
            H[r] = 0
            for a, z in spans:
                lo, hi = max(a, start), min(z, stop)
                if lo < hi:
                    H[r, lo - start : hi - start] = avg
        return H


@dataclass(frozen=True)
class ArrayH:
    """Given activations (in memory: the estimators, tests, comparisons from a common init)."""

    H: np.ndarray

    def block(
        self, rank: int, start: int, stop: int, *, block: int, seed: int, avg: float, dtype: Any
    ) -> np.ndarray:
        return np.array(self.H[:, start:stop], dtype=dtype)


def h_init_of(cfg: Any, informed: Informed) -> HInit:
    """The activations' start of ``cfg`` (``h_init``, and the score's gates if any)."""
    rest: HInit = UniformH() if cfg.h_init == "uniform" else RandomH()
    if informed.scores is not None:
        return ScoreH(informed.scores, rest)
    return rest
