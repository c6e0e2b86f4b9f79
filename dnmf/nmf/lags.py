"""Convolutive NMF (NMFD): pure NumPy kernels for one window of a spectrogram.

The model (Smaragdis 2004; libnmfd's ``conv_model``) approximates
``V (n_bins, n_frames)`` by templates ``W (n_bins, n_components, n_lags)``
played at the activations ``H (n_components, n_frames)``::

    Λ = Σ_{t < T} W[:, :, t] @ shift(H, t),    shift(H, t)[:, n] = H[:, n - t] (0 for n < t)

**The stacked view.** With ``W_stack = [W_0 | W_1 | … | W_{T-1}]`` of shape
``(n_bins, T·k)`` (lag-major columns: column ``t·k + r`` is ``W[:, r, t]``) and
``H_stack = [shift(H, 0); …; shift(H, T-1)]`` of shape ``(T·k, n_frames)``,
``Λ = W_stack @ H_stack``. For H fixed, NMFD in W *is* a plain NMF with
``T·k`` columns, so the statistics of W are exactly those of
:func:`dnmf.nmf.kernels.chunk_stats` on the stacked factors (cheap forms, loss and
scikit-learn's floors included), and summed over chunks in the same fixed tree.
For W fixed, ``Λ`` is linear in H with nonnegative coefficients, so the
multiplicative update::

    H ← H ⊙ (Σ_t W_tᵀ shift(V ⊙ Λ^(β-2), -t) / (Σ_t W_tᵀ shift(Λ^(β-1), -t) + λ))^γ(β)

never raises the β-divergence (Févotte & Idier 2011), for any β; ``λ`` is
libnmfd's ``sparsity_weight``.

**Windows.** Every kernel here treats its input as a whole spectrogram: H is
0 before its first frame and the data end with its last. A chunk of a corpus
is solved exactly as the whole corpus would be by giving it a window with a
halo (Λ at frame n needs H at ``n-T+1 … n``; the H update at frame m needs the
data at ``m … m+T-1``): the errors of a window's cut edges travel ``T-1``
frames per update, so after ``k`` updates of H on frames
``[a - (k+1)(T-1), z + k(T-1))`` the activations on ``[a - (T-1), z)``, and
so Λ and the statistics of frames ``[a, z)``, equal those of the whole
spectrogram (see :func:`halo`). The learner (:mod:`dnmf.nmf.nmfd_learner`) reads
that window; H stays chunk-aligned: a chunk writes only its own frames.

Floors are those of :mod:`dnmf.nmf.kernels` (scikit-learn's): ``Λ`` floored at
:data:`~dnmf.nmf.divergence.EPSILON` before a negative power, a zero denominator
replaced by EPSILON, factors below ``np.finfo(np.float64).eps`` flushed to 0
after an update (H for β < 1, W for β <= 1); zeros in V never give NaN or inf,
and a zero in H or W stays exactly zero. Arrays keep their dtype (float32 in
the learner; float64 accepted for tests). No kernel writes into its inputs.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> W = rng.random((6, 2, 3), dtype=np.float32)
>>> H = rng.random((2, 20), dtype=np.float32)
>>> V = conv_model(W, H)
>>> H2 = update_H_conv(V, W, rng.random((2, 20), dtype=np.float32), beta=1, n_iter=50)
>>> bool(beta_divergence_conv(V, W, H2, 1) < 1e-2 * V.sum()), H2.dtype
(True, dtype('float32'))
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from dnmf.errors import DnmfUsageError
from dnmf.nmf.divergence import EPSILON, beta_divergence, beta_name_to_float
from dnmf.nmf.divergence import gamma as gamma_of
from dnmf.nmf.kernels import ChunkStats, chunk_stats, mu_step

__all__ = [
    "beta_divergence_conv",
    "check_lags",
    "chunk_stats_conv",
    "component_spectrogram",
    "conv_model",
    "halo",
    "shift",
    "shifted_stack",
    "stack_templates",
    "unstack_templates",
    "update_H_conv",
    "window_stack",
]

FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]
BetaLike: TypeAlias = str | float

#: Factors below this are set to 0 after an update (as dnmf.nmf.kernels, scikit-learn).
_FLUSH: float = float(np.finfo(np.float64).eps)


# --------------------------------------------------------------------------- layout


def check_lags(lags: Any) -> int:
    """``lags`` as a positive int, or one sentence naming the value and the fix."""
    if isinstance(lags, bool) or not isinstance(lags, int | np.integer) or lags < 1:
        raise DnmfUsageError(
            f"lags={lags!r} must be a positive integer (frames per template), e.g. 8"
        )
    return int(lags)


def shift(A: FloatArray, t: int) -> FloatArray:
    """The columns of ``A`` moved right by ``t`` (left for ``t < 0``), zeros shifted in.

    libnmfd's ``shift_operator``: ``shift(A, t)[:, n] = A[:, n - t]``, 0 where
    ``n - t`` is outside ``A``.

    Examples
    --------
    >>> A = np.array([[1.0, 2.0, 3.0]])
    >>> shift(A, 1).tolist(), shift(A, -2).tolist()
    ([[0.0, 1.0, 2.0]], [[3.0, 0.0, 0.0]])
    """
    out = np.zeros_like(A)
    n = A.shape[1]
    t = int(t)
    if t >= 0:
        if t < n:
            out[:, t:] = A[:, : n - t]
    elif -t < n:
        out[:, : n + t] = A[:, -t:]
    return out


def stack_templates(W: FloatArray) -> FloatArray:
    """``W (n_bins, k, T)`` as ``W_stack (n_bins, T·k)``, column ``t·k + r`` = ``W[:, r, t]``."""
    n_bins, k, T = W.shape
    return np.ascontiguousarray(W.transpose(0, 2, 1).reshape(n_bins, T * k))


def unstack_templates(W_stack: FloatArray, lags: int) -> FloatArray:
    """The inverse of :func:`stack_templates`: ``(n_bins, T·k)`` → ``(n_bins, k, T)``."""
    n_bins, cols = W_stack.shape
    return np.ascontiguousarray(W_stack.reshape(n_bins, lags, cols // lags).transpose(0, 2, 1))


def shifted_stack(H_ext: FloatArray, lags: int) -> FloatArray:
    """``[shift(H, 0); …; shift(H, T-1)]`` for the last ``n`` frames of ``H_ext``.

    Parameters
    ----------
    H_ext : ndarray of shape (n_components, n_frames + lags - 1)
        The activations of the frames wanted, preceded by the ``lags - 1``
        frames before them (zeros where there are none).
    lags : int
        T.

    Returns
    -------
    ndarray of shape (lags * n_components, n_frames)
        Row block ``t`` is ``H_ext[:, T-1-t : T-1-t+n_frames]``.
    """
    k, m = H_ext.shape
    n = m - (lags - 1)
    out = np.empty((lags * k, n), dtype=H_ext.dtype)
    for t in range(lags):
        out[t * k : (t + 1) * k] = H_ext[:, lags - 1 - t : lags - 1 - t + n]
    return out


def window_stack(H: FloatArray, start: int, stop: int, lags: int) -> FloatArray:
    """``H_stack`` of the frames ``[start, stop)`` of a window's activations ``H``.

    The ``lags - 1`` frames before ``start`` come from the window (zeros before
    its first frame), so ``Λ`` of those frames is ``W_stack @ window_stack(...)``.
    """
    k = H.shape[0]
    lo = max(0, start - (lags - 1))
    H_ext = np.zeros((k, stop - start + lags - 1), dtype=H.dtype)
    H_ext[:, lo - (start - (lags - 1)) :] = H[:, lo:stop]
    return shifted_stack(H_ext, lags)


def _stack_of(H: FloatArray, lags: int) -> FloatArray:
    """``H_stack`` of a whole spectrogram's H (zeros before frame 0)."""
    k, n = H.shape
    out = np.zeros((lags * k, n), dtype=H.dtype)
    for t in range(lags):
        if t < n:
            out[t * k : (t + 1) * k, t:] = H[:, : n - t]
    return out


def conv_model(W: FloatArray, H: FloatArray) -> FloatArray:
    """``Λ = Σ_t W[:, :, t] @ shift(H, t)``, the NMFD model of a whole spectrogram.

    libnmfd's ``conv_model`` without its added epsilon.

    Parameters
    ----------
    W : ndarray of shape (n_bins, n_components, n_lags)
    H : ndarray of shape (n_components, n_frames)

    Returns
    -------
    ndarray of shape (n_bins, n_frames)

    Examples
    --------
    >>> W = np.zeros((1, 1, 2)); W[0, 0] = [1.0, 0.5]
    >>> conv_model(W, np.array([[1.0, 0.0, 0.0, 2.0]])).tolist()
    [[1.0, 0.5, 0.0, 2.0]]
    """
    n_bins, k, T = W.shape
    if T == 1:
        return W.reshape(n_bins, k) @ H  # type: ignore[no-any-return]
    return stack_templates(W) @ _stack_of(H, T)


def component_spectrogram(W: FloatArray, H: FloatArray, components: Any) -> FloatArray:
    """``Λ_s``: the model spectrogram of the components ``components`` alone."""
    idx = np.asarray(components, dtype=int).reshape(-1)
    return conv_model(W[:, idx, :], H[idx])


def beta_divergence_conv(V: FloatArray, W: FloatArray, H: FloatArray, beta: BetaLike) -> float:
    """``d_β(V | Λ)`` summed over all entries, with Λ the NMFD model of ``W`` and ``H``.

    The number :func:`dnmf.nmf.divergence.beta_divergence` gives for ``Λ`` (scikit-learn's
    floors, float64 accumulation).
    """
    T = W.shape[2]
    Ws, Hs = stack_templates(W), _stack_of(H, T)
    return beta_divergence(V, Ws, Hs, beta, WH=Ws @ Hs)


def halo(lags: int, n_inner: int) -> tuple[int, int]:
    """Frames a chunk's window reaches before and after the chunk.

    A chunk ``[a, z)`` whose H is updated ``n_inner`` times before its
    statistics needs V and H on ``[a - before, z + after)`` with
    ``before = (n_inner + 1)(T - 1)`` and ``after = n_inner (T - 1)``; with
    those, its statistics equal those of the whole spectrogram.

    Examples
    --------
    >>> halo(8, 1), halo(1, 3), halo(4, 0)
    ((14, 7), (0, 0), (3, 0))
    """
    return (n_inner + 1) * (lags - 1), n_inner * (lags - 1)


# --------------------------------------------------------------------------- H


def _shift_sum(G: np.ndarray, k: int, lags: int) -> np.ndarray:
    """``out[:, m] = Σ_t G[t·k:(t+1)·k, m + t]`` (terms past the end left out)."""
    out = G[:k].copy()
    n = G.shape[1]
    for t in range(1, lags):
        if t < n:
            out[:, : n - t] += G[t * k : (t + 1) * k, t:]
    return out


def update_H_conv(
    V: FloatArray,
    W: FloatArray,
    H: FloatArray,
    *,
    beta: BetaLike,
    n_iter: int = 1,
    l1_reg: float = 0.0,
    l2_reg: float = 0.0,
    gamma: float | None = None,
    M: FloatArray | None = None,
) -> FloatArray:
    """`n_iter` multiplicative updates of the activations with the templates fixed.

    ``H ← H ⊙ (Σ_t W_tᵀ shift(V ⊙ Λ^(β-2), -t) / (Σ_t W_tᵀ shift(Λ^(β-1), -t) + l1_reg))^γ``
    on a whole spectrogram (H is 0 before frame 0, the data end with frame
    ``n_frames - 1``). Cheap forms: for β = 1 the denominator is the column
    sums of the templates (the lags past the last frame left out), for β = 2
    the numerator ``Σ_t W_tᵀ shift(V, -t)`` is computed once. Floors as
    :func:`dnmf.nmf.kernels.update_H`; for β < 1 entries below
    ``np.finfo(np.float64).eps`` are flushed to 0. Zeros of H stay zero.

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
        Spectrogram, nonnegative.
    W : ndarray of shape (n_bins, n_components, n_lags)
        Templates, fixed.
    H : ndarray of shape (n_components, n_frames)
        Activations to start from (not modified).
    beta : str or float
        β, or its name.
    n_iter : int, default=1
        Number of updates.
    l1_reg, l2_reg : float, default=0.0
        Absolute L1 and L2 penalties on H: ``l1_reg + l2_reg H`` is added to the
        denominator (libnmfd's ``sparsity_weight`` is an L1).
    gamma : float, optional
        Update exponent; by default :func:`dnmf.nmf.divergence.gamma` of β.
    M : ndarray of shape (n_bins, n_frames), optional
        Weights of the entries (:mod:`dnmf.nmf.masked`): ``M ⊙`` in the numerator
        and the denominator; V must then be 0 where ``M`` is.

    Returns
    -------
    ndarray of shape (n_components, n_frames)
        The updated activations (a new array, H's dtype).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> V, W, H = rng.random((5, 30)), rng.random((5, 2, 4)), rng.random((2, 30))
    >>> H2 = update_H_conv(V, W, H, beta=0.5, n_iter=5)
    >>> bool(beta_divergence_conv(V, W, H2, 0.5) <= beta_divergence_conv(V, W, H, 0.5))
    True
    """
    beta = beta_name_to_float(beta)
    exponent = gamma_of(beta) if gamma is None else float(gamma)
    H = np.array(H, copy=True)
    if n_iter <= 0 or H.shape[1] == 0:
        return H
    k, n = H.shape
    T = W.shape[2]
    Ws = stack_templates(W).astype(H.dtype, copy=False)
    WsT = np.ascontiguousarray(Ws.T)
    if M is not None:
        _update_H_conv_masked(V, Ws, WsT, H, M, beta, n_iter, l1_reg, l2_reg, exponent)
        return H
    num_V = _shift_sum(WsT @ V, k, T) if beta == 2 else None
    # β = 1: Σ_t colsum(W_t) over the lags that stay inside the data.
    den_1 = _edge_den(W.sum(axis=0).astype(H.dtype), n, H.dtype) if beta == 1 else None
    for _ in range(n_iter):
        L = Ws @ _stack_of(H, T)
        if beta == 1:
            np.maximum(L, EPSILON, out=L)
            np.divide(V, L, out=L)
            num = _shift_sum(WsT @ L, k, T)
            assert den_1 is not None
            den = den_1.copy()
        elif beta == 2:
            assert num_V is not None
            num = num_V.copy()
            den = _shift_sum(WsT @ L, k, T)
        else:
            P, L = _general_pair(V, L, beta)
            den = _shift_sum(WsT @ P, k, T)
            del P
            num = _shift_sum(WsT @ L, k, T)
        del L
        mu_step(H, num, den, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent)
        if beta < 1:
            H[H < _FLUSH] = 0.0
    return H


def _update_H_conv_masked(
    V: np.ndarray, Ws: np.ndarray, WsT: np.ndarray, H: np.ndarray, M: np.ndarray, beta: float,
    n_iter: int, l1_reg: float, l2_reg: float, exponent: float,
) -> None:  # fmt: skip
    """The weighted updates of :func:`update_H_conv`, in place (cheap forms kept: for β = 1
    the denominator ``Σ_t W_tᵀ shift(M, -t)`` and for β = 2 the numerator, once)."""
    from dnmf.nmf.masked import weighted_factors

    k, T = H.shape[0], Ws.shape[1] // H.shape[0]
    den_1 = _shift_sum(WsT @ M, k, T) if beta == 1 else None
    num_2 = _shift_sum(WsT @ (M * V), k, T) if beta == 2 else None
    for _ in range(n_iter):
        Q, P = weighted_factors(V, Ws @ _stack_of(H, T), M, beta)
        num = num_2.copy() if Q is None else _shift_sum(WsT @ Q, k, T)  # type: ignore[union-attr]
        den = den_1.copy() if P is None else _shift_sum(WsT @ P, k, T)  # type: ignore[union-attr]
        del Q, P
        mu_step(H, num, den, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent)
        if beta < 1:
            H[H < _FLUSH] = 0.0


def _edge_den(cs: np.ndarray, n: int, dtype: Any) -> np.ndarray:
    """β = 1 denominator: ``den[:, m] = Σ_{t : m + t < n} cs[:, t]``."""
    k, T = cs.shape
    den = np.empty((k, n), dtype=dtype)
    den[:] = cs.sum(axis=1, keepdims=True)
    # The last frames lose the lags that would reach past the end.
    for m in range(max(0, n - (T - 1)), n):
        den[:, m] = cs[:, : n - m].sum(axis=1)
    return den


def _general_pair(V: np.ndarray, L: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``(Λ^(β-1), V ⊙ Λ^(β-2))`` with scikit-learn's floors; consumes ``L``.

    Λ is floored at EPSILON for the numerator when β < 2 and for the
    denominator when β < 1 (as :func:`dnmf.nmf.kernels.update_H`).
    """
    if beta < 1:
        np.maximum(L, EPSILON, out=L)
        P = np.power(L, beta - 1)
        np.divide(P, L, out=L)  # Λ^(β-2), Λ floored
    else:
        P = np.power(L, beta - 1)
        if beta < 2:
            np.maximum(L, EPSILON, out=L)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.power(L, beta - 2, out=L)
    L *= V
    return P, L


# --------------------------------------------------------------------------- chunk statistics


def chunk_stats_conv(
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
    M: FloatArray | None = None,
    gamma: float | None = None,
) -> ChunkStats:
    """The per-chunk kernel of NMFD: update H on a window, then the chunk's statistics.

    The window ``V[:, :]``, ``H[:, :]`` covers the chunk ``[start, stop)`` (in
    window frames) and its halo (:func:`halo`); its first frame is the
    spectrogram's first frame or at least ``(n_inner + 1)(T - 1)`` frames
    before ``start``, its end the spectrogram's end or at least
    ``n_inner (T - 1)`` frames after ``stop``. Then the returned H and
    statistics are those a whole-spectrogram NMFD computes for these frames.

    Runs `n_inner` :func:`update_H_conv` updates on the window (if `update_h`),
    then, with ``H_stack`` the shifted activations of the chunk's frames, returns
    :func:`dnmf.nmf.kernels.chunk_stats` of ``(V_chunk, W_stack, H_stack)``.

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_window)
    W : ndarray of shape (n_bins, n_components, n_lags)
    H : ndarray of shape (n_components, n_window)
        Activations of the window (not modified).
    start, stop : int
        The chunk's frames within the window.
    beta : str or float
    n_inner : int, default=1
    l1_reg_H, l2_reg_H : float, default=0.0
        Absolute penalties on H (:func:`update_H_conv`).
    update_h : bool, default=True
        False keeps H as given (``fix_H``).
    M : ndarray of shape (n_bins, n_window), optional
        Weights of the window's entries (V 0 where they are): the weighted kernels
        of :mod:`dnmf.nmf.masked`; ``den`` then comes full.
    gamma : float, optional
        Exponent of the H updates; by default :func:`dnmf.nmf.divergence.gamma` of β.

    Returns
    -------
    ChunkStats
    """
    beta = beta_name_to_float(beta)
    T = W.shape[2]
    if update_h and n_inner > 0:
        H = update_H_conv(
            V, W, H, beta=beta, n_iter=n_inner, l1_reg=l1_reg_H, l2_reg=l2_reg_H, gamma=gamma, M=M
        )
    Hs = window_stack(H, start, stop, T)
    Vc = np.ascontiguousarray(V[:, start:stop])
    Ws = stack_templates(W).astype(V.dtype, copy=False)
    if M is not None:
        from dnmf.nmf.masked import chunk_stats_masked

        Mc = np.ascontiguousarray(M[:, start:stop])
        s = chunk_stats_masked(Vc, Ws, Hs, Mc, beta=beta, update_h=False)
    else:
        s = chunk_stats(Vc, Ws, Hs, beta=beta, update_h=False)
    return ChunkStats(H=np.ascontiguousarray(H[:, start:stop]), num=s.num, den=s.den, loss=s.loss)
