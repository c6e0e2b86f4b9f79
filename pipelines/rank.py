"""``dnmf rank``: choose the rank by the loss on held-out entries.

For every rank asked for, one learn run (:func:`pipelines.learn.learn_corpus`)
with the same seeded share of entries held out in small tiles
(:class:`dnmf.nmf.mask.Holdout`: each chunk keeps most of its data), then one
pass over the blocks that scores the model on the held-out entries and on the
training ones (:func:`dnmf.rank.split_losses_task`). The ranks run one after
another, each on the whole cluster: a learn step is already one task per
chunk, so running ranks at once would not use the workers better, only hold
several ranks' activations and statistics in memory at a time, and a rank
that fails leaves the others' results whole. Results go to ``rank.json``
(and one model store per rank) in the output folder, and to ``rank.png``
when matplotlib is there.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dnmf.errors import DnmfUsageError
from dnmf.nmf.config import LearnConfig

__all__ = ["RankResult", "rank_corpus"]


@dataclass
class RankResult:
    """Held-out and training loss per rank (means per entry; sums alongside)."""

    corpus: str
    output: str
    beta: float
    holdout: float
    ranks: list[int] = field(default_factory=list)
    heldout_loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    heldout_sum: list[float] = field(default_factory=list)
    train_sum: list[float] = field(default_factory=list)
    heldout_entries: float = 0.0
    best_rank: int | None = None
    plot: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_ranks(text: str) -> list[int]:
    """``"8,16,32"`` as ``[8, 16, 32]``; one sentence for anything else."""
    try:
        ranks = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise DnmfUsageError(
            f"--ranks {text!r} is not a list of ranks; pass e.g. --ranks 8,16,32,64"
        ) from None
    if not ranks or any(r < 1 for r in ranks):
        raise DnmfUsageError(f"--ranks {text!r} needs positive ranks; pass e.g. --ranks 8,16,32")
    return sorted(set(ranks))


def rank_corpus(
    corpus_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    ranks: list[int],
    config: LearnConfig,
    holdout: float = 0.1,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    progress: bool = False,
) -> RankResult:
    """Learn every rank with ``holdout`` of the entries held out; score them.

    ``config`` is everything but the rank (its ``seed`` also seeds the held-out
    tiles, the same for every rank). Returns, and writes to
    ``output/rank.json``, the mean β-divergence per held-out and per training
    entry of each rank, and the rank of the lowest held-out loss.
    """
    from dnmf.backends import DaskBackend
    from dnmf.cluster import connect
    from dnmf.io.corpus import CorpusStore
    from dnmf.io.model import ModelStore
    from pipelines.learn import corpus_mask, learn_corpus

    if not 0 < holdout < 1:
        raise DnmfUsageError(f"--holdout {holdout:g} must be a share between 0 and 1, e.g. 0.1")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    corpus = CorpusStore.open(corpus_path)
    result = RankResult(corpus=str(corpus_path), output=str(out), beta=config.beta,
                        holdout=holdout)  # fmt: skip
    with connect(workers, scheduler, client=client, progress=progress, audio=False) as c:
        for rank in ranks:
            cfg = config.model_copy(update={"rank": rank, "holdout": holdout})
            model_path = out / f"rank{rank}.zarr"
            learn_corpus(corpus_path, model_path, config=cfg, overwrite=True, client=c,
                         progress=progress)  # fmt: skip
            model = ModelStore.open(model_path)
            spec = corpus_mask(cfg, corpus)
            state = model.load_checkpoint()
            assert state is not None and state.pending is not None
            block = int(model.meta["block_frames"])
            backend = DaskBackend(c, f"{corpus_path}/V", block_frames=block,
                                  n_frames=corpus.n_frames)  # fmt: skip
            from dnmf.rank import split_losses_task

            buffer, pending = state.latest_buffer, state.pending
            if cfg.lags > 1 and block < cfg.lags - 1:
                raise DnmfUsageError(
                    f"--lags {cfg.lags} reaches back over more than one block of {block} "
                    "frames; use fewer lags or bigger chunks"
                )
            crc = state.H_crc  # the records of the chunks each block's task reads (b - 1: halo)
            items = [(a, z, buffer, pending[b], pending[b - 1] if b else None,
                      {} if crc is None else {j: int(crc[buffer, j]) for j in (b - 1, b) if j >= 0})
                     for b, (a, z) in enumerate(backend.blocks())]  # fmt: skip
            parts = backend.map_blocks(
                split_losses_task, items, np.ascontiguousarray(state.W),
                backend.V_url, model.H_url, spec, cfg.beta, tag=f"rank-{rank}-{backend.token}",
            )  # fmt: skip
            train, held, n_train, n_held = (float(sum(p[i] for p in parts)) for i in range(4))
            result.ranks.append(rank)
            result.train_sum.append(train)
            result.heldout_sum.append(held)
            result.train_loss.append(train / max(n_train, 1.0))
            result.heldout_loss.append(held / max(n_held, 1.0))
            result.heldout_entries = n_held
    result.best_rank = result.ranks[int(np.argmin(result.heldout_loss))]
    result.plot = _plot(result, out / "rank.png")
    (out / "rank.json").write_text(json.dumps(result.as_dict(), indent=2))
    return result


def _plot(result: RankResult, path: Path) -> str | None:
    """The PNG of held-out and training loss against rank, if matplotlib is there."""
    from dnmf.errors import MissingExtraError
    from dnmf.plot import rank_figure

    try:
        return str(rank_figure(result.as_dict(), path))
    except MissingExtraError:
        return None
