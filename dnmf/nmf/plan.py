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

__all__ = [
    "SAMPLE_MIN_PASSES",
    "SAMPLE_STAGES",
    "Piece",
    "Visit",
    "blocks_of",
    "checkpoint_chunks",
    "checkpoint_done",
    "epoch_steps",
    "h_buffers",
    "live_chunks",
    "min_sample_blocks",
    "passes_done",
    "plan_visits",
    "read_buffer",
    "sample_blocks",
    "sample_stages",
    "tree_sum",
    "visited_twice",
]


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
    #: The block's activations one epoch before (the fast schedule's extrapolation
    #: reads them, scaled by ``prev_scale``); None where there are none.
    prev_buffer: int | None = None
    prev_scale: np.ndarray | None = None
    #: The crc32 the run recorded when it wrote the chunk read from ``buffer`` (and
    #: ``prev_buffer``); -1: no record (never written by a recorded visit).
    crc: int = -1
    prev_crc: int = -1


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
    n_buffers: int = 2,
    pending_prev: np.ndarray | None = None,
    twice: np.ndarray | None = None,
    records: np.ndarray | None = None,
) -> list[Visit]:
    """The visits of one step: each block's window and the buffer of every piece of it.

    A block's window reaches :func:`dnmf.nmf.lags.halo` frames around it. A
    piece of block ``b`` is read from buffer ``(epoch + 1) % 2`` if ``b`` was
    visited in an earlier step of this epoch (``done_this_epoch``), else from
    ``epoch % 2``, scaled by its pending scale; a block never visited is
    seeded. So no visit reads what another visit of the same step writes.

    With ``n_buffers = 3`` (the fast schedule: one step per epoch) a piece is
    read from buffer ``epoch % 3``, and where block ``b`` was visited in both
    of the last two epochs (``twice[b]``) also its previous activations from
    ``(epoch - 1) % 3``, scaled by ``pending_prev[b]``; visits write
    ``(epoch + 1) % 3``, which no visit of the step reads.

    ``records`` (``(n_buffers, n_blocks)``, :attr:`LearnState.H_crc`) gives each
    piece the crc of the chunk it reads, for the reader to check.
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
            buffer = read_buffer(nb, epoch=epoch, n_buffers=n_buffers, done=done_this_epoch)
            scale = None if fresh else np.asarray(pending[nb], dtype=np.float64)
            prev_buffer = prev_scale = None
            if not fresh and twice is not None and pending_prev is not None and twice[nb]:
                prev_buffer = (epoch - 1) % n_buffers
                prev_scale = np.asarray(pending_prev[nb], dtype=np.float64)
            crc = prev_crc = -1
            if records is not None and not fresh:
                crc = int(records[buffer, nb])
                prev_crc = -1 if prev_buffer is None else int(records[prev_buffer, nb])
            pieces.append(
                Piece(nb, na, nz, max(na, lo), min(nz, hi), buffer, scale, fresh, prev_buffer,
                      prev_scale, crc, prev_crc)
            )  # fmt: skip
        out.append(Visit(b, a, z, lo, hi, tuple(pieces)))
    return out


def read_buffer(block: int, *, epoch: int, n_buffers: int, done: set[int]) -> int:
    """The buffer holding block ``block``'s latest activations at step time in epoch
    ``epoch``, after the blocks ``done`` earlier in the epoch (see :func:`plan_visits`)."""
    if n_buffers == 2:
        return (epoch + 1) % 2 if block in done else epoch % 2
    return epoch % n_buffers


def live_chunks(
    *, epoch: int, visited: np.ndarray, done_this_epoch: set[int], n_buffers: int,
    twice: np.ndarray | None = None,
) -> list[tuple[int, int]]:  # fmt: skip
    """``(buffer, block)`` of every activation chunk a run continued from here may read.

    Each visited block's latest activations (:func:`read_buffer`), and with three
    buffers the previous ones of the blocks visited in both of the last two
    epochs (``twice``). Until its next checkpoint the learner writes none of
    them: a step writes ``(epoch + 1) % n_buffers`` for its blocks, which with
    two buffers are not yet done this epoch (so their latest H is in ``epoch %
    2``) and with three is neither of the buffers read. So the records of a
    checkpoint stay true for exactly these chunks, whatever ran after it.
    """
    out = []
    for b in np.flatnonzero(visited):
        out.append((read_buffer(int(b), epoch=epoch, n_buffers=n_buffers, done=done_this_epoch),
                    int(b)))  # fmt: skip
    if n_buffers == 3 and twice is not None:
        out.extend(((epoch - 1) % 3, int(b)) for b in np.flatnonzero(twice & visited))
    return out


def checkpoint_chunks(cfg: Any, state: Any, block_frames: int) -> list[tuple[int, int]]:
    """:func:`live_chunks` of a checkpoint's :class:`~dnmf.nmf.state.LearnState`, learned
    (or resumed) with ``cfg`` on blocks of ``block_frames``: the blocks done in the epoch
    so far are those of its first ``step_in_epoch`` steps (one step an epoch with three
    buffers)."""
    twice = None
    if state.n_buffers == 3:
        twice = visited_twice(
            len(state.visited), state.epoch, seed=cfg.seed, budget=cfg.epochs,
            min_blocks=min_sample_blocks(cfg.sample_min_frames, block_frames),
        )  # fmt: skip
    return live_chunks(
        epoch=state.epoch, visited=np.asarray(state.visited, dtype=bool),
        done_this_epoch=checkpoint_done(cfg, state), n_buffers=state.n_buffers, twice=twice,
    )  # fmt: skip


def checkpoint_done(cfg: Any, state: Any) -> set[int]:
    """The blocks a checkpoint's state has visited in its epoch so far: those of the epoch's
    first ``step_in_epoch`` steps (none with three buffers: one step an epoch)."""
    if not state.step_in_epoch or state.n_buffers != 2:
        return set()
    steps = epoch_steps(len(state.visited), cfg.batch_chunks, seed=cfg.seed, epoch=state.epoch)
    return {b for s in steps[: state.step_in_epoch] for b in s}


#: The fast schedule's sample stages: (denominator, epochs): 1/8 of the blocks
#: for 20 epochs, 1/4 for 15, 1/2 for 10 (11.25 passes over the corpus in all),
#: then every block. A stage whose sample would not be smaller than the next
#: one's is left out, so a corpus of one block has no sample stage.
SAMPLE_STAGES: tuple[tuple[int, int], ...] = ((8, 20), (4, 15), (2, 10))
#: Runs of fewer passes (a refinement, a short test) skip the sample stages.
SAMPLE_MIN_PASSES = 50


def sample_stages(
    n_blocks: int, budget: int = SAMPLE_MIN_PASSES, min_blocks: int = 1
) -> list[tuple[int, int]]:
    """``(blocks in the sample, epochs)`` of each sample stage for ``n_blocks`` blocks and a
    run of at most ``budget`` passes; a stage of fewer than ``min_blocks`` blocks is left
    out (a small sample's dictionary does not generalise: on the 20-minute benchmark
    corpus, 7 blocks, the stages of 1, 2 and 4 blocks made the run reach L* at 80 passes
    instead of 60)."""
    out: list[tuple[int, int]] = []
    if budget < SAMPLE_MIN_PASSES:
        return out
    for den, epochs in SAMPLE_STAGES:
        k = -(-n_blocks // den)
        if max(min_blocks, 1) <= k < n_blocks and (not out or k > out[-1][0]):
            out.append((k, epochs))
    return out


def min_sample_blocks(sample_min_frames: int, block_frames: int) -> int:
    """The fewest blocks a sample stage may hold: ``sample_min_frames`` frames' worth."""
    return max(1, -(-sample_min_frames // max(block_frames, 1)))


def sample_blocks(
    n_blocks: int, epoch: int, *, seed: int, budget: int = SAMPLE_MIN_PASSES, min_blocks: int = 1
) -> list[int] | None:
    """The blocks epoch ``epoch`` of the fast schedule visits, sorted; None: all of them.

    The samples are nested prefixes of one permutation seeded from ``seed``, so
    the sample only grows and a block, once in it, is visited every epoch.
    """
    e = epoch
    for k, epochs in sample_stages(n_blocks, budget, min_blocks):
        if e < epochs:
            order = np.random.default_rng([seed, 0x5341]).permutation(n_blocks)
            return sorted(int(b) for b in order[:k])
        e -= epochs
    return None


def h_buffers(cfg: Any) -> int:
    """Activation buffers a run keeps: 3 for the fast schedule (the extrapolation reads
    two past epochs), else 2."""
    return 3 if cfg.fast_full_batch else 2


def visited_twice(
    n_blocks: int, epoch: int, *, seed: int, budget: int = SAMPLE_MIN_PASSES, min_blocks: int = 1
) -> np.ndarray:
    """Blocks the fast schedule visited in both epochs ``epoch - 1`` and ``epoch - 2``."""
    out = np.zeros(n_blocks, dtype=bool)
    if epoch < 2:
        return out
    for e in (epoch - 1, epoch - 2):
        sample = sample_blocks(n_blocks, e, seed=seed, budget=budget, min_blocks=min_blocks)
        seen = (
            np.ones(n_blocks, dtype=bool)
            if sample is None
            else np.isin(np.arange(n_blocks), sample)
        )
        out = seen if e == epoch - 1 else out & seen
    return out


def passes_done(
    n_blocks: int,
    epochs_done: int,
    *,
    fast: bool,
    budget: int = SAMPLE_MIN_PASSES,
    min_blocks: int = 1,
) -> float:
    """Passes over the corpus of the first ``epochs_done`` epochs (a sample epoch: its share)."""
    if not fast:
        return float(epochs_done)
    total, e = 0.0, epochs_done
    for k, epochs in sample_stages(n_blocks, budget, min_blocks):
        n = min(e, epochs)
        total += n * k / n_blocks
        e -= n
    return total + e
