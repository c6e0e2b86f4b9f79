"""The distributed NMFD learner: chunk visits with halos, a fixed-order reduction, W per lag.

The plain learner's design (:mod:`dnmf.nmf.learner`, DESIGN.md sections 3 and 4) with
convolutive templates ``W (n_bins, n_components, n_lags)``:

* An epoch visits every block of frames once, in steps of ``batch_chunks``
  blocks (:func:`dnmf.nmf.learner.epoch_steps`). A visit (:func:`visit_block_conv`)
  reads ``V`` and the activations of its block **and of a halo** around it
  (:func:`dnmf.nmf.lags.halo`: ``(n_inner + 1)(T - 1)`` frames before,
  ``n_inner (T - 1)`` after, from the neighbouring blocks' H), runs
  ``n_inner`` updates of H on that window, writes back its own frames only
  (H stays chunk-aligned, one writer per chunk) and returns the statistics of
  its own frames for every lag (:func:`dnmf.nmf.lags.chunk_stats_conv`).
* The statistics of a step are summed in the fixed binary tree of
  :func:`dnmf.nmf.learner.tree_sum`, so W is bitwise the same for any number of
  workers, and the templates are updated at once for every lag
  (:func:`dnmf.nmf.lags.update_templates`); each template (all its lags) is then
  normalised, its scale waiting in ``pending`` until its blocks are read.
* H is double-buffered as in the plain learner: epoch ``e`` reads buffer
  ``e % 2`` and writes the other. A neighbour's halo is read from the buffer
  that holds its activations at the start of the step (the one written in
  this epoch if it was visited in an earlier step, else ``e % 2``), with its
  pending scale, or seeded as it would be seeded itself if it was never
  visited: what a visit reads is decided by the plan, never by timing, and
  no visit reads what another visit of the same step writes.

With one step per epoch over all blocks (the default), an epoch is exactly
``n_inner`` multiplicative updates of H followed by one of W on the whole
corpus, as a whole-spectrogram NMFD would do (tested to float64 rounding).
Minibatch steps use the online accumulators of :func:`dnmf.nmf.learner.online_update`
on the stacked templates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from dnmf.errors import DnmfUsageError
from dnmf.nmf.lags import (
    chunk_stats_conv,
    halo,
    normalize_templates,
    stack_templates,
    uncorrelation_term,
    unstack_templates,
    update_templates,
)
from dnmf.nmf.learner import (
    Backend,
    LearnConfig,
    LearnState,
    Progress,
    Stats,
    add_stats,
    epoch_steps,
    tree_sum,
)

__all__ = [
    "ArrayH",
    "HInit",
    "NMFDConfig",
    "NMFDResult",
    "RandomH",
    "ScoreH",
    "UniformH",
    "fit_nmfd",
    "learn_nmfd",
    "start_state_nmfd",
    "visit_block_conv",
]

NMFDInit = Literal["random", "uniform", "pitched", "drums", "custom"]


class NMFDConfig(LearnConfig):
    """Everything that decides the learned templates of a convolutive NMF (NMFD).

    The fields of :class:`dnmf.nmf.learner.LearnConfig` (``rank``, ``beta``,
    ``epochs``, ``batch_chunks``, ``n_inner``, ``seed``, ``norm``,
    ``fixed_components`` …) keep their meaning; ``norm`` and
    ``fixed_components`` apply to whole templates (all lags). The penalties
    are libnmfd's (``alpha_W``, ``alpha_H``, ``l1_ratio`` must stay 0).

    Parameters
    ----------
    lags : int
        T, the frames of each template (libnmfd's ``num_template_frames``).
    init : {'random', 'uniform', 'pitched', 'drums', 'custom'}
        Templates: seeded random, constant, harmonic combs of ``pitches``,
        averaged drum samples from the class folders of ``drums``, or a given
        dictionary (``W_init``). Components beyond the informed ones start
        random.
    h_init : {'random', 'uniform'}
        Activations: seeded per block (as the plain learner) or constant. With
        ``scores``, the score's components start as gates over their notes
        and zero elsewhere (and stay zero there).
    pitches : tuple of float
        MIDI pitches of the ``pitched`` templates (one component each).
    pitch_tol_up, pitch_tol_down : float
        Semitones each harmonic band reaches above and below the pitch.
    n_harmonics : int
        Harmonics per comb.
    drums : str or None
        Folder whose subfolders (one per class, e.g. ``kick/``) hold samples.
    scores : str or None
        CSV of notes ``onset, duration, pitch[, file]`` (seconds; ``pitch`` a
        MIDI number or a drum class) for score-informed activations.
    onset_tol : float
        Seconds a note's gate is widened at both ends.
    sparsity_weight : float
        Added to the H update's denominator (libnmfd's ``nmf_conv``).
    uncorr_weight : float
        Weight of ``Σ_{t' ≠ t} W_t'`` in the update of ``W_t`` (libnmfd).
    fix_W, fix_H : bool
        Keep all templates, or all activations, as initialised.
    """

    model: Literal["nmfd"] = "nmfd"
    lags: int = Field(8, gt=0)
    init: NMFDInit = "random"  # type: ignore[assignment]
    h_init: Literal["random", "uniform"] = "random"
    pitches: tuple[float, ...] = ()
    pitch_tol_up: float = Field(0.75, ge=0.0)
    pitch_tol_down: float = Field(0.75, ge=0.0)
    n_harmonics: int = Field(25, gt=0)
    drums: str | None = None
    scores: str | None = None
    onset_tol: float = Field(0.025, ge=0.0)
    sparsity_weight: float = Field(0.0, ge=0.0)
    uncorr_weight: float = Field(0.0, ge=0.0)
    fix_W: bool = False
    fix_H: bool = False

    @model_validator(mode="after")
    def _check_nmfd(self) -> NMFDConfig:
        for name in ("alpha_W", "alpha_H", "l1_ratio"):
            if getattr(self, name):
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is not used by NMFD; pass sparsity_weight "
                    "(activations) or uncorr_weight (templates) instead"
                )
        if self.init == "pitched" and not self.pitches:
            raise ValueError("init='pitched' needs MIDI pitches; pass e.g. --pitches 60,62,64")
        if self.init == "drums" and not self.drums:
            raise ValueError("init='drums' needs a folder of class folders; pass --drums FOLDER")
        if self.fixed_components and self.init == "random":
            raise ValueError(
                "fixed templates need an informed or given init; pass --init pitched, drums, "
                "uniform or a model store"
            )
        if self.fix_W and self.fix_H:
            raise ValueError("fix_W and fix_H together leave nothing to learn; pass one of them")
        return self

    @classmethod
    def from_options(cls, **options: Any) -> NMFDConfig:
        return super().from_options(**options)  # type: ignore[return-value]

    @property
    def l1_H(self) -> float:
        return self.sparsity_weight


# -- activations at the start (pure; shipped with each visit) --------------------------
class HInit(Protocol):
    """The activations a block starts from, from ``(seed, block)``: the same wherever computed."""

    def block(
        self, rank: int, start: int, stop: int, *, block: int, seed: int, avg: float, dtype: Any
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class RandomH:
    """``avg · |N(0, 1)|`` seeded from ``(seed, block)`` (:func:`dnmf.nmf.init.random_H`)."""

    def block(
        self, rank: int, start: int, stop: int, *, block: int, seed: int, avg: float, dtype: Any
    ) -> np.ndarray:
        from dnmf.nmf.init import random_H

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
    """Given activations (in memory: tests and comparisons from a common init)."""

    H: np.ndarray

    def block(
        self, rank: int, start: int, stop: int, *, block: int, seed: int, avg: float, dtype: Any
    ) -> np.ndarray:
        return np.array(self.H[:, start:stop], dtype=dtype)


# -- one visit (runs on a worker) ---------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """The part ``[start, stop)`` of block ``block``'s activations that a window reads."""

    block: int
    block_start: int
    block_stop: int
    start: int
    stop: int
    buffer: int
    scale: np.ndarray | None
    fresh: bool


@dataclass(frozen=True)
class ConvVisit:
    """One block's visit: its frames, its window ``[lo, hi)`` and where the window's H lies."""

    block: int
    start: int
    stop: int
    lo: int
    hi: int
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class ConvParams:
    """What every visit of a run shares (small, shipped with each task)."""

    beta: float
    lags: int
    n_inner: int
    l1_H: float
    update_h: bool
    seed: int
    avg: float
    h_init: HInit


class BlockIO(Protocol):
    def read_V(self, start: int, stop: int) -> np.ndarray: ...

    def read_H(self, buffer: int, start: int, stop: int) -> np.ndarray: ...

    def write_H(self, buffer: int, start: int, stop: int, H: np.ndarray) -> None: ...


def visit_block_conv(
    io: BlockIO, visit: ConvVisit, W: np.ndarray, epoch: int, p: ConvParams
) -> Stats:
    """Update one block's H on its window and return its (num, den, loss), in float64.

    Writes buffer ``(epoch + 1) % 2`` for the block's own frames; reads only
    what the plan names (never what this step writes).
    """
    W = np.array(W, order="C", copy=True)  # aligned, as in the plain learner
    V = np.require(io.read_V(visit.lo, visit.hi), requirements=["C_CONTIGUOUS", "ALIGNED"])
    rank = W.shape[1]
    H = np.empty((rank, visit.hi - visit.lo), dtype=V.dtype)
    for piece in visit.pieces:
        if piece.fresh:
            full = p.h_init.block(
                rank, piece.block_start, piece.block_stop, block=piece.block, seed=p.seed,
                avg=p.avg, dtype=V.dtype,
            )  # fmt: skip
            part = full[:, piece.start - piece.block_start : piece.stop - piece.block_start]
        else:
            part = io.read_H(piece.buffer, piece.start, piece.stop)
            if piece.scale is not None:
                part = part * piece.scale.astype(part.dtype)[:, None]
        H[:, piece.start - visit.lo : piece.stop - visit.lo] = part
    s = chunk_stats_conv(
        V, W, H, start=visit.start - visit.lo, stop=visit.stop - visit.lo, beta=p.beta,
        n_inner=p.n_inner, l1_reg_H=p.l1_H, update_h=p.update_h,
    )  # fmt: skip
    io.write_H((epoch + 1) % 2, visit.start, visit.stop, s.H)
    return s.num.astype(np.float64), s.den.astype(np.float64), float(s.loss)


def _visit_task_conv(
    V_url: str, H_url: str, visit: ConvVisit, W: np.ndarray, epoch: int, p: ConvParams
) -> Stats:
    from dnmf.cluster import one_blas_thread
    from dnmf.io.blocks import ZarrBlockIO

    with one_blas_thread():
        return visit_block_conv(ZarrBlockIO(V_url, H_url), visit, W, epoch, p)


# -- planning a step (pure) -----------------------------------------------------------------
def plan_visits(
    blocks: Sequence[int],
    ranges: Sequence[tuple[int, int]],
    *,
    n_frames: int,
    lags: int,
    n_inner: int,
    epoch: int,
    visited: np.ndarray,
    pending: np.ndarray,
    done_this_epoch: set[int],
) -> list[ConvVisit]:
    """The visits of one step: each block's window and the buffer of every piece of it.

    A piece of block ``b`` is read from buffer ``(epoch + 1) % 2`` if ``b`` was
    visited in an earlier step of this epoch (``done_this_epoch``), else from
    ``epoch % 2``, scaled by its pending scale; a block never visited is seeded.
    """
    before, after = halo(lags, n_inner)
    block_frames = ranges[0][1] - ranges[0][0]
    out = []
    for b in blocks:
        a, z = ranges[b]
        lo, hi = max(0, a - before), min(n_frames, z + after)
        pieces = []
        for nb in range(lo // block_frames, (hi - 1) // block_frames + 1):
            na, nz = ranges[nb]
            fresh = not bool(visited[nb])
            buffer = (epoch + 1) % 2 if nb in done_this_epoch else epoch % 2
            scale = None if fresh else np.asarray(pending[nb], dtype=np.float64)
            pieces.append(Piece(nb, na, nz, max(na, lo), min(nz, hi), buffer, scale, fresh))
        out.append(ConvVisit(b, a, z, lo, hi, tuple(pieces)))
    return out


def run_step(
    backend: Any, visits: list[ConvVisit], W: np.ndarray, epoch: int, p: ConvParams, tag: str
) -> Stats:
    """Run a step's visits on the backend's workers (or in-process) and tree-sum them."""
    if hasattr(backend, "client"):
        c = backend.client
        W_f = c.scatter(W, broadcast=True, hash=False)
        key = f"dnmf-nmfd-{backend.token}-{tag}"
        # The plain learner's block -> worker preference (its V cache), if the backend has one:
        # where a visit runs, never what it computes.
        homes = getattr(backend, "_homes", None)
        home = homes() if homes is not None else (lambda b: {})
        leaves = [
            c.submit(
                _visit_task_conv, backend.V_url, backend.H_url, v, W_f, epoch, p,
                key=f"{key}-visit-{v.block}", retries=3, **home(v.block),
            )
            for v in visits
        ]  # fmt: skip
        counter = iter(range(len(leaves)))
        root = tree_sum(
            leaves,
            lambda x, y: c.submit(add_stats, x, y, key=f"{key}-sum-{next(counter)}", retries=3),
        )
        result: Stats = root.result()
        del W_f, leaves, root
        return result
    from dnmf.cluster import one_blas_thread

    with one_blas_thread():  # as on a worker: the same arithmetic
        leaves = [visit_block_conv(backend, v, W, epoch, p) for v in visits]
    return tree_sum(leaves, add_stats)  # type: ignore[no-any-return]


# -- the start ---------------------------------------------------------------------------------
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


def check_config(cfg: NMFDConfig, n_bins: int, n_frames: int, informed: Informed) -> None:
    """Rank, fixed templates and lags against the data; one sentence each."""
    if cfg.rank > min(n_bins, n_frames):
        raise DnmfUsageError(
            f"rank={cfg.rank} is larger than the data allows (V is {n_bins} x {n_frames}); "
            f"pass a rank of at most {min(n_bins, n_frames)}"
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


def initial_templates(
    cfg: NMFDConfig, n_bins: int, mean: float, dtype: Any, *, informed: Informed,
    W_init: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """The templates ``(n_bins, rank, lags)`` to start from, per ``cfg.init``.

    Random entries are ``avg · |N(0, 1)|`` with scikit-learn's scale
    ``avg = sqrt(mean(V) / (rank · lags))``; informed templates are scaled to
    that mean entry, so every component starts on the same footing.
    """
    from dnmf.nmf import init as inits

    k, T = cfg.rank, cfg.lags
    avg = inits.scale_for(mean, k * T)
    if cfg.init == "custom":
        if W_init is None:
            raise DnmfUsageError("init='custom' needs a dictionary; pass W_init (or --init MODEL)")
        W: np.ndarray = np.asarray(W_init, dtype=np.float64)
        if W.ndim == 2:  # a plain NMF dictionary: the same spectrum at every lag
            W = np.repeat(W[:, :, None], T, axis=2) / T
        if W.shape != (n_bins, k, T):
            raise DnmfUsageError(
                f"the given templates have shape {W.shape}, the corpus needs ({n_bins}, {k}, {T}); "
                "pass a model learned on the same features with the same rank and lags"
            )
        return np.ascontiguousarray(W, dtype=dtype)
    if cfg.init == "uniform":
        W = np.full((n_bins, k, T), avg, dtype=np.float64)
    else:
        W = unstack_templates(
            inits.random_W(n_bins, k * T, seed=cfg.seed, avg=avg, dtype=np.float64), T
        )
    if informed.W is not None:
        n_inf = informed.W.shape[1]
        part = np.asarray(informed.W, dtype=np.float64)
        means = part.mean(axis=(0, 2))
        means[means == 0] = 1.0
        W[:, :n_inf, :] = part * (avg / means)[None, :, None]
    return np.ascontiguousarray(W, dtype=dtype)


def h_init_of(cfg: NMFDConfig, informed: Informed) -> HInit:
    rest: HInit = UniformH() if cfg.h_init == "uniform" else RandomH()
    if informed.scores is not None:
        return ScoreH(informed.scores, rest)
    return rest


def start_state_nmfd(
    cfg: NMFDConfig, backend: Backend, *, informed: Informed | None = None,
    W_init: np.ndarray | None = None, mean: float | None = None,
) -> LearnState:  # fmt: skip
    """Validate the data and set up epoch 0: the templates and the activations' scale.

    The activations start at ``avg_H = mean(V) / Σ_{r,t} mean_f W[f, r, t]``
    (times the init's pattern), so that the mean of Λ matches that of V.
    ``mean`` is ``mean(V)`` if the caller has it (from ``backend.summary()``,
    which also checks V).
    """
    informed = informed or Informed()
    check_config(cfg, backend.n_bins, backend.n_frames, informed)
    if mean is None:
        total, count = backend.summary()
        mean = total / max(count, 1.0)
    W = initial_templates(
        cfg, backend.n_bins, mean, backend.dtype, informed=informed, W_init=W_init
    )
    mass = float(W.mean(axis=0, dtype=np.float64).sum())
    from dnmf.nmf.init import scale_for

    avg = mean / mass if mass > 0 else scale_for(mean, cfg.rank * cfg.lags)
    n_blocks = len(backend.blocks())
    return LearnState(
        W=W, pending=np.ones((n_blocks, cfg.rank)), visited=np.zeros(n_blocks, dtype=bool), avg=avg
    )


# -- the learner ------------------------------------------------------------------------------
def learn_nmfd(
    cfg: NMFDConfig,
    backend: Backend,
    state: LearnState,
    *,
    h_init: HInit,
    on_step: Callable[[Progress], None] | None = None,
    checkpoint: Callable[[LearnState], None] | None = None,
    stop_after_steps: int | None = None,
) -> LearnState:
    """Run epochs from ``state`` until ``cfg.epochs`` or convergence; returns the final state.

    As :func:`dnmf.nmf.learner.learn`, with convolutive visits and template updates.
    ``state.W`` has shape ``(n_bins, rank, lags)``.
    """
    beta, T = cfg.beta, cfg.lags
    fixed = np.array(cfg.fixed_components, dtype=int) if cfg.fixed_components else None
    ranges = backend.blocks()
    n_inner = 0 if cfg.fix_H else cfg.n_inner
    p = ConvParams(beta, T, n_inner, cfg.l1_H, not cfg.fix_H, cfg.seed, state.avg, h_init)
    full_batch = cfg.batch_chunks is None or cfg.batch_chunks >= len(ranges)
    rho_base = 0.0 if full_batch else cfg.forget_factor
    normalize = cfg.norm is not None and not cfg.fix_W and not cfg.fix_H
    assert state.pending is not None and state.visited is not None
    steps_run = 0
    while state.done_epochs < cfg.epochs and not state.converged:
        steps = epoch_steps(len(ranges), cfg.batch_chunks, seed=cfg.seed, epoch=state.epoch)
        while state.step_in_epoch < len(steps):
            t0 = time.perf_counter()
            blocks = steps[state.step_in_epoch]
            done = {b for s in steps[: state.step_in_epoch] for b in s}
            visits = plan_visits(
                blocks, ranges, n_frames=backend.n_frames, lags=T, n_inner=n_inner,
                epoch=state.epoch, visited=state.visited, pending=state.pending,
                done_this_epoch=done,
            )  # fmt: skip
            tag = f"e{state.epoch}-s{state.step_in_epoch}"
            num, den, loss = run_step(backend, visits, state.W, state.epoch, p, tag)
            frames = sum(ranges[b][1] - ranges[b][0] for b in blocks)
            for b in blocks:
                state.pending[b] = 1.0
                state.visited[b] = True
            dt = backend.dtype
            if not cfg.fix_W:
                if rho_base == 0.0:  # full batch: the multiplicative update of every lag
                    state.W = update_templates(
                        state.W, num.astype(dt), den.astype(dt), beta=beta,
                        uncorr_weight=cfg.uncorr_weight, fixed=fixed,
                    )  # fmt: skip
                else:
                    rho = rho_base ** (frames / backend.n_frames)
                    _online_update(state, num, den, cfg=cfg, rho=rho, fixed=fixed)
                if normalize:
                    _normalize(state, cfg, fixed)
            state.epoch_loss += loss
            state.step_in_epoch += 1
            state.global_step += 1
            steps_run += 1
            epoch_done = state.step_in_epoch == len(steps)
            if epoch_done:
                state.losses.append(state.epoch_loss)
                if len(state.losses) >= 2:
                    prev, cur = state.losses[-2], state.losses[-1]
                    state.converged = cfg.tol > 0 and prev > 0 and (prev - cur) / prev < cfg.tol
                state.epoch += 1
                state.step_in_epoch = 0
                state.epoch_loss = 0.0
            if on_step is not None:
                on_step(
                    Progress(
                        epoch=state.epoch - (1 if epoch_done else 0),
                        step_in_epoch=state.step_in_epoch or len(steps),
                        steps_in_epoch=len(steps), global_step=state.global_step,
                        frames=frames, seconds=time.perf_counter() - t0,
                        epoch_done=epoch_done, loss=state.losses[-1] if epoch_done else None,
                    )
                )  # fmt: skip
            if checkpoint is not None and (
                epoch_done or state.global_step % cfg.checkpoint_every == 0
            ):
                checkpoint(state)
            if stop_after_steps is not None and steps_run >= stop_after_steps:
                return state
            if epoch_done:
                break
    return state


def _online_update(
    state: LearnState, num: np.ndarray, den: np.ndarray, *, cfg: NMFDConfig, rho: float,
    fixed: np.ndarray | None,
) -> None:  # fmt: skip
    """The online update of :func:`dnmf.nmf.learner.online_update` on the stacked templates.

    ``A ← ρA + W^(1/γ) ⊙ num``, ``B ← ρB + den_full (+ uncorr term)``,
    ``W ← (A / B)^γ``.
    """
    from dnmf.nmf.learner import accumulate, full_denominator

    W3 = state.W.astype(np.float64)
    W = stack_templates(W3)
    d = full_denominator(W, den, cfg.beta)
    if cfg.uncorr_weight > 0:
        d += cfg.uncorr_weight * uncorrelation_term(W3)
    W_new = accumulate(state, W, num, d, beta=cfg.beta, rho=rho)
    out = unstack_templates(W_new, cfg.lags).astype(state.W.dtype)
    if fixed is not None:
        out[:, fixed, :] = state.W[:, fixed, :]
    state.W = out


def _normalize(state: LearnState, cfg: NMFDConfig, fixed: np.ndarray | None) -> None:
    """Unit templates; the scales move to the pending H scales and the accumulators."""
    from dnmf.nmf.kernels import gamma as gamma_of

    W, scale = normalize_templates(state.W, norm=cfg.norm, fixed=fixed)
    state.W = W
    s = np.asarray(scale, dtype=np.float64)
    assert state.pending is not None
    state.pending *= s[None, :]
    if state.A is not None and state.B is not None:
        s_stack = np.tile(s, cfg.lags)[None, :]
        state.A = state.A * s_stack ** (1.0 - 1.0 / gamma_of(cfg.beta))
        state.B = state.B * s_stack


# -- in memory ---------------------------------------------------------------------------------
@dataclass
class NMFDResult:
    """What :func:`fit_nmfd` learned.

    Attributes
    ----------
    W : ndarray of shape (n_bins, n_components, n_lags)
    H : ndarray of shape (n_components, n_frames)
    losses : list of float
        The β-divergence of every epoch (with that epoch's updated H and the W it started with).
    state : LearnState
    """

    W: np.ndarray
    H: np.ndarray
    losses: list[float]
    state: LearnState


def fit_nmfd(
    V: np.ndarray,
    cfg: NMFDConfig,
    *,
    W_init: np.ndarray | None = None,
    H_init: np.ndarray | None = None,
    informed: Informed | None = None,
    block_frames: int = 8192,
) -> NMFDResult:
    """NMFD of a spectrogram in memory, with the learner the cluster runs (same arithmetic).

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
        Spectrogram, nonnegative (float32, or float64 for tests).
    cfg : NMFDConfig
    W_init : ndarray of shape (n_bins, rank, lags), optional
        Templates for ``init='custom'``.
    H_init : ndarray of shape (rank, n_frames), optional
        Activations to start from instead of ``cfg.h_init``.
    informed : Informed, optional
        Informed templates and score (see :mod:`dnmf.nmf.informed`).
    block_frames : int, default=8192
        Frames per block (the result does not depend on it in full batch).

    Returns
    -------
    NMFDResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> V = rng.random((20, 300)).astype(np.float32)
    >>> r = fit_nmfd(V, NMFDConfig(rank=2, lags=4, epochs=5))
    >>> r.W.shape, r.H.shape, len(r.losses)
    ((20, 2, 4), (2, 300), 5)
    """
    from dnmf.nmf.learner import MemoryBackend

    be = MemoryBackend(V, block_frames)
    informed = informed or Informed()
    state = start_state_nmfd(cfg, be, informed=informed, W_init=W_init)
    h_init: HInit = ArrayH(np.asarray(H_init)) if H_init is not None else h_init_of(cfg, informed)
    state = learn_nmfd(cfg, be, state, h_init=h_init)
    assert state.pending is not None
    scales = np.repeat(state.pending, block_frames, axis=0)[: V.shape[1]].T
    H = (be.activations(state.epoch) * scales).astype(V.dtype)
    return NMFDResult(W=state.W, H=H, losses=list(state.losses), state=state)
