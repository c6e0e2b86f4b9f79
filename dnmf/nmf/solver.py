"""The one H solver: activations under fixed templates, for export, transform, separate.

Learning, export, transform, separation and ``dnmf run`` solve activations
with the same updates (:func:`dnmf.nmf.model.update_H_any`, the model's β and
its penalties on H), so they cannot disagree (STYLE.md 14).

With the templates fixed, the activations of a long spectrogram are coupled
only through the ``T - 1`` frames a template spans, and after ``j`` updates a
frame's activations depend on the data no more than ``j (T - 1)`` frames away
(:func:`dnmf.nmf.lags.halo`). So a block ``[a, z)`` is solved *exactly* as the
whole spectrogram would be by solving a window reaching ``(n_iter + 1)(T - 1)``
frames before it and ``n_iter (T - 1)`` after it (:func:`window_of`) and keeping
the block's frames. At ``T = 1`` the window is the block.

**The start.** Every frame starts from its own level: ``H[:, n] =
mean(V[:, n]) / Σ_{r,t} mean_f W[f, r, t]``, the constant activations whose
model has the frame's mean. It depends on nothing but the frame and the
dictionary, so a file solved alone (transform, separate) and the same audio
inside a corpus (export) start, and with ``tol = 0`` end, the same whatever
the blocks. With ``tol > 0`` each block stops on its own, by scikit-learn's rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnmf.nmf.lags import halo
from dnmf.nmf.model import update_H_any, window_loss

__all__ = ["CHECK_EVERY", "frame_start", "solve_block", "solve_window", "window_of"]

#: Updates between two convergence checks (scikit-learn's ``NMF`` checks every 10).
CHECK_EVERY = 10


def window_of(start: int, stop: int, n_frames: int, lags: int, n_iter: int) -> tuple[int, int]:
    """The frames ``[lo, hi)`` a solve of ``[start, stop)`` with `n_iter` updates reads."""
    before, after = halo(lags, n_iter)
    return max(0, start - before), min(n_frames, stop + after)


def frame_start(V: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``H`` to start from: every frame's mean over the templates' mass (see the module doc).

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
    W : ndarray of shape (n_bins, n_components, n_lags)

    Returns
    -------
    ndarray of shape (n_components, n_frames), V's dtype
    """
    mass = float(np.asarray(W, dtype=np.float64).mean(axis=0).sum())
    level = V.mean(axis=0, dtype=np.float64) / mass if mass > 0 else np.zeros(V.shape[1])
    return np.ascontiguousarray(
        np.broadcast_to(level.astype(V.dtype)[None, :], (W.shape[1], V.shape[1]))
    )


def solve_window(
    V: np.ndarray,
    W: np.ndarray,
    *,
    start: int,
    stop: int,
    beta: float,
    n_iter: int = 200,
    tol: float = 1e-4,
    l1_reg: float = 0.0,
    l2_reg: float = 0.0,
    H0: np.ndarray | None = None,
    check_every: int = CHECK_EVERY,
    solver: str = "mu",
    M: np.ndarray | None = None,
) -> tuple[np.ndarray, float, int]:
    """Activations of the frames ``[start, stop)`` of a window, templates fixed.

    Up to `n_iter` multiplicative updates from ``H0`` (default
    :func:`frame_start`), the loss of ``[start, stop)`` checked every
    `check_every` updates and the solve stopped when it fell by less than
    ``tol`` times its first value since the last check (scikit-learn's rule).
    With a window as :func:`window_of` gives, the result equals a
    whole-spectrogram solve on those frames.

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_window)
    W : ndarray of shape (n_bins, n_components, n_lags)
    start, stop : int
        The frames wanted, within the window.
    beta : float
    n_iter : int, default=200
    tol : float, default=1e-4
        0 runs exactly `n_iter` updates.
    l1_reg, l2_reg : float, default=0.0
        Absolute penalties on H (:meth:`dnmf.nmf.config.LearnConfig.penalties`).
    H0 : ndarray of shape (n_components, n_window), optional
    check_every : int, default=10
    solver : {'mu', 'hals'}, default='mu'
        The model's updates (:class:`dnmf.nmf.config.LearnConfig`).
    M : ndarray of shape (n_bins, n_window), optional
        Weights of the entries (:mod:`dnmf.nmf.masked`): masked entries do not
        pull H, and the loss is ``Σ M ⊙ d_β``. V may hold anything where ``M == 0``;
        the start is then each frame's mean over the entries it keeps.

    Returns
    -------
    H : ndarray of shape (n_components, stop - start)
    loss : float
        β-divergence of the frames ``[start, stop)``.
    n_iter : int
        Updates run.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> W = rng.random((6, 2, 1)).astype(np.float32)
    >>> V = W[:, :, 0] @ rng.random((2, 9)).astype(np.float32)
    >>> H, loss, n = solve_window(V, W, start=0, stop=9, beta=1.0, n_iter=500, tol=0)
    >>> bool(np.abs(W[:, :, 0] @ H - V).max() < 1e-2 * V.max()), n
    (True, 500)
    """
    if M is not None:
        from dnmf.nmf.masked import masked_values

        if solver == "hals":
            solver = "mu"  # a weighted HALS needs a Gram matrix per bin: MU takes the weights
        M = np.ascontiguousarray(M, dtype=V.dtype)
        V = masked_values(V, M)
        if H0 is None:
            H0 = _masked_start(V, M, W)
    H = frame_start(V, W) if H0 is None else np.array(H0, dtype=V.dtype)
    if stop <= start:
        return H[:, start:stop], 0.0, 0

    def loss_of(H: np.ndarray) -> float:
        return window_loss(V, W, H, start=start, stop=stop, beta=beta, M=M)

    first = previous = loss = loss_of(H)
    done = 0
    while done < n_iter:
        step = min(check_every, n_iter - done)
        H = update_H_any(
            V, W, H, beta=beta, n_iter=step, l1_reg=l1_reg, l2_reg=l2_reg, solver=solver, M=M
        )
        done += step
        loss = loss_of(H)
        if tol > 0 and first > 0 and (previous - loss) / first < tol:
            break
        previous = loss
    return np.ascontiguousarray(H[:, start:stop]), float(loss), done


def _masked_start(V: np.ndarray, M: np.ndarray, W: np.ndarray) -> np.ndarray:
    """:func:`frame_start` from each frame's weighted mean (0 for a frame with no weight)."""
    w = M.sum(axis=0, dtype=np.float64)
    level = np.divide(
        (M * V).sum(axis=0, dtype=np.float64), w, out=np.zeros(V.shape[1]), where=w > 0
    )
    mass = float(np.asarray(W, dtype=np.float64).mean(axis=0).sum())
    level = level / mass if mass > 0 else np.zeros(V.shape[1])
    return np.ascontiguousarray(
        np.broadcast_to(level.astype(V.dtype)[None, :], (W.shape[1], V.shape[1]))
    )


def solve_block(
    frames: Any, start: int, stop: int, n_frames: int, W: np.ndarray, *, beta: float,
    n_iter: int, tol: float, l1_reg: float, l2_reg: float, solver: str = "mu",
    weights: Any = None,
) -> tuple[np.ndarray, float, int]:  # fmt: skip
    """The activations of frames ``[start, stop)`` of a spectrogram of ``n_frames`` frames,
    reading ``frames(lo, hi)`` (``V[:, lo:hi]``) on the window of an exact solve;
    ``weights(V, lo, hi)``, if given, is the window's mask (an array, or None for none)."""
    lo, hi = window_of(start, stop, n_frames, W.shape[2], n_iter)
    V = np.ascontiguousarray(frames(lo, hi))
    M = None if weights is None else weights(V, lo, hi)
    return solve_window(
        V, W, start=start - lo, stop=stop - lo, beta=beta, n_iter=n_iter, tol=tol,
        l1_reg=l1_reg, l2_reg=l2_reg, solver=solver, M=M,
    )  # fmt: skip
