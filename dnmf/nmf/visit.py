"""One visit of one block, on a worker or in process: the learner's only per-block code.

A visit (DESIGN.md section 3) reads ``V`` on its window (the block and, at
``lags > 1``, a halo around it), assembles the window's activations from the
pieces the plan names (:class:`dnmf.nmf.plan.Visit`), runs ``n_inner`` updates
of H with W fixed, writes back the block's own frames (buffer
``(epoch + 1) % 2``: never what it reads) and returns the block's statistics
for W and its loss, in float64. Nothing here knows Dask: the backends
(:mod:`dnmf.backends`) decide where visits run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dnmf.nmf.accel import floor
from dnmf.nmf.init import HInit, RandomH
from dnmf.nmf.kernels import ChunkStats, chunk_stats, update_H
from dnmf.nmf.mask import MaskSpec, block_mask
from dnmf.nmf.masked import MaskedDen
from dnmf.nmf.model import window_stats
from dnmf.nmf.plan import Piece, Visit

__all__ = [
    "BlockIO",
    "Stats",
    "StepStats",
    "VisitParams",
    "add_stats",
    "add_step",
    "block_loss",
    "expected_chunks",
    "visit_block",
    "visit_task",
]

Stats = tuple[np.ndarray, np.ndarray, float]
#: A step's (or a visit task's) statistics and ``written``: ``(k, 2)`` int64 rows
#: ``(block, crc)`` of the activation chunks it wrote (none in process).
StepStats = tuple[np.ndarray, np.ndarray, float, np.ndarray]


@dataclass(frozen=True)
class VisitParams:
    """What every visit of a run shares (small, shipped with each task)."""

    beta: float
    n_inner: int
    l1_H: float
    l2_H: float
    seed: int
    avg: float
    update_h: bool = True
    h_init: HInit = RandomH()  # noqa: RUF009 (frozen, shared)
    solver: str = "mu"
    n_buffers: int = 2
    #: The fast schedule's extrapolation weight b of this step: a piece with
    #: previous activations starts from ``max(H + b (H - H_prev), floor)``
    #: (:func:`dnmf.nmf.accel.floor`).
    extrapolate: float = 0.0
    #: Where the weights of a masked run come from (:mod:`dnmf.nmf.mask`); None: no mask.
    mask: MaskSpec | None = None
    #: Exponent of the H updates; None: γ of β (:meth:`LearnConfig.update_exponent`).
    gamma: float | None = None


class BlockIO(Protocol):
    """Where a visit reads ``V`` and reads and writes ``H``."""

    def read_V(self, start: int, stop: int) -> np.ndarray: ...

    def read_H(self, buffer: int, start: int, stop: int) -> np.ndarray: ...

    def write_H(self, buffer: int, start: int, stop: int, H: np.ndarray) -> None: ...


def window_activations(
    io: BlockIO, visit: Visit, rank: int, dtype: np.dtype, p: VisitParams
) -> np.ndarray:
    """The activations of the visit's window, piece by piece, as the plan names them."""
    H = np.empty((rank, visit.hi - visit.lo), dtype=dtype)
    for piece in visit.pieces:
        if piece.fresh:
            full = p.h_init.block(
                rank, piece.block_start, piece.block_stop, block=piece.block, seed=p.seed,
                avg=p.avg, dtype=dtype,
            )  # fmt: skip
            part = full[:, piece.start - piece.block_start : piece.stop - piece.block_start]
        else:
            part = io.read_H(piece.buffer, piece.start, piece.stop)
            if piece.scale is not None:
                part = part * piece.scale.astype(part.dtype)[:, None]
            if p.extrapolate > 0.0 and piece.prev_buffer is not None:
                part = _extrapolated(io, piece, part, p.extrapolate, p.beta)
        H[:, piece.start - visit.lo : piece.stop - visit.lo] = part
    return H


def _extrapolated(io: BlockIO, piece: Piece, H: np.ndarray, b: float, beta: float) -> np.ndarray:
    """``H + b (H - H_prev)``, kept at :func:`dnmf.nmf.accel.floor` or above where H is
    positive (zeros stay)."""
    assert piece.prev_buffer is not None
    return _moved(H, _previous(io, piece), b, beta)


def _previous(io: BlockIO, piece: Piece) -> np.ndarray:
    assert piece.prev_buffer is not None
    prev = io.read_H(piece.prev_buffer, piece.start, piece.stop)
    if piece.prev_scale is not None:
        prev = prev * piece.prev_scale.astype(prev.dtype)[:, None]
    return prev


def _moved(H: np.ndarray, prev: np.ndarray, b: float, beta: float) -> np.ndarray:
    moved = np.maximum(H + H.dtype.type(b) * (H - prev), floor(H, beta))
    return np.where(H > 0, moved, H.dtype.type(0.0))


def _extrapolated_visit(
    io: BlockIO, visit: Visit, V: np.ndarray, W: np.ndarray, p: VisitParams
) -> tuple[np.ndarray, ChunkStats]:
    """Ang & Gillis's order at one lag: H from the extrapolated point, then W's statistics
    from the extrapolated new H (:mod:`dnmf.nmf.accel`). Returns (H to store, stats)."""
    (piece,) = visit.pieces
    H = io.read_H(piece.buffer, piece.start, piece.stop)
    if piece.scale is not None:
        H = H * piece.scale.astype(H.dtype)[:, None]
    n_bins, k, _ = W.shape
    start = _moved(H, _previous(io, piece), p.extrapolate, p.beta)
    H_new = update_H(
        V, W.reshape(n_bins, k), start, beta=p.beta, n_iter=p.n_inner, l1_reg=p.l1_H,
        l2_reg=p.l2_H, gamma=p.gamma, solver=p.solver,
    )  # fmt: skip
    s = chunk_stats(
        V, W.reshape(n_bins, k), _moved(H_new, H, p.extrapolate, p.beta), beta=p.beta, n_inner=1,
        update_h=False, solver=p.solver,
    )  # fmt: skip
    return H_new, s


def visit_block(io: BlockIO, visit: Visit, W: np.ndarray, epoch: int, p: VisitParams) -> Stats:
    """Update one block's H on its window and return its (num, den, loss), in float64.

    ``W`` has shape ``(n_bins, rank, lags)``. Writes buffer ``(epoch + 1) % 2``
    for the block's own frames; reads only what the plan names.
    """
    # A deserialized array may not even be element-aligned, and BLAS rounds an
    # unaligned operand differently: a fresh copy makes every worker compute alike.
    W = np.array(W, order="C", copy=True)
    V = np.require(io.read_V(visit.lo, visit.hi), requirements=["C_CONTIGUOUS", "ALIGNED"])
    mask = block_mask(p.mask, V, visit.lo, visit.hi, getattr(io, "read_M", None))
    if (
        p.extrapolate > 0.0 and p.update_h and mask is None and W.shape[2] == 1
        and visit.pieces[0].prev_buffer is not None
    ):  # fmt: skip
        H_out, s = _extrapolated_visit(io, visit, V, W, p)
    else:
        H = window_activations(io, visit, W.shape[1], V.dtype, p)
        s = window_stats(
            V, W, H, start=visit.start - visit.lo, stop=visit.stop - visit.lo, beta=p.beta,
            n_inner=p.n_inner, l1_reg_H=p.l1_H, l2_reg_H=p.l2_H, update_h=p.update_h,
            solver=p.solver, mask=mask, gamma=p.gamma,
        )  # fmt: skip
        H_out = s.H
    io.write_H((epoch + 1) % p.n_buffers, visit.start, visit.stop, H_out)
    den: Any = s.den
    if p.mask is not None and not isinstance(den, MaskedDen):  # a block the mask keeps whole
        den = MaskedDen(den, None)
    return s.num.astype(np.float64), den.astype(np.float64), float(s.loss)


def visit_task(
    V_url: str, H_url: str, visit: Visit, W: np.ndarray, epoch: int, p: VisitParams
) -> StepStats:
    """:func:`visit_block` on a worker: the Zarr stores opened there, BLAS on one thread.

    Each chunk of H read is checked against the crc its piece names; returns the
    block's statistics and ``written``, rows ``(block, crc)`` of the chunk it wrote
    (:mod:`dnmf.io.buffers`).
    """
    from dnmf.cluster import one_blas_thread
    from dnmf.io.blocks import ZarrBlockIO

    with one_blas_thread():
        M_url = p.mask.store if p.mask is not None and p.mask.store else ""
        io = ZarrBlockIO(V_url, H_url, M_url, expect=expected_chunks(visit))
        num, den, loss = visit_block(io, visit, W, epoch, p)
    written = np.array(sorted(io.written.items()), dtype=np.int64).reshape(-1, 2)
    return num, den, loss, written


def expected_chunks(visit: Visit) -> dict[tuple[int, int], int]:
    """``(buffer, block) -> crc`` of the activation chunks the visit reads that have a record."""
    out = {}
    for piece in visit.pieces:
        if piece.fresh:
            continue
        if piece.crc >= 0:
            out[piece.buffer, piece.block] = piece.crc
        if piece.prev_buffer is not None and piece.prev_crc >= 0:
            out[piece.prev_buffer, piece.block] = piece.prev_crc
    return out


def add_stats(a: Stats, b: Stats) -> Stats:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def add_step(a: StepStats, b: StepStats) -> StepStats:
    """:func:`add_stats` of two visits' results, their ``written`` rows put together."""
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], np.concatenate([a[3], b[3]])


def block_loss(
    item: tuple[int, int, int, np.ndarray | None], W: np.ndarray, where: object, buffer: int,
    seeded: tuple[int, float] | None, beta: float,
) -> float:  # fmt: skip
    """``d(V_b | W H_b)`` of one block ``item = (block, start, stop, scale)`` of a one-lag model.

    H_b as a visit would see it: read from ``buffer`` and rescaled, or seeded
    from ``seeded = (seed, avg)``. ``where`` is a :class:`BlockIO`, or the
    ``(V_url, H_url)`` of a worker's :class:`dnmf.io.blocks.ZarrBlockIO`.
    """
    from dnmf.nmf.divergence import beta_divergence
    from dnmf.nmf.init import random_H

    block, start, stop, scale = item
    if isinstance(where, tuple):
        from dnmf.io.blocks import ZarrBlockIO

        where = ZarrBlockIO(*where)
    io: BlockIO = where  # type: ignore[assignment]
    V = io.read_V(start, stop)
    if seeded is not None:
        seed, avg = seeded
        H = random_H(W.shape[1], stop - start, seed=seed, block=block, avg=avg, dtype=V.dtype)
    else:
        H = io.read_H(buffer, start, stop)
        if scale is not None:
            H = H * scale.astype(H.dtype)[:, None]
    mask = block_mask(getattr(io, "mask", None), V, start, stop, getattr(io, "read_M", None))
    if mask is not None:  # a masked run's loss: Σ M d_β
        from dnmf.nmf.masked import masked_values, weighted_loss

        M = mask.dense(V.shape[0], V.dtype)
        return weighted_loss(masked_values(V, M), W @ H, M, beta)
    return beta_divergence(V, W, H, beta)
