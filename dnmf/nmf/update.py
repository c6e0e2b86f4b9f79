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

from typing import Any

import numpy as np

from dnmf.nmf.kernels import EPSILON
from dnmf.nmf.kernels import gamma as gamma_of
from dnmf.nmf.lags import (
    normalize_templates,
    stack_templates,
    uncorrelation_term,
    unstack_templates,
    update_templates,
)

__all__ = [
    "accumulate",
    "full_denominator",
    "normalize_state",
    "online_update",
    "update_dictionary",
]


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
    if rho == 0.0:
        state.W = update_templates(
            state.W, num.astype(dtype), den.astype(dtype), beta=cfg.beta, l1_reg=l1, l2_reg=l2,
            uncorr_weight=cfg.uncorr_weight, fixed=fixed,
        )  # fmt: skip
    else:
        online_update(
            state, num, den, beta=cfg.beta, rho=rho, l1=l1, l2=l2,
            uncorr_weight=cfg.uncorr_weight, fixed=fixed,
        )  # fmt: skip


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
    sums for β = 1, the Gram matrix ``H Hᵀ`` for β = 2.
    """
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


def normalize_state(state: Any, *, norm: str, beta: float, fixed: Any = None) -> None:
    """Unit templates; the scales move to the pending H scales and the accumulators.

    With ``W' = W / s`` and ``H' = s H``, the online accumulators become
    ``A' = A s^(1 - 1/γ)``, ``B' = B s`` (per stacked column), so the next
    update is the same as without the normalisation.
    """
    W, scale = normalize_templates(state.W, norm=norm, fixed=fixed)  # type: ignore[arg-type]
    state.W = W
    s = np.asarray(scale, dtype=np.float64)
    state.pending *= s[None, :]
    if state.A is not None and state.B is not None:
        s_stack = np.tile(s, W.shape[2])[None, :]
        state.A = state.A * s_stack ** (1.0 - 1.0 / gamma_of(beta))
        state.B = state.B * s_stack
