"""The minibatch NMF learner: plan the steps, run them on a backend, update W.

DESIGN.md sections 3 and 4. The frames of ``V`` are cut into blocks (by
default one block per Zarr chunk of the corpus). An epoch visits every block
once, in a seeded permutation, in steps of ``batch_chunks`` blocks. A visit
(:func:`visit_block`) reads ``V_b`` and its warm-started ``H_b``, runs
``n_inner`` multiplicative updates of ``H_b`` with ``W`` fixed, writes
``H_b`` back and returns the block's statistics for ``W``. The statistics of a
step are summed in a fixed binary tree over the sorted block indices
(:func:`tree_sum`), so the sum does not depend on which worker ran what; then

    A ← ρ A + num,   B ← ρ B + den,   W ← W ⊙ (A / B)^γ

and W's columns are normalised. One step over all blocks with ρ = 0 is
exactly Lee & Seung's multiplicative update (scikit-learn's
``NMF(solver='mu')``).

``H`` is double-buffered: epoch ``e`` reads buffer ``e % 2`` and writes the
other, so a task retried after a lost worker reads what the first attempt read.
Normalising W rescales every block's H; instead of touching every block, the
scale waits in ``pending[b]`` and is applied when block ``b`` is next read.

Two backends run the same :func:`visit_block`: :class:`MemoryBackend` (NumPy
arrays in this process, for :class:`dnmf.NMF` and tests) and
:class:`dnmf.learn_dask.DaskBackend` (a corpus store on a Dask cluster). The
arithmetic is the same, so are the results, bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dnmf.errors import DnmfUsageError, describe_validation_error
from reference_v0.kernels import beta_name_to_float, chunk_stats, normalize_W, update_W

__all__ = [
    "Backend",
    "LearnConfig",
    "LearnState",
    "MemoryBackend",
    "blocks_of",
    "epoch_steps",
    "learn",
    "tree_sum",
    "visit_block",
]

InitName = Literal["random", "nndsvda", "kmeans", "custom"]


class LearnConfig(BaseModel):
    """Everything that decides the learned W (with the corpus and its chunking).

    Parameters
    ----------
    rank : int
        Number of components.
    beta : float or str
        β-divergence: 0 / 'itakura-saito', 1 / 'kullback-leibler',
        2 / 'frobenius' ('euclidean'), or any number.
    epochs : int
        Maximum number of passes over the corpus.
    batch_chunks : int or None
        Blocks per step; None (the default) is one step per epoch over all
        blocks, i.e. full-batch Lee-Seung MU.
    block_frames : int or None
        Frames per block; must divide the corpus chunk. None: one block per chunk.
    n_inner : int
        Multiplicative updates of a block's H per visit.
    forget_factor : float
        ρ of the online accumulators (minibatch only; full batch uses 0).
    init : {'random', 'nndsvda', 'kmeans', 'custom'}
        Dictionary initialisation; 'custom' takes ``W_init``.
    seed : int
        Seeds the init, every block's initial H and every epoch's permutation.
    tol : float
        Stop when the relative decrease of the epoch loss falls below this.
    alpha_W, alpha_H, l1_ratio : float
        Regularisation of the dictionary W and the activations H with
        scikit-learn's meaning and scaling (the W penalty is scaled by the
        frames of the step, the H penalty by the number of bins).
    norm : {'l2', 'max', None}
        Normalise W's columns after each step (H rescaled so W H is unchanged).
    fixed_components : tuple of int
        Columns of W that never change (semi-supervised NMF); with a custom init.
    checkpoint_every : int
        Steps between checkpoints (there is always one at an epoch's end).
    sample_frames : int
        Frames sampled for 'nndsvda' and 'kmeans'.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(gt=0)
    beta: float = 1.0
    epochs: int = Field(50, gt=0)
    batch_chunks: int | None = Field(None, gt=0)
    block_frames: int | None = Field(None, gt=0)
    n_inner: int = Field(1, gt=0)
    forget_factor: float = Field(0.7, ge=0.0, le=1.0)
    init: InitName = "random"
    seed: int = Field(0, ge=0)
    tol: float = Field(1e-4, ge=0.0)
    alpha_W: float = Field(0.0, ge=0.0)
    alpha_H: float = Field(0.0, ge=0.0)
    l1_ratio: float = Field(0.0, ge=0.0, le=1.0)
    norm: Literal["l2", "max"] | None = "l2"
    fixed_components: tuple[int, ...] = ()
    checkpoint_every: int = Field(10, gt=0)
    sample_frames: int = Field(20000, gt=0)

    @field_validator("beta", mode="before")
    @classmethod
    def _beta(cls, value: Any) -> float:
        return beta_name_to_float(value)

    @field_validator("norm", mode="before")
    @classmethod
    def _norm(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.lower() == "none" else value

    @classmethod
    def from_options(cls, **options: Any) -> LearnConfig:
        """Build from user values; a bad value becomes one sentence naming it."""
        try:
            return cls(**{k: v for k, v in options.items() if v is not None})
        except ValidationError as exc:
            raise DnmfUsageError(describe_validation_error(exc)) from None

    def penalties(self, n_bins: int, step_frames: int) -> tuple[float, float, float, float]:
        """(l1_W, l2_W, l1_H, l2_H) in scikit-learn's scaling."""
        l1_W = step_frames * self.alpha_W * self.l1_ratio
        l2_W = step_frames * self.alpha_W * (1.0 - self.l1_ratio)
        l1_H = n_bins * self.alpha_H * self.l1_ratio
        l2_H = n_bins * self.alpha_H * (1.0 - self.l1_ratio)
        return l1_W, l2_W, l1_H, l2_H


# -- planning (pure) ---------------------------------------------------------------
def blocks_of(n_frames: int, block_frames: int) -> list[tuple[int, int]]:
    """Frame ranges ``[start, stop)`` of the blocks covering ``n_frames``."""
    return [(a, min(a + block_frames, n_frames)) for a in range(0, n_frames, block_frames)]


def epoch_steps(n_blocks: int, batch: int | None, *, seed: int, epoch: int) -> list[list[int]]:
    """The steps of one epoch: block indices, each step sorted (the reduction order).

    Full batch (``batch`` None or at least ``n_blocks``) is one step of every
    block; otherwise a permutation seeded from ``(seed, epoch)`` cut in
    steps of ``batch``.
    """
    if batch is None or batch >= n_blocks:
        return [list(range(n_blocks))]
    order = np.random.default_rng([seed, epoch, 0x5354]).permutation(n_blocks)
    return [sorted(int(b) for b in order[i : i + batch]) for i in range(0, n_blocks, batch)]


def tree_sum(items: Sequence[Any], add: Callable[[Any, Any], Any]) -> Any:
    """Sum ``items`` in a fixed binary tree: ``((0+1)+(2+3))+...``, whatever computes it."""
    level = list(items)
    while len(level) > 1:
        nxt = [add(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# -- one visit (runs on a worker) ----------------------------------------------------
@dataclass(frozen=True)
class VisitParams:
    """What a block visit needs besides its data (small, shipped with each task)."""

    beta: float
    n_inner: int
    l1_H: float
    l2_H: float
    seed: int
    avg: float


class BlockIO(Protocol):
    """Where a visit reads ``V_b`` and reads and writes ``H_b``."""

    def read_V(self, start: int, stop: int) -> np.ndarray: ...

    def read_H(self, buffer: int, start: int, stop: int) -> np.ndarray: ...

    def write_H(self, buffer: int, start: int, stop: int, H: np.ndarray) -> None: ...


Stats = tuple[np.ndarray, np.ndarray, float]


def visit_block(
    io: BlockIO,
    block: int,
    start: int,
    stop: int,
    W: np.ndarray,
    epoch: int,
    scale: np.ndarray | None,
    fresh: bool,
    p: VisitParams,
) -> Stats:
    """Update one block's H and return its (num, den, loss) for W, in float64.

    Reads buffer ``epoch % 2`` (or seeds H when the block is ``fresh``),
    writes buffer ``(epoch + 1) % 2``: never what it reads.
    """
    from reference_v0.init import random_H

    # A deserialized array may not even be element-aligned, and BLAS rounds an
    # unaligned operand differently: a fresh copy makes every worker compute alike.
    W = np.array(W, order="C", copy=True)
    V = np.require(io.read_V(start, stop), requirements=["C_CONTIGUOUS", "ALIGNED"])
    if fresh:
        H = random_H(W.shape[1], stop - start, seed=p.seed, block=block, avg=p.avg, dtype=V.dtype)
    else:
        H = io.read_H(epoch % 2, start, stop)
        if scale is not None:
            H = H * scale.astype(H.dtype)[:, None]
    s = chunk_stats(V, W, H, beta=p.beta, n_inner=p.n_inner, l1_reg_H=p.l1_H, l2_reg_H=p.l2_H)
    io.write_H((epoch + 1) % 2, start, stop, s.H)
    return s.num.astype(np.float64), s.den.astype(np.float64), float(s.loss)


def add_stats(a: Stats, b: Stats) -> Stats:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


# -- backends ---------------------------------------------------------------------------
class Backend(Protocol):
    """Runs the visits of a step and returns their tree-summed statistics."""

    n_bins: int
    n_frames: int
    dtype: Any

    def blocks(self) -> list[tuple[int, int]]: ...

    def summary(self) -> tuple[float, float]:
        """(sum, count) of V over the whole corpus, after checking it is valid."""
        ...

    def sample(self, n_frames: int, seed: int) -> np.ndarray: ...

    def step(
        self, blocks: list[int], W: np.ndarray, epoch: int, scales: dict[int, np.ndarray | None],
        fresh: set[int], p: VisitParams, tag: str,
    ) -> Stats: ...  # fmt: skip


class MemoryBackend:
    """V and both H buffers as NumPy arrays in this process.

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
    block_frames : int
    H_init : ndarray of shape (rank, n_frames), optional
        Initial activations (instead of the seeded per-block ones).
    """

    def __init__(self, V: np.ndarray, block_frames: int, H_init: np.ndarray | None = None) -> None:
        self.V = V
        self.n_bins, self.n_frames = V.shape
        self.dtype = V.dtype
        self.block_frames = block_frames
        self.H: list[np.ndarray | None] = [None, None]
        self.H_init = H_init

    def blocks(self) -> list[tuple[int, int]]:
        return blocks_of(self.n_frames, self.block_frames)

    # BlockIO
    def read_V(self, start: int, stop: int) -> np.ndarray:
        # Contiguous, as a block read from Zarr is: BLAS must see the same layout.
        return np.ascontiguousarray(self.V[:, start:stop])

    def read_H(self, buffer: int, start: int, stop: int) -> np.ndarray:
        H = self.H[buffer]
        assert H is not None
        return np.ascontiguousarray(H[:, start:stop])

    def write_H(self, buffer: int, start: int, stop: int, H: np.ndarray) -> None:
        if self.H[buffer] is None:
            self.H[buffer] = np.zeros((H.shape[0], self.n_frames), dtype=H.dtype)
        self.H[buffer][:, start:stop] = H  # type: ignore[index]

    def summary(self) -> tuple[float, float]:
        from reference_v0.kernels import check_nonnegative

        parts = []
        for b, (a, z) in enumerate(self.blocks()):
            V = self.read_V(a, z)
            check_nonnegative(V, where=f"V of block {b}", frame_offset=a)
            parts.append((float(V.sum(dtype=np.float64)), float(V.size)))
        # The same per-block sums and tree as on a cluster: the init scale is bitwise the same.
        return tree_sum(parts, lambda x, y: (x[0] + y[0], x[1] + y[1]))  # type: ignore[no-any-return]

    def sample(self, n_frames: int, seed: int) -> np.ndarray:
        return sample_columns(self.V, n_frames, seed)

    def step(
        self, blocks: list[int], W: np.ndarray, epoch: int, scales: dict[int, np.ndarray | None],
        fresh: set[int], p: VisitParams, tag: str,
    ) -> Stats:  # fmt: skip
        ranges = self.blocks()
        if self.H_init is not None and epoch == 0:
            for b in blocks:
                if b in fresh:  # a given H replaces the seeded one
                    a, z = ranges[b]
                    self.write_H(0, a, z, self.H_init[:, a:z].astype(self.dtype))
            fresh = set()
        from dnmf.cluster import one_blas_thread

        with one_blas_thread():  # as on a worker: the same arithmetic
            leaves = [
                visit_block(self, b, *ranges[b], W, epoch, scales.get(b), b in fresh, p)
                for b in blocks
            ]
        return tree_sum(leaves, add_stats)  # type: ignore[no-any-return]

    def activations(self, epoch: int) -> np.ndarray:
        """H as the last completed epoch left it (buffer ``epoch % 2``)."""
        H = self.H[epoch % 2]
        assert H is not None
        return H


def sample_columns(V: Any, n_frames: int, seed: int) -> np.ndarray:
    """Up to ``n_frames`` columns of V, chosen from ``seed``, in frame order."""
    total = V.shape[1]
    if total <= n_frames:
        return np.asarray(V[:, :])
    idx = np.sort(np.random.default_rng([seed, 0x534D]).choice(total, n_frames, replace=False))
    return np.asarray(V[:, idx])


# -- the learner ------------------------------------------------------------------------
@dataclass
class LearnState:
    """Everything a checkpoint holds; with the config and corpus it decides the rest."""

    W: np.ndarray
    A: np.ndarray | None = None
    B: np.ndarray | None = None
    pending: np.ndarray | None = None  # (n_blocks, rank) float64 scales not yet applied to H
    visited: np.ndarray | None = None  # (n_blocks,) bool: H of the block exists
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    epoch_loss: float = 0.0
    losses: list[float] = field(default_factory=list)
    converged: bool = False
    avg: float = 0.0

    @property
    def done_epochs(self) -> int:
        return len(self.losses)


def initial_W(
    cfg: LearnConfig, backend: Backend, avg: float, W_init: np.ndarray | None
) -> np.ndarray:
    """The dictionary to start from, per ``cfg.init``."""
    from reference_v0 import init as inits

    k, n_bins = cfg.rank, backend.n_bins
    if cfg.init == "custom":
        if W_init is None:
            raise DnmfUsageError("init='custom' needs a dictionary; pass W_init (or --init MODEL)")
        W = np.asarray(W_init)
        if W.shape != (n_bins, k):
            raise DnmfUsageError(
                f"the given dictionary has shape {W.shape}, the corpus needs ({n_bins}, {k}); "
                "pass a dictionary learned on the same features with the same rank"
            )
        return np.ascontiguousarray(W, dtype=backend.dtype)
    if cfg.init == "random":
        return inits.random_W(n_bins, k, seed=cfg.seed, avg=avg, dtype=backend.dtype)
    sample = backend.sample(cfg.sample_frames, cfg.seed)
    if cfg.init == "nndsvda":
        return inits.nndsvda_W(sample, k).astype(backend.dtype)
    return inits.kmeans_W(sample, k, seed=cfg.seed).astype(backend.dtype)


def check_rank(cfg: LearnConfig, n_bins: int, n_frames: int) -> None:
    if cfg.rank > min(n_bins, n_frames):
        raise DnmfUsageError(
            f"rank={cfg.rank} is larger than the data allows (V is {n_bins} x {n_frames}); "
            f"pass a rank of at most {min(n_bins, n_frames)}"
        )
    bad = [c for c in cfg.fixed_components if not 0 <= c < cfg.rank]
    if bad:
        raise DnmfUsageError(
            f"fixed component {bad[0]} is out of range for rank={cfg.rank}; "
            f"pass indices from 0 to {cfg.rank - 1}"
        )
    if cfg.fixed_components and cfg.init != "custom":
        raise DnmfUsageError(
            "fixed_components need a given dictionary; pass --init MODEL (init='custom')"
        )


def start_state(cfg: LearnConfig, backend: Backend, W_init: np.ndarray | None = None) -> LearnState:
    """Validate the data and set up the state of epoch 0."""
    check_rank(cfg, backend.n_bins, backend.n_frames)
    total, count = backend.summary()
    from reference_v0.init import scale_for

    avg = scale_for(total / max(count, 1.0), cfg.rank)
    W = initial_W(cfg, backend, avg, W_init)
    n_blocks = len(backend.blocks())
    return LearnState(
        W=W,
        pending=np.ones((n_blocks, cfg.rank)),
        visited=np.zeros(n_blocks, dtype=bool),
        avg=avg,
    )


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


def learn(
    cfg: LearnConfig,
    backend: Backend,
    state: LearnState,
    *,
    on_step: Callable[[Progress], None] | None = None,
    checkpoint: Callable[[LearnState], None] | None = None,
    stop_after_steps: int | None = None,
) -> LearnState:
    """Run epochs from ``state`` until ``cfg.epochs`` or convergence; returns the final state.

    ``checkpoint(state)`` is called every ``cfg.checkpoint_every`` steps and at
    the end of every epoch. ``stop_after_steps`` stops early (a test's crash).
    """
    beta = cfg.beta
    fixed = np.array(cfg.fixed_components, dtype=int) if cfg.fixed_components else None
    ranges = backend.blocks()
    n_bins = backend.n_bins
    l1_W_unit, l2_W_unit, l1_H, l2_H = cfg.penalties(n_bins, 1)
    p = VisitParams(beta, cfg.n_inner, l1_H, l2_H, cfg.seed, state.avg)
    full_batch = cfg.batch_chunks is None or cfg.batch_chunks >= len(ranges)
    # scikit-learn's MiniBatchNMF: the forget factor applies per pass over the data,
    # so a step of a fraction f of the frames forgets forget_factor ** f.
    rho_base = 0.0 if full_batch else cfg.forget_factor
    assert state.pending is not None and state.visited is not None
    steps_run = 0
    while state.done_epochs < cfg.epochs and not state.converged:
        steps = epoch_steps(len(ranges), cfg.batch_chunks, seed=cfg.seed, epoch=state.epoch)
        while state.step_in_epoch < len(steps):
            t0 = time.perf_counter()
            blocks = steps[state.step_in_epoch]
            scales = {b: state.pending[b] for b in blocks if state.visited[b]}
            fresh = {b for b in blocks if not state.visited[b]}
            tag = f"e{state.epoch}-s{state.step_in_epoch}"
            num, den, loss = backend.step(blocks, state.W, state.epoch, scales, fresh, p, tag)
            frames = sum(ranges[b][1] - ranges[b][0] for b in blocks)
            for b in blocks:
                state.pending[b] = 1.0
                state.visited[b] = True
            dt = backend.dtype
            l1_W, l2_W = l1_W_unit * frames, l2_W_unit * frames
            if rho_base == 0.0:  # full batch: exactly Lee-Seung (scikit-learn's) update
                state.W = update_W(
                    state.W, num.astype(dt), den.astype(dt), beta=beta, l1_reg=l1_W,
                    l2_reg=l2_W, fixed=fixed,
                )  # fmt: skip
            else:
                rho = rho_base ** (frames / backend.n_frames)
                online_update(state, num, den, beta=beta, rho=rho, l1=l1_W, l2=l2_W, fixed=fixed)
            if cfg.norm is not None:
                _normalize(state, cfg.norm, beta, fixed)
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
                        steps_in_epoch=len(steps),
                        global_step=state.global_step,
                        frames=frames,
                        seconds=time.perf_counter() - t0,
                        epoch_done=epoch_done,
                        loss=state.losses[-1] if epoch_done else None,
                    )
                )
            if checkpoint is not None and (
                epoch_done or state.global_step % cfg.checkpoint_every == 0
            ):
                checkpoint(state)
            if stop_after_steps is not None and steps_run >= stop_after_steps:
                return state
            if epoch_done:
                break
    return state


def online_update(
    state: LearnState, num: np.ndarray, den: np.ndarray, *, beta: float, rho: float,
    l1: float, l2: float, fixed: np.ndarray | None,
) -> None:  # fmt: skip
    """The online multiplicative update (Lefèvre, Bach & Févotte 2011), as scikit-learn's.

    ``A ← ρA + W^(1/γ) ⊙ num``, ``B ← ρB + den_full``, ``W ← (A / B)^γ``:
    the accumulators carry the dictionary they were computed with, so an
    old step's statistics keep their meaning after W has moved.
    """
    W = state.W.astype(np.float64)
    d = full_denominator(W, den, beta)
    if l1 > 0:
        d += l1
    if l2 > 0:
        d += l2 * W
    W_new = accumulate(state, W, num, d, beta=beta, rho=rho).astype(state.W.dtype)
    if fixed is not None:
        W_new[:, fixed] = state.W[:, fixed]
    state.W = W_new


def full_denominator(W: np.ndarray, den: np.ndarray, beta: float) -> np.ndarray:
    """A step's denominator statistics in the shape of ``W`` (a fresh array).

    ``den`` is sent in its cheap form (:func:`dnmf.kernels.chunk_stats`): column
    sums for β = 1, the Gram matrix ``H Hᵀ`` for β = 2.
    """
    if beta == 1:
        sums = np.where(den == 0, 1.0, den)
        return np.broadcast_to(sums[None, :], W.shape).copy()
    if beta == 2:
        return W @ den  # type: ignore[no-any-return]
    return den.copy()


def accumulate(
    state: LearnState, W: np.ndarray, num: np.ndarray, d: np.ndarray, *, beta: float, rho: float
) -> np.ndarray:
    """Fold one step into the accumulators ``A``, ``B`` and return ``(A / B)^γ`` in float64.

    ``W`` is the float64 dictionary the step was computed with, ``d`` its full
    (penalised) denominator; shared by the NMF and NMFD learners.
    """
    from reference_v0.kernels import EPSILON
    from reference_v0.kernels import gamma as gamma_of

    g = gamma_of(beta)
    d[d == 0] = EPSILON
    numer = num * (W ** (1.0 / g) if g != 1 else W)
    if state.A is None or state.B is None:
        state.A, state.B = numer, d
    else:
        state.A = rho * state.A + numer
        state.B = rho * state.B + d
    W_new = state.A / state.B
    if g != 1:
        W_new **= g
    if beta <= 1:
        W_new[W_new < np.finfo(np.float64).eps] = 0.0
    return W_new  # type: ignore[no-any-return]


def _normalize(state: LearnState, norm: str, beta: float, fixed: np.ndarray | None) -> None:
    """Unit columns of W; the scale moves to the pending H scales and the accumulators.

    With ``W' = W / s`` and ``H' = s H``, the online accumulators of
    :func:`online_update` become ``A' = A s^(1 - 1/γ)``, ``B' = B s`` (per
    column), so the next update is the same as without the normalisation.
    """
    W, _, scale = normalize_W(state.W, None, norm=norm)  # type: ignore[arg-type]
    scale = np.asarray(scale, dtype=np.float64)
    if fixed is not None:
        W[:, fixed] = state.W[:, fixed]
        scale[fixed] = 1.0
    state.W = W
    assert state.pending is not None
    state.pending *= scale[None, :]
    if state.A is not None and state.B is not None:
        from reference_v0.kernels import gamma as gamma_of

        state.A = state.A * scale[None, :] ** (1.0 - 1.0 / gamma_of(beta))
        state.B = state.B * scale[None, :]


def final_activations_scale(state: LearnState) -> np.ndarray:
    """Pending scales, to apply to H read from the buffers after learning."""
    assert state.pending is not None
    return state.pending


def loss_to_error(loss: float, beta: float) -> float:
    """scikit-learn's ``reconstruction_err_`` from a β-divergence: ``sqrt(2 * loss)``."""
    return math.sqrt(2.0 * max(loss, 0.0))
