"""What a learning run carries from step to step, and what a checkpoint holds.

Kept apart from the learner so that the model store (:mod:`dnmf.io.model`)
reads and writes checkpoints without importing the learner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["LearnState"]


@dataclass
class LearnState:
    """Everything a checkpoint holds; with the config and corpus it decides the rest.

    ``W`` has shape ``(n_bins, rank, lags)``; ``A`` and ``B`` (the online
    accumulators) are stacked ``(n_bins, lags · rank)``.
    """

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
    #: The fast schedule's extrapolation (:mod:`dnmf.nmf.accel`): the last plain
    #: update of W, the pending scales of the blocks' previous activations, and
    #: (b, b_cap, b_prev, best loss, the next step's H weight).
    W_prev: np.ndarray | None = None
    pending_prev: np.ndarray | None = None  # (n_blocks, rank) scales of each block's previous H
    accel: tuple[float, float, float, float, float] | None = None
    #: ``(n_buffers, n_blocks)`` int64: the crc32 of each activation chunk as the visit
    #: that last wrote it returned it (buffer, block); -1 where none is known (never
    #: written on a store, or written by a dnmf that kept no such records). Kept by the
    #: client, saved with each checkpoint, checked by every reader of the buffers.
    H_crc: np.ndarray | None = None

    def record_H(self, buffer: int, written: np.ndarray, n_buffers: int) -> None:
        """Note what a step wrote in activation buffer ``buffer``: ``written``, rows
        ``(block, crc)`` (none: an in-process run, which keeps no records)."""
        if not len(written):
            return
        if self.H_crc is None:
            assert self.visited is not None
            self.H_crc = np.full((n_buffers, len(self.visited)), -1, dtype=np.int64)
        self.H_crc[buffer, written[:, 0]] = written[:, 1]

    @property
    def done_epochs(self) -> int:
        return len(self.losses)

    @property
    def n_buffers(self) -> int:
        """Activation buffers of the run: 3 with the fast schedule's previous scales, else 2."""
        return 3 if self.pending_prev is not None else 2

    @property
    def latest_buffer(self) -> int:
        """The buffer holding H as the last completed epoch left it."""
        return self.epoch % self.n_buffers
