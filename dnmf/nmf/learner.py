"""The learner: one loop for every model, its state, its start, and an in-memory fit.

DESIGN.md sections 3 and 4. The frames of ``V`` are cut into blocks (by default
one block per Zarr chunk of the corpus). An epoch visits every block once, in a
seeded permutation, in steps of ``batch_chunks`` blocks
(:func:`dnmf.nmf.plan.epoch_steps`). A visit (:func:`dnmf.nmf.visit.visit_block`)
updates the block's warm-started H on its window and returns the block's
statistics for W; the statistics of a step are summed in a fixed binary tree
(:func:`dnmf.nmf.plan.tree_sum`), so the sum does not depend on which worker
ran what; then W is updated (:func:`dnmf.nmf.update.update_dictionary`) and
each template normalised. One step over all blocks with ρ = 0 is exactly
Lee & Seung's multiplicative update (scikit-learn's ``NMF(solver='mu')`` at
``lags = 1``; a whole-spectrogram NMFD at ``lags > 1``).

``H`` is double-buffered: epoch ``e`` reads buffer ``e % 2`` and writes the
other, so a task retried after a lost worker reads what the first attempt read.
Normalising W rescales every block's H; instead of touching every block, the
scale waits in ``pending[b]`` and is applied when block ``b`` is next read.

Where visits run is the backend's business (:mod:`dnmf.backends`): in this
process on NumPy arrays, or on a Dask cluster. The arithmetic is the same, so
are the results, bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dnmf.errors import DnmfUsageError
from dnmf.nmf.accel import extrapolate, reset
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.init import HInit, Informed, activation_scale, h_init_of, initial_templates
from dnmf.nmf.plan import (
    epoch_steps,
    h_buffers,
    min_sample_blocks,
    passes_done,
    plan_visits,
    sample_blocks,
    visited_twice,
)
from dnmf.nmf.state import LearnState
from dnmf.nmf.update import normalize_state, update_dictionary
from dnmf.nmf.visit import VisitParams

__all__ = [
    "FitResult",
    "Progress",
    "check_config",
    "fit_in_memory",
    "learn",
    "loss_to_error",
    "run_step",
    "start_state",
    "visit_params",
]


@dataclass
class Progress:
    """What :func:`learn` tells its ``on_step`` callback after every step."""

    epoch: int
    step_in_epoch: int
    steps_in_epoch: int
    global_step: int
    frames: int
    seconds: float
    epoch_done: bool
    loss: float | None


# -- the start ------------------------------------------------------------------------------
def check_config(
    cfg: LearnConfig, n_bins: int, n_frames: int, informed: Informed | None = None, *,
    bound_rank: bool = True,
) -> None:  # fmt: skip
    """Rank, informed components, fixed components and lags against the data; one sentence each.

    ``bound_rank=False`` allows a rank above ``min(n_bins, n_frames)``, as
    scikit-learn's estimators do for random inits.
    """
    informed = informed or Informed()
    if bound_rank and cfg.rank > min(n_bins, n_frames):
        raise DnmfUsageError(
            f"rank={cfg.rank} is larger than the data allows (V is {n_bins} x {n_frames}); "
            f"pass a rank of at most {min(n_bins, n_frames)}"
        )
    if cfg.init == "nndsvda":
        most = min(n_bins, n_frames, cfg.sample_frames)
        if cfg.rank > most:
            raise DnmfUsageError(
                f"init = 'nndsvda' can only be used when n_components <= min(n_samples, "
                f"n_features) (here rank={cfg.rank} > {most}: V is {n_bins} x {n_frames}, "
                f"sampled to {min(n_frames, cfg.sample_frames)} frames); pass a smaller rank "
                "or init='random'"
            )
    n_inf = len(informed.labels)
    if cfg.rank < n_inf:
        raise DnmfUsageError(
            f"rank={cfg.rank} is smaller than the {n_inf} informed components "
            f"({', '.join(informed.labels[:6])}{', …' if n_inf > 6 else ''}); pass --rank {n_inf} "
            "or more, or leave --rank out"
        )
    bad = [c for c in cfg.fixed_components if not 0 <= c < cfg.rank]
    if bad:
        raise DnmfUsageError(
            f"fixed component {bad[0]} is out of range for rank={cfg.rank}; "
            f"pass indices from 0 to {cfg.rank - 1}"
        )
    if cfg.lags > n_frames:
        raise DnmfUsageError(
            f"lags={cfg.lags} is longer than the corpus ({n_frames} frames); pass fewer lags"
        )


def start_state(
    cfg: LearnConfig, backend: Any, *, informed: Informed | None = None,
    W_init: np.ndarray | None = None, mean: float | None = None, bound_rank: bool = True,
) -> LearnState:  # fmt: skip
    """Validate the data and set up epoch 0: the templates and the activations' scale.

    ``mean`` is ``mean(V)`` if the caller has it already (from
    ``backend.summary()``, which also checks V for NaN, infinite and negative
    values). The activations start at :func:`dnmf.nmf.init.activation_scale`.
    """
    informed = informed or Informed()
    check_config(cfg, backend.n_bins, backend.n_frames, informed, bound_rank=bound_rank)
    if mean is None:
        total, count = backend.summary()
        mean = total / max(count, 1.0)
    W = initial_templates(
        cfg, backend.n_bins, mean, backend.dtype, informed=informed, W_init=W_init,
        sample=lambda: backend.sample(cfg.sample_frames, cfg.seed),
    )  # fmt: skip
    n_blocks = len(backend.blocks())
    return LearnState(
        W=W,
        pending=np.ones((n_blocks, cfg.rank)),
        visited=np.zeros(n_blocks, dtype=bool),
        avg=activation_scale(mean, W, init=cfg.init),
        pending_prev=np.ones((n_blocks, cfg.rank)) if h_buffers(cfg) == 3 else None,
    )


def visit_params(
    cfg: LearnConfig, n_bins: int, avg: float, h_init: HInit, mask: Any = None
) -> VisitParams:
    """What every visit of a run with ``cfg`` shares (``mask``: the backend's
    :class:`dnmf.nmf.mask.MaskSpec`, if the run is masked)."""
    _, _, l1_H, l2_H = cfg.penalties(n_bins, 1)
    return VisitParams(
        beta=cfg.beta, n_inner=cfg.n_inner, l1_H=l1_H, l2_H=l2_H, seed=cfg.seed, avg=avg,
        update_h=not cfg.fix_H, h_init=h_init, solver=cfg.solver, n_buffers=h_buffers(cfg),
        mask=mask, gamma=cfg.update_exponent(),
    )  # fmt: skip


# -- one step ---------------------------------------------------------------------------------
def run_step(
    cfg: LearnConfig, backend: Any, state: LearnState, blocks: list[int], *, rho: float,
    p: VisitParams, done_this_epoch: set[int], tag: str,
) -> tuple[float, int]:  # fmt: skip
    """Visit ``blocks`` on the backend and fold their statistics into the state.

    Returns the step's loss and frames. ``rho`` is the accumulators' forgetting
    (0: the plain multiplicative update of full batch). Each visit reads the chunks
    of H the state's records name, checked, and the crcs of the chunks the step
    wrote go into them (:mod:`dnmf.io.buffers`).
    """
    assert state.pending is not None and state.visited is not None
    ranges = backend.blocks()
    twice = None
    if p.n_buffers == 3 and state.pending_prev is not None:
        twice = visited_twice(len(ranges), state.epoch, **stage_kw(cfg, ranges))
        p = replace(p, extrapolate=state.accel[4] if state.accel is not None else 0.0)
    visits = plan_visits(
        blocks, ranges, n_frames=backend.n_frames, lags=cfg.lags, n_inner=p.n_inner,
        epoch=state.epoch, visited=state.visited, pending=state.pending,
        done_this_epoch=done_this_epoch, n_buffers=p.n_buffers,
        pending_prev=state.pending_prev, twice=twice, records=state.H_crc,
    )  # fmt: skip
    num, den, loss, written = backend.step(visits, state.W, state.epoch, p, tag)
    state.record_H((state.epoch + 1) % p.n_buffers, written, p.n_buffers)
    frames = sum(ranges[b][1] - ranges[b][0] for b in blocks)
    for b in blocks:
        if state.pending_prev is not None:
            state.pending_prev[b] = state.pending[b]
        state.pending[b] = 1.0
        state.visited[b] = True
    if not cfg.fix_W:
        update_dictionary(
            state, num, den, cfg=cfg, rho=rho, frames=frames, n_bins=backend.n_bins,
            dtype=backend.dtype,
        )  # fmt: skip
        if cfg.norm is not None and not cfg.fix_H:
            normalize_state(
                state, norm=cfg.norm, beta=cfg.beta, fixed=cfg.fixed_components,
                hals=cfg.solver == "hals",
            )  # fmt: skip
    state.global_step += 1
    return loss, frames


# -- the loop ---------------------------------------------------------------------------------
def learn(
    cfg: LearnConfig,
    backend: Any,
    state: LearnState,
    *,
    h_init: HInit | None = None,
    on_step: Callable[[Progress], None] | None = None,
    checkpoint: Callable[[LearnState], None] | None = None,
) -> LearnState:
    """Run epochs from ``state`` until ``cfg.epochs`` or convergence; returns the final state.

    ``h_init`` is how a block's activations start (default: ``cfg.h_init``).
    ``checkpoint(state)`` is called every ``cfg.checkpoint_every`` steps and at
    the end of every epoch, before ``on_step(progress)``; an exception raised by
    ``on_step`` stops the run with its last checkpoint written.
    """
    ranges = backend.blocks()
    p = visit_params(
        cfg, backend.n_bins, state.avg, h_init or h_init_of(cfg, Informed()),
        getattr(backend, "mask", None),
    )  # fmt: skip
    if p.mask is not None and cfg.solver == "hals":
        raise DnmfUsageError(
            "solver='hals' does not take a mask (a weighted HALS needs one Gram matrix per bin); "
            "pass solver='mu'"
        )
    n_blocks = len(ranges)
    skw = stage_kw(cfg, ranges)
    full_batch = cfg.batch_chunks is None or cfg.batch_chunks >= n_blocks
    fast = h_buffers(cfg) == 3
    # scikit-learn's MiniBatchNMF: the forget factor applies per pass over the data,
    # so a step of a fraction f of the frames forgets forget_factor ** f.
    rho_base = 0.0 if full_batch else cfg.forget_factor
    while (
        passes_done(n_blocks, state.done_epochs, fast=fast, **passes_kw(skw)) < cfg.epochs - 1e-9
        and not state.converged
    ):
        sample = sample_blocks(n_blocks, state.epoch, **skw) if fast else None
        if sample is None:
            steps = epoch_steps(n_blocks, cfg.batch_chunks, seed=cfg.seed, epoch=state.epoch)
        else:
            steps = [sample]
        while state.step_in_epoch < len(steps):
            t0 = time.perf_counter()
            blocks = steps[state.step_in_epoch]
            done = {b for s in steps[: state.step_in_epoch] for b in s}
            frames = sum(ranges[b][1] - ranges[b][0] for b in blocks)
            rho = rho_base ** (frames / backend.n_frames) if rho_base else 0.0
            tag = f"e{state.epoch}-s{state.step_in_epoch}"
            loss, frames = run_step(
                cfg, backend, state, blocks, rho=rho, p=p, done_this_epoch=done, tag=tag
            )
            if fast:
                _accelerate(cfg, state, loss, n_blocks, skw)
            state.epoch_loss += loss
            state.step_in_epoch += 1
            epoch_done = state.step_in_epoch == len(steps)
            if epoch_done:
                state.losses.append(state.epoch_loss)
                if len(state.losses) >= 2 and _whole(fast, n_blocks, state.epoch, skw):
                    prev, cur = state.losses[-2], state.losses[-1]
                    rel = (prev - cur) / prev if prev > 0 else math.inf
                    # a rise (the extrapolation's safeguard at work) is not convergence
                    state.converged = cfg.tol > 0 and rel < cfg.tol and not (fast and rel < 0)
                state.epoch += 1
                state.step_in_epoch = 0
                state.epoch_loss = 0.0
            if checkpoint is not None and (
                epoch_done or state.global_step % cfg.checkpoint_every == 0
            ):
                checkpoint(state)
            if on_step is not None:  # after the checkpoint: a callback that raises stops cleanly
                on_step(
                    Progress(
                        epoch=state.epoch - (1 if epoch_done else 0),
                        step_in_epoch=state.step_in_epoch or len(steps),
                        steps_in_epoch=len(steps), global_step=state.global_step,
                        frames=frames, seconds=time.perf_counter() - t0,
                        epoch_done=epoch_done, loss=state.losses[-1] if epoch_done else None,
                    )
                )  # fmt: skip
            if epoch_done:
                break
    return state


def stage_kw(cfg: LearnConfig, ranges: list[tuple[int, int]]) -> dict[str, int]:
    """The keywords of :func:`dnmf.nmf.plan.sample_blocks` for a run of ``cfg`` on these blocks."""
    block_frames = ranges[0][1] - ranges[0][0] if ranges else 1
    return {
        "seed": cfg.seed, "budget": cfg.epochs,
        "min_blocks": min_sample_blocks(cfg.sample_min_frames, block_frames),
    }  # fmt: skip


def passes_kw(skw: dict[str, int]) -> dict[str, int]:
    """Of :func:`stage_kw`, the keywords :func:`dnmf.nmf.plan.passes_done` takes."""
    return {"budget": skw["budget"], "min_blocks": skw["min_blocks"]}


def _whole(fast: bool, n_blocks: int, epoch: int, kw: dict[str, int]) -> bool:
    """Whether epoch ``epoch`` and the one before it both visited every block."""
    if not fast:
        return True
    return sample_blocks(n_blocks, epoch, **kw) is None and (
        epoch == 0 or sample_blocks(n_blocks, epoch - 1, **kw) is None
    )


def _accelerate(
    cfg: LearnConfig, state: LearnState, loss: float, n_blocks: int, kw: dict[str, int]
) -> None:
    """The fast schedule's extrapolation of W after a step (:mod:`dnmf.nmf.accel`).

    Multiplicative updates only (HALS is exact per column already). A step on
    a new sample starts the extrapolation over: its loss is of other frames.
    """
    if cfg.fix_W or cfg.solver != "mu":
        return
    here = sample_blocks(n_blocks, state.epoch, **kw)
    before = sample_blocks(n_blocks, state.epoch - 1, **kw) if state.epoch else [-1]
    if here != before:
        reset(state, loss)
        return
    if extrapolate(state, loss, fixed=cfg.fixed_components, beta=cfg.beta) and cfg.norm is not None:
        if not cfg.fix_H:
            normalize_state(state, norm=cfg.norm, beta=cfg.beta, fixed=cfg.fixed_components)


def pending_scales(state: LearnState, ranges: list[tuple[int, int]], n_frames: int) -> np.ndarray:
    """The pending scales per frame, ``(rank, n_frames)`` float64, to apply to stored H."""
    assert state.pending is not None
    widths = [z - a for a, z in ranges]
    if len(set(widths[:-1])) <= 1 and widths:
        return np.repeat(state.pending, widths[0], axis=0)[:n_frames].T  # type: ignore[no-any-return]
    return np.repeat(state.pending, widths, axis=0).T  # type: ignore[no-any-return]


# -- in memory --------------------------------------------------------------------------------
@dataclass
class FitResult:
    """What :func:`fit_in_memory` learned.

    Attributes
    ----------
    W : ndarray of shape (n_bins, n_components) or (n_bins, n_components, n_lags)
        The dictionary; a one-lag model is 2-D, as it is on disk.
    H : ndarray of shape (n_components, n_frames)
        The activations as the last epoch left them (pending scales applied), V's dtype.
    losses : list of float
        The β-divergence of every epoch (with that epoch's updated H and the W it started with).
    state : LearnState
    """

    W: np.ndarray
    H: np.ndarray
    losses: list[float]
    state: LearnState


def fit_in_memory(
    V: np.ndarray,
    cfg: LearnConfig,
    *,
    W_init: np.ndarray | None = None,
    H_init: np.ndarray | None = None,
    informed: Informed | None = None,
    block_frames: int = 8192,
    M: np.ndarray | None = None,
    mask: Any = None,
) -> FitResult:
    """Learn from a spectrogram in memory with the learner the cluster runs (same arithmetic).

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
        Spectrogram, nonnegative (float32, or float64 for tests).
    cfg : LearnConfig
    W_init : ndarray of shape (n_bins, rank) or (n_bins, rank, lags), optional
        The dictionary for ``init='custom'``.
    H_init : ndarray of shape (rank, n_frames), optional
        Activations to start from instead of ``cfg.h_init``.
    informed : Informed, optional
        Informed templates and score (see :mod:`dnmf.nmf.informed`).
    block_frames : int, default=8192
        Frames per block (the result does not depend on it in full batch).
    M : ndarray of shape (n_bins, n_frames), optional
        Weights of the entries (bool or float): the loss is ``Σ M ⊙ d_β``
        (:mod:`dnmf.nmf.masked`); V may hold anything where ``M == 0``.
    mask : MaskSpec, optional
        Other mask sources (:mod:`dnmf.nmf.mask`), computed per block.

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V = rng.random((20, 300)).astype(np.float32)
    >>> r = fit_in_memory(V, LearnConfig(rank=2, lags=4, epochs=5))
    >>> r.W.shape, r.H.shape, len(r.losses)
    ((20, 2, 4), (2, 300), 5)
    """
    from dnmf.backends import MemoryBackend

    be = MemoryBackend(V, block_frames, M=M, mask=mask)
    informed = informed or Informed()
    state = start_state(cfg, be, informed=informed, W_init=W_init)
    h_init = h_init_of(cfg, informed)
    if H_init is not None:
        from dnmf.nmf.init import ArrayH

        h_init = ArrayH(np.asarray(H_init))
    state = learn(cfg, be, state, h_init=h_init)
    H = (
        be.activations(state.latest_buffer) * pending_scales(state, be.blocks(), V.shape[1])
    ).astype(V.dtype)
    W = np.ascontiguousarray(state.W[:, :, 0]) if cfg.lags == 1 else state.W
    return FitResult(W=W, H=H, losses=list(state.losses), state=state)


def loss_to_error(loss: float, beta: float) -> float:
    """scikit-learn's ``reconstruction_err_`` from a β-divergence: ``sqrt(2 * loss)``."""
    return math.sqrt(2.0 * max(loss, 0.0))
