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

    @property
    def done_epochs(self) -> int:
        return len(self.losses)
