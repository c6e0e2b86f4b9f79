"""The learner's plan, pure: blocks, the steps of an epoch, the visits of a step, the tree.

Nothing here reads data or knows where anything runs; the plan decides what
each visit reads (which frames, which activation buffer, which pending scale),
never the timing (DESIGN.md sections 3 and 4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dnmf.nmf.lags import halo

__all__ = ["Piece", "Visit", "blocks_of", "epoch_steps", "plan_visits", "tree_sum"]


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


@dataclass(frozen=True)
class Piece:
    """The part ``[start, stop)`` of block ``block``'s activations that a window reads.

    Read from ``buffer`` and multiplied by ``scale`` (the block's pending
    normalisation), or seeded as the block itself would be when ``fresh``.
    """

    block: int
    block_start: int
    block_stop: int
    start: int
    stop: int
    buffer: int
    scale: np.ndarray | None
    fresh: bool


@dataclass(frozen=True)
class Visit:
    """One block's visit: its frames ``[start, stop)``, its window ``[lo, hi)`` and the
    pieces of activations the window reads. At ``lags = 1`` the window is the block
    and there is one piece."""

    block: int
    start: int
    stop: int
    lo: int
    hi: int
    pieces: tuple[Piece, ...]


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
) -> list[Visit]:
    """The visits of one step: each block's window and the buffer of every piece of it.

    A block's window reaches :func:`dnmf.nmf.lags.halo` frames around it. A
    piece of block ``b`` is read from buffer ``(epoch + 1) % 2`` if ``b`` was
    visited in an earlier step of this epoch (``done_this_epoch``), else from
    ``epoch % 2``, scaled by its pending scale; a block never visited is
    seeded. So no visit reads what another visit of the same step writes.
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
        out.append(Visit(b, a, z, lo, hi, tuple(pieces)))
    return out
