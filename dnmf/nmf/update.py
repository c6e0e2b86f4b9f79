"""The dictionary's side of a step: the W update (full batch or online) and the normalisation.

One function for the batch and the online update (STYLE.md 13): full batch is
the multiplicative update from the step's statistics (``ρ = 0``, exactly
Lee-Seung, scikit-learn's ``NMF(solver='mu')``), minibatch the online
accumulators of Lefèvre, Bach & Févotte (2011) as scikit-learn's
``MiniBatchNMF``. Templates are ``W (n_bins, k, T)``; the statistics and the
accumulators are stacked ``(n_bins, T·k)`` (:func:`dnmf.nmf.lags.stack_templates`),
which at ``T = 1`` is W's own layout.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from dnmf.errors import DnmfUsageError
from dnmf.nmf.divergence import EPSILON, BetaLike, FloatArray, beta_name_to_float, update_exponent
from dnmf.nmf.divergence import gamma as gamma_of
from dnmf.nmf.kernels import hals_rows, mu_step
from dnmf.nmf.lags import stack_templates, unstack_templates
from dnmf.nmf.masked import MaskedDen

__all__ = [
    "accumulate",
    "full_denominator",
    "hals_update",
    "normalize_W",
    "normalize_state",
    "normalize_templates",
    "online_update",
    "stacked_columns",
    "uncorrelation_term",
    "update_W",
    "update_dictionary",
    "update_templates",
]


NormName: TypeAlias = Literal["l2", "max"] | None

#: Factors below this are set to 0 after an update (scikit-learn's stability
#: flush in ``_fit_multiplicative_update``).
_FLUSH: float = float(np.finfo(np.float64).eps)


def update_dictionary(
    state: Any, num: np.ndarray, den: np.ndarray, *, cfg: Any, rho: float, frames: int,
    n_bins: int, dtype: Any,
) -> None:  # fmt: skip
    """Fold one step's summed statistics into ``state.W`` (and its accumulators).

    ``rho == 0`` is the plain multiplicative update; otherwise
    :func:`online_update` with forgetting ``rho``. The W penalties are scaled
    by the step's frames (scikit-learn's).
    """
    fixed = np.array(cfg.fixed_components, dtype=int) if cfg.fixed_components else None
    l1_unit, l2_unit, _, _ = cfg.penalties(n_bins, 1)
    l1, l2 = l1_unit * frames, l2_unit * frames
    if cfg.solver == "hals":
        hals_update(state, num, den, rho=rho, l1=l1, l2=l2, fixed=fixed)
    elif rho == 0.0:
        state.W = update_templates(
            state.W, num.astype(dtype), den.astype(dtype), beta=cfg.beta, l1_reg=l1, l2_reg=l2,
            uncorr_weight=cfg.uncorr_weight, fixed=fixed, gamma=cfg.update_exponent(),
        )  # fmt: skip
    else:
        online_update(
            state, num, den, beta=cfg.beta, rho=rho, l1=l1, l2=l2,
            uncorr_weight=cfg.uncorr_weight, fixed=fixed,
        )  # fmt: skip


def hals_update(
    state: Any, num: np.ndarray, den: np.ndarray, *, rho: float, l1: float, l2: float,
    fixed: np.ndarray | None = None,
) -> None:  # fmt: skip
    """One HALS sweep of the dictionary (β = 2, one lag) from ``V Hᵀ`` and ``H Hᵀ``.

    :func:`dnmf.nmf.kernels.hals_rows` on ``Wᵀ``: exact coordinate descent,
    column by column. Full batch (``rho = 0``) uses the step's statistics; a
    minibatch step their online sums ``A ← ρA + V Hᵀ``, ``B ← ρB + H Hᵀ``
    (Mairal et al. 2010), started from the first step's.
    """
    if rho == 0.0 or state.A is None or state.B is None:
        A, B = np.array(num, dtype=np.float64), np.array(den, dtype=np.float64)
    else:
        A, B = rho * state.A + num, rho * state.B + den
    if rho != 0.0:
        state.A, state.B = A, B
    W = state.W[:, :, 0]
    Wt = np.ascontiguousarray(W.T, dtype=np.float64)
    hals_rows(Wt, B, np.ascontiguousarray(A.T), l1_reg=l1, l2_reg=l2)
    W_new = Wt.T.astype(state.W.dtype)
    if fixed is not None:
        W_new[:, fixed] = W[:, fixed]
    state.W = np.ascontiguousarray(W_new[:, :, np.newaxis])


def online_update(
    state: Any, num: np.ndarray, den: np.ndarray, *, beta: float, rho: float, l1: float,
    l2: float, uncorr_weight: float = 0.0, fixed: np.ndarray | None = None,
) -> None:  # fmt: skip
    """The online multiplicative update (Lefèvre, Bach & Févotte 2011), as scikit-learn's.

    ``A ← ρA + W^(1/γ) ⊙ num``, ``B ← ρB + den_full``, ``W ← (A / B)^γ`` on the
    stacked templates: the accumulators carry the dictionary they were
    computed with, so an old step's statistics keep their meaning after W has
    moved.
    """
    W3 = state.W.astype(np.float64)
    T = W3.shape[2]
    W = stack_templates(W3)
    d = full_denominator(W, den, beta)
    if uncorr_weight > 0 and T > 1:
        d += uncorr_weight * uncorrelation_term(W3)
    if l1 > 0:
        d += l1
    if l2 > 0:
        d += l2 * W
    out = unstack_templates(accumulate(state, W, num, d, beta=beta, rho=rho), T)
    out = out.astype(state.W.dtype)
    if fixed is not None:
        out[:, fixed, :] = state.W[:, fixed, :]
    state.W = out


def full_denominator(W: np.ndarray, den: np.ndarray, beta: float) -> np.ndarray:
    """A step's denominator statistics in the shape of the stacked ``W`` (a fresh array).

    ``den`` is sent in its cheap form (:func:`dnmf.nmf.kernels.chunk_stats`): column
    sums for β = 1, the Gram matrix ``H Hᵀ`` for β = 2; a masked run's
    :class:`~dnmf.nmf.masked.MaskedDen` makes itself full.
    """
    if isinstance(den, MaskedDen):
        return den.full(W, beta)
    if beta == 1:
        sums = np.where(den == 0, 1.0, den)
        return np.broadcast_to(sums[None, :], W.shape).copy()
    if beta == 2:
        return W @ den  # type: ignore[no-any-return]
    return den.copy()


def accumulate(
    state: Any, W: np.ndarray, num: np.ndarray, d: np.ndarray, *, beta: float, rho: float
) -> np.ndarray:
    """Fold one step into the accumulators ``A``, ``B`` and return ``(A / B)^γ`` in float64.

    ``W`` is the float64 stacked dictionary the step was computed with, ``d``
    its full (penalised) denominator. Accumulators not started yet start as
    scikit-learn's do, from the current dictionary (``A = W^(1/γ)``, ``B = 1``),
    so every entry stays alive.
    """
    g = gamma_of(beta)
    d[d == 0] = EPSILON
    W_g = W ** (1.0 / g) if g != 1 else W
    numer = num * W_g
    if state.A is None or state.B is None:
        # scikit-learn's MiniBatchNMF start: A = W^(1/γ), B = 1, whose ratio is the
        # current dictionary. Starting from the first step's statistics alone would
        # zero for good every entry that step saw no energy for (a silent first block).
        state.A, state.B = np.array(W_g, dtype=np.float64), np.ones_like(W, dtype=np.float64)
    state.A = rho * state.A + numer
    state.B = rho * state.B + d
    W_new = state.A / state.B
    if g != 1:
        W_new **= g
    if beta <= 1:
        W_new[W_new < np.finfo(np.float64).eps] = 0.0
    return W_new  # type: ignore[no-any-return]


def normalize_state(
    state: Any, *, norm: str, beta: float, fixed: Any = None, hals: bool = False
) -> None:
    """Unit templates; the scales move to the pending H scales and the accumulators.

    With ``W' = W / s`` and ``H' = s H``, the online accumulators become
    ``A' = A s^(1 - 1/γ)``, ``B' = B s`` (per stacked column), so the next
    update is the same as without the normalisation.
    """
    W, scale = normalize_templates(state.W, norm=norm, fixed=fixed)  # type: ignore[arg-type]
    state.W = W
    s = np.asarray(scale, dtype=np.float64)
    state.pending *= s[None, :]
    if getattr(state, "pending_prev", None) is not None:
        state.pending_prev *= s[None, :]
    if state.A is not None and state.B is not None and not hals:
        s_stack = np.tile(s, W.shape[2])[None, :]
        state.A = state.A * s_stack ** (1.0 - 1.0 / gamma_of(beta))
        state.B = state.B * s_stack
    elif state.A is not None and state.B is not None:  # HALS sums: V Hᵀ and H Hᵀ of H' = s H
        state.A = state.A * s[None, :]
        state.B = state.B * np.outer(s, s)


def update_W(
    W: FloatArray,
    num: FloatArray,
    den: FloatArray,
    *,
    beta: BetaLike,
    l1_reg: float = 0.0,
    l2_reg: float = 0.0,
    gamma: float | None = None,
    fixed: npt.ArrayLike | None = None,
    extra_den: FloatArray | None = None,
) -> FloatArray:
    """One multiplicative update of the dictionary from summed chunk statistics.

    ``W ← W ⊙ (num / (den_full + l1_reg + l2_reg W))^γ`` where ``den_full`` is
    `den` in full: ``den[None, :]`` for β = 1 (a zero sum replaced by 1, as
    scikit-learn does), ``W @ den`` for β = 2, `den` itself otherwise. A
    denominator that is exactly zero becomes :data:`EPSILON`; for ``β <= 1``
    entries below ``np.finfo(np.float64).eps`` are then set to 0. With `num`
    and `den` summed over all chunks of V this is scikit-learn's
    ``_multiplicative_update_h`` step (its H is our ``W.T``) followed by the
    flush of ``_fit_multiplicative_update``.

    Parameters
    ----------
    W : ndarray of shape (n_bins, n_components)
        Current dictionary (not modified).
    num : ndarray of shape (n_bins, n_components)
        Summed :attr:`ChunkStats.num` (or an online accumulator).
    den : ndarray of shape (n_components,), (n_components, n_components) or (n_bins, n_components)
        Summed :attr:`ChunkStats.den`, in the form of β.
    beta : str or float
        β, or its name.
    l1_reg, l2_reg : float, default=0.0
        Absolute L1 and L2 penalties on W (scikit-learn's ``l1_reg_H``,
        ``l2_reg_H``).
    gamma : float, optional
        Update exponent; by default :func:`gamma` of β.
    fixed : array_like of bool of shape (n_components,) or of int, optional
        Columns of W to keep exactly as they are (semi-supervised NMF).
    extra_den : ndarray of shape (n_bins, n_components), optional
        Added to the full denominator before the penalties (libnmfd's
        uncorrelatedness term of stacked templates, :func:`update_templates`).

    Returns
    -------
    ndarray of shape (n_bins, n_components)
        The new dictionary, a new array of W's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V, W, H = rng.random((5, 7)), rng.random((5, 2)), rng.random((2, 7))
    >>> from dnmf.nmf.kernels import chunk_stats
    >>> s = chunk_stats(V, W, H, beta=1, update_h=False)
    >>> W2 = update_W(W, s.num, s.den, beta=1, fixed=[0])
    >>> bool((W2[:, 0] == W[:, 0]).all())
    True
    """
    beta = beta_name_to_float(beta)
    exponent = update_exponent(beta, gamma)
    n_bins, k = W.shape
    expected = (k,) if beta == 1 else (k, k) if beta == 2 else (n_bins, k)
    if isinstance(den, MaskedDen):  # a masked run's: full already, or made so
        den_full = den.full(W, beta)
    elif num.shape != (n_bins, k) or den.shape != expected:
        raise ValueError(
            f"update_W got num of shape {num.shape} and den of shape {den.shape} for W of "
            f"shape {W.shape} and beta={beta:g}; expected {(n_bins, k)} and {expected}, "
            "as chunk_stats returns them"
        )
    elif beta == 1:
        d = np.array(den, copy=True)
        d[d == 0] = 1.0
        den_full = d[np.newaxis, :]
    elif beta == 2:
        den_full = W @ den
    else:
        den_full = np.array(den, copy=True)
    if extra_den is not None:
        den_full = den_full + extra_den
    W_new = np.array(W, copy=True)
    mu_step(
        W_new, np.array(num, copy=True), den_full, l1_reg=l1_reg, l2_reg=l2_reg, exponent=exponent
    )
    if beta <= 1:
        W_new[W_new < _FLUSH] = 0.0
    if fixed is not None:
        cols = np.asarray(fixed)
        W_new[:, cols] = W[:, cols]
    return W_new


def normalize_W(
    W: FloatArray,
    H: FloatArray | None = None,
    *,
    norm: NormName = "l2",
) -> tuple[FloatArray, FloatArray | None, FloatArray]:
    """Scale the columns of W to unit norm and the rows of H the other way.

    ``W_new = W / scale`` and ``H_new = scale[:, None] * H``, so ``W_new @ H_new``
    equals ``W @ H`` up to rounding. A zero column is left as it is (its scale
    is 1).

    Parameters
    ----------
    W : ndarray of shape (n_bins, n_components)
        Dictionary.
    H : ndarray of shape (n_components, n_frames), optional
        Activations to rescale.
    norm : {'l2', 'max'} or None, default='l2'
        Unit Euclidean norm, unit maximum, or no scaling.

    Returns
    -------
    W : ndarray of shape (n_bins, n_components)
        The scaled dictionary (a new array).
    H : ndarray of shape (n_components, n_frames) or None
        The rescaled activations (a new array), or None when none was given.
    scale : ndarray of shape (n_components,)
        What each column was divided by.

    Examples
    --------
    >>> import numpy as np
    >>> W, s = normalize_W(np.array([[3.0, 0.0], [4.0, 0.0]]))[::2]
    >>> W.tolist(), s.tolist()
    ([[0.6, 0.0], [0.8, 0.0]], [5.0, 1.0])
    """
    if norm is None:
        scale = np.ones(W.shape[1], dtype=W.dtype)
    elif norm == "l2":
        scale = np.sqrt(np.einsum("ij,ij->j", W, W))
    elif norm == "max":
        scale = np.abs(W).max(axis=0, initial=0.0)
    else:
        raise DnmfUsageError(f"norm={norm!r} is not a column norm; use 'l2', 'max' or None")
    scale = scale.astype(W.dtype, copy=False)
    scale[scale == 0] = 1
    W_new = W / scale
    H_new = None if H is None else H * scale[:, np.newaxis]
    return W_new, H_new, scale


def stacked_columns(components: Any, k: int, lags: int) -> np.ndarray:
    """Columns of the stacked templates that hold ``components`` (every lag)."""
    comps = np.asarray(components, dtype=int).reshape(-1)
    return np.concatenate([t * k + comps for t in range(lags)]) if comps.size else comps


def update_templates(
    W: FloatArray,
    num: FloatArray,
    den: FloatArray,
    *,
    beta: BetaLike,
    l1_reg: float = 0.0,
    l2_reg: float = 0.0,
    uncorr_weight: float = 0.0,
    fixed: Any = None,
    gamma: float | None = None,
) -> FloatArray:
    """One multiplicative update of every template lag from summed block statistics.

    :func:`update_W` on the stacked templates: for H fixed,
    NMFD in W is a plain NMF with ``T·k`` columns. ``uncorr_weight`` adds
    libnmfd's ``Σ_{t' ≠ t} W_t'`` to the denominator of ``W_t`` (nothing at
    ``T = 1``). `fixed` components keep every lag.

    Parameters
    ----------
    W : ndarray of shape (n_bins, n_components, n_lags)
    num, den : ndarray
        Summed statistics, stacked (:func:`window_stats`).
    beta : str or float
    l1_reg, l2_reg : float, default=0.0
        Absolute penalties on W (scikit-learn's scaling, by the step's frames).
    uncorr_weight : float, default=0.0
    fixed : array_like of int, optional
    gamma : float, optional
        Update exponent; by default :func:`dnmf.nmf.divergence.gamma` of β.

    Returns
    -------
    ndarray of shape (n_bins, n_components, n_lags)
        The new templates, a new array of W's dtype.
    """
    _n_bins, k, T = W.shape
    extra = None
    if uncorr_weight > 0 and T > 1:
        extra = (uncorr_weight * uncorrelation_term(W)).astype(W.dtype, copy=False)
    cols = None
    if fixed is not None and len(np.atleast_1d(fixed)):
        cols = stacked_columns(fixed, k, T)
    W_new = update_W(
        stack_templates(W), num, den, beta=beta, l1_reg=l1_reg, l2_reg=l2_reg, gamma=gamma,
        fixed=cols, extra_den=extra,
    )  # fmt: skip
    return unstack_templates(W_new, T)


def uncorrelation_term(W: FloatArray) -> FloatArray:
    """``Σ_{t' ≠ t} W[:, r, t']`` for every column ``t·k + r`` of the stacked templates."""
    total = W.sum(axis=2, keepdims=True)
    return stack_templates(total - W)


def normalize_templates(
    W: FloatArray, *, norm: NormName = "l2", fixed: Any = None
) -> tuple[FloatArray, FloatArray]:
    """Scale each template (all its lags together) to unit norm.

    :func:`normalize_W` on the ``(n_bins·T, k)`` view of the
    templates: ``W_new[:, r, :] = W[:, r, :] / scale[r]``; multiplying ``H[r]``
    by ``scale[r]`` leaves Λ unchanged. A zero template, and the `fixed` ones,
    keep scale 1.

    Returns
    -------
    W : ndarray of shape (n_bins, n_components, n_lags)
    scale : ndarray of shape (n_components,)

    Examples
    --------
    >>> W = np.zeros((2, 1, 2)); W[:, 0, 0] = [3.0, 4.0]
    >>> normalize_templates(W)[1].tolist()
    [5.0]
    """
    n_bins, k, T = W.shape
    flat = W.reshape(n_bins, k) if T == 1 else W.transpose(0, 2, 1).reshape(n_bins * T, k)
    _, _, scale = normalize_W(flat, None, norm=norm)
    if fixed is not None and len(np.atleast_1d(fixed)):
        scale[np.asarray(fixed, dtype=int)] = 1
    return W / scale[None, :, None], scale
